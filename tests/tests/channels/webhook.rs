//! The generic HMAC JSON webhook: accepted, forged, stale, replayed,
//! de-duplicated by event id, and its cancel.

use proto::meituan as mt;
use serde_json::{Value, json};
use tests::{Backend, on_both_databases};

use crate::app::{Chan, WEBHOOK_PLATFORM, WEBHOOK_SECRET};

on_both_databases!(
    webhook_accepts_signed_orders_once_and_refuses_the_rest,
    one_batch_of_rest_orders_and_pushes_answers_each_on_its_own,
    pushes_in_a_failed_batch_are_written_again_each_once,
);

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

/// A webhook order `id` under event `event`, of `items` (sku, quantity, price).
fn order_body(event: &str, id: &str, items: &[(&str, i64, &str)]) -> String {
    let items: Vec<Value> = items
        .iter()
        .map(|(sku, quantity, price)| json!({"sku": sku, "name": sku, "quantity": quantity, "price": price}))
        .collect();
    json!({
        "event_id": event, "type": "order.created",
        "order": {"id": id, "store_id": "S001", "total": "1.00", "items": items}
    })
    .to_string()
}

// Pushes share the group commit with REST orders (either engine): a batch
// that mixes them keeps every answer of its own.
async fn one_batch_of_rest_orders_and_pushes_answers_each_on_its_own(b: Backend) {
    use std::sync::atomic::Ordering;
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let writer = app.orders.clone();
    let faults = writer.faults().expect("a group commit");
    // The writer dies holding a first order and stays down, so what comes
    // next waits in its queue and is written as one batch.
    faults.hold_restart.store(true, Ordering::SeqCst);
    faults.panic_in_writer.store(true, Ordering::SeqCst);
    let rest = json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]});
    let (s, v) = app.post("/api/v1/orders", &app.admin, rest.clone()).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("order_writer_failed")));

    let now = now_s();
    let a = order_body("evt_a", "AG-1", &[("COLA", 2, "3.50")]);
    let pushes = [
        // 0: the first of AG-1.
        Some(a.clone()),
        None,
        // 2: AG-1 again, under another event: the same order.
        Some(order_body("evt_b", "AG-1", &[("COLA", 2, "3.50")])),
        // 3: another order under the first one's event: the same push.
        Some(order_body("evt_a", "AG-3", &[("COLA", 1, "3.50")])),
        // 4: a total above what the gateway keeps: refused on its own.
        Some(order_body(
            "evt_d",
            "AG-4",
            &[("GOLD1", 1, "60000000.00"), ("GOLD2", 1, "60000000.00")],
        )),
        None,
        // 6: more than the store has: taken anyway, flagged.
        Some(order_body("evt_e", "AG-5", &[("COLA", 150, "3.50")])),
        // 7: a REST order after it finds no stock left.
        None,
    ];
    let mut waiting = Vec::new();
    for (n, push) in pushes.into_iter().enumerate() {
        let app = std::sync::Arc::clone(&app);
        let rest = rest.clone();
        waiting.push(tokio::spawn(async move {
            match push {
                Some(body) => {
                    let msg = format!("msg_{n}");
                    send(
                        &app,
                        WEBHOOK_PLATFORM,
                        &msg,
                        now,
                        body.as_bytes(),
                        WEBHOOK_SECRET,
                    )
                    .await
                }
                None => app.post("/api/v1/orders", &app.admin, rest).await,
            }
        }));
        // Queued in this order.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while writer.queued() < n + 1 {
            assert!(std::time::Instant::now() < deadline, "job {n} never queued");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    assert!(waiting.iter().all(|w| !w.is_finished()), "all wait");
    faults.hold_restart.store(false, Ordering::SeqCst);
    let mut answers = Vec::new();
    for w in waiting {
        answers.push(w.await.unwrap());
    }
    assert_eq!(
        faults.failed_batches.load(Ordering::SeqCst),
        0,
        "the mixed batch committed as one, not order by order"
    );

    let (s, v) = &answers[0];
    assert_eq!((*s, v["outcome"].as_str()), (200, Some("created")), "{v}");
    let first = v["order_id"].as_str().unwrap().to_owned();
    for n in [1, 5] {
        assert_eq!(answers[n].0, 201, "REST order {n}: {}", answers[n].1);
    }
    let (s, v) = &answers[2];
    assert_eq!(
        (*s, v["status"].as_str(), v["order_id"].as_str()),
        (200, Some("duplicate"), Some(first.as_str())),
        "the same order under another event names the first: {v}"
    );
    let (s, v) = &answers[3];
    assert_eq!((*s, v["status"].as_str()), (200, Some("duplicate")), "{v}");
    let (s, v) = &answers[4];
    assert_eq!((*s, v["code"].as_str()), (422, Some("invalid_item")), "{v}");
    let (s, v) = &answers[6];
    assert_eq!((*s, v["outcome"].as_str()), (200, Some("created")), "{v}");
    let short = v["order_id"].as_str().unwrap().to_owned();
    let (s, v) = &answers[7];
    assert_eq!((*s, v["code"].as_str()), (409, Some("out_of_stock")), "{v}");

    // What was written: the two REST orders and the two platform orders.
    let q = app.queue("S001").await;
    assert_eq!(q.len(), 4, "{q:?}");
    let ids: Vec<&str> = q
        .iter()
        .filter_map(|o| o["channel_order_id"].as_str())
        .collect();
    assert!(ids.contains(&"AG-1") && ids.contains(&"AG-5"), "{ids:?}");
    assert_eq!(app.third_party(&first).await["platform_order_id"], "AG-1");
    let tp = app.third_party(&short).await;
    assert_eq!(tp["attention"], json!(["short_stock"]), "{tp}");
    assert_eq!(
        app.catalog_item("S001", "COLA").await["reserved"],
        "154",
        "2 REST, AG-1's 2 and AG-5's 150"
    );
    // Once written, the same order is still a duplicate naming it.
    let (s, v) = send(
        &app,
        WEBHOOK_PLATFORM,
        "msg_9",
        now,
        order_body("evt_z", "AG-1", &[("COLA", 2, "3.50")]).as_bytes(),
        WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str(), v["order_id"].as_str()),
        (200, Some("duplicate"), Some(first.as_str()))
    );
}

// A batch that fails (here a panic inside it) writes its orders again one by
// one: every push lands once, and a repeat of one still names it.
async fn pushes_in_a_failed_batch_are_written_again_each_once(b: Backend) {
    use std::sync::atomic::Ordering;
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let writer = app.orders.clone();
    let faults = writer.faults().expect("a group commit");
    faults.panic_in_batch.store(true, Ordering::SeqCst);
    let now = now_s();
    let bodies: Vec<(String, String)> = (0..6)
        .map(|n| {
            (
                format!("msg_{n}"),
                order_body(
                    &format!("evt_{n}"),
                    &format!("AG-{n}"),
                    &[("COLA", 1, "3.50")],
                ),
            )
        })
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|(msg, body)| {
        send(
            &app,
            WEBHOOK_PLATFORM,
            msg,
            now,
            body.as_bytes(),
            WEBHOOK_SECRET,
        )
    }))
    .await;
    assert!(!faults.panic_in_batch.load(Ordering::SeqCst), "it fired");
    let mut ids = Vec::new();
    for (s, v) in &answers {
        assert_eq!((*s, v["outcome"].as_str()), (200, Some("created")), "{v}");
        ids.push(v["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.queue("S001").await.len(), 6);
    assert_eq!(app.catalog_item("S001", "COLA").await["reserved"], "6");
    for (n, id) in ids.iter().enumerate() {
        let tp = app.third_party(id).await;
        assert_eq!(tp["platform_order_id"], format!("AG-{n}"), "{tp}");
    }
    let (s, v) = send(
        &app,
        WEBHOOK_PLATFORM,
        "msg_again",
        now,
        bodies[2].1.as_bytes(),
        WEBHOOK_SECRET,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str(), v["order_id"].as_str()),
        (200, Some("duplicate"), Some(ids[2].as_str()))
    );
}
