//! The printed-ticket ledger: every receipt, pick ticket and cancellation
//! notice the counter owes, kept in the agent's SQLite state.
//!
//! A ticket moves `pending → printing → printed`. It is `printed` only once
//! the printer confirmed the job (the driver's `GS ( H` process-id reply),
//! never when the bytes were merely written. When the outcome cannot be
//! known — the agent died while a ticket was `printing`, the line dropped
//! mid-job, no confirmation came — it becomes `uncertain` and is printed
//! again marked "补打 / REPRINT n", never silently twice. A printer fault
//! found before any byte is sent (paper out, cover open, no printer) leaves
//! it `pending` with the reason; it prints once the fault clears.
//!
//! Enqueueing is idempotent per (kind, key, station): a restart or a
//! reconnect that enqueues again finds the ticket already there. Reprint is
//! explicit ([`reprint`]).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};

use super::store::StoreError;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The ledger's table; run when the store opens.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('receipt', 'pick', 'cancelled')),
    key         TEXT NOT NULL,
    station     TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'printing', 'printed', 'uncertain')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    reprint_no  INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    printed_at  INTEGER,
    UNIQUE (kind, key, station)
);
CREATE INDEX IF NOT EXISTS tickets_due ON tickets (state, id) WHERE state <> 'printed';
";

/// The station name used for this agent's own printer.
pub const LOCAL_STATION: &str = "local";

/// Longest text kept from outside (order notes, names) on a ticket.
pub const MAX_TEXT: usize = 200;
/// Most lines on one pick ticket.
pub const MAX_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Receipt,
    Pick,
    Cancelled,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receipt => "receipt",
            Kind::Pick => "pick",
            Kind::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "receipt" => Some(Kind::Receipt),
            "pick" => Some(Kind::Pick),
            "cancelled" => Some(Kind::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Printing,
    Printed,
    Uncertain,
}

impl State {
    fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "printing" => Some(State::Printing),
            "printed" => Some(State::Printed),
            "uncertain" => Some(State::Uncertain),
            _ => None,
        }
    }
}

/// One line of a pick or cancelled ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickLine {
    pub name: String,
    /// As the order shows it, e.g. `2` or `0.355`.
    pub quantity: String,
}

/// What a pick (or cancelled) ticket prints: a plain copy of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickOrder {
    /// The gateway's order id: the ledger key, and the ticket's QR code.
    pub order_id: String,
    /// The short number called out at the counter.
    pub display_no: Option<i64>,
    /// e.g. `meituan`, `eleme`, `app`.
    pub channel: String,
    pub lines: Vec<PickLine>,
    pub customer_note: Option<String>,
    /// When the customer placed it, RFC 3339 as the gateway sent it.
    pub placed_at: String,
}

impl PickOrder {
    /// Cuts every outside string and list to the ledger's bounds.
    pub fn bounded(&self) -> PickOrder {
        let cut = |s: &str| s.chars().take(MAX_TEXT).collect::<String>();
        PickOrder {
            order_id: cut(&self.order_id),
            display_no: self.display_no,
            channel: cut(&self.channel),
            lines: self
                .lines
                .iter()
                .take(MAX_LINES)
                .map(|l| PickLine {
                    name: cut(&l.name),
                    quantity: cut(&l.quantity),
                })
                .collect(),
            customer_note: self.customer_note.as_deref().map(cut),
            placed_at: cut(&self.placed_at),
        }
    }
}

/// A ticket as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub kind: Kind,
    pub key: String,
    pub station: String,
    /// For a receipt the sale's local number; for others the order as JSON.
    #[serde(skip)]
    pub body: String,
    pub state: State,
    pub attempts: i64,
    /// 0 for the first print; n for "补打 / REPRINT n".
    pub reprint_no: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub printed_at: Option<i64>,
}

impl Ticket {
    /// The order a pick or cancelled ticket prints.
    pub fn pick_order(&self) -> Option<PickOrder> {
        serde_json::from_str(&self.body).ok()
    }
}

fn read(r: &SqliteRow) -> Result<Ticket> {
    let kind: String = r.get("kind");
    let state: String = r.get("state");
    Ok(Ticket {
        id: r.get("id"),
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket kind {kind}")))?,
        key: r.get("key"),
        station: r.get("station"),
        body: r.get("body"),
        state: State::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket state {state}")))?,
        attempts: r.get("attempts"),
        reprint_no: r.get("reprint_no"),
        last_error: r.get("last_error"),
        created_at: r.get("created_at"),
        printed_at: r.get("printed_at"),
    })
}

const COLUMNS: &str = "id, kind, key, station, body, state, attempts, reprint_no, last_error, \
                       created_at, printed_at";

/// Adds a ticket unless (kind, key, station) is already in the ledger;
/// returns its id either way. Usable inside another transaction (the
/// checkout enqueues its receipt in the sale's own).
pub async fn enqueue_on(
    conn: &mut SqliteConnection,
    kind: Kind,
    key: &str,
    body: &str,
    now: i64,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO tickets (kind, key, station, body, state, created_at)
         VALUES ($1, $2, $3, $4, 'pending', $5)
         ON CONFLICT (kind, key, station) DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(key.to_owned())
    .bind(LOCAL_STATION)
    .bind(body.to_owned())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let id: i64 =
        sqlx::query("SELECT id FROM tickets WHERE kind = $1 AND key = $2 AND station = $3")
            .bind(kind.as_str())
            .bind(key.to_owned())
            .bind(LOCAL_STATION)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    Ok(id)
}

async fn enqueue_order(pool: &SqlitePool, kind: Kind, order: &PickOrder, now: i64) -> Result<i64> {
    let order = order.bounded();
    let body = serde_json::to_string(&order)
        .map_err(|e| StoreError::Corrupt(format!("ticket body: {e}")))?;
    let mut conn = pool.acquire().await?;
    enqueue_on(&mut conn, kind, &order.order_id, &body, now).await
}

/// Owes a pick ticket for an accepted order, once per order id.
pub async fn enqueue_pick(store: &super::store::Store, order: &PickOrder) -> Result<i64> {
    enqueue_order(store.pool(), Kind::Pick, order, super::store::now_us()).await
}

/// Owes a "已取消 / CANCELLED" ticket for an order, once per order id.
pub async fn enqueue_cancelled(store: &super::store::Store, order: &PickOrder) -> Result<i64> {
    enqueue_order(store.pool(), Kind::Cancelled, order, super::store::now_us()).await
}

/// At start: a ticket left `printing` by a previous run may or may not be
/// on paper. Returns how many were marked `uncertain`.
pub async fn recover(pool: &SqlitePool) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE tickets SET state = 'uncertain',
                last_error = 'the agent stopped while printing it'
         WHERE state = 'printing'",
    )
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// The oldest ticket still owed.
pub async fn next_due(pool: &SqlitePool) -> Result<Option<Ticket>> {
    let q = format!(
        "SELECT {COLUMNS} FROM tickets WHERE state IN ('pending', 'uncertain') ORDER BY id LIMIT 1"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// Marks `id` as being printed, just before its first byte is written. An
/// `uncertain` ticket gets the next reprint number: what comes out now says
/// "补打 / REPRINT n". Returns the ticket as it will print.
pub async fn begin(pool: &SqlitePool, id: i64) -> Result<Option<Ticket>> {
    let q = format!(
        "UPDATE tickets SET
             reprint_no = reprint_no + (CASE WHEN state = 'uncertain' THEN 1 ELSE 0 END),
             state = 'printing', attempts = attempts + 1
         WHERE id = $1 AND state IN ('pending', 'uncertain')
         RETURNING {COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// The printer confirmed the job.
pub async fn mark_printed(pool: &SqlitePool, id: i64, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE tickets SET state = 'printed', printed_at = $2, last_error = NULL
         WHERE id = $1 AND state = 'printing'",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Bytes were written but no confirmation came: it may be on paper.
pub async fn mark_uncertain(pool: &SqlitePool, id: i64, why: &str) -> Result<()> {
    sqlx::query("UPDATE tickets SET state = 'uncertain', last_error = $2 WHERE id = $1 AND state = 'printing'")
        .bind(id)
        .bind(why.chars().take(MAX_TEXT).collect::<String>())
        .execute(pool)
        .await?;
    Ok(())
}

/// A job refused before its first byte was written (the printer was found
/// not ready just before it): the ticket is owed again as it was, with the
/// reason; nothing of it can be on paper, so no reprint number is added.
pub async fn mark_not_sent(pool: &SqlitePool, id: i64, why: &str) -> Result<()> {
    sqlx::query("UPDATE tickets SET state = 'pending', last_error = $2 WHERE id = $1 AND state = 'printing'")
        .bind(id)
        .bind(why.chars().take(MAX_TEXT).collect::<String>())
        .execute(pool)
        .await?;
    Ok(())
}

/// Nothing was sent (a fault found first): the ticket stays owed as it was.
pub async fn note_fault(pool: &SqlitePool, id: i64, why: &str) -> Result<()> {
    sqlx::query("UPDATE tickets SET last_error = $2 WHERE id = $1 AND state <> 'printed'")
        .bind(id)
        .bind(why.chars().take(MAX_TEXT).collect::<String>())
        .execute(pool)
        .await?;
    Ok(())
}

/// Asks for a printed ticket again, marked "补打 / REPRINT n". A ticket
/// still owed is left as it is (it will print anyway). Returns the ticket,
/// or `None` when there is no such id.
pub async fn reprint(pool: &SqlitePool, id: i64) -> Result<Option<Ticket>> {
    sqlx::query(
        "UPDATE tickets SET state = 'pending', reprint_no = reprint_no + 1, last_error = NULL
         WHERE id = $1 AND state = 'printed'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    get(pool, id).await
}

/// The receipt ticket of sale `local_no`.
pub async fn receipt_of(pool: &SqlitePool, local_no: i64) -> Result<Option<Ticket>> {
    let q = format!(
        "SELECT {COLUMNS} FROM tickets WHERE kind = 'receipt' AND key = $1 AND station = $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(local_no.to_string())
        .bind(LOCAL_STATION)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

pub async fn get(pool: &SqlitePool, id: i64) -> Result<Option<Ticket>> {
    let q = format!("SELECT {COLUMNS} FROM tickets WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// The newest tickets first.
pub async fn list(pool: &SqlitePool, limit: i64) -> Result<Vec<Ticket>> {
    let q = format!("SELECT {COLUMNS} FROM tickets ORDER BY id DESC LIMIT $1");
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(limit.clamp(1, 500))
        .fetch_all(pool)
        .await?
        .iter()
        .map(read)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::store::Store;

    fn order(id: &str) -> PickOrder {
        PickOrder {
            order_id: id.into(),
            display_no: Some(17),
            channel: "meituan".into(),
            lines: vec![PickLine {
                name: "豆浆".into(),
                quantity: "2".into(),
            }],
            customer_note: Some("少糖".into()),
            placed_at: "2026-12-02T10:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn a_ticket_is_owed_once_and_printed_only_when_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let pool = store.pool();
        let a = enqueue_pick(&store, &order("o1")).await.unwrap();
        assert_eq!(enqueue_pick(&store, &order("o1")).await.unwrap(), a);
        let c = enqueue_cancelled(&store, &order("o1")).await.unwrap();
        assert_ne!(a, c);
        assert_eq!(list(pool, 10).await.unwrap().len(), 2);

        // A fault before any byte: still pending, nothing counted as a reprint.
        note_fault(pool, a, "the printer is out of paper")
            .await
            .unwrap();
        let t = next_due(pool).await.unwrap().unwrap();
        assert_eq!((t.id, t.state, t.reprint_no), (a, State::Pending, 0));

        // Printing, then the agent dies: uncertain, printed again as REPRINT 1.
        let t = begin(pool, a).await.unwrap().unwrap();
        assert_eq!((t.state, t.attempts, t.reprint_no), (State::Printing, 1, 0));
        assert_eq!(recover(pool).await.unwrap(), 1);
        let t = begin(pool, a).await.unwrap().unwrap();
        assert_eq!((t.attempts, t.reprint_no), (2, 1));
        mark_printed(pool, a, 5).await.unwrap();
        let t = get(pool, a).await.unwrap().unwrap();
        assert_eq!((t.state, t.printed_at), (State::Printed, Some(5)));
        assert_eq!(t.pick_order().unwrap(), order("o1"));

        // An explicit reprint comes back owed with the next number.
        let t = reprint(pool, a).await.unwrap().unwrap();
        assert_eq!((t.state, t.reprint_no), (State::Pending, 2));
        // Reprinting something still owed does not stack numbers.
        let t = reprint(pool, a).await.unwrap().unwrap();
        assert_eq!(t.reprint_no, 2);
        assert!(reprint(pool, 999).await.unwrap().is_none());
    }

    #[test]
    fn tickets_render_their_marks() {
        use proto::device::escpos::decode_gb18030;
        let text =
            decode_gb18030(crate::agent::receipt::cancelled_ticket(&order("o9"), 1).as_bytes());
        assert!(text.contains("已取消 / CANCELLED"), "{text}");
        assert!(text.contains("补打 / REPRINT 1"), "{text}");
        let text = decode_gb18030(crate::agent::receipt::pick_ticket(&order("o9"), 0).as_bytes());
        assert!(
            text.contains("#17") && text.contains("豆浆 x 2") && !text.contains("REPRINT"),
            "{text}"
        );
    }
}
