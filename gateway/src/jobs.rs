//! The scheduler: every periodic job of a gateway (payment sweeper, outbox
//! dispatcher, unconfirmed-order alerts, retention, SQLite's WAL checkpoint)
//! runs here, each on its interval from the configuration. Each run is
//! recorded in `job_runs` (start, end, outcome, error) and in this process's
//! [`Registry`] (`/metrics`); a job that fails [`FAILING_AFTER`] times in a
//! row is shown down by `/readyz` until it succeeds again.
//!
//! A shared job (all but the WAL checkpoint) runs on one instance at a time.
//! On PostgreSQL the holder is the instance holding the job's advisory lock
//! (`pg_try_advisory_lock`) on a connection of its scheduler's own: when
//! the holder dies, its connection closes and the lock goes with it, so the
//! next instance whose turn comes takes the job over — within one interval
//! of the job, whatever the lease time. The holder also writes its row in
//! `job_leases` (for `gateway jobs`) and checks its lock connection each
//! third of the lease time; a run whose connection could not be confirmed
//! within the lease time is stopped rather than let overlap with a new
//! holder's. On SQLite (one file, normally one process) the row in
//! `job_leases` is the lease itself: renewed each third of the lease time,
//! taken over once it expired (within the lease time plus one interval).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::db::Db;
use crate::events::Hub;
pub use crate::job_registry::{JobState, Registry};

/// Failed runs in a row after which readiness shows the job down.
pub const FAILING_AFTER: u32 = 3;
/// Runs of each job kept in `job_runs`.
const KEEP_RUNS: i64 = 100;
/// A successful run is written to `job_runs` at most this often per job (a
/// failure always is): the WAL checkpoint runs ten times a second.
const RECORD_OK_EVERY: Duration = Duration::from_secs(1);

/// The jobs' names, as `gateway jobs`, `/metrics` and `/readyz` show them.
pub const PAYMENT_SWEEPER: &str = "payment_sweeper";
pub const OUTBOX_DISPATCHER: &str = "outbox_dispatcher";
pub const UNCONFIRMED_ALERTS: &str = "unconfirmed_alerts";
pub const RETENTION: &str = "retention";
pub const WAL_CHECKPOINT: &str = "wal_checkpointer";

/// `[jobs]` in the configuration file; each key is optional. The jobs'
/// intervals are their sections' keys: `payments.sweep_ms`,
/// `outbox.poll_ms`, the alert check (from `channels.unconfirmed_alert_s`),
/// `retention.interval_s`; the WAL checkpoint's is here.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    /// How long a job's lease lasts without renewal (default 3000 ms). On
    /// SQLite: how soon another process may take a dead holder's jobs
    /// over. On PostgreSQL (advisory locks, taken over within one interval)
    /// how long a holder runs its jobs without confirming its lock
    /// connection.
    pub lease_ms: Option<u64>,
    /// This instance's name in `job_leases` and `job_runs` (default
    /// `host/pid/n`). Give each instance its own.
    pub instance: Option<String>,
    /// How often SQLite's WAL is copied back into the database file
    /// (default 100 ms).
    pub wal_checkpoint_ms: Option<u64>,
}

/// The checked `[jobs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    pub lease: Duration,
    pub instance: Option<String>,
    pub wal_checkpoint: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            lease: Duration::from_millis(3000),
            instance: None,
            wal_checkpoint: Duration::from_millis(100),
        }
    }
}

impl JobsConfig {
    pub fn load(f: Option<&JobsFile>) -> anyhow::Result<JobsConfig> {
        let d = JobsConfig::default();
        let Some(f) = f else { return Ok(d) };
        let ms = |key: &str, v: Option<u64>, min: u64, default: Duration| match v {
            None => Ok(default),
            Some(n) if (min..=3_600_000).contains(&n) => Ok(Duration::from_millis(n)),
            Some(n) => Err(anyhow::anyhow!(
                "{key} must be {min}-3600000 (milliseconds), got {n}"
            )),
        };
        let instance = match f.instance.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(i) => {
                anyhow::ensure!(
                    i.len() <= 100 && i.chars().all(|c| c.is_ascii_graphic()),
                    "instance must be 1-100 printable ASCII characters without spaces"
                );
                Some(i.to_owned())
            }
        };
        Ok(JobsConfig {
            lease: ms("lease_ms", f.lease_ms, 300, d.lease)?,
            instance,
            wal_checkpoint: ms(
                "wal_checkpoint_ms",
                f.wal_checkpoint_ms,
                10,
                d.wal_checkpoint,
            )?,
        })
    }
}

/// What one run of a job says.
pub enum Ran {
    /// Done; run again at the next turn.
    Done,
    /// What the job served is gone (the SQLite writer stopped): it ends.
    Finished,
}

type RunFn = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<Ran>> + Send + Sync>;

/// One periodic job.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    first_after: Duration,
    shared: bool,
    wake: Option<Hub>,
    run: RunFn,
}

impl Job {
    /// A shared job (one instance at a time) running `run` every `every`,
    /// the first time at once.
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Ran>> + Send + 'static,
    {
        Job {
            name,
            every,
            first_after: Duration::ZERO,
            shared: true,
            wake: None,
            run: Arc::new(move || run().boxed()),
        }
    }

    /// The first run waits this long.
    pub fn first_after(mut self, wait: Duration) -> Job {
        self.first_after = wait;
        self
    }

    /// This process's own job (every instance runs it; no lease).
    pub fn local(mut self) -> Job {
        self.shared = false;
        self
    }

    /// The holder also runs it early when a store's feed moves (the outbox:
    /// an action may have written a row).
    pub fn woken_by(mut self, hub: &Hub) -> Job {
        self.wake = Some(hub.clone());
        self
    }
}

/// A name for this process's scheduler in the lease table: the host, the
/// process id, and a number per scheduler.
fn default_instance() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_owned());
    format!(
        "{host}/{}/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The leases this scheduler holds, each until when (locally) it is sure of it.
struct Leases {
    db: Db,
    holder: String,
    lease: Duration,
    sure_until: Mutex<HashMap<&'static str, Instant>>,
    /// PostgreSQL: the session holding this scheduler's advisory locks.
    locks: Option<tokio::sync::Mutex<LockSession>>,
}

/// A connection of the scheduler's own (out of the pool) and the jobs whose
/// advisory locks it holds. Dropping the connection gives them all up.
#[derive(Default)]
struct LockSession {
    conn: Option<AnyConnection>,
    held: HashSet<&'static str>,
}

/// The advisory lock class of the scheduler's jobs (`pg_try_advisory_lock(
/// class, hashtext(name))`): "jobs" in ASCII.
const LOCK_CLASS: i32 = 0x6a6f_6273;

impl LockSession {
    /// The session's connection, opened (out of the pool) if need be.
    async fn conn(&mut self, db: &Db) -> anyhow::Result<&mut AnyConnection> {
        if self.conn.is_none() {
            self.held.clear();
            let c = db.pool.acquire().await?.detach();
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no lock connection"))
    }

    /// Forgets the connection after an error: its locks are gone (or go
    /// when PostgreSQL sees it closed).
    fn broken(&mut self) {
        self.conn = None;
        self.held.clear();
    }

    /// Takes `name`'s lock if it is free, or confirms the session still
    /// holds it. True when this session holds it now.
    async fn take(&mut self, db: &Db, name: &'static str) -> anyhow::Result<bool> {
        let had = self.held.contains(name);
        let conn = self.conn(db).await?;
        let got = if had {
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query("SELECT pg_try_advisory_lock($1, hashtext($2))")
                .bind(LOCK_CLASS)
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .map(|r| r.get::<bool, _>(0))
        };
        match got {
            Ok(true) => {
                self.held.insert(name);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.broken();
                Err(e.into())
            }
        }
    }
}

impl Leases {
    /// How long after a renewal this process still counts on the lease: a
    /// quarter of the lease is left for clocks and a slow answer.
    fn trust(&self) -> Duration {
        self.lease * 3 / 4
    }

    fn micros(d: Duration) -> i64 {
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }

    fn sure(&self, name: &'static str) -> bool {
        self.sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .is_some_and(|t| *t > Instant::now())
    }

    /// Takes the job's lease if it is free or expired, or keeps it if this
    /// scheduler holds it. True when this scheduler holds it now.
    async fn acquire(&self, name: &'static str, next_at: i64) -> anyhow::Result<bool> {
        if let Some(locks) = &self.locks {
            return self.acquire_locked(locks, name, next_at).await;
        }
        let asked = Instant::now();
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let row = sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at, next_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 expires_at = excluded.expires_at, next_at = excluded.next_at
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < $5
             RETURNING holder",
        )
        .bind(name)
        .bind(self.holder.clone())
        .bind(now.saturating_add(Self::micros(self.lease)))
        .bind(next_at)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        tx.commit().await?;
        let mut sure = self
            .sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if row.is_some() {
            sure.insert(name, asked + self.trust());
        } else {
            sure.remove(name);
        }
        Ok(row.is_some())
    }

    /// PostgreSQL: takes the job's advisory lock (or confirms it), and
    /// writes this scheduler in its `job_leases` row as the holder.
    async fn acquire_locked(
        &self,
        locks: &tokio::sync::Mutex<LockSession>,
        name: &'static str,
        next_at: i64,
    ) -> anyhow::Result<bool> {
        let asked = Instant::now();
        let taken = locks.lock().await.take(&self.db, name).await;
        let holding = match taken {
            Ok(h) => h,
            Err(e) => {
                self.forget_all();
                return Err(e);
            }
        };
        if !holding {
            self.forget(name);
            return Ok(false);
        }
        self.confirmed(&[name], asked);
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at, next_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 expires_at = excluded.expires_at, next_at = excluded.next_at",
        )
        .bind(name)
        .bind(self.holder.clone())
        .bind(now.saturating_add(Self::micros(self.lease)))
        .bind(next_at)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    fn forget(&self, name: &'static str) {
        self.sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn forget_all(&self) {
        self.sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// `names` were confirmed as of `asked`.
    fn confirmed(&self, names: &[&'static str], asked: Instant) {
        let mut sure = self
            .sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for name in names {
            sure.insert(name, asked + self.trust());
        }
    }

    /// PostgreSQL: confirms the lock connection (its locks with it) and
    /// renews the rows in `job_leases` the listing shows.
    async fn renew_locked(&self, locks: &tokio::sync::Mutex<LockSession>) -> anyhow::Result<()> {
        let asked = Instant::now();
        let held: Vec<&'static str> = {
            let mut session = locks.lock().await;
            if session.held.is_empty() {
                return Ok(());
            }
            let ping = match session.conn.as_mut() {
                Some(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await,
                None => return Ok(()),
            };
            if let Err(e) = ping {
                session.broken();
                drop(session);
                self.forget_all();
                return Err(anyhow::Error::from(e).context("the job lock connection was lost"));
            }
            session.held.iter().copied().collect()
        };
        self.confirmed(&held, asked);
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        sqlx::query("UPDATE job_leases SET expires_at = $1 WHERE holder = $2")
            .bind(now.saturating_add(Self::micros(self.lease)))
            .bind(self.holder.clone())
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Renews every lease this scheduler holds.
    async fn renew(&self) -> anyhow::Result<()> {
        if let Some(locks) = &self.locks {
            return self.renew_locked(locks).await;
        }
        let asked = Instant::now();
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let rows = sqlx::query(
            "UPDATE job_leases SET expires_at = $1 WHERE holder = $2 AND expires_at >= $3
             RETURNING name",
        )
        .bind(now.saturating_add(Self::micros(self.lease)))
        .bind(self.holder.clone())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        tx.commit().await?;
        let mut sure = self
            .sure_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A lease not renewed here (taken over after it expired, or taken by
        // this scheduler after this statement) keeps the time it was last
        // confirmed until: nobody else can take it before then.
        for r in rows {
            let name: String = r.get(0);
            if let Some(until) = sure.iter_mut().find_map(|(n, t)| (*n == name).then_some(t)) {
                *until = asked + self.trust();
            }
        }
        Ok(())
    }

    /// Resolves once this scheduler can no longer be sure of `name`'s lease.
    async fn lost(&self, name: &'static str) {
        let step = (self.lease / 6).max(Duration::from_millis(20));
        while self.sure(name) {
            tokio::time::sleep(step).await;
        }
    }

    /// Gives every lease up (shutdown): another instance may take the jobs
    /// over at its next turn.
    async fn release(&self) -> anyhow::Result<()> {
        if let Some(locks) = &self.locks {
            let mut session = locks.lock().await;
            if let Some(conn) = session.conn.take() {
                // Closing the session gives its locks up.
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %e, "closing the job lock connection");
                }
            }
            session.held.clear();
        }
        self.forget_all();
        let mut tx = self.db.write().await?;
        sqlx::query("UPDATE job_leases SET expires_at = 0 WHERE holder = $1")
            .bind(self.holder.clone())
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Starts `jobs` on a scheduler of their own, supervised as `task` (its
/// jobs show in `/readyz` by their names). It stops at `closing` (giving its
/// leases up), or once every job has finished; the handle ends then.
pub fn start(
    db: &Db,
    task: &'static str,
    config: &JobsConfig,
    jobs: Vec<Job>,
    closing: Option<watch::Receiver<bool>>,
) -> tokio::task::JoinHandle<()> {
    let leases = Arc::new(Leases {
        db: db.clone(),
        holder: config.instance.clone().unwrap_or_else(default_instance),
        lease: config.lease,
        sure_until: Mutex::new(HashMap::new()),
        locks: (db.backend == crate::db::Backend::Postgres)
            .then(|| tokio::sync::Mutex::new(LockSession::default())),
    });
    tracing::info!(
        instance = %leases.holder,
        jobs = ?jobs.iter().map(|j| (j.name, j.every)).collect::<Vec<_>>(),
        "scheduler on"
    );
    for j in &jobs {
        db.health().report(j.name, true, None);
    }
    let (_never, never_closing) = watch::channel(false);
    let closing_for_supervisor = closing.clone();
    let closing = closing.unwrap_or(never_closing);
    crate::supervise::spawn(db.health(), task, closing_for_supervisor, move |up| {
        let (jobs, leases, mut closing) = (jobs.clone(), Arc::clone(&leases), closing.clone());
        async move {
            up.ready();
            let any_shared = jobs.iter().any(|j| j.shared);
            let loops = futures::future::join_all(
                jobs.into_iter()
                    .map(|j| job_loop(Arc::clone(&leases), j, closing.clone())),
            );
            let keeper = async {
                if !any_shared {
                    return std::future::pending().await;
                }
                let mut tick = tokio::time::interval(leases.lease / 3);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = leases.renew().await {
                        tracing::warn!(error = %format!("{e:#}"), "cannot renew the job leases");
                    }
                }
            };
            tokio::select! {
                _ = loops => {}
                () = keeper => {}
                _ = closing.wait_for(|c| *c) => {}
            }
            if any_shared && let Err(e) = leases.release().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot give the job leases up");
            }
            Ok(())
        }
    })
}

/// Waits for the next turn: the due time, an early wake-up, or shutdown
/// (false).
async fn wait_turn(
    due: Instant,
    wake: &mut Option<broadcast::Receiver<proto::order::StoreId>>,
    closing: &mut watch::Receiver<bool>,
    holding: bool,
) -> bool {
    let sleep = tokio::time::sleep_until(due);
    tokio::pin!(sleep);
    enum Turn {
        Due,
        Closing,
        Woken(Option<Result<proto::order::StoreId, broadcast::error::RecvError>>),
    }
    loop {
        let woken = async {
            match wake.as_mut() {
                Some(w) if holding => Some(w.recv().await),
                _ => std::future::pending().await,
            }
        };
        let closed = async {
            let _ = closing.wait_for(|c| *c).await;
        };
        let turn = tokio::select! {
            _ = &mut sleep => Turn::Due,
            () = closed => Turn::Closing,
            got = woken => Turn::Woken(got),
        };
        match turn {
            Turn::Due => return !*closing.borrow(),
            Turn::Closing => return false,
            Turn::Woken(Some(Err(broadcast::error::RecvError::Closed))) => *wake = None,
            Turn::Woken(_) => {
                // Let the writer's siblings land too, then drain the wake-ups.
                tokio::time::sleep(Duration::from_millis(2)).await;
                if let Some(w) = wake.as_mut() {
                    while w.try_recv().is_ok() {}
                }
                return !*closing.borrow();
            }
        }
    }
}

async fn job_loop(leases: Arc<Leases>, job: Job, mut closing: watch::Receiver<bool>) {
    let db = leases.db.clone();
    let registry = db.jobs().clone();
    let every_us = Leases::micros(job.every);
    registry.update(job.name, |s| {
        s.every_ms = u64::try_from(job.every.as_millis()).unwrap_or(u64::MAX);
        s.shared = job.shared;
        s.holding = !job.shared;
        s.next_at = Some(
            db.now_micros()
                .saturating_add(Leases::micros(job.first_after)),
        );
    });
    let mut wake = job.wake.as_ref().map(Hub::subscribe);
    let mut due = Instant::now() + job.first_after;
    let mut recorded: Option<(Instant, bool)> = None;
    let mut holding = !job.shared;
    loop {
        if !wait_turn(due, &mut wake, &mut closing, holding).await {
            return;
        }
        due = Instant::now() + job.every;
        let next_at = db.now_micros().saturating_add(every_us);
        if job.shared {
            // The holder skips the round trip while its lease is fresh.
            let fresh = holding && leases.sure(job.name);
            holding = fresh
                || match leases.acquire(job.name, next_at).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(job = job.name, error = %format!("{e:#}"), "cannot take the job's lease");
                        false
                    }
                };
            registry.update(job.name, |s| {
                s.holding = holding;
                s.next_at = Some(next_at);
            });
            if !holding {
                continue;
            }
        }
        let started = db.now_micros();
        registry.update(job.name, |s| s.last_started_at = Some(started));
        let run = AssertUnwindSafe((job.run)()).catch_unwind();
        let outcome = if job.shared {
            tokio::select! {
                r = run => r.map_err(|p| format!("panicked: {}", crate::supervise::panic_message(p.as_ref()))),
                () = leases.lost(job.name) => Ok(Err(anyhow::anyhow!(
                    "stopped: its lease could not be renewed in time"
                ))),
            }
        } else {
            run.await
                .map_err(|p| format!("panicked: {}", crate::supervise::panic_message(p.as_ref())))
        };
        let ended = db.now_micros();
        let (finished, error) = match outcome {
            Ok(Ok(Ran::Done)) => (false, None),
            Ok(Ok(Ran::Finished)) => (true, None),
            Ok(Err(e)) => (false, Some(format!("failed: {e:#}"))),
            Err(panic) => (false, Some(panic)),
        };
        let ok = error.is_none();
        let mut failing = 0;
        registry.update(job.name, |s| {
            s.last_ended_at = Some(ended);
            s.last_outcome = Some(if ok { "ok" } else { "failed" });
            s.next_at = Some(next_at);
            if ok {
                s.runs_ok += 1;
                s.failing = 0;
            } else {
                s.runs_failed += 1;
                s.failing = s.failing.saturating_add(1);
                s.last_error = error.clone();
            }
            failing = s.failing;
        });
        if let Some(why) = &error {
            tracing::warn!(job = job.name, failing, cause = %why, "job run failed");
        }
        db.health()
            .report(job.name, failing < FAILING_AFTER, error.clone());
        let record =
            !ok || recorded.is_none_or(|(at, was_ok)| !was_ok || at.elapsed() >= RECORD_OK_EVERY);
        if record {
            match record_run(
                &db,
                job.name,
                &leases.holder,
                started,
                ended,
                error.as_deref(),
            )
            .await
            {
                Ok(()) => recorded = Some((Instant::now(), ok)),
                Err(e) => {
                    tracing::warn!(job = job.name, error = %format!("{e:#}"), "cannot record the job's run")
                }
            }
        }
        if finished {
            registry.with(|m| m.remove(job.name));
            db.health().remove(job.name);
            return;
        }
    }
}

/// Adds a run to `job_runs` and drops the job's runs beyond the newest
/// [`KEEP_RUNS`].
async fn record_run(
    db: &Db,
    name: &str,
    holder: &str,
    started: i64,
    ended: i64,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let mut tx = db.write().await?;
    sqlx::query(
        "INSERT INTO job_runs (name, holder, started_at, ended_at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(name.to_owned())
    .bind(holder.to_owned())
    .bind(started)
    .bind(ended)
    .bind(if error.is_none() { "ok" } else { "failed" })
    .bind(error.map(|e| e.chars().take(2000).collect::<String>()))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM job_runs WHERE name = $1 AND id <= (SELECT id FROM job_runs
         WHERE name = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(name.to_owned())
    .bind(KEEP_RUNS)
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One job as `gateway jobs` lists it, from the database (every instance's
/// runs) and the configuration (its interval).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    pub every_ms: Option<u64>,
    /// µs since the epoch.
    pub last_started_at: Option<i64>,
    pub last_ended_at: Option<i64>,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub next_at: Option<i64>,
    pub holder: Option<String>,
    pub lease_expires_at: Option<i64>,
}

/// Every job configured (`planned`, with its interval) or seen in the
/// database.
pub async fn list(db: &Db, planned: &[(&'static str, Duration)]) -> anyhow::Result<Vec<Listed>> {
    let mut out: BTreeMap<String, Listed> = BTreeMap::new();
    fn get<'a>(out: &'a mut BTreeMap<String, Listed>, name: &str) -> &'a mut Listed {
        out.entry(name.to_owned()).or_insert_with(|| Listed {
            name: name.to_owned(),
            every_ms: None,
            last_started_at: None,
            last_ended_at: None,
            last_outcome: None,
            last_error: None,
            last_error_at: None,
            next_at: None,
            holder: None,
            lease_expires_at: None,
        })
    }
    for (name, every) in planned {
        get(&mut out, name).every_ms = u64::try_from(every.as_millis()).ok();
    }
    for r in sqlx::query("SELECT name, holder, expires_at, next_at FROM job_leases")
        .fetch_all(&db.pool)
        .await?
    {
        let l = get(&mut out, &r.get::<String, _>(0));
        l.holder = Some(r.get(1));
        l.lease_expires_at = Some(r.get(2));
        l.next_at = r.get(3);
    }
    for r in sqlx::query(
        "SELECT name, started_at, ended_at, outcome FROM job_runs
         WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY name)",
    )
    .fetch_all(&db.pool)
    .await?
    {
        let l = get(&mut out, &r.get::<String, _>(0));
        l.last_started_at = Some(r.get(1));
        l.last_ended_at = Some(r.get(2));
        l.last_outcome = Some(r.get(3));
    }
    for r in sqlx::query(
        "SELECT name, error, ended_at FROM job_runs
         WHERE id IN (SELECT MAX(id) FROM job_runs WHERE outcome <> 'ok' GROUP BY name)",
    )
    .fetch_all(&db.pool)
    .await?
    {
        let l = get(&mut out, &r.get::<String, _>(0));
        l.last_error = r.get(1);
        l.last_error_at = Some(r.get(2));
    }
    // The holder writes `next_at` when it takes or re-takes the lease; its
    // interval after the last run's start is the better guess once that is
    // older.
    for l in out.values_mut() {
        if let (Some(start), Some(ms)) = (l.last_started_at, l.every_ms) {
            let guess =
                start.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1000));
            l.next_at = Some(l.next_at.map_or(guess, |n| n.max(guess)));
        }
    }
    Ok(out.into_values().collect())
}

/// `gateway jobs` as a table, times relative to `now` (µs).
pub fn table(jobs: &[Listed], now: i64) -> String {
    let ago = |t: Option<i64>| match t {
        None => "-".to_owned(),
        Some(t) if t <= now => format!("{} ago", human(now - t)),
        Some(t) => format!("in {}", human(t - now)),
    };
    let mut out = format!(
        "{:<20} {:>9}  {:<14} {:<8} {:<14} {:<28} {}\n",
        "JOB", "EVERY", "LAST RUN", "OUTCOME", "NEXT RUN", "HOLDER", "LAST ERROR"
    );
    for j in jobs {
        let holder = match (&j.holder, j.lease_expires_at) {
            (Some(h), Some(e)) if e < now => format!("{h} (expired)"),
            (Some(h), _) => h.clone(),
            (None, _) if j.name == WAL_CHECKPOINT => "(each instance)".to_owned(),
            (None, _) => "-".to_owned(),
        };
        let error = match (&j.last_error, j.last_error_at) {
            (Some(e), at) => format!("{} ({})", e, ago(at)),
            (None, _) => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<20} {:>9}  {:<14} {:<8} {:<14} {:<28} {}\n",
            j.name,
            j.every_ms.map_or("-".to_owned(), |ms| human(
                i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1000)
            )),
            ago(j.last_started_at),
            j.last_outcome.as_deref().unwrap_or("-"),
            ago(j.next_at),
            holder,
            error
        ));
    }
    out
}

/// A span of µs as `250ms`, `12s`, `5m`, `3h`.
fn human(us: i64) -> String {
    let ms = us / 1000;
    match ms {
        ..1_000 => format!("{ms}ms"),
        1_000..120_000 => format!("{}s", ms / 1000),
        120_000..7_200_000 => format!("{}m", ms / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds() {
        assert_eq!(JobsConfig::load(None).unwrap(), JobsConfig::default());
        let f = JobsFile {
            lease_ms: Some(100),
            ..Default::default()
        };
        assert!(JobsConfig::load(Some(&f)).is_err());
        let f = JobsFile {
            instance: Some("a b".into()),
            ..Default::default()
        };
        assert!(JobsConfig::load(Some(&f)).is_err());
        let f = JobsFile {
            lease_ms: Some(5000),
            instance: Some("gw-1".into()),
            wal_checkpoint_ms: Some(250),
        };
        let c = JobsConfig::load(Some(&f)).unwrap();
        assert_eq!(c.lease, Duration::from_secs(5));
        assert_eq!(c.instance.as_deref(), Some("gw-1"));
        assert_eq!(c.wal_checkpoint, Duration::from_millis(250));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_that_keeps_failing_is_down_recorded_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/g.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate_up().await.unwrap();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = Arc::clone(&fail);
        let job = Job::new(RETENTION, Duration::from_millis(20), move || {
            let f = Arc::clone(&f);
            async move {
                anyhow::ensure!(!f.load(Ordering::SeqCst), "the disk is full");
                Ok(Ran::Done)
            }
        });
        let config = JobsConfig {
            instance: Some("gw-test".into()),
            ..JobsConfig::default()
        };
        let (close_tx, close_rx) = watch::channel(false);
        let task = start(&db, "test_jobs", &config, vec![job], Some(close_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while db.health().is_up(RETENTION) != Some(false) {
            assert!(std::time::Instant::now() < deadline, "never down");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = db.jobs().snapshot()[RETENTION].clone();
        assert!(state.failing >= FAILING_AFTER && state.holding, "{state:?}");
        let listed = list(&db, &[(RETENTION, Duration::from_millis(20))])
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].holder.as_deref(), Some("gw-test"));
        assert_eq!(listed[0].last_outcome.as_deref(), Some("failed"));
        assert_eq!(
            listed[0].last_error.as_deref(),
            Some("failed: the disk is full")
        );
        let text = table(&listed, db.now_micros());
        assert!(
            text.contains("gw-test") && text.contains("the disk is full"),
            "{text}"
        );
        let mut metrics = String::new();
        db.jobs().render_metrics(&mut metrics);
        assert!(
            metrics.contains("gateway_job_holding{job=\"retention\"} 1"),
            "{metrics}"
        );
        // It recovers with its next good run.
        fail.store(false, Ordering::SeqCst);
        while db.health().is_up(RETENTION) != Some(true) {
            assert!(std::time::Instant::now() < deadline, "never up again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        close_tx.send(true).unwrap();
        task.await.unwrap();
        let expires: i64 = sqlx::query("SELECT expires_at FROM job_leases WHERE name = $1")
            .bind(RETENTION)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(expires, 0, "the lease is given up at shutdown");
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(human(250_000), "250ms");
        assert_eq!(human(12_000_000), "12s");
        assert_eq!(human(600_000_000), "10m");
        assert_eq!(human(7_200_000_000), "2h");
    }
}
