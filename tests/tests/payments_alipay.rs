//! Alipay payment codes end to end: the real gateway on port 0 over a
//! throwaway database (SQLite and PostgreSQL), charging through the
//! Alipay-shaped provider against the in-process simulator, whose WeChat and
//! Alipay faces share one ledger. Every test checks both the gateway's
//! records and the simulator's ledger. Fixed RSA test keys from
//! proto/tests/fixtures/; short poll intervals; no timed assertions.

use gateway::payments::Payments;
use hw_sim::payments::LedgerEntry;
use proto::alipay::PrivateKey;
use serde_json::{Value, json};
use tests::Backend;
use tests::pay::{APP_PRIVATE, PayGateway, PayOptions, str_of};

/// An Alipay payment code (18 digits starting 28).
const CODE: &str = "284567890123456789";
const WECHAT_CODE: &str = "134567890123456789";

type PayApp = PayGateway;

/// The gateway of `tests::pay` with Alipay always, WeChat Pay too when
/// `wechat`; the simulator serves both. `None` when the backend is not
/// available here.
async fn spawn(backend: Backend, wechat: bool) -> Option<PayApp> {
    let options = PayOptions {
        wechat,
        alipay: true,
        ..PayOptions::default()
    };
    PayGateway::spawn(backend, options).await
}

/// The provider calls of an order's first charge, in order.
async fn calls(app: &PayApp, order: &str) -> Vec<String> {
    app.payments(order).await["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|e| str_of(e, "call").to_owned())
        .collect()
}

/// Pays a new order with the Alipay code under one scenario.
async fn pay_under(app: &PayApp, scenario: Value) -> (String, Value, LedgerEntry) {
    app.pay_under(scenario, CODE).await
}

async fn every_outcome_with_an_alipay_code(backend: Backend) {
    let Some(app) = spawn(backend, false).await else {
        return;
    };

    // Paid at once; a retry by the terminal charges nothing more.
    let (order, charge, entry) = pay_under(&app, json!({"outcome": "success"})).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(str_of(&charge, "provider"), "alipay");
    assert_eq!(str_of(&charge, "code_kind"), "alipay");
    assert_eq!(str_of(&charge, "auth_code"), "28******6789");
    assert!(!charge.to_string().contains(CODE), "the code is masked");
    assert!(!str_of(&charge, "transaction_id").is_empty());
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(
        (
            entry.provider.as_str(),
            entry.state.as_str(),
            entry.total_fen
        ),
        ("alipay", "SUCCESS", 2116)
    );
    assert_eq!(entry.micropay_calls, 1);
    let (status, again) = app.pay(&order, CODE).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], charge["id"]);
    assert_eq!(app.entry(str_of(&charge, "id")).await.micropay_calls, 1);
    assert_eq!(calls(&app, &order).await, ["micropay"]);

    // 10003, then paid: found by querying.
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

    // 20000, yet the money moved: the query finds it.
    let (order, charge, entry) =
        pay_under(&app, json!({"outcome": "system_error_then_success"})).await;
    assert_eq!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(entry.state, "SUCCESS");
    assert_eq!((entry.micropay_calls, entry.reverse_calls), (1, 0));

    // Waiting forever: cancelled at the deadline, order payable again.
    let (order, charge, entry) = pay_under(
        &app,
        json!({"outcome": "userpaying_forever", "reverse_retries": 2}),
    )
    .await;
    assert_eq!(str_of(&charge, "state"), "reversed", "{charge}");
    assert_eq!(str_of(&charge, "code"), "payment_timeout");
    assert_eq!(app.payment_status(&order).await, "unpaid");
    assert_eq!(entry.state, "REVOKED");
    assert_eq!(entry.reverse_calls, 3, "cancel repeated while retry_flag=Y");
    let calls = calls(&app, &order).await;
    assert_eq!(calls.iter().filter(|c| *c == "reverse").count(), 3);
    app.scenario(json!({"outcome": "success"})).await;
    let (status, second) = app.pay(&order, CODE).await;
    assert_eq!(status, 200);
    assert_eq!(str_of(&second, "state"), "succeeded", "{second}");
    assert_ne!(second["id"], charge["id"]);

    // Definite failures: unpaid, no query, no cancel.
    for (outcome, code) in [
        ("insufficient_balance", "insufficient_balance"),
        ("invalid_code", "invalid_payment_code"),
    ] {
        let (order, charge, entry) = pay_under(&app, json!({"outcome": outcome})).await;
        assert_eq!(str_of(&charge, "state"), "failed", "{outcome}: {charge}");
        assert_eq!(str_of(&charge, "code"), code);
        assert_eq!(app.payment_status(&order).await, "unpaid");
        assert_eq!(entry.state, "PAYERROR");
        assert_eq!((entry.query_calls, entry.reverse_calls), (0, 0));
    }

    // Only Alipay is configured here: WeChat codes are refused up front.
    let order = app.order().await;
    let (status, body) = app.pay(&order, WECHAT_CODE).await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "unsupported_payment_code")
    );

    // Every charge the provider saw is final: nothing for a sweeper.
    for e in app.ledger().await {
        assert!(
            ["SUCCESS", "REVOKED", "PAYERROR"].contains(&e.state.as_str()),
            "{e:?}"
        );
        assert_eq!(e.provider, "alipay");
    }
    let fresh = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 0);
}

async fn the_code_prefix_picks_the_provider(backend: Backend) {
    let Some(app) = spawn(backend, true).await else {
        return;
    };
    app.scenario(json!({"outcome": "success"})).await;
    let by_wechat = app.order().await;
    let by_alipay = app.order().await;
    let (status, w) = app.pay(&by_wechat, WECHAT_CODE).await;
    assert_eq!(status, 200, "{w}");
    let (status, a) = app.pay(&by_alipay, CODE).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (str_of(&w, "state"), str_of(&w, "provider")),
        ("succeeded", "wechatpay")
    );
    assert_eq!(
        (str_of(&a, "state"), str_of(&a, "provider")),
        ("succeeded", "alipay")
    );
    assert_eq!(app.payment_status(&by_wechat).await, "paid");
    assert_eq!(app.payment_status(&by_alipay).await, "paid");
    let w_entry = app.entry(str_of(&w, "id")).await;
    let a_entry = app.entry(str_of(&a, "id")).await;
    assert_eq!(
        (w_entry.provider.as_str(), w_entry.state.as_str()),
        ("wechatpay", "SUCCESS")
    );
    assert_eq!(
        (a_entry.provider.as_str(), a_entry.state.as_str()),
        ("alipay", "SUCCESS")
    );
    assert_eq!(app.ledger().await.len(), 2, "one charge each, no more");

    // A scenario keyed by one code applies whichever face sees it.
    app.scenario(json!({"auth_code": CODE, "outcome": "insufficient_balance"}))
        .await;
    let order = app.order().await;
    let (_, refused) = app.pay(&order, CODE).await;
    assert_eq!(
        str_of(&refused, "code"),
        "insufficient_balance",
        "{refused}"
    );
    let order = app.order().await;
    let (_, paid) = app.pay(&order, WECHAT_CODE).await;
    assert_eq!(str_of(&paid, "state"), "succeeded", "{paid}");
}

async fn refunds_go_through_alipay(backend: Backend) {
    let Some(app) = spawn(backend, true).await else {
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
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 500);

    let (status, body) = app.refund(&order, "r-2", "16.17").await;
    assert_eq!(
        (status, str_of(&body, "code")),
        (422, "refund_exceeds_paid"),
        "{body}"
    );
    let (status, r2) = app.refund(&order, "r-2", "16.16").await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(str_of(&r2, "state"), "succeeded");
    assert_eq!(app.payment_status(&order).await, "refunded");
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!((entry.refunded_fen, entry.total_fen), (2116, 2116));
    let calls = calls(&app, &order).await;
    assert_eq!(calls.iter().filter(|c| c.starts_with("refund ")).count(), 2);
}

async fn a_forged_alipay_answer_is_never_trusted(backend: Backend) {
    let Some(app) = spawn(backend, false).await else {
        return;
    };
    // The simulator signs with a key that is not Alipay's: every answer
    // is a forgery as far as the gateway can tell.
    app.sim
        .provider
        .alipay_sign_with(Some(PrivateKey::from_pem(APP_PRIVATE).expect("key")));
    app.scenario(json!({"outcome": "success"})).await;
    let order = app.order().await;
    let (status, charge) = app.pay(&order, CODE).await;
    assert_eq!(status, 202, "still open: {charge}");
    assert_ne!(str_of(&charge, "state"), "succeeded", "{charge}");
    assert_eq!(str_of(&charge, "state"), "pending", "{charge}");
    // The order shows its charge is still open.
    assert_eq!(app.payment_status(&order).await, "pending");
    let log = app.payments(&order).await;
    let exchanges = log["charges"][0]["exchanges"].as_array().expect("log");
    assert!(
        exchanges.iter().all(|e| str_of(e, "outcome") != "paid"),
        "{log}"
    );
    assert!(
        exchanges
            .iter()
            .any(|e| str_of(e, "detail").contains("signature")),
        "{log}"
    );
    // The cancels did reach the provider: the money went back.
    let entry = app.entry(str_of(&charge, "id")).await;
    assert_eq!(entry.state, "REVOKED");
    assert!(entry.reverse_calls >= 1);

    // Once answers verify again, the sweeper settles it as reversed.
    app.sim.provider.alipay_sign_with(None);
    let fresh = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");
    assert_eq!(fresh.sweep_once().await.expect("sweep"), 1);
    let log = app.payments(&order).await;
    assert_eq!(str_of(&log["charges"][0], "state"), "reversed", "{log}");
    assert_eq!(str_of(&log, "payment_status"), "unpaid");
}

// ------------------------------ refunds: accepted is not yet refunded
// (The helpers mirror those of tests/tests/payments.rs.)

/// The refund `request_id` of `order`, as its payments document shows it.
async fn refund_named(app: &PayApp, order: &str, request_id: &str) -> Value {
    let payments = app.payments(order).await;
    payments["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .find(|r| str_of(r, "request_id") == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no refund {request_id} in {payments}"))
}

/// How many feed events of `kind` the order has.
async fn events_of(app: &PayApp, order: &str, kind: &str) -> usize {
    app.feed_of(order)
        .await
        .iter()
        .filter(|e| str_of(e, "type") == kind)
        .count()
}

/// The outcomes of the calls of one kind (`refund`, `refundquery`) about
/// the refund `refund_id`.
async fn outcomes(app: &PayApp, order: &str, call: &str, refund_id: &str) -> Vec<String> {
    app.payments(order).await["charges"][0]["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter(|e| str_of(e, "call") == format!("{call} {refund_id}"))
        .map(|e| str_of(e, "outcome").to_owned())
        .collect()
}

async fn alipay_refunds_are_refunded_only_once_the_query_says_so(backend: Backend) {
    let Some(app) = spawn(backend, false).await else {
        return;
    };
    let sweeper = Payments::new(&app.config, app.db.clone(), gateway::events::Hub::default())
        .expect("payments");

    // Accepted at once, the money back 3 s later: longer than the request polls.
    let (order, _, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund": "processing_then_success", "refund_after_ms": 3000}),
    )
    .await;
    let (status, r) = app.refund(&order, "p-1", "5.00").await;
    assert_eq!((status, str_of(&r, "state")), (202, "processing"), "{r}");
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(events_of(&app, &order, "order.refunded").await, 0);
    let mut done = r.clone();
    for _ in 0..600 {
        sweeper.sweep_once().await.expect("sweep");
        done = refund_named(&app, &order, "p-1").await;
        if str_of(&done, "state") != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(str_of(&done, "state"), "succeeded", "{done}");
    assert_eq!(app.payment_status(&order).await, "partially_refunded");
    assert_eq!(events_of(&app, &order, "order.refunded").await, 1);
    assert_eq!(
        outcomes(&app, &order, "refund", str_of(&r, "id")).await,
        ["accepted"]
    );

    // The seller's balance short (SELLER_BALANCE_NOT_ENOUGH): requested,
    // and the sweeper sends it again under the same out_request_no.
    let (order, charge, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund_notenough_calls": 1}),
    )
    .await;
    let (status, r) = app.refund(&order, "n-1", "5.00").await;
    assert_eq!((status, str_of(&r, "state")), (202, "requested"), "{r}");
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 0);
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 1);
    let done = refund_named(&app, &order, "n-1").await;
    assert_eq!(
        (str_of(&done, "state"), &done["id"]),
        ("succeeded", &r["id"])
    );
    assert_eq!(
        outcomes(&app, &order, "refund", str_of(&r, "id")).await,
        ["unknown", "accepted"]
    );
    assert_eq!(app.entry(str_of(&charge, "id")).await.refunded_fen, 500);
    assert_eq!(events_of(&app, &order, "order.refunded").await, 1);

    // Alipay answers a closed refund with no refund data, as one never
    // made: it is asked for again under its out_request_no, never taken
    // for refunded; accepted three times and closed each time, it fails
    // as closed instead of cycling for ever.
    let (order, _, _) = pay_under(
        &app,
        json!({"outcome": "success", "refund": "closed", "refund_after_ms": 0}),
    )
    .await;
    let (status, r) = app.refund(&order, "c-1", "5.00").await;
    assert!(matches!(status, 200 | 202), "{status} {r}");
    assert_ne!(str_of(&r, "state"), "succeeded", "{r}");
    let id = str_of(&r, "id").to_owned();
    let mut done = r.clone();
    for _ in 0..20 {
        done = refund_named(&app, &order, "c-1").await;
        if str_of(&done, "state") == "failed" {
            break;
        }
        sweeper.sweep_once().await.expect("sweep");
    }
    assert_eq!(
        (str_of(&done, "state"), str_of(&done, "code")),
        ("failed", "refund_closed"),
        "{done}"
    );
    assert!(
        outcomes(&app, &order, "refundquery", &id)
            .await
            .iter()
            .all(|o| o == "not_found"),
        "closed reads as not found"
    );
    assert_eq!(
        outcomes(&app, &order, "refund", &id).await,
        ["accepted", "accepted", "accepted"],
        "sent again, then given up"
    );
    assert_eq!(app.payment_status(&order).await, "paid");
    assert_eq!(events_of(&app, &order, "order.refunded").await, 0);
}

tests::on_both_databases!(
    alipay_refunds_are_refunded_only_once_the_query_says_so,
    every_outcome_with_an_alipay_code,
    the_code_prefix_picks_the_provider,
    refunds_go_through_alipay,
    a_forged_alipay_answer_is_never_trusted,
);
