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

use super::counter::{Counter, Message};
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
    /// The display, the scale, the last scan, the one-checkout lock.
    pub counter: Arc<Counter>,
    /// Problems of the store PC itself (disk, clock) for the screen.
    pub warnings: super::health::Warnings,
}

pub fn router(st: ApiState) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/basket", get(basket).delete(clear))
        .route("/api/basket/lines", post(add_line))
        .route("/api/basket/lines/{line_no}", delete(remove_line))
        .route("/api/checkout", post(checkout))
        .route("/api/payment", get(payment_state))
        .route("/api/day", get(day_current))
        .route("/api/day/close", post(day_close))
        .route("/api/day/closes", get(day_closes))
        .route("/api/payment/check", post(payment_check))
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

pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!("local API: {e}");
        if let StoreError::Db(db) = &e
            && super::health::is_disk_full(db)
        {
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "the store PC's disk is full: nothing was recorded; free some space, then try again",
            );
        }
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

pub(crate) type ApiResult = Result<Json<Value>, ApiError>;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
}

/// A body that may be left out: empty is `T::default()`.
fn optional_body<T: serde::de::DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))
}

pub(crate) fn to_json(v: impl serde::Serialize) -> ApiResult {
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
        // What the customer display shows now.
        "display": st.counter.shown(),
        "last_scan": st.counter.last_scan(),
        // A payment-code payment under way (locked basket while charging).
        "payment": st.store.code_payment().await?,
        "warnings": st.warnings.snapshot(),
    })))
}

async fn basket(State(st): State<ApiState>) -> ApiResult {
    to_json(st.store.basket().await?)
}

/// While a payment-code charge runs (or its outcome is not known yet) the
/// basket it charges for must stay as it is.
async fn basket_unlocked(st: &ApiState) -> Result<(), ApiError> {
    if let Some(p) = st.store.code_payment().await?
        && p.charging
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "payment_in_progress",
            "a payment-code charge for this basket is running or its outcome is not known yet; \
             wait, or press check payment",
        ));
    }
    Ok(())
}

async fn clear(State(st): State<ApiState>) -> ApiResult {
    basket_unlocked(&st).await?;
    super::pay::abandon(&st).await?;
    st.store.clear_basket().await?;
    st.counter.show(Message::welcome());
    to_json(st.store.basket().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLine {
    sku: Option<String>,
    /// EAN-13 / EAN-8 as scanned, or an in-store weighed-goods label.
    barcode: Option<String>,
    /// Pieces (`"2"`) or kg (`"0.355"`); pieces default to 1.
    quantity: Option<String>,
    /// A product sold by weight: take the scale's stable weight.
    #[serde(default)]
    weigh: bool,
}

/// What a scanned or typed code stands for.
enum Picked {
    Sku(Sku),
    /// A weighed-goods label: the item code and the weight or price on it.
    Label(scanner::StoreLabel),
}

fn invalid_sku(e: proto::order::ParseError) -> ApiError {
    ApiError::bad(e.code, e.message)
}

/// The scanned product code, checked (EAN-13/EAN-8 with its check digit).
fn classify_product(code: &str) -> Result<Picked, ApiError> {
    match scanner::classify(code) {
        Code::Product(digits) => Sku::parse(&digits).map(Picked::Sku).map_err(invalid_sku),
        Code::StoreLabel(l) => Ok(Picked::Label(l)),
        Code::WeChatPay(_) | Code::Alipay(_) => Err(ApiError::bad(
            "not_a_product",
            "a payment code is not a product: scan it to pay",
        )),
        Code::Other(_) => Err(ApiError::bad(
            "invalid_barcode",
            "not an EAN-13 or EAN-8 code with a valid check digit",
        )),
    }
}

async fn unknown_sku(st: &ApiState, what: String) -> Result<ApiError, ApiError> {
    let why = match st.store.catalog_info().await? {
        Some(c) => format!("{what} is not in the catalog (version {})", c.version),
        None => "no catalog yet: the agent has not reached the gateway since its state directory was made".into(),
    };
    Ok(ApiError::new(StatusCode::NOT_FOUND, "unknown_sku", why))
}

/// The catalog item of a weighed-goods label: its item code (PLU) is the
/// SKU, as printed or without leading zeros (`00042` → `42`).
async fn label_item(
    st: &ApiState,
    l: &scanner::StoreLabel,
) -> Result<super::store::CachedItem, ApiError> {
    let trimmed = l.plu.trim_start_matches('0');
    for cand in [l.plu.as_str(), trimmed] {
        if let Ok(sku) = Sku::parse(cand)
            && let Some(item) = st.store.item(&sku).await?
        {
            return Ok(item);
        }
    }
    Err(unknown_sku(st, format!("label item {}", l.plu)).await?)
}

/// Adds a line as the cashier asked (typed SKU, scanned code, label, the
/// scale). The answer is the API's: the line, and the basket.
pub(crate) async fn add_product(
    st: &ApiState,
    sku: Option<&str>,
    barcode: Option<&str>,
    quantity: Option<&str>,
    weigh: bool,
) -> Result<Value, ApiError> {
    basket_unlocked(st).await?;
    let picked = match (sku, barcode) {
        (Some(s), None) => Picked::Sku(Sku::parse(s).map_err(invalid_sku)?),
        (None, Some(code)) => match classify_product(code)? {
            // The catalog's barcode map first; a product whose SKU is its
            // barcode is found either way.
            Picked::Sku(as_sku) => match st.store.sku_of_barcode(as_sku.as_str()).await? {
                Some(s) => Picked::Sku(Sku::parse(&s).map_err(invalid_sku)?),
                None => Picked::Sku(as_sku),
            },
            l => l,
        },
        _ => {
            return Err(ApiError::bad(
                "invalid_request",
                "give exactly one of sku and barcode",
            ));
        }
    };
    let (item, quantity) = match picked {
        Picked::Label(l) => {
            if quantity.is_some() || weigh {
                return Err(ApiError::bad(
                    "invalid_request",
                    "a weighed-goods label carries its own weight or price",
                ));
            }
            let item = label_item(st, &l).await?;
            if item.unit != Unit::Kg {
                return Err(ApiError::bad(
                    "invalid_barcode",
                    format!(
                        "{} is sold by the piece, not by a weighed-goods label",
                        item.sku
                    ),
                ));
            }
            let grams = match l.value {
                scanner::LabelValue::Weight(w) => i64::from(w.grams()),
                // The weight the printed price stands for at the catalog's
                // price, to the gram (so the line prices back to the label).
                scanner::LabelValue::Price(p) => {
                    if item.price.fen() <= 0 {
                        return Err(ApiError::bad("invalid_barcode", "the item has no price"));
                    }
                    let g = (i128::from(p.fen()) * 1000 * 2 + i128::from(item.price.fen()))
                        / (2 * i128::from(item.price.fen()));
                    i64::try_from(g).unwrap_or(i64::MAX)
                }
            };
            if grams <= 0 {
                return Err(ApiError::bad("invalid_quantity", "the label shows nothing"));
            }
            (item, Quantity::from_milli(Unit::Kg, grams))
        }
        Picked::Sku(sku) => {
            let Some(item) = st.store.item(&sku).await? else {
                return Err(unknown_sku(st, sku.to_string()).await?);
            };
            let q = match (quantity, weigh, item.unit) {
                (Some(_), true, _) => {
                    return Err(ApiError::bad(
                        "invalid_request",
                        "give a quantity or weigh, not both",
                    ));
                }
                (None, true, Unit::Kg) => {
                    let w = st
                        .counter
                        .weigh()
                        .await
                        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.code, e.message))?;
                    if w == proto::device::Weight::ZERO {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            "nothing_on_scale",
                            "the scale shows 0.000 kg: put the goods on it",
                        ));
                    }
                    w.to_quantity()
                }
                (None, true, Unit::Piece) => {
                    return Err(ApiError::bad(
                        "invalid_request",
                        format!("{sku} is sold by the piece, not weighed"),
                    ));
                }
                (Some(q), false, unit) => Quantity::parse(unit, q).map_err(invalid_sku)?,
                (None, false, Unit::Piece) => Quantity::from_milli(Unit::Piece, 1000),
                (None, false, Unit::Kg) => {
                    return Err(ApiError::bad(
                        "invalid_quantity",
                        format!("{sku} is sold by weight: weigh it or give the quantity in kg"),
                    ));
                }
            };
            (item, q)
        }
    };
    let Some(line) = st.store.add_line(&item, quantity).await? else {
        return Err(ApiError::bad(
            "invalid_quantity",
            "the line or basket total is too large",
        ));
    };
    let basket = st.store.basket().await?;
    st.counter.show(Message::line(
        &line.name,
        line.sku.as_str(),
        line.line_total,
        basket.total,
    ));
    Ok(json!({"line": line, "available": item.available, "basket": basket}))
}

async fn add_line(
    State(st): State<ApiState>,
    b: Result<Json<AddLine>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    let v = add_product(
        &st,
        req.sku.as_deref(),
        req.barcode.as_deref(),
        req.quantity.as_deref(),
        req.weigh,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn remove_line(State(st): State<ApiState>, Path(line_no): Path<i64>) -> ApiResult {
    basket_unlocked(&st).await?;
    if !st.store.remove_line(line_no).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "line_not_found",
            format!("no basket line {line_no}"),
        ));
    }
    let b = st.store.basket().await?;
    st.counter.show(if b.lines.is_empty() {
        Message::welcome()
    } else {
        Message::total(b.total)
    });
    to_json(b)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkout {
    /// `cash` or `code` (a customer's payment code).
    tender: String,
    /// Cash: the amount handed over, yuan with at most two decimals.
    tendered: Option<String>,
    /// Code: the customer's WeChat Pay or Alipay payment code as scanned.
    auth_code: Option<String>,
}

async fn checkout(
    State(st): State<ApiState>,
    b: Result<Json<Checkout>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    match (req.tender.as_str(), req.tendered, req.auth_code) {
        ("cash", Some(t), None) => {
            let tendered = Money::parse(&t).map_err(|e| ApiError::bad(e.code, e.message))?;
            let sale = checkout_cash(&st, tendered).await?;
            Ok((StatusCode::CREATED, to_json(sale)?))
        }
        ("code", None, Some(code)) => super::pay::pay_code(&st, &code).await,
        ("cash", _, _) => Err(ApiError::bad(
            "invalid_request",
            "cash takes `tendered` (the amount handed over) only",
        )),
        ("code", _, _) => Err(ApiError::bad(
            "invalid_request",
            "code takes `auth_code` (the customer's payment code) only",
        )),
        (other, _, _) => Err(ApiError::bad(
            "unsupported_tender",
            format!("tender {other:?}: use cash or code"),
        )),
    }
}

/// A cash sale of the basket. Taken whether or not the gateway answers.
pub(crate) async fn checkout_cash(
    st: &ApiState,
    tendered: Money,
) -> Result<super::store::Sale, ApiError> {
    let _one = st.counter.checkout.lock().await;
    // A payment-code attempt for this basket that took no money: its order
    // (if the gateway made it) becomes this sale's, so nothing is orphaned.
    let client_order_id = match super::pay::settle_before_cash(st).await? {
        Some(id) => id,
        // Made before anything is sent: the sale's idempotency key for ever.
        None => uuid::Uuid::now_v7().to_string(),
    };
    let sale = st
        .store
        .checkout_cash(tendered, &client_order_id, now_us())
        .await
        .map_err(checkout_error)?;
    st.wake.notify_one();
    // The receipt was enqueued with the sale; the drawer opens once.
    st.printer.open_drawer();
    st.printer.wake();
    st.counter
        .show(Message::thanks_cash(sale.tendered, sale.change));
    Ok(sale)
}

pub(crate) fn checkout_error(e: CheckoutError) -> ApiError {
    match e {
        CheckoutError::EmptyBasket => {
            ApiError::new(StatusCode::CONFLICT, "empty_basket", e.to_string())
        }
        CheckoutError::TenderShort { .. } => ApiError::bad("insufficient_tender", e.to_string()),
        CheckoutError::TooLarge => ApiError::bad("invalid_quantity", e.to_string()),
        CheckoutError::BasketChanged => {
            ApiError::new(StatusCode::CONFLICT, "basket_changed", e.to_string())
        }
        CheckoutError::Store(s) => s.into(),
    }
}

async fn day_current(State(st): State<ApiState>) -> ApiResult {
    to_json(super::day::current(st.store.pool()).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DayClose {
    #[serde(default)]
    carry_over: bool,
}

async fn day_close(State(st): State<ApiState>, raw: axum::body::Bytes) -> Response {
    let req: DayClose = match optional_body(&raw) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match super::day::close(st.store.pool(), req.carry_over, now_us()).await {
        Ok(d) => (StatusCode::CREATED, Json(json!(d))).into_response(),
        Err(super::day::CloseError::Pending(p)) => (
            StatusCode::CONFLICT,
            Json(json!({
                "code": "sales_pending",
                "message": format!(
                    "{} sale(s) are not on the gateway yet; wait for the upload, or close with carry_over to move them to the next day",
                    p.len()
                ),
                "pending": p,
            })),
        )
            .into_response(),
        Err(super::day::CloseError::Store(e)) => ApiError::from(e).into_response(),
    }
}

async fn day_closes(State(st): State<ApiState>) -> ApiResult {
    Ok(Json(
        json!({"closes": super::day::history(st.store.pool(), 30).await?}),
    ))
}

async fn payment_state(State(st): State<ApiState>) -> ApiResult {
    Ok(Json(super::pay::state(&st).await?))
}

async fn payment_check(State(st): State<ApiState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::pay::check(&st).await
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

pub(crate) fn fault_response(e: crate::client::ClientError) -> Response {
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
    let req: Reject = match optional_body(&raw) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
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
