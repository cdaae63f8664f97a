//! Group commit for PostgreSQL. Orders placed at the same moment, and the
//! delivery platforms' orders (`sold.rs`) among them, are decided together
//! by the one plan (`plan.rs`, as on the direct path and in the SQLite
//! batch, `group.rs` for what the two batches share) and written in one
//! transaction, with a handful of statements per batch rather than a dozen
//! per order. Each caller hears back only after the COMMIT.
//!
//! Several gateway processes may share the database, and the direct path
//! (`plan::write_one`) may run next to this writer, so the batch takes its
//! locks in the order every order writer takes them:
//!
//! 1. the idempotency keys, claimed in (owner, key) order with
//!    `INSERT … ON CONFLICT DO NOTHING`: a key another transaction holds is
//!    waited for, and its committed answer is then read and replayed;
//! 2. the store rows, `SELECT … FOR UPDATE` in id order (the feed writers'
//!    lock: stock, feed numbers and display numbers of a store change only
//!    under it);
//! 3. then everything else is read, in statements of their own (so each
//!    sees what the holders of those locks committed), and written. That
//!    includes the platform orders' duplicate rows: another instance that
//!    wrote the same platform order for the same store did so under the
//!    same store row, so its rows are seen here.
//!
//! Claimed keys of orders that end up not written are deleted again before
//! the COMMIT, as the direct path's rollback would. Any error in the batch
//! rolls it back and writes its orders one by one on the direct path, which
//! answers a unique violation (another instance won a race) as a replay, or
//! as a duplicate for a platform order. So does a platform order's row that
//! must go in (`Extra::or_duplicate`) but met a row another writer
//! committed after the batch read (a push of the same ref for another
//! store): the batch fails rather than write that order twice.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use proto::order::{Sku, StoreId};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::mpsc;

use super::NewOrder;
use super::group::{self, Decided, Dups, Faults, GroupCommit, Job, ORDER_WRITER};
use super::plan::{Facts, Head, PRODUCT_COLS, Planner, TABLES, Val};
use super::sold;
use crate::clock;
use crate::db::Db;
use crate::error::{Error, Result};

/// Rough ceiling of bind parameters in one batch (PostgreSQL allows 65535
/// in one statement).
const MAX_PARAMS: usize = 30_000;

/// Starts PostgreSQL's group commit.
pub struct PgBatcher;

impl PgBatcher {
    /// Starts the writer, supervised as [`ORDER_WRITER`]: started again on
    /// the same queue if it dies. Each batch takes a connection of the pool.
    pub fn start(db: Db) -> GroupCommit {
        let (group, rx, faults) = GroupCommit::new();
        let health = db.health().clone();
        let writer = {
            let faults = Arc::clone(&faults);
            move |up: crate::supervise::Up| {
                let (rx, db, faults) = (Arc::clone(&rx), db.clone(), Arc::clone(&faults));
                async move {
                    anyhow::ensure!(
                        !faults.hold_restart.load(Ordering::SeqCst),
                        "held down by a test fault"
                    );
                    // Ready once the database answers.
                    db.ping().await?;
                    let mut rx = rx.lock_owned().await;
                    up.ready();
                    run(&mut rx, db, &faults).await;
                    Ok(())
                }
            }
        };
        crate::supervise::spawn(&health, ORDER_WRITER, None, writer);
        group
    }
}

async fn run(rx: &mut mpsc::Receiver<Job>, db: Db, faults: &Faults) {
    while let Some(first) = rx.recv().await {
        let mut jobs = group::gather(first, rx, MAX_PARAMS);
        if faults.panic_in_writer.swap(false, Ordering::SeqCst) {
            panic!(
                "test fault: the order writer panics holding {} orders",
                jobs.len()
            );
        }
        let started = std::time::Instant::now();
        let size = jobs.len();
        // Set just before COMMIT is sent: a panic before it left nothing
        // committed (the dropped transaction rolls back).
        let committing = AtomicBool::new(false);
        let written = AssertUnwindSafe(async {
            // One connection for the batch and its answers: once committed,
            // nothing may fail before everyone is answered (a failure
            // would write the orders again, one by one).
            let mut conn = db.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            if faults.panic_in_batch.swap(false, Ordering::SeqCst) {
                sqlx::query("SELECT 1").execute(&mut *tx).await?;
                panic!("test fault: an order batch panics inside its transaction");
            }
            let now = db.now_micros();
            let decided = write_batch(&mut tx, &jobs, now).await?;
            committing.store(true, Ordering::SeqCst);
            tx.commit().await?;
            group::reply(&mut conn, &mut jobs, &decided).await;
            Ok::<(), Error>(())
        })
        .catch_unwind()
        .await;
        tracing::debug!(
            size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "order batch"
        );
        crate::meter::batch(size, rx.len());
        let retry = match written {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(e)) => {
                // Rolled back (a failed COMMIT commits nothing): each order
                // again on its own.
                faults.batch_failed();
                tracing::warn!(error = %e.message, orders = jobs.len(), "batch failed; writing its orders one by one");
                std::mem::take(&mut jobs)
            }
            Err(panic) => {
                faults.batch_failed();
                let cause = crate::supervise::panic_message(panic.as_ref());
                let committed = committing.load(Ordering::SeqCst);
                tracing::error!(
                    panic = %cause,
                    orders = jobs.len(),
                    rolled_back = !committed,
                    "order batch panicked"
                );
                if committed {
                    // Nobody can tell what was recorded: 503, retry with the key.
                    for job in jobs.drain(..) {
                        job.failed();
                    }
                    Vec::new()
                } else {
                    std::mem::take(&mut jobs)
                }
            }
        };
        for job in retry {
            job.retry(db.clone());
        }
    }
}

/// One statement with numbered parameters.
#[derive(Default)]
struct Stmt {
    sql: String,
    vals: Vec<Val>,
}

impl Stmt {
    fn new(sql: &str) -> Stmt {
        Stmt {
            sql: sql.to_owned(),
            vals: Vec::new(),
        }
    }

    /// Appends the next parameter, cast to its type.
    fn p(&mut self, v: Val) -> &mut Stmt {
        let cast = match v {
            Val::I(_) | Val::OI(_) => "bigint",
            Val::S(_) | Val::OS(_) => "text",
        };
        self.vals.push(v);
        self.sql.push_str(&format!("${}::{cast}", self.vals.len()));
        self
    }

    fn push(&mut self, s: &str) -> &mut Stmt {
        self.sql.push_str(s);
        self
    }

    /// `(v, v, …)`.
    fn tuple(&mut self, vals: Vec<Val>) -> &mut Stmt {
        self.push("(");
        for (i, v) in vals.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.p(v);
        }
        self.push(")")
    }

    /// `(…), (…)`.
    fn tuples(&mut self, rows: Vec<Vec<Val>>) -> &mut Stmt {
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.tuple(row);
        }
        self
    }

    /// ` FROM table t JOIN (VALUES (…), (…)) AS v (c1, …) ON t.col = v.c1
    /// AND …`: the table's rows holding one of `rows` in `cols`, each found
    /// through the index on `cols`. (A row-value `IN` list is planned as ORs
    /// whose shared values PostgreSQL factors out: `platform = 'meituan'`
    /// alone then scans every row of the platform, a batch's time growing
    /// with the table.)
    fn rows_among(&mut self, table: &str, cols: &[&str], rows: Vec<Vec<Val>>) -> &mut Stmt {
        self.push(&format!(" FROM {table} t JOIN "));
        self.values_as(cols.len(), rows);
        self.push(" ON ").push(&matching(cols))
    }

    /// `(VALUES (…), (…)) AS v (c1, …, cn)`.
    fn values_as(&mut self, n: usize, rows: Vec<Vec<Val>>) -> &mut Stmt {
        self.push("(VALUES ").tuples(rows);
        let names: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
        self.push(&format!(") AS v ({})", names.join(", ")))
    }

    /// Not kept in the statement cache: every batch's statements differ.
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
}

/// `t.col = v.c1 AND …`: table `t`'s columns against [`Stmt::values_as`]'s.
fn matching(cols: &[&str]) -> String {
    cols.iter()
        .enumerate()
        .map(|(i, c)| format!("t.{c} = v.c{}", i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn s(v: impl ToString) -> Val {
    Val::S(v.to_string())
}

/// Reads what the batch needs under its locks, plans every order and
/// writes the good ones, in `conn`'s open transaction; the caller commits.
async fn write_batch(conn: &mut AnyConnection, jobs: &[Job], now: i64) -> Result<Vec<Decided>> {
    let day = clock::business_day(now);
    let mut facts = Facts::default();

    // 1. Claim the keys, in key order. A key another transaction holds is
    // waited for here; a key already answered is not claimed.
    let mut keys: BTreeMap<(String, String), &str> = BTreeMap::new();
    for k in jobs.iter().filter_map(Job::idem) {
        keys.entry((k.owner.clone(), k.key.clone()))
            .or_insert(k.request_hash.as_str());
    }
    let mut claimed: BTreeSet<(String, String)> = BTreeSet::new();
    if !keys.is_empty() {
        let mut q = Stmt::new(
            "INSERT INTO idempotency_keys (key_id, idem_key, request_hash, status_code, response, created_at) VALUES ",
        );
        q.tuples(
            keys.iter()
                .map(|((owner, key), hash)| {
                    vec![s(owner), s(key), s(hash), Val::I(0), s(""), Val::I(now)]
                })
                .collect(),
        );
        q.push(" ON CONFLICT (key_id, idem_key) DO NOTHING RETURNING key_id, idem_key");
        for r in q.query().fetch_all(&mut *conn).await? {
            claimed.insert((r.get(0), r.get(1)));
        }
        let answered: Vec<&(String, String)> =
            keys.keys().filter(|k| !claimed.contains(*k)).collect();
        if !answered.is_empty() {
            let mut q = Stmt::new("SELECT key_id, idem_key, request_hash, status_code, response");
            q.rows_among(
                "idempotency_keys",
                &["key_id", "idem_key"],
                answered
                    .into_iter()
                    .map(|(owner, key)| vec![s(owner), s(key)])
                    .collect(),
            );
            for r in q.query().fetch_all(&mut *conn).await? {
                let status = u16::try_from(r.get::<i64, _>(3)).unwrap_or(200);
                facts
                    .answered
                    .insert((r.get(0), r.get(1)), (r.get(2), status, r.get(4)));
            }
        }
    }

    // 2. Lock the batch's store rows, in id order (ORDER BY sorts before
    // the rows are locked).
    let stores: BTreeSet<&StoreId> = jobs.iter().map(|j| &j.order().store).collect();
    let mut q = Stmt::new("SELECT id, event_seq FROM stores WHERE id IN (");
    for (i, st) in stores.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.p(s(st));
    }
    q.push(") ORDER BY id FOR UPDATE");
    for r in q.query().fetch_all(&mut *conn).await? {
        let id = StoreId::parse(&r.get::<String, _>(0)).map_err(Error::internal)?;
        facts.heads.insert(
            id,
            Head {
                seq: r.get(1),
                display: 0,
                written: false,
            },
        );
    }
    let locked: Vec<&StoreId> = stores
        .iter()
        .copied()
        .filter(|st| facts.heads.contains_key(*st))
        .collect();

    // 3. Read, each statement after the locks (so it sees their holders'
    // commits). Orders of unknown stores need nothing more: the plan
    // refuses them.
    if !locked.is_empty() {
        let mut q =
            Stmt::new("SELECT store_id, last_no FROM display_counters WHERE business_day = ");
        q.p(s(&day)).push(" AND store_id IN (");
        for (i, st) in locked.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.p(s(st));
        }
        q.push(")");
        for r in q.query().fetch_all(&mut *conn).await? {
            let id = StoreId::parse(&r.get::<String, _>(0)).map_err(Error::internal)?;
            if let Some(h) = facts.heads.get_mut(&id) {
                h.display = r.get(1);
            }
        }
        let skus: BTreeSet<&Sku> = jobs
            .iter()
            .filter(|j| facts.heads.contains_key(&j.order().store))
            .flat_map(Job::skus)
            .collect();
        if !skus.is_empty() {
            let mut q = Stmt::new(&format!(
                "SELECT 'P', {PRODUCT_COLS}
                 FROM products p LEFT JOIN store_items i ON i.sku = p.sku AND i.store_id IN ("
            ));
            for (i, st) in locked.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.p(s(st));
            }
            q.push(") WHERE p.sku IN (");
            for (i, sku) in skus.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.p(s(sku));
            }
            q.push(")");
            for r in q.query().fetch_all(&mut *conn).await? {
                facts.add_product(&r)?;
            }
        }
        let refs: Vec<&NewOrder> = jobs
            .iter()
            .map(Job::order)
            .filter(|n| n.channel_order_id.is_some() && facts.heads.contains_key(&n.store))
            .collect();
        if !refs.is_empty() {
            let mut q = Stmt::new("SELECT store_id, channel, platform, channel_order_id, id");
            q.rows_among(
                "orders",
                &["store_id", "channel", "platform", "channel_order_id"],
                refs.iter()
                    .map(|n| {
                        vec![
                            s(&n.store),
                            s(n.channel.as_str()),
                            s(n.platform.clone().unwrap_or_default()),
                            Val::OS(n.channel_order_id.clone()),
                        ]
                    })
                    .collect(),
            );
            for r in q.query().fetch_all(&mut *conn).await? {
                facts
                    .refs
                    .insert((r.get(0), r.get(1), r.get(2), r.get(3)), r.get(4));
            }
        }
        let prepaid: Vec<&super::Prepaid> = jobs
            .iter()
            .filter_map(|j| j.order().prepaid.as_ref())
            .collect();
        if !prepaid.is_empty() {
            let mut q = Stmt::new("SELECT provider, reference");
            q.rows_among(
                "prepayments",
                &["provider", "reference"],
                prepaid
                    .iter()
                    .map(|p| vec![s(&p.provider), s(&p.reference)])
                    .collect(),
            );
            for r in q.query().fetch_all(&mut *conn).await? {
                facts.prepaid.insert((r.get(0), r.get(1)));
            }
        }
    }

    // The platform orders' duplicate rows, every kind in one statement
    // (after the locks too): the kind's index, the order a row names, then
    // the values it was found by, padded to the widest kind.
    let mut dups = Dups::of(jobs);
    if !dups.kinds.is_empty() {
        let width = (0..dups.kinds.len())
            .map(|i| dups.width(i))
            .max()
            .unwrap_or(0);
        let mut q = Stmt::default();
        for (i, ((table, cols, answer), vals)) in dups.kinds.iter().enumerate() {
            q.push(if i == 0 { "" } else { "\nUNION ALL " });
            q.push(&format!(
                "SELECT {i}::bigint, {}::text",
                answer.unwrap_or("NULL")
            ));
            for c in 0..width {
                match cols.get(c) {
                    Some(col) => q.push(&format!(", {col}::text")),
                    None => q.push(", NULL::text"),
                };
            }
            q.rows_among(
                table,
                cols,
                vals.iter().map(|v| v.iter().map(s).collect()).collect(),
            );
        }
        for r in q.query().fetch_all(&mut *conn).await? {
            let i = usize::try_from(r.get::<i64, _>(0)).map_err(Error::internal)?;
            let vals = (0..dups.width(i))
                .map(|c| r.get::<String, _>(2 + c))
                .collect();
            dups.found(i, vals, r.get::<Option<String>, _>(1));
        }
    }

    // 4. The one plan, for every order in arrival order.
    let mut planner = Planner::new(facts, now);
    let (mut decided, extras) = group::decide(&mut planner, jobs, &mut dups, now)?;

    // 5. Write: data-modifying WITH queries packed into as few statements
    // as keep each under `PACK_BYTES` (PostgreSQL runs all of a statement's
    // parts, and checks foreign keys at its end).
    let mut w = Packer::default();
    // Feed heads, with the feed notification (delivered at COMMIT).
    let heads: Vec<(&StoreId, &Head)> = planner
        .facts
        .heads
        .iter()
        .filter(|(_, h)| h.written)
        .collect();
    if !heads.is_empty() {
        let rows: Vec<Vec<Val>> = heads
            .iter()
            .map(|(st, h)| vec![s(st), Val::I(h.seq)])
            .collect();
        w.part(conn, Some(Count::Heads), &rows, |q, rows| {
            q.push(
                "UPDATE stores SET event_seq = v.seq, catalog_rev = catalog_rev + 1 FROM (VALUES ",
            );
            q.tuples(rows);
            q.push(") AS v (id, seq) WHERE stores.id = v.id RETURNING pg_notify(");
            q.p(s(crate::events::CHANNEL)).push(", stores.id)");
        })
        .await?;
        let rows: Vec<Vec<Val>> = heads
            .iter()
            .map(|(st, h)| vec![s(st), s(&day), Val::I(h.display)])
            .collect();
        w.part(conn, None, &rows, |q, rows| {
            q.push("INSERT INTO display_counters (store_id, business_day, last_no) VALUES ");
            q.tuples(rows);
            q.push(
                " ON CONFLICT (store_id, business_day) DO UPDATE SET last_no = excluded.last_no",
            );
        })
        .await?;
    }
    // Stock: what the plan reserves per item, guarded by what it checked
    // (a sale that already happened takes its stock even when short: an
    // item only such sales take is not guarded).
    let mut guarded: BTreeMap<(&StoreId, &Sku), i64> = BTreeMap::new();
    for (d, job) in decided.iter().zip(jobs) {
        if let Some(p) = d.written() {
            for t in p.takes.iter().filter(|t| t.guarded) {
                *guarded.entry((&job.order().store, &t.sku)).or_default() += t.quantity.milli();
            }
        }
    }
    let reserves: Vec<Vec<Val>> = planner
        .facts
        .stock
        .iter()
        .filter(|(_, st)| st.reserve > 0)
        .map(|((store, sku), st)| {
            let g = guarded.get(&(store, sku)).copied().unwrap_or(0);
            vec![s(store), s(sku), Val::I(st.reserve), Val::I(g)]
        })
        .collect();
    let want_reserved = reserves.len() as i64;
    if !reserves.is_empty() {
        w.part(conn, Some(Count::Items), &reserves, |q, rows| {
            q.push("UPDATE store_items SET reserved = reserved + v.q FROM (VALUES ");
            q.tuples(rows);
            q.push(
                ") AS v (store_id, sku, q, guarded)
                 WHERE store_items.store_id = v.store_id AND store_items.sku = v.sku
                   AND (v.guarded = 0 OR store_items.on_hand - store_items.reserved >= v.guarded)
                 RETURNING 1",
            );
        })
        .await?;
    }
    // One multi-row INSERT per table (or per slice of its rows), the rows
    // the plan built.
    let written_keys: BTreeSet<(String, String)> = decided
        .iter()
        .zip(jobs)
        .filter(|(d, _)| d.written().is_some())
        .filter_map(|(_, j)| j.idem())
        .map(|k| (k.owner.clone(), k.key.clone()))
        .collect();
    let by_table = group::rows_by_table(&mut decided)?;
    for (table, rows) in TABLES.iter().zip(by_table) {
        let upsert = table.upsert_tail();
        for slice in slices(rows) {
            w.part(conn, None, &slice, |q, rows| {
                q.push(&table.insert_head());
                q.push(" VALUES ").tuples(rows);
                q.push(&upsert);
            })
            .await?;
        }
    }
    // The platform orders' own rows, one INSERT per table and conflict rule
    // (the foreign keys to their orders are checked at the statement's end).
    // Rows that must go in are counted.
    let mut want_claimed = 0_i64;
    for g in group::extra_groups(extras) {
        let (head, tail) = (g.table.insert_head(), sold::conflict_tail(g.unless));
        let count = g.or_duplicate.then_some(Count::Claimed);
        for slice in slices(g.rows) {
            if g.or_duplicate {
                want_claimed += slice.len() as i64;
            }
            w.part(conn, count, &slice, |q, rows| {
                q.push(&head).push(" VALUES ").tuples(rows);
                q.push(&tail);
                if g.or_duplicate {
                    q.push(" RETURNING 1");
                }
            })
            .await?;
        }
    }
    // Keys claimed for orders not written go again, as a rollback would.
    let unused: Vec<Vec<Val>> = claimed
        .difference(&written_keys)
        .map(|(owner, key)| vec![s(owner), s(key)])
        .collect();
    if !unused.is_empty() {
        w.part(conn, None, &unused, |q, rows| {
            q.push("DELETE FROM idempotency_keys t USING ");
            q.values_as(2, rows);
            q.push(" WHERE ").push(&matching(&["key_id", "idem_key"]));
        })
        .await?;
    }
    w.flush(conn).await?;
    let [h, r, c] = w.counted;
    if h != heads.len() as i64 || r != want_reserved {
        return Err(Error::internal(anyhow::anyhow!(
            "the batch's rows changed under its locks: {h} of {} stores, \
             {r} of {want_reserved} items written",
            heads.len()
        )));
    }
    if c != want_claimed {
        // Written by another writer after the batch read them: which order
        // is the duplicate, the direct path finds out, one by one.
        return Err(Error::internal(anyhow::anyhow!(
            "another writer recorded {} of the batch's platform orders meanwhile",
            want_claimed - c
        )));
    }
    Ok(decided)
}

/// Most bytes of values in one write statement: a batch's writes are
/// usually one statement; a batch of long orders is cut in a few, so that
/// no statement holds more than PostgreSQL's 65,535 parameters nor takes
/// the server long to parse. (Statements this large need TCP_NODELAY on the
/// connection, see `db::nodelay_to`, or each waits some 40 ms for the
/// server's delayed ACK.)
const PACK_BYTES: usize = 256 * 1024;

/// What a part's rows are counted as, to check the batch wrote them all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    Heads,
    Items,
    /// Platform orders' rows that must go in.
    Claimed,
}

impl Count {
    const ALL: [Count; 3] = [Count::Heads, Count::Items, Count::Claimed];
}

/// Bytes a value takes in a statement, roughly.
fn size(v: &Val) -> usize {
    match v {
        Val::I(_) => 16,
        Val::S(s) => 12 + s.len(),
        Val::OS(s) => 12 + s.as_ref().map_or(0, String::len),
        Val::OI(_) => 16,
    }
}

fn copy(v: &Val) -> Val {
    match v {
        Val::I(i) => Val::I(*i),
        Val::S(s) => Val::S(s.clone()),
        Val::OS(s) => Val::OS(s.clone()),
        Val::OI(i) => Val::OI(*i),
    }
}

/// A table's rows in slices of at most half of [`PACK_BYTES`] each.
fn slices(rows: Vec<Vec<Val>>) -> Vec<Vec<Vec<Val>>> {
    let mut out: Vec<Vec<Vec<Val>>> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let b: usize = row.iter().map(size).sum();
        match out.last_mut() {
            Some(last) if bytes + b <= PACK_BYTES / 2 => last.push(row),
            _ => {
                bytes = 0;
                out.push(vec![row]);
            }
        }
        bytes += b;
    }
    out
}

/// Data-modifying parts gathered into `WITH p0 AS (…), p1 AS (…) SELECT
/// counts`, executed whenever the next part would not fit.
#[derive(Default)]
struct Packer {
    q: Stmt,
    bytes: usize,
    parts: usize,
    counts: Vec<(usize, Count)>,
    /// Rows of each [`Count`] written by the statements executed so far.
    counted: [i64; 3],
}

impl Packer {
    async fn part(
        &mut self,
        conn: &mut AnyConnection,
        count: Option<Count>,
        rows: &[Vec<Val>],
        build: impl FnOnce(&mut Stmt, Vec<Vec<Val>>),
    ) -> Result<()> {
        let bytes: usize = rows.iter().flatten().map(size).sum();
        if self.parts > 0 && self.bytes + bytes > PACK_BYTES {
            self.flush(conn).await?;
        }
        let n = self.parts;
        self.q.push(if n == 0 { "WITH " } else { ",\n" });
        self.q.push(&format!("p{n} AS ("));
        let rows = rows.iter().map(|r| r.iter().map(copy).collect()).collect();
        build(&mut self.q, rows);
        self.q.push(")");
        if let Some(c) = count {
            self.counts.push((n, c));
        }
        self.parts += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Executes the parts gathered, adding up the rows they counted.
    async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
        if self.parts == 0 {
            return Ok(());
        }
        let terms: Vec<String> = Count::ALL
            .iter()
            .map(|&which| {
                let terms: Vec<String> = self
                    .counts
                    .iter()
                    .filter(|(_, c)| *c == which)
                    .map(|(n, _)| format!("(SELECT count(*) FROM p{n})"))
                    .collect();
                if terms.is_empty() {
                    "0::bigint".to_owned()
                } else {
                    terms.join(" + ")
                }
            })
            .collect();
        let mut q = std::mem::take(&mut self.q);
        q.push(&format!("\nSELECT {}", terms.join(", ")));
        self.parts = 0;
        self.bytes = 0;
        self.counts.clear();
        let row = q.query().fetch_one(&mut *conn).await?;
        for (i, total) in self.counted.iter_mut().enumerate() {
            *total += row.get::<i64, _>(i);
        }
        Ok(())
    }
}
