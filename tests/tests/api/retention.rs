//! Retention: the gateway prunes old idempotency keys, delivered outbox rows,
//! inbox rows, feed events and held events on its own schedule, keeps what
//! is recent, tells a stream reader whose cursor was pruned, raises an alert
//! for held events that never found their order, and counts it in /metrics.

use std::time::Duration;

use gateway::retention::{self, RetentionConfig};
use proto::order::Unit;
use serde_json::{Value, json};
use sqlx::Row;
use tests::{Backend, TestApp, on_both_databases};

use super::feed::SseReader;

on_both_databases!(old_rows_go_recent_rows_stay, pruned_cursor_is_told);

const DAY_US: i64 = 86_400_000_000;

async fn exec(app: &TestApp, sql: &str, binds: &[Value]) {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for b in binds {
        q = match b {
            Value::Number(n) => q.bind(n.as_i64().expect("i64")),
            Value::String(s) => q.bind(s.clone()),
            _ => q.bind(None::<i64>),
        };
    }
    q.execute(&app.db.pool).await.expect(sql);
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.pool)
        .await
        .expect(sql)
        .get(0)
}

async fn order_with_key(app: &TestApp, key: &str) -> Value {
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.app)
        .header("Idempotency-Key", key)
        .json(&json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "order: {}", r.status());
    r.json().await.expect("json")
}

fn sample(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// Waits (generously) for the gateway's own retention loop to finish a run.
async fn wait_for_runs(app: &TestApp, n: i64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = app.metrics().await;
        if sample(&m, "gateway_retention_runs_total") >= n {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retention run within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn old_rows_go_recent_rows_stay(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let now = gateway::clock::now_micros();
    let old = now - 40 * DAY_US;

    // Idempotency keys: one 8 days old, one fresh.
    let stale = order_with_key(&app, "stale-key").await;
    let fresh = order_with_key(&app, "fresh-key").await;
    exec(
        &app,
        "UPDATE idempotency_keys SET created_at = $1 WHERE idem_key = 'stale-key'",
        &[json!(now - 8 * DAY_US)],
    )
    .await;

    // Outbox: delivered long ago (goes), delivered today and failed long ago (stay).
    for (state, delivered_at) in [
        ("delivered", json!(old)),
        ("delivered", json!(now)),
        ("failed", Value::Null),
    ] {
        exec(
            &app,
            "INSERT INTO outbox (platform, order_key, path, params, state, next_at, created_at, delivered_at)
             VALUES ('meituan', 'o1', '/x', '{}', $1, $2, $2, $3)",
            &[json!(state), json!(old), delivered_at],
        )
        .await;
    }
    // Inbox: one old push, one recent.
    for (r, at) in [("old-push", old), ("new-push", now)] {
        exec(
            &app,
            "INSERT INTO channel_inbox (platform, kind, push_ref, platform_order_id, outcome, received_at)
             VALUES ('meituan', 'cancel', $1, 'P1', 'held', $2)",
            &[json!(r), json!(at)],
        )
        .await;
    }
    // Held events: one that never found its order (expires with an alert),
    // one recent (waits on), one applied long ago (goes).
    exec(
        &app,
        "INSERT INTO channel_stores (platform, platform_store_id, store_id, created_at)
         VALUES ('meituan', 'mt-S001', 'S001', $1)",
        &[json!(old)],
    )
    .await;
    for (poid, at, applied) in [
        ("P-LOST", json!(now - 8 * DAY_US), Value::Null),
        ("P-SOON", json!(now), Value::Null),
        ("P-DONE", json!(old), json!(old)),
    ] {
        exec(
            &app,
            "INSERT INTO channel_held (platform, platform_order_id, kind, push_ref, params, received_at, applied_at)
             VALUES ('meituan', $1, 'cancel', 'r1', '{}', $2, $3)",
            &[json!(poid), at, applied],
        )
        .await;
    }
    // Feed: the first events are old, then a new one, then one stamped old
    // again (clocks disagree): only the prefix goes, so no gap opens.
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let id = o["id"].as_str().unwrap().to_owned();
    let t = app.terminal("S001").to_owned();
    app.act(&id, "accept", &t).await;
    app.act(&id, "ready", &t).await;
    let head = count(
        &app,
        "SELECT MAX(seq) FROM order_events WHERE store_id = 'S001'",
    )
    .await;
    assert_eq!(head, 5, "3 orders and 2 actions");
    exec(
        &app,
        "UPDATE order_events SET at = $1 WHERE store_id = 'S001' AND seq IN (1, 2, 3, 5)",
        &[json!(old)],
    )
    .await;

    // The gateway's own loop, started the way `serve` starts it, in small
    // batches so several rounds run.
    app.state.start_retention(RetentionConfig {
        first_after: Duration::ZERO,
        batch: 1,
        ..RetentionConfig::default()
    });
    let m = wait_for_runs(&app, 1).await;

    let pruned = |t: &str| {
        sample(
            &m,
            &format!("gateway_retention_pruned_rows_total{{table=\"{t}\"}}"),
        )
    };
    assert_eq!(pruned("idempotency_keys"), 1);
    assert_eq!(pruned("outbox"), 1);
    assert_eq!(pruned("channel_inbox"), 1);
    assert_eq!(
        pruned("order_events"),
        3,
        "seq 1-3, not 5 (after the newer 4)"
    );
    assert_eq!(pruned("channel_held"), 1);
    assert_eq!(sample(&m, "gateway_retention_held_expired_total"), 1);
    let last_run = sample(&m, "gateway_retention_last_run_timestamp_seconds");
    assert!(last_run >= now / 1_000_000, "last run {last_run}");

    // What a client notices: the fresh key still answers the same order, the
    // stale one is free again (a new order).
    assert_eq!(order_with_key(&app, "fresh-key").await["id"], fresh["id"]);
    assert_ne!(order_with_key(&app, "stale-key").await["id"], stale["id"]);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM outbox").await,
        2,
        "the recent delivered and the failed rows stay"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM channel_inbox WHERE push_ref = 'new-push'"
        )
        .await,
        1
    );
    let (_, held) = app.get_json("/api/v1/channels/held", &app.admin).await;
    let waiting: Vec<&str> = held["held"]
        .as_array()
        .expect("held list")
        .iter()
        .filter_map(|h| h["platform_order_id"].as_str())
        .collect();
    assert_eq!(waiting, ["P-SOON"], "{held}");

    // The kept feed starts right after the pruned prefix; the expiry alert is
    // on it, after the events that were there.
    let r = app
        .http
        .get(app.url("/api/v1/stores/S001/orders/stream?since=3"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), 200);
    let mut feed = SseReader::new(r);
    let mut seen = Vec::new();
    let alert = loop {
        let (id, ev, data) = feed.next().await;
        seen.push(id.parse::<i64>().expect("id"));
        if ev == "channel.held_expired" {
            break data;
        }
    };
    assert_eq!(seen, [4, 5, 6], "in number order without gaps");
    assert_eq!(alert["platform_order_id"], "P-LOST");
    assert_eq!(alert["event_kind"], "cancel");
    assert!(alert["held_s"].as_i64().unwrap() >= 8 * 86_400);
    drop(feed);
    app.stop().await;
}

/// A stream resumed from a cursor whose events were pruned answers
/// 410 `cursor_expired`; the list by cursor keeps working (it reads the
/// orders themselves) and gives a cursor the stream accepts. Driven through
/// `run_once` with a clock 31 days ahead instead of aged rows.
async fn pruned_cursor_is_told(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let t = app.terminal("S001").to_owned();
    for _ in 0..3 {
        app.order("S001", &[("COLA", "1")]).await;
    }
    let later = gateway::clock::now_micros() + 31 * DAY_US;
    retention::run_once(
        &app.db,
        &app.state.hub,
        &RetentionConfig::default(),
        &app.state.retention,
        later,
    )
    .await
    .expect("retention");
    assert_eq!(app.state.retention.pruned("order_events"), 3);

    let stream = |since: i64| {
        app.http
            .get(app.url(&format!("/api/v1/stores/S001/orders/stream?since={since}")))
            .bearer_auth(&t)
            .send()
    };
    for since in [0, 2] {
        let r = stream(since).await.expect("stream");
        assert_eq!(r.status(), 410, "since={since}");
        let p: Value = r.json().await.expect("problem");
        assert_eq!(p["code"], "cursor_expired");
    }
    // Reload the queue: every order is still there, with a cursor to resume from.
    let (_, page) = app.get_json("/api/v1/stores/S001/orders?since=0", &t).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 3);
    let cursor = page["cursor"].as_i64().unwrap();
    assert_eq!(cursor, 3);
    let r = stream(cursor).await.expect("stream");
    assert_eq!(r.status(), 200);
    let mut feed = SseReader::new(r);
    let (_, o) = app.order("S001", &[("COLA", "1")]).await;
    let (id, ev, data) = feed.next().await;
    assert_eq!((id.as_str(), ev.as_str()), ("4", "order.created"));
    assert_eq!(data["order"]["id"], o["id"]);
    drop(feed);
    app.stop().await;
}
