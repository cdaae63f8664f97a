//! `PayOrder`, `GetPayment`, `RefundOrder` and `TenderCash`: the same
//! use cases as `POST /api/v1/orders/{id}/payments` (a code, or cash), `GET
//! …/payments` and `POST …/refunds`, with the same rules and error codes, answered as the
//! `proto::soap` payment views.

use std::sync::Arc;

use proto::soap::{
    self, ChargeState as WireChargeState, GetPayment, GetPaymentResponse, PayOrder,
    PayOrderResponse, Payment, PaymentRefund, Prepaid, ProviderExchange, RefundOrder,
    RefundOrderResponse, RefundState as WireRefundState, RefundedLine, TenderCash,
    TenderCashResponse,
};

use crate::app::AppState;
use crate::error::{Code, Error, Result};
use crate::keys::Principal;
use crate::payments::{
    Charge, ChargeState, ChargeWithLog, Payments, Refund, RefundLineSpec, RefundSpec, RefundState,
};

/// The service, or the REST answer when payments are off.
fn service(st: &AppState) -> Result<&Arc<Payments>> {
    crate::payments::configured(st.payments.as_ref())
}

pub async fn pay(st: &AppState, who: &Principal, m: PayOrder) -> Result<String> {
    let payments = service(st)?;
    let charge = payments.pay(&m.order_id, &m.auth_code, who).await?;
    Ok(soap::write_response(&PayOrderResponse {
        charge: payment(charge, Vec::new()),
    }))
}

/// Cash at the counter; needs no payment provider.
pub async fn tender_cash(st: &AppState, who: &Principal, m: TenderCash) -> Result<String> {
    use crate::payments::cash;
    let t = match cash::tender(&st.db, &st.hub, &m.order_id, m.tendered, who).await? {
        cash::Tendered::New(t) | cash::Tendered::Again(t) => t,
    };
    Ok(soap::write_response(&TenderCashResponse {
        order_id: t.order_id,
        amount: t.amount,
        tendered: t.tendered,
        change: t.change,
        by: t.by,
        at: t.created_at,
    }))
}

pub async fn get(st: &AppState, who: &Principal, m: GetPayment) -> Result<String> {
    let payments = service(st)?;
    let p = payments.of_order(&m.order_id, who).await?;
    Ok(soap::write_response(&GetPaymentResponse {
        order_id: p.order_id,
        payment_status: p.payment_status,
        charges: p
            .charges
            .into_iter()
            .map(|ChargeWithLog { charge, exchanges }| {
                let log = exchanges
                    .into_iter()
                    .map(|x| ProviderExchange {
                        at: x.at,
                        call: x.call,
                        outcome: x.outcome,
                        detail: x.detail,
                    })
                    .collect();
                payment(charge, log)
            })
            .collect(),
        refunds: p.refunds.into_iter().map(refund).collect(),
        prepaid: p.prepaid.map(|pp| Prepaid {
            provider: pp.provider,
            transaction_id: pp.transaction_id,
            amount: pp.amount,
        }),
    }))
}

pub async fn refund_order(st: &AppState, who: &Principal, m: RefundOrder) -> Result<String> {
    let payments = service(st)?;
    let spec = RefundSpec {
        request_id: m.request_id,
        amount: m.amount,
        reason: m.reason,
        lines: m
            .lines
            .into_iter()
            .map(|l| RefundLineSpec {
                line_no: l.line_no,
                quantity: l.quantity,
            })
            .collect(),
        restock: m.restock,
    };
    let r = payments
        .refund_with(&m.order_id, spec, who)
        .await
        .map_err(explained)?;
    Ok(soap::write_response(&RefundOrderResponse {
        refund: refund(r),
    }))
}

/// Refusals of a refund that the cashier must act on: the Fault's text
/// leads with what [`reason`] says, then the gateway's detail in brackets.
const REFUND_REFUSALS: [Code; 6] = [
    Code::InvalidRefund,
    Code::RefundExceedsLine,
    Code::RefundAmountMismatch,
    Code::RestockNeedsCompletedOrder,
    Code::IdempotencyConflict,
    Code::PaidElsewhere,
];

fn explained(mut e: Error) -> Error {
    if REFUND_REFUSALS.contains(&e.code) {
        e.message = format!("{} ({})", reason(Some(e.code)), e.message);
    }
    e
}

fn payment(c: Charge, exchanges: Vec<ProviderExchange>) -> Payment {
    let state = match c.state {
        ChargeState::Created => WireChargeState::Created,
        ChargeState::Pending => WireChargeState::Pending,
        ChargeState::Succeeded => WireChargeState::Succeeded,
        ChargeState::Failed => WireChargeState::Failed,
        ChargeState::Reversed => WireChargeState::Reversed,
    };
    Payment {
        failure_reason: c
            .code
            .as_deref()
            .map(|code| reason(Code::parse(code)).to_owned()),
        id: c.id,
        order_id: c.order_id,
        attempt: c.attempt,
        provider: c.provider,
        code_kind: c.code_kind,
        auth_code: c.auth_code,
        state,
        failure_code: c.code,
        amount: c.amount,
        refunded: c.refunded,
        transaction_id: c.transaction_id,
        created_at: c.created_at,
        updated_at: c.updated_at,
        exchanges,
    }
}

fn refund(r: Refund) -> PaymentRefund {
    let state = match r.state {
        RefundState::Requested => WireRefundState::Requested,
        RefundState::Processing => WireRefundState::Processing,
        RefundState::Succeeded => WireRefundState::Succeeded,
        RefundState::Failed => WireRefundState::Failed,
    };
    PaymentRefund {
        failure_reason: r
            .code
            .as_deref()
            .map(|code| reason(Code::parse(code)).to_owned()),
        id: r.id,
        charge_id: r.charge_id,
        order_id: r.order_id,
        request_id: r.request_id,
        state,
        failure_code: r.code,
        amount: r.amount,
        created_at: r.created_at,
        updated_at: r.updated_at,
        reason: r.reason,
        restock: r.restock,
        lines: r
            .lines
            .into_iter()
            .map(|l| RefundedLine {
                line_no: l.line_no,
                quantity: l.quantity.to_string(),
                sku: l.sku,
                amount: l.amount,
            })
            .collect(),
    }
}

/// What a failure code means, for the cashier to read out (`None`: a
/// stored code this gateway does not know).
fn reason(code: Option<Code>) -> &'static str {
    let Some(code) = code else {
        return "the payment did not go through";
    };
    match code {
        Code::InsufficientBalance => {
            "the customer's balance is not enough: ask for another payment method or card"
        }
        Code::InvalidPaymentCode => {
            "the payment code is invalid or expired: ask the customer to refresh it and scan again"
        }
        Code::PaymentDeclined => "the provider declined the payment",
        Code::PaymentTimeout => {
            "the customer did not confirm in time: the payment was cancelled and no money moved"
        }
        Code::PaymentCancelled => "the payment was cancelled at the provider: no money moved",
        Code::RefundExceedsPaid => "the provider says this is more than is left to refund",
        Code::RefundRefused => "the provider refused the refund",
        Code::RefundClosed => {
            "the provider closed the refund and no money moved: the amount can be refunded again"
        }
        Code::RefundChange => {
            "the money could not go back to the customer's account: the provider holds it, \
             pay it out to the customer by hand"
        }
        Code::RefundConflict => {
            "the provider has this refund number with another amount: ask the office to check the refund"
        }
        Code::InvalidRefund => {
            "the refund is not well formed: give an amount or the order lines, each line once, restock only with lines"
        }
        Code::RefundExceedsLine => {
            "more of a line than is left to refund: check what was already refunded with GetPayment"
        }
        Code::RefundAmountMismatch => {
            "the amount does not match the lines: leave the amount out to refund exactly the lines"
        }
        Code::RestockNeedsCompletedOrder => {
            "goods go back into stock only from a completed order: cancel an open order instead"
        }
        Code::IdempotencyConflict => {
            "this refund number was already used for a different refund: start a new refund"
        }
        Code::PaidElsewhere => {
            "the order was paid in the customer's app: refund it there, not at the counter"
        }
        _ => "the payment did not go through",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_code_the_payments_use_has_its_own_words() {
        for code in [
            "insufficient_balance",
            "invalid_payment_code",
            "payment_declined",
            "payment_timeout",
            "payment_cancelled",
            "refund_exceeds_paid",
            "refund_refused",
            "refund_closed",
            "refund_change",
            "refund_conflict",
        ]
        .into_iter()
        .chain(REFUND_REFUSALS.map(Code::as_str))
        {
            assert_ne!(
                reason(Code::parse(code)),
                reason(Code::parse("something_new")),
                "{code}"
            );
        }
    }

    #[test]
    fn refund_refusals_lead_with_the_words_and_keep_the_detail() {
        let e = explained(Error::new(
            Code::RefundExceedsLine,
            "line 1 has 1 left to refund",
        ));
        assert_eq!(e.code.as_str(), "refund_exceeds_line");
        assert!(e.message.starts_with("more of a line than is left"));
        assert!(e.message.ends_with(" (line 1 has 1 left to refund)"));
        let other = explained(Error::new(Code::InvalidMoney, "zero"));
        assert_eq!(other.message, "zero", "other codes are left as they are");
    }
}
