//! What this process measures as it works, through the `metrics` crate: a
//! Prometheus recorder installed once per process, rendered under the
//! domain gauges of [`crate::metrics`] at `GET /metrics`. Counters and
//! histograms are updated where things happen (a request served, a SOAP
//! operation, an order batch written, an outbound call), so a scrape reads
//! memory, not tables.
//!
//! Names: `gateway_http_requests_total` / `gateway_http_request_duration_seconds`
//! {method, route, status} (route is the router's pattern, `unmatched` for
//! none); `gateway_soap_requests_total` / `…_duration_seconds` {operation,
//! fault}; `gateway_sqlite_batch_orders` (orders per group commit) and
//! `gateway_sqlite_writer_queue_depth`; `gateway_order_batches_failed_total`
//! (group commits that failed and went to the direct path); `gateway_outbound_request_duration_seconds`
//! {target, outcome}; `gateway_db_pool_connections` {state}.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use ::metrics::{Counter, Histogram};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the histograms' samples are drained into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. When another recorder
/// already is the global one (an embedding program's), this handle renders
/// nothing of its own.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            // Latency from 1 ms to 10 s; orders per group commit.
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("gateway_sqlite_batch_orders".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // The recorder keeps every histogram sample until it is drained into
        // its buckets, which a scrape does: without a scraper (or with a slow
        // one) the samples of every request would pile up. The exporter's own
        // upkeep task comes only with its HTTP listener, so drain them here.
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms drain at scrape only");
        }
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows domain gauges only"
            );
        }
        handle
    })
}

/// The request metrics' handles by method, status and route: a request
/// finds its two handles without building label strings or looking the
/// recorder's registry up (that was ≈ 10k instructions per request).
type HttpHandles = HashMap<(&'static str, u16), HashMap<String, (Counter, Histogram)>>;

static HTTP: LazyLock<Mutex<HttpHandles>> = LazyLock::new(Mutex::default);

/// The method as a label: the standard ones by name, anything else
/// `other`, so made-up methods cannot grow the label set without bound.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// One HTTP request answered: `route` is the router's pattern
/// (`unmatched` when none), never the path itself.
pub fn http(method: &str, route: String, status: u16, started: Instant) {
    let elapsed = started.elapsed();
    let method = method_label(method);
    // The recorder first, so no handle is made before it exists.
    handle();
    let mut all = HTTP.lock().unwrap_or_else(PoisonError::into_inner);
    let by_route = all.entry((method, status)).or_default();
    let (count, time) = match by_route.get(route.as_str()) {
        Some(h) => h,
        None => {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.clone()),
                ("status", status.to_string()),
            ];
            let made = (
                ::metrics::counter!("gateway_http_requests_total", &labels),
                ::metrics::histogram!("gateway_http_request_duration_seconds", &labels),
            );
            by_route.entry(route).or_insert(made)
        }
    };
    count.increment(1);
    time.record(elapsed);
}

/// One SOAP operation served: `fault` is the error code's wire string, empty
/// when it succeeded.
pub fn soap(operation: &str, fault: &str, started: Instant) {
    let labels = [
        ("operation", operation.to_owned()),
        ("fault", fault.to_owned()),
    ];
    ::metrics::counter!("gateway_soap_requests_total", &labels).increment(1);
    ::metrics::histogram!("gateway_soap_request_duration_seconds", &labels)
        .record(started.elapsed());
}

/// One call to a payment provider or a platform: `outcome` is `ok` or why not.
pub fn outbound(target: &'static str, outcome: &'static str, started: Instant) {
    ::metrics::histogram!(
        "gateway_outbound_request_duration_seconds",
        "target" => target,
        "outcome" => outcome,
    )
    .record(started.elapsed());
}

/// One SQLite group commit of `orders` orders, `queued` left waiting.
pub fn batch(orders: usize, queued: usize) {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    ::metrics::histogram!("gateway_sqlite_batch_orders").record(n(orders));
    ::metrics::gauge!("gateway_sqlite_writer_queue_depth").set(n(queued));
}

/// An order batch that failed and went to the direct path, order by order.
pub fn batch_failed() {
    ::metrics::counter!("gateway_order_batches_failed_total").increment(1);
}

/// The pool's connections now, set at scrape.
pub fn pool(size: u32, idle: usize) {
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    ::metrics::gauge!("gateway_db_pool_connections", "state" => "idle").set(idle);
    ::metrics::gauge!("gateway_db_pool_connections", "state" => "busy")
        .set(size.saturating_sub(idle));
}

/// A new order committed, by channel (`terminal`, `official`, `third_party`).
pub fn order_created(channel: &'static str) {
    ::metrics::counter!("gateway_orders_created_total", "channel" => channel).increment(1);
}

/// An order moved to `to` (every status change passes `orders::act`).
pub fn status_changed(to: &'static str) {
    ::metrics::counter!("gateway_order_status_changes_total", "to" => to).increment(1);
}
