//! `/metrics` for the engineers who run the gateway: requests by route and
//! status with latency histograms, orders as they are created and change
//! status, the database pool, the SQLite writer's batches — and the domain
//! gauges, read from indexes that hold only what is open.

use proto::order::Unit;
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(requests_and_orders_are_counted_as_they_happen);

/// The value of the first sample whose line starts with `name{` and holds
/// every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn requests_and_orders_are_counted_as_they_happen(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可乐", Unit::Piece, "3.00", "100")
        .await;
    let before = app.metrics().await;
    let created = |t: &str| {
        sample(t, "gateway_orders_created_total", &["channel=\"official\""]).unwrap_or(0.0)
    };
    let posted = |t: &str| {
        sample(
            t,
            "gateway_http_requests_total",
            &[
                "route=\"/api/v1/orders\"",
                "status=\"201\"",
                "method=\"POST\"",
            ],
        )
        .unwrap_or(0.0)
    };

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (s, o) = app.order("S001", &[("COLA", "1")]).await;
        assert_eq!(s, 201, "{o}");
        ids.push(o["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.act(&ids[0], "accept", &app.admin).await.0, 200);
    // An order id the router matches but nobody has: counted under the
    // route's pattern, never under the id (one series per route).
    let r = app
        .http
        .get(app.url("/api/v1/orders/no-such-order"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _ = app.http.get(app.url("/nowhere")).send().await.unwrap();
    // A made-up method is counted, but never becomes a label of its own.
    let brew = reqwest::Method::from_bytes(b"BREWCOFFEE").unwrap();
    let _ = app
        .http
        .request(brew, app.url("/api/v1/orders"))
        .send()
        .await
        .unwrap();

    let after = app.metrics().await;
    // The recorder is the process's: other tests in this binary count too.
    assert!(created(&after) - created(&before) >= 3.0, "{after}");
    assert!(posted(&after) - posted(&before) >= 3.0, "{after}");
    assert!(
        sample(
            &after,
            "gateway_http_requests_total",
            &["route=\"/api/v1/orders/{id}\"", "status=\"404\""]
        )
        .is_some(),
        "{after}"
    );
    assert!(!after.contains("no-such-order"), "ids never become labels");
    assert!(
        !after.contains("BREWCOFFEE"),
        "made-up methods never become labels"
    );
    assert!(
        sample(&after, "gateway_http_requests_total", &["method=\"other\""]).is_some(),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gateway_http_requests_total",
            &["route=\"unmatched\""]
        )
        .is_some(),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gateway_http_request_duration_seconds_bucket",
            &[
                "method=\"POST\"",
                "route=\"/api/v1/orders\"",
                "status=\"201\"",
                "le=\"+Inf\""
            ]
        )
        .is_some_and(|n| n >= 3.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gateway_order_status_changes_total",
            &["to=\"accepted\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        sample(&after, "gateway_db_pool_connections", &["state=\"idle\""]).is_some(),
        "{after}"
    );
    if b == Backend::Sqlite {
        assert!(
            sample(&after, "gateway_sqlite_batch_orders_count", &[]).is_some_and(|n| n >= 3.0),
            "{after}"
        );
    }
    // The domain gauges: this database's open orders by status.
    assert_eq!(
        sample(&after, "gateway_orders", &["status=\"created\""]),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "gateway_orders", &["status=\"accepted\""]),
        Some(1.0)
    );
    app.stop().await;
}
