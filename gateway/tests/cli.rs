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

/// The address a `serve` child prints once it listens. Its stdout comes
/// back too: kept open while the child runs, so its later writes do not fail.
fn listening(
    child: &mut std::process::Child,
) -> (String, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("gateway listening on ").map(str::to_owned))
        .expect("listening line");
    (addr, lines)
}

/// `gateway serve` on a free port in `dir`, stdout piped.
fn spawn_serve(dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    gateway()
        .arg("serve")
        .args(extra)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// [`spawn_serve`], then the address it listens on (see [`listening`]).
fn serve(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = spawn_serve(dir, extra);
    let (addr, stdout) = listening(&mut child);
    (child, addr, stdout)
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

    let (mut child, addr, _stdout) = serve(d, &[]);
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

    // Reverting the migration empties the schema.
    let (ok, out, _) = run(&["keys", "list"], d);
    assert!(ok && out.contains("terminal=S001-T01"), "{out}");
    assert!(!out.contains(&admin), "keys are never shown again");
    let (ok, out, _) = run(&["migrate", "down"], d);
    assert!(ok && out.contains("reverted"), "{out}");
    let (ok, out, _) = run(&["migrate", "status"], d);
    assert!(ok && out.contains("pending"), "{out}");
}

/// `gateway serve --demo` on a free port: the child, its address, and each
/// `demo …:` line it printed before listening, as `demo app key` → the key;
/// and its stdout (see [`listening`]).
fn serve_demo(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::collections::HashMap<String, String>,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut args = vec!["--demo"];
    args.extend_from_slice(extra);
    let mut child = spawn_serve(dir, &args);
    let mut demo = std::collections::HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref().map_while(Result::ok) {
        if let Some(a) = l.strip_prefix("gateway listening on ") {
            return (child, a.to_owned(), demo, lines);
        }
        if let Some((name, value)) = l.split_once(':')
            && name.starts_with("demo ")
        {
            demo.insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve --demo stopped before listening");
}

#[test]
fn demo_mode_seeds_stores_products_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, demo, _out) = serve_demo(dir.path(), &[]);
    let terminal = demo["demo terminal key S001"].clone();
    // The id SOAP needs as the UsernameToken username is printed with the key.
    let terminal_id = demo
        .get("demo terminal id S001")
        .cloned()
        .expect("a terminal id line");
    let (ok, out, err) = run(&["keys", "list"], dir.path());
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("store=S001") && l.contains(&format!("terminal={terminal_id} "))),
        "{terminal_id} in {out}"
    );
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
    let (addr, _stdout) = listening(&mut child);
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

/// `keys` on a database nobody migrated yet: it migrates first, as `serve`
/// does, or (migrations off) says in one line what to run. The global
/// options work after the subcommand too.
#[test]
fn keys_on_a_fresh_database_with_options_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = format!("sqlite://{}/fresh/gateway.db", d.display());
    let (ok, _, err) = run(
        &[
            "keys",
            "create",
            "--role",
            "admin",
            "--database-url",
            &url,
            "--no-migrate",
        ],
        d,
    );
    assert!(!ok, "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Error: ") && last.contains("run `gateway migrate up`"),
        "{err}"
    );
    assert!(
        !err.contains("internal error") && !err.contains("backtrace"),
        "{err}"
    );

    let (ok, out, err) = run(
        &["keys", "create", "--role", "admin", "--database-url", &url],
        d,
    );
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("gk_"), "{out}");
    let (ok, out, err) = run(&["migrate", "status", "--database-url", &url], d);
    assert!(ok && !out.contains("pending"), "{out}{err}");
    let (ok, out, err) = run(&["--database-url", &url, "keys", "list"], d);
    assert!(ok && out.contains("admin"), "{out}{err}");
    assert!(
        !d.join("data").exists(),
        "nothing went to the default database"
    );
}

/// `keys revoke` on a running gateway: the key stops working (within the
/// key cache's lifetime), other keys do not.
#[test]
fn a_revoked_key_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = run(&["keys", "create", "--role", "admin"], d);
    assert!(ok, "{err}");
    let admin = out.lines().last().unwrap().trim().to_owned();
    let (ok, out, err) = run(&["keys", "create", "--role", "app", "--label", "shop"], d);
    assert!(ok, "{err}");
    let app = out.lines().last().unwrap().trim().to_owned();
    // stderr says `key id <id> (app)`.
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("key id "))
        .and_then(|l| l.split_whitespace().next())
        .expect("key id line")
        .to_owned();

    let (mut child, addr, _stdout) = serve(d, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let catalog = |key: String| {
        let (http, url) = (http.clone(), format!("{addr}/api/v1/stores/S001/catalog"));
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    rt.block_on(async {
        let put = http
            .put(format!("{addr}/api/v1/stores/S001"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "人民路店"}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        assert_eq!(catalog(app.clone()).await, 200);
    });

    let (ok, out, err) = run(&["keys", "revoke", &id], d);
    assert!(ok && out.contains(&format!("revoked {id}")), "{out}{err}");
    rt.block_on(async {
        // The gateway caches a key's answer for a few seconds: wait for the
        // lock-out with a generous deadline rather than a fixed sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = catalog(app.clone()).await;
            if s == 401 {
                break;
            }
            assert_eq!(s, 200, "before the lock-out the key still works");
            assert!(
                std::time::Instant::now() < deadline,
                "the revoked key still works"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(catalog(admin.clone()).await, 200, "other keys still work");
    });
    child.kill().unwrap();
    let _ = child.wait();

    let (ok, out, _) = run(&["keys", "list"], d);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("(revoked)")),
        "{out}"
    );
    let (ok, _, err) = run(&["keys", "revoke", &id], d);
    assert!(!ok && err.contains(&format!("no active key {id}")), "{err}");
}

/// A wrong `[channels]` value stops `serve` before it listens, with one line
/// naming the section and the key (and never the secret itself); the same
/// value through the environment is refused the same way.
#[test]
fn a_bad_channels_section_stops_serve_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("gateway.toml"),
        "[channels]\nwebhook_secrets = \"shop-hidden-secret\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
        ],
        d,
    );
    assert!(!ok, "served: {out}");
    assert!(!out.contains("listening"), "{out}");
    let err = err.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: [channels]") && err.contains("webhook_secrets"),
        "{err}"
    );
    assert!(
        !err.contains("hidden"),
        "the secret is in the message: {err}"
    );

    let out = gateway()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEWAY_UNCONFIRMED_ALERT_S", "soon")
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("GATEWAY_UNCONFIRMED_ALERT_S"), "{err}");
    let out = gateway()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--set", "channels.meituan_base_url=http://127.0.0.1:9"])
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("[channels]") && err.contains("meituan_app_id"),
        "{err}"
    );
}

/// One precedence for every setting: the environment over the file, a flag
/// over the environment; `config show` says which one each value came from.
#[test]
fn the_environment_overrides_the_file_and_a_flag_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("gateway.toml"),
        "listen = \"127.0.0.1:notaport\"\n[outbox]\npoll_ms = 111\nconcurrency = 3\n",
    )
    .unwrap();
    let show = |env: Option<&str>, flag: Option<&str>| {
        let mut c = gateway();
        c.args(["config", "show", "--config", "gateway.toml"])
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .current_dir(d);
        if let Some(v) = env {
            c.env("GATEWAY_OUTBOX_POLL_MS", v);
        }
        if let Some(v) = flag {
            c.args(["--set", &format!("outbox.poll_ms={v}")]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = show(None, None);
    assert!(shown.contains("poll_ms = 111  # file"), "{shown}");
    assert!(shown.contains("concurrency = 3  # file"), "{shown}");
    assert!(shown.contains("max_attempts = 20  # default"), "{shown}");
    let shown = show(Some("222"), None);
    assert!(
        shown.contains("poll_ms = 222  # env GATEWAY_OUTBOX_POLL_MS"),
        "{shown}"
    );
    let shown = show(Some("222"), Some("333"));
    assert!(shown.contains("poll_ms = 333  # flag"), "{shown}");
    assert!(shown.contains("concurrency = 3  # file"), "{shown}");

    // The same order decides where `serve` listens: the file's address is
    // no address, the environment's overrides it...
    let mut child = gateway()
        .args(["serve", "--config", "gateway.toml"])
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = listening(&mut child);
    child.kill().unwrap();
    let _ = child.wait();
    // ...and a flag overrides a wrong one from the environment.
    let mut child = gateway()
        .args([
            "serve",
            "--config",
            "gateway.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("GATEWAY_LISTEN", "127.0.0.1:alsonotaport")
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = listening(&mut child);
    child.kill().unwrap();
    let _ = child.wait();
}

/// `config show` prints secrets as "***", wherever they came from, and a
/// database URL without its password.
#[test]
fn config_show_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("gateway.toml"),
        "[channels]\nmeituan_base_url = \"http://127.0.0.1:9\"\nmeituan_app_id = \"app\"\n\
         meituan_secret = \"file-hidden-1\"\nwebhook_secrets = \"shop:file-hidden-2\"\n",
    )
    .unwrap();
    let out = gateway()
        .args(["config", "show", "--config", "gateway.toml"])
        .env("GATEWAY_WECHATPAY_KEY", "env-hidden-3")
        .env(
            "GATEWAY_DATABASE_URL",
            "postgres://gw:env-hidden-4@db:5432/gw",
        )
        .current_dir(d)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !shown.contains("hidden") && !err.contains("hidden"),
        "{shown}"
    );
    assert!(
        shown.contains("wechatpay_key = \"***\"  # env GATEWAY_WECHATPAY_KEY"),
        "{shown}"
    );
    assert!(
        shown.contains("meituan_secret = \"***\"  # file"),
        "{shown}"
    );
    assert!(
        shown.contains("webhook_secrets = \"***\"  # file"),
        "{shown}"
    );
    assert!(shown.contains("postgres://gw:***@db:5432/gw"), "{shown}");
    assert!(
        shown.contains("meituan_app_id = \"app\"  # file"),
        "{shown}"
    );
}

/// Every migration goes down and up again with data in the tables, on both
/// engines: a down that would drop rows is refused and changes nothing
/// until `--yes`; one that drops only empty tables goes without it; after
/// going up again the gateway serves.
#[test]
fn migrations_go_down_to_zero_and_up_again_with_data() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in [tests::Backend::Sqlite, tests::Backend::Postgres] {
        let Some(db) = rt.block_on(tests::TestDb::new(backend)) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let url = db.url().to_owned();
        let with_url = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--database-url", &url]);
            run(&all, d)
        };
        let status = || {
            let (ok, out, err) = with_url(&["migrate", "status"]);
            assert!(ok, "{err}");
            out
        };
        let (ok, _, err) = with_url(&["migrate", "up"]);
        assert!(ok, "{backend:?}: {err}");
        assert!(!status().contains("pending") && !status().contains("CHANGED"));
        assert!(status().contains("sha384:"), "{}", status());

        // Data: the demo catalog, keys, and one order.
        let (mut child, addr, demo, _out) = serve_demo(d, &["--database-url", &url]);
        let app = demo["demo app key"].clone();
        rt.block_on(async {
            let http = reqwest::Client::new();
            let cat: serde_json::Value = http
                .get(format!("{addr}/api/v1/stores/S001/catalog"))
                .bearer_auth(&app)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let sku = cat["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["unit"] == "piece")
                .unwrap()["sku"]
                .clone();
            let r = http
                .post(format!("{addr}/api/v1/orders"))
                .bearer_auth(&app)
                .json(&serde_json::json!({"store_id": "S001", "lines": [{"sku": sku, "quantity": "1"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        });
        child.kill().unwrap();
        let _ = child.wait();

        // Down to zero would drop the order: refused, nothing changed.
        let (ok, out, err) = with_url(&["migrate", "down", "--to", "0"]);
        assert!(!ok, "{backend:?}: refused without --yes: {out}");
        assert!(out.contains("table orders (1 rows)"), "{out}");
        assert!(
            err.contains("--yes") && err.contains("nothing was changed"),
            "{err}"
        );
        assert!(!status().contains("pending"), "{}", status());

        // The newest drops an empty table only: no --yes needed.
        let (ok, out, err) = with_url(&["migrate", "down", "--to", "13"]);
        assert!(ok, "{backend:?}: {out}{err}");
        assert!(out.contains("reverted migration 14"), "{out}");
        let (ok, _, err) = with_url(&["migrate", "down", "--to", "7"]);
        assert!(!ok && err.contains("there is no migration 7"), "{err}");

        let (ok, out, err) = with_url(&["migrate", "down", "--to", "0", "--yes"]);
        assert!(ok, "{backend:?}: {out}{err}");
        assert!(out.contains("reverted migration 1\n"), "{out}");
        assert!(!status().contains("applied"), "{}", status());
        let (ok, out, _) = with_url(&["migrate", "down"]);
        assert!(ok && out.contains("nothing to revert"), "{out}");

        // Up again: the gateway serves on the rebuilt schema.
        let (ok, _, err) = with_url(&["migrate", "up"]);
        assert!(ok, "{backend:?}: {err}");
        assert!(!status().contains("pending"));
        let (mut child, addr, _out) = serve(d, &["--demo", "--database-url", &url]);
        rt.block_on(async {
            let r = reqwest::get(format!("{addr}/readyz")).await.unwrap();
            assert_eq!(r.status(), 200);
        });
        child.kill().unwrap();
        let _ = child.wait();
        drop(db);
    }
}

/// `log_format = "json"`: every line is one JSON object, and the lines a
/// request logs carry its request id (the `x-request-id` it was answered
/// with). A format that is neither stops `serve` naming the key.
#[test]
fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, _, err) = run(&["migrate", "up"], d);
    assert!(ok, "{err}");
    let mut child = gateway()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,tower_http=debug")
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr, _out) = listening(&mut child);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{addr}/readyz"))
            .header("x-request-id", "office-req-42")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["x-request-id"].to_str().unwrap().to_owned()
    });
    assert_eq!(answered, "office-req-42");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let _ = child.wait();
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty());
    let mut with_id = 0;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if v["span"]["request_id"] == "office-req-42" {
            with_id += 1;
        }
    }
    assert!(with_id >= 1, "no line with the request id in {lines:#?}");

    let (ok, _, err) = {
        let out = gateway()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEWAY_LOG_FORMAT", "xml")
            .current_dir(d)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!ok && err.contains("log_format"), "{err}");
}

/// `gateway backup FILE` while `serve` runs: the copy is a database the
/// gateway opens as it is (migrations current, the keys there); an
/// existing file is never overwritten.
#[test]
fn backup_copies_the_live_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut child, _addr, _out) = serve(d, &["--demo"]);
    let (ok, out, err) = run(&["backup", "copy.db"], d);
    assert!(ok, "{err}");
    assert!(out.starts_with("backed up to copy.db ("), "{out}");
    child.kill().unwrap();
    let _ = child.wait();
    let copy = "sqlite://copy.db";
    let (ok, out, _) = run(&["migrate", "status", "--database-url", copy], d);
    assert!(ok && !out.contains("pending"), "{out}");
    let (ok, out, _) = run(&["keys", "list", "--database-url", copy], d);
    assert!(ok && out.contains("store=S001 terminal="), "{out}");
    let (ok, _, err) = run(&["backup", "copy.db"], d);
    assert!(!ok && err.contains("exists already"), "{err}");
}
