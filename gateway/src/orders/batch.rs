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

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use proto::order::{Sku, StoreId};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::{Mutex, mpsc};

use super::group::{self, Dups, Faults, GroupCommit, Job, ORDER_WRITER};
use super::plan::{self, Facts, Head, PRODUCT_COLS, Planner, TABLES, Val};
use super::sold;
use super::{IdemKey, NewOrder};
use crate::clock;
use crate::db::{Db, SqliteFile};
use crate::error::{Error, Result};

/// Rough ceiling of values in one batch (it bounds how much one batch binds).
const MAX_PARAMS: usize = 16_000;
/// Most rows in one INSERT of the batch's script (a power of two; the widest
/// table's 15 columns times this stays well inside SQLite's 32,766 bound
/// values per statement).
const VALUES_ROWS: usize = 256;

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
        // Bounded by count and by the values the batch carries.
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
                    faults.batch_failed();
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
                    faults.batch_failed();
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
    // needs. Each SELECT tags its rows with a letter. The batch's values
    // arrive as JSON arrays read back by `json_each` (see [`JsonRows`]).
    let store_ids = JsonRows::of_strs(stores.iter().map(|s| s.to_string()))?;
    let mut r = Script::default();
    r.sql.push_str("BEGIN IMMEDIATE;\n");
    // Stores, their feed heads and today's display counters.
    r.raw(
        "SELECT 'S', s.id, s.event_seq, COALESCE(d.last_no, 0) FROM stores s
         LEFT JOIN display_counters d ON d.store_id = s.id AND d.business_day = ?
         WHERE s.id IN (SELECT value FROM json_each(?))",
        vec![Val::S(day.clone()), Val::S(store_ids.clone())],
    );
    // Products and their per-store records.
    r.raw(
        &format!(
            "SELECT 'P', {PRODUCT_COLS}
             FROM products p LEFT JOIN store_items i ON i.sku = p.sku
              AND i.store_id IN (SELECT value FROM json_each(?))
             WHERE p.sku IN (SELECT value FROM json_each(?))"
        ),
        vec![
            Val::S(store_ids),
            Val::S(JsonRows::of_strs(skus.iter().map(|s| s.to_string()))?),
        ],
    );
    // Idempotency keys already answered.
    let mut keys = JsonRows::default();
    for k in &keyed {
        keys.push(&[Val::S(k.owner.clone()), Val::S(k.key.clone())])?;
    }
    r.raw(
        "SELECT 'K', k.key_id, k.idem_key, k.request_hash, k.status_code, k.response
         FROM jsonb_each(?) j JOIN idempotency_keys k
          ON k.key_id = j.value ->> 0 AND k.idem_key = j.value ->> 1",
        vec![Val::S(keys.finish())],
    );
    // Orders already placed under the same channel order ids.
    let mut ids = JsonRows::default();
    for n in &refs {
        ids.push(&[
            Val::S(n.store.to_string()),
            Val::S(n.channel.as_str().to_owned()),
            Val::S(n.platform.clone().unwrap_or_default()),
            Val::OS(n.channel_order_id.clone()),
        ])?;
    }
    r.raw(
        "SELECT 'R', o.store_id, o.channel, o.platform, o.channel_order_id, o.id
         FROM jsonb_each(?) j JOIN orders o
          ON o.store_id = j.value ->> 0 AND o.channel = j.value ->> 1
          AND o.platform = j.value ->> 2 AND o.channel_order_id = j.value ->> 3",
        vec![Val::S(ids.finish())],
    );
    // App payments already used for another order.
    let mut paid = JsonRows::default();
    for p in &prepaid {
        paid.push(&[Val::S(p.provider.clone()), Val::S(p.reference.clone())])?;
    }
    r.raw(
        "SELECT 'X', x.provider, x.reference FROM jsonb_each(?) j JOIN prepayments x
          ON x.provider = j.value ->> 0 AND x.reference = j.value ->> 1",
        vec![Val::S(paid.finish())],
    );
    // Rows that make a platform order a duplicate: tagged 'D', the kind's
    // index, the order they name, then the values they were found by.
    for (i, ((table, cols, answer), vals)) in dups.kinds.iter().enumerate() {
        let mut found = JsonRows::default();
        for v in vals {
            found.push_strs(v)?;
        }
        r.raw(
            &format!(
                "SELECT 'D', {i}, {}, {} FROM jsonb_each(?) j JOIN {table} t ON {}",
                answer.map_or("NULL".to_owned(), |a| format!("t.{a}")),
                cols.iter()
                    .map(|c| format!("t.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                cols.iter()
                    .enumerate()
                    .map(|(n, c)| format!("t.{c} = j.value ->> {n}"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            vec![Val::S(found.finish())],
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

    // One script: every write of the batch, then COMMIT. Its text takes one
    // of a few shapes whatever the batch holds (lists as JSON, rows as padded
    // VALUES, see [`Script`]), so SQLite compiles each shape once.
    let mut w = Script::default();
    let (mut heads, mut counters, mut reserve) = (
        JsonRows::default(),
        JsonRows::default(),
        JsonRows::default(),
    );
    for (store, head) in &planner.facts.heads {
        if head.written {
            heads.push(&[Val::S(store.to_string()), Val::I(head.seq)])?;
            counters.push(&[
                Val::S(store.to_string()),
                Val::S(day.clone()),
                Val::I(head.display),
            ])?;
        }
    }
    for ((store, sku), s) in &planner.facts.stock {
        if s.reserve > 0 {
            reserve.push(&[
                Val::S(store.to_string()),
                Val::S(sku.to_string()),
                Val::I(s.reserve),
            ])?;
        }
    }
    w.raw(
        "UPDATE stores SET event_seq = j.value ->> 1, catalog_rev = catalog_rev + 1
         FROM jsonb_each(?) j WHERE stores.id = j.value ->> 0",
        vec![Val::S(heads.finish())],
    );
    w.raw(
        "INSERT INTO display_counters (store_id, business_day, last_no)
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM jsonb_each(?) WHERE true
         ON CONFLICT (store_id, business_day) DO UPDATE SET last_no = excluded.last_no",
        vec![Val::S(counters.finish())],
    );
    w.raw(
        "UPDATE store_items SET reserved = reserved + (j.value ->> 2)
         FROM jsonb_each(?) j
         WHERE store_items.store_id = j.value ->> 0 AND store_items.sku = j.value ->> 1",
        vec![Val::S(reserve.finish())],
    );
    // One INSERT per table for the whole batch, the rows the plan built.
    for (table, rows) in TABLES.iter().zip(group::rows_by_table(&mut decided)?) {
        w.values(table, rows, "")?;
    }
    // The platform orders' own rows, one INSERT per table and conflict rule,
    // in the order they first came.
    for g in group::extra_groups(extras) {
        w.values(g.table, g.rows, &sold::conflict_tail(g.unless))?;
    }
    w.sql.push_str("COMMIT;");
    w.query().execute(&mut *conn).await?;

    // Committed: answer everyone.
    group::reply(conn, jobs, &decided).await;
    Ok(())
}

/// A multi-statement script with anonymous `?` parameters, bound in order.
/// Its text must not depend on how many orders, lines or keys a batch holds:
/// the batch's values travel as a few JSON arrays ([`JsonRows`]), so the
/// script is compiled once per shape and kept in the connection's statement
/// cache (compiling each batch's own SQL was ≈ 14% of the gateway's CPU
/// under load).
#[derive(Default)]
struct Script {
    sql: String,
    vals: Vec<Val>,
}

impl Script {
    /// Appends inserts into `table` of every row of `rows` as bound values,
    /// each followed by `tail` (an `ON CONFLICT` clause, or nothing), over a
    /// VALUES list of a power of two rows: each row leads with a marker, 1
    /// for a row to write, NULL for the padding after the last one (`SELECT
    /// column2, … FROM (VALUES …) WHERE column1 IS NOT NULL`; the WHERE also
    /// keeps a tail from reading as a join's `ON`). So the text takes one of
    /// a few shapes per table whatever the batch's size, and the values bind
    /// as they are. The marker is a column, not a bound `LIMIT`: SQLite
    /// compiles a statement again whenever its LIMIT's bound value changes.
    fn values(&mut self, table: &plan::Table, rows: Vec<Vec<Val>>, tail: &str) -> Result<()> {
        let width = table.cols.len();
        if let Some(row) = rows.iter().find(|r| r.len() != width) {
            return Err(Error::internal(anyhow::anyhow!(
                "a row of {} values for the {width} columns of {}",
                row.len(),
                table.name
            )));
        }
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Val>> = rows.by_ref().take(VALUES_ROWS).collect();
            let n = chunk.len();
            let shape = n.next_power_of_two();
            self.sql.push_str(&table.insert_head());
            self.sql.push_str(" SELECT ");
            for c in 0..width {
                if c > 0 {
                    self.sql.push_str(", ");
                }
                self.sql.push_str(&format!("column{}", c + 2));
            }
            self.sql.push_str(" FROM (VALUES ");
            for r in 0..shape {
                self.sql.push_str(if r == 0 { "(?" } else { ", (?" });
                for _ in 0..width {
                    self.sql.push_str(", ?");
                }
                self.sql.push(')');
            }
            self.sql.push_str(") WHERE column1 IS NOT NULL");
            self.sql.push_str(tail);
            self.sql.push_str(";\n");
            for row in chunk {
                self.vals.push(Val::I(1));
                self.vals.extend(row);
            }
            self.vals
                .extend((0..(shape - n) * (width + 1)).map(|_| Val::OS(None)));
        }
        Ok(())
    }

    /// Appends a statement written with its own `?` parameters.
    fn raw(&mut self, sql: &str, vals: Vec<Val>) {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self.vals.extend(vals);
    }

    /// The script as one query, kept prepared by the connection.
    fn query(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
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
}

/// Rows of values as one JSON array of arrays (`[["S001",3],…]`), bound as
/// one text parameter and read back in SQL with `json_each(?)` and
/// `value ->> n`: SQLite hands back a JSON string as TEXT, an integer as
/// INTEGER and `null` as NULL, the values the row's binds would have been.
#[derive(Default)]
struct JsonRows(Vec<u8>);

impl JsonRows {
    /// The array of these strings, one per element (`["a","b"]`).
    fn of_strs(strs: impl IntoIterator<Item = String>) -> Result<String> {
        let mut out = JsonRows::default();
        for s in strs {
            out.sep();
            serde_json::to_writer(&mut out.0, &s).map_err(Error::internal)?;
        }
        Ok(out.finish())
    }

    fn sep(&mut self) {
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
    }

    /// Appends one row of values.
    fn push(&mut self, row: &[Val]) -> Result<()> {
        self.push_with(row, |out, v| {
            match v {
                Val::I(n) | Val::OI(Some(n)) => write!(out, "{n}").map_err(Error::internal)?,
                Val::S(s) | Val::OS(Some(s)) => {
                    serde_json::to_writer(out, s).map_err(Error::internal)?
                }
                Val::OS(None) | Val::OI(None) => out.extend_from_slice(b"null"),
            }
            Ok(())
        })
    }

    /// Appends one row of strings.
    fn push_strs(&mut self, row: &[String]) -> Result<()> {
        self.push_with(row, |out, s| {
            serde_json::to_writer(out, s).map_err(Error::internal)
        })
    }

    /// Appends `[a,b,…]`, each element written by `one`.
    fn push_with<T>(
        &mut self,
        row: &[T],
        mut one: impl FnMut(&mut Vec<u8>, &T) -> Result<()>,
    ) -> Result<()> {
        self.sep();
        self.0.push(b'[');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            one(&mut self.0, v)?;
        }
        self.0.push(b']');
        Ok(())
    }

    /// The JSON text (`[]` when no row was pushed).
    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push(b'[');
        }
        self.0.push(b']');
        // Only ASCII punctuation and serde_json's strings were written.
        String::from_utf8(self.0)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}
