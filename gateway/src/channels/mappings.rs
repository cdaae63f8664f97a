//! The mappings between a platform and us: its item codes to our SKUs, its
//! stores to ours; and the events still held for an order that never came.
//! Admin only; the routes are in `http/channels.rs`. Each function answers
//! with the JSON the route shows.

use proto::order::{Quantity, Sku, StoreId, Unit};
use serde_json::{Value, json};
use sqlx::Row;

use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::platforms;

fn check_platform(p: &str) -> Result<()> {
    if platforms::name_ok(p) {
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

/// Checks the platform and its item code, before the body is read.
fn check_sku_path(platform: &str, psku: &str) -> Result<()> {
    check_platform(platform)?;
    check_code("platform_sku", psku)
}

/// Checks the platform and its store code, before the body is read.
fn check_store_path(platform: &str, pstore: &str) -> Result<()> {
    check_platform(platform)?;
    check_code("platform store", pstore)
}

/// A SKU mapping as sent: our `sku`, only in `store` (absent: every store),
/// `per_item` how much of our SKU one platform item is ("1" piece, "0.500"
/// kg; absent: one piece or one kilogram).
pub struct NewSkuMapping<'a> {
    pub sku: &'a str,
    pub store: Option<&'a str>,
    pub per_item: Option<&'a str>,
}

/// Maps the platform's item `psku` to our SKU (replacing its mapping).
pub async fn put_sku(db: &Db, platform: &str, psku: &str, m: NewSkuMapping<'_>) -> Result<Value> {
    check_sku_path(platform, psku)?;
    let sku = Sku::parse(m.sku)?;
    let store = m.store.map(StoreId::parse).transpose()?;
    let mut tx = db.write().await?;
    let unit = crate::catalog::product_unit(&mut tx, &sku)
        .await?
        .ok_or_else(|| Error::new(Code::UnknownSku, format!("no product {sku}")).in_body())?;
    if let Some(s) = &store {
        crate::catalog::require_store(&mut tx, s).await?;
    }
    let per_item = match m.per_item {
        Some(q) => Quantity::parse(unit, q)?.milli(),
        None => 1000,
    };
    let now = db.now_micros();
    let store_key = store.as_ref().map(|s| s.to_string()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO sku_mappings (platform, store_id, platform_sku, sku, per_item_milli, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (platform, store_id, platform_sku)
         DO UPDATE SET sku = excluded.sku, per_item_milli = excluded.per_item_milli, updated_at = excluded.updated_at",
    )
    .bind(platform.to_owned())
    .bind(store_key)
    .bind(psku.to_owned())
    .bind(sku.as_str().to_owned())
    .bind(per_item)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(json!({
        "platform": platform, "platform_sku": psku, "sku": sku,
        "store_id": store, "per_item": Quantity::from_milli(unit, per_item),
    }))
}

/// The platform's SKU mappings.
pub async fn list_skus(db: &Db, platform: &str) -> Result<Value> {
    check_platform(platform)?;
    let rows = sqlx::query(
        "SELECT m.store_id, m.platform_sku, m.sku, m.per_item_milli, p.unit FROM sku_mappings m
         JOIN products p ON p.sku = m.sku WHERE m.platform = $1 ORDER BY m.platform_sku, m.store_id LIMIT 10000",
    )
    .bind(platform.to_owned())
    .fetch_all(&db.pool)
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
    Ok(json!({"platform": platform, "mappings": items}))
}

/// Maps the platform's store `pstore` to our store `store_id`.
pub async fn put_store(db: &Db, platform: &str, pstore: &str, store_id: &str) -> Result<Value> {
    check_store_path(platform, pstore)?;
    let store = StoreId::parse(store_id)?;
    {
        let mut conn = db.pool.acquire().await?;
        crate::catalog::require_store(&mut conn, &store).await?;
    }
    super::register_store(db, platform, pstore, &store).await?;
    Ok(json!({"platform": platform, "platform_store_id": pstore, "store_id": store}))
}

/// Events still waiting for their order (e.g. a cancel for an order the
/// platform never pushed).
pub async fn held(db: &Db) -> Result<Value> {
    let rows = sqlx::query(
        "SELECT platform, platform_order_id, kind, push_ref, params, received_at FROM channel_held
         WHERE applied_at IS NULL ORDER BY received_at LIMIT 1000",
    )
    .fetch_all(&db.pool)
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
    Ok(json!({"held": held}))
}
