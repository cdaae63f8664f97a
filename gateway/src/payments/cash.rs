//! Cash at the counter: the cashier takes the order's total in notes and
//! coins, the drawer opens, and the gateway records the tender (what was
//! handed over and the change) and marks the order paid. No provider is
//! involved, so this works whether or not payment codes are configured.
//!
//! One tender per order. The same tender again (a retry after a lost
//! answer) answers the recorded one and changes nothing; a different one
//! for a paid order is refused.

use proto::order::{Money, PaymentEvent, PaymentStatus};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::store;
use crate::clock;
use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::{self, Hub};
use crate::keys::Principal;

/// A cash tender as every surface shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CashTender {
    pub order_id: String,
    pub method: &'static str,
    /// The order's total, taken.
    pub amount: Money,
    /// What the customer handed over.
    pub tendered: Money,
    /// What went back to the customer.
    pub change: Money,
    pub by: String,
    pub created_at: String,
}

/// What [`tender`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tendered {
    /// Recorded now: the order is paid.
    New(CashTender),
    /// The same tender was recorded before (a retry): nothing changed.
    Again(CashTender),
}

fn from_row(r: &sqlx::any::AnyRow) -> CashTender {
    CashTender {
        order_id: r.get("order_id"),
        method: "cash",
        amount: Money::from_fen(r.get("amount_fen")),
        tendered: Money::from_fen(r.get("tendered_fen")),
        change: Money::from_fen(r.get("change_fen")),
        by: r.get("by_whom"),
        created_at: clock::rfc3339(r.get("created_at")),
    }
}

/// The order's cash tender, if it was paid in cash.
pub async fn of_order(conn: &mut AnyConnection, order_id: &str) -> Result<Option<CashTender>> {
    Ok(sqlx::query(
        "SELECT order_id, amount_fen, tendered_fen, change_fen, by_whom, created_at
         FROM cash_tenders WHERE order_id = $1",
    )
    .bind(order_id.to_owned())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row))
}

/// Takes the order's total in cash: `tendered` is what the customer handed
/// over (at least the total; the change is the difference). One
/// transaction: the tender, the order paid, a feed event `order.paid`.
pub async fn tender(
    db: &Db,
    hub: &Hub,
    order_id: &str,
    tendered: Money,
    who: &Principal,
) -> Result<Tendered> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    // The store row first, as every order write takes it; then the order row.
    let store_id = store::order_facts(&mut tx, order_id).await?.store;
    let seq = events::next_seq(&mut tx, &store_id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
    let order = store::lock_order_facts(&mut tx, order_id).await?;
    who.check_order(&order.store, order_id)?;
    if let Some(done) = of_order(&mut tx, order_id).await? {
        if done.tendered == tendered {
            return Ok(Tendered::Again(done));
        }
        return Err(Error::new(
            Code::OrderAlreadyPaid,
            format!(
                "order {order_id} was paid in cash already ({} tendered)",
                done.tendered
            ),
        ));
    }
    match order.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Pending => return Err(crate::orders::held::payment_pending(order_id)),
        other => {
            return Err(Error::new(
                Code::OrderAlreadyPaid,
                format!("order {order_id} is {}", other.as_str()),
            ));
        }
    }
    order.check_payable(order_id)?;
    let total = Money::from_fen(order.total_fen);
    let change = tendered
        .fen()
        .checked_sub(order.total_fen)
        .filter(|c| *c >= 0)
        .ok_or_else(|| {
            Error::new(
                Code::TenderTooSmall,
                format!("{tendered} tendered is less than the order's total {total}"),
            )
        })?;
    let by = who.actor().to_string();
    sqlx::query(
        "INSERT INTO cash_tenders (order_id, store_id, amount_fen, tendered_fen, change_fen, by_whom, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(order_id.to_owned())
    .bind(order.store.as_str().to_owned())
    .bind(order.total_fen)
    .bind(tendered.fen())
    .bind(change)
    .bind(by.clone())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    store::set_payment_status(
        &mut tx,
        order_id,
        order.payment_status,
        PaymentEvent::CashTendered,
        Some(seq),
        now,
    )
    .await?;
    super::append_event(&mut tx, &order.store, seq, order_id, "order.paid", now).await?;
    tx.commit().await?;
    let done = CashTender {
        order_id: order_id.to_owned(),
        method: "cash",
        amount: total,
        tendered,
        change: Money::from_fen(change),
        by,
        created_at: clock::rfc3339(now),
    };
    hub.notify(&order.store);
    tracing::info!(order = order_id, tendered = %tendered, "paid in cash");
    Ok(Tendered::New(done))
}
