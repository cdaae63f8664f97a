//! What the two group commits share (`batch.rs` on SQLite, `pgbatch.rs` on
//! PostgreSQL): the jobs on the writer's queue and how a batch is taken off
//! it, the platform orders' duplicate rows, the one plan run over a batch,
//! the rows it built, the answers once the batch has committed, and the
//! direct path for each of its orders when it failed.
//!
//! Each engine reads the batch's facts and writes its rows its own way; what
//! an order comes to is decided here, the same on both.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::FutureExt;
use proto::order::Sku;
use sqlx::AnyConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::plan::{self, Input, Outcome, Planned, Planner, TABLES, Table, Val};
use super::sold::{self, SoldAnswer, SoldOrder};
use super::{Created, IdemKey, NewOrder, create_direct, load};
use crate::db::Db;
use crate::error::{Code, Error, Result};

/// Most orders written in one transaction.
pub(super) const MAX_BATCH: usize = 64;

/// The supervised components' names.
pub const ORDER_WRITER: &str = "order_writer";

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
    /// Batches that failed (an error, a panic, or on PostgreSQL a conflict
    /// with another writer) and so went to the direct path one order at a
    /// time; also `gateway_order_batches_failed_total`.
    pub failed_batches: AtomicU64,
}

impl Faults {
    /// Counts a failed batch.
    pub(super) fn batch_failed(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
        crate::meter::batch_failed();
    }
}

/// Hands orders to a group commit's writer task (`Batcher` on SQLite,
/// `PgBatcher` on PostgreSQL start one).
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Job>,
    faults: Arc<Faults>,
}

/// The writer's end of a [`GroupCommit`]: each run of the supervised writer
/// holds the queue; a dead run's guard drops while it unwinds, so the next
/// run takes the same queue over.
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

impl GroupCommit {
    /// A new queue, its writer's end and the writer's test faults.
    pub(super) fn new() -> (GroupCommit, Queue, Arc<Faults>) {
        let (tx, rx) = mpsc::channel(1024);
        let faults = Arc::new(Faults::default());
        let group = GroupCommit {
            tx,
            faults: Arc::clone(&faults),
        };
        (group, Arc::new(Mutex::new(rx)), faults)
    }

    /// The writer's test faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Orders waiting in the queue, not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Ends when the writer is gone: what SQLite's WAL checkpoint watches.
    pub(super) fn downgrade(&self) -> mpsc::WeakSender<Job> {
        self.tx.downgrade()
    }

    /// Writes an order with the batch it arrives in.
    pub async fn create(&self, new: NewOrder, idem: Option<IdemKey>) -> Result<Created> {
        self.send(|reply| Job::Order {
            new: Box::new(new),
            idem,
            reply,
        })
        .await
    }

    /// Writes a platform's order with the batch it arrives in.
    pub(crate) async fn create_sold(&self, sold: SoldOrder) -> Result<SoldAnswer> {
        self.send(|reply| Job::Sold {
            sold: Box::new(sold),
            reply,
        })
        .await
    }

    /// Queues the job `job(reply)` for the writer and waits for its answer.
    async fn send<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(job(reply))
            .await
            .map_err(|_| Error::unavailable(anyhow::anyhow!("order writer stopped")))?;
        // Dropped unanswered: the writer died with this order in its hands.
        answer.await.map_err(|_| writer_failed())?
    }
}

pub(super) enum Job {
    /// An order priced from the catalog (REST, SOAP, the counter).
    Order {
        new: Box<NewOrder>,
        idem: Option<IdemKey>,
        reply: oneshot::Sender<Result<Created>>,
    },
    /// A platform's order, as channel ingest mapped it.
    Sold {
        sold: Box<SoldOrder>,
        reply: oneshot::Sender<Result<SoldAnswer>>,
    },
}

impl Job {
    pub fn order(&self) -> &NewOrder {
        match self {
            Job::Order { new, .. } => new,
            Job::Sold { sold, .. } => &sold.new,
        }
    }

    /// Its idempotency key (platform orders have none).
    pub fn idem(&self) -> Option<&IdemKey> {
        match self {
            Job::Order { idem, .. } => idem.as_ref(),
            Job::Sold { .. } => None,
        }
    }

    /// The SKUs whose stock the plan reads for it (a platform order's
    /// mapped lines only).
    pub fn skus(&self) -> Vec<&Sku> {
        match self {
            Job::Order { new, .. } => new.lines.iter().map(|l| &l.sku).collect(),
            Job::Sold { sold, .. } => sold
                .lines
                .iter()
                .filter(|l| l.reserve.is_some())
                .map(|l| &l.line.sku)
                .collect(),
        }
    }

    /// Roughly how many bind parameters its rows take.
    pub fn params(&self) -> usize {
        match self {
            Job::Order { new, .. } => 48 + 16 * new.lines.len(),
            Job::Sold { sold, .. } => 96 + 16 * sold.lines.len(),
        }
    }

    /// Answers that the writer failed holding it.
    pub fn failed(self) {
        match self {
            Job::Order { reply, .. } => {
                let _ = reply.send(Err(writer_failed()));
            }
            Job::Sold { reply, .. } => {
                let _ = reply.send(Err(writer_failed()));
            }
        }
    }

    /// Writes it on the direct path in a task of its own (a failed batch's
    /// orders, one by one), which answers its caller.
    pub fn retry(self, db: Db) {
        tokio::spawn(async move {
            match self {
                Job::Order { new, idem, reply } => {
                    let r = AssertUnwindSafe(create_direct(&db, *new, idem))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| Err(panicked(panic)));
                    let _ = reply.send(r);
                }
                Job::Sold { sold, reply } => {
                    let r = AssertUnwindSafe(sold::create_direct(&db, *sold))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| Err(panicked(panic)));
                    let _ = reply.send(r);
                }
            }
        });
    }
}

/// The next batch: `first` and the jobs queued behind it, bounded by
/// [`MAX_BATCH`] and by roughly `max_params` bind parameters.
pub(super) fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, max_params: usize) -> Vec<Job> {
    let mut params = first.params();
    let mut jobs = vec![first];
    while jobs.len() < MAX_BATCH && params < max_params {
        match rx.try_recv() {
            Ok(j) => {
                params += j.params();
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    jobs
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

fn panicked(panic: Box<dyn std::any::Any + Send>) -> Error {
    let cause = crate::supervise::panic_message(panic.as_ref());
    Error::internal(anyhow::anyhow!("writing an order panicked: {cause}"))
}

/// The shape of a [`sold::Seen`]: its table, columns and answer column.
pub(super) type SeenKind = (&'static str, &'static [&'static str], Option<&'static str>);

/// The platform orders' duplicate rows of a batch, grouped by kind (each
/// engine reads a kind's rows in one SELECT), and those found.
pub(super) struct Dups<'a> {
    pub kinds: Vec<(SeenKind, Vec<&'a [String]>)>,
    /// (kind index, values) → the order a present row names.
    found: HashMap<(usize, Vec<String>), Option<String>>,
}

impl<'a> Dups<'a> {
    pub fn of(jobs: &'a [Job]) -> Dups<'a> {
        let mut kinds: Vec<(SeenKind, Vec<&[String]>)> = Vec::new();
        for job in jobs {
            let Job::Sold { sold, .. } = job else {
                continue;
            };
            for s in &sold.seen {
                let kind = (s.table, s.cols, s.answer);
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, vals)) => vals.push(&s.vals),
                    None => kinds.push((kind, vec![&s.vals])),
                }
            }
        }
        Dups {
            kinds,
            found: HashMap::new(),
        }
    }

    /// The number of columns of kind `i`.
    pub fn width(&self, i: usize) -> usize {
        self.kinds.get(i).map_or(0, |((_, cols, _), _)| cols.len())
    }

    /// A row of kind `i` with `vals` is present, naming `answer`.
    pub fn found(&mut self, i: usize, vals: Vec<String>, answer: Option<String>) {
        self.found.insert((i, vals), answer);
    }

    fn key(&self, s: &sold::Seen) -> (usize, Vec<String>) {
        let kind = (s.table, s.cols, s.answer);
        let i = self.kinds.iter().position(|(k, _)| *k == kind).unwrap_or(0);
        (i, s.vals.clone())
    }
}

/// What one job comes to.
pub(super) enum Decided {
    Plan(Outcome),
    /// A platform order seen before, found before planning: the order it
    /// duplicates, when known.
    Seen(Option<String>),
}

impl Decided {
    /// The order planned and to be written, if this is one.
    pub fn written(&self) -> Option<&Planned> {
        match self {
            Decided::Plan(Outcome::Written(p)) => Some(p),
            _ => None,
        }
    }
}

/// The one plan, for every job in arrival order against the running state;
/// a platform order seen before (in the database, as `dups` found, or
/// earlier in this batch) is not planned. Also the platform orders' own
/// rows (their `with`), in the order they came.
pub(super) fn decide(
    planner: &mut Planner,
    jobs: &[Job],
    dups: &mut Dups<'_>,
    now: i64,
) -> Result<(Vec<Decided>, Vec<sold::Extra>)> {
    let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
    let mut extras: Vec<sold::Extra> = Vec::new();
    for (idx, job) in jobs.iter().enumerate() {
        let sold = match job {
            Job::Order { new, idem, .. } => {
                let input = Input {
                    new,
                    idem: idem.as_ref(),
                    sold: None,
                };
                decided.push(Decided::Plan(planner.plan(idx, &input)?));
                continue;
            }
            Job::Sold { sold, .. } => sold,
        };
        if let Some(found) = sold.seen.iter().find_map(|s| dups.found.get(&dups.key(s))) {
            decided.push(Decided::Seen(found.clone()));
            continue;
        }
        let input = Input {
            new: &sold.new,
            idem: None,
            sold: Some(plan::Sold {
                lines: &sold.lines,
                finish: &*sold.finish,
            }),
        };
        let outcome = planner.plan(idx, &input)?;
        if let Outcome::Written(planned) = &outcome {
            // The next platform order with the same rows is its duplicate.
            for s in &sold.seen {
                let id = s.answer.map(|_| planned.order.id.clone());
                let key = dups.key(s);
                dups.found.insert(key, id);
            }
            extras.extend((sold.with)(&planned.order, now));
        }
        decided.push(Decided::Plan(outcome));
    }
    Ok((decided, extras))
}

/// The rows the plan built for the batch's written orders, taken out of
/// them: one list per table of [`TABLES`], in that order.
pub(super) fn rows_by_table(decided: &mut [Decided]) -> Result<Vec<Vec<Vec<Val>>>> {
    let mut by_table: Vec<Vec<Vec<Val>>> = TABLES.iter().map(|_| Vec::new()).collect();
    for d in decided.iter_mut() {
        let Decided::Plan(Outcome::Written(planned)) = d else {
            continue;
        };
        for (table, vals) in std::mem::take(&mut planned.rows) {
            let Some(t) = TABLES.iter().position(|t| t.name == table.name) else {
                return Err(Error::internal(anyhow::anyhow!(
                    "a row for table {}",
                    table.name
                )));
            };
            by_table[t].push(vals);
        }
    }
    Ok(by_table)
}

/// One INSERT of platform orders' rows.
pub(super) struct ExtraGroup {
    pub table: &'static Table,
    /// `ON CONFLICT (these columns) DO NOTHING` ([`sold::Extra::unless`]).
    pub unless: Option<&'static str>,
    /// Every row must go in ([`sold::Extra::or_duplicate`]).
    pub or_duplicate: bool,
    pub rows: Vec<Vec<Val>>,
}

/// The platform orders' rows, one INSERT per table and conflict rule, in
/// the order they first came.
pub(super) fn extra_groups(extras: Vec<sold::Extra>) -> Vec<ExtraGroup> {
    let mut groups: Vec<ExtraGroup> = Vec::new();
    for e in extras {
        match groups.iter_mut().find(|g| {
            g.table.name == e.table.name && g.unless == e.unless && g.or_duplicate == e.or_duplicate
        }) {
            Some(g) => g.rows.push(e.vals),
            None => groups.push(ExtraGroup {
                table: e.table,
                unless: e.unless,
                or_duplicate: e.or_duplicate,
                rows: vec![e.vals],
            }),
        }
    }
    groups
}

/// Committed: answers every job of the batch. `conn` loads the orders
/// that a repeat of a channel order id names.
pub(super) async fn reply(conn: &mut AnyConnection, jobs: &mut Vec<Job>, decided: &[Decided]) {
    let written = |first: usize| decided.get(first).and_then(Decided::written);
    for (job, d) in std::mem::take(jobs).into_iter().zip(decided) {
        match (job, d) {
            (Job::Order { reply, .. }, Decided::Plan(o)) => {
                let _ = reply.send(answer_of(conn, o, written).await);
            }
            (Job::Sold { reply, .. }, d) => {
                let _ = reply.send(sold_answer(d, written));
            }
            (Job::Order { reply, .. }, Decided::Seen(_)) => {
                let _ = reply.send(Err(Error::internal(anyhow::anyhow!(
                    "a catalog order found as a platform's duplicate"
                ))));
            }
        }
    }
}

/// What the caller of a committed batch's order hears; `written(i)` is the
/// batch's `i`th order if it was written (a repeat within the batch points
/// at it).
async fn answer_of<'a>(
    conn: &mut AnyConnection,
    o: &Outcome,
    written: impl Fn(usize) -> Option<&'a Planned>,
) -> Result<Created> {
    match o {
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
        Outcome::Written(planned) => Ok(Created::Order {
            order: Box::new(planned.order.clone()),
            replayed: false,
        }),
        // Both point at an order written by this batch (see `Planner`).
        Outcome::SameKeyAs(first) | Outcome::SameRefAs(first) => match written(*first) {
            Some(planned) if matches!(o, Outcome::SameKeyAs(_)) => Ok(Created::Replay {
                status: 201,
                body: planned.body.clone(),
            }),
            Some(planned) => Ok(Created::Order {
                order: Box::new(planned.order.clone()),
                replayed: true,
            }),
            None => Err(Error::internal(anyhow::anyhow!(
                "batch replay of an unwritten order"
            ))),
        },
    }
}

/// What a platform order of a committed batch comes to; `written` gives the
/// order planned at an earlier index, if it was written.
fn sold_answer<'a>(
    d: &Decided,
    written: impl Fn(usize) -> Option<&'a Planned>,
) -> Result<SoldAnswer> {
    match d {
        Decided::Seen(id) => Ok(SoldAnswer::Duplicate(id.clone())),
        Decided::Plan(Outcome::Written(planned)) => {
            Ok(SoldAnswer::Created(Box::new(planned.order.clone())))
        }
        Decided::Plan(Outcome::Existing(id)) => Ok(SoldAnswer::Duplicate(Some(id.clone()))),
        Decided::Plan(Outcome::SameRefAs(first)) => Ok(SoldAnswer::Duplicate(
            written(*first).map(|p| p.order.id.clone()),
        )),
        Decided::Plan(Outcome::Refused(e)) => {
            Err(Error::new(e.code, e.message.clone()).with_status(e.status))
        }
        Decided::Plan(Outcome::Replay { .. } | Outcome::SameKeyAs(_)) => Err(Error::internal(
            anyhow::anyhow!("a platform order planned as a replay"),
        )),
    }
}
