//! The running gateway assembled from its [`Config`]: the state every
//! handler shares, with every configured background task started. Reads no
//! environment; the configuration is loaded once, in [`crate::config`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;
use crate::db::Db;
use crate::events::Hub;
use crate::http::{Limits, Streams};
use crate::keys::KeyCache;

/// The state `serve` runs with: the order writer (SQLite's group commit),
/// the edge settings, payments, channels (their stores registered) and
/// retention, with every periodic job (payment sweeper, outbox dispatcher,
/// alert check, retention, WAL checkpoint) on one scheduler, and on
/// PostgreSQL the feed listener. Fails, rather than serving without a
/// configured part, if one cannot start.
pub async fn build(
    config: &Config,
    db: Db,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<AppState> {
    let mut state = AppState::new(db, closing);
    let mut jobs = Vec::new();
    if let Some(payments) = &config.payments {
        tracing::info!(config = ?payments, "payments on");
        let p = crate::payments::Payments::new(payments, state.db.clone(), state.hub.clone())
            .context("[payments]")?;
        p.stop_at(state.closing.clone());
        jobs.push(crate::payments::Payments::sweeper_job(
            &p,
            payments.sweep_interval,
        ));
        state.payments = Some(p);
    }
    let (writer, checkpoint) = crate::orders::Writer::start_jobs(&state.db)
        .await
        .context("starting the order writer")?;
    state.orders = writer;
    if let Some(mut checkpoint) = checkpoint {
        checkpoint.every = config.jobs.wal_checkpoint;
        jobs.push(checkpoint);
    }
    config.edge.clone().apply(&mut state);
    if let Some(channels) = &config.channels {
        tracing::info!(config = ?channels, "channels on");
        let c = crate::channels::Channels::new(channels.clone(), state.db.clone())
            .context("[channels]")?;
        c.register_stores(&state.db).await.context("[channels]")?;
        jobs.extend(c.jobs(&state.db, &state.hub));
        state.channels = Some(c);
    }
    tracing::info!(config = ?config.retention, "retention on");
    jobs.push(crate::retention::job(
        state.db.clone(),
        state.hub.clone(),
        config.retention.clone(),
        Arc::clone(&state.retention),
    ));
    let scheduler = crate::jobs::start(
        &state.db,
        "scheduler",
        &config.jobs,
        jobs,
        Some(state.closing.clone()),
    );
    *state
        .scheduler
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(scheduler);
    if config.feed_notify && state.db.backend == crate::db::Backend::Postgres {
        crate::events::listen(&config.database_url, &state.db, &state.hub, &state.closing);
    }
    Ok(state)
}

/// The jobs `serve` runs with this configuration, with their intervals
/// (`gateway jobs`).
pub fn job_intervals(config: &Config, sqlite: bool) -> Vec<(&'static str, Duration)> {
    let mut out = Vec::new();
    if let Some(p) = &config.payments {
        out.push((crate::jobs::PAYMENT_SWEEPER, p.sweep_interval));
    }
    if sqlite {
        out.push((crate::jobs::WAL_CHECKPOINT, config.jobs.wal_checkpoint));
    }
    if let Some(c) = &config.channels {
        out.push((crate::jobs::OUTBOX_DISPATCHER, c.outbox.poll));
        out.push((crate::jobs::UNCONFIRMED_ALERTS, c.alert_check));
    }
    out.push((crate::jobs::RETENTION, config.retention.every));
    out
}

/// What every handler gets: one `Arc`, so the per-request clone axum makes
/// of its state is one reference count, not one per part (it was ~3% of a
/// loaded gateway's CPU, measured with perf under loadgen). Reads go through
/// `Deref`; a change (`state.payments = …`, before serving) through
/// `DerefMut`, which copies the parts first if another handle shares them.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppParts {
    pub db: Db,
    pub hub: Hub,
    /// How new orders are written (the SQLite group commit, when started).
    pub orders: crate::orders::Writer,
    pub keys: KeyCache,
    /// Open feed streams per key (capped by `inner.limits`).
    pub streams: Streams,
    /// Turns true when the server is shutting down; long streams end.
    pub closing: watch::Receiver<bool>,
    pub inner: Arc<Inner>,
    /// Payment-code charges; `None` when no provider is configured.
    pub payments: Option<Arc<crate::payments::Payments>>,
    /// Delivery platforms; `None` when none is configured.
    pub channels: Option<Arc<crate::channels::Channels>>,
    /// What retention pruned (its loop starts with [`AppState::start_retention`]).
    pub retention: Arc<crate::retention::Stats>,
    /// The scheduler [`build`] started, awaited by [`AppState::finish_jobs`].
    pub scheduler: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct Inner {
    /// How often feed readers look for changes made by other instances.
    pub feed_poll: Duration,
    /// Timeouts and caps for clients (see [`Limits`]).
    pub limits: Limits,
    /// This gateway's public base URL (`https://gw.example.com`): what
    /// signed pushes are checked against and the WSDL names. `serve` fills
    /// it from the listening address when it is not configured.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-Host`/`-Proto`/`-For` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AppState {
    /// The state with the given payments configuration (`None`: off),
    /// failing if it cannot start, rather than serving without them.
    pub fn with_payments(
        db: Db,
        closing: watch::Receiver<bool>,
        payments: Option<crate::payments::PaymentsConfig>,
    ) -> anyhow::Result<Self> {
        let mut state = AppState::new(db, closing);
        if let Some(config) = payments {
            tracing::info!(?config, "payments on");
            state.payments = Some(crate::payments::Payments::start(
                &config,
                state.db.clone(),
                state.hub.clone(),
                state.closing.clone(),
            )?);
        }
        Ok(state)
    }

    /// A state with nothing optional configured: no payments, no channels,
    /// default limits, no retention loop. It reads no environment; tests
    /// set what they need on it.
    pub fn new(db: Db, closing: watch::Receiver<bool>) -> Self {
        AppState(Arc::new(AppParts {
            db,
            hub: Hub::default(),
            orders: crate::orders::Writer::direct(),
            keys: KeyCache::default(),
            streams: Streams::default(),
            closing,
            inner: Arc::new(Inner {
                feed_poll: Duration::from_millis(1000),
                limits: Limits::default(),
                public_url: None,
                trusted_proxies: Vec::new(),
            }),
            payments: None,
            channels: None,
            retention: Arc::default(),
            scheduler: Arc::default(),
        }))
    }

    /// After `closing`: waits (5 s at most) until the scheduler has stopped
    /// and given its job leases up, so another instance may take the jobs
    /// over at once.
    pub async fn finish_jobs(&self) {
        let task = self
            .scheduler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("the scheduler did not stop within 5 s");
        }
    }

    /// Starts pruning old rows on the configured schedule (`serve` does;
    /// tests that want it call it).
    pub fn start_retention(&self, config: crate::retention::RetentionConfig) {
        tracing::info!(?config, "retention on");
        // On a scheduler of its own (`build` puts it on the gateway's one).
        let job = crate::retention::job(
            self.db.clone(),
            self.hub.clone(),
            config,
            Arc::clone(&self.retention),
        );
        crate::jobs::start(
            &self.db,
            "retention_jobs",
            &crate::jobs::JobsConfig::default(),
            vec![job],
            Some(self.closing.clone()),
        );
    }
}
