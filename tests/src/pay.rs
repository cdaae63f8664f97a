//! The payment test harness: the in-process provider simulator
//! (`hw_sim::payments::Provider`, WeChat Pay and optionally Alipay on one
//! ledger) and the real gateway configured to charge it, over a throwaway
//! database.
//!
//! - [`PaySim::start`] serves the simulator on 127.0.0.1:0; [`PaySim::scenario`],
//!   [`PaySim::ledger`] and [`PaySim::entry`] drive and read it over its
//!   control API (`PUT /scenario`, `GET /ledger`), as any client would.
//! - [`seed_latte_store`] puts store S001, the product LATTE (拿铁, 10.58 a
//!   piece) and an admin, an S001 terminal and an app key into a database.
//! - [`PayGateway::spawn`] does all of it: a database, the simulator, the
//!   gateway with payments configured against it, the seed, and LATTE
//!   stocked in S001; then [`PayGateway::send`], [`PayGateway::order`],
//!   [`PayGateway::pay`] and friends talk to it over HTTP.
//!
//! Both stop when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use gateway::app::AppState;
use gateway::db::Db;
use gateway::http;
use gateway::keys::Role;
use gateway::payments::{AlipayConfig, Payments, PaymentsConfig, WeChatTls};
use hw_sim::payments::{AlipayCredentials, Credentials, LedgerEntry, Provider};
use proto::alipay::{PrivateKey, PublicKey};
use proto::order::{Money, Sku, StoreId, Unit};
use proto::wechatpay::SignType;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{Backend, TestDb};

/// The WeChat Pay merchant both the simulator and the gateway use.
pub const APPID: &str = "wx2421b1c4370ec43b";
pub const MCH_ID: &str = "10000100";
pub const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// Alipay's `app_id` of the merchant app.
pub const ALIPAY_APP_ID: &str = "2021000000000001";
/// Ours (the merchant app's) and Alipay's key pairs: test keys only.
pub const APP_PRIVATE: &str =
    include_str!("../../proto/tests/fixtures/alipay_test_app_private.pem");
pub const APP_PUBLIC: &str = include_str!("../../proto/tests/fixtures/alipay_test_app_public.pem");
pub const ALIPAY_PRIVATE: &str =
    include_str!("../../proto/tests/fixtures/alipay_test_alipay_private.pem");
pub const ALIPAY_PUBLIC: &str =
    include_str!("../../proto/tests/fixtures/alipay_test_alipay_public.pem");

/// The simulator's WeChat Pay merchant.
pub fn wechat_credentials() -> Credentials {
    Credentials {
        appid: APPID.to_owned(),
        mch_id: MCH_ID.to_owned(),
        key: KEY.to_owned(),
    }
}

/// The simulator's Alipay face: checks our requests with the app's public
/// key, signs its answers with Alipay's (test) private key.
pub fn alipay_credentials() -> AlipayCredentials {
    AlipayCredentials {
        app_id: ALIPAY_APP_ID.to_owned(),
        app_public_key: PublicKey::from_pem(APP_PUBLIC).expect("app public key"),
        private_key: PrivateKey::from_pem(ALIPAY_PRIVATE).expect("alipay key"),
    }
}

/// The provider simulator, serving on a port of its own until dropped.
pub struct PaySim {
    /// The simulator itself, for its test hooks.
    pub provider: Arc<Provider>,
    /// `http://127.0.0.1:port`: the base URL of both faces and the control API.
    pub base: String,
    http: reqwest::Client,
    closing: watch::Sender<bool>,
}

impl PaySim {
    /// WeChat Pay with [`wechat_credentials`], and Alipay when given its
    /// credentials (usually [`alipay_credentials`]).
    pub async fn start(alipay: Option<AlipayCredentials>) -> PaySim {
        let provider = Provider::with_alipay(wechat_credentials(), alipay);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (closing, mut rx) = watch::channel(false);
        tokio::spawn(Arc::clone(&provider).serve(listener, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));
        PaySim {
            provider,
            base,
            http: reqwest::Client::new(),
            closing,
        }
    }

    /// The same over HTTPS with `tls` (see `hw_sim::tls::TestPki`), its
    /// control API reached through a client that trusts `ca_pem`.
    pub async fn start_tls(
        alipay: Option<AlipayCredentials>,
        tls: Arc<hw_sim::tls::ServerConfig>,
        ca_pem: &str,
    ) -> PaySim {
        let provider = Provider::with_alipay(wechat_credentials(), alipay);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("https://{}", listener.local_addr().expect("addr"));
        let (closing, mut rx) = watch::channel(false);
        tokio::spawn(Arc::clone(&provider).serve_tls(listener, tls, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
        PaySim {
            provider,
            base,
            http: reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .expect("client"),
            closing,
        }
    }

    /// WeChat Pay only, served through the router `route` makes of the
    /// simulator (a benchmark wraps it in a timing layer).
    pub async fn start_routed(route: impl FnOnce(Arc<Provider>) -> Router) -> PaySim {
        let provider = Provider::new(wechat_credentials());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = route(Arc::clone(&provider));
        let (closing, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|c| *c).await;
                })
                .await
        });
        PaySim {
            provider,
            base,
            http: reqwest::Client::new(),
            closing,
        }
    }

    /// Sets a scenario (`PUT /scenario`); the simulator must take it.
    pub async fn scenario(&self, s: Value) {
        let r = self
            .http
            .put(format!("{}/scenario", self.base))
            .json(&s)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    /// The simulator's ledger, read over its control API (`GET /ledger`).
    pub async fn ledger(&self) -> Vec<LedgerEntry> {
        let v: Value = self
            .http
            .get(format!("{}/ledger", self.base))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        serde_json::from_value(v["charges"].clone()).expect("ledger")
    }

    /// The ledger entry of one out_trade_no; panics when there is none.
    pub async fn entry(&self, out_trade_no: &str) -> LedgerEntry {
        self.ledger()
            .await
            .into_iter()
            .find(|e| e.out_trade_no == out_trade_no)
            .unwrap_or_else(|| panic!("no ledger entry {out_trade_no}"))
    }
}

impl PaySim {
    /// A signed WeChat Pay refund sent straight to the simulator, as another
    /// system holding the merchant's key would send it; its `result_code`.
    pub async fn refund_directly(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
        total_fee: i64,
        refund_fee: i64,
    ) -> String {
        use proto::wechatpay as wx;
        let mut p = wx::Params::new();
        for (k, v) in [
            ("appid", APPID),
            ("mch_id", MCH_ID),
            ("nonce_str", "elsewhereelsewhere"),
            ("out_trade_no", out_trade_no),
            ("out_refund_no", out_refund_no),
        ] {
            p.insert(k.to_owned(), v.to_owned());
        }
        p.insert("total_fee".to_owned(), total_fee.to_string());
        p.insert("refund_fee".to_owned(), refund_fee.to_string());
        wx::sign_in_place(&mut p, KEY, SignType::Md5);
        let r = self
            .http
            .post(format!("{}{}", self.base, wx::PATH_REFUND))
            .body(wx::encode(&p))
            .send()
            .await
            .expect("send");
        let answer = wx::decode(&r.bytes().await.expect("body")).expect("xml");
        answer.get("result_code").cloned().unwrap_or_default()
    }
}

impl Drop for PaySim {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

/// The keys [`seed_latte_store`] made.
pub struct SeedKeys {
    pub admin: String,
    /// A terminal of S001 (no terminal id).
    pub terminal: String,
    pub app: String,
}

/// Store S001 (named "S001"), the product LATTE (拿铁, 10.58 a piece, not
/// stocked anywhere yet) and an admin, an S001 terminal and an app key.
pub async fn seed_latte_store(db: &Db) -> SeedKeys {
    gateway::catalog::put_store(db, &StoreId::parse("S001").expect("id"), "S001".into())
        .await
        .expect("store");
    gateway::catalog::put_product(
        db,
        gateway::catalog::ProductSpec {
            sku: Sku::parse("LATTE").expect("sku"),
            name: "拿铁".to_owned(),
            unit: Unit::Piece,
            price: Money::parse("10.58").expect("price"),
            barcodes: None,
        },
    )
    .await
    .expect("product");
    SeedKeys {
        admin: crate::new_key(db, Role::Admin, None).await,
        terminal: crate::new_key(db, Role::Terminal, Some("S001")).await,
        app: crate::new_key(db, Role::App, None).await,
    }
}

/// How [`PayGateway::spawn`] sets the gateway up.
#[derive(Clone, Debug)]
pub struct PayOptions {
    /// Payments on. Off: the gateway answers 503 `payments_not_configured`
    /// (the simulator still runs).
    pub payments: bool,
    /// The gateway charges WeChat codes (off: refused up front).
    pub wechat: bool,
    /// The simulator serves Alipay ([`alipay_credentials`]) and the gateway
    /// charges Alipay codes.
    pub alipay: bool,
    pub poll_interval: Duration,
    pub deadline: Duration,
    pub request_timeout: Duration,
    /// LATTE on hand in S001.
    pub stock: String,
    /// The extra CA and client certificate the gateway's providers use
    /// (default none: the simulator speaks plain HTTP).
    pub tls: WeChatTls,
}

impl Default for PayOptions {
    /// WeChat Pay only, with the tests' short intervals: polls every 100 ms,
    /// reverses after 6 s, gives a provider call 3 s; 100 lattes. The deadline
    /// and timeout are generous so a loaded machine still charges a code that
    /// pays after 300 ms, and a local call is never cut off by accident.
    fn default() -> Self {
        PayOptions {
            payments: true,
            wechat: true,
            alipay: false,
            poll_interval: Duration::from_millis(100),
            deadline: Duration::from_secs(6),
            request_timeout: Duration::from_secs(3),
            stock: "100".to_owned(),
            tls: WeChatTls::default(),
        }
    }
}

impl PayOptions {
    /// The gateway's payments configuration against the simulator at
    /// `sim_base`. The sweeper runs hourly: tests call it themselves.
    pub fn config(&self, sim_base: &str) -> PaymentsConfig {
        PaymentsConfig {
            wechatpay_base_url: if self.wechat {
                sim_base.to_owned()
            } else {
                String::new()
            },
            wechatpay_appid: APPID.to_owned(),
            wechatpay_mch_id: MCH_ID.to_owned(),
            wechatpay_key: SecretString::from(KEY.to_owned()),
            sign_type: SignType::HmacSha256,
            poll_interval: self.poll_interval,
            deadline: self.deadline,
            request_timeout: self.request_timeout,
            sweep_interval: Duration::from_secs(3600),
            alipay: self.alipay.then(|| AlipayConfig {
                base_url: sim_base.to_owned(),
                app_id: ALIPAY_APP_ID.to_owned(),
                private_key_pem: SecretString::from(APP_PRIVATE.to_owned()),
                public_key_pem: ALIPAY_PUBLIC.to_owned(),
            }),
            tls: self.tls.clone(),
        }
    }
}

/// The real gateway on 127.0.0.1:0 over a throwaway database, charging the
/// simulator; stops when dropped.
pub struct PayGateway {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port`.
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    /// The gateway's order writer (SQLite's group commit).
    pub orders: gateway::orders::Writer,
    pub sim: PaySim,
    /// The payments configuration the gateway runs with (also when
    /// payments are off), for a second `Payments` over the same database.
    pub config: PaymentsConfig,
    pub admin: String,
    /// A terminal of S001.
    pub terminal: String,
    pub app: String,
    closing: watch::Sender<bool>,
    // Last: the database goes after the server.
    _store: TestDb,
}

impl PayGateway {
    /// A database, the simulator ([`PaySim::start`]), the gateway, the seed
    /// ([`seed_latte_store`]) and LATTE stocked in S001. `None` when the
    /// backend is not available here.
    pub async fn spawn(backend: Backend, options: PayOptions) -> Option<PayGateway> {
        let store = TestDb::new(backend).await?;
        let sim = PaySim::start(options.alipay.then(alipay_credentials)).await;
        Some(PayGateway::start(store, sim, options).await)
    }

    /// The same against a simulator already started.
    pub async fn spawn_with(
        backend: Backend,
        sim: PaySim,
        options: PayOptions,
    ) -> Option<PayGateway> {
        let store = TestDb::new(backend).await?;
        Some(PayGateway::start(store, sim, options).await)
    }

    async fn start(store: TestDb, sim: PaySim, options: PayOptions) -> PayGateway {
        let (closing, closing_rx) = watch::channel(false);
        let db = Db::connect(store.url()).await.expect("connect");
        db.migrate_up().await.expect("migrate");
        let config = options.config(&sim.base);
        let mut state = AppState::new(db.clone(), closing_rx.clone());
        state.orders = gateway::orders::Writer::start(&db)
            .await
            .expect("order writer");
        state.payments = options.payments.then(|| {
            Payments::start(&config, db.clone(), state.hub.clone(), closing_rx.clone())
                .expect("payments")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut rx = closing_rx;
        let orders = state.orders.clone();
        tokio::spawn(http::serve(listener, state, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));

        if options.payments {
            // The sweeper's first run comes at once; wait for it, so the
            // hourly sweeper never meets charges a test leaves pending for
            // its own sweep.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while db
                .jobs()
                .snapshot()
                .get(gateway::jobs::PAYMENT_SWEEPER)
                .is_none_or(|s| s.last_ended_at.is_none())
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the payment sweeper's first run did not end"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let keys = seed_latte_store(&db).await;
        let gw = PayGateway {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            db,
            orders,
            sim,
            config,
            admin: keys.admin,
            terminal: keys.terminal,
            app: keys.app,
            closing,
            _store: store,
        };
        let (status, body) = gw
            .send(
                gw.http.put(gw.url("/api/v1/stores/S001/stock/LATTE")),
                &gw.admin,
                json!({"on_hand": options.stock}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        gw
    }

    /// Another store, named after its id (no stock, no keys).
    pub async fn add_store(&self, id: &str) {
        gateway::catalog::put_store(&self.db, &StoreId::parse(id).expect("id"), id.to_owned())
            .await
            .expect("store");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `body` as JSON with `key`; the status and the JSON answer
    /// (`Null` when there is none).
    pub async fn send(&self, req: reqwest::RequestBuilder, key: &str, body: Value) -> (u16, Value) {
        let r = req.bearer_auth(key).json(&body).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An order of two lattes (21.16) in S001 by the app; its id.
    pub async fn order(&self) -> String {
        let (status, body) = self
            .send(
                self.http.post(self.url("/api/v1/orders")),
                &self.app,
                json!({"store_id": "S001", "lines": [{"sku": "LATTE", "quantity": 2}]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// A product of `unit` at `price` (a decimal string), with `on_hand` of
    /// it in S001 (in its unit: "10" pieces, "5.000" kg).
    pub async fn add_product(&self, sku: &str, unit: Unit, price: &str, on_hand: &str) {
        gateway::catalog::put_product(
            &self.db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse(sku).expect("sku"),
                name: sku.to_owned(),
                unit,
                price: Money::parse(price).expect("price"),
                barcodes: None,
            },
        )
        .await
        .expect("product");
        let (status, body) = self
            .send(
                self.http
                    .put(self.url(&format!("/api/v1/stores/S001/stock/{sku}"))),
                &self.admin,
                json!({"on_hand": on_hand}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// An order of `lines` (JSON, as the API takes them) in S001 by the
    /// app; its id.
    pub async fn order_of(&self, lines: Value) -> String {
        let (status, body) = self
            .send(
                self.http.post(self.url("/api/v1/orders")),
                &self.app,
                json!({"store_id": "S001", "lines": lines}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// `POST /api/v1/orders/{order}/{action}` with `key` (and a reason).
    pub async fn act_as(
        &self,
        order: &str,
        action: &str,
        key: &str,
        reason: Option<&str>,
    ) -> (u16, Value) {
        let body = match reason {
            Some(r) => json!({"reason": r}),
            None => json!({}),
        };
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/{action}"))),
            key,
            body,
        )
        .await
    }

    /// The same as the S001 terminal.
    pub async fn act(&self, order: &str, action: &str, reason: Option<&str>) -> (u16, Value) {
        self.act_as(order, action, &self.terminal, reason).await
    }

    /// The S001 terminal refunds order lines (`[{"line_no", "quantity"}]`).
    pub async fn refund_lines(
        &self,
        order: &str,
        request_id: &str,
        lines: Value,
        restock: bool,
    ) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/refunds"))),
            &self.terminal,
            json!({"request_id": request_id, "lines": lines, "restock": restock}),
        )
        .await
    }

    /// The order's events in its store's feed, in order: each payload as
    /// the SSE stream sends it.
    pub async fn feed_of(&self, order: &str) -> Vec<Value> {
        let payloads: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM order_events WHERE order_id = $1 ORDER BY seq")
                .bind(order.to_owned())
                .fetch_all(&self.db.pool)
                .await
                .expect("feed");
        payloads
            .iter()
            .map(|p| serde_json::from_str(p).expect("payload"))
            .collect()
    }

    /// On hand and reserved of `sku` in S001, in thousandths.
    pub async fn stock_of(&self, sku: &str) -> (i64, i64) {
        sqlx::query_as(
            "SELECT on_hand, reserved FROM store_items WHERE store_id = 'S001' AND sku = $1",
        )
        .bind(sku.to_owned())
        .fetch_one(&self.db.pool)
        .await
        .expect("stock")
    }

    /// The S001 terminal pays `order` with a payment code.
    pub async fn pay(&self, order: &str, code: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/payments"))),
            &self.terminal,
            json!({"auth_code": code}),
        )
        .await
    }

    /// The S001 terminal refunds an amount of `order`.
    pub async fn refund(&self, order: &str, request_id: &str, amount: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/refunds"))),
            &self.terminal,
            json!({"request_id": request_id, "amount": amount}),
        )
        .await
    }

    /// `GET /api/v1/orders/{order}/payments` with `key`; must answer 200.
    pub async fn payments_as(&self, order: &str, key: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/orders/{order}/payments")))
            .bearer_auth(key)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// The payments document of `order`, as the S001 terminal sees it.
    pub async fn payments(&self, order: &str) -> Value {
        self.payments_as(order, &self.terminal).await
    }

    /// The order's `payment_status` in its payments document.
    pub async fn payment_status(&self, order: &str) -> String {
        str_of(&self.payments(order).await, "payment_status").to_owned()
    }

    /// Sets a scenario at the simulator ([`PaySim::scenario`]).
    pub async fn scenario(&self, s: Value) {
        self.sim.scenario(s).await
    }

    /// The simulator's ledger ([`PaySim::ledger`]).
    pub async fn ledger(&self) -> Vec<LedgerEntry> {
        self.sim.ledger().await
    }

    /// One ledger entry ([`PaySim::entry`]).
    pub async fn entry(&self, out_trade_no: &str) -> LedgerEntry {
        self.sim.entry(out_trade_no).await
    }

    /// Pays a new order ([`PayGateway::order`]) with `code` under one
    /// scenario; must answer 200. The order, the charge and its ledger entry.
    pub async fn pay_under(&self, scenario: Value, code: &str) -> (String, Value, LedgerEntry) {
        self.scenario(scenario).await;
        let order = self.order().await;
        let (status, charge) = self.pay(&order, code).await;
        assert_eq!(status, 200, "{charge}");
        let entry = self.entry(str_of(&charge, "out_trade_no")).await;
        (order, charge, entry)
    }
}

impl Drop for PayGateway {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

/// A string member of a JSON object, `""` when missing.
pub fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}
