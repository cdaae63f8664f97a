//! The supervised order writer through the HTTP surface: a panic is logged,
//! every waiting order gets an answer, readiness names the writer while it is
//! down, and the restarted writer serves the next orders. The panics are the
//! test faults the library exposes on the writers' `faults()` (not reachable
//! from the network); the writer itself is the real one: SQLite's group
//! commit, and PostgreSQL's.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proto::order::Unit;
use serde_json::Value;
use tests::{Backend, TestApp};

/// Every log line of this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&buf));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

async fn readyz(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.http.get(app.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status` (generous deadline, no timing
/// assumption).
async fn wait_ready(app: &TestApp, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = readyz(app, "/readyz").await;
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never answered {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn spawn_app(backend: Backend) -> Option<TestApp> {
    logs();
    let app = TestApp::spawn(backend).await?;
    app.product("EGG", "卤蛋", Unit::Piece, "2.50", "100").await;
    Some(app)
}

/// The test faults of this gateway's order writer, whichever engine.
fn faults(app: &TestApp) -> &gateway::orders::Faults {
    app.state
        .orders
        .faults()
        .expect("the gateway has an order writer")
}

/// Orders waiting in the writer's queue.
fn queued(app: &TestApp) -> usize {
    app.state.orders.queued()
}

tests::on_both_databases!(
    a_dead_order_writer_answers_its_orders_is_named_by_readiness_and_restarts,
    a_panic_inside_a_batch_fails_no_order_and_keeps_the_writer_up,
);

async fn a_dead_order_writer_answers_its_orders_is_named_by_readiness_and_restarts(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (s, body) = readyz(&app, "/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["components"]["order_writer"]["state"], "up");
    let (s, _) = app.order("S001", &[("EGG", "1")]).await;
    assert_eq!(s, 201);

    // The writer dies holding the next order and may not start again yet.
    let faults = faults(&app);
    faults.hold_restart.store(true, Ordering::SeqCst);
    faults.panic_in_writer.store(true, Ordering::SeqCst);
    let (s, body) = app.order("S001", &[("EGG", "1")]).await;
    assert_eq!(s, 503, "the order in flight gets an answer: {body}");
    assert_eq!(body["code"], "order_writer_failed", "{body}");

    let body = wait_ready(&app, 503).await;
    assert_eq!(body["down"], serde_json::json!(["order_writer"]), "{body}");
    assert_eq!(body["database"], "ok");
    let (s, same) = readyz(&app, "/healthz").await;
    assert_eq!(s, 503, "/healthz is readiness too: {same}");
    let m = metrics(&app).await;
    assert!(
        m.contains("gateway_component_up{component=\"order_writer\"} 0"),
        "{m}"
    );
    let log = log_text();
    assert!(
        log.contains("background task died")
            && log.contains("test fault: the order writer panics holding 1 orders"),
        "the panic is logged with its cause: {log}"
    );

    // An order placed while the writer is down waits in its queue for the
    // new writer.
    let waiting = {
        let (http, url, key) = (app.http.clone(), app.url("/api/v1/orders"), app.app.clone());
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&serde_json::json!({"store_id": "S001", "lines": [{"sku": "EGG", "quantity": "2"}]}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued(&app) == 0 {
        assert!(
            Instant::now() < deadline,
            "the order never reached the queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!waiting.is_finished(), "it waits for the writer");
    faults.hold_restart.store(false, Ordering::SeqCst);
    let body = wait_ready(&app, 200).await;
    assert!(
        body["components"]["order_writer"]["restarts"].as_u64() >= Some(1),
        "{body}"
    );
    assert_eq!(waiting.await.unwrap(), 201, "the queued order is served");
    let (s, body) = app.order("S002", &[("EGG", "3")]).await;
    assert_eq!(s, 201, "{body}");
    let m = metrics(&app).await;
    assert!(
        m.contains("gateway_component_up{component=\"order_writer\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("gateway_component_restarts_total{component=\"order_writer\"} 0"),
        "{m}"
    );
    assert!(log_text().contains("background task restarting"));
    // What was written: the first order, the waiting one and the last; the
    // one the writer died holding was never committed.
    assert_eq!(app.queue("S001").await.len(), 2);
    assert_eq!(app.item("S001", "EGG").await["reserved"], "3");
    app.stop().await;
}

async fn a_panic_inside_a_batch_fails_no_order_and_keeps_the_writer_up(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let faults = faults(&app);
    faults.panic_in_batch.store(true, Ordering::SeqCst);
    // Orders placed together: whichever batch panics, each of its orders is
    // written again on its own.
    let placed =
        futures::future::join_all((0..8).map(|_| app.order("S001", &[("EGG", "1")]))).await;
    for (s, body) in &placed {
        assert_eq!(*s, 201, "{body}");
    }
    assert!(!faults.panic_in_batch.load(Ordering::SeqCst), "it fired");
    assert!(
        log_text().contains("order batch panicked"),
        "{}",
        log_text()
    );
    let (s, body) = readyz(&app, "/readyz").await;
    assert_eq!(s, 200, "the writer never stopped: {body}");
    assert_eq!(body["components"]["order_writer"]["restarts"], 0);
    let (s, _) = app.order("S001", &[("EGG", "1")]).await;
    assert_eq!(s, 201);
    assert_eq!(app.queue("S001").await.len(), 9);
    app.stop().await;
}
