//! The metrics in the Prometheus text format (version 0.0.4), for the
//! engineers who run the gateway; served as `GET /metrics` by
//! `http/metrics.rs`. Gauges are read from the database at scrape time, so
//! every instance reports the same totals; the `*_process_*` counters are
//! this process's own.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use sqlx::Row;

use crate::db::Db;
use crate::error::Result;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What this process counts beside the database.
pub struct Process<'a> {
    /// The outbox and alert counters, when channels are on.
    pub outbox: Option<&'a crate::outbox::Stats>,
    pub retention: &'a crate::retention::Stats,
    /// Requests refused for a missing, malformed, unknown or revoked key.
    pub auth_failures: u64,
}

/// One metric family: its help, type and samples (`labels`, value).
fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(String, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// `SELECT key, COUNT(*)`-shaped rows as labelled samples, with every
/// expected label present (0 when absent).
async fn by_label(
    db: &Db,
    sql: &'static str,
    label: &str,
    expected: &[&str],
) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(sql).fetch_all(&db.pool).await?;
    let mut out: Vec<(String, i64)> = expected
        .iter()
        .map(|k| (format!("{{{label}=\"{k}\"}}"), 0))
        .collect();
    for r in rows {
        let key: String = r.get(0);
        let n: i64 = r.get(1);
        let labels = format!("{{{label}=\"{key}\"}}");
        match out.iter_mut().find(|(l, _)| *l == labels) {
            Some(s) => s.1 = n,
            None => out.push((labels, n)),
        }
    }
    Ok(out)
}

/// Every metric, as the scrape reads it.
pub async fn render(db: &Db, process: &Process<'_>) -> Result<String> {
    let mut out = String::new();

    // Open orders only, from the partial index `orders_open`: a scrape
    // costs what is open, not a store's whole history. Orders reaching a
    // final state are counted as they happen (`gateway_order_status_changes_total`).
    let orders = by_label(
        db,
        "SELECT status, COUNT(*) FROM orders \
         WHERE status IN ('created', 'accepted', 'ready') GROUP BY status",
        "status",
        &["created", "accepted", "ready"],
    )
    .await?;
    family(
        &mut out,
        "gateway_orders",
        "Open orders by status (created, accepted, ready); final ones are counted as they happen by gateway_order_status_changes_total.",
        "gauge",
        &orders,
    );

    let charges = by_label(
        db,
        "SELECT state, COUNT(*) FROM charges WHERE state IN ('created', 'pending') GROUP BY state",
        "state",
        &["created", "pending"],
    )
    .await?;
    family(
        &mut out,
        "gateway_payment_charges",
        "Payment-code charges not final yet, by state; pending ones are being driven or await the sweeper.",
        "gauge",
        &charges,
    );

    let outbox = crate::outbox::counts(db)
        .await?
        .into_iter()
        .map(|(state, n)| (format!("{{state=\"{state}\"}}"), n))
        .collect::<Vec<_>>();
    family(
        &mut out,
        "gateway_outbox_rows",
        "Calls to delivery platforms by state; failed ones wait for a manual retry.",
        "gauge",
        &outbox,
    );

    let unconfirmed: i64 = sqlx::query(
        // The open-status term is `orders_open`'s own, so the count starts
        // from that index rather than every platform order.
        "SELECT COUNT(*) FROM orders o JOIN third_party_orders t ON t.order_id = o.id
         WHERE o.status IN ('created', 'accepted', 'ready') AND o.status = 'created'",
    )
    .fetch_one(&db.pool)
    .await?
    .get(0);
    family(
        &mut out,
        "gateway_third_party_unconfirmed_orders",
        "Delivery-platform orders the store has not accepted or rejected yet.",
        "gauge",
        &[(String::new(), unconfirmed)],
    );
    let alerted: i64 = sqlx::query("SELECT COUNT(*) FROM third_party_orders WHERE alerted_at > 0")
        .fetch_one(&db.pool)
        .await?
        .get(0);
    family(
        &mut out,
        "gateway_unconfirmed_alerts_total",
        "Delivery-platform orders that stayed unconfirmed past the alert limit.",
        "counter",
        &[(String::new(), alerted)],
    );

    if let Some(s) = process.outbox {
        for (name, help, v) in [
            (
                "gateway_outbox_process_delivered_total",
                "Platform calls this process delivered.",
                &s.delivered,
            ),
            (
                "gateway_outbox_process_retried_total",
                "Platform calls this process will try again.",
                &s.retried,
            ),
            (
                "gateway_outbox_process_failed_total",
                "Platform calls this process gave up on.",
                &s.failed,
            ),
            (
                "gateway_outbox_dispatcher_rounds_total",
                "Passes the outbox dispatcher of this process finished.",
                &s.dispatcher_rounds,
            ),
            (
                "gateway_alert_rounds_total",
                "Passes the unconfirmed-order alert check of this process finished.",
                &s.alert_rounds,
            ),
        ] {
            let n = i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
            family(&mut out, name, help, "counter", &[(String::new(), n)]);
        }
    }

    retention(&mut out, process.retention);

    family(
        &mut out,
        "gateway_auth_failures_total",
        "Requests this process refused for a missing, malformed, unknown or revoked key.",
        "counter",
        &[(
            String::new(),
            i64::try_from(process.auth_failures).unwrap_or(i64::MAX),
        )],
    );

    let components = db.health().snapshot();
    let label = |name: &str| format!("{{component=\"{name}\"}}");
    family(
        &mut out,
        "gateway_component_up",
        "Supervised background tasks: 1 running, 0 down and waiting to restart.",
        "gauge",
        &components
            .iter()
            .map(|(name, c)| (label(name), i64::from(c.up)))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "gateway_component_restarts_total",
        "Times a supervised background task was restarted after it died.",
        "counter",
        &components
            .iter()
            .map(|(name, c)| (label(name), i64::try_from(c.restarts).unwrap_or(i64::MAX)))
            .collect::<Vec<_>>(),
    );

    Ok(out)
}

/// What this process's retention runs pruned, and when it last finished.
fn retention(out: &mut String, r: &crate::retention::Stats) {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let pruned: Vec<(String, i64)> = crate::retention::TABLES
        .iter()
        .map(|t| (format!("{{table=\"{t}\"}}"), n(r.pruned(t))))
        .collect();
    family(
        out,
        "gateway_retention_pruned_rows_total",
        "Old rows this process deleted, by table.",
        "counter",
        &pruned,
    );
    family(
        out,
        "gateway_retention_held_expired_total",
        "Held platform events whose order never came, expired with a feed alert.",
        "counter",
        &[(String::new(), n(r.held_expired.load(Ordering::Relaxed)))],
    );
    family(
        out,
        "gateway_retention_runs_total",
        "Complete retention runs of this process.",
        "counter",
        &[(String::new(), n(r.runs.load(Ordering::Relaxed)))],
    );
    family(
        out,
        "gateway_retention_last_run_timestamp_seconds",
        "When this process last finished a retention run (0: not yet).",
        "gauge",
        &[(
            String::new(),
            r.last_run_at.load(Ordering::Relaxed) / 1_000_000,
        )],
    );
}
