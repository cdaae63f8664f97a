//! The aggregated store queue: a filtered list with a cursor, and a live
//! Server-Sent-Events feed that resumes from `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use proto::order::{Channel, OrderStatus, StoreId};
use serde::Deserialize;

use super::AppState;
use super::extract::Auth;
use crate::error::{Error, Result};
use crate::events::{self, FeedEvent};
use crate::orders::{self, Filter, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/stores/{store}/orders", get(list))
        .route("/stores/{store}/orders/stream", get(stream))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    channel: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

const MAX_LIMIT: i64 = 1000;

fn parse_cursor(name: &str, s: &str) -> Result<i64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Error::bad_request(
                "invalid_cursor",
                format!(
                    "{name} must be a cursor (a whole number ≥ 0) from an earlier answer, got {s:?}"
                ),
            )
        })
}

async fn list(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(store): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>> {
    let store = StoreId::parse(&store)?;
    who.check_store_queue(&store)?;
    let statuses = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s
            .split(',')
            .map(|p| {
                OrderStatus::parse(p.trim()).map_err(|e| Error::bad_request(e.code, e.message))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let channel = q
        .channel
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|c| Channel::parse(c).map_err(|e| Error::bad_request(e.code, e.message)))
        .transpose()?;
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_cursor("since", s))
        .transpose()?;
    let limit = match q.limit.as_deref() {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::bad_request("invalid_limit", format!("limit must be 1-{MAX_LIMIT}"))
            })?,
        None => 500,
    };
    let f = Filter {
        statuses,
        channel,
        since,
        limit,
    };
    Ok(Json(orders::list(&st.db, &store, &f).await?))
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Resume point for clients that cannot send `Last-Event-ID`.
    since: Option<String>,
}

struct Reader {
    st: AppState,
    store: StoreId,
    last: i64,
    buf: VecDeque<FeedEvent>,
    wake: tokio::sync::broadcast::Receiver<StoreId>,
}

async fn stream(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(store): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let store = StoreId::parse(&store)?;
    who.check_store_queue(&store)?;
    let head = events::head(&st.db, &store)
        .await?
        .ok_or_else(|| Error::not_found("unknown_store", format!("no store {store}")))?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(parse_cursor("Last-Event-ID", v.to_str().unwrap_or("?"))?),
        None => q
            .since
            .as_deref()
            .map(|s| parse_cursor("since", s))
            .transpose()?,
    };
    let reader = Reader {
        wake: st.hub.subscribe(),
        st,
        store,
        // Without a resume point the feed starts now.
        last: resume.unwrap_or(head),
        buf: VecDeque::new(),
    };
    let s = futures::stream::unfold(reader, |mut r| async move {
        loop {
            if *r.st.closing.borrow() {
                return None;
            }
            if let Some(ev) = r.buf.pop_front() {
                r.last = ev.seq;
                let event = Event::default()
                    .id(ev.seq.to_string())
                    .event(ev.kind)
                    .data(ev.payload);
                return Some((Ok(event), r));
            }
            match events::after(&r.st.db, &r.store, r.last, 200).await {
                Ok(evs) if !evs.is_empty() => {
                    r.buf.extend(evs);
                    continue;
                }
                Ok(_) => {}
                Err(e) => e.log(),
            }
            wait_for_change(&mut r).await;
        }
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sleeps until this store's feed may have grown: a local write, the poll
/// interval (writes by other instances) or shutdown.
async fn wait_for_change(r: &mut Reader) {
    let deadline = tokio::time::sleep(r.st.inner.feed_poll);
    tokio::pin!(deadline);
    let mut closing = r.st.closing.clone();
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = closing.changed() => return,
            got = r.wake.recv() => match got {
                Ok(s) if s != r.store => continue,
                _ => return,
            },
        }
    }
}
