//! The payment tables: small queries, each on a connection or transaction
//! the caller holds.

use proto::order::{
    Money, PaymentEvent, PaymentStatus, Quantity, StoreId, Unit, payment_transition,
};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock;
use crate::error::{Code, Error, Result};

/// A charge's place in its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChargeState {
    /// Recorded; the provider may not have seen it yet.
    Created,
    /// Sent; the outcome is not known yet ("user paying" or unknown).
    Pending,
    Succeeded,
    Failed,
    Reversed,
}

impl ChargeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeState::Created => "created",
            ChargeState::Pending => "pending",
            ChargeState::Succeeded => "succeeded",
            ChargeState::Failed => "failed",
            ChargeState::Reversed => "reversed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "created" => ChargeState::Created,
            "pending" => ChargeState::Pending,
            "succeeded" => ChargeState::Succeeded,
            "failed" => ChargeState::Failed,
            "reversed" => ChargeState::Reversed,
            other => {
                return Err(Error::internal(anyhow::anyhow!(
                    "unknown charge state {other:?}"
                )));
            }
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChargeState::Succeeded | ChargeState::Failed | ChargeState::Reversed
        )
    }
}

/// A charge as every surface shows it: the code only masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Charge {
    pub id: String,
    /// The provider's idempotency key of this charge (same as `id`).
    pub out_trade_no: String,
    pub order_id: String,
    pub attempt: i64,
    pub provider: String,
    pub code_kind: String,
    pub auth_code: String,
    pub state: ChargeState,
    /// Why it failed or was reversed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub amount: Money,
    pub amount_fen: i64,
    pub refunded: Money,
    pub refunded_fen: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub deadline_at: i64,
}

const CHARGE_COLS: &str = "id, order_id, attempt, provider, code_kind, code_masked, amount_fen,
    refunded_fen, state, failure_code, provider_txn, deadline_at, created_by, created_at, updated_at";

fn charge_from_row(r: &sqlx::any::AnyRow) -> Result<Charge> {
    let id: String = r.get("id");
    let amount_fen: i64 = r.get("amount_fen");
    let refunded_fen: i64 = r.get("refunded_fen");
    Ok(Charge {
        out_trade_no: id.clone(),
        id,
        order_id: r.get("order_id"),
        attempt: r.get("attempt"),
        provider: r.get("provider"),
        code_kind: r.get("code_kind"),
        auth_code: r.get("code_masked"),
        state: ChargeState::parse(&r.get::<String, _>("state"))?,
        code: r.get("failure_code"),
        amount: Money::from_fen(amount_fen),
        amount_fen,
        refunded: Money::from_fen(refunded_fen),
        refunded_fen,
        transaction_id: r.get("provider_txn"),
        created_by: r.get("created_by"),
        created_at: clock::rfc3339(r.get("created_at")),
        updated_at: clock::rfc3339(r.get("updated_at")),
        deadline_at: r.get("deadline_at"),
    })
}

/// The order facts a payment needs.
pub struct OrderFacts {
    pub store: StoreId,
    pub status: String,
    pub payment_status: PaymentStatus,
    pub total_fen: i64,
}

impl OrderFacts {
    /// Whether money may be taken for the order at all (a code or cash): not
    /// cancelled or rejected, and something to pay.
    pub fn check_payable(&self, order_id: &str) -> Result<()> {
        if matches!(self.status.as_str(), "cancelled" | "rejected") {
            return Err(Error::new(
                Code::OrderNotPayable,
                format!("order {order_id} is {}", self.status),
            ));
        }
        if self.total_fen <= 0 {
            return Err(Error::new(Code::NothingToPay, "the order's total is zero"));
        }
        Ok(())
    }
}

pub async fn order_facts(conn: &mut AnyConnection, order_id: &str) -> Result<OrderFacts> {
    facts_query(
        conn,
        "SELECT store_id, status, payment_status, total_fen FROM orders WHERE id = $1",
        order_id,
    )
    .await
}

/// Like [`order_facts`], and holds the order's row until commit (a no-op
/// update: PostgreSQL locks the row; SQLite writers are serialised anyway),
/// so two payments of one order queue instead of racing for one charge id.
/// Take it before any store lock: nothing that holds the order row waits
/// for the store row here.
pub async fn lock_order_facts(conn: &mut AnyConnection, order_id: &str) -> Result<OrderFacts> {
    facts_query(
        conn,
        "UPDATE orders SET updated_at = updated_at WHERE id = $1
         RETURNING store_id, status, payment_status, total_fen",
        order_id,
    )
    .await
}

async fn facts_query(
    conn: &mut AnyConnection,
    sql: &'static str,
    order_id: &str,
) -> Result<OrderFacts> {
    let row = sqlx::query(sql)
        .bind(order_id.to_owned())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::new(Code::OrderNotFound, format!("no order {order_id}")))?;
    Ok(OrderFacts {
        store: StoreId::parse(&row.get::<String, _>("store_id")).map_err(Error::internal)?,
        status: row.get("status"),
        payment_status: PaymentStatus::parse(&row.get::<String, _>("payment_status"))
            .map_err(Error::internal)?,
        total_fen: row.get("total_fen"),
    })
}

/// Runs `sql` (which selects or returns [`CHARGE_COLS`]) with `key` as its
/// one parameter and reads the charge it finds, if any.
async fn one_charge(conn: &mut AnyConnection, sql: String, key: &str) -> Result<Option<Charge>> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key.to_owned())
        .fetch_optional(conn)
        .await?
        .map(|r| charge_from_row(&r))
        .transpose()
}

/// The order's charge that may take or has taken money, if any.
pub async fn live_charge(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Charge>> {
    let sql = format!(
        "SELECT {CHARGE_COLS} FROM charges
         WHERE order_id = $1 AND state IN ('created', 'pending', 'succeeded')"
    );
    one_charge(conn, sql, order_id).await
}

pub async fn charge(conn: &mut AnyConnection, id: &str) -> Result<Option<Charge>> {
    let sql = format!("SELECT {CHARGE_COLS} FROM charges WHERE id = $1");
    one_charge(conn, sql, id).await
}

pub async fn charges_of_order(conn: &mut AnyConnection, order_id: &str) -> Result<Vec<Charge>> {
    let sql = format!("SELECT {CHARGE_COLS} FROM charges WHERE order_id = $1 ORDER BY attempt");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_owned())
        .fetch_all(conn)
        .await?
        .iter()
        .map(charge_from_row)
        .collect()
}

/// The order's charge that took money, if any.
pub async fn paid_charge(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Charge>> {
    let sql =
        format!("SELECT {CHARGE_COLS} FROM charges WHERE order_id = $1 AND state = 'succeeded'");
    one_charge(conn, sql, order_id).await
}

/// Holds a paid charge's row until commit (a no-op update: PostgreSQL locks
/// the row; SQLite writers are serialised anyway) and reads it as it is
/// then. Every refund of the charge takes it before it reads what earlier
/// refunds gave back, so two refunds of one charge check one after the
/// other. `None`: the charge is not (or no longer) paid.
pub async fn lock_paid_charge(conn: &mut AnyConnection, id: &str) -> Result<Option<Charge>> {
    let sql = format!(
        "UPDATE charges SET updated_at = updated_at WHERE id = $1 AND state = 'succeeded'
         RETURNING {CHARGE_COLS}"
    );
    one_charge(conn, sql, id).await
}

/// Charges whose outcome is not known, oldest first.
pub async fn unsettled_charges(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Charge>> {
    let sql = format!(
        "SELECT {CHARGE_COLS} FROM charges WHERE state IN ('created', 'pending')
         ORDER BY created_at LIMIT $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(charge_from_row)
        .collect()
}

pub async fn next_attempt(conn: &mut AnyConnection, order_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT COALESCE(MAX(attempt), 0) FROM charges WHERE order_id = $1")
        .bind(order_id.to_owned())
        .fetch_one(conn)
        .await?;
    Ok(row.get::<i64, _>(0) + 1)
}

pub struct NewCharge<'a> {
    pub id: &'a str,
    pub order_id: &'a str,
    pub attempt: i64,
    pub provider: &'a str,
    pub code_kind: &'a str,
    pub code_masked: &'a str,
    pub amount_fen: i64,
    pub deadline_at: i64,
    pub created_by: &'a str,
    pub now: i64,
}

/// Inserts a `created` charge. `Ok(false)`: the order already has a live
/// charge (the unique index said so).
pub async fn insert_charge(conn: &mut AnyConnection, c: NewCharge<'_>) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO charges (id, order_id, attempt, provider, code_kind, code_masked, amount_fen,
            state, deadline_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $9, $10, $10)",
    )
    .bind(c.id.to_owned())
    .bind(c.order_id.to_owned())
    .bind(c.attempt)
    .bind(c.provider.to_owned())
    .bind(c.code_kind.to_owned())
    .bind(c.code_masked.to_owned())
    .bind(c.amount_fen)
    .bind(c.deadline_at)
    .bind(c.created_by.to_owned())
    .bind(c.now)
    .execute(conn)
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves a charge that is not final yet; `false` when it already was.
pub async fn settle_charge(
    conn: &mut AnyConnection,
    id: &str,
    to: ChargeState,
    failure_code: Option<Code>,
    provider_txn: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE charges SET state = $1, failure_code = COALESCE($2, failure_code),
            provider_txn = COALESCE($3, provider_txn), updated_at = $4
         WHERE id = $5 AND state IN ('created', 'pending')",
    )
    .bind(to.as_str())
    .bind(failure_code.map(|c| c.as_str().to_owned()))
    .bind(provider_txn.map(str::to_owned))
    .bind(now)
    .bind(id.to_owned())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn log_exchange(
    conn: &mut AnyConnection,
    charge_id: &str,
    call: &str,
    outcome: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO charge_exchanges (charge_id, at, call, outcome, detail)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(charge_id.to_owned())
    .bind(at)
    .bind(call.to_owned())
    .bind(outcome.to_owned())
    .bind(detail.map(str::to_owned))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Exchange {
    pub at: String,
    pub call: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub async fn exchanges(conn: &mut AnyConnection, charge_id: &str) -> Result<Vec<Exchange>> {
    let rows = sqlx::query(
        "SELECT at, call, outcome, detail FROM charge_exchanges WHERE charge_id = $1 ORDER BY id",
    )
    .bind(charge_id.to_owned())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Exchange {
            at: clock::rfc3339(r.get("at")),
            call: r.get("call"),
            outcome: r.get("outcome"),
            detail: r.get("detail"),
        })
        .collect())
}

/// The one write of an order's payment status after it was created: the
/// change `event` makes to `from` (the status the caller read in this
/// transaction), by [`payment_transition`]'s table. A change the table does
/// not allow is logged and refused as an internal error; nothing is written.
/// `seq` is the feed number the change takes, when it takes one.
pub async fn set_payment_status(
    conn: &mut AnyConnection,
    order_id: &str,
    from: PaymentStatus,
    event: PaymentEvent,
    seq: Option<i64>,
    now: i64,
) -> Result<PaymentStatus> {
    let to = payment_transition(from, event).map_err(|e| {
        tracing::error!(
            order = order_id,
            from = from.as_str(),
            ?event,
            "payment status change refused"
        );
        Error::internal(anyhow::anyhow!("order {order_id}: {e}"))
    })?;
    let q = match seq {
        Some(seq) => sqlx::query(
            "UPDATE orders SET payment_status = $1, updated_at = $2, seq = $3 WHERE id = $4",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(seq),
        None => sqlx::query("UPDATE orders SET payment_status = $1, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now),
    };
    q.bind(order_id.to_owned()).execute(conn).await?;
    Ok(to)
}

// ------------------------------------------------------------------ refunds

/// A refund's place in its state machine: `requested` (recorded; the
/// provider has not accepted it yet), `processing` (accepted: the money is
/// on its way), then `succeeded` or `failed`. A provider's SUCCESS answer to
/// the refund call only means accepted; the outcome comes from its refund
/// query. Until it is final the money is not back with the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    Requested,
    Processing,
    Succeeded,
    Failed,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Processing => "processing",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "requested" => RefundState::Requested,
            "processing" => RefundState::Processing,
            "succeeded" => RefundState::Succeeded,
            "failed" => RefundState::Failed,
            other => {
                return Err(Error::internal(anyhow::anyhow!(
                    "unknown refund state {other:?}"
                )));
            }
        })
    }

    /// Succeeded or failed: it will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, RefundState::Succeeded | RefundState::Failed)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refund {
    pub id: String,
    pub charge_id: String,
    pub order_id: String,
    pub request_id: String,
    pub state: RefundState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub amount: Money,
    pub amount_fen: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refunded goods went (or go, once it succeeds) back into stock.
    pub restock: bool,
    /// What it gives back line by line; empty for an amount-only refund.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<RefundLine>,
    /// The provider's number of the refund, once it accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One order line's part of a refund.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefundLine {
    pub line_no: i64,
    pub sku: String,
    pub quantity: Quantity,
    pub amount: Money,
}

const REFUND_COLS: &str = "id, charge_id, order_id, request_id, amount_fen, state, failure_code,
    provider_ref, reason, restock, created_at, updated_at";

fn refund_from_row(r: &sqlx::any::AnyRow) -> Result<Refund> {
    let state = RefundState::parse(&r.get::<String, _>("state"))?;
    let amount_fen: i64 = r.get("amount_fen");
    Ok(Refund {
        id: r.get("id"),
        charge_id: r.get("charge_id"),
        order_id: r.get("order_id"),
        request_id: r.get("request_id"),
        state,
        code: r.get("failure_code"),
        amount: Money::from_fen(amount_fen),
        amount_fen,
        reason: r.get("reason"),
        restock: r.get::<i64, _>("restock") != 0,
        lines: Vec::new(),
        refund_ref: r.get("provider_ref"),
        created_at: clock::rfc3339(r.get("created_at")),
        updated_at: clock::rfc3339(r.get("updated_at")),
    })
}

/// Fills in the lines of each refund.
async fn with_lines(conn: &mut AnyConnection, mut refunds: Vec<Refund>) -> Result<Vec<Refund>> {
    for r in &mut refunds {
        r.lines = refund_lines(conn, &r.id).await?;
    }
    Ok(refunds)
}

pub async fn refund_lines(conn: &mut AnyConnection, refund_id: &str) -> Result<Vec<RefundLine>> {
    let rows = sqlx::query(
        "SELECT rl.line_no, rl.qty_milli, rl.amount_fen, ol.sku, ol.unit
         FROM refund_lines rl
         JOIN refunds r ON r.id = rl.refund_id
         JOIN order_lines ol ON ol.order_id = r.order_id AND ol.line_no = rl.line_no
         WHERE rl.refund_id = $1 ORDER BY rl.line_no",
    )
    .bind(refund_id.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let unit = Unit::parse(&r.get::<String, _>("unit")).map_err(Error::internal)?;
            Ok(RefundLine {
                line_no: r.get("line_no"),
                sku: r.get("sku"),
                quantity: Quantity::from_milli(unit, r.get("qty_milli")),
                amount: Money::from_fen(r.get("amount_fen")),
            })
        })
        .collect()
}

/// Quantity and money already given back per order line, by refunds that
/// have not failed (or failed with [`Code::RefundChange`]: that money has left).
pub async fn refunded_per_line(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<std::collections::HashMap<i64, (i64, i64)>> {
    let rows = sqlx::query(
        "SELECT rl.line_no, CAST(SUM(rl.qty_milli) AS BIGINT) AS qty, CAST(SUM(rl.amount_fen) AS BIGINT) AS fen
         FROM refund_lines rl JOIN refunds r ON r.id = rl.refund_id
         WHERE r.order_id = $1 AND (r.state <> 'failed' OR r.failure_code = $2)
         GROUP BY rl.line_no",
    )
    .bind(order_id.to_owned())
    .bind(Code::RefundChange.as_str())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<i64, _>(0), (r.get::<i64, _>(1), r.get::<i64, _>(2))))
        .collect())
}

pub async fn refund_by_request(
    conn: &mut AnyConnection,
    order_id: &str,
    request_id: &str,
) -> Result<Option<Refund>> {
    let sql = format!("SELECT {REFUND_COLS} FROM refunds WHERE order_id = $1 AND request_id = $2");
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_owned())
        .bind(request_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| refund_from_row(&r))
        .transpose()?;
    match found {
        Some(r) => Ok(with_lines(conn, vec![r]).await?.pop()),
        None => Ok(None),
    }
}

pub async fn refunds_of_order(conn: &mut AnyConnection, order_id: &str) -> Result<Vec<Refund>> {
    let sql =
        format!("SELECT {REFUND_COLS} FROM refunds WHERE order_id = $1 ORDER BY created_at, id");
    let refunds = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_owned())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(refund_from_row)
        .collect::<Result<Vec<_>>>()?;
    with_lines(conn, refunds).await
}

/// Refunds that are not final, the longest untouched first (so refunds
/// that stay processing for days do not starve newer ones): `requested`
/// ones are sent again (under their own `out_refund_no`), `processing`
/// ones queried.
pub async fn unsettled_refunds(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Refund>> {
    let sql = format!(
        "SELECT {REFUND_COLS} FROM refunds WHERE state IN ('requested', 'processing')
         ORDER BY COALESCE(queried_at, created_at), id LIMIT $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(refund_from_row)
        .collect()
}

/// How many refunds the charge has had, failed ones included: the number of
/// the next is one more. Read under [`lock_paid_charge`], so two refunds of
/// one charge never get the same number.
pub async fn count_refunds(conn: &mut AnyConnection, charge_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM refunds WHERE charge_id = $1")
        .bind(charge_id.to_owned())
        .fetch_one(conn)
        .await?;
    Ok(row.get::<i64, _>(0))
}

pub struct NewRefund<'a> {
    pub id: &'a str,
    pub charge_id: &'a str,
    pub order_id: &'a str,
    pub request_id: &'a str,
    pub amount_fen: i64,
    pub reason: Option<&'a str>,
    pub restock: bool,
    /// (line_no, qty_milli, amount_fen)
    pub lines: &'a [(i64, i64, i64)],
    pub created_by: &'a str,
    pub now: i64,
}

/// Records a `requested` refund and reserves its amount on the charge, so two
/// refunds at once can never exceed what was paid. `false`: it would.
pub async fn insert_refund(conn: &mut AnyConnection, r: NewRefund<'_>) -> Result<bool> {
    let reserved = sqlx::query(
        "UPDATE charges SET refunded_fen = refunded_fen + $1, updated_at = $2
         WHERE id = $3 AND state = 'succeeded' AND refunded_fen + $1 <= amount_fen",
    )
    .bind(r.amount_fen)
    .bind(r.now)
    .bind(r.charge_id.to_owned())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if reserved != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO refunds (id, charge_id, order_id, request_id, amount_fen, state, created_by,
            created_at, updated_at, reason, restock)
         VALUES ($1, $2, $3, $4, $5, 'requested', $6, $7, $7, $8, $9)",
    )
    .bind(r.id.to_owned())
    .bind(r.charge_id.to_owned())
    .bind(r.order_id.to_owned())
    .bind(r.request_id.to_owned())
    .bind(r.amount_fen)
    .bind(r.created_by.to_owned())
    .bind(r.now)
    .bind(r.reason.map(str::to_owned))
    .bind(i64::from(r.restock))
    .execute(&mut *conn)
    .await?;
    for &(line_no, qty_milli, amount_fen) in r.lines {
        sqlx::query(
            "INSERT INTO refund_lines (refund_id, line_no, qty_milli, amount_fen)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(r.id.to_owned())
        .bind(line_no)
        .bind(qty_milli)
        .bind(amount_fen)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// The provider accepted a `requested` refund: it is `processing` under the
/// provider's number `refund_ref` (kept if it gave none). `false` when it
/// was no longer `requested`.
pub async fn accept_refund(
    conn: &mut AnyConnection,
    id: &str,
    refund_ref: &str,
    now: i64,
) -> Result<bool> {
    let refund_ref = (!refund_ref.is_empty()).then(|| refund_ref.to_owned());
    let n = sqlx::query(
        "UPDATE refunds SET state = 'processing', provider_ref = COALESCE($1, provider_ref),
            accepted_at = $2, updated_at = $2
         WHERE id = $3 AND state = 'requested'",
    )
    .bind(refund_ref)
    .bind(now)
    .bind(id.to_owned())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// When the provider was last called about a refund (sent or queried).
pub async fn refund_queried(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE refunds SET queried_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Finishes a refund that is not final yet. A failed one gives its
/// reservation back, so the amount is refundable again, unless the money
/// has left ([`Code::RefundChange`]). `false` when it was already final.
pub async fn settle_refund(
    conn: &mut AnyConnection,
    refund: &Refund,
    to: RefundState,
    failure_code: Option<Code>,
    provider_ref: Option<&str>,
    now: i64,
) -> Result<bool> {
    debug_assert!(to.is_final());
    let n = sqlx::query(
        "UPDATE refunds SET state = $1, failure_code = $2,
            provider_ref = COALESCE($3, provider_ref), updated_at = $4
         WHERE id = $5 AND state IN ('requested', 'processing')",
    )
    .bind(to.as_str())
    .bind(failure_code.map(|c| c.as_str().to_owned()))
    .bind(provider_ref.filter(|r| !r.is_empty()).map(str::to_owned))
    .bind(now)
    .bind(refund.id.clone())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n != 1 {
        return Ok(false);
    }
    if to == RefundState::Failed && failure_code != Some(Code::RefundChange) {
        sqlx::query(
            "UPDATE charges SET refunded_fen = refunded_fen - $1, updated_at = $2 WHERE id = $3",
        )
        .bind(refund.amount_fen)
        .bind(now)
        .bind(refund.charge_id.clone())
        .execute(conn)
        .await?;
    }
    Ok(true)
}

/// A payment taken before the order reached the gateway (in the app).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Prepayment {
    pub provider: String,
    pub transaction_id: String,
    pub amount: Money,
    pub amount_fen: i64,
    pub recorded_at: String,
}

pub async fn prepayment(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Prepayment>> {
    let row = sqlx::query(
        "SELECT provider, reference, amount_fen, created_at FROM prepayments WHERE order_id = $1",
    )
    .bind(order_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        let amount_fen: i64 = r.get("amount_fen");
        Prepayment {
            provider: r.get("provider"),
            transaction_id: r.get("reference"),
            amount: Money::from_fen(amount_fen),
            amount_fen,
            recorded_at: clock::rfc3339(r.get("created_at")),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{self, ItemChange, ProductSpec};
    use crate::db::Db;
    use crate::events::Hub;
    use crate::orders::{self, Created, NewLine, NewOrder};
    use proto::order::{Channel, Sku};

    #[tokio::test]
    async fn a_payment_status_change_outside_the_table_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/p.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate_up().await.unwrap();
        let store = StoreId::parse("S001").unwrap();
        let sku = Sku::parse("COLA").unwrap();
        catalog::put_store(&db, &store, "门店".into())
            .await
            .unwrap();
        let product = ProductSpec {
            sku: sku.clone(),
            name: "可口可乐".into(),
            unit: Unit::Piece,
            price: Money::parse("3.50").unwrap(),
            barcodes: None,
        };
        catalog::put_product(&db, product).await.unwrap();
        let stock = ItemChange {
            on_hand: Some("10".into()),
            available: None,
            price: None,
            snoozed_until: None,
        };
        catalog::put_item(&db, &store, &sku, stock).await.unwrap();
        let new = NewOrder {
            store: store.clone(),
            channel: Channel::Terminal,
            platform: None,
            channel_order_id: None,
            lines: vec![NewLine {
                sku,
                quantity: "1".into(),
                unit_price: None,
            }],
            note: None,
            payment_status: PaymentStatus::Unpaid,
            prepaid: None,
            actor: "terminal:S001-T01".into(),
            happened: None,
        };
        let Created::Order { order, .. } =
            orders::create(&db, &Hub::default(), &orders::Writer::direct(), new, None)
                .await
                .unwrap()
        else {
            panic!("a new order");
        };
        let status = |db: Db, id: String| async move {
            let mut conn = db.pool.acquire().await.unwrap();
            order_facts(&mut conn, &id).await.unwrap().payment_status
        };

        let mut tx = db.write().await.unwrap();
        let refunded_before_paid = set_payment_status(
            &mut tx,
            &order.id,
            PaymentStatus::Unpaid,
            PaymentEvent::RefundSucceeded { all: true },
            None,
            db.now_micros(),
        )
        .await
        .unwrap_err();
        assert_eq!(refunded_before_paid.code, Code::Internal);
        tx.commit().await.unwrap();
        assert_eq!(
            status(db.clone(), order.id.clone()).await,
            PaymentStatus::Unpaid
        );

        let mut tx = db.write().await.unwrap();
        let to = set_payment_status(
            &mut tx,
            &order.id,
            PaymentStatus::Unpaid,
            PaymentEvent::ChargeStarted,
            None,
            db.now_micros(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(to, PaymentStatus::Pending);
        assert_eq!(status(db, order.id.clone()).await, PaymentStatus::Pending);
    }
}
