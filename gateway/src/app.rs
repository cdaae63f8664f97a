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
/// the edge settings, payments (with their
/// sweeper), channels (their stores registered, the dispatcher and the alert
/// check started) and retention. Fails, rather than serving without a
/// configured part, if one cannot start.
pub async fn build(
    config: &Config,
    db: Db,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<AppState> {
    let mut state =
        AppState::with_payments(db, closing, config.payments.clone()).context("[payments]")?;
    state.orders = crate::orders::Writer::start(&state.db)
        .await
        .context("starting the order writer")?;
    config.edge.clone().apply(&mut state);
    if let Some(channels) = &config.channels {
        tracing::info!(config = ?channels, "channels on");
        state.channels = Some(
            crate::channels::Channels::start(
                channels.clone(),
                state.db.clone(),
                state.hub.clone(),
                state.closing.clone(),
            )
            .await
            .context("[channels]")?,
        );
    }
    state.start_retention(config.retention.clone());
    Ok(state)
}

#[derive(Clone)]
pub struct AppState {
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
        AppState {
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
        }
    }

    /// Starts pruning old rows on the configured schedule (`serve` does;
    /// tests that want it call it).
    pub fn start_retention(&self, config: crate::retention::RetentionConfig) {
        tracing::info!(?config, "retention on");
        // Supervised like every background task: restarted if it dies.
        let (db, hub, stats, closing) = (
            self.db.clone(),
            self.hub.clone(),
            Arc::clone(&self.retention),
            self.closing.clone(),
        );
        crate::supervise::spawn(
            &db.health().clone(),
            "retention",
            Some(closing.clone()),
            move |up| {
                up.ready();
                let run = crate::retention::run(
                    db.clone(),
                    hub.clone(),
                    config.clone(),
                    Arc::clone(&stats),
                    closing.clone(),
                );
                async move {
                    run.await;
                    Ok(())
                }
            },
        );
    }
}
