//! Overflowing and malformed numbers on the REST surface: each answers a 4xx
//! problem with a stable code, changes nothing, and the next good order is
//! served (the order writer survived).

use proto::order::Unit;
use serde_json::{Value, json};
use tests::{Backend, TestApp, on_both_databases, refused, short};

on_both_databases!(
    order_quantities_that_overflow_are_refused_and_orders_go_on,
    admin_prices_and_stock_that_overflow_are_refused,
    prepaid_amounts_that_overflow_are_refused,
    happened_sale_unit_prices_that_overflow_are_refused
);

/// Decimal strings no surface may accept, as a JSON string each.
pub fn hostile_strings() -> Vec<String> {
    vec![
        format!("1{}", "0".repeat(26)),
        "1e30".into(),
        "1E3".into(),
        "1_0".into(),
        "+2".into(),
        "-1".into(),
        "-0".into(),
        "0.0001".into(),
        format!("1.{}", "3".repeat(20)),
        "9".repeat(10_000),
        format!("{}1", "0".repeat(10_000)),
        " 2".into(),
        "2 ".into(),
        "".into(),
        ".5".into(),
        "5.".into(),
        "NaN".into(),
        "Infinity".into(),
        "0x10".into(),
        "１".into(),
        "9223372036854775807".into(),
        "18446744073709551617".into(),
    ]
}

/// The same as raw JSON texts, plus JSON numbers that are not whole or do
/// not fit: `1e300`, `1e30`, `-1`, 27-digit integers, `0.5`.
pub fn hostile_json() -> Vec<String> {
    let mut v: Vec<String> = hostile_strings()
        .iter()
        .map(|s| Value::String(s.clone()).to_string())
        .collect();
    v.extend(
        [
            "1e300",
            "1e30",
            "-1",
            "100000000000000000000000000",
            "-100000000000000000000000000",
            "0.5",
            "1.0000000000000000001",
            "null",
            "true",
            "[]",
            "{}",
        ]
        .map(str::to_owned),
    );
    v
}

/// Sends `body` (raw JSON text) with `method` and `key`; status, problem.
async fn raw(app: &TestApp, method: &str, path: &str, key: &str, body: String) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    tests::send_json_text(&app.http, m, app.url(path), key, body).await
}

/// A hostile value is refused with `code`, or with `invalid_request` when
/// the JSON is not even of the field's kind; a JSON string (`text`) is
/// always read as the field, so it must get `code` itself.
fn refused_as(what: &str, status: u16, p: &Value, code: &str, text: bool) {
    if text {
        refused(what, status, p, &[code]);
    } else {
        refused(what, status, p, &[code, "invalid_request"]);
    }
}

async fn good_order(app: &TestApp) -> Value {
    let (s, o) = app
        .post_json(
            "/api/v1/orders",
            app.terminal("S001"),
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}, {"sku": "DUCK", "quantity": "0.355"}]}),
        )
        .await;
    assert_eq!(s, 201, "the next good order: {o}");
    assert_eq!(o["total"], "21.16", "{o}");
    o
}

async fn order_quantities_that_overflow_are_refused_and_orders_go_on(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    app.product("DUCK", "卤鸭脖", Unit::Kg, "39.90", "5.000")
        .await;
    for q in hostile_json() {
        for (sku, key) in [("COLA", app.terminal("S001")), ("DUCK", &app.app)] {
            let body =
                format!(r#"{{"store_id":"S001","lines":[{{"sku":"{sku}","quantity":{q}}}]}}"#);
            let (s, p) = raw(&app, "POST", "/api/v1/orders", key, body).await;
            let what = format!("{sku} × {}", short(&q));
            refused_as(&what, s, &p, "invalid_quantity", q.starts_with('"'));
            // A good line next to the bad one does not save it.
            let body = format!(
                r#"{{"store_id":"S001","lines":[{{"sku":"COLA","quantity":"1"}},{{"sku":"{sku}","quantity":{q}}}]}}"#
            );
            let (s, p) = raw(&app, "POST", "/api/v1/orders", key, body).await;
            refused(&what, s, &p, &["invalid_quantity", "invalid_request"]);
        }
    }
    // Within the grammar but above the maximum, and a line total above it.
    for (sku, q) in [("COLA", "100001"), ("DUCK", "100000.001")] {
        let (s, p) = app.order("S001", &[(sku, q)]).await;
        refused(q, s, &p, &["invalid_quantity"]);
    }
    assert!(app.queue("S001").await.is_empty(), "no order was made");
    assert_eq!(app.item("S001", "COLA").await["reserved"], "0");
    assert_eq!(app.item("S001", "DUCK").await["reserved"], "0.000");

    // The order writer is alive: orders in both stores, by both keys.
    let o = good_order(&app).await;
    assert_eq!(o["lines"][0]["quantity"], "2");
    let (s, o) = app.order("S002", &[("COLA", "1")]).await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(app.queue("S001").await.len(), 1);
    assert_eq!(app.item("S001", "COLA").await["reserved"], "2");
    assert_eq!(app.item("S001", "DUCK").await["reserved"], "0.355");
}

async fn admin_prices_and_stock_that_overflow_are_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    app.product("DUCK", "卤鸭脖", Unit::Kg, "39.90", "5.000")
        .await;
    let before = (
        app.item("S001", "COLA").await,
        app.item("S001", "DUCK").await,
    );
    let mut values = hostile_json();
    values.push(r#""100000000.01""#.into());
    for v in &values {
        let what = short(v);
        let is_text = v.starts_with('"');
        let body = format!(r#"{{"name":"可口可乐","unit":"piece","price":{v}}}"#);
        let (s, p) = raw(&app, "PUT", "/api/v1/products/COLA", &app.admin, body).await;
        refused_as(
            &format!("product price {what}"),
            s,
            &p,
            "invalid_money",
            is_text,
        );
        for sku in ["COLA", "DUCK"] {
            let path = format!("/api/v1/stores/S001/stock/{sku}");
            let body = format!(r#"{{"on_hand":{v}}}"#);
            let (s, p) = raw(&app, "PUT", &path, &app.admin, body).await;
            refused_as(
                &format!("{sku} on_hand {what}"),
                s,
                &p,
                "invalid_quantity",
                is_text,
            );
            if v == "null" {
                continue; // null clears a price override: allowed.
            }
            let body = format!(r#"{{"price":{v}}}"#);
            let (s, p) = raw(&app, "PUT", &path, &app.admin, body).await;
            refused_as(
                &format!("{sku} price {what}"),
                s,
                &p,
                "invalid_money",
                is_text,
            );
        }
    }
    for (sku, q) in [("COLA", "100001"), ("DUCK", "100000.001"), ("COLA", "1.5")] {
        let path = format!("/api/v1/stores/S001/stock/{sku}");
        let (s, p) = raw(
            &app,
            "PUT",
            &path,
            &app.admin,
            json!({"on_hand": q}).to_string(),
        )
        .await;
        refused(q, s, &p, &["invalid_quantity"]);
    }
    let after = (
        app.item("S001", "COLA").await,
        app.item("S001", "DUCK").await,
    );
    assert_eq!(before, after, "nothing changed");
    assert_eq!(after.0["price"], "3.50");
    assert_eq!(after.1["on_hand"], "5.000");

    // The maxima themselves are accepted.
    let (s, p) = raw(
        &app,
        "PUT",
        "/api/v1/stores/S002/stock/DUCK",
        &app.admin,
        json!({"on_hand": "100000.000", "price": "100000000.00"}).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["on_hand"], "100000.000");
    assert_eq!(p["price"], "100000000.00");
    // An order whose line total would pass 100 million yuan is refused.
    let (s, p) = app.order("S002", &[("DUCK", "1.001")]).await;
    refused("line total", s, &p, &["invalid_quantity"]);
    good_order(&app).await;
}

async fn prepaid_amounts_that_overflow_are_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    app.product("DUCK", "卤鸭脖", Unit::Kg, "39.90", "5.000")
        .await;
    for (n, v) in hostile_json().iter().enumerate() {
        let body = format!(
            r#"{{"store_id":"S001","lines":[{{"sku":"COLA","quantity":"2"}}],
                "prepaid":{{"provider":"wechat_miniprogram","transaction_id":"4200000000{n:04}","amount":{v}}}}}"#
        );
        let (s, p) = raw(&app, "POST", "/api/v1/orders", &app.app, body).await;
        let what = format!("prepaid {}", short(v));
        refused_as(&what, s, &p, "invalid_prepaid", v.starts_with('"'));
    }
    assert!(app.queue("S001").await.is_empty());
    let (s, o) = app
        .post_json(
            "/api/v1/orders",
            &app.app,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}],
                    "prepaid": {"provider": "wechat_miniprogram", "transaction_id": "4200000000ok", "amount": "7.00"}}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(o["payment_status"], "paid", "{o}");
    good_order(&app).await;
}

async fn happened_sale_unit_prices_that_overflow_are_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    app.product("DUCK", "卤鸭脖", Unit::Kg, "39.90", "5.000")
        .await;
    // (JSON null is no unit price: priced from the catalog.)
    let values = hostile_json().into_iter().filter(|v| v != "null");
    for (n, v) in values.enumerate() {
        let body = format!(
            r#"{{"store_id":"S001","channel_order_id":"off-{n}","sold_at":"2026-12-03T09:15:30+08:00",
                "lines":[{{"sku":"COLA","quantity":"2","unit_price":{v}}}]}}"#
        );
        let (s, p) = raw(&app, "POST", "/api/v1/orders", app.terminal("S001"), body).await;
        let what = format!("unit price {}", short(&v));
        refused_as(&what, s, &p, "invalid_money", v.starts_with('"'));
    }
    assert!(app.queue("S001").await.is_empty());
    assert_eq!(app.item("S001", "COLA").await["reserved"], "0");
    good_order(&app).await;
}
