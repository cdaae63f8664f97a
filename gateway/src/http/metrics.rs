//! `GET /metrics` (rendered by [`crate::metrics`]). Admin key required (a
//! bearer token in the scrape config), like every other operator view.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::error::Result;
use crate::http::extract::Admin;
use crate::metrics::{self, Process};

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Prometheus text exposition (admin).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
async fn scrape(State(st): State<AppState>, _: Admin) -> Result<Response> {
    let process = Process {
        outbox: st.channels.as_deref().map(|c| &*c.stats),
        retention: &st.retention,
        auth_failures: st.keys.failures(),
    };
    crate::meter::pool(st.db.pool.size(), st.db.pool.num_idle());
    let mut text = metrics::render(&st.db, &process).await?;
    st.db.jobs().render_metrics(&mut text);
    text.push_str(&crate::meter::handle().render());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(resp)
}
