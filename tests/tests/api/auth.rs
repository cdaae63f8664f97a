//! Who may do what: keys, roles, and stores kept apart.

use proto::order::Unit;
use serde_json::json;
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    requests_without_a_valid_key_are_refused,
    a_terminal_never_sees_another_store,
    roles_limit_what_a_key_may_do,
);

async fn requests_without_a_valid_key_are_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health needs no key");
    for auth in [
        None,
        Some("Bearer gk_nope"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
    ] {
        let mut req = app.http.get(app.url("/api/v1/stores/S001/orders"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["code"], "unauthorized");
    }
    app.stop().await;
}

async fn a_terminal_never_sees_another_store(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap();
    let other = app.terminal("S002");
    let refused = [
        app.get_json(&format!("/api/v1/orders/{id}"), other).await,
        app.get_json("/api/v1/stores/S001/orders", other).await,
        app.get_json("/api/v1/stores/S001/catalog", other).await,
        app.act(id, "accept", other).await,
        app.act(id, "cancel", other).await,
        app.post_json(
            "/api/v1/orders",
            other,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await,
    ];
    for (s, p) in refused {
        assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")), "{p}");
    }
    let stream = app
        .http
        .get(app.url("/api/v1/stores/S001/orders/stream"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 403);
    let (_, after) = app
        .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
        .await;
    assert_eq!(after["status"], "created", "nothing changed");
    assert_eq!(app.queue("S001").await.len(), 1);
    // Its own store works.
    assert_eq!(app.act(id, "accept", app.terminal("S001")).await.0, 200);
    app.stop().await;
}

async fn roles_limit_what_a_key_may_do(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10")
        .await;
    let t = app.terminal("S001").to_owned();
    for key in [&app.app, &t] {
        let r = app
            .http
            .put(app.url("/api/v1/products/X"))
            .bearer_auth(key)
            .json(&json!({"name": "x", "unit": "piece", "price": "1.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "only admins edit the catalog");
    }
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap();
    assert_eq!(
        app.act(id, "accept", &app.app).await.0,
        403,
        "the app cannot accept"
    );
    assert_eq!(
        app.get_json("/api/v1/stores/S001/orders", &app.app).await.0,
        403
    );
    assert_eq!(
        app.get_json(&format!("/api/v1/orders/{id}"), &app.app)
            .await
            .0,
        200
    );
    assert_eq!(
        app.act(id, "cancel", &app.app).await.0,
        200,
        "the customer may cancel"
    );
    // A terminal places counter orders for its own store.
    let (s, o) = app
        .post_json(
            "/api/v1/orders",
            &t,
            &json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await;
    assert_eq!((s, o["channel"].as_str()), (201, Some("terminal")));
    app.stop().await;
}
