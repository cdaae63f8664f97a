//! Closing the day at the counter: the sales since the last close, by
//! tender, and what is not on the gateway yet.
//!
//! A close while sales are still queued or held is refused
//! (`sales_pending`, with their numbers) unless the cashier asks to carry
//! them over (`carry_over: true`): then the close records them by number as
//! carried over, they stay in the queue and upload as usual, and the next
//! day's report lists them again until they are on the gateway. Nothing is
//! ever dropped by a close.

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::store::{StoreError, rfc3339};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS day_closes (
    close_no        INTEGER PRIMARY KEY AUTOINCREMENT,
    closed_at       INTEGER NOT NULL,
    first_local_no  INTEGER,
    last_local_no   INTEGER,
    sales           INTEGER NOT NULL,
    total_fen       INTEGER NOT NULL,
    cash_fen        INTEGER NOT NULL,
    code_fen        INTEGER NOT NULL,
    carried_over    TEXT NOT NULL
);
";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayReport {
    /// `None` for the day still open.
    pub close_no: Option<i64>,
    pub closed_at: Option<String>,
    pub first_local_no: Option<i64>,
    pub last_local_no: Option<i64>,
    pub sales: i64,
    pub total: proto::order::Money,
    pub cash: proto::order::Money,
    pub code: proto::order::Money,
    /// Sales not on the gateway yet (queued or held), by local number.
    pub pending: Vec<i64>,
}

/// The open day: sales after the last close.
pub async fn current(pool: &SqlitePool) -> Result<DayReport, StoreError> {
    let after: i64 = sqlx::query("SELECT COALESCE(MAX(last_local_no), 0) FROM day_closes")
        .fetch_one(pool)
        .await?
        .get(0);
    let r = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(local_no) AS first, MAX(local_no) AS last,
                COALESCE(SUM(total_fen), 0) AS total,
                COALESCE(SUM(CASE WHEN tender = 'cash' THEN total_fen ELSE 0 END), 0) AS cash,
                COALESCE(SUM(CASE WHEN tender <> 'cash' THEN total_fen ELSE 0 END), 0) AS code
         FROM sales WHERE local_no > $1",
    )
    .bind(after)
    .fetch_one(pool)
    .await?;
    let pending: Vec<i64> = sqlx::query(
        "SELECT local_no FROM sales WHERE state <> 'uploaded' ORDER BY local_no LIMIT 1000",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let money = |k: &str| proto::order::Money::from_fen(r.get::<i64, _>(k));
    Ok(DayReport {
        close_no: None,
        closed_at: None,
        first_local_no: r.get("first"),
        last_local_no: r.get("last"),
        sales: r.get("n"),
        total: money("total"),
        cash: money("cash"),
        code: money("code"),
        pending,
    })
}

/// Why a close was refused.
#[derive(Debug)]
pub enum CloseError {
    Pending(Vec<i64>),
    Store(StoreError),
}

impl From<StoreError> for CloseError {
    fn from(e: StoreError) -> Self {
        CloseError::Store(e)
    }
}

impl From<sqlx::Error> for CloseError {
    fn from(e: sqlx::Error) -> Self {
        CloseError::Store(e.into())
    }
}

/// Closes the open day.
pub async fn close(pool: &SqlitePool, carry_over: bool, now: i64) -> Result<DayReport, CloseError> {
    let mut day = current(pool).await?;
    if !day.pending.is_empty() && !carry_over {
        return Err(CloseError::Pending(day.pending));
    }
    // The last sale included is the newest now; a sale made meanwhile falls
    // into the next day (sale numbers only grow).
    // An empty day ends where the previous one did (COALESCE below).
    let last = day.last_local_no;
    let carried = day
        .pending
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let close_no: i64 = sqlx::query(
        "INSERT INTO day_closes (closed_at, first_local_no, last_local_no, sales, total_fen,
                                 cash_fen, code_fen, carried_over)
         VALUES ($1, $2, COALESCE($3, (SELECT COALESCE(MAX(last_local_no), 0) FROM day_closes)),
                 $4, $5, $6, $7, $8)
         RETURNING close_no",
    )
    .bind(now)
    .bind(day.first_local_no)
    .bind(last)
    .bind(day.sales)
    .bind(day.total.fen())
    .bind(day.cash.fen())
    .bind(day.code.fen())
    .bind(carried)
    .fetch_one(pool)
    .await?
    .get(0);
    day.close_no = Some(close_no);
    day.closed_at = Some(rfc3339(now));
    tracing::info!(
        close_no,
        sales = day.sales,
        pending = day.pending.len(),
        "day closed"
    );
    Ok(day)
}

/// The most recent closes, newest first.
pub async fn history(pool: &SqlitePool, limit: i64) -> Result<Vec<DayReport>, StoreError> {
    let rows = sqlx::query(
        "SELECT close_no, closed_at, first_local_no, last_local_no, sales, total_fen, cash_fen,
                code_fen, carried_over
         FROM day_closes ORDER BY close_no DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| DayReport {
            close_no: Some(r.get("close_no")),
            closed_at: Some(rfc3339(r.get("closed_at"))),
            first_local_no: r.get("first_local_no"),
            last_local_no: r.get("last_local_no"),
            sales: r.get("sales"),
            total: proto::order::Money::from_fen(r.get("total_fen")),
            cash: proto::order::Money::from_fen(r.get("cash_fen")),
            code: proto::order::Money::from_fen(r.get("code_fen")),
            pending: r
                .get::<String, _>("carried_over")
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect(),
        })
        .collect())
}
