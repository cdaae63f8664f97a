//! Shared helpers of the end-to-end tests: `TestApp` runs the real gateway
//! on 127.0.0.1:0 over a throwaway database (a SQLite file in a temporary
//! folder, or a fresh PostgreSQL database) and talks to it over HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gateway::app::AppState;
use gateway::db::Db;
use gateway::http;
use gateway::keys::{self, KeySpec, Role};
use proto::order::{Money, Sku, StoreId, Unit};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use gateway::db::Backend;

pub mod agent;
pub mod bench;
pub mod pay;
pub mod procs;

/// Where PostgreSQL is; tests make their own database on it.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// What a test does when PostgreSQL cannot be reached (`why`). libtest
/// reports a test that returns early as `ok` and hides what it printed, so
/// a silent skip would read as a pass. Therefore: under CI=true it fails;
/// elsewhere it fails too, with what to do, unless `GATEWAY_TEST_SKIP_PG=1`
/// asks to skip, and then the skip is written straight to stderr (past the
/// runner's capture, which only takes `print!`/`eprint!`), one line per test.
/// The benchmark binaries (not run by libtest: their thread is `main`) just
/// skip the engine with the reason.
pub fn postgres_unavailable(why: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned);
    assert!(!in_ci(), "PostgreSQL is required under CI=true: {why}");
    let Some(test) = test else {
        eprintln!("SKIPPED PostgreSQL: {why}");
        return;
    };
    let skip = std::env::var("GATEWAY_TEST_SKIP_PG").is_ok_and(|v| v == "1" || v == "true");
    assert!(
        skip,
        "PostgreSQL unreachable: {why}. Start it (or point TEST_POSTGRES_URL at one), or run with \
         GATEWAY_TEST_SKIP_PG=1 to skip the PostgreSQL cases"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: PostgreSQL unavailable (GATEWAY_TEST_SKIP_PG=1): {why}"
    );
}

/// A PostgreSQL database made for one test, dropped with it.
pub struct ThrowawayPg {
    pub url: String,
    name: String,
}

impl ThrowawayPg {
    /// Makes a database, or says why not: `Err` when PostgreSQL is not
    /// reachable (a test then skips, or fails under CI=true).
    pub async fn create() -> Result<Self, String> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect(&admin))
                .await
                .map_err(|_| format!("timed out connecting to {admin}"))?
                .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
        let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create a database on {admin}: {e}"))?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Ok(ThrowawayPg {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::AnyConnection::connect(&postgres_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Runs `tests/interop/<script>` with a Python that has zeep and lxml
/// (`ZEEP_PYTHON`, else the `.venv` that `.ci/run` makes) and `env`; fails on
/// a non-zero exit and returns its standard output. `None` when there is no
/// such Python here (the reason is printed); under CI=true that fails.
pub async fn run_zeep(script: &str, env: &[(&str, &str)]) -> Option<String> {
    run_python(script, "zeep, lxml", env).await
}

/// Runs `tests/interop/<script>` with the interop Python (`ZEEP_PYTHON`,
/// else the `.venv` that `.ci/run` makes from tests/interop/requirements.txt)
/// once `import <imports>` works there; fails on a non-zero exit and returns
/// its standard output. `None` when there is no such Python here (the reason
/// is printed); under CI=true that fails.
pub async fn run_python(script: &str, imports: &str, env: &[(&str, &str)]) -> Option<String> {
    let python = interop_python(script, imports)?;
    let out = tokio::process::Command::new(&python)
        .arg(interop_script(script))
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    Some(stdout)
}

/// The interop Python (`ZEEP_PYTHON`, else the `.venv` that `.ci/run` makes
/// from tests/interop/requirements.txt) once `import <imports>` works there.
/// `None` when there is no such Python here (the reason is printed, naming
/// `script`); under CI=true that fails.
pub fn interop_python(script: &str, imports: &str) -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("ZEEP_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    let usable = std::process::Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        let why = format!(
            "no Python with {imports} at {} (set ZEEP_PYTHON, or: python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt)",
            python.display()
        );
        assert!(!in_ci(), "{why}");
        eprintln!("SKIPPED ({script}): {why}");
        return None;
    }
    Some(python)
}

/// The path of `tests/interop/<script>`.
pub fn interop_script(script: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/interop")
        .join(script)
}

/// A throwaway database of either kind.
pub enum TestDb {
    Sqlite(tempfile::TempDir, String),
    Postgres(ThrowawayPg),
}

impl TestDb {
    /// `None` when the backend is unavailable here and skipping was asked
    /// for; see [`postgres_unavailable`].
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/gateway.db", dir.path().display());
                Some(TestDb::Sqlite(dir, url))
            }
            Backend::Postgres => match ThrowawayPg::create().await {
                Ok(pg) => Some(TestDb::Postgres(pg)),
                Err(why) => {
                    postgres_unavailable(&why);
                    None
                }
            },
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite(_, url) => url,
            TestDb::Postgres(pg) => &pg.url,
        }
    }
}

/// A fresh API key (the token) of `role`, bound to `store` for terminals.
/// Sends `body`, raw JSON text, as `method` to `url` under `key`: the status
/// and the answer's JSON (`Null` when there is none). Every 4xx or 5xx must
/// be an application/problem+json.
pub async fn send_json_text(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: String,
) -> (u16, Value) {
    let r = http
        .request(method, &url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{url}: {v}");
    }
    (status, v)
}

/// A 4xx problem whose `code` is one of `want` (`what` names the case).
pub fn refused(what: &str, status: u16, p: &Value, want: &[&str]) {
    assert!(
        (400..500).contains(&status),
        "{what}: answered {status} {p}"
    );
    let code = p["code"].as_str().unwrap_or_default();
    assert!(
        want.contains(&code),
        "{what}: code {code:?}, want {want:?}: {p}"
    );
}

/// The first 40 characters of a hostile value, to name it in a message.
pub fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

pub async fn new_key(db: &Db, role: Role, store: Option<&str>) -> String {
    key_for(db, role, store, None).await
}

/// A key of `role`, bound to `store` and `terminal` where given.
pub async fn key_for(db: &Db, role: Role, store: Option<&str>, terminal: Option<&str>) -> String {
    let spec = KeySpec {
        role,
        store: store.map(|s| StoreId::parse(s).expect("store id")),
        terminal: terminal.map(|t| proto::order::TerminalId::parse(t).expect("terminal id")),
        label: None,
    };
    keys::create(db, spec).await.expect("key").token
}

/// Store `store` selling COLA at 3.50 a piece with `on_hand` of it, written
/// straight into the database (for tests that then hand it to the binary).
pub async fn seed_cola(db: &Db, store: &str, store_name: &str, on_hand: &str) {
    let store = StoreId::parse(store).expect("store id");
    let cola = Sku::parse("COLA").expect("sku");
    gateway::catalog::put_store(db, &store, store_name.into())
        .await
        .expect("store");
    gateway::catalog::put_product(
        db,
        gateway::catalog::ProductSpec {
            sku: cola.clone(),
            name: "可口可乐".into(),
            unit: Unit::Piece,
            price: Money::parse("3.50").expect("price"),
            barcodes: None,
        },
    )
    .await
    .expect("product");
    gateway::catalog::put_item(
        db,
        &store,
        &cola,
        gateway::catalog::ItemChange {
            on_hand: Some(on_hand.to_owned()),
            ..Default::default()
        },
    )
    .await
    .expect("stock");
}

/// The real gateway, serving HTTP on a port of its own.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub admin: String,
    pub app: String,
    /// Terminal keys by store.
    pub terminals: HashMap<String, String>,
    /// The server's state (shares its hub and counters), e.g. to start retention.
    pub state: AppState,
    closing: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Last: the database goes after the server.
    _store: TestDb,
}

impl TestApp {
    /// Starts a gateway with stores S001 and S002 and keys for each role.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        TestApp::spawn_with(backend, |_| {}).await
    }

    /// The same, with `tweak` applied to the server's state before it
    /// serves (limits, public URL, trusted proxies, channels).
    pub async fn spawn_with(
        backend: Backend,
        tweak: impl FnOnce(&mut AppState),
    ) -> Option<TestApp> {
        TestApp::spawn_at(backend, gateway::clock::Clock::system(), tweak).await
    }

    /// The same, the gateway reading the time from `clock` (a manual one
    /// moves only when the test moves it).
    pub async fn spawn_at(
        backend: Backend,
        clock: gateway::clock::Clock,
        tweak: impl FnOnce(&mut AppState),
    ) -> Option<TestApp> {
        let store = TestDb::new(backend).await?;
        let db = Db::connect_with_clock(store.url(), clock)
            .await
            .expect("connect");
        db.migrate_up().await.expect("migrate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (closing, closing_rx) = watch::channel(false);
        let mut state = AppState::new(db.clone(), closing_rx.clone());
        state.orders = gateway::orders::Writer::start(&db)
            .await
            .expect("order writer");
        std::sync::Arc::make_mut(&mut state.inner).feed_poll = Duration::from_millis(200);
        tweak(&mut state);
        let mut rx = closing_rx;
        let served = state.clone();
        let server = tokio::spawn(async move {
            let _ = http::serve(listener, served, async move {
                let _ = rx.wait_for(|c| *c).await;
            })
            .await;
        });
        let admin = new_key(&db, Role::Admin, None).await;
        let app = new_key(&db, Role::App, None).await;
        let mut terminals = HashMap::new();
        for s in ["S001", "S002"] {
            gateway::catalog::put_store(&db, &StoreId::parse(s).expect("id"), format!("门店 {s}"))
                .await
                .expect("store");
            terminals.insert(s.to_owned(), new_key(&db, Role::Terminal, Some(s)).await);
        }
        Some(TestApp {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            db,
            admin,
            app,
            terminals,
            state,
            closing,
            server: Some(server),
            _store: store,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn terminal(&self, store: &str) -> &str {
        &self.terminals[store]
    }

    /// A product listed in every test store with this much stock.
    pub async fn product(&self, sku: &str, name: &str, unit: Unit, price: &str, stock: &str) {
        gateway::catalog::put_product(
            &self.db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse(sku).expect("sku"),
                name: name.to_owned(),
                unit,
                price: Money::parse(price).expect("price"),
                barcodes: None,
            },
        )
        .await
        .expect("product");
        for s in ["S001", "S002"] {
            self.stock(s, sku, stock).await;
        }
    }

    pub async fn stock(&self, store: &str, sku: &str, on_hand: &str) {
        let r = self
            .http
            .put(self.url(&format!("/api/v1/stores/{store}/stock/{sku}")))
            .bearer_auth(&self.admin)
            .json(&json!({ "on_hand": on_hand }))
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.status(),
            200,
            "setting stock: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// One catalog item of a store, as the catalog endpoint shows it.
    pub async fn item(&self, store: &str, sku: &str) -> Value {
        let cat: Value = self
            .get_json(&format!("/api/v1/stores/{store}/catalog"), &self.admin)
            .await
            .1;
        cat["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["sku"] == sku).cloned())
            .unwrap_or(Value::Null)
    }

    pub async fn get_json(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Places an official order through the app key.
    pub async fn order(&self, store: &str, lines: &[(&str, &str)]) -> (u16, Value) {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({"sku": s, "quantity": q}))
            .collect();
        self.post_json(
            "/api/v1/orders",
            &self.app,
            &json!({"store_id": store, "lines": lines}),
        )
        .await
    }

    pub async fn act(&self, id: &str, action: &str, key: &str) -> (u16, Value) {
        self.post_json(
            &format!("/api/v1/orders/{id}/{action}"),
            key,
            &json!({"reason": "test"}),
        )
        .await
    }

    /// A `/metrics` scrape with the admin key (200 asserted).
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "/metrics");
        r.text().await.expect("text")
    }

    /// Every order of a store, across channels.
    pub async fn queue(&self, store: &str) -> Vec<Value> {
        let (_, v) = self
            .get_json(&format!("/api/v1/stores/{store}/orders"), &self.admin)
            .await;
        v["orders"].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.closing.send(true);
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// Runs a test body once per backend: `sqlite` and `postgres` test cases.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}
