//! Orders over REST: create (idempotent), read, act.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::order::{Channel, Money, Order, OrderAction, PaymentStatus, Sku, StoreId};
use serde::Deserialize;

use super::extract::{Auth, JsonBody, Path};
use crate::app::AppState;
use crate::error::{Code, Error, Result};
use crate::keys::Role;
use crate::orders::{self, Created, Happened, IdemKey, NewLine, NewOrder, Prepaid};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders", post(create))
        .route("/orders/{id}", get(get_one))
        .route("/orders/{id}/{action}", post(act))
}

/// A quantity as a string (`"0.355"`) or a whole JSON number (`2`). Decimal
/// JSON numbers are refused: they would pass through binary floating point.
#[derive(Deserialize)]
#[serde(untagged)]
enum QuantityIn {
    Text(String),
    Whole(i64),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LineIn {
    #[schema(value_type = Sku)]
    sku: String,
    #[schema(schema_with = super::openapi::quantity_in)]
    quantity: QuantityIn,
    /// What the counter charged per unit (decimal yuan as a string), for a
    /// sale that already happened (`sold_at`) only.
    #[schema(value_type = Option<Money>)]
    unit_price: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateBody {
    #[schema(value_type = StoreId)]
    store_id: String,
    lines: Vec<LineIn>,
    note: Option<String>,
    /// The app's own order number, if it has one: a second order with the
    /// same number returns the first.
    channel_order_id: Option<String>,
    /// Paid inside the app before it reached us (app keys only).
    prepaid: Option<PrepaidIn>,
    /// When the counter sold it (RFC 3339), for a terminal's sale that
    /// already happened (uploaded after the gateway was away): never refused
    /// for stock, flagged instead (terminal keys only).
    sold_at: Option<String>,
    /// The catalog version the counter priced that sale from.
    catalog_version: Option<String>,
}

/// Longest `catalog_version`, as SOAP bounds `catalogVersion`.
const MAX_CATALOG_VERSION: usize = proto::soap::messages::MAX_CATALOG_VERSION;

#[derive(Deserialize, utoipa::ToSchema)]
struct PrepaidIn {
    #[schema(pattern = "^[!-~]{1,64}$")]
    provider: String,
    #[schema(pattern = "^[!-~]{1,64}$")]
    transaction_id: String,
    /// Decimal yuan as a string, e.g. "21.16": must equal the order total.
    #[schema(value_type = Money)]
    amount: String,
}

fn parse_lines(lines: Vec<LineIn>) -> Result<Vec<NewLine>> {
    lines
        .into_iter()
        .map(|l| {
            let quantity = match l.quantity {
                QuantityIn::Text(s) => s,
                QuantityIn::Whole(n) => n.to_string(),
                QuantityIn::Other(_) => {
                    return Err(Error::new(
                        Code::InvalidQuantity,
                        "quantity must be a string like \"0.355\" or a whole number",
                    ));
                }
            };
            Ok(NewLine {
                sku: Sku::parse(&l.sku)?,
                quantity,
                unit_price: l.unit_price.as_deref().map(Money::parse).transpose()?,
            })
        })
        .collect()
}

const MAX_IDEM_KEY: usize = 200;

/// Places an order (terminal: its store's counter; app or admin: the official channel).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = CreateBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-200 characters: a retry with the same key and body answers the first result")),
    responses(
        (status = 201, description = "Placed; a retry with the same Idempotency-Key and body gets this first answer again", body = Order),
        (status = 200, description = "The order this channel_order_id already placed (without a key, or under another one)", body = Order)))]
async fn create(
    State(st): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    body: JsonBody<CreateBody>,
) -> Result<Response> {
    let idem = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEM_KEY)
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidIdempotencyKey,
                        format!(
                            "Idempotency-Key must be 1-{MAX_IDEM_KEY} visible ASCII characters"
                        ),
                    )
                })?;
            Some(IdemKey {
                owner: who.key_id.clone(),
                key: key.to_owned(),
                request_hash: body.digest.clone(),
            })
        }
        None => None,
    };
    let b = body.value;
    let store = StoreId::parse(&b.store_id)
        .map_err(|e| Error::new(Code::UnknownStore, e.message).in_body())?;
    let channel = match who.role {
        Role::Terminal => {
            who.check_store(&store)?;
            Channel::Terminal
        }
        Role::App | Role::Admin => Channel::Official,
    };
    if b.channel_order_id
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 64)
    {
        return Err(Error::new(
            Code::InvalidRequest,
            "channel_order_id must be 1-64 characters",
        ));
    }
    let prepaid = match b.prepaid {
        None => None,
        Some(_) if channel != Channel::Official => {
            return Err(Error::new(
                Code::InvalidPrepaid,
                "only orders from the app arrive prepaid; the counter takes payment with PayOrder",
            ));
        }
        Some(p) => {
            let amount = Money::parse(&p.amount).map_err(|e| {
                Error::new(
                    Code::InvalidPrepaid,
                    format!("prepaid amount: {}", e.message),
                )
            })?;
            Some(Prepaid::new(&p.provider, &p.transaction_id, amount)?)
        }
    };
    let happened = match b.sold_at {
        None if b.catalog_version.is_some() => {
            return Err(Error::new(
                Code::InvalidRequest,
                "catalog_version belongs to a sale that already happened: give its sold_at",
            ));
        }
        None => None,
        Some(_) if channel != Channel::Terminal => {
            return Err(Error::new(
                Code::InvalidRequest,
                "only a counter terminal's sale has already happened (sold_at)",
            ));
        }
        Some(t) => {
            let sold_at = proto::time::Timestamp::parse(&t)?;
            let catalog_version = b
                .catalog_version
                .map(|v| {
                    if v.is_empty()
                        || v.chars().count() > MAX_CATALOG_VERSION
                        || v.chars().any(char::is_control)
                    {
                        Err(Error::new(
                            Code::InvalidRequest,
                            format!(
                                "catalog_version must be 1-{MAX_CATALOG_VERSION} printable characters"
                            ),
                        ))
                    } else {
                        Ok(v)
                    }
                })
                .transpose()?;
            Some(Happened {
                sold_at: sold_at.micros(),
                catalog_version,
            })
        }
    };
    let new = NewOrder {
        store,
        channel,
        platform: None,
        channel_order_id: b.channel_order_id,
        lines: parse_lines(b.lines)?,
        note: b.note,
        payment_status: PaymentStatus::Unpaid,
        prepaid,
        actor: who.actor().to_string(),
        happened,
    };
    match orders::create(&st.db, &st.hub, &st.orders, new, idem).await? {
        Created::Order { order, replayed } => {
            let status = if replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(with_location(status, *order))
        }
        Created::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
    }
}

fn with_location(status: StatusCode, order: Order) -> Response {
    let loc = HeaderValue::from_str(&format!("/api/v1/orders/{}", order.id)).ok();
    let mut resp = (status, Json(order)).into_response();
    if let Some(loc) = loc {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order", body = Order)))]
async fn get_one(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Order>> {
    let order = orders::get(&st.db, &id).await?;
    who.check_order(&order.store_id, &id)?;
    Ok(Json(order))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct ActBody {
    reason: Option<String>,
}

/// Moves an order through its states (the app may only cancel).
#[utoipa::path(post, path = "/api/v1/orders/{id}/{action}", tag = "orders",
    params(("id" = String, Path, description = "The order's id"), ("action" = OrderAction, Path)),
    request_body(content = Option<ActBody>, description = "Optional; reject and cancel may give a reason"),
    responses((status = 200, description = "The order after the action", body = Order)))]
async fn act(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Order>> {
    let body = body.map_err(|e| {
        Error::new(
            Code::PayloadTooLarge,
            format!("the body is larger than {} bytes", super::BODY_LIMIT),
        )
        .with_status(e.status())
    })?;
    let action =
        OrderAction::parse(&action).map_err(|e| Error::new(Code::UnknownAction, e.message))?;
    // The body is optional (accept/ready/complete need none).
    let reason = if body.is_empty() {
        None
    } else {
        super::extract::require_json(&headers)?;
        // `null` is no body too.
        super::extract::parse_json::<Option<ActBody>>(&body)?
            .value
            .and_then(|b| b.reason)
    };
    if who.role == Role::App && action != OrderAction::Cancel {
        return Err(Error::forbidden("the app may only cancel orders"));
    }
    let guard = |o: &Order| {
        who.check_order(&o.store_id, &o.id)?;
        if who.role == Role::App && o.channel != Channel::Official {
            return Err(Error::forbidden(
                "the app may only cancel its own channel's orders",
            ));
        }
        Ok(())
    };
    let order = crate::payments::act_refunding(
        &st.db,
        &st.hub,
        st.payments.as_deref(),
        &id,
        action,
        reason,
        &who.actor().to_string(),
        &guard,
    )
    .await?;
    Ok(Json(order))
}
