//! Group commit for SQLite. SQLite has one writer at a time and every
//! statement is a round trip to its worker thread, so orders placed at the
//! same moment are written together: one task reads what the batch needs,
//! runs the one plan (`plan.rs`, the same as the direct path) for every order
//! in memory, and writes the rows it built for the good ones in one script
//! ending in one COMMIT. Each caller hears back only after that COMMIT.
//!
//! The reads and the write happen inside one `BEGIN IMMEDIATE` transaction
//! on the batcher's own connection, under the process's write gate, so no
//! other writer can change stock in between.
//!
//! A delivery platform's order (`sold.rs`: items mapped by channel ingest)
//! shares the batch: its duplicate rows are read with the batch's facts, it
//! is planned with the others (reserved even when short), and its channel's
//! rows go in the same script after the orders' own.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use proto::order::{Sku, StoreId};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::{Mutex, mpsc};

use super::group::{self, Dups, Faults, GroupCommit, Job, ORDER_WRITER};
use super::plan::{Facts, Head, PRODUCT_COLS, Planner, TABLES, Val};
use super::sold;
use super::{IdemKey, NewOrder};
use crate::clock;
use crate::db::{Db, SqliteFile};
use crate::error::{Error, Result};

/// Rough ceiling of bind parameters in one batch (SQLite's limit is 32766).
const MAX_PARAMS: usize = 16_000;

/// Starts SQLite's group commit.
pub struct Batcher;

impl Batcher {
    /// Starts the task on a connection of its own, supervised: it is started
    /// again on the same queue if it dies. The WAL checkpoint, on another
    /// connection, is returned as a job for the scheduler; it ends with the
    /// batcher.
    pub async fn start_jobs(
        file: &SqliteFile,
        db: Db,
    ) -> anyhow::Result<(GroupCommit, crate::jobs::Job)> {
        let (url, gate) = (file.url.as_str(), Arc::clone(&file.gate));
        let mut first = Some(open_writer(url).await?);
        let (group, rx, faults) = GroupCommit::new();
        let health = db.health().clone();
        let writer = {
            let (url, faults) = (url.to_owned(), Arc::clone(&faults));
            move |up: crate::supervise::Up| {
                let conn = first.take();
                let (rx, gate, db, url, faults) = (
                    Arc::clone(&rx),
                    Arc::clone(&gate),
                    db.clone(),
                    url.clone(),
                    Arc::clone(&faults),
                );
                async move {
                    let conn = match conn {
                        Some(c) => c,
                        None => {
                            anyhow::ensure!(
                                !faults.hold_restart.load(Ordering::SeqCst),
                                "held down by a test fault"
                            );
                            open_writer(&url).await?
                        }
                    };
                    let mut rx = rx.lock_owned().await;
                    up.ready();
                    run(&mut rx, conn, gate, db, url, &faults).await;
                    Ok(())
                }
            }
        };
        crate::supervise::spawn(&health, ORDER_WRITER, None, writer);
        let checkpoint = checkpoint_job(url, group.downgrade(), open_writer(url).await?);
        Ok((group, checkpoint))
    }

    /// Starts the batcher with its WAL checkpoint on a scheduler of its own
    /// (`app::build` puts the checkpoint on the gateway's one instead).
    pub async fn start(file: &SqliteFile, db: Db) -> anyhow::Result<GroupCommit> {
        let (group, checkpoint) = Batcher::start_jobs(file, db.clone()).await?;
        crate::jobs::start(
            &db,
            "wal_jobs",
            &crate::jobs::JobsConfig::default(),
            vec![checkpoint],
            None,
        );
        Ok(group)
    }
}

async fn open_writer(url: &str) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect(url).await?;
    sqlx::query(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 4000;",
    )
    .execute(&mut conn)
    .await?;
    Ok(conn)
}

/// Copies the WAL back into the database file on a connection (and so a
/// thread) of its own, so the order writer does not do it inside a commit.
/// PASSIVE never blocks the writer or readers. Writers still checkpoint
/// themselves past 4,000 WAL pages, should this job fall behind. Ends with
/// the batcher; a connection that failed is opened again at the next run.
fn checkpoint_job(
    url: &str,
    batcher: mpsc::WeakSender<Job>,
    conn: AnyConnection,
) -> crate::jobs::Job {
    let conn = Arc::new(Mutex::new(Some(conn)));
    let url = url.to_owned();
    crate::jobs::Job::new(
        crate::jobs::WAL_CHECKPOINT,
        crate::jobs::JobsConfig::default().wal_checkpoint,
        move || {
            let (conn, url, batcher) = (Arc::clone(&conn), url.clone(), batcher.clone());
            async move {
                let mut conn = conn.lock().await;
                if batcher.upgrade().is_none() {
                    if let Some(c) = conn.take() {
                        let _ = c.close().await;
                    }
                    return Ok(crate::jobs::Ran::Finished);
                }
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(open_writer(&url).await?),
                };
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut *c)
                    .await
                {
                    *conn = None;
                    return Err(anyhow::Error::new(e).context("WAL checkpoint"));
                }
                Ok(crate::jobs::Ran::Done)
            }
        },
    )
    .local()
}

async fn run(
    rx: &mut mpsc::Receiver<Job>,
    mut conn: AnyConnection,
    gate: Arc<Mutex<()>>,
    db: Db,
    url: String,
    faults: &Faults,
) {
    while let Some(first) = rx.recv().await {
        // Bounded by count and by bind parameters (SQLite allows 32766).
        let mut jobs = group::gather(first, rx, MAX_PARAMS);
        if faults.panic_in_writer.swap(false, Ordering::SeqCst) {
            panic!(
                "test fault: the order writer panics holding {} orders",
                jobs.len()
            );
        }
        let retry = {
            let _gate = gate.lock().await;
            let started = std::time::Instant::now();
            let size = jobs.len();
            // A panic inside one batch (a bug in checking some order) must
            // not stop the writer nor leave its callers waiting.
            let written = AssertUnwindSafe(async {
                if faults.panic_in_batch.swap(false, Ordering::SeqCst) {
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
                    panic!("test fault: an order batch panics inside its transaction");
                }
                write_batch(&mut conn, &mut jobs, db.now_micros()).await
            })
            .catch_unwind()
            .await;
            tracing::debug!(
                size,
                elapsed_us = started.elapsed().as_micros() as u64,
                "order batch"
            );
            crate::meter::batch(size, rx.len());
            match written {
                Ok(Ok(())) => Vec::new(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e.message, orders = jobs.len(), "batch failed; writing its orders one by one");
                    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                    if conn.ping().await.is_err()
                        && let Ok(c) = open_writer(&url).await
                    {
                        conn = c;
                    }
                    std::mem::take(&mut jobs)
                }
                Err(panic) => {
                    let cause = crate::supervise::panic_message(panic.as_ref());
                    // A ROLLBACK that succeeds proves nothing was committed,
                    // so each order can be tried again on its own: only the
                    // one that panics fails. Otherwise the panic came after
                    // COMMIT (or before BEGIN) and nobody can tell: 503.
                    let rolled_back = sqlx::query("ROLLBACK").execute(&mut conn).await.is_ok();
                    tracing::error!(
                        panic = %cause,
                        orders = jobs.len(),
                        rolled_back,
                        "order batch panicked"
                    );
                    // Whatever the connection was doing is unknown: a new one.
                    match open_writer(&url).await {
                        Ok(c) => conn = c,
                        Err(e) => {
                            tracing::warn!(error = %e, "reopening the order writer's connection")
                        }
                    }
                    if rolled_back {
                        std::mem::take(&mut jobs)
                    } else {
                        for job in jobs.drain(..) {
                            job.failed();
                        }
                        Vec::new()
                    }
                }
            }
        };
        // Outside the gate: the direct path takes it itself.
        for job in retry {
            job.retry(db.clone());
        }
    }
}

async fn write_batch(conn: &mut AnyConnection, jobs: &mut Vec<Job>, now: i64) -> Result<()> {
    let day = clock::business_day(now);
    let mut stores: Vec<StoreId> = jobs.iter().map(|j| j.order().store.clone()).collect();
    stores.sort();
    stores.dedup();
    let mut skus: Vec<&Sku> = jobs.iter().flat_map(Job::skus).collect();
    skus.sort();
    skus.dedup();
    let keyed: Vec<&IdemKey> = jobs.iter().filter_map(Job::idem).collect();
    let refs: Vec<&NewOrder> = jobs
        .iter()
        .map(Job::order)
        .filter(|n| n.channel_order_id.is_some())
        .collect();
    let prepaid: Vec<&super::Prepaid> = jobs
        .iter()
        .filter_map(|j| j.order().prepaid.as_ref())
        .collect();
    // The platform orders' duplicate rows, grouped by kind: one SELECT each.
    let mut dups = Dups::of(jobs);

    // One round trip: take the write lock, then read everything the batch
    // needs. Each SELECT tags its rows with a letter.
    let mut r = Script::default();
    r.sql.push_str("BEGIN IMMEDIATE;\n");
    // Stores, their feed heads and today's display counters.
    r.raw(
        &format!(
            "SELECT 'S', s.id, s.event_seq, COALESCE(d.last_no, 0) FROM stores s
             LEFT JOIN display_counters d ON d.store_id = s.id AND d.business_day = ?
             WHERE s.id IN ({})",
            params(stores.len())
        ),
        std::iter::once(Val::S(day.clone()))
            .chain(stores.iter().map(|s| Val::S(s.to_string())))
            .collect(),
    );
    // Products and their per-store records.
    if !skus.is_empty() {
        r.raw(
            &format!(
                "SELECT 'P', {PRODUCT_COLS}
                 FROM products p LEFT JOIN store_items i ON i.sku = p.sku AND i.store_id IN ({})
                 WHERE p.sku IN ({})",
                params(stores.len()),
                params(skus.len())
            ),
            stores
                .iter()
                .map(|s| Val::S(s.to_string()))
                .chain(skus.iter().map(|s| Val::S(s.to_string())))
                .collect(),
        );
    }
    // Idempotency keys already answered.
    if !keyed.is_empty() {
        r.raw(
            &format!(
                "SELECT 'K', key_id, idem_key, request_hash, status_code, response
                 FROM idempotency_keys WHERE {}",
                vec!["(key_id = ? AND idem_key = ?)"; keyed.len()].join(" OR ")
            ),
            keyed
                .iter()
                .flat_map(|k| [Val::S(k.owner.clone()), Val::S(k.key.clone())])
                .collect(),
        );
    }
    // Orders already placed under the same channel order ids.
    if !refs.is_empty() {
        r.raw(
            &format!(
                "SELECT 'R', store_id, channel, platform, channel_order_id, id FROM orders WHERE {}",
                vec![
                    "(store_id = ? AND channel = ? AND platform = ? AND channel_order_id = ?)";
                    refs.len()
                ]
                .join(" OR ")
            ),
            refs.iter()
                .flat_map(|n| {
                    [
                        Val::S(n.store.to_string()),
                        Val::S(n.channel.as_str().to_owned()),
                        Val::S(n.platform.clone().unwrap_or_default()),
                        Val::OS(n.channel_order_id.clone()),
                    ]
                })
                .collect(),
        );
    }
    // App payments already used for another order.
    if !prepaid.is_empty() {
        r.raw(
            &format!(
                "SELECT 'X', provider, reference FROM prepayments WHERE {}",
                vec!["(provider = ? AND reference = ?)"; prepaid.len()].join(" OR ")
            ),
            prepaid
                .iter()
                .flat_map(|p| [Val::S(p.provider.clone()), Val::S(p.reference.clone())])
                .collect(),
        );
    }
    // Rows that make a platform order a duplicate: tagged 'D', the kind's
    // index, the order they name, then the values they were found by.
    for (i, ((table, cols, answer), vals)) in dups.kinds.iter().enumerate() {
        let one = format!(
            "({})",
            cols.iter()
                .map(|c| format!("{c} = ?"))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        r.raw(
            &format!(
                "SELECT 'D', {i}, {}, {} FROM {table} WHERE {}",
                answer.unwrap_or("NULL"),
                cols.join(", "),
                vec![one; vals.len()].join(" OR ")
            ),
            vals.iter()
                .flat_map(|v| v.iter().map(|s| Val::S(s.clone())))
                .collect(),
        );
    }
    let rows = r.query().fetch_all(&mut *conn).await?;

    let mut facts = Facts::default();
    for r in &rows {
        match r.get::<String, _>(0).as_str() {
            "S" => {
                let id = StoreId::parse(&r.get::<String, _>(1)).map_err(Error::internal)?;
                facts.heads.insert(
                    id,
                    Head {
                        seq: r.get(2),
                        display: r.get(3),
                        written: false,
                    },
                );
            }
            "P" => facts.add_product(r)?,
            "K" => {
                let status = u16::try_from(r.get::<i64, _>(4)).unwrap_or(200);
                facts
                    .answered
                    .insert((r.get(1), r.get(2)), (r.get(3), status, r.get(5)));
            }
            "R" => {
                facts
                    .refs
                    .insert((r.get(1), r.get(2), r.get(3), r.get(4)), r.get(5));
            }
            "X" => {
                facts.prepaid.insert((r.get(1), r.get(2)));
            }
            "D" => {
                let i = usize::try_from(r.get::<i64, _>(1)).map_err(Error::internal)?;
                let vals = (0..dups.width(i))
                    .map(|c| r.get::<String, _>(3 + c))
                    .collect();
                dups.found(i, vals, r.get::<Option<String>, _>(2));
            }
            other => {
                return Err(Error::internal(anyhow::anyhow!(
                    "batch read returned a row tagged {other:?}"
                )));
            }
        }
    }

    // The one plan, for every order in arrival order against the running
    // state.
    let mut planner = Planner::new(facts, now);
    let (mut decided, extras) = group::decide(&mut planner, jobs, &mut dups, now)?;

    // One script: every write of the batch, then COMMIT.
    let mut w = Script::default();
    for (store, head) in &planner.facts.heads {
        if head.written {
            w.stmt(
                "UPDATE stores SET event_seq = {}, catalog_rev = catalog_rev + 1 WHERE id = {}",
                vec![Val::I(head.seq), Val::S(store.to_string())],
            );
            w.stmt(
                "INSERT INTO display_counters (store_id, business_day, last_no) VALUES ({}, {}, {})
                 ON CONFLICT (store_id, business_day) DO UPDATE SET last_no = excluded.last_no",
                vec![
                    Val::S(store.to_string()),
                    Val::S(day.clone()),
                    Val::I(head.display),
                ],
            );
        }
    }
    for ((store, sku), s) in &planner.facts.stock {
        if s.reserve > 0 {
            w.stmt(
                "UPDATE store_items SET reserved = reserved + {} WHERE store_id = {} AND sku = {}",
                vec![
                    Val::I(s.reserve),
                    Val::S(store.to_string()),
                    Val::S(sku.to_string()),
                ],
            );
        }
    }
    // One multi-row INSERT per table for the whole batch, the rows the plan built.
    for (table, rows) in TABLES.iter().zip(group::rows_by_table(&mut decided)?) {
        w.rows(&table.insert_head(), rows, "");
    }
    // The platform orders' own rows, one INSERT per table and conflict rule,
    // in the order they first came.
    for g in group::extra_groups(extras) {
        w.rows(
            &g.table.insert_head(),
            g.rows,
            &sold::conflict_tail(g.unless),
        );
    }
    w.sql.push_str("COMMIT;");
    w.query().execute(&mut *conn).await?;

    // Committed: answer everyone.
    group::reply(conn, jobs, &decided).await;
    Ok(())
}

/// `?, ?, …` for an IN list of `n` values.
///
/// The batch speaks to SQLite only, so it uses anonymous `?` parameters:
/// SQLite looks a numbered `$N` up by name with a linear scan, both when it
/// parses and when it binds, which is quadratic in the hundreds of values a
/// batch carries. Values bind in the order their `?` appear.
fn params(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A multi-statement script with anonymous `?` parameters, bound in order.
#[derive(Default)]
struct Script {
    sql: String,
    vals: Vec<Val>,
}

impl Script {
    /// Appends `head VALUES (…), (…) tail` with one parameter per value.
    fn rows(&mut self, head: &str, rows: Vec<Vec<Val>>, tail: &str) {
        if rows.is_empty() {
            return;
        }
        self.sql.push_str(head);
        self.sql.push_str(" VALUES ");
        for (r, row) in rows.into_iter().enumerate() {
            self.sql.push_str(if r == 0 { "(" } else { ", (" });
            for (c, v) in row.into_iter().enumerate() {
                self.vals.push(v);
                self.sql.push_str(if c == 0 { "?" } else { ", ?" });
            }
            self.sql.push(')');
        }
        self.sql.push_str(tail);
        self.sql.push_str(";\n");
    }

    /// Appends a statement written with its own `?` parameters.
    fn raw(&mut self, sql: &str, vals: Vec<Val>) {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self.vals.extend(vals);
    }

    /// The script as one query; not kept in the statement cache, as every
    /// batch's script differs.
    fn query(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql)).persistent(false);
        for v in self.vals {
            q = match v {
                Val::I(i) => q.bind(i),
                Val::S(s) => q.bind(s),
                Val::OS(s) => q.bind(s),
                Val::OI(i) => q.bind(i),
            };
        }
        q
    }

    /// Appends a statement; each `{}` becomes the next parameter.
    fn stmt(&mut self, template: &str, vals: Vec<Val>) {
        let mut vals = vals.into_iter();
        let mut parts = template.split("{}");
        self.sql.push_str(parts.next().unwrap_or_default());
        for part in parts {
            self.vals.push(vals.next().unwrap_or(Val::OS(None)));
            self.sql.push('?');
            self.sql.push_str(part);
        }
        self.sql.push_str(";\n");
    }
}
