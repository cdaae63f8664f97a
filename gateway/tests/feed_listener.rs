//! The feed listener's LISTEN connection lost: two `gateway` processes on
//! one PostgreSQL database; the listeners' backends (found by their
//! `application_name`) are terminated again and again for a while. Then
//! - `/readyz` of the instance says `feed_listener` is down (503);
//! - an order written on the other instance still reaches an SSE client on
//!   this one (the readers' poll is the fallback);
//! - once the connections are left alone the listener is back: `/readyz`
//!   ready again, with the restart counted, and its backend listed again.

use std::time::{Duration, Instant};

use gateway::db::Db;
use gateway::keys::Role;
use serde_json::{Value, json};
use sqlx::Row;
use tests::procs::{GatewayProc, sse};
use tests::{Backend, TestDb};

const LISTENER: &str = gateway::events::LISTENER_APPLICATION;

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn listeners(db: &Db) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER)
    .fetch_one(&db.pool)
    .await
    .expect("pg_stat_activity")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_is_shown_covered_by_polling_and_reconnected() {
    let Some(store) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let url = store.url().to_owned();
    let db = Db::connect(&url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    tests::seed_cola(&db, "S001", "人民路店", "100000").await;
    let admin = tests::new_key(&db, Role::Admin, None).await;
    let app = tests::new_key(&db, Role::App, None).await;
    let bin = env!("CARGO_BIN_EXE_gateway");
    let a = GatewayProc::start(bin.as_ref(), &url, &[], &["jobs.instance=gwA"]);
    let b = GatewayProc::start(bin.as_ref(), &url, &[], &["jobs.instance=gwB"]);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while listeners(&db).await < 2 || readyz(&http, &b.base).await.0 != 200 {
        assert!(Instant::now() < deadline, "the listeners never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rx = sse(
        &http,
        &format!("{}/api/v1/stores/S001/orders/stream", b.base),
        &admin,
    )
    .await;

    // Terminate the listeners' backends every 50 ms until told to stop.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let killer_db = db.clone();
    let killer = tokio::spawn(async move {
        let mut terminated = 0i64;
        loop {
            let n: i64 = sqlx::query(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND datname = current_database()",
            )
            .bind(LISTENER)
            .fetch_one(&killer_db.pool)
            .await
            .expect("pg_terminate_backend")
            .get(0);
            terminated += n;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop_rx.wait_for(|s| *s) => return terminated,
            }
        }
    });

    // B says its listener is down.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, v) = readyz(&http, &b.base).await;
        if status == 503 && v["components"]["feed_listener"]["state"] == "down" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "B never showed its listener down: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        body["down"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "feed_listener")),
        "{body}"
    );

    // An order on A still reaches B's stream, by B's poll.
    let r = http
        .post(format!("{}/api/v1/orders", a.base))
        .bearer_auth(&app)
        .json(&json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}))
        .send()
        .await
        .expect("order");
    assert!(r.status().is_success(), "order: {}", r.status());
    let id = r.json::<Value>().await.expect("order JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = rx.recv().await {
            let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            if ev.event.as_deref() == Some("order.created") && v["order"]["id"] == id.as_str() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the order never reached B's stream");
    // Still down meanwhile (the connections are still being cut).
    let (_, v) = readyz(&http, &b.base).await;
    assert!(v["components"]["feed_listener"].is_object(), "{v}");

    stop_tx.send(true).expect("stop");
    let terminated = killer.await.expect("killer");
    assert!(terminated > 0, "no listener backend was found to terminate");

    // The listener reconnects and B is ready again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, v) = readyz(&http, &b.base).await;
        if status == 200 && v["components"]["feed_listener"]["state"] == "up" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "B's listener never came back: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body["components"]["feed_listener"]["restarts"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while listeners(&db).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the listeners' backends are not back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    db.pool.close().await;
}
