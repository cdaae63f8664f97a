//! The HTTP surface: one router, the server loop (the state the handlers
//! share is [`crate::app::AppState`]).

mod board;
mod catalog;
mod channels;
pub mod extract;
mod metrics;
mod observe;
pub mod openapi;
mod orders;
mod outbox;
mod payments;
mod problem;
mod server;
mod stores;

pub use server::{DRAIN, Edge, HttpFile, Limits, check_public_url};
pub use stores::Streams;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::app::AppState;
use crate::error::{Code, Error};

/// Largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    crate::meter::handle();
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/livez", get(livez))
        .route("/openapi.json", get(openapi::serve_document))
        .nest(
            "/api/v1",
            catalog::router()
                .merge(orders::router())
                .merge(stores::router())
                .merge(channels::router())
                .merge(outbox::router()),
        )
        .merge(board::router())
        .merge(channels::push_router())
        .merge(crate::soap::router())
        .merge(payments::router())
        .merge(metrics::router())
        .fallback(fallback)
        .layer(axum::middleware::from_fn(observe::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::request_span)
                // A 5xx is logged by the gateway itself, with its cause
                // (`Error::log`); a SOAP Fault is a 500 by the protocol even
                // when the client is at fault (`out_of_stock`), so the
                // layer's own line would be an ERROR per refused sale.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
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
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready: what is down", body = Object)))]
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
#[utoipa::path(get, path = "/livez", tag = "meta",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String)))]
async fn livez() -> &'static str {
    "ok"
}

async fn fallback() -> Error {
    Error::new(Code::NotFound, "no such route")
}
