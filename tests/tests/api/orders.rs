//! Creating orders, idempotency, the state machine, totals and names.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::clock::Clock;
use proto::order::Unit;
use serde_json::{Value, json};
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    idempotent_create_returns_the_original,
    same_key_different_body_is_a_conflict,
    every_illegal_transition_is_refused,
    weights_are_totalled_to_the_fen,
    chinese_names_round_trip,
    display_numbers_count_per_store,
    display_numbers_restart_on_the_next_business_day,
    history_records_who_when_and_why,
    channel_order_id_never_duplicates,
);

async fn setup(b: Backend) -> Option<TestApp> {
    let app = TestApp::spawn(b).await?;
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    app.product("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", "20.000")
        .await;
    Some(app)
}

async fn create_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.app)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn idempotent_create_returns_the_original(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let body = json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}]});
    let (s1, o1) = create_with_key(&app, "retry-1", &body).await;
    let (s2, o2) = create_with_key(&app, "retry-1", &body).await;
    assert_eq!(s1, 201, "{o1}");
    assert_eq!(s2, 201, "a retry answers like the original: {o2}");
    assert_eq!(o1["id"], o2["id"]);
    assert_eq!(o1, o2);
    // Key order in the JSON does not make a different request.
    let reordered = json!({"lines": [{"quantity": "2", "sku": "COLA"}], "store_id": "S001"});
    let (s3, o3) = create_with_key(&app, "retry-1", &reordered).await;
    assert_eq!((s3, &o3["id"]), (201, &o1["id"]));
    assert_eq!(app.queue("S001").await.len(), 1, "one order, not three");
    assert_eq!(
        app.item("S001", "COLA").await["reserved"],
        "2",
        "stock reserved once"
    );
    // Another key is another order.
    let (s4, o4) = create_with_key(&app, "retry-2", &body).await;
    assert_eq!(s4, 201);
    assert_ne!(o4["id"], o1["id"]);
    app.stop().await;
}

async fn same_key_different_body_is_a_conflict(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let body = json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}]});
    let (s1, _) = create_with_key(&app, "k", &body).await;
    assert_eq!(s1, 201);
    let other = json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "3"}]});
    let (s2, p) = create_with_key(&app, "k", &other).await;
    assert_eq!(s2, 422, "{p}");
    assert_eq!(p["code"], "idempotency_conflict");
    assert_eq!(app.queue("S001").await.len(), 1);
    assert_eq!(app.item("S001", "COLA").await["reserved"], "2");
    app.stop().await;
}

/// Drives a new order to `status` through legal steps.
async fn order_in(app: &TestApp, status: &str) -> String {
    let (s, o) = app.order("S001", &[("COLA", "1")]).await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().unwrap().to_owned();
    let path: &[&str] = match status {
        "created" => &[],
        "accepted" => &["accept"],
        "ready" => &["accept", "ready"],
        "completed" => &["accept", "ready", "complete"],
        "rejected" => &["reject"],
        "cancelled" => &["cancel"],
        _ => unreachable!(),
    };
    for step in path {
        let (s, o) = app.act(&id, step, app.terminal("S001")).await;
        assert_eq!(s, 200, "{step}: {o}");
    }
    id
}

async fn every_illegal_transition_is_refused(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let allowed = [
        ("created", "accept", "accepted"),
        ("accepted", "ready", "ready"),
        ("ready", "complete", "completed"),
        ("created", "reject", "rejected"),
        ("accepted", "reject", "rejected"),
        ("created", "cancel", "cancelled"),
        ("accepted", "cancel", "cancelled"),
    ];
    let statuses = [
        "created",
        "accepted",
        "ready",
        "completed",
        "rejected",
        "cancelled",
    ];
    let actions = ["accept", "reject", "ready", "complete", "cancel"];
    for from in statuses {
        for action in actions {
            let id = order_in(&app, from).await;
            let (s, body) = app.act(&id, action, app.terminal("S001")).await;
            let (_, after) = app
                .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
                .await;
            match allowed.iter().find(|(f, a, _)| *f == from && *a == action) {
                Some((_, _, to)) => {
                    assert_eq!(s, 200, "{from} --{action}--> should work: {body}");
                    assert_eq!(after["status"], *to);
                }
                None => {
                    assert_eq!(s, 409, "{from} --{action}--> must be refused: {body}");
                    assert_eq!(body["code"], "illegal_transition");
                    assert_eq!(
                        after["status"], from,
                        "a refused transition changes nothing"
                    );
                }
            }
        }
    }
    // An unknown action is not a transition at all.
    let id = order_in(&app, "created").await;
    let (s, body) = app.act(&id, "teleport", app.terminal("S001")).await;
    assert_eq!((s, body["code"].as_str()), (404, Some("unknown_action")));
    app.stop().await;
}

async fn weights_are_totalled_to_the_fen(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let (s, o) = app
        .order("S001", &[("DUCK-NECK", "0.355"), ("COLA", "2")])
        .await;
    assert_eq!(s, 201, "{o}");
    // 0.355 kg × 39.90 = 14.1645 → 14.16; 2 × 3.50 = 7.00.
    assert_eq!(o["lines"][0]["line_total"], "14.16");
    assert_eq!(o["lines"][0]["quantity"], "0.355");
    assert_eq!(o["lines"][0]["unit"], "kg");
    assert_eq!(o["lines"][0]["unit_price"], "39.90");
    assert_eq!(o["lines"][1]["line_total"], "7.00");
    assert_eq!(o["total"], "21.16");
    assert_eq!(o["currency"], "CNY");
    // Half-up at exactly half a fen: 0.125 kg × 0.20 = 0.025 → 0.03.
    app.product("BAG", "购物袋", Unit::Kg, "0.20", "5.000")
        .await;
    let (_, o) = app.order("S001", &[("BAG", "0.125")]).await;
    assert_eq!(o["total"], "0.03");
    app.stop().await;
}

async fn chinese_names_round_trip(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let r = app
        .http
        .put(app.url("/api/v1/products/WING"))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "卤鸭翅（特辣）🌶", "unit": "kg", "price": "49.90"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .http
        .put(app.url("/api/v1/stores/S001"))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "人民路店"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "existing store renamed");
    app.stock("S001", "WING", "3.000").await;
    let (_, cat) = app
        .get_json("/api/v1/stores/S001/catalog", app.terminal("S001"))
        .await;
    assert_eq!(cat["store_name"], "人民路店");
    let wing = cat["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sku"] == "WING")
        .unwrap()
        .clone();
    assert_eq!(wing["name"], "卤鸭翅（特辣）🌶");
    let (_, o) = app.order("S001", &[("WING", "1.5")]).await;
    assert_eq!(o["lines"][0]["name"], "卤鸭翅（特辣）🌶");
    let (_, again) = app
        .get_json(
            &format!("/api/v1/orders/{}", o["id"].as_str().unwrap()),
            &app.admin,
        )
        .await;
    assert_eq!(again["lines"][0]["name"], "卤鸭翅（特辣）🌶");
    app.stop().await;
}

async fn display_numbers_count_per_store(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let mut s1 = Vec::new();
    for _ in 0..3 {
        s1.push(
            app.order("S001", &[("COLA", "1")]).await.1["display_no"]
                .as_i64()
                .unwrap(),
        );
    }
    let s2 = app.order("S002", &[("COLA", "1")]).await.1["display_no"]
        .as_i64()
        .unwrap();
    assert_eq!(s1, [1, 2, 3]);
    assert_eq!(s2, 1, "each store counts on its own");
    // A refused order does not use up a number.
    let (s, _) = app.order("S001", &[("COLA", "1000")]).await;
    assert_eq!(s, 409);
    assert_eq!(app.order("S001", &[("COLA", "1")]).await.1["display_no"], 4);
    app.stop().await;
}

/// The business day turns at midnight in Shanghai, by the gateway's clock
/// (a manual one here, set a second before midnight).
async fn display_numbers_restart_on_the_next_business_day(b: Backend) {
    // 2026-11-27T23:59:59+08:00.
    let clock = Clock::manual(1_795_795_199_000_000);
    let Some(app) = TestApp::spawn_at(b, clock.clone(), |_| {}).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let late: Vec<Value> = [
        app.order("S001", &[("COLA", "1")]).await.1,
        app.order("S001", &[("COLA", "1")]).await.1,
    ]
    .into();
    for (o, no) in late.iter().zip([1, 2]) {
        assert_eq!(o["display_no"], no, "{o}");
        assert_eq!(o["business_day"], "2026-11-27", "{o}");
        assert_eq!(o["created_at"], "2026-11-27T23:59:59+08:00", "{o}");
    }
    clock.advance(Duration::from_secs(1));
    let (s, next) = app.order("S001", &[("COLA", "1")]).await;
    assert_eq!(s, 201, "{next}");
    assert_eq!(next["display_no"], 1, "a new day counts from 1: {next}");
    assert_eq!(next["business_day"], "2026-11-28");
    assert_eq!(next["created_at"], "2026-11-28T00:00:00+08:00");
    app.stop().await;
}

async fn history_records_who_when_and_why(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap();
    app.act(id, "accept", app.terminal("S001")).await;
    let (s, o) = app
        .post_json(
            &format!("/api/v1/orders/{id}/reject"),
            app.terminal("S001"),
            &json!({"reason": "卖完了"}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    let h = o["history"].as_array().unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        (h[0]["from"].clone(), h[0]["to"].clone()),
        (Value::Null, json!("created"))
    );
    assert!(h[0]["by"].as_str().unwrap().starts_with("app:"));
    assert_eq!(
        (h[1]["from"].clone(), h[1]["to"].clone()),
        (json!("created"), json!("accepted"))
    );
    assert!(h[1]["by"].as_str().unwrap().starts_with("terminal:S001"));
    assert_eq!(h[2]["to"], "rejected");
    assert_eq!(h[2]["reason"], "卖完了");
    assert!(
        h.iter()
            .all(|c| c["at"].as_str().unwrap().ends_with("+08:00"))
    );
    // Reject and cancel need a reason.
    let (_, o2) = app.order("S001", &[("COLA", "1")]).await;
    let (s, p) = app
        .post_json(
            &format!("/api/v1/orders/{}/cancel", o2["id"].as_str().unwrap()),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (422, Some("reason_required")));
    app.stop().await;
}

async fn channel_order_id_never_duplicates(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let body = json!({"store_id": "S001", "channel_order_id": "APP-20261127-0001", "lines": [{"sku": "COLA", "quantity": "1"}]});
    let (s1, o1) = app.post_json("/api/v1/orders", &app.app, &body).await;
    let (s2, o2) = app.post_json("/api/v1/orders", &app.app, &body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(o1["id"], o2["id"]);
    assert_eq!(o1["channel_order_id"], "APP-20261127-0001");
    assert_eq!(app.queue("S001").await.len(), 1);
    app.stop().await;
}

on_both_databases!(concurrent_retries_make_one_order);

/// A client that retries before the first answer arrives (or several
/// tabs of the app) must still get one order.
async fn concurrent_retries_make_one_order(b: Backend) {
    let Some(app) = setup(b).await else { return };
    let app = std::sync::Arc::new(app);
    let body = json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]});
    let same_key: Vec<_> = (0..12)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { create_with_key(&app, "burst", &body).await })
        })
        .collect();
    let by_ref = json!({"store_id": "S001", "channel_order_id": "APP-7", "lines": [{"sku": "COLA", "quantity": "2"}]});
    let same_ref: Vec<_> = (0..12)
        .map(|_| {
            let (app, body) = (app.clone(), by_ref.clone());
            tokio::spawn(async move { app.post_json("/api/v1/orders", &app.app, &body).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in same_key {
        let (s, o) = t.await.unwrap();
        assert_eq!(s, 201, "{o}");
        ids.insert(o["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one order for one Idempotency-Key");
    let mut ref_ids = std::collections::HashSet::new();
    for t in same_ref {
        let (s, o) = t.await.unwrap();
        assert!(s == 201 || s == 200, "{s} {o}");
        ref_ids.insert(o["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ref_ids.len(), 1, "one order for one channel order id");
    assert_eq!(app.queue("S001").await.len(), 2);
    assert_eq!(app.item("S001", "COLA").await["reserved"], "3");
    if let Some(faults) = app.state.orders.faults() {
        let failed = faults.failed_batches.load(Ordering::SeqCst);
        assert_eq!(failed, 0, "every batch committed as a batch");
    }
}

on_both_databases!(
    writers_side_by_side_sell_the_last_units_exactly_once,
    pushes_to_writers_side_by_side_make_one_order_and_flag_the_short,
);

/// Several order writers on one database at once, as gateway instances
/// sharing one PostgreSQL run: this gateway's group commit, a second one
/// (another instance's) and the direct path. Selling the last units of one
/// SKU through all three at once sells exactly the stock, refuses every
/// other order `out_of_stock` and loses none; one Idempotency-Key sent to
/// all three at once makes one order, the others replaying it.
async fn writers_side_by_side_sell_the_last_units_exactly_once(b: Backend) {
    use gateway::error::Code;
    use gateway::orders::{Created, IdemKey, NewLine, NewOrder, Writer};
    use proto::order::{Channel, PaymentStatus, Sku, StoreId};

    let Some(app) = setup(b).await else { return };
    app.product("LAST", "最后几件", Unit::Piece, "9.90", "7")
        .await;
    let other = Writer::start(&app.db).await.expect("a second writer");
    let writers = [app.state.orders.clone(), other, Writer::direct()];
    let order = |sku: &str| NewOrder {
        store: StoreId::parse("S001").unwrap(),
        channel: Channel::Official,
        platform: None,
        channel_order_id: None,
        lines: vec![NewLine {
            sku: Sku::parse(sku).unwrap(),
            quantity: "1".into(),
            unit_price: None,
        }],
        note: None,
        payment_status: PaymentStatus::Unpaid,
        prepaid: None,
        actor: "app:test".into(),
        happened: None,
    };
    let place = |w: &Writer, new: NewOrder, idem: Option<IdemKey>| {
        let (db, hub, w) = (app.db.clone(), app.state.hub.clone(), w.clone());
        tokio::spawn(async move { gateway::orders::create(&db, &hub, &w, new, idem).await })
    };

    let tasks: Vec<_> = (0..30)
        .map(|i| place(&writers[i % 3], order("LAST"), None))
        .collect();
    let (mut sold, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Created::Order {
                replayed: false, ..
            }) => sold += 1,
            Err(e) if e.code == Code::OutOfStock => refused += 1,
            Err(e) => panic!("an order failed: {:?} {}", e.code, e.message),
            Ok(_) => panic!("a replay for an order without a key"),
        }
    }
    assert_eq!((sold, refused), (7, 23), "exactly the stock sells");
    assert_eq!(app.item("S001", "LAST").await["reserved"], "7");
    assert_eq!(
        app.queue("S001").await.len(),
        7,
        "every sold order is there"
    );

    let key = IdemKey {
        owner: "test-owner".into(),
        key: "same-key".into(),
        request_hash: "same-request".into(),
    };
    let tasks: Vec<_> = (0..9)
        .map(|i| place(&writers[i % 3], order("COLA"), Some(key.clone())))
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut new_orders = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Created::Order {
                order,
                replayed: false,
            }) => {
                new_orders += 1;
                ids.insert(order.id.clone());
            }
            Ok(Created::Replay { status, body }) => {
                assert_eq!(status, 201);
                let v: Value = serde_json::from_str(&body).unwrap();
                ids.insert(v["id"].as_str().unwrap().to_owned());
            }
            Ok(Created::Order { replayed: true, .. }) => panic!("a channel replay"),
            Err(e) => panic!("a keyed order failed: {:?} {}", e.code, e.message),
        }
    }
    assert_eq!((new_orders, ids.len()), (1, 1), "one order for one key");
    assert_eq!(app.queue("S001").await.len(), 8);
    assert_eq!(app.item("S001", "COLA").await["reserved"], "1");
    app.stop().await;
}

// SQLite's group commit writes a table's rows of one batch in INSERTs of at
// most 256 rows, each padded to a power of two: a batch of orders with
// hundreds of lines between them is cut and padded without losing, moving
// or doubling a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_hundreds_of_lines_writes_each_line_once() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    for n in 0..100 {
        app.product(&format!("SKU-{n:03}"), "卤味", Unit::Piece, "1.00", "1000")
            .await;
    }
    let batcher = app
        .state
        .orders
        .group()
        .expect("SQLite has a group commit")
        .clone();
    let faults = batcher.faults();
    // The writer dies holding a first order and stays down, so the next
    // orders wait in its queue and are written as one batch.
    faults.hold_restart.store(true, Ordering::SeqCst);
    faults.panic_in_writer.store(true, Ordering::SeqCst);
    let (s, v) = app.order("S001", &[("SKU-000", "1")]).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("order_writer_failed")));
    // 3 orders × 100 lines + 1 × 37: 337 line rows (256 + 81, padded to 128).
    let sizes = [100usize, 100, 37, 100];
    let mut waiting = Vec::new();
    for (k, size) in sizes.into_iter().enumerate() {
        let app = std::sync::Arc::clone(&app);
        waiting.push(tokio::spawn(async move {
            let lines: Vec<(String, String)> = (0..size)
                .map(|n| (format!("SKU-{n:03}"), format!("{}", k + 1)))
                .collect();
            let lines: Vec<(&str, &str)> = lines
                .iter()
                .map(|(s, q)| (s.as_str(), q.as_str()))
                .collect();
            app.order("S001", &lines).await
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while batcher.queued() < k + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "order {k} never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    faults.hold_restart.store(false, Ordering::SeqCst);
    let mut ids = Vec::new();
    for w in waiting {
        let (s, o) = w.await.unwrap();
        assert_eq!(s, 201, "{o}");
        ids.push(o["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        faults.failed_batches.load(Ordering::SeqCst),
        0,
        "written as one batch, not order by order"
    );
    for (k, (id, size)) in ids.iter().zip(sizes).enumerate() {
        let (s, o) = app
            .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
            .await;
        assert_eq!(s, 200, "{o}");
        let lines = o["lines"].as_array().unwrap();
        assert_eq!(lines.len(), size, "order {k}: {o}");
        for (n, l) in lines.iter().enumerate() {
            assert_eq!(l["sku"], format!("SKU-{n:03}"), "order {k} line {n}");
            assert_eq!(l["quantity"], format!("{}", k + 1), "order {k} line {n}");
        }
    }
    // Every order reserved its quantity of SKU-000 once: 1 + 2 + 3 + 4.
    assert_eq!(app.item("S001", "SKU-000").await["reserved"], "10");
    assert_eq!(app.item("S001", "SKU-099").await["reserved"], "7");
}

/// A delivery platform's pushes through several order writers at once (this
/// gateway's group commit, another instance's, the direct path): one
/// platform order pushed nine times, under two push refs, makes one order
/// and reserves its stock once; distinct pushes that sell more than the
/// store has are all taken (the platform sold them), and exactly those past
/// the stock are flagged `short_stock`.
async fn pushes_to_writers_side_by_side_make_one_order_and_flag_the_short(b: Backend) {
    use gateway::channels::ingest::{self, Outcome};
    use gateway::orders::Writer;
    use gateway::platforms::{PlatformItem, PlatformOrder};

    let Some(app) = setup(b).await else { return };
    app.product("LAST", "最后几件", Unit::Piece, "9.90", "3")
        .await;
    let other = Writer::start(&app.db).await.expect("a second writer");
    let writers = [app.state.orders.clone(), other, Writer::direct()];
    let push = |poid: &str, push_ref: &str| PlatformOrder {
        platform: "meituan".into(),
        platform_order_id: poid.into(),
        platform_store_id: "S001".into(),
        dedupe_ref: push_ref.into(),
        day_seq: Some(1),
        note: String::new(),
        recipient_name: "顾客".into(),
        recipient_phone: "13800000000".into(),
        recipient_address: "人民路 8 号".into(),
        shipping_fee_fen: 0,
        paid_fen: 990,
        original_fen: 990,
        store_receives_fen: 900,
        items: vec![PlatformItem {
            platform_sku: "LAST".into(),
            name: "最后几件".into(),
            quantity: 1,
            price_fen: 990,
        }],
        discounts: Vec::new(),
    };
    let send = |w: &Writer, o: PlatformOrder| {
        let (db, hub, w) = (app.db.clone(), app.state.hub.clone(), w.clone());
        tokio::spawn(async move { ingest::new_order(&db, &hub, &w, o).await })
    };

    let tasks: Vec<_> = (0..9)
        .map(|i| send(&writers[i % 3], push("P-SAME", &format!("ref-{}", i % 2))))
        .collect();
    let (mut created, mut duplicates) = (std::collections::HashSet::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Created { order_id }) => {
                created.insert(order_id);
            }
            Ok(Outcome::Duplicate { order_id }) => {
                duplicates += 1;
                created.extend(order_id);
            }
            Ok(_) => panic!("a new order answered as an event"),
            Err(e) => panic!("a push failed: {:?} {}", e.code, e.message),
        }
    }
    assert_eq!(duplicates, 8, "one push of nine makes the order");
    assert_eq!(created.len(), 1, "every duplicate names the one order");
    assert_eq!(app.queue("S001").await.len(), 1);
    assert_eq!(app.item("S001", "LAST").await["reserved"], "1");
    let rows: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM third_party_orders WHERE platform_order_id = 'P-SAME'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.0, 1);

    // Two units left; five more sold on the platform, all at once.
    let tasks: Vec<_> = (0..5)
        .map(|i| send(&writers[i % 3], push(&format!("P-{i}"), &format!("P-{i}"))))
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Created { .. }) => {}
            Ok(_) => panic!("a distinct push not taken as a new order"),
            Err(e) => panic!("a push failed: {:?} {}", e.code, e.message),
        }
    }
    let queue = app.queue("S001").await;
    assert_eq!(queue.len(), 6, "every platform order is there");
    let short = queue
        .iter()
        .filter(|o| o["attention"] == json!(["short_stock"]))
        .count();
    assert_eq!(short, 3, "exactly the orders past the stock are flagged");
    assert_eq!(app.item("S001", "LAST").await["reserved"], "6");

    // One platform order pushed for two stores at once: the writers lock
    // different store rows, so the loser meets the winner's rows only as it
    // writes, and still answers a duplicate.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let mut o = push("P-TWO", "P-TWO");
            o.platform_store_id = ["S001", "S002"][i % 2].into();
            send(&writers[i % 3], o)
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Created { .. }) => created += 1,
            Ok(Outcome::Duplicate { .. }) => {}
            Ok(_) => panic!("a new order answered as an event"),
            Err(e) => panic!("a push failed: {:?} {}", e.code, e.message),
        }
    }
    assert_eq!(created, 1, "one order for one platform order");
    let orders: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders WHERE channel_order_id = 'P-TWO'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(orders.0, 1);
}
