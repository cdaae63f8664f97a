//! The outbox: calls to make to a delivery platform, written in the same
//! transaction as the change they report (an order action, a stock or
//! availability change), then delivered by the dispatcher.
//!
//! Delivery is at least once, strictly in id order per (platform, order key):
//! a row is only tried when every earlier row of its key is delivered, so a
//! platform never hears "ready" before "confirm". A failed attempt is retried
//! with exponential backoff and jitter; after too many attempts or too long
//! the row is `failed` and waits for a manual retry (and blocks its key's later
//! rows, which keep their order). A row being sent is `delivering` under a
//! lease: a crash leaves it there, and it goes back to `pending` when the
//! lease runs out (at once on start with SQLite, whose file one process owns).
//! When the platform cancels an order, the calls about it still owed to that
//! platform are moot: pending and failed ones are dropped with the cancel, and
//! one on its way that the platform then refuses is dropped, not `failed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use proto::order::{CatalogItem, Channel, Order, OrderStatus, StoreId};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::actor::Actor;
use crate::clock;
use crate::db::{Backend, Db};
use crate::error::{Code, Error, Result};
use crate::events::Hub;
use crate::platforms::{self, OrderAction};

// The platform's side of a call, where the outbox's callers find it.
pub use crate::platforms::{Delivery, ItemSync, Params, Sender};

/// One call to enqueue.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub platform: String,
    /// Calls with the same key are delivered in the order they were written:
    /// the platform's order id, or `sku:<platform store>:<platform sku>`.
    pub order_key: String,
    pub path: String,
    pub params: Params,
    pub store_id: Option<String>,
    pub order_id: Option<String>,
    /// Not before this time (µs); `None`: at once.
    pub not_before: Option<i64>,
}

/// Writes calls in the caller's transaction.
pub async fn enqueue(conn: &mut AnyConnection, calls: &[NewCall], now: i64) -> Result<()> {
    for c in calls {
        let params = serde_json::to_string(&c.params).map_err(Error::internal)?;
        sqlx::query(
            "INSERT INTO outbox (platform, order_key, path, params, state, attempts, next_at,
                                 store_id, order_id, created_at)
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $8)",
        )
        .bind(c.platform.clone())
        .bind(c.order_key.clone())
        .bind(c.path.clone())
        .bind(params)
        .bind(c.not_before.unwrap_or(now))
        .bind(c.store_id.clone())
        .bind(c.order_id.clone())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Hook of `orders::act`: the call that tells the platform about a store's
/// action on one of its orders, in the action's transaction. Changes the
/// platform itself asked for (actor `platform:…`) are not echoed back.
pub async fn enqueue_for_action(
    conn: &mut AnyConnection,
    before: &Order,
    to: OrderStatus,
    reason: Option<&str>,
    actor: &str,
    now: i64,
) -> Result<()> {
    let by_platform = Actor::parse(actor).is_some_and(|a| a.is_platform());
    if before.channel != Channel::ThirdParty || by_platform {
        return Ok(());
    }
    let (Some(platform), Some(platform_order)) = (&before.platform, &before.channel_order_id)
    else {
        return Ok(());
    };
    let action = OrderAction::Status { to, reason };
    let Some(call) = platforms::find(platform).and_then(|p| p.order_call(platform_order, &action))
    else {
        return Ok(());
    };
    let call = NewCall {
        platform: platform.clone(),
        order_key: platform_order.clone(),
        path: call.path,
        params: call.params,
        store_id: Some(before.store_id.to_string()),
        order_id: Some(before.id.clone()),
        not_before: None,
    };
    enqueue(conn, &[call], now).await
}

/// Hook of `catalog::put_item`: stock counts and sell status of a SKU, for
/// every platform the store is registered with, in the change's transaction.
pub async fn enqueue_for_item(
    conn: &mut AnyConnection,
    store: &StoreId,
    item: &CatalogItem,
    what: ItemSync,
    now: i64,
) -> Result<()> {
    if !what.stock && !what.status {
        return Ok(());
    }
    let mut calls = Vec::new();
    for (platform, code) in platforms::item_codes(conn, store, &item.sku).await? {
        let Some(p) = platforms::find(platform) else {
            continue;
        };
        let key = format!("sku:{}:{}", code.platform_store, code.platform_sku);
        calls.extend(
            p.item_calls(&code, item, what, now)
                .into_iter()
                .map(|c| NewCall {
                    platform: platform.to_owned(),
                    order_key: match c.at_snooze_end {
                        Some(_) => format!("{key}:snooze_end"),
                        None => key.clone(),
                    },
                    path: c.call.path,
                    params: c.call.params,
                    store_id: Some(store.to_string()),
                    order_id: None,
                    not_before: c.at_snooze_end,
                }),
        );
    }
    if calls.is_empty() {
        return Ok(());
    }
    // A later availability change supersedes a scheduled end of snooze.
    for c in calls.iter().filter(|_| what.status) {
        sqlx::query(
            "DELETE FROM outbox WHERE platform = $1 AND order_key = $2 AND state = 'pending' AND next_at > $3",
        )
        .bind(c.platform.clone())
        .bind(format!("{}:snooze_end", c.order_key.trim_end_matches(":snooze_end")))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    enqueue(conn, &calls, now).await
}

// ------------------------------------------------------------ the dispatcher

/// Dispatcher settings (`[outbox]`, `GATEWAY_OUTBOX_*`).
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// First retry delay; doubles each attempt.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before a row is `failed`.
    pub max_attempts: i64,
    /// Age after which a row still not delivered is `failed`.
    pub max_age: Duration,
    /// How often the dispatcher looks for due rows without being woken.
    pub poll: Duration,
    /// How long one call may take (also sets the `delivering` lease).
    pub request_timeout: Duration,
    /// Calls in flight at once (each to a different key).
    pub concurrency: usize,
    /// Rows one round looks at.
    pub batch: i64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            backoff_base: Duration::from_millis(1000),
            backoff_max: Duration::from_secs(300),
            max_attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
            poll: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(10),
            concurrency: 16,
            batch: 200,
        }
    }
}

/// `[outbox]` of the configuration, already merged from the file, the
/// environment and flags (see [`crate::config`]); every key optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxFile {
    pub backoff_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub max_attempts: Option<u64>,
    pub max_age_s: Option<u64>,
    pub poll_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub concurrency: Option<u64>,
}

fn positive(name: &str, value: Option<u64>) -> anyhow::Result<Option<u64>> {
    match value {
        Some(0) => anyhow::bail!("{name} must be a positive whole number"),
        v => Ok(v),
    }
}

impl OutboxConfig {
    /// Defaults, then the merged `[outbox]`: `backoff_ms` (1000),
    /// `backoff_max_ms` (300000), `max_attempts` (20), `max_age_s` (86400),
    /// `poll_ms` (1000), `timeout_ms` (10000), `concurrency` (16); environment
    /// `GATEWAY_OUTBOX_BACKOFF_MS`, `…_BACKOFF_MAX_MS`, `…_MAX_ATTEMPTS`,
    /// `…_MAX_AGE_S`, `…_POLL_MS`, `…_TIMEOUT_MS`, `…_CONCURRENCY`.
    pub fn load(file: Option<&OutboxFile>) -> anyhow::Result<Self> {
        let f = file.cloned().unwrap_or_default();
        let d = OutboxConfig::default();
        let ms = |name: &str, v: Option<u64>, default: Duration| -> anyhow::Result<Duration> {
            Ok(positive(name, v)?
                .map(Duration::from_millis)
                .unwrap_or(default))
        };
        Ok(OutboxConfig {
            backoff_base: ms(
                "backoff_ms (GATEWAY_OUTBOX_BACKOFF_MS)",
                f.backoff_ms,
                d.backoff_base,
            )?,
            backoff_max: ms(
                "backoff_max_ms (GATEWAY_OUTBOX_BACKOFF_MAX_MS)",
                f.backoff_max_ms,
                d.backoff_max,
            )?,
            max_attempts: positive("max_attempts (GATEWAY_OUTBOX_MAX_ATTEMPTS)", f.max_attempts)?
                .map(|n| n.min(1_000_000) as i64)
                .unwrap_or(d.max_attempts),
            max_age: positive("max_age_s (GATEWAY_OUTBOX_MAX_AGE_S)", f.max_age_s)?
                .map(Duration::from_secs)
                .unwrap_or(d.max_age),
            poll: ms("poll_ms (GATEWAY_OUTBOX_POLL_MS)", f.poll_ms, d.poll)?,
            request_timeout: ms(
                "timeout_ms (GATEWAY_OUTBOX_TIMEOUT_MS)",
                f.timeout_ms,
                d.request_timeout,
            )?,
            concurrency: positive("concurrency (GATEWAY_OUTBOX_CONCURRENCY)", f.concurrency)?
                .map(|n| n.min(1024) as usize)
                .unwrap_or(d.concurrency),
            batch: d.batch,
        })
    }

    /// The delay before attempt `attempts + 1`: base × 2^(attempts-1), capped,
    /// then a random point in its upper half (jitter, so retries of many rows
    /// do not arrive together).
    pub fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 31) as u32 - 1;
        let full = self
            .backoff_base
            .saturating_mul(1u32 << shift)
            .min(self.backoff_max);
        let ms = full.as_millis() as u64;
        if ms < 2 {
            return full;
        }
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }

    fn lease(&self) -> Duration {
        self.request_timeout + Duration::from_secs(2)
    }
}

/// Counters of this process (the database has the totals by state).
#[derive(Debug, Default)]
pub struct Stats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    /// Calls refused for an order the platform had cancelled meanwhile,
    /// dropped.
    pub moot: AtomicU64,
    pub unconfirmed_alerts: AtomicU64,
    /// Passes finished by the dispatcher and by the alert loop, so a test can
    /// wait for "it has had its chance" before asserting that nothing happened.
    pub dispatcher_rounds: AtomicU64,
    pub alert_rounds: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "delivered": self.delivered.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "moot": self.moot.load(Ordering::Relaxed),
            "unconfirmed_alerts": self.unconfirmed_alerts.load(Ordering::Relaxed),
            "dispatcher_rounds": self.dispatcher_rounds.load(Ordering::Relaxed),
            "alert_rounds": self.alert_rounds.load(Ordering::Relaxed),
        })
    }
}

struct Due {
    id: i64,
    platform: String,
    path: String,
    params: String,
    attempts: i64,
    created_at: i64,
    order_id: Option<String>,
}

/// Delivers the outbox of one process.
pub struct Dispatcher {
    db: Db,
    config: OutboxConfig,
    senders: HashMap<String, Arc<dyn Sender>>,
    pub stats: Arc<Stats>,
    /// SQLite: the crash leftovers were given back (once per process).
    released: std::sync::atomic::AtomicBool,
}

impl Dispatcher {
    pub fn new(
        db: Db,
        config: OutboxConfig,
        senders: HashMap<String, Arc<dyn Sender>>,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            db,
            config,
            senders,
            stats,
            released: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One scheduled run: on SQLite first gives back what a crash left
    /// `delivering` (one process per file), then rounds until one finds no
    /// work. The scheduler runs it on its timer and whenever a store's feed
    /// moves (an action may have written a row).
    pub async fn drain(&self) -> Result<usize> {
        if self.db.backend == Backend::Sqlite
            && !self
                .released
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.release_all().await?;
        }
        let mut calls = 0;
        loop {
            let n = self.round().await;
            self.stats.dispatcher_rounds.fetch_add(1, Ordering::Relaxed);
            match n? {
                0 => return Ok(calls),
                n => calls += n,
            }
        }
    }

    /// The scheduler's dispatcher job: [`Dispatcher::drain`] every poll
    /// interval and on every feed change in this process.
    pub fn job(self: &Arc<Self>, hub: &Hub) -> crate::jobs::Job {
        let me = Arc::clone(self);
        crate::jobs::Job::new(
            crate::jobs::OUTBOX_DISPATCHER,
            self.config.poll,
            move || {
                let me = Arc::clone(&me);
                async move {
                    me.drain().await.map_err(|e| e.into_anyhow())?;
                    Ok(crate::jobs::Ran::Done)
                }
            },
        )
        .woken_by(hub)
    }

    async fn release_all(&self) -> Result<()> {
        let mut tx = self.db.write().await?;
        sqlx::query("UPDATE outbox SET state = 'pending', next_at = $1 WHERE state = 'delivering'")
            .bind(self.db.now_micros())
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One pass: returns expired leases, claims the due head of each key,
    /// sends them concurrently, records the outcomes. Returns how many calls
    /// were made.
    pub async fn round(&self) -> Result<usize> {
        let now = self.db.now_micros();
        let due = self.claim(now).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let outcomes: Vec<(Due, Delivery)> = stream::iter(due)
            .map(|d| async move {
                let outcome = self.send(&d).await;
                (d, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        self.record(outcomes).await?;
        Ok(n)
    }

    /// Looks (reading only, so a wake-up that finds nothing costs no write
    /// lock) for due rows whose earlier rows are all delivered, then claims
    /// them. Reading first is safe: rows only get larger ids, and an earlier
    /// row that blocks one stays blocking until it is delivered.
    async fn claim(&self, now: i64) -> Result<Vec<Due>> {
        let expired =
            sqlx::query("SELECT 1 FROM outbox WHERE state = 'delivering' AND next_at < $1 LIMIT 1")
                .bind(now)
                .fetch_optional(&self.db.pool)
                .await?;
        if expired.is_some() {
            let mut tx = self.db.write().await?;
            sqlx::query(
                "UPDATE outbox SET state = 'pending' WHERE state = 'delivering' AND next_at < $1",
            )
            .bind(now)
            .execute(&mut **tx)
            .await?;
            tx.commit().await?;
        }
        let rows = sqlx::query(
            "SELECT o.id, o.platform, o.path, o.params, o.attempts, o.created_at, o.order_id FROM outbox o
             WHERE o.state = 'pending' AND o.next_at <= $1
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.platform = o.platform AND p.order_key = o.order_key
                                 AND p.id < o.id AND p.state <> 'delivered')
             ORDER BY o.id LIMIT $2",
        )
        .bind(now)
        .bind(self.config.batch)
        .fetch_all(&self.db.pool)
        .await?;
        let mut due: Vec<Due> = rows
            .iter()
            .map(|r| Due {
                id: r.get("id"),
                platform: r.get("platform"),
                path: r.get("path"),
                params: r.get("params"),
                attempts: r.get("attempts"),
                created_at: r.get("created_at"),
                order_id: r.get("order_id"),
            })
            .filter(|d| self.senders.contains_key(&d.platform))
            .collect();
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.db.write().await?;
        let lease_until = now + micros(self.config.lease());
        let placeholders = (0..due.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE outbox SET state = 'delivering', attempts = attempts + 1, next_at = $1
             WHERE state = 'pending' AND id IN ({placeholders}) RETURNING id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(lease_until);
        for d in &due {
            q = q.bind(d.id);
        }
        let claimed: std::collections::HashSet<i64> = q
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        tx.commit().await?;
        // Another instance may have taken some meanwhile (PostgreSQL).
        due.retain(|d| claimed.contains(&d.id));
        for d in &mut due {
            d.attempts += 1;
        }
        Ok(due)
    }

    async fn send(&self, d: &Due) -> Delivery {
        let Some(sender) = self.senders.get(&d.platform) else {
            return Delivery::Retry(format!("no sender for {}", d.platform));
        };
        let params: Params = match serde_json::from_str(&d.params) {
            Ok(p) => p,
            Err(e) => return Delivery::Refused(format!("stored parameters unreadable: {e}")),
        };
        match tokio::time::timeout(self.config.request_timeout, sender.send(&d.path, &params)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Delivery::Retry(format!(
                "no answer within {} ms",
                self.config.request_timeout.as_millis()
            )),
        }
    }

    async fn record(&self, outcomes: Vec<(Due, Delivery)>) -> Result<()> {
        let now = self.db.now_micros();
        let max_age = micros(self.config.max_age);
        let mut delivered = Vec::new();
        let mut tx = self.db.write().await?;
        for (d, outcome) in outcomes {
            match outcome {
                Delivery::Delivered => delivered.push(d.id),
                Delivery::Retry(why)
                    if d.attempts < self.config.max_attempts && now - d.created_at < max_age =>
                {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(outbox = d.id, path = %d.path, attempts = d.attempts, error = %why, "platform call will be retried");
                    let next = now + micros(self.config.backoff(d.attempts));
                    set_state(&mut tx, d.id, "pending", next, Some(&why)).await?;
                }
                Delivery::Refused(why) if cancelled_by(&mut tx, &d).await? => {
                    // Refused while on its way, for an order the platform
                    // cancelled meanwhile: moot, not a failure.
                    self.stats.moot.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(outbox = d.id, platform = %d.platform, path = %d.path, error = %why, "platform call refused for an order it cancelled: dropped as moot");
                    sqlx::query("DELETE FROM outbox WHERE id = $1 AND state = 'delivering'")
                        .bind(d.id)
                        .execute(&mut **tx)
                        .await?;
                }
                Delivery::Retry(why) | Delivery::Refused(why) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(outbox = d.id, platform = %d.platform, path = %d.path, attempts = d.attempts, error = %why, "platform call failed for good");
                    set_state(&mut tx, d.id, "failed", now, Some(&why)).await?;
                }
            }
        }
        if !delivered.is_empty() {
            let placeholders = (0..delivered.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE outbox SET state = 'delivered', delivered_at = $1, last_error = NULL
                 WHERE state = 'delivering' AND id IN ({placeholders})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in &delivered {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await?;
            self.stats
                .delivered
                .fetch_add(delivered.len() as u64, Ordering::Relaxed);
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Whether `d`'s platform cancelled its order (a cancel it pushed was
/// applied here).
async fn cancelled_by(conn: &mut AnyConnection, d: &Due) -> Result<bool> {
    let Some(order_id) = d.order_id.as_deref() else {
        return Ok(false);
    };
    Ok(sqlx::query(
        "SELECT 1 FROM channel_inbox
         WHERE platform = $1 AND order_id = $2 AND kind = 'cancel' AND outcome = 'applied'
         LIMIT 1",
    )
    .bind(d.platform.clone())
    .bind(order_id.to_owned())
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// Drops the calls about `order_id` still owed to `platform` (pending or
/// failed; one being sent finishes, and is dropped if refused): the
/// platform cancelled the order. Returns how many.
pub async fn drop_moot(conn: &mut AnyConnection, platform: &str, order_id: &str) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM outbox WHERE platform = $1 AND order_id = $2 AND state IN ('pending', 'failed')",
    )
    .bind(platform.to_owned())
    .bind(order_id.to_owned())
    .execute(conn)
    .await?
    .rows_affected())
}

async fn set_state(
    conn: &mut AnyConnection,
    id: i64,
    state: &str,
    next_at: i64,
    error: Option<&str>,
) -> Result<()> {
    let error: Option<String> = error.map(|e| e.chars().take(500).collect());
    sqlx::query(
        "UPDATE outbox SET state = $1, next_at = $2, last_error = $3 WHERE id = $4 AND state = 'delivering'",
    )
    .bind(state.to_owned())
    .bind(next_at)
    .bind(error)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

// ------------------------------------------------------------------ reading

/// One outbox row as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub platform: String,
    pub order_key: String,
    pub path: String,
    pub params: serde_json::Value,
    pub state: String,
    pub attempts: i64,
    pub next_at: String,
    pub last_error: Option<String>,
    pub store_id: Option<String>,
    pub order_id: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

const ENTRY_COLS: &str =
    "id, platform, order_key, path, params, state, attempts, next_at, last_error,
                          store_id, order_id, created_at, delivered_at";

fn entry(r: &sqlx::any::AnyRow) -> Entry {
    let params: String = r.get("params");
    Entry {
        id: r.get("id"),
        platform: r.get("platform"),
        order_key: r.get("order_key"),
        path: r.get("path"),
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::String(params)),
        state: r.get("state"),
        attempts: r.get("attempts"),
        next_at: clock::rfc3339(r.get("next_at")),
        last_error: r.get("last_error"),
        store_id: r.get("store_id"),
        order_id: r.get("order_id"),
        created_at: clock::rfc3339(r.get("created_at")),
        delivered_at: r.get::<Option<i64>, _>("delivered_at").map(clock::rfc3339),
    }
}

/// Rows in one state (or all), oldest first, after id `after`.
pub async fn list(db: &Db, state: Option<&str>, after: i64, limit: i64) -> Result<Vec<Entry>> {
    let sql = format!(
        "SELECT {ENTRY_COLS} FROM outbox WHERE ($1 = '' OR state = $1) AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(state.unwrap_or_default().to_owned())
        .bind(after)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows.iter().map(entry).collect())
}

/// Puts a failed row back in the queue, due now, with a fresh attempt count
/// and age (`created_at` becomes the time it was queued again).
pub async fn retry(db: &Db, id: i64) -> Result<Entry> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let sql = format!("SELECT {ENTRY_COLS} FROM outbox WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::new(Code::OutboxEntryNotFound, format!("no outbox entry {id}")))?;
    let state: String = row.get("state");
    if state != "failed" {
        return Err(Error::new(
            Code::OutboxEntryNotFailed,
            format!("outbox entry {id} is {state}; only failed entries are retried"),
        ));
    }
    sqlx::query(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_at = $1, created_at = $1
         WHERE id = $2 AND state = 'failed'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    tx.commit().await?;
    Ok(entry(&row))
}

/// Rows per state, from the database.
pub async fn counts(db: &Db) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        .fetch_all(&db.pool)
        .await?;
    let mut out: BTreeMap<String, i64> = ["pending", "delivering", "delivered", "failed"]
        .into_iter()
        .map(|s| (s.to_owned(), 0))
        .collect();
    for r in rows {
        out.insert(r.get("state"), r.get("n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_the_upper_half() {
        let c = OutboxConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..OutboxConfig::default()
        };
        for _ in 0..50 {
            let b1 = c.backoff(1).as_millis();
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = c.backoff(3).as_millis();
            assert!((200..=400).contains(&b3), "{b3}");
            let b20 = c.backoff(20).as_millis();
            assert!((500..=1000).contains(&b20), "{b20}");
            let huge = c.backoff(i64::MAX).as_millis();
            assert!((500..=1000).contains(&huge), "{huge}");
        }
    }
}
