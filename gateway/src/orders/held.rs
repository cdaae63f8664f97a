//! What money an order holds, asked by a cancel or reject in its own
//! transaction: an order never ends while the gateway keeps money it took.
//! The rows are the payments' (`charges`, `refunds`); this is the one read
//! of them the order rules need, so `orders` does not depend on the
//! payment use cases (which depend on orders).

use proto::order::{Money, PaymentStatus};
use sqlx::{AnyConnection, Row};

use crate::error::{Code, Error, Result};

/// What a cancel or reject must know of the money an order holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing was taken, or everything taken has been given back.
    Nothing,
    /// A charge of ours is still running.
    ChargeRunning,
    /// A refund of our charge is requested or processing: the money is not
    /// back yet.
    RefundRunning,
    /// Our charge took money that is not refunded yet (fen).
    Ours(i64),
    /// Paid outside the gateway (the app, a platform, the counter's cash):
    /// whoever took the money refunds it.
    Elsewhere,
}

/// What the order (whose `payment_status` the caller has just read) holds.
pub async fn money_held(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_status: PaymentStatus,
) -> Result<Held> {
    if payment_status == PaymentStatus::Pending {
        return Ok(Held::ChargeRunning);
    }
    // The charge that may take or has taken money (at most one per order).
    let live = sqlx::query(
        "SELECT id, state, amount_fen FROM charges
         WHERE order_id = $1 AND state IN ('created', 'pending', 'succeeded')",
    )
    .bind(order_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(live) = live else {
        return Ok(
            if matches!(
                payment_status,
                PaymentStatus::Paid | PaymentStatus::PartiallyRefunded
            ) {
                Held::Elsewhere
            } else {
                Held::Nothing
            },
        );
    };
    let (charge_id, state, amount_fen): (String, String, i64) =
        (live.get(0), live.get(1), live.get(2));
    if state != "succeeded" {
        return Ok(Held::ChargeRunning);
    }
    // Given back: what succeeded, and what left for the customer but must be
    // paid out by hand (CHANGE). Running: requested or processing, whose
    // money is not back yet.
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'succeeded'
                    OR (state = 'failed' AND failure_code = $2) THEN amount_fen ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN state IN ('requested', 'processing') THEN 1 ELSE 0 END), 0) AS BIGINT)
         FROM refunds WHERE charge_id = $1",
    )
    .bind(charge_id)
    .bind(Code::RefundChange.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let (refunded, running): (i64, i64) = (row.get(0), row.get(1));
    Ok(if running > 0 {
        Held::RefundRunning
    } else if refunded < amount_fen {
        Held::Ours(amount_fen - refunded)
    } else {
        Held::Nothing
    })
}

/// What a cancel or reject must settle first; `Some("elsewhere")` when a
/// refund is due from whoever took the money (the app, the platform, cash).
pub(crate) async fn refund_due(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_status: PaymentStatus,
) -> Result<Option<&'static str>> {
    match money_held(conn, order_id, payment_status).await? {
        Held::Nothing => Ok(None),
        Held::Elsewhere => Ok(Some("elsewhere")),
        Held::ChargeRunning => Err(payment_pending(order_id)),
        Held::RefundRunning => Err(refund_pending(order_id)),
        Held::Ours(fen) => Err(refund_required(order_id, Money::from_fen(fen))),
    }
}

/// A cancel or reject (or a second charge) while a charge of the order runs.
pub(crate) fn payment_pending(order_id: &str) -> Error {
    Error::new(
        Code::PaymentPending,
        format!(
            "a payment of order {order_id} is running; wait for its outcome, then try again \
             (a paid order is refunded in full when it is cancelled or rejected)"
        ),
    )
}

/// A cancel or reject while a refund of the order is requested or
/// processing.
pub(crate) fn refund_pending(order_id: &str) -> Error {
    Error::new(
        Code::RefundPending,
        format!(
            "a refund of order {order_id} is with the provider and the money is not back yet; \
             the order is unchanged: try again shortly"
        ),
    )
}

/// A cancel or reject of money the gateway took, where it cannot refund it
/// itself (no provider configured, or a plain `act`).
pub(crate) fn refund_required(order_id: &str, kept: Money) -> Error {
    Error::new(
        Code::RefundRequired,
        format!(
            "order {order_id} holds {kept} paid at the counter; refund it in full \
             (POST /api/v1/orders/{order_id}/refunds or RefundOrder), then try again"
        ),
    )
}
