//! Payments over REST: pay an order with a scanned code or in cash, read
//! its payments, refund it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use proto::order::Money;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::{Code, Error, Result};
use crate::http::extract::{Auth, JsonBody, Path};
use crate::keys::{Principal, Role};
use crate::payments::{ChargeState, Payments, RefundLineSpec, RefundSpec, RefundState, cash};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders/{id}/payments", post(pay).get(list))
        .route("/api/v1/orders/{id}/refunds", post(refund))
}

fn service(st: &AppState) -> Result<&Arc<Payments>> {
    crate::payments::configured(st.payments.as_ref())
}

/// Money is taken at the counter (terminal) or by an admin, never the app.
fn counter_or_admin(who: &Principal) -> Result<()> {
    match who.role {
        Role::Terminal | Role::Admin => Ok(()),
        Role::App => Err(Error::forbidden(
            "payments are taken by the store's terminal",
        )),
    }
}

/// `{"auth_code": "…"}` (a scanned payment code, `method` `"code"` or
/// absent) or `{"method": "cash", "tendered": "50.00"}`.
#[derive(Deserialize, utoipa::ToSchema)]
struct PayBody {
    /// `code` (the default) or `cash`.
    #[schema(pattern = "^(code|cash)$")]
    method: Option<String>,
    /// The customer's scanned payment code.
    auth_code: Option<String>,
    /// Cash handed over, a decimal string in yuan.
    #[schema(value_type = Option<Money>)]
    tendered: Option<String>,
}

/// Takes payment for an order: a scanned code through its provider, or cash
/// (terminal or admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/payments", tag = "payments", request_body = PayBody,
    params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The charge's outcome, or a cash tender recorded before", body = super::openapi::PayAnswer),
        (status = 201, description = "Cash taken", body = cash::CashTender),
        (status = 202, description = "The provider has not answered yet", body = crate::payments::store::Charge)))]
async fn pay(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: JsonBody<PayBody>,
) -> Result<Response> {
    let b = body.value;
    match b.method.as_deref() {
        Some("cash") => {
            counter_or_admin(&who)?;
            if b.auth_code.is_some() {
                return Err(Error::new(
                    Code::InvalidRequest,
                    "a cash payment takes tendered, not auth_code",
                ));
            }
            let tendered = b.tendered.as_deref().ok_or_else(|| {
                Error::new(
                    Code::InvalidRequest,
                    "a cash payment needs tendered (e.g. \"50.00\")",
                )
            })?;
            let tendered = Money::parse(tendered)?;
            let (status, tender) = match cash::tender(&st.db, &st.hub, &id, tendered, &who).await? {
                cash::Tendered::New(t) => (StatusCode::CREATED, t),
                cash::Tendered::Again(t) => (StatusCode::OK, t),
            };
            return Ok((status, Json(tender)).into_response());
        }
        None | Some("code") => {}
        Some(other) => {
            return Err(Error::new(
                Code::InvalidRequest,
                format!("unknown payment method {other:?}: \"code\" or \"cash\""),
            ));
        }
    }
    if b.tendered.is_some() {
        return Err(Error::new(
            Code::InvalidRequest,
            "tendered is for method \"cash\"",
        ));
    }
    let auth_code = b
        .auth_code
        .ok_or_else(|| Error::new(Code::InvalidRequest, "auth_code is required"))?;
    let payments = service(&st)?;
    counter_or_admin(&who)?;
    let charge = payments.pay(&id, &auth_code, &who).await?;
    // Still pending only when even reversing did not get an answer.
    let status = if charge.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    debug_assert!(charge.state != ChargeState::Created || status == StatusCode::ACCEPTED);
    Ok((status, Json(charge)).into_response())
}

/// An order's charges (with their exchanges with the provider), refunds,
/// prepayment and cash tender.
#[utoipa::path(get, path = "/api/v1/orders/{id}/payments", tag = "payments",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order's payments", body = crate::payments::OrderPayments)))]
async fn list(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Response> {
    let payments = service(&st)?;
    Ok(Json(payments.of_order(&id, &who).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RefundBody {
    /// The caller's id of this refund: a retry with the same id is the same refund.
    #[schema(min_length = 1, max_length = 64)]
    request_id: String,
    /// A decimal string in yuan, e.g. `"5.00"`; optional when lines are given.
    #[schema(value_type = Option<Money>)]
    amount: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    lines: Vec<RefundLineBody>,
    /// Put the lines' goods back into stock once refunded.
    #[serde(default)]
    restock: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RefundLineBody {
    line_no: i64,
    /// In the line's unit, as a string ("0.250") or a whole number.
    #[schema(schema_with = super::openapi::quantity_in)]
    quantity: serde_json::Value,
}

/// Refunds an order, in full, by amount or by lines (terminal or admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/refunds", tag = "payments", request_body = RefundBody,
    params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The refund's outcome", body = crate::payments::store::Refund),
        (status = 202, description = "Accepted: the money is not back yet", body = crate::payments::store::Refund)))]
async fn refund(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: JsonBody<RefundBody>,
) -> Result<Response> {
    let payments = service(&st)?;
    counter_or_admin(&who)?;
    let b = body.value;
    let amount = b.amount.as_deref().map(Money::parse).transpose()?;
    let lines = b
        .lines
        .into_iter()
        .map(|l| {
            let quantity = match l.quantity {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
                _ => {
                    return Err(Error::new(
                        Code::InvalidQuantity,
                        "quantity must be a string like \"0.250\" or a whole number",
                    ));
                }
            };
            Ok(RefundLineSpec {
                line_no: l.line_no,
                quantity,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = RefundSpec {
        request_id: b.request_id,
        amount,
        reason: b.reason,
        lines,
        restock: b.restock,
    };
    let refund = payments.refund_with(&id, spec, &who).await?;
    // Requested or processing: accepted, the money is not back yet.
    let status = match refund.state {
        RefundState::Requested | RefundState::Processing => StatusCode::ACCEPTED,
        RefundState::Succeeded | RefundState::Failed => StatusCode::OK,
    };
    Ok((status, Json(refund)).into_response())
}
