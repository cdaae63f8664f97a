//! The counter agent (`terminal run`) as tests start it: the real binary
//! of this build profile, its local API over HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// This build profile's binary directory (`target/<profile>`) after
/// `cargo build --bins` of `packages` in that profile. Tests run from
/// `target/<profile>/deps`, bench binaries from `target/<profile>`.
pub fn build_bins(packages: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let parent = exe.parent().expect("exe dir");
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().expect("target dir")
    } else {
        parent
    }
    .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["build", "-q", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for p in packages {
        c.args(["-p", p]);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    assert!(
        c.status().expect("cargo build").success(),
        "building {packages:?}"
    );
    dir
}

/// The `terminal` binary of this build profile, built if needed.
pub fn terminal_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = build_bins(&["terminal-sdk"]).join("terminal");
        assert!(bin.exists(), "no terminal binary at {}", bin.display());
        bin
    })
    .clone()
}

pub fn command(config: &Path, key: &str) -> Command {
    let mut c = Command::new(terminal_bin());
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("TERMINAL_KEY", key)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

pub struct Agent {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Agent {
    pub async fn start(config: &Path, key: &str) -> Agent {
        Agent::spawn(command(config, key)).await
    }

    /// Starts `command` (from [`command`], with what the test added, e.g.
    /// the environment of a fake clock).
    pub async fn spawn(mut command: Command) -> Agent {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn terminal run");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the agent starts in time")
            .expect("read stdout")
            .expect("a line");
        let base = line
            .strip_prefix("terminal agent listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        // Keep draining stdout so the agent never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Agent {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("agent answers");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("agent answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn add(&self, body: Value) -> Value {
        let (status, v) = self.post("/api/basket/lines", body.clone()).await;
        assert_eq!(status, 201, "add {body}: {v}");
        v
    }

    pub async fn status(&self) -> Value {
        self.get("/api/status").await
    }

    /// Polls the status until `done` holds (or fails after `secs`).
    pub async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status().await;
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `hw-sim devices` in this process, its control API on port 0.
pub struct DeviceSim {
    pub base: String,
    pub devices: std::sync::Arc<hw_sim::devices::Devices>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl DeviceSim {
    pub async fn start() -> DeviceSim {
        let dir = tempfile::tempdir().expect("dir");
        let devices = hw_sim::devices::Devices::start(&hw_sim::devices::Config {
            dir: dir.path().to_owned(),
            record: None,
        })
        .expect("devices");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(std::sync::Arc::clone(&devices).serve(listener, std::future::pending::<()>()));
        DeviceSim {
            base,
            devices,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn link(&self, device: &str) -> String {
        self.devices
            .link(device)
            .expect("link")
            .display()
            .to_string()
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("json")
    }

    pub async fn put(&self, path: &str, body: Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("sim answers");
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    }

    /// The scanner reads `code` (CR-terminated, as a scanner sends it).
    pub async fn scan(&self, code: &str) {
        let r = self
            .http
            .post(format!("{}/scanner/scan", self.base))
            .json(&serde_json::json!({ "code": code }))
            .send()
            .await
            .expect("sim answers");
        assert!(r.status().is_success(), "scan {code}: {}", r.status());
    }

    /// The customer display's two lines as the simulator shows them.
    pub async fn display(&self) -> String {
        let v = self.get("/display").await;
        v["lines"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// Waits until the display shows `want` (or fails after `secs`).
    pub async fn wait_display(&self, want: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.display().await;
            if d.contains(want) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the display to show {want:?}: {d:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn receipts(&self) -> Vec<Value> {
        self.get("/printer/receipts").await["receipts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn wait_receipts(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.receipts().await;
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} receipts: {r:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for DeviceSim {
    fn drop(&mut self) {
        self.devices.unplug_all();
    }
}

/// The switchable forwarder between an agent and its gateway.
pub use hw_sim::link::Link;
