//! Stock: reservations, the oversell race, release, consumption, snooze.

use std::sync::Arc;

use proto::order::Unit;
use serde_json::json;
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    concurrent_orders_never_oversell,
    cancel_releases_and_complete_consumes,
    snoozed_and_unlisted_items_refuse_orders,
);

async fn concurrent_orders_never_oversell(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("LAST", "最后五个", Unit::Piece, "1.00", "5")
        .await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.order("S001", &[("LAST", "1")]).await })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        let (s, body) = t.await.unwrap();
        match s {
            201 => created += 1,
            409 => {
                assert_eq!(body["code"], "out_of_stock");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (5, 35));
    let item = app.item("S001", "LAST").await;
    assert_eq!(item["on_hand"], "5");
    assert_eq!(item["reserved"], "5");
    assert_eq!(item["sellable"], "0");
    assert_eq!(item["available"], false);
    assert_eq!(app.queue("S001").await.len(), 5);
    // The other store's stock is its own.
    assert_eq!(app.item("S002", "LAST").await["sellable"], "5");
}

async fn cancel_releases_and_complete_consumes(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", "2.000")
        .await;
    let (_, a) = app.order("S001", &[("DUCK-NECK", "0.500")]).await;
    let (_, c) = app.order("S001", &[("DUCK-NECK", "1.250")]).await;
    let item = app.item("S001", "DUCK-NECK").await;
    assert_eq!(
        (item["reserved"].as_str(), item["sellable"].as_str()),
        (Some("1.750"), Some("0.250"))
    );
    let (s, _) = app.order("S001", &[("DUCK-NECK", "0.251")]).await;
    assert_eq!(s, 409, "only 0.250 kg left");
    let t = app.terminal("S001");
    assert_eq!(app.act(a["id"].as_str().unwrap(), "cancel", t).await.0, 200);
    let item = app.item("S001", "DUCK-NECK").await;
    assert_eq!(
        (item["on_hand"].as_str(), item["reserved"].as_str()),
        (Some("2.000"), Some("1.250"))
    );
    let id = c["id"].as_str().unwrap();
    for step in ["accept", "ready", "complete"] {
        assert_eq!(app.act(id, step, t).await.0, 200);
    }
    let item = app.item("S001", "DUCK-NECK").await;
    assert_eq!(
        (item["on_hand"].as_str(), item["reserved"].as_str()),
        (Some("0.750"), Some("0.000"))
    );
    app.stop().await;
}

async fn snoozed_and_unlisted_items_refuse_orders(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("TOFU", "卤豆干", Unit::Kg, "29.90", "10.000")
        .await;
    let put = |body: serde_json::Value| {
        app.http
            .put(app.url("/api/v1/stores/S001/stock/TOFU"))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };
    assert_eq!(
        put(json!({"snoozed_until": "2099-01-01T00:00:00+08:00"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, p) = app.order("S001", &[("TOFU", "0.5")]).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("item_unavailable")));
    assert_eq!(app.item("S001", "TOFU").await["available"], false);
    // The other store is not snoozed.
    assert_eq!(app.order("S002", &[("TOFU", "0.5")]).await.0, 201);
    // A snooze in the past has ended.
    assert_eq!(
        put(json!({"snoozed_until": "2020-01-01T00:00:00+08:00"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.order("S001", &[("TOFU", "0.5")]).await.0, 201);
    assert_eq!(
        put(json!({"available": false})).await.unwrap().status(),
        200
    );
    let (s, p) = app.order("S001", &[("TOFU", "0.5")]).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("item_unavailable")));
    assert_eq!(
        put(json!({"available": true, "price": "19.90"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, o) = app.order("S001", &[("TOFU", "1")]).await;
    assert_eq!(o["total"], "19.90", "the store's price override applies");
    app.stop().await;
}
