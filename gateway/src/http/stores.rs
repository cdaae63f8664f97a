//! The aggregated store queue: a filtered list with a cursor, and a live
//! Server-Sent-Events feed that resumes from `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use proto::order::{Channel, OrderStatus, StoreId};
use serde::Deserialize;

use super::extract::{Auth, Path, Query};
use crate::app::AppState;
use crate::error::{Code, Error, Result};
use crate::events::{self, FeedEvent};
use crate::orders::{self, Filter, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/stores/{store}/orders", get(list))
        .route("/stores/{store}/orders/stream", get(stream))
        .route("/stores/{store}/terminals", get(terminals))
}

/// Every terminal with a live key in the store, with its last heartbeat.
#[utoipa::path(get, path = "/api/v1/stores/{store}/terminals", tag = "stores",
    params(("store" = StoreId, Path)),
    responses((status = 200, description = "The store's terminals", body = crate::terminals::Terminals)))]
async fn terminals(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(store): Path<String>,
) -> Result<Json<crate::terminals::Terminals>> {
    let store = StoreId::parse(&store)?;
    who.check_store_queue(&store)?;
    Ok(Json(crate::terminals::list(&st.db, &store).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Comma-separated statuses, e.g. `created,accepted`.
    #[param(
        pattern = "^ *((created|accepted|ready|completed|rejected|cancelled) *(, *(created|accepted|ready|completed|rejected|cancelled) *)*)?$"
    )]
    status: Option<String>,
    #[param(value_type = Option<Channel>)]
    channel: Option<String>,
    /// A cursor from an earlier answer: only orders changed after it.
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
    /// 1-1000, 500 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

const MAX_LIMIT: i64 = 1000;

fn parse_cursor(name: &str, s: &str) -> Result<i64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Error::new(
                Code::InvalidCursor,
                format!(
                    "{name} must be a cursor (a whole number ≥ 0) from an earlier answer, got {s:?}"
                ),
            )
        })
}

/// The store's queue: every channel's orders in the order of their last change.
#[utoipa::path(get, path = "/api/v1/stores/{store}/orders", tag = "stores",
    params(("store" = StoreId, Path), ListQuery),
    responses((status = 200, description = "A page of the queue", body = crate::orders::Page)))]
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
                OrderStatus::parse(p.trim())
                    .map_err(|e| Error::from(e).with_status(StatusCode::BAD_REQUEST))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let channel = q
        .channel
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|c| Channel::parse(c).map_err(|e| Error::from(e).with_status(StatusCode::BAD_REQUEST)))
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
                Error::new(Code::InvalidLimit, format!("limit must be 1-{MAX_LIMIT}"))
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Resume point for clients that cannot send `Last-Event-ID`.
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
}

/// Open feed streams per API key, so one key cannot hold the server with
/// hundreds of them (each polls the database).
#[derive(Clone, Default)]
pub struct Streams {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; the count goes down when the stream is dropped (it
/// ended, or the client went away).
pub struct StreamPermit {
    open: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Streams {
    /// A permit for one more stream of `key`, unless it has `max` open.
    pub fn try_open(&self, key: &str, max: usize) -> Option<StreamPermit> {
        let mut open = self.open.lock().ok()?;
        let n = open.entry(key.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamPermit {
            open: Arc::clone(&self.open),
            key: key.to_owned(),
        })
    }

    /// Streams `key` has open now.
    pub fn open(&self, key: &str) -> usize {
        self.open
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The reconnect delay the last event of a stream says when the gateway
/// shuts down.
const SHUTDOWN_RETRY: Duration = Duration::from_millis(1000);

/// How long a client refused for too many streams is told to wait.
const STREAMS_RETRY_AFTER_S: u32 = 5;

fn too_many_streams(max: usize) -> Response {
    let mut r = Error::new(
        Code::TooManyStreams,
        format!("this key already has {max} feed streams open; close one first"),
    )
    .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(STREAMS_RETRY_AFTER_S),
    );
    r
}

struct Reader {
    _permit: StreamPermit,
    st: AppState,
    store: StoreId,
    last: i64,
    buf: VecDeque<FeedEvent>,
    wake: tokio::sync::broadcast::Receiver<StoreId>,
    /// Set after a `cursor_expired` event: the stream ends.
    ended: bool,
}

/// The store's live feed (Server-Sent Events): each event's id is its cursor,
/// its data the order as JSON; an event `cursor_expired` ends a stream whose
/// resume point was pruned.
#[utoipa::path(get, path = "/api/v1/stores/{store}/orders/stream", tag = "stores",
    params(("store" = StoreId, Path), StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this cursor")),
    responses((status = 200, description = "The feed", content_type = "text/event-stream", body = String)))]
async fn stream(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(store): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<
    std::result::Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>, Response>,
> {
    let store = StoreId::parse(&store)?;
    who.check_store_queue(&store)?;
    let head = events::head(&st.db, &store)
        .await?
        .ok_or_else(|| Error::new(Code::UnknownStore, format!("no store {store}")))?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(parse_cursor("Last-Event-ID", v.to_str().unwrap_or("?"))?),
        None => q
            .since
            .as_deref()
            .map(|s| parse_cursor("since", s))
            .transpose()?,
    };
    if let Some(from) = resume {
        // Retention pruned the feed's oldest events: events after `from` that
        // are gone cannot be streamed, so the reader must reload the queue.
        if from < head {
            let oldest = events::oldest(&st.db, &store).await?;
            if oldest.is_none_or(|o| o > from + 1) {
                return Err(expired(from, oldest));
            }
        }
    }
    let max = st.inner.limits.streams_per_key;
    let Some(permit) = st.streams.try_open(&who.key_id, max) else {
        tracing::info!(key = %who.key_id, max, "feed stream refused: too many open");
        return Ok(Err(too_many_streams(max)));
    };
    let reader = Reader {
        _permit: permit,
        wake: st.hub.subscribe(),
        st,
        store,
        // Without a resume point the feed starts now.
        last: resume.unwrap_or(head),
        buf: VecDeque::new(),
        ended: false,
    };
    let s = futures::stream::unfold(reader, |mut r| async move {
        loop {
            if r.ended {
                return None;
            }
            if *r.st.closing.borrow() {
                // The last event: this instance is going away; reconnect
                // (to another instance, or this one once it is back) from
                // `Last-Event-ID` after the retry delay.
                r.ended = true;
                let event = Event::default()
                    .event("shutdown")
                    .retry(SHUTDOWN_RETRY)
                    .data(
                        serde_json::json!({"detail": "the gateway is shutting down; reconnect with Last-Event-ID", "last_event_id": r.last})
                            .to_string(),
                    );
                return Some((Ok(event), r));
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
                // The feed has no gaps, so a jump means retention pruned
                // events this reader never saw: say so and end the stream.
                Ok(evs) if evs.first().is_some_and(|e| e.seq > r.last + 1) => {
                    let gone = expired(r.last, evs.first().map(|e| e.seq));
                    let event = Event::default().event(gone.code.as_str()).data(
                        serde_json::json!({"code": gone.code, "detail": gone.message}).to_string(),
                    );
                    r.ended = true;
                    return Some((Ok(event), r));
                }
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
    Ok(Ok(Sse::new(s).keep_alive(
        KeepAlive::new().interval(Duration::from_secs(15)),
    )))
}

/// `410 cursor_expired`: events after `from` were pruned by retention.
fn expired(from: i64, oldest: Option<i64>) -> Error {
    let kept = match oldest {
        Some(o) => format!("the oldest event kept is {o}"),
        None => "no older event is kept".to_owned(),
    };
    Error::new(
        Code::CursorExpired,
        format!(
            "events after {from} are no longer kept ({kept}): reload the queue (GET …/orders) and resume from its cursor"
        ),
    )
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
