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
    // SYSTEMERROR, and no answer at all (the client times out after 3 s).
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
    assert_eq!(
        status, 404,
        "another store's terminal: as if there were no such order"
    );
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

// ------------------------------------------- cancel and reject keep no money

/// The refunds of an order's payments document as (request_id, amount, state).
fn refunds_of(payments: &Value) -> Vec<(String, String, String)> {
    payments["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .map(|r| {
            (
                str_of(r, "request_id").to_owned(),
                str_of(r, "amount").to_owned(),
                str_of(r, "state").to_owned(),
            )
        })
        .collect()
}

fn triple(request: &str, amount: &str, state: &str) -> (String, String, String) {
    (request.to_owned(), amount.to_owned(), state.to_owned())
}

/// The order as `GET /api/v1/orders/{id}` shows it to the S001 terminal.
async fn order_view(app: &PayApp, order: &str) -> Value {
    let r = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order}")))
        .bearer_auth(&app.terminal)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn cancelling_a_paid_order_refunds_it_in_full_once(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let (_, reserved) = app.stock_of("LATTE").await;
    let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (str_of(&body, "status"), str_of(&body, "payment_status")),
        ("cancelled", "refunded")
    );
    let payments = app.payments(&order).await;
    assert_eq!(
        refunds_of(&payments),
        [triple("cancel:1", "21.16", "succeeded")]
    );
    assert_eq!(
        str_of(&payments["refunds"][0], "reason"),
        "order cancel: customer left"
    );
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.state.as_str(), entry.refunded_fen), ("REFUND", 2116));
    assert_eq!(app.stock_of("LATTE").await.1, reserved - 2000, "released");

    // Cancelling again is refused by the state machine; no second refund.
    let (status, body) = app.act(&order, "cancel", Some("again")).await;
    assert_eq!((status, str_of(&body, "code")), (409, "illegal_transition"));
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 2116);
    assert_eq!(refunds_of(&app.payments(&order).await).len(), 1);

    // The feed: refunded, then cancelled with nothing due elsewhere.
    let feed = app.feed_of(&order).await;
    let kinds: Vec<&str> = feed.iter().map(|e| str_of(e, "type")).collect();
    assert_eq!(
        kinds,
        [
            "order.created",
            "order.payment_pending",
            "order.paid",
            "order.refunded",
            "order.status_changed"
        ]
    );
    let last = feed.last().expect("event");
    assert_eq!(last["order"]["status"], "cancelled");
    assert!(last.get("refund_due").is_none(), "{last}");

    // Partly refunded, then rejected: the rest goes back.
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let (status, r1) = app.refund(&order, "r-1", "5.00").await;
    assert_eq!(status, 200, "{r1}");
    let (status, body) = app.act(&order, "reject", Some("out of milk")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (str_of(&body, "status"), str_of(&body, "payment_status")),
        ("rejected", "refunded")
    );
    assert_eq!(
        refunds_of(&app.payments(&order).await),
        [
            triple("r-1", "5.00", "succeeded"),
            triple("reject:2", "16.16", "succeeded")
        ]
    );
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 2116);

    // The gateway's own request ids are not for callers.
    let (order, _, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let (status, body) = app.refund(&order, "cancel:1", "1.00").await;
    assert_eq!((status, str_of(&body, "code")), (422, "invalid_request_id"));
}

/// Waits (generously) until the order shows its charge running.
async fn until_pending(app: &PayApp, order: &str) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.payment_status(order).await != "pending" {
        assert!(
            std::time::Instant::now() < give_up,
            "the charge never showed pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn a_running_charge_blocks_cancel_and_reject(backend: Backend) {
    // A long deadline: the charge runs while the test cancels.
    let options = PayOptions {
        deadline: std::time::Duration::from_secs(10),
        ..PayOptions::default()
    };
    let Some(gw) = PayGateway::spawn(backend, options).await else {
        return;
    };
    let app = PayApp {
        gw,
        other_terminal: String::new(),
    };
    app.scenario(json!({"outcome": "userpaying_forever"})).await;
    let order = app.order().await;
    let (paying, (cancel, reject)) = tokio::join!(app.pay(&order, CODE), async {
        until_pending(&app, &order).await;
        let cancel = app.act(&order, "cancel", Some("customer left")).await;
        let reject = app.act(&order, "reject", Some("busy")).await;
        (cancel, reject)
    });
    for (status, body) in [&cancel, &reject] {
        assert_eq!((*status, str_of(body, "code")), (409, "payment_pending"));
    }
    assert_eq!(str_of(&paying.1, "state"), "reversed", "{}", paying.1);
    assert_eq!(str_of(&order_view(&app, &order).await, "status"), "created");

    // Reversed: no money was kept, so the cancel goes through, unpaid.
    let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (str_of(&body, "status"), str_of(&body, "payment_status")),
        ("cancelled", "unpaid")
    );
    assert!(refunds_of(&app.payments(&order).await).is_empty());
    let last = app.feed_of(&order).await.pop().expect("event");
    assert!(last.get("refund_due").is_none(), "{last}");
    // And a cancelled order cannot be paid.
    let (status, body) = app.pay(&order, CODE).await;
    assert_eq!((status, str_of(&body, "code")), (409, "order_not_payable"));
}

async fn a_refused_refund_leaves_the_order_as_it_was(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let charge_id = str_of(&charge, "id").to_owned();
    // 1.00 refunded at the provider behind the gateway's back: asking for
    // 21.16 is now more than it holds, and it says so.
    assert_eq!(
        app.sim
            .refund_directly(&charge_id, "elsewhere-1", 2116, 100)
            .await,
        "SUCCESS"
    );
    let stock = app.stock_of("LATTE").await;
    for round in 1..=2 {
        let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
        assert_eq!(
            (status, str_of(&body, "code")),
            (409, "refund_refused"),
            "{body}"
        );
        let view = order_view(&app, &order).await;
        assert_eq!(
            (str_of(&view, "status"), str_of(&view, "payment_status")),
            ("created", "paid"),
            "round {round}"
        );
        assert_eq!(app.stock_of("LATTE").await, stock, "nothing released");
    }
    let payments = app.payments(&order).await;
    assert_eq!(
        refunds_of(&payments),
        [
            triple("cancel:1", "21.16", "failed"),
            triple("cancel:2", "21.16", "failed")
        ]
    );
    assert_eq!(str_of(&payments["charges"][0], "refunded"), "0.00");
    assert_eq!(app.entry(&charge_id).await.refunded_fen, 100);
}

async fn a_cancel_resumes_what_a_crash_left(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    // The gateway recorded the cancel's refund, then died before the
    // provider heard of it: the amount is reserved, the refund requested.
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let charge_id = str_of(&charge, "id").to_owned();
    sqlx::query(
        "INSERT INTO refunds (id, charge_id, order_id, request_id, amount_fen, state, created_by,
            created_at, updated_at, reason, restock)
         VALUES ($1, $2, $3, 'cancel:1', 2116, 'requested', 'terminal:test', 1000000, 1000000,
            'order cancel', 0)",
    )
    .bind(format!("{charge_id}R1"))
    .bind(charge_id.clone())
    .bind(order.clone())
    .execute(&app.db.pool)
    .await
    .expect("refund");
    sqlx::query("UPDATE charges SET refunded_fen = 2116 WHERE id = $1")
        .bind(charge_id.clone())
        .execute(&app.db.pool)
        .await
        .expect("reserve");
    let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(str_of(&body, "payment_status"), "refunded");
    assert_eq!(
        refunds_of(&app.payments(&order).await),
        [triple("cancel:1", "21.16", "succeeded")]
    );
    assert_eq!(app.entry(&charge_id).await.refunded_fen, 2116);

    // The refund went through, then the gateway died before the order
    // changed: the cancel finds nothing kept and only closes the order.
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let other = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    other
        .refund_to_close(
            &order,
            proto::order::OrderAction::Cancel,
            Some("customer left"),
            "terminal:test",
        )
        .await
        .expect("refund");
    let view = order_view(&app, &order).await;
    assert_eq!(
        (str_of(&view, "status"), str_of(&view, "payment_status")),
        ("created", "refunded")
    );
    let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(str_of(&body, "status"), "cancelled");
    assert_eq!(refunds_of(&app.payments(&order).await).len(), 1);
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 2116);
}

async fn orders_paid_elsewhere_close_with_the_refund_due_elsewhere(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    // Paid in the app: the app's cancel goes through; the feed says the
    // money comes back from where it was paid.
    let (status, order) = app
        .send(
            app.http.post(app.url("/api/v1/orders")),
            &app.app,
            prepaid_order("4200001234202611270077", "21.16"),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let id = str_of(&order, "id").to_owned();
    let (status, body) = app
        .act_as(&id, "cancel", &app.app, Some("changed my mind"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (str_of(&body, "status"), str_of(&body, "payment_status")),
        ("cancelled", "paid")
    );
    let last = app.feed_of(&id).await.pop().expect("event");
    assert_eq!(
        (str_of(&last, "type"), str_of(&last, "refund_due")),
        ("order.status_changed", "elsewhere")
    );

    // A platform cancelling its own order (paid on the platform), through
    // the use case a platform push takes.
    let created = gateway::orders::create(
        &app.db,
        &gateway::events::Hub::default(),
        &app.orders,
        gateway::orders::NewOrder {
            store: proto::order::StoreId::parse("S001").expect("store"),
            channel: proto::order::Channel::ThirdParty,
            platform: Some("meituan".to_owned()),
            channel_order_id: Some("MT-77".to_owned()),
            lines: vec![gateway::orders::NewLine {
                sku: proto::order::Sku::parse("LATTE").expect("sku"),
                quantity: "1".to_owned(),
                unit_price: None,
            }],
            note: None,
            payment_status: proto::order::PaymentStatus::Paid,
            prepaid: None,
            actor: "platform:meituan".to_owned(),
            happened: None,
        },
        None,
    )
    .await
    .expect("order");
    let gateway::orders::Created::Order { order, .. } = created else {
        panic!("a new order");
    };
    let cancelled = gateway::orders::act(
        &app.db,
        &gateway::events::Hub::default(),
        &order.id,
        proto::order::OrderAction::Cancel,
        Some("cancelled on meituan".to_owned()),
        "platform:meituan",
        &|_| Ok(()),
    )
    .await
    .expect("cancel");
    assert_eq!(cancelled.status, proto::order::OrderStatus::Cancelled);
    let last = app.feed_of(&order.id).await.pop().expect("event");
    assert_eq!(str_of(&last, "refund_due"), "elsewhere", "{last}");

    // Unpaid: nothing is due anywhere.
    let unpaid = app.order().await;
    let (status, body) = app.act(&unpaid, "reject", Some("closed")).await;
    assert_eq!(status, 200, "{body}");
    let last = app.feed_of(&unpaid).await.pop().expect("event");
    assert!(last.get("refund_due").is_none(), "{last}");
    assert!(
        app.ledger().await.is_empty(),
        "no money moved at the provider"
    );
}

async fn without_payments_a_counter_paid_order_keeps_its_status(backend: Backend) {
    let options = PayOptions {
        payments: false,
        ..PayOptions::default()
    };
    let Some(app) = PayGateway::spawn(backend, options).await else {
        return;
    };
    // Paid at the counter while payments were on; now they are off.
    let order = app.order().await;
    sqlx::query(
        "INSERT INTO charges (id, order_id, attempt, provider, code_kind, code_masked, amount_fen,
            state, deadline_at, created_by, created_at, updated_at)
         VALUES ($1, $2, 1, 'wechatpay', 'wechatpay', '13******6789', 2116, 'succeeded', 1000000,
            'terminal:test', 1000000, 1000000)",
    )
    .bind(gateway::payments::out_trade_no(&order, 1))
    .bind(order.clone())
    .execute(&app.db.pool)
    .await
    .expect("charge");
    sqlx::query("UPDATE orders SET payment_status = 'paid' WHERE id = $1")
        .bind(order.clone())
        .execute(&app.db.pool)
        .await
        .expect("paid");
    for action in ["cancel", "reject"] {
        let (status, body) = app.act(&order, action, Some("customer left")).await;
        assert_eq!(
            (status, str_of(&body, "code")),
            (409, "refund_required"),
            "{action}: {body}"
        );
    }
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order.clone())
        .fetch_one(&app.db.pool)
        .await
        .expect("status");
    assert_eq!(status, "created");
}

// ------------------------------------------------ line refunds: races, splits

async fn concurrent_refunds_of_one_line_never_exceed_it(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    app.add_product("BAGEL", proto::order::Unit::Piece, "5.00", "100")
        .await;
    // Two lattes (21.16) and four bagels (20.00): the payment (41.16) could
    // cover a third latte, so only the line's quantity stops it.
    app.scenario(json!({"outcome": "success"})).await;
    let order = app
        .order_of(json!([{"sku": "LATTE", "quantity": 2}, {"sku": "BAGEL", "quantity": 4}]))
        .await;
    let (status, charge) = app.pay(&order, CODE).await;
    assert_eq!((status, str_of(&charge, "state")), (200, "succeeded"));
    for action in ["accept", "ready", "complete"] {
        let (status, body) = app.act(&order, action, None).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let (on_hand, _) = app.stock_of("LATTE").await;

    let requests: Vec<String> = (0..8).map(|i| format!("line-{i}")).collect();
    let answers = futures::future::join_all(
        requests
            .iter()
            .map(|r| app.refund_lines(&order, r, json!([{"line_no": 1, "quantity": 1}]), true)),
    )
    .await;
    let done: Vec<&Value> = answers
        .iter()
        .filter(|(s, b)| *s == 200 && str_of(b, "state") == "succeeded")
        .map(|(_, b)| b)
        .collect();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 422 && str_of(b, "code") == "refund_exceeds_line")
        .count();
    assert_eq!((done.len(), refused), (2, 6), "{answers:?}");
    let mut ids: Vec<&str> = done.iter().map(|b| str_of(b, "id")).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "distinct refund ids");
    assert_eq!(
        app.stock_of("LATTE").await.0,
        on_hand + 2000,
        "two lattes back on the shelf, not more"
    );

    // Amount refunds at once: 20.00 is left, so four of 5.00 and no more,
    // each under its own id.
    let requests: Vec<String> = (0..6).map(|i| format!("amount-{i}")).collect();
    let answers =
        futures::future::join_all(requests.iter().map(|r| app.refund(&order, r, "5.00"))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let over = answers
        .iter()
        .filter(|(s, b)| *s == 422 && str_of(b, "code") == "refund_exceeds_paid")
        .count();
    assert_eq!((ok, over), (4, 2), "{answers:?}");

    let payments = app.payments(&order).await;
    let refunds = payments["refunds"].as_array().expect("refunds");
    let mut all_ids: Vec<&str> = refunds.iter().map(|r| str_of(r, "id")).collect();
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 6);
    assert_eq!(str_of(&payments["charges"][0], "refunded"), "41.16");
    assert_eq!(payments["payment_status"], "refunded");
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.total_fen, entry.refunded_fen), (4116, 4116));
}

async fn uneven_line_refunds_give_the_last_part_what_is_left(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    use proto::order::Unit;
    app.add_product("BUN", Unit::Piece, "3.33", "100").await;
    // 33.33 a kg: 0.300 kg comes to 9.999, 10.00 half-up; thirds of it do not
    // come out even.
    app.add_product("CHEESE", Unit::Kg, "33.33", "10.000").await;
    // 28.88 a kg: 0.355 kg comes to 10.2524, 10.25.
    app.add_product("HAM", Unit::Kg, "28.88", "10.000").await;
    app.scenario(json!({"outcome": "success"})).await;
    let order = app
        .order_of(json!([
            {"sku": "BUN", "quantity": 3},
            {"sku": "CHEESE", "quantity": "0.300"},
            {"sku": "HAM", "quantity": "0.355"}
        ]))
        .await;
    let view = order_view(&app, &order).await;
    let totals: Vec<&str> = view["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| str_of(l, "line_total"))
        .collect();
    assert_eq!(totals, ["9.99", "10.00", "10.25"]);
    assert_eq!(str_of(&view, "total"), "30.24");
    let (status, charge) = app.pay(&order, CODE).await;
    assert_eq!((status, str_of(&charge, "state")), (200, "succeeded"));

    let mut n = 0;
    let mut part = |line: i64, quantity: &'static str| {
        n += 1;
        let request = format!("part-{n}");
        let app = &app;
        let order = order.clone();
        async move {
            let (status, body) = app
                .refund_lines(
                    &order,
                    &request,
                    json!([{"line_no": line, "quantity": quantity}]),
                    false,
                )
                .await;
            assert_eq!(
                (status, str_of(&body, "state")),
                (200, "succeeded"),
                "{body}"
            );
            str_of(&body, "amount").to_owned()
        }
    };
    let mut buns = Vec::new();
    for _ in 0..3 {
        buns.push(part(1, "1").await);
    }
    assert_eq!(buns, ["3.33", "3.33", "3.33"]);
    let mut cheese = Vec::new();
    for _ in 0..3 {
        cheese.push(part(2, "0.100").await);
    }
    assert_eq!(
        cheese,
        ["3.33", "3.33", "3.34"],
        "the last third gets the fen left"
    );
    let ham = vec![part(3, "0.100").await, part(3, "0.255").await];
    assert_eq!(
        ham,
        ["2.89", "7.36"],
        "the last part gets exactly what is left"
    );

    let (status, body) = app
        .refund_lines(
            &order,
            "one-more",
            json!([{"line_no": 2, "quantity": "0.001"}]),
            false,
        )
        .await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "refund_exceeds_line"),
        "{body}"
    );
    let payments = app.payments(&order).await;
    assert_eq!(payments["payment_status"], "refunded");
    assert_eq!(str_of(&payments["charges"][0], "refunded"), "30.24");
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.total_fen, entry.refunded_fen), (3024, 3024));
}

// ------------------------------ refunds: accepted is not yet refunded

/// A second gateway process over the same database, whose sweeper the test
/// runs itself.
fn sweeper(app: &PayApp) -> std::sync::Arc<Payments> {
    Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default()).expect("payments")
}

/// The refund `request_id` in a payments document.
fn refund_named(payments: &Value, request_id: &str) -> Value {
    payments["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .find(|r| str_of(r, "request_id") == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no refund {request_id} in {payments}"))
}

/// Sweeps until the refund `request_id` of `order` is final (the
/// simulator settles it after its scenario's `refund_after_ms`); its view.
async fn swept_until_final(
    app: &PayApp,
    sweeper: &Payments,
    order: &str,
    request_id: &str,
) -> Value {
    for _ in 0..600 {
        sweeper.sweep_once().await.expect("sweep");
        let r = refund_named(&app.payments(order).await, request_id);
        if matches!(str_of(&r, "state"), "succeeded" | "failed") {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("refund {request_id} of {order} never became final");
}

/// The feed events of `order` of one kind.
async fn events_of(app: &PayApp, order: &str, kind: &str) -> Vec<Value> {
    app.feed_of(order)
        .await
        .into_iter()
        .filter(|e| str_of(e, "type") == kind)
        .collect()
}

/// The provider calls the gateway logged about the refund `refund_id`, as
/// (call, outcome): `refund` or `refundquery`.
fn refund_calls(payments: &Value, refund_id: &str) -> Vec<(String, String)> {
    payments["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter_map(|e| {
            let (call, id) = str_of(e, "call").split_once(' ')?;
            (id == refund_id).then(|| (call.to_owned(), str_of(e, "outcome").to_owned()))
        })
        .collect()
}

/// An order of two lattes, paid under `scenario` and handed over
/// (completed), so its goods may go back on the shelf.
async fn completed_order_under(app: &PayApp, scenario: Value) -> String {
    let (order, charge, _) = pay_under(app, scenario).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    for action in ["accept", "ready", "complete"] {
        let (status, body) = app.act(&order, action, None).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    order
}

async fn a_processing_refund_restocks_and_tells_the_feed_only_once_it_succeeds(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    // Accepted at once, the money back 3 s later: longer than the request polls.
    let order = completed_order_under(
        &app,
        json!({"outcome": "success", "refund": "processing_then_success", "refund_after_ms": 3000}),
    )
    .await;
    let shelf = app.stock_of("LATTE").await.0;
    let (status, r) = app
        .refund_lines(&order, "p-1", json!([{"line_no": 1, "quantity": 1}]), true)
        .await;
    assert_eq!((status, str_of(&r, "state")), (202, "processing"), "{r}");
    assert!(
        !str_of(&r, "refund_ref").is_empty(),
        "the provider's number: {r}"
    );
    // Accepted is not refunded: the order is still paid, nothing restocked,
    // nothing in the feed.
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(app.stock_of("LATTE").await.0, shelf);
    assert!(events_of(&app, &order, "order.refunded").await.is_empty());
    // Asked again under its request id: the same refund, still on its way.
    let (status, again) = app
        .refund_lines(&order, "p-1", json!([{"line_no": 1, "quantity": 1}]), true)
        .await;
    assert_eq!(
        (status, &again["id"], str_of(&again, "state")),
        (202, &r["id"], "processing")
    );

    let sweeper = sweeper(&app);
    let done = swept_until_final(&app, &sweeper, &order, "p-1").await;
    assert_eq!(str_of(&done, "state"), "succeeded", "{done}");
    assert_eq!(app.payment_status(&order).await, "partially_refunded");
    assert_eq!(
        app.stock_of("LATTE").await.0,
        shelf + 1000,
        "one latte back"
    );
    assert_eq!(events_of(&app, &order, "order.refunded").await.len(), 1);

    // Nothing is left to sweep, and nothing happens twice.
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 0);
    let (status, again) = app
        .refund_lines(&order, "p-1", json!([{"line_no": 1, "quantity": 1}]), true)
        .await;
    assert_eq!((status, str_of(&again, "state")), (200, "succeeded"));
    assert_eq!(app.stock_of("LATTE").await.0, shelf + 1000);
    assert_eq!(events_of(&app, &order, "order.refunded").await.len(), 1);
    // Sent once; every later look was a query.
    let calls = refund_calls(&app.payments(&order).await, str_of(&r, "id"));
    assert_eq!(
        calls[0],
        ("refund".to_owned(), "accepted".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls[1..].iter().all(|(c, _)| c == "refundquery"),
        "{calls:?}"
    );
    assert_eq!(calls.last().map(|c| c.1.as_str()), Some("succeeded"));
    let entry = app.entry(str_of(&done, "charge_id")).await;
    assert_eq!(entry.refunded_fen, 1058);
}

async fn a_refund_the_provider_closes_fails_and_frees_its_amount(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let order = completed_order_under(
        &app,
        json!({"outcome": "success", "refund": "closed", "refund_after_ms": 0}),
    )
    .await;
    let shelf = app.stock_of("LATTE").await.0;
    let (status, r) = app
        .refund_lines(&order, "c-1", json!([{"line_no": 1, "quantity": 2}]), true)
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (str_of(&r, "state"), str_of(&r, "code")),
        ("failed", "refund_closed"),
        "{r}"
    );
    let payments = app.payments(&order).await;
    assert_eq!(payments["payment_status"], "paid");
    assert_eq!(
        str_of(&payments["charges"][0], "refunded"),
        "0.00",
        "the amount is free again"
    );
    assert_eq!(app.stock_of("LATTE").await.0, shelf, "nothing restocked");
    assert!(events_of(&app, &order, "order.refunded").await.is_empty());
    let failed = events_of(&app, &order, "order.refund_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (
            str_of(&failed[0]["event"], "request_id"),
            str_of(&failed[0]["event"], "code")
        ),
        ("c-1", "refund_closed")
    );
    let calls = refund_calls(&payments, str_of(&r, "id"));
    assert!(
        calls.contains(&("refundquery".to_owned(), "failed".to_owned())),
        "{calls:?}"
    );
    let charge_id = str_of(&payments["charges"][0], "id").to_owned();
    assert_eq!(app.entry(&charge_id).await.refunded_fen, 0);

    // The same lines again, under a new request id: the gateway and the
    // provider both take it (the charge's scenario closes it again).
    let (status, r2) = app
        .refund_lines(&order, "c-2", json!([{"line_no": 1, "quantity": 2}]), true)
        .await;
    assert_eq!(status, 200, "{r2}");
    assert_ne!(r2["id"], r["id"]);
    let calls = refund_calls(&app.payments(&order).await, str_of(&r2, "id"));
    assert_eq!(
        calls[0],
        ("refund".to_owned(), "accepted".to_owned()),
        "{calls:?}"
    );
    assert_eq!(str_of(&r2, "code"), "refund_closed");
    assert_eq!(app.stock_of("LATTE").await.0, shelf);
    assert_eq!(
        events_of(&app, &order, "order.refund_failed").await.len(),
        2
    );
}

async fn a_refund_that_cannot_go_back_the_original_way_fails_with_refund_change(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund": "change", "refund_after_ms": 0}),
    )
    .await;
    let (status, r) = app.refund(&order, "x-1", "5.00").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (str_of(&r, "state"), str_of(&r, "code")),
        ("failed", "refund_change"),
        "{r}"
    );
    assert_eq!(app.payment_status(&order).await, "paid");
    assert!(events_of(&app, &order, "order.refunded").await.is_empty());
    let failed = events_of(&app, &order, "order.refund_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(str_of(&failed[0]["event"], "code"), "refund_change");
    // The money has left the merchant's account (the provider holds it to
    // be paid out by hand): both books keep it out of what is refundable.
    let charge_id = str_of(&charge, "id");
    assert_eq!(app.entry(charge_id).await.refunded_fen, 500);
    let (status, body) = app.refund(&order, "x-2", "16.17").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "refund_exceeds_paid"),
        "{body}"
    );
}

async fn a_merchant_balance_short_leaves_the_refund_requested_for_the_sweeper(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund_notenough_calls": 1}),
    )
    .await;
    let (status, r) = app.refund(&order, "n-1", "5.00").await;
    assert_eq!((status, str_of(&r, "state")), (202, "requested"), "{r}");
    let payments = app.payments(&order).await;
    assert_eq!(payments["payment_status"], "paid");
    assert_eq!(
        refund_calls(&payments, str_of(&r, "id")),
        [("refund".to_owned(), "unknown".to_owned())],
        "sent once, not accepted"
    );
    let exchange = payments["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .last()
        .cloned()
        .expect("one");
    assert_eq!(str_of(&exchange, "detail"), "NOTENOUGH");
    let charge_id = str_of(&charge, "id");
    assert_eq!(app.entry(charge_id).await.refunded_fen, 0);
    // The sweeper sends it again under the same out_refund_no.
    let sweeper = sweeper(&app);
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 1);
    let done = refund_named(&app.payments(&order).await, "n-1");
    assert_eq!(str_of(&done, "state"), "succeeded", "{done}");
    assert_eq!(done["id"], r["id"]);
    assert_eq!(app.payment_status(&order).await, "partially_refunded");
    assert_eq!(app.entry(charge_id).await.refunded_fen, 500);
    assert_eq!(events_of(&app, &order, "order.refunded").await.len(), 1);
}

async fn more_than_the_provider_holds_fails_as_refund_exceeds_paid(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let charge_id = str_of(&charge, "id").to_owned();
    // 1.00 refunded behind the gateway's back: its books allow 21.16, the
    // provider (INVALID_REQUEST) does not.
    assert_eq!(
        app.sim
            .refund_directly(&charge_id, "elsewhere-1", 2116, 100)
            .await,
        "SUCCESS"
    );
    let (status, r) = app.refund(&order, "o-1", "21.16").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (str_of(&r, "state"), str_of(&r, "code")),
        ("failed", "refund_exceeds_paid"),
        "{r}"
    );
    let payments = app.payments(&order).await;
    assert_eq!(
        refund_calls(&payments, str_of(&r, "id")),
        [("refund".to_owned(), "refused".to_owned())]
    );
    assert_eq!(str_of(&payments["charges"][0], "refunded"), "0.00");
    assert_eq!(payments["payment_status"], "paid");
    // What the provider still holds goes back.
    let (status, r2) = app.refund(&order, "o-2", "20.16").await;
    assert_eq!((status, str_of(&r2, "state")), (200, "succeeded"), "{r2}");
    assert_eq!(app.entry(&charge_id).await.refunded_fen, 2116);
}

async fn a_cancel_while_a_refund_is_processing_answers_refund_pending(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund": "processing_forever"}),
    )
    .await;
    let (status, r) = app.refund(&order, "f-1", "5.00").await;
    assert_eq!((status, str_of(&r, "state")), (202, "processing"), "{r}");
    let stock = app.stock_of("LATTE").await;
    for round in 1..=2 {
        let (status, body) = app.act(&order, "cancel", Some("customer left")).await;
        assert_eq!(
            (status, str_of(&body, "code")),
            (409, "refund_pending"),
            "round {round}: {body}"
        );
        let view = order_view(&app, &order).await;
        assert_eq!(
            (str_of(&view, "status"), str_of(&view, "payment_status")),
            ("created", "paid")
        );
        assert_eq!(app.stock_of("LATTE").await, stock, "nothing released");
    }
    // No second refund was made for the cancel, and the sweeper only asks.
    let sweeper = sweeper(&app);
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 1);
    let payments = app.payments(&order).await;
    assert_eq!(refunds_of(&payments), [triple("f-1", "5.00", "processing")]);
    let calls = refund_calls(&payments, str_of(&r, "id"));
    assert_eq!(
        calls.iter().filter(|(c, _)| c == "refund").count(),
        1,
        "{calls:?}"
    );
    assert!(calls.len() > 2, "queried: {calls:?}");
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 500);
}

async fn an_upgrade_keeps_a_pending_refund_as_requested_for_the_sweeper(backend: Backend) {
    let Some(app) = PayApp::spawn(backend).await else {
        return;
    };
    let (order, charge, _) = pay_under(&app, json!({"outcome": "success"})).await;
    let charge_id = str_of(&charge, "id").to_owned();
    // A gateway from before migration 0011 recorded a refund and stopped
    // before the provider heard of it (later migrations undone first).
    let mut undone = app.db.migrate_down().await.expect("down");
    while undone.is_some_and(|v| v > 11) {
        undone = app.db.migrate_down().await.expect("down");
    }
    assert_eq!(undone, Some(11));
    sqlx::query(
        "INSERT INTO refunds (id, charge_id, order_id, request_id, amount_fen, state, created_by,
            created_at, updated_at, reason, restock)
         VALUES ($1, $2, $3, 'old-1', 500, 'pending', 'terminal:test', 1000000, 1000000, NULL, 0)",
    )
    .bind(format!("{charge_id}R1"))
    .bind(charge_id.clone())
    .bind(order.clone())
    .execute(&app.db.pool)
    .await
    .expect("refund");
    sqlx::query("UPDATE charges SET refunded_fen = 500 WHERE id = $1")
        .bind(charge_id.clone())
        .execute(&app.db.pool)
        .await
        .expect("reserve");
    app.db.migrate_up().await.expect("up");
    assert_eq!(
        refunds_of(&app.payments(&order).await),
        [triple("old-1", "5.00", "requested")]
    );
    assert_eq!(app.payment_status(&order).await, "paid");
    // The new gateway's sweeper sends it and sees it through.
    assert_eq!(sweeper(&app).sweep_once().await.expect("sweep"), 1);
    assert_eq!(
        refunds_of(&app.payments(&order).await),
        [triple("old-1", "5.00", "succeeded")]
    );
    assert_eq!(app.payment_status(&order).await, "partially_refunded");
    assert_eq!(app.entry(&charge_id).await.refunded_fen, 500);
}

tests::on_both_databases!(
    an_upgrade_keeps_a_pending_refund_as_requested_for_the_sweeper,
    a_processing_refund_restocks_and_tells_the_feed_only_once_it_succeeds,
    a_refund_the_provider_closes_fails_and_frees_its_amount,
    a_refund_that_cannot_go_back_the_original_way_fails_with_refund_change,
    a_merchant_balance_short_leaves_the_refund_requested_for_the_sweeper,
    more_than_the_provider_holds_fails_as_refund_exceeds_paid,
    a_cancel_while_a_refund_is_processing_answers_refund_pending,
    cancelling_a_paid_order_refunds_it_in_full_once,
    a_running_charge_blocks_cancel_and_reject,
    a_refused_refund_leaves_the_order_as_it_was,
    a_cancel_resumes_what_a_crash_left,
    orders_paid_elsewhere_close_with_the_refund_due_elsewhere,
    without_payments_a_counter_paid_order_keeps_its_status,
    concurrent_refunds_of_one_line_never_exceed_it,
    uneven_line_refunds_give_the_last_part_what_is_left,
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
