//! Alipay payment codes end to end: the real gateway on port 0 over a
//! throwaway database (SQLite and PostgreSQL), charging through the
//! Alipay-shaped provider against the in-process simulator, whose WeChat and
//! Alipay faces share one ledger. Every test checks both the gateway's
//! records and the simulator's ledger. Fixed RSA test keys from
//! proto/tests/fixtures/; short poll intervals; no timed assertions.

use std::sync::Arc;
use std::time::Duration;

use gateway::db::Db;
use gateway::http::{self, AppState};
use gateway::keys::Role;
use gateway::payments::{AlipayConfig, Payments, PaymentsConfig};
use hw_sim::payments::{AlipayCredentials, Credentials, LedgerEntry, Provider};
use proto::alipay::{PrivateKey, PublicKey};
use proto::order::{Money, Sku, StoreId, Unit};
use proto::wechatpay::SignType;
use secrecy::SecretString;
use serde_json::{Value, json};
use tests::{Backend, TestDb};
use tokio::sync::watch;

const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
const ALIPAY_APP_ID: &str = "2021000000000001";
/// Ours (the merchant app's) and Alipay's key pairs: test keys only.
const APP_PRIVATE: &str = include_str!("../../proto/tests/fixtures/alipay_test_app_private.pem");
const APP_PUBLIC: &str = include_str!("../../proto/tests/fixtures/alipay_test_app_public.pem");
const ALIPAY_PRIVATE: &str =
    include_str!("../../proto/tests/fixtures/alipay_test_alipay_private.pem");
const ALIPAY_PUBLIC: &str =
    include_str!("../../proto/tests/fixtures/alipay_test_alipay_public.pem");

/// An Alipay payment code (18 digits starting 28).
const CODE: &str = "284567890123456789";
const WECHAT_CODE: &str = "134567890123456789";

struct PayApp {
    base: String,
    http: reqwest::Client,
    db: Db,
    sim: Arc<Provider>,
    sim_base: String,
    config: PaymentsConfig,
    terminal: String,
    app: String,
    closing: watch::Sender<bool>,
    _store: TestDb,
}

fn alipay_config(sim_base: &str) -> AlipayConfig {
    AlipayConfig {
        base_url: sim_base.to_owned(),
        app_id: ALIPAY_APP_ID.to_owned(),
        private_key_pem: SecretString::from(APP_PRIVATE.to_owned()),
        public_key_pem: ALIPAY_PUBLIC.to_owned(),
    }
}

/// Alipay always; WeChat Pay too when `wechat`.
fn config(sim_base: &str, wechat: bool) -> PaymentsConfig {
    PaymentsConfig {
        wechatpay_base_url: if wechat {
            sim_base.to_owned()
        } else {
            String::new()
        },
        wechatpay_appid: APPID.to_owned(),
        wechatpay_mch_id: MCH_ID.to_owned(),
        wechatpay_key: SecretString::from(KEY.to_owned()),
        sign_type: SignType::HmacSha256,
        poll_interval: Duration::from_millis(100),
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        // Long: the tests call the sweeper themselves.
        sweep_interval: Duration::from_secs(3600),
        alipay: Some(alipay_config(sim_base)),
    }
}

impl PayApp {
    /// `None` when the backend is not available here.
    async fn spawn(backend: Backend, wechat: bool) -> Option<PayApp> {
        let store = TestDb::new(backend).await?;
        let (closing, closing_rx) = watch::channel(false);

        let sim = Provider::with_alipay(
            Credentials {
                appid: APPID.to_owned(),
                mch_id: MCH_ID.to_owned(),
                key: KEY.to_owned(),
            },
            Some(AlipayCredentials {
                app_id: ALIPAY_APP_ID.to_owned(),
                app_public_key: PublicKey::from_pem(APP_PUBLIC).expect("app public key"),
                private_key: PrivateKey::from_pem(ALIPAY_PRIVATE).expect("alipay key"),
            }),
        );
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sim_base = format!("http://{}", sim_listener.local_addr().expect("addr"));
        let mut rx = closing_rx.clone();
        tokio::spawn(Arc::clone(&sim).serve(sim_listener, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));

        let db = Db::connect(store.url()).await.expect("connect");
        db.migrate_up().await.expect("migrate");
        let config = config(&sim_base, wechat);
        let mut state = AppState::new(db.clone(), closing_rx.clone());
        state.payments = Some(
            Payments::start(&config, db.clone(), state.hub.clone(), closing_rx.clone())
                .expect("payments"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut rx = closing_rx;
        tokio::spawn(http::serve(listener, state, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));

        gateway::catalog::put_store(&db, &StoreId::parse("S001").expect("id"), "S001".into())
            .await
            .expect("store");
        let admin = tests::new_key(&db, Role::Admin, None).await;
        let app = PayApp {
            base,
            http: reqwest::Client::new(),
            terminal: tests::new_key(&db, Role::Terminal, Some("S001")).await,
            app: tests::new_key(&db, Role::App, None).await,
            db,
            sim,
            sim_base,
            config,
            closing,
            _store: store,
        };
        gateway::catalog::put_product(
            &app.db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse("LATTE").expect("sku"),
                name: "拿铁".to_owned(),
                unit: Unit::Piece,
                price: Money::parse("10.58").expect("price"),
            },
        )
        .await
        .expect("product");
        let (status, body) = app
            .send(
                app.http.put(app.url("/api/v1/stores/S001/stock/LATTE")),
                &admin,
                json!({"on_hand": "100"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        Some(app)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder, key: &str, body: Value) -> (u16, Value) {
        let r = req.bearer_auth(key).json(&body).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An order of two lattes (21.16) in S001; its id.
    async fn order(&self) -> String {
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

    async fn pay(&self, order: &str, code: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/payments"))),
            &self.terminal,
            json!({"auth_code": code}),
        )
        .await
    }

    async fn refund(&self, order: &str, request_id: &str, amount: &str) -> (u16, Value) {
        self.send(
            self.http
                .post(self.url(&format!("/api/v1/orders/{order}/refunds"))),
            &self.terminal,
            json!({"request_id": request_id, "amount": amount}),
        )
        .await
    }

    async fn payments(&self, order: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/orders/{order}/payments")))
            .bearer_auth(&self.terminal)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    async fn payment_status(&self, order: &str) -> String {
        str_of(&self.payments(order).await, "payment_status").to_owned()
    }

    async fn scenario(&self, s: Value) {
        let r = self
            .http
            .put(format!("{}/scenario", self.sim_base))
            .json(&s)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    async fn ledger(&self) -> Vec<LedgerEntry> {
        let v: Value = self
            .http
            .get(format!("{}/ledger", self.sim_base))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        serde_json::from_value(v["charges"].clone()).expect("ledger")
    }

    async fn entry(&self, out_trade_no: &str) -> LedgerEntry {
        self.ledger()
            .await
            .into_iter()
            .find(|e| e.out_trade_no == out_trade_no)
            .unwrap_or_else(|| panic!("no ledger entry {out_trade_no}"))
    }

    /// The provider calls of an order's first charge, in order.
    async fn calls(&self, order: &str) -> Vec<String> {
        self.payments(order).await["charges"][0]["exchanges"]
            .as_array()
            .expect("exchanges")
            .iter()
            .map(|e| str_of(e, "call").to_owned())
            .collect()
    }
}

impl Drop for PayApp {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// Pays a new order with the Alipay code under one scenario.
async fn pay_under(app: &PayApp, scenario: Value) -> (String, Value, LedgerEntry) {
    app.scenario(scenario).await;
    let order = app.order().await;
    let (status, charge) = app.pay(&order, CODE).await;
    assert_eq!(status, 200, "{charge}");
    let entry = app.entry(str_of(&charge, "out_trade_no")).await;
    (order, charge, entry)
}

async fn every_outcome_with_an_alipay_code(backend: Backend) {
    let Some(app) = PayApp::spawn(backend, false).await else {
        return;
    };

    // Paid at once; a retry by the terminal charges nothing more.
    let (order, charge, entry) = pay_under(&app, json!({"outcome": "success"})).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(str_of(&charge, "provider"), "alipay");
    assert_eq!(str_of(&charge, "code_kind"), "alipay");
    assert_eq!(str_of(&charge, "auth_code"), "28******6789");
    assert!(!charge.to_string().contains(CODE), "the code is masked");
    assert!(!str_of(&charge, "transaction_id").is_empty());
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(
        (
            entry.provider.as_str(),
            entry.state.as_str(),
            entry.total_fen
        ),
        ("alipay", "SUCCESS", 2116)
    );
    assert_eq!(entry.micropay_calls, 1);
    let (status, again) = app.pay(&order, CODE).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], charge["id"]);
    assert_eq!(app.entry(str_of(&charge, "id")).await.micropay_calls, 1);
    assert_eq!(app.calls(&order).await, ["micropay"]);

    // 10003, then paid: found by querying.
    let (order, charge, entry) = pay_under(
        &app,
        json!({"outcome": "userpaying_then_success", "after_ms": 300}),
    )
    .await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(entry.state, "SUCCESS");
    assert!(entry.query_calls >= 1);
    assert_eq!(entry.reverse_calls, 0);

    // 20000, yet the money moved: the query finds it.
    let (order, charge, entry) =
        pay_under(&app, json!({"outcome": "system_error_then_success"})).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(entry.state, "SUCCESS");
    assert_eq!((entry.micropay_calls, entry.reverse_calls), (1, 0));

    // Waiting forever: cancelled at the deadline, order payable again.
    let (order, charge, entry) = pay_under(
        &app,
        json!({"outcome": "userpaying_forever", "reverse_retries": 2}),
    )
    .await;
    assert_eq!(str_of(&charge, "state"), "reversed", "{charge}");
    assert_eq!(str_of(&charge, "code"), "payment_timeout");
    assert_eq!(app.payment_status(&order).await, "unpaid");
    assert_eq!(entry.state, "REVOKED");
    assert_eq!(entry.reverse_calls, 3, "cancel repeated while retry_flag=Y");
    let calls = app.calls(&order).await;
    assert_eq!(calls.iter().filter(|c| *c == "reverse").count(), 3);
    app.scenario(json!({"outcome": "success"})).await;
    let (status, second) = app.pay(&order, CODE).await;
    assert_eq!(status, 200);
    assert_eq!(str_of(&second, "state"), "succeeded", "{second}");
    assert_ne!(second["id"], charge["id"]);

    // Definite failures: unpaid, no query, no cancel.
    for (outcome, code) in [
        ("insufficient_balance", "insufficient_balance"),
        ("invalid_code", "invalid_payment_code"),
    ] {
        let (order, charge, entry) = pay_under(&app, json!({"outcome": outcome})).await;
        assert_eq!(str_of(&charge, "state"), "failed", "{outcome}: {charge}");
        assert_eq!(str_of(&charge, "code"), code);
        assert_eq!(app.payment_status(&order).await, "unpaid");
        assert_eq!(entry.state, "PAYERROR");
        assert_eq!((entry.query_calls, entry.reverse_calls), (0, 0));
    }

    // Only Alipay is configured here: WeChat codes are refused up front.
    let order = app.order().await;
    let (status, body) = app.pay(&order, WECHAT_CODE).await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "unsupported_payment_code")
    );

    // Every charge the provider saw is final: nothing for a sweeper.
    for e in app.ledger().await {
        assert!(
            ["SUCCESS", "REVOKED", "PAYERROR"].contains(&e.state.as_str()),
            "{e:?}"
        );
        assert_eq!(e.provider, "alipay");
    }
    let fresh = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 0);
}

async fn the_code_prefix_picks_the_provider(backend: Backend) {
    let Some(app) = PayApp::spawn(backend, true).await else {
        return;
    };
    app.scenario(json!({"outcome": "success"})).await;
    let by_wechat = app.order().await;
    let by_alipay = app.order().await;
    let (status, w) = app.pay(&by_wechat, WECHAT_CODE).await;
    assert_eq!(status, 200, "{w}");
    let (status, a) = app.pay(&by_alipay, CODE).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (str_of(&w, "state"), str_of(&w, "provider")),
        ("succeeded", "wechatpay")
    );
    assert_eq!(
        (str_of(&a, "state"), str_of(&a, "provider")),
        ("succeeded", "alipay")
    );
    assert_eq!(app.payment_status(&by_wechat).await, "paid");
    assert_eq!(app.payment_status(&by_alipay).await, "paid");
    let w_entry = app.entry(str_of(&w, "id")).await;
    let a_entry = app.entry(str_of(&a, "id")).await;
    assert_eq!(
        (w_entry.provider.as_str(), w_entry.state.as_str()),
        ("wechatpay", "SUCCESS")
    );
    assert_eq!(
        (a_entry.provider.as_str(), a_entry.state.as_str()),
        ("alipay", "SUCCESS")
    );
    assert_eq!(app.ledger().await.len(), 2, "one charge each, no more");

    // A scenario keyed by one code applies whichever face sees it.
    app.scenario(json!({"auth_code": CODE, "outcome": "insufficient_balance"}))
        .await;
    let order = app.order().await;
    let (_, refused) = app.pay(&order, CODE).await;
    assert_eq!(
        str_of(&refused, "code"),
        "insufficient_balance",
        "{refused}"
    );
    let order = app.order().await;
    let (_, paid) = app.pay(&order, WECHAT_CODE).await;
    assert_eq!(str_of(&paid, "state"), "succeeded", "{paid}");
}

async fn refunds_go_through_alipay(backend: Backend) {
    let Some(app) = PayApp::spawn(backend, true).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let (status, r1) = app.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200, "{r1}");
    assert_eq!(str_of(&r1, "state"), "succeeded");
    assert_eq!(app.payment_status(&order).await, "partially_refunded");
    let (status, again) = app.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], r1["id"]);
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 500);

    let (status, body) = app.refund(&order, "r-2", "16.17").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "refund_exceeds_paid"),
        "{body}"
    );
    let (status, r2) = app.refund(&order, "r-2", "16.16").await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(str_of(&r2, "state"), "succeeded");
    assert_eq!(app.payment_status(&order).await, "refunded");
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.refunded_fen, entry.total_fen), (2116, 2116));
    let calls = app.calls(&order).await;
    assert_eq!(calls.iter().filter(|c| c.starts_with("refund ")).count(), 2);
}

async fn a_forged_alipay_answer_is_never_trusted(backend: Backend) {
    let Some(app) = PayApp::spawn(backend, false).await else {
        return;
    };
    // The simulator signs with a key that is not Alipay's: every answer
    // is a forgery as far as the gateway can tell.
    app.sim
        .alipay_sign_with(Some(PrivateKey::from_pem(APP_PRIVATE).expect("key")));
    app.scenario(json!({"outcome": "success"})).await;
    let order = app.order().await;
    let (status, charge) = app.pay(&order, CODE).await;
    assert_eq!(status, 202, "still open: {charge}");
    assert_ne!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(str_of(&charge, "state"), "pending", "{charge}");
    assert_eq!(app.payment_status(&order).await, "unpaid");
    let log = app.payments(&order).await;
    let exchanges = log["charges"][0]["exchanges"].as_array().expect("log");
    assert!(
        exchanges.iter().all(|e| str_of(e, "outcome") != "paid"),
        "{log}"
    );
    assert!(
        exchanges
            .iter()
            .any(|e| str_of(e, "detail").contains("signature")),
        "{log}"
    );
    // The cancels did reach the provider: the money went back.
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!(entry.state, "REVOKED");
    assert!(entry.reverse_calls >= 1);

    // Once answers verify again, the sweeper settles it as reversed.
    app.sim.alipay_sign_with(None);
    let fresh = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 1);
    let log = app.payments(&order).await;
    assert_eq!(str_of(&log["charges"][0], "state"), "reversed", "{log}");
    assert_eq!(str_of(&log, "payment_status"), "unpaid");
}

tests::on_both_databases!(
    every_outcome_with_an_alipay_code,
    the_code_prefix_picks_the_provider,
    refunds_go_through_alipay,
    a_forged_alipay_answer_is_never_trusted,
);
