//! REST for third-party orders and their mapping: the delivery side of an
//! order, the store's platform-only actions (self-delivery, refunds), SKU and
//! store mappings; and the routes the platforms push to. Thin: each handler
//! parses, authorises, calls `channels` and answers.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use proto::order::StoreId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::channels::actions::{self, ActionRequest};
use crate::channels::ingest::{self, ThirdParty};
use crate::channels::mappings::{self, NewSkuMapping};
use crate::channels::push::{self, Received};
use crate::error::{Code, Error, Result};
use crate::http::extract::{Admin, Auth, JsonBody, Path};
use crate::platforms::Answer;
use crate::platforms::meituan::MAX_PUSH_BYTES;
use crate::platforms::webhook::MAX_BODY_BYTES;

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

/// The body, or `None` when it is longer than `cap`.
async fn body_capped(body: Body, cap: usize) -> Option<Bytes> {
    axum::body::to_bytes(body, cap).await.ok()
}

fn platform_answer(a: Answer) -> Response {
    let mut r = (a.status, a.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    r
}

/// `POST /channels/meituan/{event}`: [`push::meituan`].
async fn meituan_push(
    State(st): State<AppState>,
    Path(event): Path<String>,
    req: Request,
) -> Response {
    let forwarded =
        crate::http::extract::forwarded_base(&st.inner, req.headers(), req.extensions());
    let (parts, body) = req.into_parts();
    let body = body_capped(body, MAX_PUSH_BYTES).await;
    let received = Received {
        segment: &event,
        path: parts.uri.path(),
        headers: &parts.headers,
        body: body.as_deref(),
    };
    platform_answer(
        push::meituan(
            st.channels.as_deref(),
            &st.db,
            &st.hub,
            &st.orders,
            st.inner.public_url.as_deref(),
            forwarded.as_deref(),
            received,
        )
        .await,
    )
}

/// `POST /channels/webhook/{platform}`: [`push::webhook`].
async fn webhook_push(
    State(st): State<AppState>,
    Path(platform): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = body_capped(body, MAX_BODY_BYTES).await;
    let received = Received {
        segment: &platform,
        path: parts.uri.path(),
        headers: &parts.headers,
        body: body.as_deref(),
    };
    match push::webhook(
        st.channels.as_deref(),
        &st.db,
        &st.hub,
        &st.orders,
        received,
    )
    .await
    {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The delivery side of a third-party order (terminal or admin).
#[utoipa::path(get, path = "/api/v1/orders/{id}/third_party", tag = "channels",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The delivery details", body = ThirdParty)))]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `delivering`, `arrived` (self-delivery), `refund_agree`, `refund_reject`:
/// [`actions::act`].
#[utoipa::path(post, path = "/api/v1/orders/{id}/third_party/{action}", tag = "channels",
    params(("id" = String, Path, description = "The order's id"),
        ("action" = String, Path, description = "`delivering`, `arrived`, `refund_agree` or `refund_reject`")),
    request_body(content = Option<ActionBody>, description = "Optional; a refund rejection gives a reason"),
    responses((status = 200, description = "Done", body = crate::http::openapi::ActionDone)))]
async fn action(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        // `null` is no body too.
        crate::http::extract::parse_json::<Option<ActionBody>>(&body)?
            .value
            .unwrap_or_default()
    };
    let req = ActionRequest::parse(&action, body.reason)?;
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
    let done = actions::act(&st.db, &st.hub, &tp, &req, &who.actor()).await?;
    Ok(Json(
        json!({"order_id": done.order_id, "event": done.event, "seq": done.seq}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SkuMapping {
    #[schema(value_type = proto::order::Sku)]
    sku: String,
    /// Only in this store; absent: every store.
    #[serde(default)]
    store_id: Option<String>,
    /// How much of our SKU one platform item is ("1" piece, "0.500" kg).
    #[serde(default)]
    #[schema(value_type = Option<proto::order::Quantity>)]
    per_item: Option<String>,
}

/// `PUT /api/v1/channels/{platform}/skus/{platform_sku}` (admin).
#[utoipa::path(put, path = "/api/v1/channels/{platform}/skus/{platform_sku}", tag = "channels",
    request_body = SkuMapping,
    params(("platform" = String, Path), ("platform_sku" = String, Path)),
    responses((status = 200, description = "The mapping", body = Object)))]
async fn put_sku(
    State(st): State<AppState>,
    _: Admin,
    Path((platform, psku)): Path<(String, String)>,
    body: JsonBody<SkuMapping>,
) -> Result<(StatusCode, Json<Value>)> {
    let m = body.value;
    let mapping = NewSkuMapping {
        sku: &m.sku,
        store: m.store_id.as_deref(),
        per_item: m.per_item.as_deref(),
    };
    let done = mappings::put_sku(&st.db, &platform, &psku, mapping).await?;
    Ok((StatusCode::OK, Json(done)))
}

/// `GET /api/v1/channels/{platform}/skus` (admin).
#[utoipa::path(get, path = "/api/v1/channels/{platform}/skus", tag = "channels",
    params(("platform" = String, Path)),
    responses((status = 200, description = "The platform's SKU mappings", body = Object)))]
async fn list_skus(
    State(st): State<AppState>,
    _: Admin,
    Path(platform): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(mappings::list_skus(&st.db, &platform).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StoreMapping {
    #[schema(value_type = proto::order::StoreId)]
    store_id: String,
}

/// `PUT /api/v1/channels/{platform}/stores/{platform_store}` (admin).
#[utoipa::path(put, path = "/api/v1/channels/{platform}/stores/{platform_store}", tag = "channels",
    request_body = StoreMapping,
    params(("platform" = String, Path), ("platform_store" = String, Path)),
    responses((status = 200, description = "The mapping", body = Object)))]
async fn put_store(
    State(st): State<AppState>,
    _: Admin,
    Path((platform, pstore)): Path<(String, String)>,
    body: JsonBody<StoreMapping>,
) -> Result<Json<Value>> {
    let done = mappings::put_store(&st.db, &platform, &pstore, &body.value.store_id).await?;
    Ok(Json(done))
}

/// `GET /api/v1/channels/held` (admin): events still waiting for their
/// order (e.g. a cancel for an order the platform never pushed).
#[utoipa::path(get, path = "/api/v1/channels/held", tag = "channels",
    responses((status = 200, description = "The held events", body = Object)))]
async fn held(State(st): State<AppState>, _: Admin) -> Result<Json<Value>> {
    Ok(Json(mappings::held(&st.db).await?))
}
