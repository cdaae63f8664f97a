//! Admin endpoints for products, stores and stock, and the store catalog.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use proto::order::{Money, Sku, StoreId, Unit};
use serde::Deserialize;

use super::extract::{Admin, Auth, JsonBody, Path};
use crate::app::AppState;
use crate::catalog::{self, ItemChange, ProductSpec};
use crate::clock;
use crate::error::{Code, Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products/{sku}", put(put_product))
        .route("/stores/{store}", put(put_store))
        .route("/stores/{store}/stock/{sku}", put(put_item))
        .route("/stores/{store}/items/{sku}", put(put_item))
        .route("/stores/{store}/catalog", get(get_catalog))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ProductBody {
    /// 1-120 characters, not all blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 120,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    #[schema(value_type = Unit)]
    unit: String,
    #[schema(value_type = Money)]
    price: String,
    /// Absent leaves the product's barcodes as they are; `[]` removes them.
    #[schema(value_type = Option<Vec<proto::order::Barcode>>)]
    barcodes: Option<Vec<String>>,
}

/// Creates or replaces a product of the chain (admin).
#[utoipa::path(put, path = "/api/v1/products/{sku}", tag = "catalog", request_body = ProductBody,
    params(("sku" = Sku, Path)),
    responses((status = 201, description = "Created", body = catalog::Product),
        (status = 200, description = "Replaced", body = catalog::Product)))]
async fn put_product(
    State(st): State<AppState>,
    _: Admin,
    Path(sku): Path<String>,
    body: JsonBody<ProductBody>,
) -> Result<(StatusCode, Json<catalog::Product>)> {
    let b = body.value;
    let spec = ProductSpec {
        sku: Sku::parse(&sku)?,
        name: catalog::check_name("product", &b.name)?,
        unit: Unit::parse(&b.unit)?,
        price: Money::parse(&b.price)?,
        barcodes: b
            .barcodes
            .as_ref()
            .map(|l| proto::order::Barcode::parse_list(l.iter().map(String::as_str)))
            .transpose()?,
    };
    let (p, created) = catalog::put_product(&st.db, spec).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(p),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StoreBody {
    /// 1-120 characters, not all blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 120,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
}

/// Creates or renames a store (admin).
#[utoipa::path(put, path = "/api/v1/stores/{store}", tag = "catalog", request_body = StoreBody,
    params(("store" = StoreId, Path)),
    responses((status = 201, description = "Created", body = catalog::Store),
        (status = 200, description = "Renamed", body = catalog::Store)))]
async fn put_store(
    State(st): State<AppState>,
    _: Admin,
    Path(store): Path<String>,
    body: JsonBody<StoreBody>,
) -> Result<(StatusCode, Json<catalog::Store>)> {
    let id = StoreId::parse(&store)?;
    let name = catalog::check_name("store", &body.value.name)?;
    let (s, created) = catalog::put_store(&st.db, &id, name).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(s),
    ))
}

/// `null` and absent differ here: `"price": null` removes the override.
#[derive(Deserialize, utoipa::ToSchema)]
struct ItemBody {
    /// The stock counted now.
    #[schema(value_type = Option<proto::order::Quantity>)]
    on_hand: Option<String>,
    available: Option<bool>,
    /// This store's price; `null` removes the override (the list price applies).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Money>)]
    price: Option<Option<String>>,
    /// RFC 3339; `null` ends a snooze.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    snoozed_until: Option<Option<String>>,
}

fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Sets a store's stock, availability, price override or snooze of a product
/// (admin); `PUT /api/v1/stores/{store}/stock/{sku}` is the same operation.
#[utoipa::path(put, path = "/api/v1/stores/{store}/items/{sku}", tag = "catalog", request_body = ItemBody,
    params(("store" = StoreId, Path), ("sku" = Sku, Path)),
    responses((status = 200, description = "The item as the store sells it", body = proto::order::CatalogItem)))]
async fn put_item(
    State(st): State<AppState>,
    _: Admin,
    Path((store, sku)): Path<(String, String)>,
    body: JsonBody<ItemBody>,
) -> Result<Json<proto::order::CatalogItem>> {
    let store = StoreId::parse(&store)?;
    let sku = Sku::parse(&sku)?;
    let b = body.value;
    if b.on_hand.is_none()
        && b.available.is_none()
        && b.price.is_none()
        && b.snoozed_until.is_none()
    {
        return Err(Error::new(
            Code::InvalidRequest,
            "give at least one of on_hand, available, price, snoozed_until",
        ));
    }
    let price = b
        .price
        .map(|p| p.map(|p| Money::parse(&p)).transpose())
        .transpose()?;
    let snoozed_until = b
        .snoozed_until
        .map(|s| {
            s.map(|s| {
                clock::parse_rfc3339(&s).ok_or_else(|| {
                    Error::new(
                        Code::InvalidTime,
                        format!("snoozed_until must be an RFC 3339 time, got {s:?}"),
                    )
                })
            })
            .transpose()
        })
        .transpose()?;
    let change = ItemChange {
        on_hand: b.on_hand,
        available: b.available,
        price,
        snoozed_until,
    };
    Ok(Json(catalog::put_item(&st.db, &store, &sku, change).await?))
}

/// What a store sells now, with prices and stock.
#[utoipa::path(get, path = "/api/v1/stores/{store}/catalog", tag = "catalog",
    params(("store" = StoreId, Path)),
    responses((status = 200, description = "The store's catalog", body = catalog::Catalog)))]
async fn get_catalog(
    State(st): State<AppState>,
    Auth(who): Auth,
    Path(store): Path<String>,
) -> Result<Json<catalog::Catalog>> {
    let store = StoreId::parse(&store)?;
    who.check_store(&store)?;
    Ok(Json(catalog::catalog(&st.db, &store).await?))
}
