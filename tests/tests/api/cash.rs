//! Cash at the counter: `POST /api/v1/orders/{id}/payments` with
//! `{"method": "cash", "tendered": "…"}` records what was handed over and
//! the change, and the order is paid — with or without payment codes
//! configured.

use proto::order::Unit;
use serde_json::{Value, json};
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    cash_pays_the_order_once_and_gives_the_change,
    cash_refusals_change_nothing,
);

async fn setup(b: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn(b).await?;
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let (s, o) = app.order("S001", &[("COLA", "2")]).await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().expect("order id").to_owned();
    Some((app, id))
}

async fn pay_cash(app: &TestApp, id: &str, key: &str, tendered: &str) -> (u16, Value) {
    app.post_json(
        &format!("/api/v1/orders/{id}/payments"),
        key,
        &json!({"method": "cash", "tendered": tendered}),
    )
    .await
}

async fn payment_status(app: &TestApp, id: &str) -> Value {
    let (s, o) = app
        .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
        .await;
    assert_eq!(s, 200, "{o}");
    o["payment_status"].clone()
}

async fn cash_pays_the_order_once_and_gives_the_change(b: Backend) {
    let Some((app, id)) = setup(b).await else {
        return;
    };
    let till = app.terminal("S001").to_owned();
    let (s, t) = pay_cash(&app, &id, &till, "10.00").await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(
        (&t["method"], &t["amount"], &t["tendered"], &t["change"]),
        (
            &json!("cash"),
            &json!("7.00"),
            &json!("10.00"),
            &json!("3.00")
        ),
        "{t}"
    );
    assert!(
        t["by"].as_str().unwrap_or("").starts_with("terminal:"),
        "{t}"
    );
    assert_eq!(payment_status(&app, &id).await, "paid");

    // A retry after a lost answer gets the same tender; nothing changes.
    let (s2, t2) = pay_cash(&app, &id, &till, "10.00").await;
    assert_eq!((s2, &t2), (200, &t), "{t2}");
    // Another tender for the paid order is refused.
    let (s3, p) = pay_cash(&app, &id, &till, "20.00").await;
    assert_eq!((s3, &p["code"]), (409, &json!("order_already_paid")), "{p}");

    // The exact amount gives no change.
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let other = o["id"].as_str().expect("id").to_owned();
    let (s, t) = pay_cash(&app, &other, &till, "3.50").await;
    assert_eq!((s, &t["change"]), (201, &json!("0.00")), "{t}");

    // The store's queue shows both orders paid.
    let paid = app
        .queue("S001")
        .await
        .iter()
        .filter(|o| o["payment_status"] == "paid")
        .count();
    assert_eq!(paid, 2);
    app.stop().await;
}

async fn cash_refusals_change_nothing(b: Backend) {
    let Some((app, id)) = setup(b).await else {
        return;
    };
    let till = app.terminal("S001").to_owned();
    let path = format!("/api/v1/orders/{id}/payments");
    // Too little, hostile or malformed amounts, mixed or incomplete bodies.
    let (s, p) = pay_cash(&app, &id, &till, "6.99").await;
    assert_eq!((s, &p["code"]), (422, &json!("tender_too_small")), "{p}");
    for bad in ["1e9", "-1.00", "99999999999999999999", "3.001", ""] {
        let (s, p) = pay_cash(&app, &id, &till, bad).await;
        assert_eq!(
            (s, &p["code"]),
            (422, &json!("invalid_money")),
            "{bad:?}: {p}"
        );
    }
    let (s, p) = app
        .post_json(&path, &till, &json!({"method": "cash"}))
        .await;
    assert_eq!((s, &p["code"]), (422, &json!("invalid_request")), "{p}");
    let (s, p) = app
        .post_json(
            &path,
            &till,
            &json!({"method": "cash", "tendered": "10.00", "auth_code": "134567890123456789"}),
        )
        .await;
    assert_eq!((s, &p["code"]), (422, &json!("invalid_request")), "{p}");
    let (s, p) = app
        .post_json(&path, &till, &json!({"method": "cheque"}))
        .await;
    assert_eq!((s, &p["code"]), (422, &json!("invalid_request")), "{p}");
    // The app takes no money; another store's terminal does not see the order.
    let app_key = app.app.clone();
    let (s, _) = pay_cash(&app, &id, &app_key, "10.00").await;
    assert_eq!(s, 403);
    let other_till = app.terminal("S002").to_owned();
    let (s, p) = pay_cash(&app, &id, &other_till, "10.00").await;
    assert_eq!((s, &p["code"]), (404, &json!("order_not_found")), "{p}");
    assert_eq!(payment_status(&app, &id).await, "unpaid");

    // A cancelled order is not paid in cash.
    let admin = app.admin.clone();
    let (s, _) = app.act(&id, "cancel", &admin).await;
    assert_eq!(s, 200);
    let (s, p) = pay_cash(&app, &id, &till, "10.00").await;
    assert_eq!((s, &p["code"]), (409, &json!("order_not_payable")), "{p}");
    app.stop().await;
}
