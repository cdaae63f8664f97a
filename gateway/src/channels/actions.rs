//! The store's platform-only actions on a third-party order: self-delivery
//! (`delivering`, `arrived`) and the answer to a refund request
//! (`refund_agree`, `refund_reject`). Each is a feed event and, if the
//! platform wants to hear of it, a platform call, in one transaction. The
//! route is `POST /api/v1/orders/{id}/third_party/{action}` (`http/channels.rs`).

use proto::order::{Channel, OrderStatus, PaymentStatus, StoreId};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::ingest::ThirdParty;
use crate::actor::Actor;
use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::{self, Hub};
use crate::orders::MAX_REASON_CHARS;
use crate::outbox::{self, NewCall};
use crate::platforms::{self, OrderAction};

/// One of the store's platform-only actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAction {
    Delivering,
    Arrived,
    RefundAgree,
    RefundReject,
}

impl StoreAction {
    /// The feed event it appends.
    pub fn feed_kind(self) -> &'static str {
        match self {
            StoreAction::Delivering => "order.delivering",
            StoreAction::Arrived => "order.arrived",
            StoreAction::RefundAgree => "order.refund_agreed",
            StoreAction::RefundReject => "order.refund_rejected",
        }
    }

    /// The refund state it answers a refund request with, if it does.
    fn refund_to(self) -> Option<&'static str> {
        match self {
            StoreAction::RefundAgree => Some("agreed"),
            StoreAction::RefundReject => Some("rejected"),
            _ => None,
        }
    }
}

/// An action with its reason, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub action: StoreAction,
    /// Trimmed; `None` when empty.
    pub reason: Option<String>,
}

impl ActionRequest {
    /// `action` is `delivering`, `arrived`, `refund_agree` or
    /// `refund_reject` (which needs a reason).
    pub fn parse(action: &str, reason: Option<String>) -> Result<Self> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(Error::new(Code::InvalidReason, "reason is too long"));
        }
        let action = match action {
            "delivering" => StoreAction::Delivering,
            "arrived" => StoreAction::Arrived,
            "refund_agree" => StoreAction::RefundAgree,
            "refund_reject" => StoreAction::RefundReject,
            _ => {
                return Err(Error::new(
                    Code::UnknownAction,
                    "third-party actions are delivering, arrived, refund_agree, refund_reject",
                ));
            }
        };
        if action == StoreAction::RefundReject && reason.is_none() {
            return Err(Error::new(
                Code::ReasonRequired,
                "refund_reject needs a reason",
            ));
        }
        Ok(ActionRequest { action, reason })
    }

    fn order_action(&self) -> OrderAction<'_> {
        let reason = self.reason.as_deref().unwrap_or_default();
        match self.action {
            StoreAction::Delivering => OrderAction::Delivering,
            StoreAction::Arrived => OrderAction::Arrived,
            StoreAction::RefundAgree => OrderAction::RefundAgree { reason },
            StoreAction::RefundReject => OrderAction::RefundReject { reason },
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub order_id: String,
    pub event: &'static str,
    pub seq: i64,
}

/// Applies `req` to the third-party order `tp` (already authorised), by
/// `by`, in one transaction: the refund state and the payment status (a
/// refund agreed), the platform's call, the feed event.
pub async fn act(
    db: &Db,
    hub: &Hub,
    tp: &ThirdParty,
    req: &ActionRequest,
    by: &Actor,
) -> Result<Done> {
    let id = tp.order_id.as_str();
    let store = StoreId::parse(&tp.store_id).map_err(Error::internal)?;
    let kind = req.action.feed_kind();
    let refund_to = req.action.refund_to();
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let seq = events::next_seq(&mut tx, &store)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
    let row = sqlx::query(
        "SELECT o.status, o.payment_status, o.channel, t.refund_state FROM orders o JOIN third_party_orders t ON t.order_id = o.id
         WHERE o.id = $1",
    )
    .bind(id.to_owned())
    .fetch_one(&mut **tx)
    .await?;
    let status = OrderStatus::parse(&row.get::<String, _>("status")).map_err(Error::internal)?;
    debug_assert_eq!(
        row.get::<String, _>("channel"),
        Channel::ThirdParty.as_str()
    );
    let refund_state: Option<String> = row.get("refund_state");
    if refund_to.is_some() && refund_state.as_deref() != Some("requested") {
        return Err(Error::new(
            Code::NoRefundRequested,
            format!("order {id} has no open refund request"),
        ));
    }
    if refund_to.is_none()
        && matches!(
            status,
            OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Created
        )
    {
        return Err(Error::new(
            Code::IllegalTransition,
            format!(
                "order {id} is {}; accept it before delivering",
                status.as_str()
            ),
        ));
    }
    if let Some(to) = refund_to {
        sqlx::query("UPDATE third_party_orders SET refund_state = $1 WHERE order_id = $2")
            .bind(to)
            .bind(id.to_owned())
            .execute(&mut **tx)
            .await?;
        if to == "agreed" {
            let paid = PaymentStatus::parse(&row.get::<String, _>("payment_status"))
                .map_err(Error::internal)?;
            // The one function that changes a payment status.
            crate::payments::store::set_payment_status(
                &mut tx,
                id,
                paid,
                proto::order::PaymentEvent::PlatformRefundAgreed,
                None,
                now,
            )
            .await?;
        }
    }
    let call = platforms::find(&tp.platform)
        .and_then(|p| p.order_call(&tp.platform_order_id, &req.order_action()));
    if let Some(call) = call {
        outbox::enqueue(
            &mut tx,
            &[NewCall {
                platform: tp.platform.clone(),
                order_key: tp.platform_order_id.clone(),
                path: call.path,
                params: call.params,
                store_id: Some(store.to_string()),
                order_id: Some(id.to_owned()),
                not_before: None,
            }],
            now,
        )
        .await?;
    }
    crate::orders::append_order_event(
        &mut tx,
        &store,
        seq,
        id,
        kind,
        json!({"by": by, "reason": req.reason}),
        now,
    )
    .await?;
    tx.commit().await?;
    hub.notify(&store);
    Ok(Done {
        order_id: id.to_owned(),
        event: kind,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_reasons_are_checked_in_order() {
        let code = |a: &str, r: Option<&str>| {
            ActionRequest::parse(a, r.map(str::to_owned))
                .map_err(|e| e.code)
                .map(|r| (r.action, r.reason))
        };
        assert_eq!(
            code("delivering", Some("  ")),
            Ok((StoreAction::Delivering, None))
        );
        assert_eq!(
            code("refund_reject", Some(" 已出餐 ")),
            Ok((StoreAction::RefundReject, Some("已出餐".to_owned())))
        );
        assert_eq!(code("refund_reject", None), Err(Code::ReasonRequired));
        assert_eq!(code("fly", None), Err(Code::UnknownAction));
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(code("fly", Some(&long)), Err(Code::InvalidReason));
    }
}
