//! Overflowing and malformed numbers on the surfaces other than the REST
//! order and catalog API (those are in `api/overflow.rs`): SOAP SubmitOrder,
//! refunds over REST and SOAP (amounts and line quantities), SKU mappings,
//! the generic webhook and Meituan pushes. Each is refused with a 4xx (a
//! SOAP Client Fault) and a stable code, nothing changes, and the next good
//! request succeeds. On SQLite and PostgreSQL.

#[allow(dead_code)]
#[path = "channels/app.rs"]
mod app;

use app::{Chan, WEBHOOK_PLATFORM, WEBHOOK_SECRET, cola};
use gateway::keys::{self, KeySpec, Role};
use hw_sim::platform::PushRequest;
use proto::meituan as mt;
use proto::order::{Money, Sku, StoreId, TerminalId};
use proto::soap::{
    self, FaultKind, RefundLineRequest, RefundOrder, RefundOrderResponse, ResponseError,
    SubmitLine, SubmitOrder, SubmitOrderResponse, UsernameToken,
};
use serde_json::{Value, json};
use tests::pay::{PayGateway, PayOptions, str_of};
use tests::{Backend, on_both_databases, refused, short};

on_both_databases!(
    soap_orders_and_refunds_refuse_overflow,
    rest_refunds_refuse_overflow,
    sku_mappings_refuse_overflow,
    webhook_pushes_refuse_overflow,
    meituan_pushes_refuse_overflow
);

/// A WeChat payment code the simulator charges.
const CODE: &str = "134567890123456789";

/// Decimal strings no surface may accept.
fn hostile_strings() -> Vec<String> {
    vec![
        format!("1{}", "0".repeat(26)),
        format!("1{}", "0".repeat(40)),
        "1e30".into(),
        "1_0".into(),
        "+2".into(),
        "-1".into(),
        "0.0001".into(),
        format!("1.{}", "3".repeat(20)),
        "9".repeat(10_000),
        "".into(),
        ".5".into(),
        "NaN".into(),
        "0x10".into(),
        "9223372036854775807".into(),
    ]
}

/// The same as JSON texts, plus JSON numbers that do not fit.
fn hostile_json() -> Vec<String> {
    let mut v: Vec<String> = hostile_strings()
        .iter()
        .map(|s| Value::String(s.clone()).to_string())
        .chain([" 2".to_owned(), "2 ".to_owned()].map(|s| Value::String(s).to_string()))
        .collect();
    v.extend(["1e300", "1e30", "-1", "100000000000000000000000000", "0.5"].map(str::to_owned));
    v
}

// ------------------------------------------------------------ SOAP & refunds

/// PayGateway with a SOAP terminal S001-T09 of store S001.
async fn pay_gateway(b: Backend) -> Option<(PayGateway, UsernameToken)> {
    let gw = PayGateway::spawn(b, PayOptions::default()).await?;
    let key = keys::create(
        &gw.db,
        KeySpec {
            role: Role::Terminal,
            store: Some(StoreId::parse("S001").unwrap()),
            terminal: Some(TerminalId::parse("S001-T09").unwrap()),
            label: None,
        },
    )
    .await
    .unwrap()
    .token;
    let token = UsernameToken {
        username: "S001-T09".into(),
        password: key,
    };
    Some((gw, token))
}

async fn post_soap(gw: &PayGateway, envelope: String) -> (u16, String) {
    let r = gw
        .http
        .post(gw.url("/soap/terminal"))
        .header("content-type", "text/xml; charset=utf-8")
        .body(envelope)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The answer must be a SOAP Client Fault with `code`.
fn client_fault<M: soap::Message + std::fmt::Debug>(
    what: &str,
    status: u16,
    body: &str,
    code: &str,
) {
    assert_eq!(
        status, 500,
        "{what}: a SOAP 1.1 Fault travels as 500: {body}"
    );
    match soap::parse_response::<M>(body.as_bytes()) {
        Err(ResponseError::Fault(f)) => {
            assert_eq!(f.kind, FaultKind::Client, "{what}: {f:?}");
            assert_eq!(f.code, code, "{what}: {f:?}");
        }
        other => panic!("{what}: expected a Fault, got {other:?}: {body}"),
    }
}

fn submit(id: &str, quantity: &str) -> SubmitOrder {
    SubmitOrder {
        client_order_id: id.into(),
        lines: vec![SubmitLine {
            sku: Sku::parse("LATTE").unwrap(),
            quantity: quantity.into(),
            unit_price: None,
        }],
        note: None,
        sold_at: None,
        catalog_version: None,
    }
}

async fn soap_orders_and_refunds_refuse_overflow(b: Backend) {
    let Some((gw, token)) = pay_gateway(b).await else {
        return;
    };
    // SubmitOrder: every hostile quantity is a Client Fault, no order made.
    for (n, q) in hostile_strings().iter().enumerate() {
        let env = soap::write_request(&token, &submit(&format!("c-{n}"), q));
        let (s, body) = post_soap(&gw, env).await;
        client_fault::<SubmitOrderResponse>(&short(q), s, &body, "invalid_quantity");
    }
    let (s, body) = post_soap(&gw, soap::write_request(&token, &submit("c-max", "100001"))).await;
    client_fault::<SubmitOrderResponse>("100001", s, &body, "invalid_quantity");
    let (on_hand, reserved) = gw.stock_of("LATTE").await;
    assert_eq!((on_hand, reserved), (100_000, 0), "nothing reserved");
    let (s, body) = post_soap(&gw, soap::write_request(&token, &submit("c-ok", "2"))).await;
    assert_eq!(s, 200, "the next good SubmitOrder: {body}");
    let got = soap::parse_response::<SubmitOrderResponse>(body.as_bytes()).unwrap();
    assert_eq!(got.order.total, Money::from_fen(2116));
    // A sale that already happened: every hostile unit price is refused too.
    let mut happened = submit("c-happened", "1");
    happened.sold_at = Some(proto::time::Timestamp::parse("2026-12-03T09:15:30+08:00").unwrap());
    happened.lines[0].unit_price = Some(Money::from_fen(777));
    let env = soap::write_request(&token, &happened);
    assert!(env.contains(">7.77<"), "{env}");
    for p in hostile_strings() {
        let (s, body) = post_soap(&gw, env.replace(">7.77<", &format!(">{p}<"))).await;
        client_fault::<SubmitOrderResponse>(&short(&p), s, &body, "invalid_money");
    }
    assert_eq!(
        gw.stock_of("LATTE").await,
        (100_000, 2_000),
        "only c-ok reserved"
    );

    // RefundOrder on a paid order: hostile amounts and line quantities.
    let (order, charge, _) = gw.pay_under(json!({"outcome": "success"}), CODE).await;
    let placeholder = RefundOrder::of_amount(&order, "r-bad", Money::from_fen(777));
    let env = soap::write_request(&token, &placeholder);
    assert!(env.contains(">7.77<"), "{env}");
    for a in hostile_strings() {
        let (s, body) = post_soap(&gw, env.replace(">7.77<", &format!(">{a}<"))).await;
        client_fault::<RefundOrderResponse>(&short(&a), s, &body, "invalid_money");
    }
    for q in hostile_strings()
        .iter()
        .chain(&["3".to_owned(), "1.5".to_owned()])
    {
        let by_line = RefundOrder {
            order_id: order.clone(),
            request_id: "r-bad-line".into(),
            lines: vec![RefundLineRequest {
                line_no: 1,
                quantity: q.clone(),
            }],
            ..RefundOrder::default()
        };
        let (s, body) = post_soap(&gw, soap::write_request(&token, &by_line)).await;
        let want = if q == "3" {
            "refund_exceeds_line"
        } else {
            "invalid_quantity"
        };
        client_fault::<RefundOrderResponse>(&short(q), s, &body, want);
    }
    // Hostile line numbers too.
    for n in ["99999999999999999999", "-1", "+1", "1_0"] {
        let by_line = RefundOrder {
            order_id: order.clone(),
            request_id: "r-bad-no".into(),
            lines: vec![RefundLineRequest {
                line_no: 1,
                quantity: "1".into(),
            }],
            ..RefundOrder::default()
        };
        let env = soap::write_request(&token, &by_line).replace(">1</", &format!(">{n}</"));
        let (s, body) = post_soap(&gw, env).await;
        assert_eq!(s, 500, "{n}: {body}");
        assert!(
            matches!(soap::parse_response::<RefundOrderResponse>(body.as_bytes()),
                Err(ResponseError::Fault(f)) if f.kind == FaultKind::Client),
            "{n}: {body}"
        );
    }
    assert_eq!(
        gw.entry(str_of(&charge, "out_trade_no")).await.refunded_fen,
        0
    );
    assert_eq!(gw.payment_status(&order).await, "paid");

    // A good refund and a good order still go through.
    let good = RefundOrder::of_amount(&order, "r-ok", Money::from_fen(500));
    let (s, body) = post_soap(&gw, soap::write_request(&token, &good)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        gw.entry(str_of(&charge, "out_trade_no")).await.refunded_fen,
        500
    );
    gw.order().await;
}

async fn rest_refunds_refuse_overflow(b: Backend) {
    let Some((gw, _)) = pay_gateway(b).await else {
        return;
    };
    let (order, charge, _) = gw.pay_under(json!({"outcome": "success"}), CODE).await;
    let path = format!("/api/v1/orders/{order}/refunds");
    let send = |body: String| {
        let gw = &gw;
        let path = path.clone();
        async move {
            let url = gw.url(&path);
            tests::send_json_text(&gw.http, reqwest::Method::POST, url, &gw.terminal, body).await
        }
    };
    for v in hostile_json() {
        let what = format!("amount {}", short(&v));
        let (s, p) = send(format!(r#"{{"request_id":"r-bad","amount":{v}}}"#)).await;
        refused(&what, s, &p, &["invalid_money", "invalid_request"]);
        if v.starts_with('"') {
            assert_eq!(p["code"], "invalid_money", "{what}: {p}");
        }
        let what = format!("line quantity {}", short(&v));
        let (s, p) = send(format!(
            r#"{{"request_id":"r-bad-line","lines":[{{"line_no":1,"quantity":{v}}}]}}"#
        ))
        .await;
        refused(&what, s, &p, &["invalid_quantity", "invalid_request"]);
        if v.starts_with('"') {
            assert_eq!(p["code"], "invalid_quantity", "{what}: {p}");
        }
        let what = format!("line_no {}", short(&v));
        let (s, p) = send(format!(
            r#"{{"request_id":"r-bad-no","lines":[{{"line_no":{v},"quantity":"1"}}]}}"#
        ))
        .await;
        refused(&what, s, &p, &["invalid_refund", "invalid_request"]);
    }
    let (s, p) = send(r#"{"request_id":"r-max","amount":"100000000.01"}"#.into()).await;
    refused("above the maximum", s, &p, &["invalid_money"]);
    let (s, p) = send(r#"{"request_id":"r-much","amount":"100000000.00"}"#.into()).await;
    refused("more than paid", s, &p, &["refund_exceeds_paid"]);
    assert_eq!(
        gw.entry(str_of(&charge, "out_trade_no")).await.refunded_fen,
        0
    );
    assert_eq!(gw.payment_status(&order).await, "paid");

    let (s, r) = gw.refund(&order, "r-ok", "5.00").await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = gw
        .refund_lines(
            &order,
            "r-ok-line",
            json!([{"line_no": 1, "quantity": "1"}]),
            false,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        gw.entry(str_of(&charge, "out_trade_no")).await.refunded_fen,
        500 + 1058
    );
    gw.order().await;
}

// ------------------------------------------------------------ channels

async fn sku_mappings_refuse_overflow(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let path = "/api/v1/channels/meituan/skus/MT-DUCK-500G";
    for v in hostile_json() {
        let r = app
            .http
            .put(app.url(path))
            .bearer_auth(&app.admin)
            .header("content-type", "application/json")
            .body(format!(r#"{{"sku":"DUCK","per_item":{v}}}"#))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let p: Value = r.json().await.unwrap_or(Value::Null);
        let what = format!("per_item {}", short(&v));
        refused(&what, s, &p, &["invalid_quantity", "invalid_request"]);
        if v.starts_with('"') {
            assert_eq!(p["code"], "invalid_quantity", "{what}: {p}");
        }
    }
    let (s, p) = app
        .put(path, json!({"sku": "DUCK", "per_item": "100000.001"}))
        .await;
    refused("per_item above the maximum", s, &p, &["invalid_quantity"]);
    let (s, list) = app.get("/api/v1/channels/meituan/skus").await;
    assert_eq!(s, 200);
    assert_eq!(list["mappings"].as_array().map(Vec::len), Some(0), "{list}");

    // A good mapping, and a pushed order through it.
    let (s, p) = app
        .put(path, json!({"sku": "DUCK", "per_item": "0.500"}))
        .await;
    assert_eq!(s, 200, "{p}");
    let (_, order) = app
        .push_new(
            "S001",
            vec![hw_sim::platform::ItemSpec::new(
                "MT-DUCK-500G",
                "鸭脖 500g",
                2,
                2000,
            )],
        )
        .await;
    assert_eq!(order["lines"][0]["quantity"], "1.000", "{order}");
    assert_eq!(order["lines"][0]["unit_price"], "40.00", "{order}");
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn webhook(app: &Chan, id: &str, body: &str) -> (u16, Value) {
    let ts = now_s();
    let sig = mt::webhook_sign(WEBHOOK_SECRET, ts, id, body.as_bytes());
    let r = app
        .http
        .post(app.url(&format!("/channels/webhook/{WEBHOOK_PLATFORM}")))
        .header("content-type", "application/json")
        .header(mt::WEBHOOK_ID_HEADER, id)
        .header(mt::WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
        .header(mt::WEBHOOK_SIGNATURE_HEADER, sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn webhook_order(n: usize, price: &str, quantity: &str, total: &str) -> String {
    format!(
        r#"{{"event_id":"evt_{n}","type":"order.created",
            "order":{{"id":"AG-{n}","store_id":"S001","total":{total},
                     "items":[{{"sku":"COLA","name":"可乐","quantity":{quantity},"price":{price}}}]}}}}"#
    )
}

async fn webhook_pushes_refuse_overflow(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let mut n = 0;
    for v in hostile_json() {
        for body in [
            webhook_order(n, &v, "1", r#""3.50""#),
            webhook_order(n + 1, r#""3.50""#, &v, r#""3.50""#),
            webhook_order(n + 2, r#""3.50""#, "1", &v),
        ] {
            let (s, p) = webhook(&app, &format!("msg_{n}"), &body).await;
            refused(&short(&body), s, &p, &["malformed_push", "invalid_item"]);
        }
        n += 3;
    }
    // A price within the grammar whose line total passes the maximum.
    let body = webhook_order(n, r#""100000000.00""#, "2", r#""3.50""#);
    let (s, p) = webhook(&app, "msg_big", &body).await;
    refused("line total", s, &p, &["malformed_push", "invalid_item"]);
    assert!(app.queue("S001").await.is_empty());
    let (s, v) = webhook(
        &app,
        "msg_ok",
        &webhook_order(999, r#""3.50""#, "2", r#""7.00""#),
    )
    .await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("created")), "{v}");
    assert_eq!(app.queue("S001").await.len(), 1);
}

async fn meituan_pushes_refuse_overflow(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let base = PushRequest::new_order("S001", vec![cola(1)]);
    // A JSON number 0.5 is a fine yuan amount on this platform's wire.
    for v in hostile_json().into_iter().filter(|v| v != "0.5") {
        let detail = format!(
            r#"[{{"app_food_code":"COLA","food_name":"可乐","quantity":1,"price":{v},"unit":"份"}}]"#
        );
        let quantity = format!(
            r#"[{{"app_food_code":"COLA","food_name":"可乐","quantity":{v},"price":3.5,"unit":"份"}}]"#
        );
        let plain = serde_json::from_str::<String>(&v).unwrap_or_else(|_| v.clone());
        for (k, val) in [("detail", detail), ("detail", quantity), ("total", plain)] {
            let mut bad = base.clone();
            bad.raw.insert(k.to_owned(), Some(val.clone()));
            let r = app.sim.push(bad).await.unwrap();
            assert_eq!(r.status, 400, "{k}={}: {:?}", short(&val), r.answer);
            assert_eq!(r.answer["data"], "ng");
        }
    }
    assert!(app.queue("S001").await.is_empty());
    let inbox: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM channel_inbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(inbox.0, 0, "nothing was kept");
    let r = app.sim.push(base).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.answer);
    assert_eq!(app.queue("S001").await.len(), 1);
}
