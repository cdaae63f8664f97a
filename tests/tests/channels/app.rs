//! The real gateway with its channels on, against the in-process platform
//! simulator (`hw_sim::platform`), over a throwaway SQLite file or
//! PostgreSQL database. Configuration is explicit (no process environment),
//! so tests run side by side; a gateway can be stopped and another started
//! on the same database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gateway::app::AppState;
use gateway::channels::{Channels, ChannelsConfig, MeituanConfig};
use gateway::clock::Clock;
use gateway::db::Db;
use gateway::http;
use gateway::keys::Role;
use gateway::outbox::OutboxConfig;
use hw_sim::platform::{Faults, ItemSpec, PlatformConfig, PlatformSim, PushOutcome, PushRequest};
use proto::order::{Money, Sku, StoreId, Unit};
use secrecy::SecretString;
use serde_json::{Value, json};
use tests::{Backend, TestDb};
use tokio::sync::watch;

pub const APP_ID: &str = "mt-app-7";
pub const SECRET: &str = "mt-secret-0123456789";
pub const WEBHOOK_PLATFORM: &str = "aggr";
pub const WEBHOOK_SECRET: &str = "whsec_test_0123";

/// Fast settings: short backoff and polls, so "a while" is seconds.
pub fn config(sim_url: &str) -> ChannelsConfig {
    let mut webhook_secrets = HashMap::new();
    webhook_secrets.insert(
        WEBHOOK_PLATFORM.to_owned(),
        SecretString::from(WEBHOOK_SECRET.to_owned()),
    );
    ChannelsConfig {
        meituan: Some(MeituanConfig {
            base_url: sim_url.to_owned(),
            app_id: APP_ID.to_owned(),
            secret: SecretString::from(SECRET.to_owned()),
            stores: Vec::new(),
        }),
        webhook_secrets,
        public_url: None,
        timestamp_window: Duration::from_secs(300),
        unconfirmed_alert: Duration::from_secs(600),
        alert_check: Duration::from_millis(100),
        outbox: OutboxConfig {
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            max_attempts: 1000,
            max_age: Duration::from_secs(3600),
            poll: Duration::from_millis(50),
            request_timeout: Duration::from_secs(2),
            concurrency: 16,
            batch: 200,
        },
        extra_ca_pem: None,
    }
}

pub struct Chan {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub sim: PlatformSim,
    pub admin: String,
    /// Terminal S001-T01 of store S001.
    pub terminal: String,
    closing: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    pub store: Arc<TestDb>,
    /// The gateway's order writer (on SQLite, its batcher's test faults).
    #[allow(dead_code)]
    pub orders: gateway::orders::Writer,
}

impl Chan {
    /// A gateway on a fresh database with stores S001, S002, products COLA
    /// (piece, 3.50, stock 100 in each store) and DUCK (kg, 39.90, 10 kg).
    pub async fn spawn(backend: Backend) -> Option<Chan> {
        Chan::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(
        backend: Backend,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Option<Chan> {
        Chan::spawn_at(backend, Clock::system(), tweak).await
    }

    /// As [`Chan::spawn_with`], the gateway reading the time from `clock`.
    pub async fn spawn_at(
        backend: Backend,
        clock: Clock,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Option<Chan> {
        let store = Arc::new(TestDb::new(backend).await?);
        let app = Chan::start_at(store, None, clock, tweak).await;
        for s in ["S001", "S002"] {
            gateway::catalog::put_store(&app.db, &StoreId::parse(s).unwrap(), format!("门店 {s}"))
                .await
                .unwrap();
        }
        app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
            .await;
        app.product("DUCK", "卤鸭脖", Unit::Kg, "39.90", "10").await;
        Some(app)
    }

    /// A gateway on `store` (migrated if needed), talking to `sim` (a new
    /// simulator when `None`).
    pub async fn start(
        store: Arc<TestDb>,
        sim: Option<PlatformSim>,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Chan {
        Chan::start_at(store, sim, Clock::system(), tweak).await
    }

    /// As [`Chan::start`], listening on `addr` (a stopped gateway's, so
    /// browsers and the platform find the new one where the old one was).
    /// Used by tests/board.rs, which shares this module.
    #[allow(dead_code)]
    pub async fn start_on(
        store: Arc<TestDb>,
        sim: PlatformSim,
        addr: &str,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Chan {
        Chan::start_bound(store, Some(sim), Clock::system(), addr, tweak).await
    }

    async fn start_at(
        store: Arc<TestDb>,
        sim: Option<PlatformSim>,
        clock: Clock,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Chan {
        Chan::start_bound(store, sim, clock, "127.0.0.1:0", tweak).await
    }

    async fn start_bound(
        store: Arc<TestDb>,
        sim: Option<PlatformSim>,
        clock: Clock,
        addr: &str,
        tweak: impl FnOnce(&mut ChannelsConfig),
    ) -> Chan {
        let db = Db::connect_with_clock(store.url(), clock)
            .await
            .expect("connect");
        db.migrate_up().await.expect("migrate");
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sim = match sim {
            Some(s) => {
                s.set_gateway_url(&base);
                s
            }
            None => PlatformSim::start(PlatformConfig::new(&base, APP_ID, SECRET))
                .await
                .expect("platform simulator"),
        };
        let (closing, closing_rx) = watch::channel(false);
        let mut state = AppState::new(db.clone(), closing_rx.clone());
        state.orders = gateway::orders::Writer::start(&db)
            .await
            .expect("order writer");
        let orders = state.orders.clone();
        Arc::make_mut(&mut state.inner).feed_poll = Duration::from_millis(200);
        let mut cfg = config(&sim.url());
        tweak(&mut cfg);
        let channels = Channels::start(cfg, db.clone(), state.hub.clone(), closing_rx.clone())
            .await
            .expect("channels");
        state.channels = Some(channels);
        let mut rx = closing_rx;
        let server = tokio::spawn(async move {
            let _ = http::serve(listener, state, async move {
                let _ = rx.wait_for(|c| *c).await;
            })
            .await;
        });
        let admin = key(&db, Role::Admin, None, None).await;
        let terminal = key(
            &db,
            Role::Terminal,
            Some("S001"),
            Some(&format!(
                "S001-T{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            )),
        )
        .await;
        Chan {
            base,
            http: reqwest::Client::new(),
            db,
            sim,
            admin,
            terminal,
            closing,
            server: Some(server),
            store,
            orders,
        }
    }

    /// Stops serving and the background tasks (dispatcher, alerts), as a
    /// crash would as far as the database is concerned.
    pub async fn stop(mut self) -> (Arc<TestDb>, PlatformSim) {
        let _ = self.closing.send(true);
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
        self.db.pool.close().await;
        (Arc::clone(&self.store), self.sim.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn product(&self, sku: &str, name: &str, unit: Unit, price: &str, stock: &str) {
        gateway::catalog::put_product(
            &self.db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse(sku).unwrap(),
                name: name.to_owned(),
                unit,
                price: Money::parse(price).unwrap(),
                barcodes: None,
            },
        )
        .await
        .unwrap();
        for s in ["S001", "S002"] {
            self.stock(s, sku, json!({ "on_hand": stock })).await;
        }
    }

    pub async fn stock(&self, store: &str, sku: &str, body: Value) {
        let (status, v) = self
            .put(&format!("/api/v1/stores/{store}/stock/{sku}"), body)
            .await;
        assert_eq!(status, 200, "{v}");
    }

    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = req.bearer_auth(key);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)), &self.admin, None)
            .await
    }

    /// A PUT with the admin key.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(self.url(path)), &self.admin, Some(body))
            .await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)), key, Some(body))
            .await
    }

    /// Every order of a store.
    pub async fn queue(&self, store: &str) -> Vec<Value> {
        let (s, v) = self.get(&format!("/api/v1/stores/{store}/orders")).await;
        assert_eq!(s, 200, "{v}");
        v["orders"].as_array().cloned().unwrap_or_default()
    }

    /// The store's order for a platform order id.
    pub async fn order_for(&self, platform_order_id: &str) -> Option<Value> {
        self.queue("S001")
            .await
            .into_iter()
            .find(|o| o["channel_order_id"] == platform_order_id)
    }

    /// Waits (up to `secs`) for the order of a platform order id.
    pub async fn wait_order(&self, platform_order_id: &str, secs: u64) -> Value {
        eventually(secs, || async { self.order_for(platform_order_id).await })
            .await
            .unwrap_or_else(|| panic!("no order for {platform_order_id} within {secs} s"))
    }

    /// Feed events of a store, oldest first: (kind, payload).
    pub async fn feed(&self, store: &str) -> Vec<(String, Value)> {
        let rows = gateway::events::after(&self.db, &StoreId::parse(store).unwrap(), 0, 10_000)
            .await
            .unwrap();
        rows.into_iter()
            .map(|e| (e.kind, serde_json::from_str(&e.payload).unwrap()))
            .collect()
    }

    /// How many feed events of `kind` a store has.
    pub async fn feed_count(&self, store: &str, kind: &str) -> usize {
        self.feed(store)
            .await
            .into_iter()
            .filter(|(k, _)| k == kind)
            .count()
    }

    /// Pushes a new order from the platform (the gateway's answer, unchecked).
    pub async fn push_order(&self, store: &str, items: Vec<ItemSpec>) -> PushOutcome {
        self.sim
            .push(PushRequest::new_order(store, items))
            .await
            .unwrap()
    }

    /// Pushes a new order, checks it is answered 200 and waits (2 s) for the
    /// store's order made from it.
    pub async fn push_new(&self, store: &str, items: Vec<ItemSpec>) -> (PushOutcome, Value) {
        let out = self.push_order(store, items).await;
        assert_eq!(out.status, 200, "{:?}", out.answer);
        let order = self.wait_order(&out.order_id, 2).await;
        (out, order)
    }

    /// Takes the store's actions on an order with the terminal's key, in
    /// turn, each answered 200.
    pub async fn act_all(&self, id: &str, actions: &[&str]) {
        self.act_all_with(id, actions, json!({})).await;
    }

    /// [`Chan::act_all`] with a request body.
    pub async fn act_all_with(&self, id: &str, actions: &[&str], body: Value) {
        for a in actions {
            let (s, v) = self
                .post(
                    &format!("/api/v1/orders/{id}/{a}"),
                    &self.terminal,
                    body.clone(),
                )
                .await;
            assert_eq!(s, 200, "{a} on {id}: {v}");
        }
    }

    /// A store's catalog entry for `sku`.
    pub async fn catalog_item(&self, store: &str, sku: &str) -> Value {
        let (s, cat) = self.get(&format!("/api/v1/stores/{store}/catalog")).await;
        assert_eq!(s, 200, "{cat}");
        cat["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sku"] == sku)
            .unwrap_or_else(|| panic!("no {sku} in the catalog of {store}: {cat}"))
            .clone()
    }

    /// An order's third-party details.
    pub async fn third_party(&self, id: &str) -> Value {
        let (s, tp) = self.get(&format!("/api/v1/orders/{id}/third_party")).await;
        assert_eq!(s, 200, "{tp}");
        tp
    }

    /// The paths of the calls the platform answered, in order.
    pub fn platform_calls(&self) -> Vec<String> {
        self.sim.received_ok().into_iter().map(|r| r.path).collect()
    }

    pub async fn outbox_counts(&self) -> Value {
        let (s, v) = self.get("/api/v1/outbox/stats").await;
        assert_eq!(s, 200, "{v}");
        v["outbox"].clone()
    }

    /// Waits until the process counter `name` (`dispatcher_rounds`,
    /// `alert_rounds`) has gone up by 2 from now: the pass running now may
    /// have started before the caller's action, the next one cannot, so the
    /// component has had its chance and a negative check may follow.
    pub async fn two_more(&self, name: &str) {
        let rounds = || async {
            let (s, v) = self.get("/api/v1/outbox/stats").await;
            assert_eq!(s, 200, "{v}");
            v["process"][name].as_u64().expect(name)
        };
        let from = rounds().await;
        eventually(20, || async { (rounds().await >= from + 2).then_some(()) })
            .await
            .unwrap_or_else(|| panic!("{name} stuck at {from} for 20 s"));
    }

    /// Waits until nothing is pending or being delivered.
    pub async fn drained(&self, secs: u64) -> Value {
        eventually(secs, || async {
            let c = self.outbox_counts().await;
            (c["pending"] == 0 && c["delivering"] == 0).then_some(c)
        })
        .await
        .unwrap_or_else(|| panic!("outbox not drained within {secs} s"))
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

pub use tests::key_for as key;

/// COLA as the platform sells it: `n` at 3.50.
pub fn cola(n: u32) -> ItemSpec {
    ItemSpec::new("COLA", "可口可乐", n, 350)
}

/// Makes the platform's API answer 503 until its faults are cleared.
pub fn platform_down(sim: &PlatformSim) {
    sim.set_faults(Faults {
        status: Some(503),
        ..Faults::default()
    })
    .unwrap();
}

/// Polls `f` every 25 ms until it gives `Some`, for at most `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads SSE events (event, data) from a response body.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(r: reqwest::Response) -> Self {
        SseReader {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event within `timeout`, or `None`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut ev, mut data) = (String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            ev = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Some((ev, serde_json::from_str(&data).ok()?));
                }
                let chunk = self.body.next().await?.ok()?;
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .ok()
        .flatten()
    }
}
