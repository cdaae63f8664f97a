//! The outbox's admin API: what failed, a manual retry, counts.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{Code, Error, Result};
use crate::http::extract::{Admin, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/outbox", get(list))
        .route("/outbox/stats", get(stats))
        .route("/outbox/{id}/retry", post(retry))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(pattern = "^(pending|delivering|delivered|failed)?$")]
    state: Option<String>,
    /// The `cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    #[param(value_type = Option<i64>, minimum = 0, maximum = 1000)]
    limit: Option<String>,
}

/// `GET /api/v1/outbox?state=failed&after=<id>&limit=` (admin).
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox", params(ListQuery),
    responses((status = 200, description = "A page of outbox entries", body = crate::http::openapi::OutboxPage)))]
async fn list(
    State(st): State<AppState>,
    _: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    let state = q.state.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = state
        && !matches!(s, "pending" | "delivering" | "delivered" | "failed")
    {
        return Err(Error::new(
            Code::InvalidState,
            "state is one of pending, delivering, delivered, failed",
        ));
    }
    let num = |name: &str, v: Option<&str>, default: i64, max: i64| -> Result<i64> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| Error::new(Code::InvalidQuery, format!("{name} must be 0-{max}"))),
        }
    };
    let after = num("after", q.after.as_deref(), 0, i64::MAX)?;
    let limit = num("limit", q.limit.as_deref(), 100, 1000)?.max(1);
    let entries = crate::outbox::list(&st.db, state, after, limit).await?;
    let cursor = entries.last().map(|e| e.id).unwrap_or(after);
    Ok(Json(json!({"entries": entries, "cursor": cursor})))
}

/// `POST /api/v1/outbox/{id}/retry` (admin): a failed call goes back in the
/// queue, due now.
#[utoipa::path(post, path = "/api/v1/outbox/{id}/retry", tag = "outbox",
    params(("id" = String, Path, description = "The entry's id")),
    responses((status = 200, description = "The entry, queued again", body = crate::outbox::Entry)))]
async fn retry(
    State(st): State<AppState>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<Json<crate::outbox::Entry>> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::new(Code::OutboxEntryNotFound, format!("no outbox entry {id}")))?;
    let entry = crate::outbox::retry(&st.db, id).await?;
    tracing::info!(outbox = id, by = %who.actor(), "outbox entry re-queued");
    // Wake the dispatcher (it listens to the store hub).
    if let Some(store) = entry
        .store_id
        .as_deref()
        .and_then(|s| proto::order::StoreId::parse(s).ok())
    {
        st.hub.notify(&store);
    }
    Ok(Json(entry))
}

/// `GET /api/v1/outbox/stats` (admin): rows by state, this process's
/// counters (delivered, retried, failed, unconfirmed alerts raised), and the
/// alerts raised in total.
#[utoipa::path(get, path = "/api/v1/outbox/stats", tag = "outbox",
    responses((status = 200, description = "Counts", body = Object)))]
async fn stats(State(st): State<AppState>, _: Admin) -> Result<Json<Value>> {
    let counts = crate::outbox::counts(&st.db).await?;
    let alerts = crate::channels::alerts::raised_total(&st.db).await?;
    let process = st
        .channels
        .as_ref()
        .map(|c| c.stats.snapshot())
        .unwrap_or(Value::Null);
    Ok(Json(json!({
        "outbox": counts,
        "unconfirmed_alerts_total": alerts,
        "process": process,
    })))
}
