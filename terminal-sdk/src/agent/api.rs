//! The agent's local JSON API: what the counter screen (and tests, and the
//! office harness) press. Bound to the local address only by default.
//!
//! Errors answer `{"code": "...", "message": "..."}` with a 4xx or 5xx.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use proto::device::scanner::{self, Code};
use proto::order::{Money, Quantity, Sku, Unit};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::store::{CheckoutError, Store, StoreError, now_us};
use super::sync::Link;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub link: Arc<Link>,
    /// Wakes the uploader after a sale.
    pub wake: Arc<Notify>,
    /// The background tasks' health (uploader, catalog, heartbeat).
    pub tasks: super::supervise::Tasks,
    /// Each counter device's health, keyed by device name.
    pub devices: super::devices::DeviceHealth,
    /// Wakes the printer task, asks it to open the drawer.
    pub printer: Arc<super::printing::Handle>,
    /// For the cashier's accept / reject of other channels' orders.
    pub client: crate::client::GatewayClient,
    pub terminal_id: String,
    pub store_id: String,
    pub gateway_url: String,
}

pub fn router(st: ApiState) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/basket", get(basket).delete(clear))
        .route("/api/basket/lines", post(add_line))
        .route("/api/basket/lines/{line_no}", delete(remove_line))
        .route("/api/checkout", post(checkout))
        .route("/api/sales", get(sales))
        .route("/api/sales/{local_no}", get(sale))
        .route("/api/sales/{local_no}/reprint", post(reprint_sale))
        .route("/api/tickets", get(list_tickets))
        .route("/api/queue", get(queue_list))
        .route("/api/queue/{order_id}/accept", post(queue_accept))
        .route("/api/queue/{order_id}/reject", post(queue_reject))
        .route("/api/queue/{order_id}/seen", post(queue_seen))
        .route("/api/tickets/{id}/reprint", post(reprint_ticket))
        .with_state(st)
}

struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!("local API: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "local_storage",
            "the local database failed; see the agent's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
}

fn to_json(v: impl serde::Serialize) -> ApiResult {
    serde_json::to_value(v).map(Json).map_err(|e| {
        tracing::error!("local API: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "see the agent's log",
        )
    })
}

async fn status(State(st): State<ApiState>) -> ApiResult {
    let counts = st.store.counts().await?;
    let catalog = st.store.catalog_info().await?;
    let last = st.store.recent_sales(10).await?;
    Ok(Json(json!({
        "terminal_id": st.terminal_id,
        "store_id": st.store_id,
        "gateway": {
            "url": st.gateway_url,
            "link": st.link.snapshot(),
        },
        "catalog": catalog,
        "queue": {
            "queued": counts.queued,
            "held": counts.held,
            "uploaded": counts.uploaded,
            "price_differs": counts.price_differs,
            // Sales not yet on the gateway.
            "pending": counts.queued + counts.held,
        },
        "last_sales": last,
        // A task that failed is restarted; `up: false` while it waits.
        "tasks": {
            "all_up": st.tasks.all_up(),
            "each": st.tasks.snapshot(),
        },
        // Keyed by device name: configured / connected / last_error.
        "devices": st.devices.snapshot(),
    })))
}

async fn basket(State(st): State<ApiState>) -> ApiResult {
    to_json(st.store.basket().await?)
}

async fn clear(State(st): State<ApiState>) -> ApiResult {
    st.store.clear_basket().await?;
    to_json(st.store.basket().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLine {
    sku: Option<String>,
    /// EAN-13 / EAN-8 as scanned.
    barcode: Option<String>,
    /// Pieces (`"2"`) or kg (`"0.355"`); pieces default to 1.
    quantity: Option<String>,
}

/// The scanned product code, checked (EAN-13/EAN-8 with its check digit),
/// as a SKU-shaped key: looked up in the catalog's barcode map, else taken
/// as the SKU itself.
fn sku_of_barcode(code: &str) -> Result<Sku, ApiError> {
    match scanner::classify(code) {
        Code::Product(digits) => Sku::parse(&digits).map_err(|e| ApiError::bad(e.code, e.message)),
        Code::StoreLabel(_) => Err(ApiError::bad(
            "unsupported_barcode",
            "in-store weighed-goods labels are not handled yet",
        )),
        Code::WeChatPay(_) | Code::Alipay(_) => Err(ApiError::bad(
            "unsupported_barcode",
            "a payment code is not a product",
        )),
        Code::Other(_) => Err(ApiError::bad(
            "invalid_barcode",
            "not an EAN-13 or EAN-8 code with a valid check digit",
        )),
    }
}

async fn add_line(
    State(st): State<ApiState>,
    b: Result<Json<AddLine>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    let sku = match (req.sku.as_deref(), req.barcode.as_deref()) {
        (Some(s), None) => Sku::parse(s).map_err(|e| ApiError::bad(e.code, e.message))?,
        (None, Some(code)) => {
            let as_sku = sku_of_barcode(code)?;
            // The catalog's barcode map first; a product whose SKU is its
            // barcode is found either way.
            match st.store.sku_of_barcode(as_sku.as_str()).await? {
                Some(s) => Sku::parse(&s).map_err(|e| ApiError::bad(e.code, e.message))?,
                None => as_sku,
            }
        }
        _ => {
            return Err(ApiError::bad(
                "invalid_request",
                "give exactly one of sku and barcode",
            ));
        }
    };
    let Some(item) = st.store.item(&sku).await? else {
        let why = match st.store.catalog_info().await? {
            Some(c) => format!("{sku} is not in the catalog (version {})", c.version),
            None => "no catalog yet: the agent has not reached the gateway since its state directory was made".into(),
        };
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_sku", why));
    };
    let quantity = match (req.quantity.as_deref(), item.unit) {
        (Some(q), unit) => {
            Quantity::parse(unit, q).map_err(|e| ApiError::bad(e.code, e.message))?
        }
        (None, Unit::Piece) => Quantity::from_milli(Unit::Piece, 1000),
        (None, Unit::Kg) => {
            return Err(ApiError::bad(
                "invalid_quantity",
                format!("{sku} is sold by weight: give the quantity in kg"),
            ));
        }
    };
    let Some(line) = st.store.add_line(&item, quantity).await? else {
        return Err(ApiError::bad(
            "invalid_quantity",
            "the line or basket total is too large",
        ));
    };
    let basket = st.store.basket().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"line": line, "available": item.available, "basket": basket})),
    ))
}

async fn remove_line(State(st): State<ApiState>, Path(line_no): Path<i64>) -> ApiResult {
    if !st.store.remove_line(line_no).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "line_not_found",
            format!("no basket line {line_no}"),
        ));
    }
    to_json(st.store.basket().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkout {
    /// `cash`: the only tender of this step.
    tender: String,
    /// Amount handed over, yuan with at most two decimals.
    tendered: String,
}

async fn checkout(
    State(st): State<ApiState>,
    b: Result<Json<Checkout>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    if req.tender != "cash" {
        return Err(ApiError::bad(
            "unsupported_tender",
            format!(
                "tender {:?}: only cash is taken in this version",
                req.tender
            ),
        ));
    }
    let tendered = Money::parse(&req.tendered).map_err(|e| ApiError::bad(e.code, e.message))?;
    // Made before anything is sent: the sale's idempotency key for ever.
    let client_order_id = uuid::Uuid::now_v7().to_string();
    let sale = st
        .store
        .checkout_cash(tendered, &client_order_id, now_us())
        .await
        .map_err(|e| match e {
            CheckoutError::EmptyBasket => {
                ApiError::new(StatusCode::CONFLICT, "empty_basket", e.to_string())
            }
            CheckoutError::TenderShort { .. } => {
                ApiError::bad("insufficient_tender", e.to_string())
            }
            CheckoutError::TooLarge => ApiError::bad("invalid_quantity", e.to_string()),
            CheckoutError::Store(s) => s.into(),
        })?;
    st.wake.notify_one();
    // The receipt was enqueued with the sale; the drawer opens once.
    st.printer.open_drawer();
    Ok((StatusCode::CREATED, to_json(sale)?))
}

#[derive(Deserialize)]
struct SalesQuery {
    limit: Option<i64>,
}

async fn sales(State(st): State<ApiState>, Query(q): Query<SalesQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let sales = st.store.recent_sales(limit).await?;
    Ok(Json(json!({ "sales": sales })))
}

async fn sale(State(st): State<ApiState>, Path(local_no): Path<i64>) -> ApiResult {
    match st.store.sale(local_no).await? {
        Some(s) => to_json(s),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "sale_not_found",
            format!("no sale {local_no}"),
        )),
    }
}

#[derive(Deserialize)]
struct TicketsQuery {
    limit: Option<i64>,
}

async fn list_tickets(State(st): State<ApiState>, Query(q): Query<TicketsQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let list = super::tickets::list(st.store.pool(), limit).await?;
    Ok(Json(json!({ "tickets": list })))
}

fn reprinted(t: Option<super::tickets::Ticket>, what: String) -> ApiResult {
    match t {
        Some(t) => to_json(t),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ticket_not_found",
            what,
        )),
    }
}

/// Prints the sale's receipt again, marked "补打 / REPRINT n" (a receipt
/// not printed yet just stays owed, once).
async fn reprint_sale(State(st): State<ApiState>, Path(local_no): Path<i64>) -> ApiResult {
    let pool = st.store.pool();
    let t = match super::tickets::receipt_of(pool, local_no).await? {
        Some(t) => super::tickets::reprint(pool, t.id).await?,
        None => None,
    };
    st.printer.wake();
    reprinted(t, format!("no receipt for sale {local_no}"))
}

async fn reprint_ticket(State(st): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let t = super::tickets::reprint(st.store.pool(), id).await?;
    st.printer.wake();
    reprinted(t, format!("no ticket {id}"))
}

// ------------------------------------------------------------ other channels

async fn queue_list(State(st): State<ApiState>) -> ApiResult {
    let (orders, new) = super::queue::list(&st.store, 100).await?;
    Ok(Json(json!({
        "orders": orders,
        "new": new,
        "state": st.link.snapshot(),
    })))
}

fn fault_response(e: crate::client::ClientError) -> Response {
    use crate::client::ClientError;
    let (status, code, message) = match e {
        ClientError::Fault(f) => {
            let status = match f.code.as_str() {
                "order_not_found" | "not_found" => StatusCode::NOT_FOUND,
                _ if f.kind == proto::soap::FaultKind::Server => StatusCode::BAD_GATEWAY,
                _ => StatusCode::CONFLICT,
            };
            (status, f.code, f.message)
        }
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway_unreachable".to_owned(),
            format!("the gateway did not answer ({other}); try again"),
        ),
    };
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

async fn known_order(st: &ApiState, order_id: &str) -> Result<(), ApiError> {
    if order_id.len() > 128 || !super::queue::known(&st.store, order_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "no such order in this counter's queue",
        ));
    }
    Ok(())
}

/// Accepts the order on the gateway; once the gateway answered, the order
/// owes its pick ticket here (once).
async fn queue_accept(State(st): State<ApiState>, Path(order_id): Path<String>) -> Response {
    if let Err(e) = known_order(&st, &order_id).await {
        return e.into_response();
    }
    match st
        .client
        .update_order_status(&order_id, proto::order::OrderAction::Accept, None)
        .await
    {
        Ok(o) => match super::queue::accepted_here(&st.store, &o).await {
            Ok(()) => {
                st.printer.wake();
                (StatusCode::OK, Json(json!({"order": o}))).into_response()
            }
            Err(e) => ApiError::from(e).into_response(),
        },
        Err(e) => fault_response(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reject {
    reason: Option<String>,
}

async fn queue_reject(
    State(st): State<ApiState>,
    Path(order_id): Path<String>,
    raw: axum::body::Bytes,
) -> Response {
    if let Err(e) = known_order(&st, &order_id).await {
        return e.into_response();
    }
    let req: Reject = if raw.is_empty() {
        Reject::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => {
                return ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
                    .into_response();
            }
        }
    };
    let reason = req.reason.map(|r| r.chars().take(200).collect::<String>());
    match st
        .client
        .update_order_status(
            &order_id,
            proto::order::OrderAction::Reject,
            reason.as_deref(),
        )
        .await
    {
        Ok(o) => match super::queue::save(&st.store, &o).await {
            Ok(()) => (StatusCode::OK, Json(json!({"order": o}))).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
        Err(e) => fault_response(e),
    }
}

async fn queue_seen(State(st): State<ApiState>, Path(order_id): Path<String>) -> ApiResult {
    if !super::queue::seen(&st.store, &order_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "no such order in this counter's queue",
        ));
    }
    Ok(Json(json!({"seen": order_id})))
}
