//! `gateway check`, the go-live preflight, run as an operator runs it: the
//! real binary against a good configuration (every row ✔, exit 0) and a
//! broken one (each broken thing its own ✘ row, exit non-zero).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The WeChat Pay sandbox key the tests and the simulator sign with.
const DEMO_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
/// A key of the right shape that nothing publishes.
const STORE_KEY: &str = "5e1f0c9a7b3d2e4f6a8b0c1d2e3f4a5b";

fn gateway(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GATEWAY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn").current_dir(dir);
    c
}

/// `gateway check --json` with `config`: exit status, rows by name, stderr.
fn check(dir: &Path, config: &Path) -> (bool, BTreeMap<String, (bool, String)>, String) {
    let out = gateway(dir)
        .arg("--config")
        .arg(config)
        .args(["check", "--json"])
        .output()
        .expect("run gateway check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rows: Vec<Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    let rows = rows
        .iter()
        .map(|r| {
            (
                r["check"].as_str().unwrap().to_owned(),
                (
                    r["ok"].as_bool().unwrap(),
                    r["detail"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    (out.status.success(), rows, stderr)
}

fn migrate(dir: &Path, config: &Path, action: &str) {
    let out = gateway(dir)
        .arg("--config")
        .arg(config)
        .args(["migrate", action])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in outside service on 127.0.0.1: answers every request with
/// 200 and an empty body, for a bounded number of connections.
fn http_stub() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(32) {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = c.read(&mut buf);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    port
}

/// A store's folder: `data/` (mode 0700) and `gateway.toml` with `body`
/// after the database URL.
fn setup(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/gateway.db\"\n{body}",
            data.display()
        ),
    )
    .unwrap();
    (dir, config)
}

fn failed(rows: &BTreeMap<String, (bool, String)>) -> Vec<&str> {
    rows.iter()
        .filter(|(_, (ok, _))| !ok)
        .map(|(k, _)| k.as_str())
        .collect()
}

#[test]
fn a_good_configuration_passes_every_row() {
    let stub = http_stub();
    let (dir, config) = setup(&format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\n\
         [payments]\nwechatpay_base_url = \"http://127.0.0.1:{stub}\"\n\
         wechatpay_appid = \"wxstore\"\nwechatpay_mch_id = \"1900000001\"\n\
         wechatpay_key = \"{STORE_KEY}\"\n\
         [channels]\nmeituan_base_url = \"http://localhost:{stub}\"\n\
         meituan_app_id = \"mt-store\"\nmeituan_secret = \"store-own-secret\"\n",
        free_port()
    ));
    migrate(dir.path(), &config, "up");
    let (ok, rows, err) = check(dir.path(), &config);
    assert!(ok, "{rows:#?}\n{err}");
    assert!(failed(&rows).is_empty(), "{rows:#?}");
    for name in [
        "config",
        "config [http]",
        "config [payments]",
        "config [channels]",
        "demo",
        "data directory",
        "database",
        "migrations",
        "migrations reversible",
        "clock",
        "service wechatpay",
        "service alipay",
        "service meituan",
        "secret wechatpay",
        "secret meituan",
        "listen",
    ] {
        assert!(rows.contains_key(name), "no row {name:?}: {rows:#?}");
    }
    assert!(rows["data directory"].1.contains("0700"), "{rows:#?}");
    assert!(
        rows["service wechatpay"].1.contains("HTTP 200"),
        "{rows:#?}"
    );
    assert_eq!(rows["service alipay"].1, "not configured");

    // The table says the same to a person.
    let out = gateway(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("✔ listen"), "{table}");
    assert!(!table.contains('✘'), "{table}");
    assert!(table.contains(", 0 failed"), "{table}");
}

#[test]
fn a_broken_configuration_names_each_broken_row() {
    // The listen address is taken, by this test.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let (dir, config) = setup(&format!(
        "[http]\nlisten = \"{listen}\"\n\
         [payments]\nwechatpay_base_url = \"http://127.0.0.1:1\"\n\
         wechatpay_appid = \"wx2421b1c4370ec43b\"\nwechatpay_mch_id = \"10000100\"\n\
         wechatpay_key = \"{DEMO_KEY}\"\n"
    ));
    migrate(dir.path(), &config, "up");
    std::fs::set_permissions(
        dir.path().join("data"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let (ok, rows, err) = check(dir.path(), &config);
    assert!(!ok, "{rows:#?}");
    assert!(err.contains("4 of"), "{err}");
    assert_eq!(
        failed(&rows),
        [
            "data directory",
            "listen",
            "secret wechatpay",
            "service wechatpay"
        ],
        "{rows:#?}"
    );
    assert!(rows["data directory"].1.contains("0777"), "{rows:#?}");
    assert!(
        rows["service wechatpay"].1.contains("127.0.0.1:1"),
        "{rows:#?}"
    );
    assert!(rows["secret wechatpay"].1.contains("demo"), "{rows:#?}");
    assert!(rows["listen"].1.contains("in use"), "{rows:#?}");
    // The rest is still checked, and fine.
    assert!(rows["database"].0 && rows["migrations"].0 && rows["clock"].0);
    drop(taken);
}

#[test]
fn pending_migrations_are_listed_and_a_bad_section_is_named() {
    let (dir, config) = setup(&format!("[http]\nlisten = \"127.0.0.1:{}\"\n", free_port()));
    migrate(dir.path(), &config, "up");
    migrate(dir.path(), &config, "down");
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert_eq!(failed(&rows), ["migrations"], "{rows:#?}");
    assert!(
        rows["migrations"].1.contains("pending: 0020 jobs"),
        "{rows:#?}"
    );

    // A section its loader refuses: its row, with the loader's reason.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}max_connections = 0\n")).unwrap();
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert!(!rows["config [http]"].0, "{rows:#?}");
    assert!(rows["config [payments]"].0, "{rows:#?}");

    // A file that does not parse: one row that says why.
    std::fs::write(&config, "[http]\nbogus = 1\n").unwrap();
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(rows["config"].1.contains("bogus"), "{rows:#?}");
}

/// `migrate up` makes a missing data directory private, so the check
/// passes right after it.
#[test]
fn migrate_up_makes_a_private_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\n[database]\nurl = \"sqlite://store/data/gateway.db\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert!(
        !rows["data directory"].0 && !rows["database"].0,
        "{rows:#?}"
    );
    migrate(dir.path(), &config, "up");
    let (ok, rows, err) = check(dir.path(), &config);
    assert!(ok, "{rows:#?}\n{err}");
    assert!(
        rows["data directory"]
            .1
            .starts_with("store/data: owner uid"),
        "{rows:#?}"
    );
    assert!(rows["data directory"].1.ends_with("mode 0700"), "{rows:#?}");
}

#[test]
fn postgres_passes_too() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(tests::TestDb::new(tests::Backend::Postgres)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\n[database]\nurl = \"{}\"\n",
            free_port(),
            db.url()
        ),
    )
    .unwrap();
    migrate(dir.path(), &config, "up");
    let (ok, rows, err) = check(dir.path(), &config);
    assert!(ok, "{rows:#?}\n{err}");
    assert!(rows["data directory"].1.contains("PostgreSQL"), "{rows:#?}");
    assert!(rows["clock"].1.contains("within"), "{rows:#?}");
    drop(db);
}

/// An https base URL: the TLS handshake is part of the row. Trusted through
/// `extra_ca_file` it passes; without it the row says the certificate was
/// refused. The Alipay provider's published test key is refused too.
#[test]
fn https_services_need_a_trusted_certificate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = hw_sim::tls::TestPki::generate().unwrap();
    let tls = pki.server_config(None).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(hw_sim::tls::serve(
        listener,
        tls,
        axum::Router::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/fixtures");
    let body = || {
        format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\n\
             [payments]\nwechatpay_base_url = \"https://127.0.0.1:{port}\"\n\
             wechatpay_appid = \"wxstore\"\nwechatpay_mch_id = \"1900000001\"\n\
             wechatpay_key = \"{STORE_KEY}\"\n\
             alipay_base_url = \"https://localhost:{port}/gateway.do\"\n\
             alipay_app_id = \"2021000000000001\"\n\
             alipay_private_key_file = \"{}\"\nalipay_public_key_file = \"{}\"\n",
            free_port(),
            fixtures.join("alipay_test_app_private.pem").display(),
            fixtures.join("alipay_test_alipay_public.pem").display(),
        )
    };
    let (dir, config) = setup("");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("extra_ca_file = \"{}\"\n{url}{}", ca.display(), body()),
    )
    .unwrap();
    migrate(dir.path(), &config, "up");
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert_eq!(failed(&rows), ["secret alipay"], "{rows:#?}");
    assert!(
        rows["secret alipay"].1.contains("published test key"),
        "{rows:#?}"
    );
    for name in ["service wechatpay", "service alipay"] {
        assert!(
            rows[name].1.contains("TLS ok, answers HTTP 404"),
            "{rows:#?}"
        );
    }

    // WeChat's client certificate key, readable by others: refused until
    // it is private.
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("client-key.pem");
    std::fs::write(&cert, &pki.client_cert_pem).unwrap();
    std::fs::write(&key, &pki.client_key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_ca = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{with_ca}wechatpay_client_cert_file = \"{}\"\nwechatpay_client_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (_, rows, _) = check(dir.path(), &config);
    assert_eq!(
        failed(&rows),
        ["secret alipay", "secret wechatpay"],
        "{rows:#?}"
    );
    assert!(
        rows["secret wechatpay"].1.contains("mode 0644"),
        "{rows:#?}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, rows, _) = check(dir.path(), &config);
    assert_eq!(failed(&rows), ["secret alipay"], "{rows:#?}");

    // Without the CA: the handshake fails, and the row says so.
    std::fs::write(&config, format!("{url}{}", body())).unwrap();
    let (ok, rows, _) = check(dir.path(), &config);
    assert!(!ok);
    assert_eq!(
        failed(&rows),
        ["secret alipay", "service alipay", "service wechatpay"],
        "{rows:#?}"
    );
    assert!(
        rows["service wechatpay"]
            .1
            .to_lowercase()
            .contains("certificate"),
        "{rows:#?}"
    );
    let _ = stop.send(());
}
