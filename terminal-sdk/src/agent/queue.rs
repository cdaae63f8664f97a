//! Orders from the other channels (delivery platforms, the brand's app)
//! at the counter: the agent follows the store's aggregated queue with
//! `ListOrders` and its cursor, keeps what it saw in its state, lets the
//! cashier accept or reject, and owes each order accepted here one pick
//! ticket — and a "已取消 / CANCELLED" ticket when the platform then cancels
//! it — through the printed-ticket ledger ([`super::tickets`]).
//!
//! The cursor and the orders of one page are saved in one transaction, so a
//! restart resumes where it stopped and re-announces nothing. The gateway's
//! acceptance and the pick ticket: the ticket is enqueued only after the
//! gateway answered the accept (with the order `accepted`), in the same
//! transaction that marks the order accepted here; the ledger's key (kind,
//! order id) makes a second enqueue a no-op.

use std::sync::Arc;
use std::time::Duration;

use proto::order::{Channel, Order, OrderStatus};
use proto::soap::ListOrders;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::watch;

use super::printing::Handle;
use super::store::{Store, StoreError, now_us, rfc3339};
use super::sync::Link;
use super::tickets::{self, Kind, PickLine, PickOrder};
use crate::client::GatewayClient;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The queue's tables; run when the store opens.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_orders (
    order_id       TEXT PRIMARY KEY,
    channel        TEXT NOT NULL,
    status         TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    body           TEXT NOT NULL,
    first_seen_at  INTEGER NOT NULL,
    is_new         INTEGER NOT NULL,
    accepted_here  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_orders_seen ON queue_orders (first_seen_at);
CREATE TABLE IF NOT EXISTS queue_cursor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    cursor  INTEGER NOT NULL
);
";

/// One page of `ListOrders`.
const PAGE: i64 = 200;

/// What the screen shows of one order.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedOrder {
    pub order_id: String,
    pub display_no: i64,
    pub channel: String,
    pub platform: Option<String>,
    pub status: String,
    pub total: String,
    pub lines: Value,
    pub note: Option<String>,
    pub placed_at: String,
    pub attention: Value,
    pub first_seen_at: String,
    /// Not yet looked at by the cashier (the screen sounds for these).
    pub new: bool,
    pub accepted_here: bool,
}

fn pick_of(o: &Order) -> PickOrder {
    PickOrder {
        order_id: o.id.clone(),
        display_no: Some(o.display_no),
        channel: o
            .platform
            .clone()
            .unwrap_or_else(|| o.channel.as_str().to_owned()),
        lines: o
            .lines
            .iter()
            .map(|l| PickLine {
                name: l.name.clone(),
                quantity: l.quantity.to_string(),
            })
            .collect(),
        customer_note: o.note.clone(),
        placed_at: o.created_at.clone(),
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("queue order: {e}"))
}

/// Saves `o` (newer changes only), keeping when it was first seen and
/// whether the cashier looked at it. A cancellation of an order accepted
/// here owes a CANCELLED ticket. Returns whether a ticket was owed.
async fn save_on(conn: &mut SqliteConnection, o: &Order, now: i64) -> Result<bool> {
    let body = serde_json::to_string(o).map_err(corrupt)?;
    let open = matches!(o.status, OrderStatus::Created);
    sqlx::query(
        "INSERT INTO queue_orders (order_id, channel, status, seq, body, first_seen_at, is_new)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, seq = excluded.seq,
             body = excluded.body,
             is_new = CASE WHEN excluded.status = 'created' THEN queue_orders.is_new ELSE 0 END
         WHERE excluded.seq >= queue_orders.seq",
    )
    .bind(o.id.clone())
    .bind(o.channel.as_str())
    .bind(o.status.as_str())
    .bind(o.seq)
    .bind(body)
    .bind(now)
    .bind(open)
    .execute(&mut *conn)
    .await?;
    if o.status == OrderStatus::Cancelled {
        let here: Option<bool> =
            sqlx::query("SELECT accepted_here FROM queue_orders WHERE order_id = $1")
                .bind(o.id.clone())
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.get(0));
        if here == Some(true) {
            enqueue_on(conn, Kind::Cancelled, &pick_of(o), now).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

async fn enqueue_on(
    conn: &mut SqliteConnection,
    kind: Kind,
    o: &PickOrder,
    now: i64,
) -> Result<()> {
    let body = serde_json::to_string(&o.bounded()).map_err(corrupt)?;
    let key: String = o.order_id.chars().take(tickets::MAX_TEXT).collect();
    tickets::enqueue_on(conn, kind, &key, &body, now).await?;
    Ok(())
}

async fn cursor(store: &Store) -> Result<Option<i64>> {
    Ok(sqlx::query("SELECT cursor FROM queue_cursor WHERE id = 1")
        .fetch_optional(store.pool())
        .await?
        .map(|r| r.get(0)))
}

/// Saves one page and the cursor after it, together.
async fn save_page(store: &Store, orders: &[Order], next: i64) -> Result<bool> {
    let now = now_us();
    let mut tx = store.pool().begin().await?;
    let mut owed = false;
    for o in orders.iter().filter(|o| o.channel != Channel::Terminal) {
        owed |= save_on(&mut tx, o, now).await?;
    }
    sqlx::query(
        "INSERT INTO queue_cursor (id, cursor) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor",
    )
    .bind(next)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(owed)
}

/// The gateway accepted `o` at this counter: mark it and owe its pick
/// ticket, in one transaction.
pub async fn accepted_here(store: &Store, o: &Order) -> Result<()> {
    let now = now_us();
    let mut tx = store.pool().begin().await?;
    save_on(&mut tx, o, now).await?;
    sqlx::query("UPDATE queue_orders SET accepted_here = 1, is_new = 0 WHERE order_id = $1")
        .bind(o.id.clone())
        .execute(&mut *tx)
        .await?;
    enqueue_on(&mut tx, Kind::Pick, &pick_of(o), now).await?;
    tx.commit().await?;
    Ok(())
}

/// Saves an order the gateway answered with (a reject, a refused accept).
pub async fn save(store: &Store, o: &Order) -> Result<()> {
    let mut conn = store.pool().acquire().await?;
    save_on(&mut conn, o, now_us()).await?;
    Ok(())
}

/// The cashier looked at it. `false` when there is no such order.
pub async fn seen(store: &Store, order_id: &str) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE queue_orders SET is_new = 0 WHERE order_id = $1")
            .bind(order_id.to_owned())
            .execute(store.pool())
            .await?
            .rows_affected()
            == 1,
    )
}

pub async fn known(store: &Store, order_id: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM queue_orders WHERE order_id = $1")
            .bind(order_id.to_owned())
            .fetch_optional(store.pool())
            .await?
            .is_some(),
    )
}

/// The latest `limit` orders seen, newest first, and how many are new.
pub async fn list(store: &Store, limit: i64) -> Result<(Vec<QueuedOrder>, i64)> {
    let rows = sqlx::query(
        "SELECT body, first_seen_at, is_new, accepted_here FROM queue_orders
         ORDER BY first_seen_at DESC, order_id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let body: String = r.get("body");
        let o: Value = serde_json::from_str(&body).map_err(corrupt)?;
        let s = |k: &str| o[k].as_str().map(str::to_owned);
        out.push(QueuedOrder {
            order_id: s("id").unwrap_or_default(),
            display_no: o["display_no"].as_i64().unwrap_or(0),
            channel: s("channel").unwrap_or_default(),
            platform: s("platform"),
            status: s("status").unwrap_or_default(),
            total: s("total").unwrap_or_default(),
            lines: o["lines"].clone(),
            note: s("note"),
            placed_at: s("created_at").unwrap_or_default(),
            attention: o.get("attention").cloned().unwrap_or(Value::Array(vec![])),
            first_seen_at: rfc3339(r.get("first_seen_at")),
            new: r.get("is_new"),
            accepted_here: r.get("accepted_here"),
        });
    }
    let new: i64 = sqlx::query("SELECT COUNT(*) FROM queue_orders WHERE is_new = 1")
        .fetch_one(store.pool())
        .await?
        .get(0);
    Ok((out, new))
}

/// Follows the store's queue until `closing`: pages through at once while
/// the gateway has more, then every `poll`.
pub async fn run(
    store: Store,
    client: GatewayClient,
    link: Arc<Link>,
    printer: Arc<Handle>,
    poll: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut since = match cursor(&store).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("queue: {e}");
            None
        }
    };
    while !*closing.borrow() {
        let req = ListOrders {
            statuses: vec![],
            channel: None,
            since,
            limit: Some(PAGE),
        };
        let mut more = false;
        match client.list_orders(&req).await {
            Ok(page) => {
                link.ok();
                match save_page(&store, &page.orders, page.cursor).await {
                    Ok(owed) => {
                        since = Some(page.cursor);
                        more = page.has_more;
                        if owed {
                            printer.wake();
                        }
                    }
                    Err(e) => tracing::error!("queue: saving a page: {e}"),
                }
            }
            Err(e) => {
                tracing::debug!("queue: {e}");
                link.failed(&e);
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}
