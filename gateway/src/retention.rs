//! Retention: what the gateway keeps only for a while, pruned by the gateway
//! itself on a schedule so no table grows without bound.
//!
//! - idempotency keys with their stored answers: 7 days (a client retries
//!   within minutes; after a week the key is free again);
//! - delivered outbox rows and channel inbox rows: 30 days (orders are also
//!   de-duplicated by the platform order id, so an old replay still creates
//!   nothing);
//! - feed events (`order_events`): 30 days, always a prefix of each store's
//!   feed, so what is kept stays in number order without gaps. The list by
//!   cursor reads the orders themselves and is never affected; a live stream
//!   resumed from a cursor older than the oldest kept event answers
//!   `410 cursor_expired` (mid-stream: an SSE event `cursor_expired`, then
//!   the stream ends): reload the queue and resume from its cursor;
//! - held platform events that never found their order: expire after 7 days
//!   with a `channel.held_expired` event on the feed of every store the
//!   platform is registered with; expired or applied held rows are deleted
//!   after the same age again.
//!
//! Each age is configurable (`[retention]` in the TOML file, or
//! `GATEWAY_RETENTION_*`), 0 keeps that kind for ever. Deletes go in batches
//! on indexed columns, each batch its own short write transaction, yielding
//! between batches so orders are never held up for long.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use proto::order::StoreId;
use serde::Deserialize;
use serde_json::json;
use sqlx::Row;

use crate::clock::rfc3339;
use crate::db::{Backend, Db};
use crate::error::{Error, Result};
use crate::events::{self, Hub};

const DAY: Duration = Duration::from_secs(86_400);

/// The tables pruned, as `/metrics` labels them.
pub const TABLES: [&str; 5] = [
    "idempotency_keys",
    "outbox",
    "channel_inbox",
    "order_events",
    "channel_held",
];

/// `[retention]` of the TOML file; every key optional, ages in days.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    pub idempotency_days: Option<u64>,
    pub outbox_days: Option<u64>,
    pub inbox_days: Option<u64>,
    pub feed_days: Option<u64>,
    pub held_days: Option<u64>,
    /// Seconds between runs.
    pub interval_s: Option<u64>,
    /// Rows per delete.
    pub batch: Option<u64>,
}

/// Ages after which rows go; `None` keeps them for ever.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub idempotency: Option<Duration>,
    pub outbox: Option<Duration>,
    pub inbox: Option<Duration>,
    pub feed: Option<Duration>,
    pub held: Option<Duration>,
    pub every: Duration,
    /// The first run after start.
    pub first_after: Duration,
    pub batch: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            idempotency: Some(7 * DAY),
            outbox: Some(30 * DAY),
            inbox: Some(30 * DAY),
            feed: Some(30 * DAY),
            held: Some(7 * DAY),
            every: Duration::from_secs(3600),
            first_after: Duration::from_secs(30),
            batch: 1000,
        }
    }
}

/// A setting named `name` (its environment variable, for messages).
fn number(_name: &str, value: Option<u64>) -> anyhow::Result<Option<u64>> {
    Ok(value)
}

impl RetentionConfig {
    /// Defaults, then the merged `[retention]` (environment
    /// `GATEWAY_RETENTION_*`; see [`crate::config`]).
    pub fn load(file: Option<&RetentionFile>) -> anyhow::Result<Self> {
        let f = file.cloned().unwrap_or_default();
        let d = RetentionConfig::default();
        let days = |name: &str, file: Option<u64>, default: Option<Duration>| {
            Ok::<_, anyhow::Error>(match number(name, file)? {
                None => default,
                Some(0) => None,
                Some(n) => Some(
                    DAY.checked_mul(u32::try_from(n).context("too many days")?)
                        .with_context(|| format!("{name}: too many days"))?,
                ),
            })
        };
        let every = match number("GATEWAY_RETENTION_INTERVAL_S", f.interval_s)? {
            None => d.every,
            Some(0) => anyhow::bail!("GATEWAY_RETENTION_INTERVAL_S must be at least 1"),
            Some(s) => Duration::from_secs(s),
        };
        let batch = match number("GATEWAY_RETENTION_BATCH", f.batch)? {
            None => d.batch,
            Some(n @ 1..=100_000) => n as i64,
            Some(_) => anyhow::bail!("GATEWAY_RETENTION_BATCH must be 1-100000"),
        };
        Ok(RetentionConfig {
            idempotency: days(
                "GATEWAY_RETENTION_IDEMPOTENCY_DAYS",
                f.idempotency_days,
                d.idempotency,
            )?,
            outbox: days("GATEWAY_RETENTION_OUTBOX_DAYS", f.outbox_days, d.outbox)?,
            inbox: days("GATEWAY_RETENTION_INBOX_DAYS", f.inbox_days, d.inbox)?,
            feed: days("GATEWAY_RETENTION_FEED_DAYS", f.feed_days, d.feed)?,
            held: days("GATEWAY_RETENTION_HELD_DAYS", f.held_days, d.held)?,
            every,
            first_after: d.first_after,
            batch,
        })
    }
}

/// What this process pruned (shown in `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows deleted, by [`TABLES`] index.
    pub pruned: [AtomicU64; 5],
    /// Held events that expired (each with its feed alert).
    pub held_expired: AtomicU64,
    pub runs: AtomicU64,
    /// End of the last complete run, µs since the epoch (0: none yet).
    pub last_run_at: AtomicI64,
}

impl Stats {
    fn add(&self, table: &str, n: u64) {
        if let Some(i) = TABLES.iter().position(|t| *t == table) {
            self.pruned[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn pruned(&self, table: &str) -> u64 {
        TABLES
            .iter()
            .position(|t| *t == table)
            .map_or(0, |i| self.pruned[i].load(Ordering::Relaxed))
    }
}

/// The scheduler's retention job: [`run_once`] after `first_after`, then
/// every `every`.
pub fn job(db: Db, hub: Hub, config: RetentionConfig, stats: Arc<Stats>) -> crate::jobs::Job {
    let (every, first) = (config.every, config.first_after);
    crate::jobs::Job::new(crate::jobs::RETENTION, every, move || {
        let (db, hub, config, stats) =
            (db.clone(), hub.clone(), config.clone(), Arc::clone(&stats));
        async move {
            run_once(&db, &hub, &config, &stats, db.now_micros())
                .await
                .map_err(|e| e.into_anyhow())?;
            Ok(crate::jobs::Ran::Done)
        }
    })
    // A short interval (a test's) is not held back by the 30 s start delay.
    .first_after(first.min(every))
}

fn cutoff(now: i64, age: Option<Duration>) -> Option<i64> {
    age.map(|a| now.saturating_sub(i64::try_from(a.as_micros()).unwrap_or(i64::MAX)))
}

/// One pass over every table as of `now` (µs since the epoch; tests pass a
/// time in the future instead of waiting for rows to age).
pub async fn run_once(
    db: &Db,
    hub: &Hub,
    config: &RetentionConfig,
    stats: &Stats,
    now: i64,
) -> Result<()> {
    let batch = config.batch;
    if let Some(c) = cutoff(now, config.idempotency) {
        let n = batched(db, "idempotency_keys", "created_at < $1", c, batch).await?;
        stats.add("idempotency_keys", n);
    }
    if let Some(c) = cutoff(now, config.outbox) {
        let n = batched(
            db,
            "outbox",
            "state = 'delivered' AND delivered_at < $1",
            c,
            batch,
        )
        .await?;
        stats.add("outbox", n);
    }
    if let Some(c) = cutoff(now, config.inbox) {
        let n = batched(db, "channel_inbox", "received_at < $1", c, batch).await?;
        stats.add("channel_inbox", n);
    }
    if let Some(c) = cutoff(now, config.feed) {
        let n = prune_feed(db, c, batch).await?;
        stats.add("order_events", n);
    }
    if let Some(c) = cutoff(now, config.held) {
        let expired = expire_held(db, hub, c, now, batch).await?;
        stats.held_expired.fetch_add(expired, Ordering::Relaxed);
        let n = batched(
            db,
            "channel_held",
            "applied_at IS NOT NULL AND applied_at < $1",
            c,
            batch,
        )
        .await?;
        stats.add("channel_held", n);
    }
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats.last_run_at.store(db.now_micros(), Ordering::Relaxed);
    Ok(())
}

/// Deletes the rows of `table` matching `filter` (`$1` = the cutoff), at most
/// `batch` per transaction, until none is left; returns how many went.
async fn batched(db: &Db, table: &str, filter: &str, cutoff: i64, batch: i64) -> Result<u64> {
    // A physical row id keeps each batch a short indexed lookup on either
    // engine, whatever the table's key. PostgreSQL plans `ctid = ANY(ARRAY(…))`
    // as a TID scan.
    let sql = match db.backend {
        Backend::Sqlite => format!(
            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {filter} LIMIT $2)"
        ),
        Backend::Postgres => format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {filter} LIMIT $2))"
        ),
    };
    let mut total = 0;
    loop {
        let mut tx = db.write().await?;
        let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(cutoff)
            .bind(batch)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        total += n;
        if n < batch as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(table, rows = total, "retention: pruned");
    }
    Ok(total)
}

/// Deletes each store's oldest feed events up to (not past) the first one
/// newer than `cutoff`: what is kept is a contiguous run of numbers.
async fn prune_feed(db: &Db, cutoff: i64, batch: i64) -> Result<u64> {
    let stores: Vec<String> = sqlx::query("SELECT id FROM stores ORDER BY id")
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let mut total = 0;
    for store in stores {
        loop {
            // The primary key (store_id, seq) serves this read.
            let rows = sqlx::query(
                "SELECT seq, at FROM order_events WHERE store_id = $1 ORDER BY seq LIMIT $2",
            )
            .bind(store.clone())
            .bind(batch)
            .fetch_all(&db.pool)
            .await?;
            let old = rows
                .iter()
                .take_while(|r| r.get::<i64, _>("at") < cutoff)
                .count();
            let Some(last) = old.checked_sub(1).map(|i| rows[i].get::<i64, _>("seq")) else {
                break;
            };
            let mut tx = db.write().await?;
            let n = sqlx::query("DELETE FROM order_events WHERE store_id = $1 AND seq <= $2")
                .bind(store.clone())
                .bind(last)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            total += n;
            if old < rows.len() || rows.len() < batch as usize {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    if total > 0 {
        tracing::info!(rows = total, "retention: pruned feed events");
    }
    Ok(total)
}

/// Held events older than `cutoff` whose order never came: marked expired,
/// each with a `channel.held_expired` event on the feed of every store its
/// platform is registered with, in one transaction. Returns how many.
async fn expire_held(db: &Db, hub: &Hub, cutoff: i64, now: i64, batch: i64) -> Result<u64> {
    let mut expired = 0;
    loop {
        let rows = sqlx::query(
            "SELECT platform, platform_order_id, kind, push_ref, received_at FROM channel_held
             WHERE applied_at IS NULL AND received_at < $1 ORDER BY received_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(batch)
        .fetch_all(&db.pool)
        .await?;
        let n = rows.len();
        for r in rows {
            let platform: String = r.get("platform");
            let poid: String = r.get("platform_order_id");
            let kind: String = r.get("kind");
            let push_ref: String = r.get("push_ref");
            let received_at: i64 = r.get("received_at");
            let stores: Vec<String> = sqlx::query(
                "SELECT DISTINCT store_id FROM channel_stores WHERE platform = $1 ORDER BY store_id",
            )
            .bind(platform.clone())
            .fetch_all(&db.pool)
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
            let stores = stores
                .iter()
                .map(|s| StoreId::parse(s).map_err(Error::internal))
                .collect::<Result<Vec<_>>>()?;
            let mut tx = db.write().await?;
            // Store rows first (the lock order of every feed writer), in id order.
            let mut seqs = Vec::with_capacity(stores.len());
            for s in &stores {
                if let Some(seq) = events::next_seq(&mut tx, s).await? {
                    seqs.push((s, seq));
                }
            }
            let still = sqlx::query(
                "UPDATE channel_held SET applied_at = $1, outcome = 'expired: its order never came'
                 WHERE platform = $2 AND platform_order_id = $3 AND kind = $4 AND push_ref = $5
                   AND applied_at IS NULL",
            )
            .bind(now)
            .bind(platform.clone())
            .bind(poid.clone())
            .bind(kind.clone())
            .bind(push_ref.clone())
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1;
            if !still {
                // Applied meanwhile: nothing to say (the rollback frees the numbers).
                continue;
            }
            for (s, seq) in &seqs {
                let payload = json!({
                    "type": "channel.held_expired",
                    "seq": seq,
                    "platform": platform,
                    "platform_order_id": poid,
                    "event_kind": kind,
                    "received_at": rfc3339(received_at),
                    "held_s": (now - received_at) / 1_000_000,
                })
                .to_string();
                events::append(&mut tx, s, *seq, "", "channel.held_expired", now, &payload).await?;
            }
            tx.commit().await?;
            for (s, _) in &seqs {
                hub.notify(s);
            }
            tracing::warn!(%platform, platform_order = %poid, kind = %kind, stores = seqs.len(), "held platform event expired: its order never came");
            expired += 1;
        }
        if n < batch as usize {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_for_ever() {
        let f = RetentionFile {
            feed_days: Some(0),
            idempotency_days: Some(2),
            ..RetentionFile::default()
        };
        let c = RetentionConfig::load(Some(&f)).expect("config");
        assert_eq!(c.feed, None);
        assert_eq!(c.idempotency, Some(2 * DAY));
        assert_eq!(c.outbox, Some(30 * DAY));
        assert_eq!(
            cutoff(100 * 86_400_000_000, Some(DAY)),
            Some(99 * 86_400_000_000)
        );
    }
}
