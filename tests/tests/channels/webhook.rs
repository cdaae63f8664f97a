//! The generic HMAC JSON webhook: accepted, forged, stale, replayed,
//! de-duplicated by event id, and its cancel.

use proto::meituan as mt;
use serde_json::{Value, json};
use tests::{Backend, on_both_databases};

use crate::app::{Chan, WEBHOOK_PLATFORM, WEBHOOK_SECRET};

on_both_databases!(webhook_accepts_signed_orders_once_and_refuses_the_rest);

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn send(
    app: &Chan,
    platform: &str,
    id: &str,
    ts: i64,
    body: &[u8],
    secret: &str,
) -> (u16, Value) {
    let sig = mt::webhook_sign(secret, ts, id, body);
    let r = app
        .http
        .post(app.url(&format!("/channels/webhook/{platform}")))
        .header("content-type", "application/json")
        .header(mt::WEBHOOK_ID_HEADER, id)
        .header(mt::WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
        .header(mt::WEBHOOK_SIGNATURE_HEADER, sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn webhook_accepts_signed_orders_once_and_refuses_the_rest(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let order = json!({
        "event_id": "evt_1", "type": "order.created",
        "order": {"id": "AG-1001", "store_id": "S001", "day_seq": 7, "note": "多放葱",
                  "recipient": {"name": "王先生", "phone": "13800000000", "address": "解放路 1 号"},
                  "shipping_fee": "4.00", "total": "11.00", "original_total": "12.00",
                  "store_receives": "6.50",
                  "items": [{"sku": "COLA", "name": "可乐", "quantity": 2, "price": "3.50"}],
                  "discounts": [{"name": "满减", "amount": "1.00"}]}
    })
    .to_string();
    let body = order.as_bytes();
    let now = now_s();

    // Forged, stale, unsigned, unknown platform: refused, nothing made.
    let (s, v) = send(&app, WEBHOOK_PLATFORM, "msg_1", now, body, "wrong").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("bad_signature")));
    let (s, v) = send(
        &app,
        WEBHOOK_PLATFORM,
        "msg_1",
        now - 3600,
        body,
        WEBHOOK_SECRET,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("stale_timestamp")));
    let r = app
        .http
        .post(app.url(&format!("/channels/webhook/{WEBHOOK_PLATFORM}")))
        .body(order.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = send(&app, "nobody", "msg_1", now, body, WEBHOOK_SECRET).await;
    assert_eq!(s, 404);
    let (s, v) = send(
        &app,
        WEBHOOK_PLATFORM,
        "msg_x",
        now,
        b"{not json",
        WEBHOOK_SECRET,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("malformed_push")));
    let big = vec![b' '; 300 * 1024];
    let (s, _) = send(&app, WEBHOOK_PLATFORM, "msg_y", now, &big, WEBHOOK_SECRET).await;
    assert_eq!(s, 413);
    assert!(app.queue("S001").await.is_empty());

    // Accepted once; the same message replayed, and the same order under a
    // new event id, are duplicates.
    let (s, v) = send(&app, WEBHOOK_PLATFORM, "msg_1", now, body, WEBHOOK_SECRET).await;
    assert_eq!(
        (s, v["status"].as_str(), v["outcome"].as_str()),
        (200, Some("accepted"), Some("created")),
        "{v}"
    );
    let id = v["order_id"].as_str().unwrap().to_owned();
    let (s, v) = send(&app, WEBHOOK_PLATFORM, "msg_1", now, body, WEBHOOK_SECRET).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")));
    let again = order.replace("evt_1", "evt_2");
    let (s, v) = send(
        &app,
        WEBHOOK_PLATFORM,
        "msg_2",
        now,
        again.as_bytes(),
        WEBHOOK_SECRET,
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")));
    let q = app.queue("S001").await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["platform"], WEBHOOK_PLATFORM);
    assert_eq!(q[0]["channel_order_id"], "AG-1001");
    assert_eq!(q[0]["total"], "7.00");
    let tp = app.third_party(&id).await;
    assert_eq!(tp["day_seq"], 7);
    assert_eq!(tp["store_receives"], "6.50");
    assert_eq!(tp["recipient"]["name"], "王先生");

    // Accepting it sends nothing anywhere (this platform has no API here).
    app.act_all(&id, &["accept"]).await;

    // Its cancel, once.
    let cancel = json!({"event_id": "evt_3", "type": "order.cancelled", "order": {"id": "AG-1001"}, "reason": "顾客取消"}).to_string();
    for _ in 0..2 {
        let (s, v) = send(
            &app,
            WEBHOOK_PLATFORM,
            "msg_3",
            now,
            cancel.as_bytes(),
            WEBHOOK_SECRET,
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let o = app.order_for("AG-1001").await.unwrap();
    assert_eq!(o["status"], "cancelled");
    let changes = app.feed_count("S001", "order.status_changed").await;
    assert_eq!(changes, 2, "accept and one cancel");
    let counts = app.outbox_counts().await;
    assert_eq!(counts["pending"], 0);
    assert_eq!(counts["delivered"], 0);
}
