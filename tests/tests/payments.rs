//! Payment-code charges end to end: the real gateway on port 0 over a
//! throwaway database (SQLite and PostgreSQL), paying against the in-process provider
//! simulator. Every test checks both the gateway's records and the
//! simulator's ledger. Short poll intervals; no timed assertions.

use std::ops::Deref;

use gateway::keys::Role;
use gateway::payments::Payments;
use hw_sim::payments::LedgerEntry;
use proto::wechatpay::{self as wx, Params, SignType};
use serde_json::{Value, json};
use tests::Backend;
use tests::pay::{APPID, KEY, MCH_ID, PayGateway, PayOptions, str_of};

const CODE: &str = "134567890123456789";
const OTHER_CODE: &str = "120061098828009406";

/// The gateway of `tests::pay` (WeChat Pay only), with a second store S002
/// and a terminal of it.
struct PayApp {
    gw: PayGateway,
    other_terminal: String,
}

impl Deref for PayApp {
    type Target = PayGateway;
    fn deref(&self) -> &PayGateway {
        &self.gw
    }
}

impl PayApp {
    /// `None` when the backend is not available here.
    async fn spawn(backend: Backend) -> Option<PayApp> {
        let gw = PayGateway::spawn(backend, PayOptions::default()).await?;
        gw.add_store("S002").await;
        let other_terminal = tests::new_key(&gw.db, Role::Terminal, Some("S002")).await;
        Some(PayApp { gw, other_terminal })
    }
}

/// Pays an order under one scenario; the answer and the ledger entry.
async fn pay_under(app: &PayApp, scenario: Value) -> (String, Value, LedgerEntry) {
    app.pay_under(scenario, CODE).await
}

async fn success_pays_the_order_once(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, entry) = pay_under(&app, json!({"outcome": "success"})).await;
    assert_eq!(str_of(&charge, "state"), "succeeded");
    assert_eq!(str_of(&charge, "amount"), "21.16");
    assert_eq!(str_of(&charge, "auth_code"), "13******6789");
    assert!(!charge.to_string().contains(CODE), "the code is masked");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(entry.state, "SUCCESS");
    assert_eq!(entry.total_fen, 2116);
    assert_eq!(entry.micropay_calls, 1);

    // The terminal retries: same charge, no second micropay.
    let (status, again) = app.pay(&order, CODE).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], charge["id"]);
    assert_eq!(app.ledger().await.len(), 1);
    assert_eq!(app.entry(str_of(&charge, "id")).await.micropay_calls, 1);

    let log = app.payments(&order).await;
    let calls: Vec<&str> = log["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|e| str_of(e, "call"))
        .collect();
    assert_eq!(calls, ["micropay"]);
}

async fn user_paying_then_success_is_found_by_querying(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, entry) = pay_under(
        &app,
        json!({"outcome": "userpaying_then_success", "after_ms": 300}),
    )
    .await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(entry.state, "SUCCESS");
    assert!(entry.query_calls >= 1);
    assert_eq!(entry.reverse_calls, 0);
}

async fn user_paying_forever_is_reversed_and_the_order_stays_payable(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, entry) = pay_under(&app, json!({"outcome": "userpaying_forever"})).await;
    assert_eq!(str_of(&charge, "state"), "reversed", "{charge}");
    assert_eq!(str_of(&charge, "code"), "payment_timeout");
    assert_eq!(app.payment_status(&order).await, "unpaid");
    assert_eq!(entry.state, "REVOKED");

    // A new code pays it: a second attempt, a new out_trade_no.
    app.scenario(json!({"auth_code": OTHER_CODE, "outcome": "success"}))
        .await;
    let (status, second) = app.pay(&order, OTHER_CODE).await;
    assert_eq!(status, 200);
    assert_eq!(str_of(&second, "state"), "succeeded");
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["id"], charge["id"]);
    assert_eq!(app.payment_status(&order).await, "paid");
    let ledger = app.ledger().await;
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        ledger.iter().filter(|e| e.state == "SUCCESS").count(),
        1,
        "money moved once"
    );
}

async fn the_order_shows_pending_while_its_charge_runs(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    app.scenario(json!({"outcome": "userpaying_forever"})).await;
    let order = app.order().await;
    let (paying, status) = tokio::join!(app.pay(&order, CODE), async {
        // While the customer has not confirmed, the order says so.
        let mut seen = String::new();
        for _ in 0..50 {
            seen = app.payment_status(&order).await;
            if seen == "pending" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        seen
    });
    assert_eq!(status, "pending");
    assert_eq!(str_of(&paying.1, "state"), "reversed", "{}", paying.1);
    // Reversed at the deadline: payable again, and the feed says so.
    assert_eq!(app.payment_status(&order).await, "unpaid");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM order_events WHERE order_id = $1 ORDER BY seq")
            .bind(order.clone())
            .fetch_all(&app.db.pool)
            .await
            .expect("feed");
    assert_eq!(
        kinds,
        [
            "order.created",
            "order.payment_pending",
            "order.payment_failed"
        ]
    );
}

async fn reverse_is_repeated_while_the_provider_asks(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (_, charge, entry) = pay_under(
        &app,
        json!({"outcome": "userpaying_forever", "reverse_retries": 2}),
    )
    .await;
    assert_eq!(str_of(&charge, "state"), "reversed", "{charge}");
    assert_eq!(entry.state, "REVOKED");
    assert_eq!(entry.reverse_calls, 3);
}

async fn definite_failures_leave_the_order_unpaid(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    for (outcome, code) in [
        ("insufficient_balance", "insufficient_balance"),
        ("invalid_code", "invalid_payment_code"),
    ] {
        let (order, charge, entry) = pay_under(&app, json!({"outcome": outcome})).await;
        assert_eq!(str_of(&charge, "state"), "failed", "{outcome}: {charge}");
        assert_eq!(str_of(&charge, "code"), code);
        assert_eq!(app.payment_status(&order).await, "unpaid");
        assert_eq!(entry.state, "PAYERROR");
        assert_eq!(entry.query_calls, 0);
    }
}

async fn unknown_answers_are_resolved_by_querying(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    // SYSTEMERROR, and no answer at all (the client times out after 1 s).
    for outcome in ["system_error_then_success", "no_answer"] {
        let (order, charge, entry) = pay_under(&app, json!({"outcome": outcome})).await;
        assert_eq!(str_of(&charge, "state"), "succeeded", "{outcome}: {charge}");
        assert_eq!(app.payment_status(&order).await, "paid");
        assert_eq!(entry.state, "SUCCESS");
        assert_eq!(entry.micropay_calls, 1, "{outcome}: never charged twice");
        assert!(entry.query_calls >= 1);
    }
}

async fn two_payments_at_once_make_one_charge(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    app.scenario(json!({"outcome": "userpaying_then_success", "after_ms": 300}))
        .await;
    let order = app.order().await;
    let (a, b) = tokio::join!(app.pay(&order, CODE), app.pay(&order, OTHER_CODE));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert_eq!(a.1["id"], b.1["id"], "both answer the one charge");
    assert_eq!(str_of(&a.1, "state"), "succeeded");
    assert_eq!(str_of(&b.1, "state"), "succeeded");
    let ledger = app.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].micropay_calls, 1);
    assert_eq!(
        app.payments(&order).await["charges"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn refunds_are_idempotent_and_never_exceed_the_payment(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let (status, r1) = app.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200, "{r1}");
    assert_eq!(str_of(&r1, "state"), "succeeded");
    assert_eq!(app.payment_status(&order).await, "partially_refunded");

    let (status, again) = app.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], r1["id"]);
    let (status, body) = app.refund(&order, "r-1", "6.00").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "idempotency_conflict")
    );

    let (status, body) = app.refund(&order, "r-2", "16.17").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "refund_exceeds_paid"),
        "{body}"
    );
    let (status, r2) = app.refund(&order, "r-2", "16.16").await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(app.payment_status(&order).await, "refunded");

    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!(entry.refunded_fen, 2116);
    assert_eq!(entry.total_fen, 2116);

    let unpaid = app.order().await;
    let (status, body) = app.refund(&unpaid, "r-1", "1.00").await;
    assert_eq!((status, str_of(&body, "code")), (409, "order_not_paid"));
}

async fn codes_and_callers_are_checked_before_any_money_moves(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let order = app.order().await;
    let (status, body) = app.pay(&order, "6901234567892").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "invalid_payment_code")
    );
    let (status, body) = app.pay(&order, "2812345678901234").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "unsupported_payment_code")
    );
    let (status, body) = app.pay("no-such-order", CODE).await;
    assert_eq!((status, str_of(&body, "code")), (404, "order_not_found"));
    let (status, _) = app
        .send(
            app.http
                .post(app.url(&format!("/api/v1/orders/{order}/payments"))),
            &app.other_terminal,
            json!({"auth_code": CODE}),
        )
        .await;
    assert_eq!(status, 403, "another store's terminal");
    let (status, _) = app
        .send(
            app.http
                .post(app.url(&format!("/api/v1/orders/{order}/payments"))),
            &app.app,
            json!({"auth_code": CODE}),
        )
        .await;
    assert_eq!(status, 403, "the app does not take money");
    assert!(app.ledger().await.is_empty());
}

/// Sends a signed micropay straight to the simulator, as a gateway that
/// then crashed would have.
async fn micropay_directly(app: &PayApp, out_trade_no: &str, total_fee: i64) {
    let mut p = Params::new();
    for (k, v) in [
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "crashcrashcrash"),
        ("body", "test"),
        ("auth_code", CODE),
        ("out_trade_no", out_trade_no),
    ] {
        p.insert(k.to_owned(), v.to_owned());
    }
    p.insert("total_fee".to_owned(), total_fee.to_string());
    wx::sign_in_place(&mut p, KEY, SignType::Md5);
    let r = app
        .http
        .post(format!("{}{}", app.sim.base, wx::PATH_MICROPAY))
        .body(wx::encode(&p))
        .send()
        .await
        .expect("send");
    let answer = wx::decode(&r.bytes().await.expect("body")).expect("xml");
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
}

async fn the_simulator_refuses_bad_signatures(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let mut p = Params::new();
    for (k, v) in [
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "n1"),
        ("out_trade_no", "x1"),
    ] {
        p.insert(k.to_owned(), v.to_owned());
    }
    wx::sign_in_place(&mut p, "not-the-key", SignType::Md5);
    let r = app
        .http
        .post(format!("{}{}", app.sim.base, wx::PATH_ORDERQUERY))
        .body(wx::encode(&p))
        .send()
        .await
        .expect("send");
    let answer = wx::decode(&r.bytes().await.expect("body")).expect("xml");
    assert_eq!(answer["return_code"], "FAIL");
    assert!(app.ledger().await.is_empty());
}

/// A charge the crashed gateway left `pending`, its deadline passed.
async fn leave_pending(app: &PayApp, order: &str) -> String {
    let id = gateway::payments::out_trade_no(order, 1);
    let past = 1_000_000;
    sqlx::query(
        "INSERT INTO charges (id, order_id, attempt, provider, code_kind, code_masked, amount_fen,
            state, deadline_at, created_by, created_at, updated_at)
         VALUES ($1, $2, 1, 'wechatpay', 'wechatpay', '13******6789', 2116, 'pending', $3,
            'terminal:test', $3, $3)",
    )
    .bind(id.clone())
    .bind(order.to_owned())
    .bind(past)
    .execute(&app.db.pool)
    .await
    .expect("insert");
    id
}

async fn after_a_crash_the_sweeper_finishes_pending_charges(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };

    // Paid at the provider, pending here: the sweeper marks it paid.
    app.scenario(json!({"outcome": "userpaying_then_success", "after_ms": 0}))
        .await;
    let paid = app.order().await;
    let paid_id = leave_pending(&app, &paid).await;
    micropay_directly(&app, &paid_id, 2116).await;

    // Still waiting for the customer: the sweeper reverses it.
    app.scenario(json!({"outcome": "userpaying_forever"})).await;
    let stuck = app.order().await;
    let stuck_id = leave_pending(&app, &stuck).await;
    micropay_directly(&app, &stuck_id, 2116).await;

    // Never reached the provider: reversed, so a late micropay cannot charge.
    let lost = app.order().await;
    let lost_id = leave_pending(&app, &lost).await;

    // A fresh gateway over the same database.
    let fresh = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 3);

    let state_of = |v: Value| str_of(&v["charges"][0], "state").to_owned();
    assert_eq!(state_of(app.payments(&paid).await), "succeeded");
    assert_eq!(app.payment_status(&paid).await, "paid");
    assert_eq!(app.entry(&paid_id).await.state, "SUCCESS");

    assert_eq!(state_of(app.payments(&stuck).await), "reversed");
    assert_eq!(app.payment_status(&stuck).await, "unpaid");
    assert_eq!(app.entry(&stuck_id).await.state, "REVOKED");

    assert_eq!(state_of(app.payments(&lost).await), "reversed");
    assert_eq!(app.entry(&lost_id).await.state, "REVOKED");

    // Nothing is left to sweep.
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 0);
}

async fn without_a_provider_payments_answer_503(backend: Backend) {
    let Some(app) = tests::TestApp::spawn(backend).await else {
        return;
    };
    let (status, body) = app
        .post_json(
            "/api/v1/orders/any/payments",
            app.terminal("S001"),
            &json!({"auth_code": CODE}),
        )
        .await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (503, "payments_not_configured")
    );
}

/// An app order with `prepaid`: the body the app sends.
fn prepaid_order(reference: &str, amount: &str) -> Value {
    json!({
        "store_id": "S001",
        "lines": [{"sku": "LATTE", "quantity": 2}],
        "prepaid": {"provider": "wechat_miniprogram", "transaction_id": reference, "amount": amount}
    })
}

async fn orders_in_db(app: &PayApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

async fn app_orders_paid_in_the_app_arrive_paid(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let a = &app;
    let post = move |body: Value, key: String| {
        let req = a.http.post(a.url("/api/v1/orders"));
        async move { a.send(req, &key, body).await }
    };
    let (status, order) = post(
        prepaid_order("4200001234202611270001", "21.16"),
        app.app.clone(),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["payment_status"], "paid");
    let id = str_of(&order, "id").to_owned();
    let payments = app.payments(&id).await;
    assert_eq!(
        payments["prepaid"]["transaction_id"],
        "4200001234202611270001"
    );
    assert_eq!(payments["prepaid"]["amount"], "21.16");
    assert_eq!(payments["charges"], json!([]));

    // Refused, and nothing created: a reference already used, an amount
    // that is not the order's total, a terminal claiming a prepayment, bad shapes.
    let before = orders_in_db(&app).await;
    let reserved_before = sqlx::query_scalar::<_, i64>(
        "SELECT reserved FROM store_items WHERE store_id = 'S001' AND sku = 'LATTE'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("reserved");
    for (body, key, want) in [
        (
            prepaid_order("4200001234202611270001", "21.16"),
            app.app.clone(),
            (409, "prepaid_reference_used"),
        ),
        (
            prepaid_order("4200001234202611270002", "20.00"),
            app.app.clone(),
            (422, "prepaid_amount_mismatch"),
        ),
        (
            prepaid_order("4200001234202611270003", "21.16"),
            app.terminal.clone(),
            (422, "invalid_prepaid"),
        ),
        (
            prepaid_order("", "21.16"),
            app.app.clone(),
            (422, "invalid_prepaid"),
        ),
        (
            prepaid_order("4200001234202611270004", "21.1x"),
            app.app.clone(),
            (422, "invalid_prepaid"),
        ),
    ] {
        let (status, body) = post(body, key).await;
        assert_eq!((status, str_of(&body, "code")), want, "{body}");
    }
    assert_eq!(orders_in_db(&app).await, before, "refusals create nothing");
    let reserved_after = sqlx::query_scalar::<_, i64>(
        "SELECT reserved FROM store_items WHERE store_id = 'S001' AND sku = 'LATTE'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("reserved");
    assert_eq!(reserved_after, reserved_before, "refusals reserve nothing");

    // Two orders racing with one reference: exactly one is created.
    let racing = futures::future::join_all((0..6).map(|_| {
        post(
            prepaid_order("4200001234202611270009", "21.16"),
            app.app.clone(),
        )
    }))
    .await;
    let created = racing.iter().filter(|(s, _)| *s == 201).count();
    let refused = racing
        .iter()
        .filter(|(s, b)| *s == 409 && str_of(b, "code") == "prepaid_reference_used")
        .count();
    assert_eq!((created, refused), (1, 5), "{racing:?}");

    // Already paid: the counter cannot charge it, and refunds go through the app.
    let (status, body) = app.pay(&id, CODE).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.refund(&id, "r1", "1.00").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (409, "paid_elsewhere"),
        "{body}"
    );
    assert!(
        app.ledger().await.is_empty(),
        "no money moved at the provider"
    );
}

async fn stock_of(app: &PayApp) -> (i64, i64) {
    sqlx::query_as(
        "SELECT on_hand, reserved FROM store_items WHERE store_id = 'S001' AND sku = 'LATTE'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("stock")
}

async fn refunds_by_line_are_shares_of_the_line_and_may_restock(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    app.scenario(json!({"outcome": "success"})).await;
    // Three lattes at 10.58 and one at a price that does not divide evenly.
    let (status, order) = app
        .send(
            app.http.post(app.url("/api/v1/orders")),
            &app.app,
            json!({"store_id": "S001", "lines": [{"sku": "LATTE", "quantity": 3}]}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let id = str_of(&order, "id").to_owned();
    let (status, charge) = app.pay(&id, CODE).await;
    assert_eq!(
        (status, str_of(&charge, "state")),
        (200, "succeeded"),
        "{charge}"
    );
    let refund = |body: Value| {
        let req = app
            .http
            .post(app.url(&format!("/api/v1/orders/{id}/refunds")));
        let key = app.terminal.clone();
        let a = &app;
        async move { a.send(req, &key, body).await }
    };

    // Restock needs the goods handed over (a completed order).
    let (status, body) = refund(
        json!({"request_id": "l-0", "lines": [{"line_no": 1, "quantity": 1}], "restock": true}),
    )
    .await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (409, "restock_needs_completed_order"),
        "{body}"
    );
    for action in ["accept", "ready", "complete"] {
        let (status, body) = app
            .send(
                app.http
                    .post(app.url(&format!("/api/v1/orders/{id}/{action}"))),
                &app.terminal,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let (on_hand, _) = stock_of(&app).await;
    assert_eq!(on_hand, 97_000, "three lattes left the shelf");

    // One latte back on the shelf: 10.58 refunded, stock up by one.
    let (status, r1) = refund(json!({"request_id": "l-1", "lines": [{"line_no": 1, "quantity": 1}], "restock": true, "reason": "spilt"})).await;
    assert_eq!(status, 200, "{r1}");
    assert_eq!(
        (str_of(&r1, "state"), str_of(&r1, "amount")),
        ("succeeded", "10.58")
    );
    assert_eq!(r1["lines"][0]["sku"], "LATTE");
    assert_eq!(r1["restock"], true);
    assert_eq!(stock_of(&app).await.0, 98_000);
    // The same request again changes nothing.
    let (status, again) = refund(
        json!({"request_id": "l-1", "lines": [{"line_no": 1, "quantity": 1}], "restock": true}),
    )
    .await;
    assert_eq!((status, &again["id"]), (200, &r1["id"]));
    assert_eq!(stock_of(&app).await.0, 98_000);

    // Refused, nothing changed: more than is left on the line, a line that
    // does not exist, an amount that is not what the lines come to, restock
    // without lines, and the same request id with other lines.
    for (body, want) in [
        (
            json!({"request_id": "l-2", "lines": [{"line_no": 1, "quantity": 3}]}),
            (422, "refund_exceeds_line"),
        ),
        (
            json!({"request_id": "l-2", "lines": [{"line_no": 2, "quantity": 1}]}),
            (422, "invalid_refund"),
        ),
        (
            json!({"request_id": "l-2", "lines": [{"line_no": 1, "quantity": 1}], "amount": "10.00"}),
            (422, "refund_amount_mismatch"),
        ),
        (
            json!({"request_id": "l-2", "amount": "1.00", "restock": true}),
            (422, "invalid_refund"),
        ),
        (
            json!({"request_id": "l-2", "lines": [{"line_no": 1, "quantity": "0.5"}]}),
            (422, "invalid_quantity"),
        ),
        (
            json!({"request_id": "l-1", "lines": [{"line_no": 1, "quantity": 2}]}),
            (422, "idempotency_conflict"),
        ),
    ] {
        let (status, body) = refund(body).await;
        assert_eq!((status, str_of(&body, "code")), want, "{body}");
    }
    assert_eq!(stock_of(&app).await.0, 98_000);
    assert_eq!(
        app.payments(&id).await["refunds"].as_array().map(Vec::len),
        Some(1)
    );

    // The rest of the line, without restock: exactly what is left of 31.74.
    let (status, r2) =
        refund(json!({"request_id": "l-2", "lines": [{"line_no": 1, "quantity": 2}]})).await;
    assert_eq!((status, str_of(&r2, "amount")), (200, "21.16"), "{r2}");
    assert_eq!(stock_of(&app).await.0, 98_000, "no restock asked");
    assert_eq!(app.payment_status(&id).await, "refunded");
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.total_fen, entry.refunded_fen), (3174, 3174));
}

tests::on_both_databases!(
    the_order_shows_pending_while_its_charge_runs,
    refunds_by_line_are_shares_of_the_line_and_may_restock,
    app_orders_paid_in_the_app_arrive_paid,
    success_pays_the_order_once,
    user_paying_then_success_is_found_by_querying,
    user_paying_forever_is_reversed_and_the_order_stays_payable,
    reverse_is_repeated_while_the_provider_asks,
    definite_failures_leave_the_order_unpaid,
    unknown_answers_are_resolved_by_querying,
    two_payments_at_once_make_one_charge,
    refunds_are_idempotent_and_never_exceed_the_payment,
    codes_and_callers_are_checked_before_any_money_moves,
    after_a_crash_the_sweeper_finishes_pending_charges,
    without_a_provider_payments_answer_503,
    the_simulator_refuses_bad_signatures,
);
