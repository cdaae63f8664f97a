//! The outbox: through an outage every update arrives once and in order;
//! stock and availability reach the platform; calls that keep failing are
//! listed and can be retried.

use std::collections::HashMap;

use hw_sim::platform::{PushKind, PushRequest};
use serde_json::json;
use tests::{Backend, on_both_databases};

use crate::app::{Chan, cola, eventually, platform_down};

on_both_databases!(
    platform_down_then_up_gets_every_update_once_in_order,
    stock_and_availability_reach_the_platform,
    calls_that_keep_failing_are_listed_and_retried,
    a_call_held_by_an_outage_is_dropped_when_the_platform_cancels_the_order,
);

/// An accept made while the platform's API is down waits in the outbox; the
/// customer cancels on the platform meanwhile. The confirm is moot: it is
/// dropped with the cancel, never sent, and nothing is left failed for an
/// operator to chase. The other order's calls still go out.
async fn a_call_held_by_an_outage_is_dropped_when_the_platform_cancels_the_order(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    platform_down(&app.sim);
    let gone = app.push_order("S001", vec![cola(1)]).await;
    let kept = app.push_order("S001", vec![cola(2)]).await;
    for out in [&gone, &kept] {
        assert_eq!(out.status, 200);
        let o = app.wait_order(&out.order_id, 2).await;
        app.act_all(o["id"].as_str().unwrap(), &["accept"]).await;
    }
    eventually(20, || async {
        app.sim.received().iter().any(|r| r.fault).then_some(())
    })
    .await
    .expect("the outage was seen");
    let c = app
        .sim
        .push(PushRequest::event_on(PushKind::Cancel, &gone.order_id))
        .await
        .unwrap();
    assert!(c.statuses.iter().all(|s| *s == 200), "{:?}", c.statuses);
    assert_eq!(
        app.order_for(&gone.order_id).await.unwrap()["status"],
        "cancelled"
    );
    app.sim.clear_faults();

    let counts = app.drained(20).await;
    assert_eq!(counts["failed"], 0, "{counts}");
    let ok = app.sim.received_ok();
    let confirms = |poid: &str| {
        ok.iter()
            .filter(|r| r.order_id.as_deref() == Some(poid) && r.path == "order/confirm")
            .count()
    };
    assert_eq!(
        confirms(&gone.order_id),
        0,
        "a confirm of a cancelled order went out"
    );
    assert_eq!(confirms(&kept.order_id), 1);
    let (s, v) = app.get("/api/v1/outbox?state=failed").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(0), "{v}");
}

async fn platform_down_then_up_gets_every_update_once_in_order(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    // Down until every update is queued and the outage has refused a call,
    // however slow the machine: then up again.
    platform_down(&app.sim);
    let mut expected: HashMap<String, Vec<&str>> = HashMap::new();
    for i in 0..4 {
        let out = app.push_order("S001", vec![cola(1)]).await;
        assert_eq!(
            out.status, 200,
            "pushes still come in while the API is down"
        );
        let o = app.wait_order(&out.order_id, 2).await;
        let actions: &[&str] = if i == 3 {
            &["reject"]
        } else {
            &["accept", "ready"]
        };
        app.act_all_with(
            o["id"].as_str().unwrap(),
            actions,
            json!({"reason": "2008 售罄"}),
        )
        .await;
        expected.insert(
            out.order_id.clone(),
            if i == 3 {
                vec!["order/cancel"]
            } else {
                vec!["order/confirm", "order/preparationMealComplete"]
            },
        );
    }
    app.stock("S001", "COLA", json!({"on_hand": "50"})).await;
    app.stock("S001", "COLA", json!({"on_hand": "40"})).await;
    eventually(20, || async {
        app.sim.received().iter().any(|r| r.fault).then_some(())
    })
    .await
    .expect("the outage was seen");
    app.sim.clear_faults();

    app.drained(20).await;
    let ok = app.sim.received_ok();
    for (poid, want) in &expected {
        let got: Vec<&str> = ok
            .iter()
            .filter(|r| r.order_id.as_deref() == Some(poid.as_str()))
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(&got, want, "order {poid}: once each, in order");
    }
    let cancel = ok.iter().find(|r| r.path == "order/cancel").unwrap();
    assert_eq!(cancel.params["reason_code"], "2008");
    assert_eq!(cancel.params["reason"], "售罄");
    let stock: Vec<&str> = ok
        .iter()
        .filter(|r| r.path == "food/sku/stock")
        .map(|r| r.params["food_data"].as_str())
        .collect();
    assert_eq!(stock.len(), 2, "{stock:?}");
    // What can still be sold: on hand less the three accepted orders' reservations.
    assert!(stock[0].contains("\"stock\":\"47\""), "{stock:?}");
    assert!(stock[1].contains("\"stock\":\"37\""), "{stock:?}");
    let counts = app.outbox_counts().await;
    assert_eq!(counts["failed"], 0);
    assert_eq!(counts["delivered"], 9);
}

async fn stock_and_availability_reach_the_platform(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let (s, v) = app
        .put(
            "/api/v1/channels/meituan/stores/MT-POI-1",
            json!({"store_id": "S001"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let food = |code: &str| {
        let code = code.to_owned();
        let sim = app.sim.clone();
        move || {
            let code = code.clone();
            let sim = sim.clone();
            async move {
                sim.foods()
                    .into_iter()
                    .find(|f| f.store == "MT-POI-1" && f.app_food_code == code)
            }
        }
    };

    // Sold out in the store.
    app.stock("S001", "COLA", json!({"on_hand": "0"})).await;
    let f = eventually(20, food("COLA")).await.expect("stock call");
    assert_eq!(f.stock.get("COLA"), Some(&0));
    app.stock("S001", "COLA", json!({"available": false})).await;
    eventually(20, || async {
        let f = food("COLA")().await?;
        (f.sell_status == Some(1)).then_some(())
    })
    .await
    .expect("sold out");
    app.stock("S001", "COLA", json!({"available": true, "on_hand": "7"}))
        .await;
    eventually(20, || async {
        let f = food("COLA")().await?;
        (f.sell_status == Some(0) && f.stock.get("COLA") == Some(&7)).then_some(())
    })
    .await
    .expect("back on sale with 7");

    // Snoozed for a few seconds (long enough that a loaded machine still sees
    // it off): off, then on again when the snooze ends.
    let until = time_in(4000);
    app.stock("S001", "COLA", json!({"snoozed_until": until}))
        .await;
    eventually(20, || async {
        let f = food("COLA")().await?;
        (f.sell_status == Some(1)).then_some(())
    })
    .await
    .expect("snoozed");
    eventually(20, || async {
        let f = food("COLA")().await?;
        (f.sell_status == Some(0)).then_some(())
    })
    .await
    .expect("the snooze ends on the platform too");

    // A mapped item: the platform's code, counted in its packs.
    let (s, _) = app
        .put(
            "/api/v1/channels/meituan/skus/MT-DUCK-500G",
            json!({"sku": "DUCK", "per_item": "0.500"}),
        )
        .await;
    assert_eq!(s, 200);
    app.stock("S001", "DUCK", json!({"on_hand": "3.200"})).await;
    let f = eventually(20, food("MT-DUCK-500G"))
        .await
        .expect("mapped stock");
    assert_eq!(f.stock.get("MT-DUCK-500G"), Some(&6));

    // A store no platform knows: nothing is sent.
    app.drained(20).await;
    let before = app.sim.received().len();
    app.stock("S002", "COLA", json!({"on_hand": "0"})).await;
    app.two_more("dispatcher_rounds").await;
    assert_eq!(app.sim.received().len(), before);
}

/// RFC 3339, `ms` from now.
fn time_in(ms: u64) -> String {
    gateway::clock::rfc3339(gateway::clock::now_micros() + ms as i64 * 1000)
}

async fn calls_that_keep_failing_are_listed_and_retried(b: Backend) {
    let Some(app) = Chan::spawn_with(b, |c| c.outbox.max_attempts = 3).await else {
        return;
    };
    platform_down(&app.sim);
    let (_, o) = app.push_new("S001", vec![cola(1)]).await;
    let id = o["id"].as_str().unwrap();
    app.act_all(id, &["accept", "ready"]).await;
    let failed = eventually(10, || async {
        let (_, v) = app.get("/api/v1/outbox?state=failed").await;
        let e = v["entries"].as_array()?.clone();
        (!e.is_empty()).then_some(e)
    })
    .await
    .expect("a failed entry");
    assert_eq!(
        failed.len(),
        1,
        "the later call waits behind it: {failed:?}"
    );
    assert_eq!(failed[0]["path"], "order/confirm");
    assert_eq!(failed[0]["attempts"], 3);
    assert!(failed[0]["last_error"].as_str().unwrap().contains("503"));
    assert_eq!(failed[0]["order_id"], id);
    let (_, pending) = app.get("/api/v1/outbox?state=pending").await;
    assert_eq!(
        pending["entries"][0]["path"],
        "order/preparationMealComplete"
    );
    assert_eq!(
        pending["entries"][0]["attempts"], 0,
        "never sent before the confirm"
    );

    // Not for anyone else; bad input.
    let (s, _) = app
        .send(app.http.get(app.url("/api/v1/outbox")), &app.terminal, None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = app.get("/api/v1/outbox?state=lost").await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post("/api/v1/outbox/999999/retry", &app.admin, json!({}))
        .await;
    assert_eq!(s, 404);
    let pid = pending["entries"][0]["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/outbox/{pid}/retry"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("outbox_entry_not_failed"))
    );

    app.sim.clear_faults();
    let fid = failed[0]["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/outbox/{fid}/retry"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "pending");
    app.drained(20).await;
    assert_eq!(
        app.platform_calls(),
        ["order/confirm", "order/preparationMealComplete"]
    );
    let (_, v) = app.get("/api/v1/outbox?state=failed").await;
    assert_eq!(v["entries"], json!([]));
    let (_, stats) = app.get("/api/v1/outbox/stats").await;
    assert_eq!(stats["process"]["failed"], 1);
    assert!(stats["process"]["retried"].as_u64().unwrap() >= 2);
}
