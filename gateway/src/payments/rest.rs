//! Payments over REST: pay an order with a scanned code, read its payments,
//! refund it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use proto::order::Money;
use serde::Deserialize;

use super::{ChargeState, Payments, RefundState};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::extract::{Auth, JsonBody};
use crate::keys::{Principal, Role};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders/{id}/payments", post(pay).get(list))
        .route("/api/v1/orders/{id}/refunds", post(refund))
}

fn service(st: &AppState) -> Result<&Arc<Payments>> {
    st.payments.as_ref().ok_or_else(|| {
        Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_not_configured",
            "payments are not configured on this gateway",
        )
    })
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

#[derive(Deserialize)]
struct PayBody {
    auth_code: String,
}

async fn pay(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: JsonBody<PayBody>,
) -> Result<Response> {
    let payments = service(&st)?;
    counter_or_admin(&who)?;
    let charge = payments.pay(&id, &body.value.auth_code, &who).await?;
    // Still pending only when even reversing did not get an answer.
    let status = if charge.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    debug_assert!(charge.state != ChargeState::Created || status == StatusCode::ACCEPTED);
    Ok((status, Json(charge)).into_response())
}

async fn list(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Response> {
    let payments = service(&st)?;
    Ok(Json(payments.of_order(&id, &who).await?).into_response())
}

#[derive(Deserialize)]
struct RefundBody {
    request_id: String,
    /// A decimal string in yuan, e.g. `"5.00"`.
    amount: String,
}

async fn refund(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: JsonBody<RefundBody>,
) -> Result<Response> {
    let payments = service(&st)?;
    counter_or_admin(&who)?;
    let amount = Money::parse(&body.value.amount)?;
    let refund = payments
        .refund(&id, &body.value.request_id, amount, &who)
        .await?;
    let status = match refund.state {
        RefundState::Pending => StatusCode::ACCEPTED,
        RefundState::Succeeded | RefundState::Failed => StatusCode::OK,
    };
    Ok((status, Json(refund)).into_response())
}
