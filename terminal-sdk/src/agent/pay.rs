//! Payment-code checkout at the counter: the customer shows a WeChat Pay or
//! Alipay payment code, the cashier scans it, the gateway charges it.
//!
//! A charge needs the gateway: offline, a payment code is refused with
//! `payment_offline` (503) and the display says cash only — no charge can
//! be made safely without it. Online the steps are:
//!
//! 1. The attempt is written down first (`code_payment`, with a new
//!    `clientOrderId` and the basket's signature), so a restart or a lost
//!    answer resumes it rather than ordering twice.
//! 2. `SubmitOrder` makes the order (a resend after a lost answer gets the
//!    same order back).
//! 3. The attempt is marked `charging`, then `PayOrder` charges the code;
//!    the display shows "waiting for the customer" meanwhile.
//! 4. Succeeded: the basket becomes a sale already on the gateway (state
//!    `uploaded`), its receipt owed, in one transaction. Failed or reversed:
//!    no money moved; the cashier may scan another code or take cash, and a
//!    cash sale of the same basket reuses the attempt's order. No usable
//!    answer: `GetPayment` is asked until the charge is final; until then
//!    the basket is locked and cash refused (`payment_unresolved`) — the
//!    charge may have taken the money. `POST /api/payment/check` asks again.
//!
//! A basket changed after a refused charge gets a new order; the old one is
//! cancelled on the gateway so its stock is not held.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use proto::device::scanner::{self, Code};
use proto::order::OrderAction;
use proto::soap::{ChargeState, GetPaymentResponse, Payment, SubmitLine, SubmitOrder};
use serde_json::{Value, json};

use super::api::{ApiError, ApiState, to_json};
use super::counter::Message;
use super::store::{CodePaid, CodePayment, StoreError, now_us};
use crate::client::ClientError;

/// How long the counter keeps asking for a charge's outcome before it tells
/// the cashier it is not known yet.
const RESOLVE_FOR: Duration = Duration::from_secs(20);
const RESOLVE_EVERY: Duration = Duration::from_millis(500);

/// What is known about an attempt's charge.
enum Resolved {
    Paid(Box<super::store::Sale>),
    /// No charge took money: the basket may be paid again.
    NotPaid,
    Unknown(String),
}

fn offline(st: &ApiState, e: &ClientError) -> ApiError {
    st.link.failed(e);
    st.counter.show(Message::offline());
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "payment_offline",
        format!(
            "the gateway cannot be reached ({e}): payment codes need it. Take cash; the sale \
             is kept and uploaded later"
        ),
    )
}

fn refused(st: &ApiState, code: &str, message: String) -> ApiError {
    st.counter.show(Message::failed(code));
    ApiError::new(StatusCode::CONFLICT, "payment_refused", message)
}

/// `POST /api/checkout {"tender":"code","auth_code":…}` and a payment code
/// scanned with a basket: charges the basket.
pub(crate) async fn pay_code(
    st: &ApiState,
    auth_code: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind = match scanner::classify(auth_code) {
        Code::WeChatPay(_) => "wechatpay",
        Code::Alipay(_) => "alipay",
        _ => {
            return Err(ApiError::bad(
                "invalid_payment_code",
                "not a WeChat Pay (18 digits, 10-15…) or Alipay (16-24 digits, 25-30…) payment code",
            ));
        }
    };
    let _one = st.counter.checkout.lock().await;
    let basket = st.store.basket().await?;
    if basket.lines.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "empty_basket",
            "the basket is empty",
        ));
    }
    let sig = st.store.basket_sig().await?;
    let mut attempt = match st.store.code_payment().await? {
        Some(p) if p.charging => match resolve(st, &p).await? {
            Resolved::Paid(sale) => return Ok((StatusCode::CREATED, to_json(*sale)?)),
            Resolved::NotPaid => st.store.code_payment().await?,
            Resolved::Unknown(why) => return Err(unresolved(why)),
        },
        p => p,
    };
    if let Some(p) = &attempt
        && p.basket_sig != sig
    {
        cancel_orphan(st, p).await;
        attempt = None;
    }
    let attempt = match attempt {
        Some(p) => p,
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            st.store.begin_code_payment(&id, &sig, now_us()).await?;
            st.store
                .code_payment()
                .await?
                .ok_or_else(|| StoreError::Corrupt("code payment".into()))?
        }
    };
    let (order_id, display_no, total) = match (&attempt.order_id, attempt.display_no, attempt.total)
    {
        (Some(o), Some(d), Some(t)) => (o.clone(), d, t),
        _ => {
            let req = SubmitOrder {
                client_order_id: attempt.client_order_id.clone(),
                lines: basket
                    .lines
                    .iter()
                    .map(|l| SubmitLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity.to_string(),
                        unit_price: None,
                    })
                    .collect(),
                note: Some("counter sale, payment code".into()),
                // A live order: priced and stock-checked by the gateway now.
                sold_at: None,
                catalog_version: None,
            };
            match st.client.submit_order(&req).await {
                Ok(r) => {
                    st.link.ok();
                    let o = r.order;
                    st.store.code_order(&o.id, o.display_no, o.total).await?;
                    (o.id, o.display_no, o.total)
                }
                Err(ClientError::Fault(f)) => {
                    // Not made (out of stock, unknown product…): nothing to
                    // undo. Cash stays possible with a fresh order.
                    st.store.clear_code_payment().await?;
                    return Err(refused(
                        st,
                        &f.code,
                        format!("the gateway refused the order: {}", f.message),
                    ));
                }
                Err(e) => return Err(offline(st, &e)),
            }
        }
    };
    if total != basket.total {
        // The gateway's prices are not the counter's: charging its total
        // would not match the basket the customer saw.
        cancel_orphan(st, &attempt).await;
        st.store.clear_code_payment().await?;
        st.counter.show(Message::failed("price_changed"));
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "price_changed",
            format!(
                "the gateway prices this basket at {total}, the counter at {}: the catalog is being refreshed; take cash or try again",
                basket.total
            ),
        ));
    }
    let shown = proto::wechatpay::mask(auth_code);
    st.store.code_charging(true, Some(&shown)).await?;
    st.counter.show(Message::waiting(total));
    let charged = st.client.pay_order(&order_id, auth_code).await;
    let attempt = CodePayment {
        order_id: Some(order_id.clone()),
        display_no: Some(display_no),
        total: Some(total),
        charging: true,
        paid_code: Some(shown),
        ..attempt
    };
    let outcome = match charged {
        Ok(c) if c.state == ChargeState::Succeeded => {
            st.link.ok();
            Resolved::Paid(Box::new(record(st, &attempt, &c, kind).await?))
        }
        Ok(c) if c.state.is_final() => {
            st.link.ok();
            st.store.code_charging(false, None).await?;
            let code = c
                .failure_code
                .clone()
                .unwrap_or_else(|| "payment_failed".into());
            st.counter.show(Message::failed(&code));
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_failed",
                format!(
                    "{code}: {}. No money was taken; scan another code or take cash",
                    c.failure_reason.as_deref().unwrap_or("the charge failed")
                ),
            ));
        }
        Err(ClientError::Fault(f)) if f.kind == proto::soap::FaultKind::Client => {
            // Refused before any charge (an invalid code, payments off…).
            st.link.ok();
            st.store.code_charging(false, None).await?;
            return Err(refused(st, &f.code, f.message));
        }
        // Pending, or no usable answer: find out.
        _ => resolve_for(st, &attempt, RESOLVE_FOR).await?,
    };
    match outcome {
        Resolved::Paid(sale) => Ok((StatusCode::CREATED, to_json(*sale)?)),
        Resolved::NotPaid => {
            st.counter.show(Message::failed("payment_failed"));
            Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_failed",
                "the charge did not take the money; scan another code or take cash",
            ))
        }
        Resolved::Unknown(why) => Err(unresolved(why)),
    }
}

fn unresolved(why: String) -> ApiError {
    ApiError::new(
        StatusCode::ACCEPTED,
        "payment_unresolved",
        format!(
            "the charge's outcome is not known yet ({why}); the basket stays locked — press \
             check payment; do not take cash until it is known"
        ),
    )
}

/// Records the paid sale, prints the receipt, thanks the customer.
async fn record(
    st: &ApiState,
    attempt: &CodePayment,
    charge: &Payment,
    kind: &str,
) -> Result<super::store::Sale, ApiError> {
    let paid = CodePaid {
        kind: if charge.code_kind.is_empty() {
            kind.to_owned()
        } else {
            charge.code_kind.clone()
        },
        order_id: charge.order_id.clone(),
        display_no: attempt.display_no.unwrap_or_default(),
        payment_id: charge.id.clone(),
        paid_code: charge.auth_code.clone(),
        amount: charge.amount,
    };
    let sale = st
        .store
        .checkout_paid(&paid, &attempt.client_order_id, now_us())
        .await
        .map_err(super::api::checkout_error)?;
    st.printer.wake();
    st.counter.show(Message::thanks_paid(sale.total));
    tracing::info!(local_no = sale.local_no, order = %paid.order_id, charge = %paid.payment_id, "payment-code sale");
    Ok(sale)
}

async fn resolve_for(
    st: &ApiState,
    attempt: &CodePayment,
    for_: Duration,
) -> Result<Resolved, ApiError> {
    let deadline = tokio::time::Instant::now() + for_;
    loop {
        match resolve(st, attempt).await? {
            Resolved::Unknown(why) if tokio::time::Instant::now() >= deadline => {
                return Ok(Resolved::Unknown(why));
            }
            Resolved::Unknown(_) => tokio::time::sleep(RESOLVE_EVERY).await,
            done => return Ok(done),
        }
    }
}

/// Asks the gateway what became of the attempt's charges.
async fn resolve(st: &ApiState, attempt: &CodePayment) -> Result<Resolved, ApiError> {
    let Some(order_id) = attempt.order_id.as_deref() else {
        st.store.code_charging(false, None).await?;
        return Ok(Resolved::NotPaid);
    };
    let p: GetPaymentResponse = match st.client.get_payment(order_id).await {
        Ok(p) => {
            st.link.ok();
            p
        }
        Err(e) => {
            st.link.failed(&e);
            return Ok(Resolved::Unknown(format!(
                "the gateway did not answer: {e}"
            )));
        }
    };
    if let Some(c) = p.paid_charge() {
        let kind = c.code_kind.clone();
        let c = c.clone();
        return Ok(Resolved::Paid(Box::new(
            record(st, attempt, &c, &kind).await?,
        )));
    }
    if p.charges.iter().all(|c| c.state.is_final()) {
        st.store.code_charging(false, None).await?;
        return Ok(Resolved::NotPaid);
    }
    Ok(Resolved::Unknown(
        "the provider has not answered yet".into(),
    ))
}

/// Cancels the gateway order of an attempt that will not be paid (best
/// effort: a cancel that does not get through leaves an unpaid order the
/// store can cancel from its queue).
async fn cancel_orphan(st: &ApiState, p: &CodePayment) {
    if let Some(id) = &p.order_id {
        match st
            .client
            .update_order_status(
                id,
                OrderAction::Cancel,
                Some("basket changed at the counter"),
            )
            .await
        {
            Ok(_) => tracing::info!(order = %id, "unpaid counter order cancelled"),
            Err(e) => tracing::warn!(order = %id, "could not cancel the unpaid counter order: {e}"),
        }
    }
}

/// Before a cash sale: an attempt whose charge may have taken money refuses
/// it; an attempt for this very basket that took none lends its order id
/// (the gateway already has, or may have, that order); one for another
/// basket is cancelled.
pub(crate) async fn settle_before_cash(st: &ApiState) -> Result<Option<String>, ApiError> {
    let Some(p) = st.store.code_payment().await? else {
        return Ok(None);
    };
    if p.charging {
        match resolve(st, &p).await? {
            Resolved::Paid(sale) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_paid",
                    format!(
                        "the basket was paid by payment code (sale {}); no cash is due",
                        sale.local_no
                    ),
                ));
            }
            Resolved::Unknown(why) => return Err(unresolved(why)),
            Resolved::NotPaid => {}
        }
    }
    if p.basket_sig == st.store.basket_sig().await? {
        Ok(Some(p.client_order_id))
    } else {
        cancel_orphan(st, &p).await;
        st.store.clear_code_payment().await?;
        Ok(None)
    }
}

/// The basket is cleared: an attempt that took no money is dropped (its
/// order cancelled).
pub(crate) async fn abandon(st: &ApiState) -> Result<(), ApiError> {
    if let Some(p) = st.store.code_payment().await?
        && !p.charging
    {
        cancel_orphan(st, &p).await;
        st.store.clear_code_payment().await?;
    }
    Ok(())
}

/// `GET /api/payment`: the attempt under way, if any.
pub(crate) async fn state(st: &ApiState) -> Result<Value, ApiError> {
    Ok(json!({ "payment": st.store.code_payment().await? }))
}

/// `POST /api/payment/check`: asks the gateway again.
pub(crate) async fn check(st: &ApiState) -> Result<(StatusCode, Json<Value>), ApiError> {
    let _one = st.counter.checkout.lock().await;
    let Some(p) = st.store.code_payment().await? else {
        return Ok((StatusCode::OK, Json(json!({"payment": null}))));
    };
    if !p.charging {
        return Ok((StatusCode::OK, Json(json!({"payment": p}))));
    }
    match resolve(st, &p).await? {
        Resolved::Paid(sale) => Ok((StatusCode::CREATED, Json(json!({"sale": *sale})))),
        Resolved::NotPaid => Ok((
            StatusCode::OK,
            Json(json!({"payment": st.store.code_payment().await?, "paid": false})),
        )),
        Resolved::Unknown(why) => Err(unresolved(why)),
    }
}
