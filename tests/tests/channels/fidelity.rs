//! The platform simulator answers as the real platform does, so the gateway
//! is not tested against its own misreadings: it refuses to push ids the
//! platform never sends, what it pushes (with the platform's own field names)
//! is taken by the gateway, and a confirm sent twice is refused the way the
//! platform refuses it — which the gateway counts as done.

use std::time::Duration;

use hw_sim::platform::{Faults, PushKind, PushRequest};
use serde_json::json;
use tests::{Backend, on_both_databases};

use crate::app::{Chan, cola, eventually};

on_both_databases!(
    the_simulator_never_pushes_an_order_id_the_platform_never_sends,
    the_platforms_field_names_reach_the_store,
    a_confirm_whose_answer_was_lost_is_done_not_failed,
);

async fn the_simulator_never_pushes_an_order_id_the_platform_never_sends(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let r = app
        .http
        .post(format!("{}/push", app.sim.url()))
        .json(&json!({
            "event": "new",
            "order": {"order_id": "MT-1001", "store": "S001",
                      "items": [{"sku": "COLA", "quantity": 1, "price": "3.50"}]}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_push", "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("1 to 32 digits"),
        "{v}"
    );
    assert!(app.sim.pushes().is_empty(), "nothing was sent");
    assert!(app.queue("S001").await.is_empty());

    // What the gateway does with such an id, should a platform ever send
    // one: sent raw, it is refused with the platform's error shape.
    let mut raw = PushRequest::new_order("S001", vec![cola(1)]);
    raw.raw
        .insert("order_id".into(), Some("MT-1001".to_owned()));
    let out = app.sim.push(raw).await.unwrap();
    assert_eq!(out.status, 400, "{:?}", out.answer);
    assert_eq!(out.answer["data"], "ng", "{:?}", out.answer);
    assert_eq!(out.answer["error"]["code"], 700, "{:?}", out.answer);
    assert!(app.queue("S001").await.is_empty());
}

async fn the_platforms_field_names_reach_the_store(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let (out, _order) = app.push_new("S001", vec![cola(2)]).await;
    assert_eq!(out.answer, json!({"data": "ok"}));
    assert_eq!(
        out.params.get("poi_receive_detail").map(String::as_str),
        Some(r#"{"wmPoiReceiveCent":700}"#)
    );
    for kind in [
        PushKind::DeliveryStatus,
        PushKind::RefundApply,
        PushKind::RefundCancel,
    ] {
        let r = app
            .sim
            .push(PushRequest::event_on(kind, &out.order_id))
            .await
            .unwrap();
        assert_eq!(
            (r.status, &r.answer),
            (200, &json!({"data": "ok"})),
            "{kind:?}"
        );
    }
    // The courier the platform names as `dispatcher_name` reaches the feed.
    let ev = eventually(5, || async {
        app.feed("S001")
            .await
            .into_iter()
            .find(|(k, _)| k == "order.delivery_status")
    })
    .await
    .expect("a delivery status event");
    assert!(ev.1.to_string().contains("测试骑手"), "{}", ev.1);
}

async fn a_confirm_whose_answer_was_lost_is_done_not_failed(b: Backend) {
    let Some(app) = Chan::spawn_with(b, |c| {
        c.outbox.request_timeout = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let (_, o) = app.push_new("S001", vec![cola(1)]).await;
    // The platform takes the first confirm but answers too late: the
    // gateway sends it again and the platform refuses it as already done.
    app.sim
        .set_faults(Faults {
            delay_ms: Some(1500),
            count: Some(1),
            ..Faults::default()
        })
        .unwrap();
    app.act_all(o["id"].as_str().unwrap(), &["accept", "ready"])
        .await;
    app.drained(20).await;
    let confirms: Vec<_> = app
        .sim
        .received()
        .into_iter()
        .filter(|r| r.path == "order/confirm")
        .collect();
    assert!(confirms.len() >= 2, "{confirms:?}");
    assert!(confirms[0].ok);
    assert!(
        confirms[1..]
            .iter()
            .all(|r| r.error.as_deref() == Some("808 操作失败,订单已经确认过了")),
        "{confirms:?}"
    );
    let (_, failed) = app.get("/api/v1/outbox?state=failed").await;
    assert_eq!(failed["entries"], json!([]), "nothing failed");
    assert_eq!(
        app.platform_calls(),
        ["order/confirm", "order/preparationMealComplete"]
    );
}
