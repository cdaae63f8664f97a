//! Pushes in: a new order reaches every surface of the store's queue; the
//! store's accept reaches the platform; duplicates, forgeries and bad input
//! change nothing; unmapped and short items are flagged; a cancel before
//! its order is applied when the order comes; refunds and the alert.

use std::time::{Duration, Instant};

use gateway::channels::alerts;
use gateway::clock::Clock;
use gateway::events::Hub;
use hw_sim::platform::{ItemSpec, PushKind, PushRequest};
use proto::meituan as mt;
use proto::order::{OrderAction, OrderStatus, TerminalId};
use proto::soap::ListOrders;
use serde_json::{Value, json};
use terminal_sdk::client::{ClientConfig, GatewayClient};
use tests::{Backend, on_both_databases};

use crate::app::{Chan, SseReader, cola, eventually};

on_both_databases!(
    pushed_order_reaches_rest_sse_and_soap_and_accept_reaches_the_platform,
    duplicate_pushes_make_one_order,
    forged_stale_malformed_and_oversized_pushes_change_nothing,
    unmapped_and_short_items_flag_the_order_instead_of_dropping_it,
    a_cancel_before_its_order_is_applied_when_the_order_comes,
    refund_requests_are_feed_events_and_answers_reach_the_platform,
    an_unconfirmed_order_raises_one_alert,
    the_alert_is_due_by_the_gateways_clock,
);

fn unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn terminal_client(app: &Chan) -> GatewayClient {
    // The terminal id is the one the key was made for.
    let row: (String,) = sqlx::query_as("SELECT terminal_id FROM api_keys WHERE terminal_id IS NOT NULL AND store_id = 'S001' ORDER BY created_at DESC")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut cfg = ClientConfig::new(&app.base, TerminalId::parse(&row.0).unwrap(), &app.terminal);
    cfg.backoff = Duration::from_millis(10);
    GatewayClient::new(cfg).unwrap()
}

async fn pushed_order_reaches_rest_sse_and_soap_and_accept_reaches_the_platform(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let r = app
        .http
        .get(app.url("/api/v1/stores/S001/orders/stream"))
        .bearer_auth(&app.terminal)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut sse = SseReader::new(r);
    let client = terminal_client(&app).await;
    let before = client.list_orders(&ListOrders::default()).await.unwrap();

    let mut push = PushRequest::new_order(
        "S001",
        vec![cola(2), ItemSpec::new("DUCK", "卤鸭脖", 1, 3990)],
    );
    push.order.note = Some("不要辣".into());
    push.order.shipping_fee = Some(hw_sim::platform::Yuan(500));
    push.order.discount = Some(hw_sim::platform::Yuan(300));
    push.order.address = Some("人民路 8 号".into());
    let sent = Instant::now();
    let out = app.sim.push(push).await.unwrap();
    assert_eq!(out.status, 200, "{:?}", out.answer);
    assert_eq!(out.answer, json!({"data": "ok"}));
    let poid = out.order_id.clone();

    // REST, SSE and SOAP all show it within a second.
    let order = eventually(20, || app.order_for(&poid))
        .await
        .expect("in the REST queue within a second");
    let (ev, data) = sse
        .next(Duration::from_secs(1))
        .await
        .expect("SSE event within a second");
    assert_eq!(ev, "order.created");
    assert_eq!(data["order"]["channel_order_id"], poid.as_str());
    let page = eventually(20, || async {
        let p = client
            .list_orders(&ListOrders {
                since: Some(before.cursor),
                ..Default::default()
            })
            .await
            .ok()?;
        p.orders
            .into_iter()
            .find(|o| o.channel_order_id.as_deref() == Some(poid.as_str()))
    })
    .await
    .expect("in the terminal's ListOrders within a second");
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert_eq!(page.status, OrderStatus::Created);

    assert_eq!(order["channel"], "third_party");
    assert_eq!(order["platform"], "meituan");
    assert_eq!(order["payment_status"], "paid");
    assert_eq!(order["status"], "created");
    assert_eq!(order["total"], "46.90"); // 2 × 3.50 + 39.90
    assert_eq!(order["lines"][1]["quantity"], "1.000");
    assert_eq!(order["note"], "不要辣");
    let id = order["id"].as_str().unwrap().to_owned();
    let tp = app.third_party(&id).await;
    assert_eq!(tp["day_seq"], out.day_seq.unwrap());
    assert_eq!(tp["recipient"]["address"], "人民路 8 号");
    assert_eq!(tp["shipping_fee"], "5.00");
    assert_eq!(tp["paid"], "48.90"); // 46.90 − 3.00 + 5.00
    assert_eq!(tp["store_receives"], "43.90");
    assert_eq!(tp["discounts"][0]["amount"], "3.00");
    assert_eq!(tp["attention"], json!([]));
    // Stock is reserved like any order's.
    let cola_item = app.catalog_item("S001", "COLA").await;
    assert_eq!(cola_item["reserved"], "2");

    // Accept on the terminal (SOAP) → order/confirm at the platform; ready → meal complete.
    let accepted = client
        .update_order_status(&id, OrderAction::Accept, None)
        .await
        .unwrap();
    assert_eq!(accepted.status, OrderStatus::Accepted);
    app.act_all(&id, &["ready"]).await;
    let calls = eventually(20, || async {
        let ok: Vec<String> = app
            .sim
            .received_ok()
            .into_iter()
            .filter(|r| r.order_id.as_deref() == Some(poid.as_str()))
            .map(|r| r.path)
            .collect();
        (ok.len() >= 2).then_some(ok)
    })
    .await
    .expect("the platform hears of accept and ready");
    assert_eq!(calls, ["order/confirm", "order/preparationMealComplete"]);
    let p = app.sim.order(&poid).unwrap();
    assert_eq!(p.status, 4);
    assert!(p.meal_ready);
    // Every call carried a valid signature.
    assert!(app.sim.received().iter().all(|r| r.sig_ok));
}

async fn duplicate_pushes_make_one_order(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let mut push = PushRequest::new_order("S001", vec![cola(1)]);
    push.repeat = 8;
    push.concurrent = true;
    let out = app.sim.push(push.clone()).await.unwrap();
    assert!(out.statuses.iter().all(|s| *s == 200), "{:?}", out.statuses);
    // The platform retries later with a fresh timestamp and signature.
    push.order.order_id = Some(out.order_id.clone());
    push.repeat = 3;
    push.concurrent = false;
    let again = app.sim.push(push).await.unwrap();
    assert!(again.statuses.iter().all(|s| *s == 200));

    let orders: Vec<Value> = app
        .queue("S001")
        .await
        .into_iter()
        .filter(|o| o["channel_order_id"] == out.order_id.as_str())
        .collect();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let created = app.feed_count("S001", "order.created").await;
    assert_eq!(created, 1);
    let item = app.catalog_item("S001", "COLA").await;
    assert_eq!(item["reserved"], "1", "reserved once");

    // Duplicate cancels: one status change.
    let mut cancel = PushRequest::event_on(PushKind::Cancel, &out.order_id);
    cancel.repeat = 4;
    cancel.concurrent = true;
    let c = app.sim.push(cancel).await.unwrap();
    assert!(c.statuses.iter().all(|s| *s == 200));
    let changes = app.feed_count("S001", "order.status_changed").await;
    assert_eq!(changes, 1);
    let order = app.order_for(&out.order_id).await.unwrap();
    assert_eq!(order["status"], "cancelled");
    // The platform cancelled it: nothing is echoed back.
    app.drained(20).await;
    assert!(app.sim.received().iter().all(|r| r.path != "order/cancel"));
}

async fn forged_stale_malformed_and_oversized_pushes_change_nothing(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let base = PushRequest::new_order("S001", vec![cola(1)]);

    let mut forged = base.clone();
    forged.tamper = true;
    let r = app.sim.push(forged).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.answer["data"], "ng");
    assert_eq!(r.answer["error"]["code"], 703);

    let mut stale = base.clone();
    stale.stale_s = 3600;
    let r = app.sim.push(stale).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.answer["error"]["code"], 704);

    let mut future = base.clone();
    future.stale_s = -3600;
    assert_eq!(app.sim.push(future).await.unwrap().status, 401);

    for (k, v) in [
        ("detail", Some("not json")),
        ("total", None),
        ("day_seq", Some("-1")),
        ("total", Some("1.234")),
        (
            "detail",
            Some(r#"[{"app_food_code":"COLA","quantity":0,"price":1}]"#),
        ),
    ] {
        let mut bad = base.clone();
        bad.raw.insert(k.to_owned(), v.map(str::to_owned));
        let r = app.sim.push(bad).await.unwrap();
        assert_eq!(r.status, 400, "{k}={v:?}: {:?}", r.answer);
        assert_eq!(r.answer["data"], "ng");
    }

    // Not a form at all, an unknown event, an unknown app, too large.
    let post = |path: &str, body: Vec<u8>| {
        app.http
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post("/channels/meituan/new_order", b"%zz=1".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/channels/meituan/new_order", b"order_id=1".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no app_id, no sig");
    let r = post("/channels/meituan/new_order", vec![b'a'; 300 * 1024])
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Signed right, but for another app.
    let url = app.url("/channels/meituan/new_order");
    let mut form = vec![
        ("order_id".to_owned(), "1".to_owned()),
        ("app_id".to_owned(), "someone-else".to_owned()),
        ("timestamp".to_owned(), (unix_s()).to_string()),
    ];
    let sig = mt::sign(&url, &form, crate::app::SECRET);
    form.push(("sig".into(), sig));
    let r = post(
        "/channels/meituan/new_order",
        mt::encode_form(&form).into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    assert!(app.queue("S001").await.is_empty());
    let inbox: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM channel_inbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(inbox.0, 0);

    // And an honest push still works.
    let r = app.sim.push(base).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(app.queue("S001").await.len(), 1);
}

async fn unmapped_and_short_items_flag_the_order_instead_of_dropping_it(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    // An item code we do not know.
    let (_, order) = app
        .push_new(
            "S001",
            vec![cola(1), ItemSpec::new("MT-FISH-9", "酸菜鱼", 2, 4800)],
        )
        .await;
    assert_eq!(order["lines"].as_array().unwrap().len(), 2);
    assert_eq!(order["lines"][1]["name"], "酸菜鱼");
    assert_eq!(order["total"], "99.50");
    assert!(
        order["note"].as_str().unwrap().contains("unmapped_items"),
        "{order}"
    );
    assert_eq!(order["attention"], json!(["unmapped_items"]), "{order}");
    let tp = app.third_party(order["id"].as_str().unwrap()).await;
    assert_eq!(tp["attention"], json!(["unmapped_items"]));
    assert_eq!(tp["unmapped"][0]["platform_sku"], "MT-FISH-9");
    assert_eq!(tp["unmapped"][0]["quantity"], 2);

    // Mapped: the platform's code and half a kilo per item.
    let (s, m) = app
        .put(
            "/api/v1/channels/meituan/skus/MT-DUCK-500G",
            json!({"sku": "DUCK", "per_item": "0.500"}),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    let (s, list) = app.get("/api/v1/channels/meituan/skus").await;
    assert_eq!(s, 200);
    assert_eq!(list["mappings"][0]["per_item"], "0.500");
    let (_, order) = app
        .push_new(
            "S001",
            vec![ItemSpec::new("MT-DUCK-500G", "鸭脖半斤", 3, 2000)],
        )
        .await;
    assert_eq!(order["lines"][0]["sku"], "DUCK");
    assert_eq!(order["lines"][0]["quantity"], "1.500");
    assert_eq!(order["lines"][0]["line_total"], "60.00");
    assert_eq!(order["lines"][0]["unit_price"], "40.00");
    assert!(
        order.get("attention").is_none(),
        "nothing to look at: {order}"
    );
    let tp = app.third_party(order["id"].as_str().unwrap()).await;
    assert_eq!(tp["attention"], json!([]));

    // More than the store has: accepted (the platform sold it), flagged.
    app.stock("S001", "COLA", json!({"on_hand": "2"})).await;
    let (_, order) = app.push_new("S001", vec![cola(5)]).await;
    let tp = app.third_party(order["id"].as_str().unwrap()).await;
    assert_eq!(tp["attention"], json!(["short_stock"]));
    assert_eq!(order["attention"], json!(["short_stock"]), "{order}");
    // No other channel can sell what is not there.
    let (s, _) = app
        .post(
            "/api/v1/orders",
            &app.admin,
            json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await;
    assert_eq!(s, 409);

    // A platform store we do not know: refused with a reason, nothing made.
    let out = app.push_order("NOPE", vec![cola(1)]).await;
    assert_eq!(out.status, 422, "{:?}", out.answer);
    assert_eq!(out.answer["data"], "ng");
}

async fn a_cancel_before_its_order_is_applied_when_the_order_comes(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let poid = "880000001";
    let mut cancel = PushRequest::event_on(PushKind::Cancel, poid);
    cancel.order.reason = Some("用户取消".into());
    let r = app.sim.push(cancel.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.answer);
    assert!(app.queue("S001").await.is_empty());
    // Repeated while held: still one.
    app.sim.push(cancel).await.unwrap();
    let (s, held) = app.get("/api/v1/channels/held").await;
    assert_eq!(s, 200, "{held}");
    assert_eq!(held["held"].as_array().unwrap().len(), 1, "{held}");
    assert_eq!(held["held"][0]["kind"], "cancel");
    assert_eq!(held["held"][0]["platform_order_id"], poid);

    let mut push = PushRequest::new_order("S001", vec![cola(3)]);
    push.order.order_id = Some(poid.into());
    let r = app.sim.push(push).await.unwrap();
    assert_eq!(r.status, 200);
    let order = eventually(20, || async {
        let o = app.order_for(poid).await?;
        (o["status"] == "cancelled").then_some(o)
    })
    .await
    .expect("the held cancel applied");
    let (_, held) = app.get("/api/v1/channels/held").await;
    assert_eq!(held["held"], json!([]), "applied");
    let last = order["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["by"], "platform:meituan");
    assert!(last["reason"].as_str().unwrap().contains("用户取消"));
    let changes = app.feed_count("S001", "order.status_changed").await;
    assert_eq!(changes, 1);
    let item = app.catalog_item("S001", "COLA").await;
    assert_eq!(item["reserved"], "0", "the stock is released");

    // A cancel of an order already made ready is refused and recorded.
    let (out, o) = app.push_new("S001", vec![cola(1)]).await;
    app.act_all(o["id"].as_str().unwrap(), &["accept", "ready"])
        .await;
    let r = app
        .sim
        .push(PushRequest::event_on(PushKind::Cancel, &out.order_id))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let outcome: (String,) = sqlx::query_as(
        "SELECT outcome FROM channel_inbox WHERE kind = 'cancel' AND platform_order_id = $1",
    )
    .bind(out.order_id.clone())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(outcome.0.starts_with("refused"), "{}", outcome.0);
    assert_eq!(
        app.order_for(&out.order_id).await.unwrap()["status"],
        "ready"
    );
}

async fn refund_requests_are_feed_events_and_answers_reach_the_platform(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let (out, o) = app.push_new("S001", vec![cola(2)]).await;
    let id = o["id"].as_str().unwrap().to_owned();
    let (s, v) = app
        .post(
            &format!("/api/v1/orders/{id}/third_party/refund_agree"),
            &app.terminal,
            json!({}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("no_refund_requested")));

    let mut apply = PushRequest::event_on(PushKind::RefundApply, &out.order_id);
    apply.order.reason = Some("洒了".into());
    apply.order.money = Some(hw_sim::platform::Yuan(350));
    apply.repeat = 3;
    let r = app.sim.push(apply).await.unwrap();
    assert!(r.statuses.iter().all(|s| *s == 200));
    let feed = app.feed("S001").await;
    let asks: Vec<&Value> = feed
        .iter()
        .filter(|(k, _)| k == "order.refund_requested")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(asks.len(), 1, "duplicates make one event");
    assert_eq!(asks[0]["event"]["amount"], "3.50");
    assert_eq!(asks[0]["event"]["reason"], "洒了");
    assert_eq!(asks[0]["order"]["id"], id.as_str());

    let (s, v) = app
        .post(
            &format!("/api/v1/orders/{id}/third_party/refund_agree"),
            &app.terminal,
            json!({"reason": "同意"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    app.drained(20).await;
    assert_eq!(app.platform_calls(), ["order/refund/agree"]);
    let o = app.order_for(&out.order_id).await.unwrap();
    assert_eq!(o["payment_status"], "refunded");
    let tp = app.third_party(&id).await;
    assert_eq!(tp["refund_state"], "agreed");

    // A second request, withdrawn by the customer.
    app.sim
        .push(PushRequest::event_on(PushKind::RefundApply, &out.order_id))
        .await
        .unwrap();
    app.sim
        .push(PushRequest::event_on(PushKind::RefundCancel, &out.order_id))
        .await
        .unwrap();
    let kinds: Vec<String> = app.feed("S001").await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "order.refund_cancelled")
            .count(),
        1,
        "{kinds:?}"
    );
    let tp = app.third_party(&id).await;
    assert_eq!(tp["refund_state"], "cancelled");
}

/// The alert rule on a manual clock: nothing is due until the clock has
/// passed the limit, then exactly the order still unconfirmed is, once.
async fn the_alert_is_due_by_the_gateways_clock(b: Backend) {
    const LIMIT: Duration = Duration::from_secs(600);
    // Starts at the real time: the simulator signs its pushes with it.
    let clock = Clock::manual(gateway::clock::now_micros());
    let Some(app) = Chan::spawn_at(b, clock.clone(), |c| {
        c.unconfirmed_alert = LIMIT;
        // The loop stays asleep; the test runs the check itself.
        c.alert_check = Duration::from_secs(24 * 3600);
    })
    .await
    else {
        return;
    };
    let (slow, _) = app.push_new("S001", vec![cola(1)]).await;
    let (_, q) = app.push_new("S001", vec![cola(1)]).await;
    app.act_all(q["id"].as_str().unwrap(), &["accept"]).await;
    let hub = Hub::default();
    let check = || alerts::check(&app.db, &hub, LIMIT);

    clock.advance(LIMIT - Duration::from_secs(1));
    assert_eq!(check().await.unwrap(), 0, "one second before the limit");
    assert_eq!(app.feed_count("S001", "order.unconfirmed_alert").await, 0);

    clock.advance(Duration::from_secs(2));
    assert_eq!(
        check().await.unwrap(),
        1,
        "past the limit: the unconfirmed one"
    );
    let alerts: Vec<Value> = app
        .feed("S001")
        .await
        .into_iter()
        .filter(|(k, _)| k == "order.unconfirmed_alert")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0]["order"]["channel_order_id"],
        slow.order_id.as_str()
    );
    assert_eq!(alerts[0]["event"]["waiting_s"], 601, "{}", alerts[0]);
    assert_eq!(alerts[0]["event"]["limit_s"], 600);

    clock.advance(LIMIT);
    assert_eq!(check().await.unwrap(), 0, "once per order");
    assert_eq!(app.feed_count("S001", "order.unconfirmed_alert").await, 1);
}

async fn an_unconfirmed_order_raises_one_alert(b: Backend) {
    let Some(app) = Chan::spawn_with(b, |c| {
        // Long enough that a loaded machine accepts the second order in time.
        c.unconfirmed_alert = LIMIT;
        c.alert_check = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    const LIMIT: Duration = Duration::from_secs(3);
    let slow = app.push_order("S001", vec![cola(1)]).await;
    let (_, q) = app.push_new("S001", vec![cola(1)]).await;
    app.act_all(q["id"].as_str().unwrap(), &["accept"]).await;
    // Both orders exist by now, so both are past the limit after this.
    let both_due = tokio::time::Instant::now() + LIMIT;
    let alert = eventually(20, || async {
        app.feed("S001")
            .await
            .into_iter()
            .find(|(k, _)| k == "order.unconfirmed_alert")
    })
    .await
    .expect("an alert");
    assert_eq!(alert.1["order"]["channel_order_id"], slow.order_id.as_str());
    // Then give the loop two more passes past both orders' limits: a second
    // alert for either would be raised there.
    tokio::time::sleep_until(both_due).await;
    app.two_more("alert_rounds").await;
    let alerts = app.feed_count("S001", "order.unconfirmed_alert").await;
    assert_eq!(alerts, 1, "once per order, none for the accepted one");
    let (_, stats) = app.get("/api/v1/outbox/stats").await;
    assert_eq!(stats["unconfirmed_alerts_total"], 1);
    assert_eq!(stats["process"]["unconfirmed_alerts"], 1);

    // The same for a Prometheus scrape (admin key), and nothing without one.
    let scrape = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = scrape.text().await.unwrap();
    for line in [
        "# TYPE gateway_unconfirmed_alerts_total counter",
        "gateway_unconfirmed_alerts_total 1",
        "gateway_third_party_unconfirmed_orders 1",
        "gateway_orders{status=\"accepted\"} 1",
        "gateway_outbox_rows{state=\"failed\"} 0",
        "gateway_payment_charges{state=\"pending\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // The passes the loops finished (the alert loop has run at least twice).
    for name in [
        "gateway_outbox_dispatcher_rounds_total",
        "gateway_alert_rounds_total",
    ] {
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(n >= 2, "{name} {n}");
    }
    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
