//! Group commit for SQLite. SQLite has one writer at a time and every
//! statement is a round trip to its worker thread, so orders placed at the
//! same moment are written together: one task reads what the batch needs,
//! checks every order in memory with the same rules as the direct path, and
//! writes all the good ones in one script ending in one COMMIT. Each caller
//! hears back only after that COMMIT.
//!
//! The reads and the write happen inside one `BEGIN IMMEDIATE` transaction
//! on the batcher's own connection, under the process's write gate, so no
//! other writer can change stock in between.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use proto::order::{Money, Sku, StoreId, Unit};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Created, Fresh, IdemKey, ItemFacts, NewOrder, check_line, create_direct, fresh_order, load,
    out_of_stock, prepaid_reference_used,
};
use crate::clock;
use crate::db::{Db, SqliteFile};
use crate::error::{Code, Error, Result};

/// Most orders written in one transaction.
const MAX_BATCH: usize = 64;
/// Rough ceiling of bind parameters in one batch (SQLite's limit is 32766).
const MAX_PARAMS: usize = 16_000;

struct Job {
    new: NewOrder,
    idem: Option<IdemKey>,
    reply: oneshot::Sender<Result<Created>>,
}

/// Hands orders to the batching task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    faults: Arc<Faults>,
}

/// Faults a test arms through the library to make the real writer fail (see
/// ARCHITECTURE.md, supervision). Nothing on the network or in configuration
/// reaches them; unarmed, each costs one atomic load per batch.
#[derive(Default)]
pub struct Faults {
    /// The next batch panics with its transaction open, as a bug in checking
    /// an order would.
    pub panic_in_batch: AtomicBool,
    /// The writer task itself panics after taking the next orders off the
    /// queue.
    pub panic_in_writer: AtomicBool,
    /// While set, the writer fails to start again, so it stays down.
    pub hold_restart: AtomicBool,
}

/// The supervised components' names.
pub const ORDER_WRITER: &str = "order_writer";
pub const WAL_CHECKPOINTER: &str = "wal_checkpointer";

impl Batcher {
    /// Starts the task on a connection of its own, supervised: it is started
    /// again on the same queue if it dies.
    pub async fn start(file: &SqliteFile, db: Db) -> anyhow::Result<Batcher> {
        let (url, gate) = (file.url.as_str(), Arc::clone(&file.gate));
        let mut first = Some(open_writer(url).await?);
        let (tx, rx) = mpsc::channel(1024);
        // Each run of the writer holds the queue; a dead run's guard drops
        // while it unwinds, so the next run takes the same queue over.
        let rx = Arc::new(Mutex::new(rx));
        let faults = Arc::new(Faults::default());
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
        let mut first = Some(open_writer(url).await?);
        let (url, batcher) = (url.to_owned(), tx.downgrade());
        crate::supervise::spawn(&health, WAL_CHECKPOINTER, None, move |up| {
            let conn = first.take();
            let (url, batcher) = (url.clone(), batcher.clone());
            async move {
                let conn = match conn {
                    Some(c) => c,
                    None => open_writer(&url).await?,
                };
                up.ready();
                checkpoint(conn, batcher).await;
                Ok(())
            }
        });
        Ok(Batcher { tx, faults })
    }

    /// The writer's test faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Orders waiting in the queue, not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub async fn create(&self, new: NewOrder, idem: Option<IdemKey>) -> Result<Created> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { new, idem, reply })
            .await
            .map_err(|_| Error::unavailable(anyhow::anyhow!("order writer stopped")))?;
        // Dropped unanswered: the writer died with this order in its hands.
        answer.await.map_err(|_| writer_failed())?
    }
}

/// The answer to an order the writer died holding: 503, safe to retry
/// with the same Idempotency-Key.
fn writer_failed() -> Error {
    let mut e = Error::unavailable(anyhow::anyhow!("order writer failed holding the order"));
    e.code = Code::OrderWriterFailed;
    e.message = "the order writer failed while holding this order, which may or may not \
                 have been recorded; retry with the same Idempotency-Key"
        .into();
    e
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

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Copies the WAL back into the database file on a connection (and so a
/// thread) of its own, so the order writer does not do it inside a commit.
/// PASSIVE never blocks the writer or readers. Writers still checkpoint
/// themselves past 4,000 WAL pages, should this task fall behind. Ends with
/// the batcher.
async fn checkpoint(mut conn: AnyConnection, batcher: mpsc::WeakSender<Job>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if batcher.upgrade().is_none() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    let _ = conn.close().await;
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
        let mut params = 32 + 16 * first.new.lines.len();
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH && params < MAX_PARAMS {
            match rx.try_recv() {
                Ok(j) => {
                    params += 32 + 16 * j.new.lines.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
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
                            let _ = job.reply.send(Err(writer_failed()));
                        }
                        Vec::new()
                    }
                }
            }
        };
        // Outside the gate: the direct path takes it itself.
        for job in retry {
            let db = db.clone();
            tokio::spawn(async move {
                let r = AssertUnwindSafe(create_direct(&db, job.new, job.idem))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        let cause = crate::supervise::panic_message(panic.as_ref());
                        Err(Error::internal(anyhow::anyhow!(
                            "writing an order panicked: {cause}"
                        )))
                    });
                let _ = job.reply.send(r);
            });
        }
    }
}

/// What an order of the batch comes to.
enum Outcome {
    Refused(Error),
    Replay {
        status: u16,
        body: String,
    },
    /// The same idempotency key as an order written earlier in this batch.
    SameKeyAs(usize),
    /// The same channel order id as an order written earlier in this batch.
    SameRefAs(usize),
    /// An order already in the database with this channel order id.
    Existing(String),
    Written(Box<proto::order::Order>),
}

struct StoreState {
    seq: i64,
    display: i64,
    /// An order of this batch went to this store.
    written: bool,
}

struct Stock {
    facts: ItemFacts,
    sellable: i64,
    reserve: i64,
}

async fn write_batch(conn: &mut AnyConnection, jobs: &mut Vec<Job>, now: i64) -> Result<()> {
    let day = clock::business_day(now);
    let mut stores: Vec<StoreId> = jobs.iter().map(|j| j.new.store.clone()).collect();
    stores.sort();
    stores.dedup();
    let mut skus: Vec<Sku> = jobs
        .iter()
        .flat_map(|j| j.new.lines.iter().map(|l| l.sku.clone()))
        .collect();
    skus.sort();
    skus.dedup();
    let keyed: Vec<&IdemKey> = jobs.iter().filter_map(|j| j.idem.as_ref()).collect();
    let refs: Vec<&NewOrder> = jobs
        .iter()
        .map(|j| &j.new)
        .filter(|n| n.channel_order_id.is_some())
        .collect();
    let prepaid: Vec<&super::Prepaid> =
        jobs.iter().filter_map(|j| j.new.prepaid.as_ref()).collect();

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
                "SELECT 'P', p.sku, p.name, p.unit, p.price_fen, i.store_id, i.price_fen,
                        i.available, i.snoozed_until, i.on_hand, i.reserved
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
    let rows = r.query().fetch_all(&mut *conn).await?;

    let mut store_state: HashMap<StoreId, StoreState> = HashMap::new();
    let mut stock: HashMap<(StoreId, Sku), Stock> = HashMap::new();
    let mut products: HashMap<Sku, ItemFacts> = HashMap::new();
    let mut answered: HashMap<(String, String), (String, u16, String)> = HashMap::new();
    let mut existing = Existing::default();
    for r in &rows {
        match r.get::<String, _>(0).as_str() {
            "S" => {
                let id = StoreId::parse(&r.get::<String, _>(1)).map_err(Error::internal)?;
                store_state.insert(
                    id,
                    StoreState {
                        seq: r.get(2),
                        display: r.get(3),
                        written: false,
                    },
                );
            }
            "P" => {
                let sku = Sku::parse(&r.get::<String, _>(1)).map_err(Error::internal)?;
                let base = ItemFacts {
                    name: r.get(2),
                    unit: Unit::parse(&r.get::<String, _>(3)).map_err(Error::internal)?,
                    list_fen: r.get(4),
                    override_fen: None,
                    listed: None,
                    snoozed_until: None,
                };
                products.entry(sku.clone()).or_insert_with(|| base.clone());
                if let Some(store) = r.get::<Option<String>, _>(5) {
                    let store = StoreId::parse(&store).map_err(Error::internal)?;
                    let on_hand: i64 = r.get(9);
                    let reserved: i64 = r.get(10);
                    let facts = ItemFacts {
                        override_fen: r.get(6),
                        listed: Some(r.get::<i64, _>(7) != 0),
                        snoozed_until: r.get(8),
                        ..base
                    };
                    stock.insert(
                        (store, sku),
                        Stock {
                            facts,
                            sellable: on_hand - reserved,
                            reserve: 0,
                        },
                    );
                }
            }
            "K" => {
                let status = u16::try_from(r.get::<i64, _>(4)).unwrap_or(200);
                answered.insert((r.get(1), r.get(2)), (r.get(3), status, r.get(5)));
            }
            "R" => {
                existing
                    .refs
                    .insert((r.get(1), r.get(2), r.get(3), r.get(4)), r.get(5));
            }
            "X" => {
                existing.prepaid.insert((r.get(1), r.get(2)));
            }
            other => {
                return Err(Error::internal(anyhow::anyhow!(
                    "batch read returned a row tagged {other:?}"
                )));
            }
        }
    }

    // Plan every order in arrival order against the running state.
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(jobs.len());
    let mut keys_in_batch: HashMap<(String, String), (usize, String)> = HashMap::new();
    let mut refs_in_batch: HashMap<(StoreId, &'static str, String, String), usize> = HashMap::new();
    let mut prepaid_in_batch: HashSet<(String, String)> = HashSet::new();
    for (idx, job) in jobs.iter().enumerate() {
        let outcome = plan(
            &existing,
            idx,
            job,
            now,
            &day,
            &mut store_state,
            &mut stock,
            &products,
            &answered,
            &mut keys_in_batch,
            &mut refs_in_batch,
            &mut prepaid_in_batch,
        )?;
        outcomes.push(outcome);
    }

    // One script: every write of the batch, then COMMIT.
    let mut w = Script::default();
    for (store, st) in &store_state {
        if st.written {
            w.stmt(
                "UPDATE stores SET event_seq = {}, catalog_rev = catalog_rev + 1 WHERE id = {}",
                vec![Val::I(st.seq), Val::S(store.to_string())],
            );
            w.stmt(
                "INSERT INTO display_counters (store_id, business_day, last_no) VALUES ({}, {}, {})
                 ON CONFLICT (store_id, business_day) DO UPDATE SET last_no = excluded.last_no",
                vec![
                    Val::S(store.to_string()),
                    Val::S(day.clone()),
                    Val::I(st.display),
                ],
            );
        }
    }
    for ((store, sku), s) in &stock {
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
    // One multi-row INSERT per table for the whole batch.
    let (mut orders, mut lines, mut history, mut feed, mut keys, mut prepaid) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut bodies: Vec<Option<String>> = vec![None; outcomes.len()];
    for (idx, o) in outcomes.iter().enumerate() {
        let Outcome::Written(order) = o else { continue };
        let job = &jobs[idx];
        // Serialised once: the idempotent answer, and inside the feed event.
        let body = serde_json::to_string(order.as_ref()).map_err(Error::internal)?;
        orders.push(vec![
            Val::S(order.id.clone()),
            Val::S(order.store_id.to_string()),
            Val::S(order.channel.as_str().to_owned()),
            Val::S(order.platform.clone().unwrap_or_default()),
            Val::OS(order.channel_order_id.clone()),
            Val::I(order.display_no),
            Val::S(order.business_day.clone()),
            Val::S(order.status.as_str().to_owned()),
            Val::S(order.payment_status.as_str().to_owned()),
            Val::I(order.total.fen()),
            Val::OS(order.note.clone()),
            Val::S(job.new.actor.clone()),
            Val::I(now),
            Val::I(now),
            Val::I(order.seq),
        ]);
        for (i, l) in order.lines.iter().enumerate() {
            lines.push(vec![
                Val::S(order.id.clone()),
                Val::I(i as i64 + 1),
                Val::S(l.sku.to_string()),
                Val::S(l.name.clone()),
                Val::S(l.unit.as_str().to_owned()),
                Val::I(l.quantity.milli()),
                Val::I(l.unit_price.fen()),
                Val::I(l.line_total.fen()),
            ]);
        }
        history.push(vec![
            Val::S(order.id.clone()),
            Val::I(now),
            Val::S(job.new.actor.clone()),
            Val::OS(None),
            Val::S(order.status.as_str().to_owned()),
            Val::OS(None),
        ]);
        feed.push(vec![
            Val::S(order.store_id.to_string()),
            Val::I(order.seq),
            Val::S(order.id.clone()),
            Val::S("order.created".to_owned()),
            Val::I(now),
            Val::S(format!(
                "{{\"type\":\"order.created\",\"seq\":{},\"order\":{body}}}",
                order.seq
            )),
        ]);
        if let Some(p) = &job.new.prepaid {
            prepaid.push(vec![
                Val::S(order.id.clone()),
                Val::S(p.provider.clone()),
                Val::S(p.reference.clone()),
                Val::I(p.amount.fen()),
                Val::I(now),
            ]);
        }
        if let Some(k) = &job.idem {
            keys.push(vec![
                Val::S(k.owner.clone()),
                Val::S(k.key.clone()),
                Val::S(k.request_hash.clone()),
                Val::I(201),
                Val::S(body.clone()),
                Val::I(now),
            ]);
        }
        bodies[idx] = Some(body);
    }
    w.rows(
        "INSERT INTO orders (id, store_id, channel, platform, channel_order_id, display_no, business_day,
                             status, payment_status, total_fen, note, created_by, created_at, updated_at, seq)",
        orders,
    );
    w.rows(
        "INSERT INTO order_lines (order_id, line_no, sku, name, unit, qty_milli, unit_price_fen, line_total_fen)",
        lines,
    );
    w.rows(
        "INSERT INTO order_history (order_id, at, by_whom, from_status, to_status, reason)",
        history,
    );
    w.rows(
        "INSERT INTO order_events (store_id, seq, order_id, kind, at, payload)",
        feed,
    );
    w.rows(
        "INSERT INTO prepayments (order_id, provider, reference, amount_fen, created_at)",
        prepaid,
    );
    w.rows(
        "INSERT INTO idempotency_keys (key_id, idem_key, request_hash, status_code, response, created_at)",
        keys,
    );
    w.sql.push_str("COMMIT;");
    w.query().execute(&mut *conn).await?;

    // Committed: answer everyone.
    let mut answers = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        answers.push(match o {
            Outcome::Refused(e) => Err(Error::new(e.code, e.message.clone()).with_status(e.status)),
            Outcome::Replay { status, body } => Ok(Created::Replay {
                status: *status,
                body: body.clone(),
            }),
            Outcome::Existing(id) => load(conn, id).await.and_then(|found| {
                let order =
                    found.ok_or_else(|| Error::internal(anyhow::anyhow!("order {id} vanished")))?;
                Ok(Created::Order {
                    order: Box::new(order),
                    replayed: true,
                })
            }),
            Outcome::Written(order) => Ok(Created::Order {
                order: order.clone(),
                replayed: false,
            }),
            // Both point at an order written by this batch (see `plan`).
            Outcome::SameKeyAs(first) => Ok(Created::Replay {
                status: 201,
                body: bodies[*first].clone().unwrap_or_default(),
            }),
            Outcome::SameRefAs(first) => match &outcomes[*first] {
                Outcome::Written(order) => Ok(Created::Order {
                    order: order.clone(),
                    replayed: true,
                }),
                _ => Err(Error::internal(anyhow::anyhow!(
                    "batch replay of an unwritten order"
                ))),
            },
        });
    }
    for (job, answer) in std::mem::take(jobs).into_iter().zip(answers) {
        let _ = job.reply.send(answer);
    }
    Ok(())
}

/// What the database already holds under keys the batch's orders bring.
#[derive(Default)]
struct Existing {
    /// (store, channel, platform, channel order id) → order id.
    refs: HashMap<(String, String, String, String), String>,
    /// (provider, reference) of prepayments.
    prepaid: HashSet<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
fn plan(
    existing: &Existing,
    idx: usize,
    job: &Job,
    now: i64,
    day: &str,
    stores: &mut HashMap<StoreId, StoreState>,
    stock: &mut HashMap<(StoreId, Sku), Stock>,
    products: &HashMap<Sku, ItemFacts>,
    answered: &HashMap<(String, String), (String, u16, String)>,
    keys_in_batch: &mut HashMap<(String, String), (usize, String)>,
    refs_in_batch: &mut HashMap<(StoreId, &'static str, String, String), usize>,
    prepaid_in_batch: &mut HashSet<(String, String)>,
) -> Result<Outcome> {
    let new = &job.new;
    if let Some(k) = &job.idem {
        let key = (k.owner.clone(), k.key.clone());
        if let Some((hash, status, body)) = answered.get(&key) {
            return Ok(if *hash == k.request_hash {
                Outcome::Replay {
                    status: *status,
                    body: body.clone(),
                }
            } else {
                Outcome::Refused(idem_conflict())
            });
        }
        if let Some((first, hash)) = keys_in_batch.get(&key) {
            return Ok(if *hash == k.request_hash {
                Outcome::SameKeyAs(*first)
            } else {
                Outcome::Refused(idem_conflict())
            });
        }
    }
    let note = new.note.clone();
    if !stores.contains_key(&new.store) {
        return Ok(Outcome::Refused(
            Error::new(Code::UnknownStore, format!("no store {}", new.store)).in_body(),
        ));
    }
    if let Some(r) = &new.channel_order_id {
        let key = (
            new.store.clone(),
            new.channel.as_str(),
            new.platform.clone().unwrap_or_default(),
            r.clone(),
        );
        if let Some(first) = refs_in_batch.get(&key) {
            return Ok(Outcome::SameRefAs(*first));
        }
        let db_key = (
            new.store.to_string(),
            new.channel.as_str().to_owned(),
            new.platform.clone().unwrap_or_default(),
            r.clone(),
        );
        if let Some(id) = existing.refs.get(&db_key) {
            return Ok(Outcome::Existing(id.clone()));
        }
    }

    // Price and check every line, taking stock from a scratch copy first.
    let mut lines = Vec::with_capacity(new.lines.len());
    let mut take: Vec<((StoreId, Sku), i64)> = Vec::new();
    let mut total = Money::ZERO;
    for line in &new.lines {
        let key = (new.store.clone(), line.sku.clone());
        let facts = stock
            .get(&key)
            .map(|s| &s.facts)
            .or_else(|| products.get(&line.sku));
        let priced = match check_line(facts, &new.store, line, now) {
            Ok(l) => l,
            Err(e) => return Ok(Outcome::Refused(e)),
        };
        // Each quantity is at most MAX_MILLI; saturating keeps even absurd sums refusable.
        let already = take
            .iter()
            .filter(|(k, _)| *k == key)
            .fold(0_i64, |a, (_, q)| a.saturating_add(*q));
        let sellable = stock
            .get(&key)
            .map(|s| s.sellable)
            .unwrap_or(0)
            .saturating_sub(already);
        if sellable < priced.quantity.milli() {
            return Ok(Outcome::Refused(out_of_stock(
                &new.store,
                &line.sku,
                priced.quantity,
            )));
        }
        take.push((key, priced.quantity.milli()));
        total = match total.checked_add(priced.line_total) {
            Some(t) => t,
            None => {
                return Ok(Outcome::Refused(Error::new(
                    Code::InvalidQuantity,
                    "order total is too large",
                )));
            }
        };
        lines.push(priced);
    }
    if let Some(p) = &new.prepaid {
        if let Err(e) = p.check_total(total) {
            return Ok(Outcome::Refused(e));
        }
        let key = (p.provider.clone(), p.reference.clone());
        if prepaid_in_batch.contains(&key) || existing.prepaid.contains(&key) {
            return Ok(Outcome::Refused(prepaid_reference_used(p)));
        }
        prepaid_in_batch.insert(key);
    }
    for (key, q) in take {
        if let Some(s) = stock.get_mut(&key) {
            s.sellable -= q;
            s.reserve += q;
        }
    }
    let st = stores
        .get_mut(&new.store)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store state")))?;
    st.seq += 1;
    st.display += 1;
    st.written = true;
    let order = fresh_order(
        new,
        Fresh {
            id: uuid::Uuid::now_v7().to_string(),
            seq: st.seq,
            display_no: st.display,
            day: day.to_owned(),
            lines,
            total,
            note,
            now,
        },
    );
    if let Some(k) = &job.idem {
        keys_in_batch.insert(
            (k.owner.clone(), k.key.clone()),
            (idx, k.request_hash.clone()),
        );
    }
    if let Some(r) = &new.channel_order_id {
        refs_in_batch.insert(
            (
                new.store.clone(),
                new.channel.as_str(),
                new.platform.clone().unwrap_or_default(),
                r.clone(),
            ),
            idx,
        );
    }
    Ok(Outcome::Written(Box::new(order)))
}

fn idem_conflict() -> Error {
    Error::new(
        Code::IdempotencyConflict,
        "this Idempotency-Key was already used with a different request",
    )
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

enum Val {
    I(i64),
    S(String),
    OS(Option<String>),
}

/// A multi-statement script with anonymous `?` parameters, bound in order.
#[derive(Default)]
struct Script {
    sql: String,
    vals: Vec<Val>,
}

impl Script {
    /// Appends `head VALUES (…), (…)` with one parameter per value.
    fn rows(&mut self, head: &str, rows: Vec<Vec<Val>>) {
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
