//! Starts `hw-sim devices` in-process on port 0 with its links in a temp dir,
//! and opens drivers on those links.

use std::sync::Arc;
use std::time::Duration;

use hw_sim::devices::{Config, Devices};
use serde_json::Value;
use terminal_sdk::device::{
    Display, LineSettings, PortSpec, Printer, Scale, Scanner, SerialConnect,
};
use tokio::sync::oneshot;

pub struct Sim {
    pub base: String,
    pub devices: Arc<Devices>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        // The runtime may end before the server task's own cleanup runs.
        self.devices.unplug_all();
    }
}

const CLAIM: Duration = Duration::from_secs(5);

impl Sim {
    pub async fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let devices = Devices::start(&Config {
            dir: dir.path().to_owned(),
            record: None,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(Arc::clone(&devices).serve(listener, async {
            let _ = stopped.await;
        }));
        Sim {
            base,
            devices,
            http: reqwest::Client::new(),
            _dir: dir,
            _stop: stop,
        }
    }

    fn connect(&self, device: &str, settings: LineSettings) -> SerialConnect {
        let link = self.devices.link(device).unwrap();
        SerialConnect::new(PortSpec::Path(link), settings)
    }

    pub async fn printer(&self) -> Printer<SerialConnect> {
        let mut p = Printer::new(self.connect("printer", LineSettings::printer()));
        p.open();
        p.claim(CLAIM).await.unwrap();
        p.enable().await.unwrap();
        p
    }

    pub async fn scale(&self) -> Scale<SerialConnect> {
        let mut s = Scale::new(self.connect("scale", LineSettings::scale()));
        // A weight that settles comes back at once; the generous limit only
        // keeps a loaded machine from turning a slow reply into a failure.
        s.stable_timeout = Duration::from_secs(20);
        s.open();
        s.claim(CLAIM).await.unwrap();
        s.enable().await.unwrap();
        s
    }

    pub async fn scanner(&self) -> Scanner<SerialConnect> {
        let mut s = Scanner::new(self.connect("scanner", LineSettings::scanner()));
        s.open();
        s.claim(CLAIM).await.unwrap();
        s.enable().await.unwrap();
        s
    }

    pub async fn display(&self) -> Display<SerialConnect> {
        let mut d = Display::new(self.connect("display", LineSettings::display()));
        d.open();
        d.claim(CLAIM).await.unwrap();
        d.enable().await.unwrap();
        d
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Polls `GET path` until it returns `want` (devices that do not answer
    /// give no other way to know the bytes arrived). Fails after a minute.
    pub async fn wait_for(&self, path: &str, want: Value) {
        let mut last = Value::Null;
        for _ in 0..1200 {
            last = self.get(path).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("GET {path}: wanted {want}, still {last}");
    }

    pub async fn raw_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn raw_put(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let r = self.raw_put(path, body).await;
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
    }

    pub async fn receipts(&self) -> Vec<Value> {
        self.get("/printer/receipts").await["receipts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
