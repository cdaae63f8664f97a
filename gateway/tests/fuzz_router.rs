//! The router in-process (no socket) over a throwaway SQLite file, with
//! payments (against the provider simulator) and both channels on, fed
//! arbitrary and mutated bodies on every route that reads one from outside:
//! orders, order actions, refunds, the admin PUTs, SOAP, signed Meituan
//! pushes and signed webhook pushes. Whatever the body, the answer is never
//! a 5xx (a panic in a handler is answered 500 by the panic layer, so this
//! also proves no panic). Pushes and SOAP calls are signed or authenticated
//! properly, so the damage reaches the decoders behind the checks.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gateway::app::AppState;
use gateway::channels::{Channels, ChannelsConfig, MeituanConfig};
use gateway::db::Db;
use gateway::http;
use gateway::keys::{self, KeySpec, Role};
use gateway::payments::Payments;
use proptest::prelude::*;
use proto::meituan as mt;
use proto::order::{Money, Sku, StoreId, TerminalId, Unit};
use proto::soap::{self, SubmitLine, SubmitOrder, UsernameToken};
use secrecy::SecretString;
use serde_json::{Value, json};
use tests::pay::{PayOptions, PaySim};
use tower::ServiceExt;

const PUBLIC: &str = "http://gw.test";
const MT_APP: &str = "mt-fuzz";
const MT_SECRET: &str = "mt-fuzz-secret";
const WH_PLATFORM: &str = "aggr";
const WH_SECRET: &str = "whsec_fuzz";
const TERMINAL: &str = "S001-T01";

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
    admin: String,
    app: String,
    terminal: String,
    /// A paid order (COLA × 5 and DUCK 0.355 kg), for refunds.
    paid: String,
    /// An open order, for actions.
    open: String,
    // Kept alive for the router's sake.
    _db: tempfile::TempDir,
    _sim: PaySim,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gateway.db", dir.path().display());
        let (router, keys, sim) = rt.block_on(async {
            let db = Db::connect(&url).await.expect("connect");
            db.migrate_up().await.expect("migrate");
            let keys = seed(&db).await;
            let sim = PaySim::start(None).await;
            // Never closed: the fixture lives as long as the test binary.
            let closing = Box::leak(Box::new(tokio::sync::watch::channel(false).0)).subscribe();
            let mut state = AppState::new(db.clone(), closing.clone());
            state.orders = gateway::orders::Writer::start(&db)
                .await
                .expect("order writer");
            Arc::make_mut(&mut state.inner).public_url = Some(PUBLIC.to_owned());
            let pay = PayOptions::default().config(&sim.base);
            state.payments = Some(
                Payments::start(&pay, db.clone(), state.hub.clone(), closing.clone())
                    .expect("payments"),
            );
            let mut webhook_secrets = HashMap::new();
            webhook_secrets.insert(
                WH_PLATFORM.to_owned(),
                SecretString::from(WH_SECRET.to_owned()),
            );
            let cfg = ChannelsConfig {
                meituan: Some(MeituanConfig {
                    // Nothing listens: outbound calls just fail and retry.
                    base_url: "http://127.0.0.1:1".into(),
                    app_id: MT_APP.into(),
                    secret: SecretString::from(MT_SECRET.to_owned()),
                    stores: Vec::new(),
                }),
                webhook_secrets,
                public_url: Some(PUBLIC.to_owned()),
                ..ChannelsConfig::default()
            };
            state.channels = Some(
                Channels::start(cfg, db.clone(), state.hub.clone(), closing)
                    .await
                    .expect("channels"),
            );
            (http::router(state), keys, sim)
        });
        let mut f = Fixture {
            rt,
            router,
            admin: keys.0,
            app: keys.1,
            terminal: keys.2,
            paid: String::new(),
            open: String::new(),
            _db: dir,
            _sim: sim,
        };
        let order = json!({"store_id": "S001", "lines": [
            {"sku": "COLA", "quantity": "5"}, {"sku": "DUCK", "quantity": "0.355"}
        ]});
        let (s, v) = f.json(Method::POST, "/api/v1/orders", &f.terminal, &order);
        assert_eq!(s, 201, "{v}");
        let paid = v["id"].as_str().unwrap().to_owned();
        let (s, v) = f.json(
            Method::POST,
            &format!("/api/v1/orders/{paid}/payments"),
            &f.terminal,
            &json!({"auth_code": "134567890123456789"}),
        );
        assert!(s.is_success(), "{s}: {v}");
        assert_eq!(v["state"], "succeeded", "{v}");
        let (s, v) = f.json(Method::POST, "/api/v1/orders", &f.terminal, &order);
        assert_eq!(s, 201, "{v}");
        f.open = v["id"].as_str().unwrap().to_owned();
        f.paid = paid;
        f
    })
}

/// Store S001 with COLA (piece) and DUCK (kg), plenty of stock, and keys:
/// (admin, app, terminal S001-T01).
async fn seed(db: &Db) -> (String, String, String) {
    let store = StoreId::parse("S001").unwrap();
    gateway::catalog::put_store(db, &store, "人民路店".into())
        .await
        .unwrap();
    // TEA is named by no fuzzed request: the last test orders it.
    for (sku, unit, price) in [
        ("COLA", Unit::Piece, "3.50"),
        ("DUCK", Unit::Kg, "39.90"),
        ("TEA", Unit::Piece, "6.00"),
    ] {
        gateway::catalog::put_product(
            db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse(sku).unwrap(),
                name: sku.into(),
                unit,
                price: Money::parse(price).unwrap(),
                barcodes: None,
            },
        )
        .await
        .unwrap();
        gateway::catalog::put_item(
            db,
            &store,
            &Sku::parse(sku).unwrap(),
            gateway::catalog::ItemChange {
                on_hand: Some("50000".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let key = |role, store: Option<&str>, terminal: Option<&str>| {
        let spec = KeySpec {
            role,
            store: store.map(|s| StoreId::parse(s).unwrap()),
            terminal: terminal.map(|t| TerminalId::parse(t).unwrap()),
            label: None,
        };
        async move { keys::create(db, spec).await.expect("key").token }
    };
    (
        key(Role::Admin, None, None).await,
        key(Role::App, None, None).await,
        key(Role::Terminal, Some("S001"), Some(TERMINAL)).await,
    )
}

impl Fixture {
    fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let desc = format!("{} {}", req.method(), req.uri());
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap_or_else(|e| panic!("{desc}: body: {e}"));
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        self.send(req)
    }

    fn json(&self, method: Method, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
        let (s, b) = self.raw(
            method,
            path,
            key,
            "application/json",
            serde_json::to_vec(body).unwrap(),
        );
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }
}

/// No 5xx, with what was sent when there is one.
fn no_5xx(
    what: &str,
    sent: &[u8],
    (status, body): (StatusCode, String),
) -> Result<(), TestCaseError> {
    prop_assert!(
        !status.is_server_error(),
        "{what}: {status} for {:?}: {body}",
        String::from_utf8_lossy(sent)
    );
    Ok(())
}

// ------------------------------------------------------------- strategies

/// Strings that stress parsers: numbers at and past every bound, grammar
/// edge cases, odd Unicode.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "0", "1", "-1", "+2", "1_0", "0.355", "0.0005", "1e3", "1E-2", ".5", "5.",
            "00", "1.000", "39.90", "99999999.99", "100000000.00", "1000000000000",
            "100000000000000000000000000", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "NaN", "inf", "0x10", "１２", "٣", " 1", "1 ", "1\u{0}",
            "COLA", "DUCK", "S001", "S001-T01", "kg", "piece", "wechat", "alipay",
            "created", "accepted", "order.created", "order.cancelled", "\u{FEFF}", "🦆",
            "<a>", "&amp;", "'; DROP TABLE orders; --", "%00", "\\", "\"",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,24}",
        1 => "[0-9]{1,30}(\\.[0-9]{0,8})?",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0i64, 1, -1, 2, 3, 1000, i64::MAX, i64::MIN])
            .prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(tricky_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a field: usually a plausible one, sometimes anything.
fn field(plausible: Vec<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => prop::sample::select(plausible),
        2 => leaf(),
        1 => any_json(),
    ]
}

/// An object with the given fields, each present or not.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, s)| prop::option::weighted(0.85, s.prop_map(move |v| (k.to_owned(), v))).boxed())
        .collect();
    parts
        .prop_map(|kv| Value::Object(kv.into_iter().flatten().collect()))
        .boxed()
}

fn quantity() -> BoxedStrategy<Value> {
    field(vec![
        json!("1"),
        json!("0.355"),
        json!(2),
        json!("2.5"),
        json!("0"),
    ])
    .boxed()
}

fn order_body() -> BoxedStrategy<Value> {
    let line = object(vec![
        (
            "sku",
            field(vec![json!("COLA"), json!("DUCK"), json!("NOPE")]).boxed(),
        ),
        ("quantity", quantity()),
    ]);
    let prepaid = object(vec![
        (
            "provider",
            field(vec![json!("wechat"), json!("alipay")]).boxed(),
        ),
        (
            "transaction_id",
            field(vec![json!("T-1"), json!("")]).boxed(),
        ),
        (
            "amount",
            field(vec![json!("3.50"), json!("0.01"), json!("-1")]).boxed(),
        ),
    ]);
    object(vec![
        (
            "store_id",
            field(vec![json!("S001"), json!("S999")]).boxed(),
        ),
        (
            "lines",
            prop_oneof![
                3 => prop::collection::vec(line, 0..4).prop_map(Value::Array),
                1 => any_json(),
            ]
            .boxed(),
        ),
        ("note", field(vec![json!("少辣"), json!(null)]).boxed()),
        ("channel_order_id", field(vec![json!("app-1")]).boxed()),
        (
            "prepaid",
            prop_oneof![3 => prepaid, 1 => any_json()].boxed(),
        ),
    ])
}

fn refund_body() -> BoxedStrategy<Value> {
    let line = object(vec![
        (
            "line_no",
            field(vec![json!(1), json!(2), json!(0), json!(3)]).boxed(),
        ),
        ("quantity", quantity()),
    ]);
    object(vec![
        (
            "request_id",
            field(vec![json!("r-1"), json!("r-2")]).boxed(),
        ),
        (
            "amount",
            field(vec![json!("0.01"), json!("1.00"), json!("99")]).boxed(),
        ),
        ("reason", field(vec![json!("破损")]).boxed()),
        (
            "lines",
            prop_oneof![
                3 => prop::collection::vec(line, 0..3).prop_map(Value::Array),
                1 => any_json(),
            ]
            .boxed(),
        ),
        ("restock", field(vec![json!(true), json!(false)]).boxed()),
    ])
}

fn item_body() -> BoxedStrategy<Value> {
    object(vec![
        ("on_hand", quantity()),
        (
            "price",
            field(vec![json!("3.50"), json!(null), json!("0")]).boxed(),
        ),
        ("available", field(vec![json!(true), json!(false)]).boxed()),
        ("listed", field(vec![json!(true), json!(false)]).boxed()),
        (
            "snoozed_until",
            field(vec![json!("2030-01-01T00:00:00+08:00")]).boxed(),
        ),
        ("snooze_minutes", field(vec![json!(5), json!(-1)]).boxed()),
        ("delta", quantity()),
    ])
}

fn product_body() -> BoxedStrategy<Value> {
    object(vec![
        ("name", field(vec![json!("可乐")]).boxed()),
        (
            "unit",
            field(vec![json!("piece"), json!("kg"), json!("g")]).boxed(),
        ),
        ("price", field(vec![json!("3.50"), json!("0.001")]).boxed()),
    ])
}

fn mapping_body() -> BoxedStrategy<Value> {
    object(vec![
        ("sku", field(vec![json!("COLA"), json!("DUCK")]).boxed()),
        ("per_item", quantity()),
        ("store_id", field(vec![json!("S001"), json!("")]).boxed()),
    ])
}

fn webhook_body() -> BoxedStrategy<Value> {
    let item = object(vec![
        ("sku", field(vec![json!("COLA"), json!("DUCK")]).boxed()),
        ("name", field(vec![json!("可乐")]).boxed()),
        ("quantity", field(vec![json!(1), json!(3)]).boxed()),
        ("price", field(vec![json!("3.50"), json!("0.01")]).boxed()),
    ]);
    let order = object(vec![
        ("id", field(vec![json!("W-1"), json!("W-2")]).boxed()),
        ("store_id", field(vec![json!("S001")]).boxed()),
        ("day_seq", field(vec![json!(1)]).boxed()),
        ("total", field(vec![json!("7.00")]).boxed()),
        ("shipping_fee", field(vec![json!("1.00")]).boxed()),
        ("original_total", field(vec![json!("7.00")]).boxed()),
        ("store_receives", field(vec![json!("6.00")]).boxed()),
        (
            "items",
            prop::collection::vec(item, 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        ("recipient", any_json().boxed()),
        ("discounts", any_json().boxed()),
    ]);
    object(vec![
        ("event_id", field(vec![json!("evt-1")]).boxed()),
        (
            "type",
            field(vec![
                json!("order.created"),
                json!("order.cancelled"),
                json!("order.refund_requested"),
                json!("order.refund_cancelled"),
            ])
            .boxed(),
        ),
        ("order", order),
        ("reason", field(vec![json!("x")]).boxed()),
        ("refund_id", field(vec![json!("rf-1")]).boxed()),
        ("amount", field(vec![json!("1.00")]).boxed()),
    ])
}

/// Byte edits of a valid body.
fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..10)
}

fn mutate(mut b: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, byte, op) in edits {
        if b.is_empty() {
            b.push(*byte);
            continue;
        }
        let i = at.index(b.len());
        match op {
            0 => b[i] = *byte,
            1 => {
                b.remove(i);
            }
            _ => b.insert(i, *byte),
        }
    }
    b
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------ tests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn orders_never_answer_5xx(body in order_body(), who in 0usize..3, idem in prop::option::of("[ -~]{0,8}")) {
        let f = fixture();
        let key = [&f.admin, &f.app, &f.terminal][who];
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/orders")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        if let Some(k) = &idem {
            req = req.header("idempotency-key", k.as_str());
        }
        no_5xx("POST /orders", &bytes, f.send(req.body(Body::from(bytes.clone())).unwrap()))?;
    }

    #[test]
    fn mutated_order_bodies_never_answer_5xx(e in edits()) {
        let f = fixture();
        let valid = br#"{"store_id":"S001","lines":[{"sku":"COLA","quantity":"2"},{"sku":"DUCK","quantity":"0.355"}],"note":"n","prepaid":{"provider":"wechat","transaction_id":"t","amount":"21.16"}}"#;
        let b = mutate(valid.to_vec(), &e);
        no_5xx("POST /orders", &b, f.raw(Method::POST, "/api/v1/orders", &f.app, "application/json", b.clone()))?;
    }

    #[test]
    fn refunds_never_answer_5xx(body in refund_body(), on_paid in any::<bool>()) {
        let f = fixture();
        let id = if on_paid { &f.paid } else { &f.open };
        let bytes = serde_json::to_vec(&body).unwrap();
        no_5xx(
            "POST refunds",
            &bytes,
            f.raw(Method::POST, &format!("/api/v1/orders/{id}/refunds"), &f.terminal, "application/json", bytes.clone()),
        )?;
    }

    #[test]
    fn actions_never_answer_5xx(body in any_json(), action in prop::sample::select(vec!["accept", "ready", "complete", "cancel", "reject", "bogus"]), e in prop::option::of(edits())) {
        let f = fixture();
        let mut bytes = serde_json::to_vec(&body).unwrap();
        if let Some(e) = e { bytes = mutate(bytes, &e) }
        let path = format!("/api/v1/orders/{}/{action}", f.open);
        no_5xx("POST action", &bytes, f.raw(Method::POST, &path, &f.terminal, "application/json", bytes.clone()))?;
        // Pay bodies too, on the open order (the simulator pays any code).
        let path = format!("/api/v1/orders/{}/payments", f.open);
        no_5xx("POST payments", &bytes, f.raw(Method::POST, &path, &f.terminal, "application/json", bytes.clone()))?;
    }

    #[test]
    fn admin_puts_never_answer_5xx(
        which in 0usize..6,
        item in item_body(),
        product in product_body(),
        mapping in mapping_body(),
        name in any_json(),
        segment in prop::sample::select(vec!["COLA", "DUCK", "NEW-1", "S001", "bad%20id", "%F0%9F%A6%86", "a..b", "x".repeat(70).leak()]),
    ) {
        let f = fixture();
        let (path, body) = match which {
            0 => ("/api/v1/stores/S001/stock/COLA".to_owned(), item),
            1 => (format!("/api/v1/stores/S001/items/{segment}"), item),
            2 => (format!("/api/v1/products/{segment}"), product),
            3 => (format!("/api/v1/stores/{segment}"), json!({"name": name})),
            4 => (format!("/api/v1/channels/meituan/skus/{segment}"), mapping),
            _ => ("/api/v1/channels/meituan/skus/P1".to_owned(), mapping),
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        no_5xx(&format!("PUT {path}"), &bytes, f.raw(Method::PUT, &path, &f.admin, "application/json", bytes.clone()))?;
    }

    #[test]
    fn signed_webhook_pushes_never_answer_5xx(body in webhook_body(), e in prop::option::of(edits()), n in any::<u32>()) {
        let f = fixture();
        let mut bytes = serde_json::to_vec(&body).unwrap();
        if let Some(e) = e { bytes = mutate(bytes, &e) }
        let ts = unix_now();
        let id = format!("evt-{n}");
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/channels/webhook/{WH_PLATFORM}"))
            .header("content-type", "application/json")
            .header(mt::WEBHOOK_ID_HEADER, &id)
            .header(mt::WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
            .header(mt::WEBHOOK_SIGNATURE_HEADER, mt::webhook_sign(WH_SECRET, ts, &id, &bytes))
            .body(Body::from(bytes.clone()))
            .unwrap();
        no_5xx("webhook", &bytes, f.send(req))?;
    }

    #[test]
    fn signed_meituan_pushes_never_answer_5xx(
        event in prop::sample::select(vec!["new_order", "cancel", "refund_apply", "refund_cancel", "delivery_status", "bogus"]),
        fields in prop::collection::vec((
            prop::sample::select(vec![
                "order_id", "app_poi_code", "day_seq", "ctime", "caution", "recipient_name",
                "recipient_phone", "recipient_address", "shipping_fee", "total", "original_price",
                "poi_receive_amount", "detail", "extras", "reason", "reason_code", "refund_id",
                "money", "logistics_status", "notify_type", "food",
            ]),
            prop_oneof![
                2 => tricky_string(),
                1 => any_json().prop_map(|v| v.to_string()),
                1 => Just(r#"[{"app_food_code":"COLA","food_name":"可乐","quantity":2,"price":3.5}]"#.to_owned()),
            ],
        ), 0..14),
        order_no in 1u32..50,
    ) {
        let f = fixture();
        let mut params: Vec<(String, String)> = vec![
            ("order_id".into(), format!("{}", 9_100_000 + order_no)),
            ("app_poi_code".into(), "S001".into()),
        ];
        for (k, v) in fields {
            params.retain(|(pk, _)| pk != k);
            params.push((k.to_owned(), v));
        }
        params.push(("app_id".into(), MT_APP.into()));
        params.push(("timestamp".into(), unix_now().to_string()));
        let path = format!("/channels/meituan/{event}");
        let sig = mt::sign(&format!("{PUBLIC}{path}"), &params, MT_SECRET);
        params.push(("sig".into(), sig));
        let body = mt::encode_form(&params).into_bytes();
        let req = Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap();
        no_5xx(&path, &body, f.send(req))?;
    }

    #[test]
    fn soap_envelopes_never_answer_5xx(
        lines in prop::collection::vec((prop::sample::select(vec!["COLA", "DUCK"]), tricky_string()), 0..4),
        client_id in tricky_string(),
        e in prop::option::of(edits()),
    ) {
        let f = fixture();
        let token = UsernameToken { username: TERMINAL.into(), password: f.terminal.clone() };
        let msg = SubmitOrder {
            client_order_id: client_id,
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| SubmitLine { sku: Sku::parse(sku).unwrap(), quantity, unit_price: None })
                .collect(),
            note: None,
            sold_at: None,
            catalog_version: None,
        };
        let mut bytes = soap::write_request(&token, &msg).into_bytes();
        if let Some(e) = e { bytes = mutate(bytes, &e) }
        let (status, body) = f.raw(Method::POST, "/soap/terminal", "", "text/xml; charset=utf-8", bytes.clone());
        // SOAP 1.1 answers a Client Fault with 500 (the standard says so):
        // what must never come is a Server fault.
        prop_assert!(
            status.is_success() || status.is_client_error() || !body.contains("Server"),
            "SOAP {status}: {body}\nfor {}", String::from_utf8_lossy(&bytes)
        );
        prop_assert!(status != StatusCode::INTERNAL_SERVER_ERROR || body.contains("Fault"), "{status}: {body}");
    }
}

#[test]
fn the_fixture_serves_a_good_order_after_the_fuzzing() {
    let f = fixture();
    let (s, v) = f.json(
        Method::POST,
        "/api/v1/orders",
        &f.app,
        &json!({"store_id": "S001", "lines": [{"sku": "TEA", "quantity": "1"}]}),
    );
    assert_eq!(s, 201, "{v}");
}
