//! The HTTP surface: one router, shared state, the server loop.

mod catalog;
pub mod extract;
mod orders;
mod problem;
mod server;
mod stores;

pub use server::{Edge, Limits, LimitsFile, check_public_url};
pub use stores::Streams;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::db::Db;
use crate::error::{Code, Error};
use crate::events::Hub;
use crate::keys::KeyCache;

/// Largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub hub: Hub,
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

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/livez", get(livez))
        .nest(
            "/api/v1",
            catalog::router()
                .merge(orders::router())
                .merge(stores::router())
                .merge(crate::channels::rest::router())
                .merge(crate::outbox::rest::router()),
        )
        .merge(crate::channels::rest::push_router())
        .merge(crate::soap::router())
        .merge(crate::payments::router())
        .merge(crate::metrics::router())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets requests in flight finish,
/// within `state.inner.limits` (timeouts, connection and stream caps).
pub async fn serve(
    listener: TcpListener,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.inner.public_url.is_none() {
        let addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            tracing::warn!(
                %addr,
                "no public_url configured while listening on every address: pushes are checked \
                 against, and the WSDL names, http://{addr}; set GATEWAY_PUBLIC_URL"
            );
        }
        Arc::make_mut(&mut state.inner).public_url = Some(format!("http://{addr}"));
    }
    let limits = state.inner.limits.clone();
    server::run(listener, router(state), limits, shutdown).await
}

/// Ready (`/readyz`, and `/healthz` the same): the database answers and
/// every supervised background task is up; otherwise 503 naming what is not.
async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let database = match st.db.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "unreachable"
        }
    };
    let components = st.db.health().snapshot();
    let down: Vec<&str> = components
        .iter()
        .filter(|(_, c)| !c.up)
        .map(|(name, _)| *name)
        .collect();
    let ready = database == "ok" && down.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let components: serde_json::Map<String, serde_json::Value> = components
        .iter()
        .map(|(name, c)| {
            let state = if c.up { "up" } else { "down" };
            (
                (*name).to_owned(),
                serde_json::json!({"state": state, "restarts": c.restarts}),
            )
        })
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": database,
        "down": down,
        "components": components,
    });
    (status, Json(body)).into_response()
}

/// Alive: answers without touching anything (also the benchmarks' baseline).
async fn livez() -> &'static str {
    "ok"
}

async fn fallback() -> Error {
    Error::new(Code::NotFound, "no such route")
}
