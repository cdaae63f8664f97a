//! The `gateway` binary as an operator uses it: migrate, make keys, serve.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env_remove("GATEWAY_DATABASE_URL")
        .env_remove("GATEWAY_LISTEN")
        .env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = gateway()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_keys_and_serve_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No database yet: `migrate up` creates the SQLite file under ./data.
    let (ok, out, err) = run(&["migrate", "up"], d);
    assert!(ok, "{out}{err}");
    assert!(
        d.join("data/gateway.db").exists(),
        "the default is a SQLite file under ./data"
    );
    let (ok, out, _) = run(&["migrate", "status"], d);
    assert!(ok);
    assert!(out.contains("applied") && !out.contains("pending"), "{out}");

    let (ok, out, err) = run(&["keys", "create", "--role", "admin"], d);
    assert!(ok, "{err}");
    let admin = out.lines().last().unwrap().trim().to_owned();
    assert!(admin.starts_with("gk_") && admin.len() > 40, "{out}");
    let (ok, out, _) = run(
        &[
            "keys",
            "create",
            "--role",
            "terminal",
            "--store",
            "S001",
            "--terminal",
            "S001-T01",
        ],
        d,
    );
    assert!(ok);
    let terminal = out.lines().last().unwrap().trim().to_owned();
    let (ok, _, err) = run(&["keys", "create", "--role", "terminal"], d);
    assert!(
        !ok && err.contains("store"),
        "a terminal key needs a store: {err}"
    );
    let (ok, _, err) = run(
        &[
            "keys",
            "create",
            "--role",
            "terminal",
            "--store",
            "S001",
            "--terminal",
            "S001-T01",
        ],
        d,
    );
    assert!(
        !ok && err.contains("S001-T01"),
        "one key per terminal: {err}"
    );

    let mut child = gateway()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("gateway listening on ").map(str::to_owned))
        .expect("listening line");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("{addr}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let put = http
            .put(format!("{addr}/api/v1/stores/S001"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "人民路店"}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        let q = http
            .get(format!("{addr}/api/v1/stores/S001/orders"))
            .bearer_auth(&terminal)
            .send()
            .await
            .unwrap();
        assert_eq!(q.status(), 200);
        let q = http
            .get(format!("{addr}/api/v1/stores/S001/orders"))
            .bearer_auth("gk_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(q.status(), 401);
    });
    child.kill().unwrap();
    let _ = child.wait();

    // Revoking a key locks it out; reverting the migration empties the schema.
    let (ok, out, _) = run(&["keys", "list"], d);
    assert!(ok && out.contains("terminal=S001-T01"), "{out}");
    assert!(!out.contains(&admin), "keys are never shown again");
    let (ok, out, _) = run(&["migrate", "down"], d);
    assert!(ok && out.contains("reverted"), "{out}");
    let (ok, out, _) = run(&["migrate", "status"], d);
    assert!(ok && out.contains("pending"), "{out}");
}

#[test]
fn demo_mode_seeds_stores_products_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway()
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut terminal = None;
    let mut addr = None;
    for l in lines.by_ref().map_while(Result::ok) {
        if l.starts_with("demo terminal key S001") {
            terminal = l.split_whitespace().last().map(str::to_owned);
        }
        if let Some(a) = l.strip_prefix("gateway listening on ") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let (addr, terminal) = (addr.unwrap(), terminal.unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cat: serde_json::Value = reqwest::Client::new()
            .get(format!("{addr}/api/v1/stores/S001/catalog"))
            .bearer_auth(&terminal)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = cat["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|i| i["name"] == "卤鸭脖" && i["unit"] == "kg" && i["available"] == true)
        );
        assert!(items.iter().any(|i| i["unit"] == "piece"));
    });
    child.kill().unwrap();
    let _ = child.wait();
}

/// Payments configured in the TOML file's `[payments]` table: a wrong table
/// stops `serve` with a message naming the problem; a complete one turns the
/// payment routes on.
#[test]
fn payments_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = |config: &str| {
        std::fs::write(d.join("gateway.toml"), config).unwrap();
        gateway()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                "gateway.toml",
            ])
            .env_remove("GATEWAY_WECHATPAY_BASE_URL")
            .env_remove("GATEWAY_WECHATPAY_KEY")
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for (config, complaint) in [
        (
            "[payments]\nwechatpay_base_url = \"http://127.0.0.1:9\"\nwechatpay_appid = \"wx1\"\nwechatpay_mch_id = \"100\"\n",
            "GATEWAY_WECHATPAY_KEY",
        ),
        (
            "[payments]\nwechatpay_base_url = \"ftp://x\"\n",
            "http:// or https://",
        ),
        (
            "[payments]\nwechatpay_base_url = \"http://127.0.0.1:9\"\nwechatpay_appid = \"wx1\"\nwechatpay_mch_id = \"100\"\nwechatpay_key = \"k\"\npoll_ms = 0\n",
            "GATEWAY_PAYMENTS_POLL_MS",
        ),
        ("[payments]\nbase_url = \"http://x\"\n", "unknown field"),
    ] {
        let out = serve(config).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "served with {config:?}");
        assert!(err.contains(complaint), "{config:?}: {err}");
    }

    let mut child = serve(
        "[payments]\nwechatpay_base_url = \"http://127.0.0.1:9\"\nwechatpay_appid = \"wx1\"\n\
         wechatpay_mch_id = \"100\"\nwechatpay_key = \"k\"\nwechatpay_sign_type = \"HMAC-SHA256\"\n",
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("gateway listening on ").map(str::to_owned))
        .expect("listening line");
    let (ok, out, err) = run(&["keys", "create", "--role", "admin"], d);
    assert!(ok, "{err}");
    let admin = out.lines().last().unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{addr}/api/v1/orders/no-such-order/payments"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        // Payments are on: the order is looked up (not "not configured").
        assert_eq!(r.status(), 404);
    });
    child.kill().unwrap();
    let _ = child.wait();
}
