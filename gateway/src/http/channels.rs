//! REST for third-party orders and their mapping: the delivery side of an
//! order, the store's platform-only actions (self-delivery, refunds), SKU and
//! store mappings. The pushes themselves are decoded in
//! `channels::meituan` and `channels::webhook`; their routes are here.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use proto::meituan::Call;
use proto::order::{
    Channel, OrderStatus, PaymentEvent, PaymentStatus, Quantity, Sku, StoreId, Unit,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::app::AppState;
use crate::channels::ingest::{self, ThirdParty};
use crate::channels::{MEITUAN, call_parts, platform_name_ok};
use crate::error::{Code, Error, Result};
use crate::events;
use crate::http::extract::{Auth, JsonBody};
use crate::outbox::{self, NewCall};

/// Routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders/{id}/third_party", get(details))
        .route("/orders/{id}/third_party/{action}", post(action))
        .route("/channels/{platform}/skus", get(list_skus))
        .route("/channels/{platform}/skus/{platform_sku}", put(put_sku))
        .route(
            "/channels/{platform}/stores/{platform_store}",
            put(put_store),
        )
        .route("/channels/held", get(held))
}

/// Routes the platforms call (no API key: each push is signed).
pub fn push_router() -> Router<AppState> {
    Router::new()
        .route("/channels/meituan/{event}", post(meituan_push))
        .route("/channels/webhook/{platform}", post(webhook_push))
}

/// `POST /channels/meituan/{event}`: [`crate::channels::meituan::push`].
async fn meituan_push(
    State(st): State<AppState>,
    Path(event): Path<String>,
    req: Request,
) -> Response {
    let forwarded =
        crate::http::extract::forwarded_base(&st.inner, req.headers(), req.extensions());
    crate::channels::meituan::push(
        st.channels.as_deref(),
        &st.db,
        &st.hub,
        st.inner.public_url.as_deref(),
        forwarded,
        event,
        req,
    )
    .await
}

/// `POST /channels/webhook/{platform}`: [`crate::channels::webhook::push`].
async fn webhook_push(
    State(st): State<AppState>,
    Path(platform): Path<String>,
    req: Request,
) -> Response {
    crate::channels::webhook::push(st.channels.as_deref(), &st.db, &st.hub, platform, req).await
}

async fn details(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<ThirdParty>> {
    // The recipient's name, phone and address are for the store that
    // delivers and for admins, not the brand's app.
    if who.role == crate::keys::Role::App {
        return Err(Error::forbidden(
            "third-party order details are for the store's terminals and admins",
        ));
    }
    let tp = ingest::third_party(&st.db, &id)
        .await?
        .ok_or_else(|| Error::new(Code::OrderNotFound, format!("no order {id}")))?;
    who.check_order(&StoreId::parse(&tp.store_id).map_err(Error::internal)?, &id)?;
    Ok(Json(tp))
}

#[derive(Deserialize, Default)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `delivering`, `arrived` (self-delivery), `refund_agree`, `refund_reject`:
/// a feed event and a platform call, in one transaction.
async fn action(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        crate::http::extract::parse_json::<ActionBody>(&body)?.value
    };
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > crate::orders::MAX_REASON_CHARS)
    {
        return Err(Error::new(Code::InvalidReason, "reason is too long"));
    }
    let (kind, refund_to) = match action.as_str() {
        "delivering" => ("order.delivering", None),
        "arrived" => ("order.arrived", None),
        "refund_agree" => ("order.refund_agreed", Some("agreed")),
        "refund_reject" => ("order.refund_rejected", Some("rejected")),
        _ => {
            return Err(Error::new(
                Code::UnknownAction,
                "third-party actions are delivering, arrived, refund_agree, refund_reject",
            ));
        }
    };
    if action == "refund_reject" && reason.is_none() {
        return Err(Error::new(
            Code::ReasonRequired,
            "refund_reject needs a reason",
        ));
    }
    let tp = ingest::third_party(&st.db, &id)
        .await?
        .ok_or_else(|| Error::new(Code::OrderNotFound, format!("no order {id}")))?;
    let store = StoreId::parse(&tp.store_id).map_err(Error::internal)?;
    who.check_order(&store, &id)?;
    if who.role == crate::keys::Role::App {
        return Err(Error::forbidden(
            "store actions are for terminals and admins",
        ));
    }
    let now = st.db.now_micros();
    let mut tx = st.db.write().await?;
    let seq = events::next_seq(&mut tx, &store)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
    let row = sqlx::query(
        "SELECT o.status, o.payment_status, o.channel, t.refund_state FROM orders o JOIN third_party_orders t ON t.order_id = o.id
         WHERE o.id = $1",
    )
    .bind(id.clone())
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
            .bind(id.clone())
            .execute(&mut **tx)
            .await?;
        if to == "agreed" {
            let paid = PaymentStatus::parse(&row.get::<String, _>("payment_status"))
                .map_err(Error::internal)?;
            crate::payments::store::set_payment_status(
                &mut tx,
                &id,
                paid,
                PaymentEvent::PlatformRefundAgreed,
                None,
                now,
            )
            .await?;
        }
    }
    if tp.platform == MEITUAN {
        let order_id = tp.platform_order_id.clone();
        let reason_text = reason.clone().unwrap_or_default();
        let call = match action.as_str() {
            "delivering" => Call::Delivering { order_id },
            "arrived" => Call::Arrived { order_id },
            "refund_agree" => Call::RefundAgree {
                order_id,
                reason: reason_text,
            },
            _ => Call::RefundReject {
                order_id,
                reason: reason_text,
            },
        };
        let (path, params) = call_parts(&call);
        outbox::enqueue(
            &mut tx,
            &[NewCall {
                platform: tp.platform.clone(),
                order_key: tp.platform_order_id.clone(),
                path,
                params,
                store_id: Some(store.to_string()),
                order_id: Some(id.clone()),
                not_before: None,
            }],
            now,
        )
        .await?;
    }
    ingest::append_order_event(
        &mut tx,
        &store,
        seq,
        &id,
        kind,
        json!({"by": who.actor(), "reason": reason}),
        now,
    )
    .await?;
    tx.commit().await?;
    st.hub.notify(&store);
    Ok(Json(json!({"order_id": id, "event": kind, "seq": seq})))
}

fn check_platform(p: &str) -> Result<()> {
    if platform_name_ok(p) {
        Ok(())
    } else {
        Err(Error::new(
            Code::UnknownPlatform,
            format!("no platform {p:?}"),
        ))
    }
}

fn check_code(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.chars().count() <= 64 && !s.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            Code::InvalidCode,
            format!("{what} must be 1-64 printable characters"),
        ))
    }
}

#[derive(Deserialize)]
struct SkuMapping {
    sku: String,
    /// Only in this store; absent: every store.
    #[serde(default)]
    store_id: Option<String>,
    /// How much of our SKU one platform item is ("1" piece, "0.500" kg).
    #[serde(default)]
    per_item: Option<String>,
}

/// `PUT /api/v1/channels/{platform}/skus/{platform_sku}` (admin).
async fn put_sku(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path((platform, psku)): Path<(String, String)>,
    body: JsonBody<SkuMapping>,
) -> Result<(StatusCode, Json<Value>)> {
    who.require_admin()?;
    check_platform(&platform)?;
    check_code("platform_sku", &psku)?;
    let m = body.value;
    let sku = Sku::parse(&m.sku)?;
    let store = m.store_id.as_deref().map(StoreId::parse).transpose()?;
    let mut tx = st.db.write().await?;
    let unit = crate::catalog::product_unit(&mut tx, &sku)
        .await?
        .ok_or_else(|| Error::new(Code::UnknownSku, format!("no product {sku}")).in_body())?;
    if let Some(s) = &store {
        crate::catalog::require_store(&mut tx, s).await?;
    }
    let per_item = match &m.per_item {
        Some(q) => Quantity::parse(unit, q)?.milli(),
        None if unit == Unit::Piece => 1000,
        None => 1000,
    };
    let now = st.db.now_micros();
    let store_key = store.as_ref().map(|s| s.to_string()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO sku_mappings (platform, store_id, platform_sku, sku, per_item_milli, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (platform, store_id, platform_sku)
         DO UPDATE SET sku = excluded.sku, per_item_milli = excluded.per_item_milli, updated_at = excluded.updated_at",
    )
    .bind(platform.clone())
    .bind(store_key.clone())
    .bind(psku.clone())
    .bind(sku.as_str().to_owned())
    .bind(per_item)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "platform": platform, "platform_sku": psku, "sku": sku,
            "store_id": store, "per_item": Quantity::from_milli(unit, per_item),
        })),
    ))
}

/// `GET /api/v1/channels/{platform}/skus` (admin).
async fn list_skus(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(platform): Path<String>,
) -> Result<Json<Value>> {
    who.require_admin()?;
    check_platform(&platform)?;
    let rows = sqlx::query(
        "SELECT m.store_id, m.platform_sku, m.sku, m.per_item_milli, p.unit FROM sku_mappings m
         JOIN products p ON p.sku = m.sku WHERE m.platform = $1 ORDER BY m.platform_sku, m.store_id LIMIT 10000",
    )
    .bind(platform.clone())
    .fetch_all(&st.db.pool)
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let unit = Unit::parse(&r.get::<String, _>("unit")).unwrap_or(Unit::Piece);
            let store: String = r.get("store_id");
            json!({
                "platform_sku": r.get::<String, _>("platform_sku"),
                "sku": r.get::<String, _>("sku"),
                "store_id": (!store.is_empty()).then_some(store),
                "per_item": Quantity::from_milli(unit, r.get("per_item_milli")),
            })
        })
        .collect();
    Ok(Json(json!({"platform": platform, "mappings": items})))
}

#[derive(Deserialize)]
struct StoreMapping {
    store_id: String,
}

/// `PUT /api/v1/channels/{platform}/stores/{platform_store}` (admin).
async fn put_store(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path((platform, pstore)): Path<(String, String)>,
    body: JsonBody<StoreMapping>,
) -> Result<Json<Value>> {
    who.require_admin()?;
    check_platform(&platform)?;
    check_code("platform store", &pstore)?;
    let store = StoreId::parse(&body.value.store_id)?;
    {
        let mut conn = st.db.pool.acquire().await?;
        crate::catalog::require_store(&mut conn, &store).await?;
    }
    crate::channels::register_store(&st.db, &platform, &pstore, &store).await?;
    Ok(Json(
        json!({"platform": platform, "platform_store_id": pstore, "store_id": store}),
    ))
}

/// `GET /api/v1/channels/held` (admin): events still waiting for their
/// order (e.g. a cancel for an order the platform never pushed).
async fn held(State(st): State<AppState>, Auth(who): Auth) -> Result<Json<Value>> {
    who.require_admin()?;
    let rows = sqlx::query(
        "SELECT platform, platform_order_id, kind, push_ref, params, received_at FROM channel_held
         WHERE applied_at IS NULL ORDER BY received_at LIMIT 1000",
    )
    .fetch_all(&st.db.pool)
    .await?;
    let held: Vec<Value> = rows
        .iter()
        .map(|r| {
            let params: String = r.get("params");
            let event: Value = serde_json::from_str(&params).unwrap_or(Value::Null);
            json!({
                "platform": r.get::<String, _>("platform"),
                "platform_order_id": r.get::<String, _>("platform_order_id"),
                "kind": r.get::<String, _>("kind"),
                "push_ref": r.get::<String, _>("push_ref"),
                "detail": event["detail"],
                "received_at": crate::clock::rfc3339(r.get("received_at")),
            })
        })
        .collect();
    Ok(Json(json!({"held": held})))
}
