//! Bad input gets a clear 4xx problem and changes nothing.

use proto::order::Unit;
use serde_json::{Value, json};
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    bad_orders_are_refused_and_change_nothing,
    bad_admin_input_is_refused
);

async fn raw(app: &TestApp, content_type: &str, body: Vec<u8>) -> (u16, Value, String) {
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.app)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, r.json().await.unwrap_or(Value::Null), ct)
}

async fn bad_orders_are_refused_and_change_nothing(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    app.product("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", "5.000")
        .await;
    let line =
        |sku: &str, q: Value| json!({"store_id": "S001", "lines": [{"sku": sku, "quantity": q}]});
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("malformed JSON", b"{\"store_id\": \"S001\", \"lines\": [".to_vec(), "application/json", 400, "invalid_json"),
        ("not JSON at all", b"store=S001".to_vec(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("over 64 KiB", {
            let note = "x".repeat(70 * 1024);
            serde_json::to_vec(&json!({"store_id": "S001", "note": note, "lines": [{"sku": "COLA", "quantity": "1"}]})).unwrap()
        }, "application/json", 413, "payload_too_large"),
        ("wrong shape", serde_json::to_vec(&json!({"store_id": 5, "lines": "COLA"})).unwrap(), "application/json", 422, "invalid_request"),
        ("negative pieces", serde_json::to_vec(&line("COLA", json!("-1"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("zero pieces", serde_json::to_vec(&line("COLA", json!("0"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("zero as number", serde_json::to_vec(&line("COLA", json!(0))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("pieces with decimals", serde_json::to_vec(&line("COLA", json!("1.5"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("float number", serde_json::to_vec(&line("DUCK-NECK", json!(0.5))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("4 decimals of kg", serde_json::to_vec(&line("DUCK-NECK", json!("0.3551"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("negative kg", serde_json::to_vec(&line("DUCK-NECK", json!("-0.5"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("not a number", serde_json::to_vec(&line("DUCK-NECK", json!("lots"))).unwrap(), "application/json", 422, "invalid_quantity"),
        ("unknown sku", serde_json::to_vec(&line("NOPE", json!("1"))).unwrap(), "application/json", 422, "unknown_sku"),
        ("bad sku", serde_json::to_vec(&line("a b", json!("1"))).unwrap(), "application/json", 422, "invalid_sku"),
        ("unknown store", serde_json::to_vec(&json!({"store_id": "S999", "lines": [{"sku": "COLA", "quantity": "1"}]})).unwrap(), "application/json", 422, "unknown_store"),
        ("no lines", serde_json::to_vec(&json!({"store_id": "S001", "lines": []})).unwrap(), "application/json", 422, "invalid_lines"),
        ("more than on hand", serde_json::to_vec(&line("COLA", json!("11"))).unwrap(), "application/json", 409, "out_of_stock"),
        ("second line fails", serde_json::to_vec(&json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}, {"sku": "DUCK-NECK", "quantity": "9.000"}]})).unwrap(), "application/json", 409, "out_of_stock"),
    ];
    for (what, body, ct, want_status, want_code) in cases {
        let (s, p, resp_ct) = raw(&app, ct, body).await;
        assert_eq!(s, want_status, "{what}: {p}");
        assert_eq!(p["code"], want_code, "{what}: {p}");
        assert_eq!(resp_ct, "application/problem+json", "{what}");
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: a human message"
        );
    }
    assert!(app.queue("S001").await.is_empty(), "no order was made");
    assert_eq!(
        app.item("S001", "COLA").await["reserved"],
        "0",
        "nothing was reserved"
    );
    assert_eq!(app.item("S001", "DUCK-NECK").await["reserved"], "0.000");
    // And after all that, a good order still works.
    assert_eq!(app.order("S001", &[("COLA", "10")]).await.0, 201);
    app.stop().await;
}

async fn bad_admin_input_is_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let put = |path: &str, body: Value| {
        app.http
            .put(app.url(path))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };
    let cases = [
        (
            "/api/v1/products/COLA",
            json!({"name": "", "unit": "piece", "price": "1.00"}),
            "invalid_name",
        ),
        (
            "/api/v1/products/COLA",
            json!({"name": "x", "unit": "litre", "price": "1.00"}),
            "invalid_unit",
        ),
        (
            "/api/v1/products/COLA",
            json!({"name": "x", "unit": "piece", "price": "-1"}),
            "invalid_money",
        ),
        (
            "/api/v1/products/COLA",
            json!({"name": "x", "unit": "piece", "price": "1.005"}),
            "invalid_money",
        ),
        (
            "/api/v1/stores/S001/stock/COLA",
            json!({"on_hand": "-3"}),
            "invalid_quantity",
        ),
        (
            "/api/v1/stores/S001/stock/COLA",
            json!({"on_hand": "2.5"}),
            "invalid_quantity",
        ),
        (
            "/api/v1/stores/S001/stock/COLA",
            json!({"snoozed_until": "tomorrow"}),
            "invalid_time",
        ),
        (
            "/api/v1/stores/S001/stock/COLA",
            json!({}),
            "invalid_request",
        ),
    ];
    for (path, body, code) in cases {
        let r = put(path, body.clone()).await.unwrap();
        let s = r.status().as_u16();
        let p: Value = r.json().await.unwrap();
        assert_eq!((s, p["code"].as_str()), (422, Some(code)), "{path} {body}");
    }
    let r = put("/api/v1/stores/S404/stock/COLA", json!({"on_hand": "1"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = put("/api/v1/stores/S001/stock/NOPE", json!({"on_hand": "1"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let item = app.item("S001", "COLA").await;
    assert_eq!(
        (
            item["on_hand"].as_str(),
            item["price"].as_str(),
            item["name"].as_str()
        ),
        (Some("10"), Some("3.50"), Some("可口可乐"))
    );
    app.stop().await;
}
