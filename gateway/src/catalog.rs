//! Products, stores and per-store stock, availability and price.

use proto::order::{Barcode, CatalogItem, Money, Quantity, Sku, StoreId, Unit};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock;
use crate::db::Db;
use crate::error::{Code, Error, Result};

pub struct ProductSpec {
    pub sku: Sku,
    pub name: String,
    pub unit: Unit,
    pub price: Money,
    /// `None` leaves the product's barcodes as they are.
    pub barcodes: Option<Vec<Barcode>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub unit: Unit,
    pub price: Money,
    pub barcodes: Vec<Barcode>,
    pub updated_at: String,
}

pub fn check_name(what: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err(Error::new(
            Code::InvalidName,
            format!("{what} name must be 1-120 printable characters"),
        ));
    }
    Ok(name.to_owned())
}

pub async fn put_product(db: &Db, spec: ProductSpec) -> Result<(Product, bool)> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let existing = sqlx::query("SELECT unit FROM products WHERE sku = $1")
        .bind(spec.sku.as_str().to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    let created = existing.is_none();
    if let Some(row) = existing {
        let unit: String = row.get("unit");
        if unit != spec.unit.as_str() {
            let reserved = sqlx::query(
                "SELECT 1 FROM store_items WHERE sku = $1 AND (reserved > 0 OR on_hand > 0)",
            )
            .bind(spec.sku.as_str().to_owned())
            .fetch_optional(&mut **tx)
            .await?;
            if reserved.is_some() {
                return Err(Error::new(
                    Code::UnitChangeBlocked,
                    format!(
                        "{} has stock or open orders in {unit}; zero its stock before changing the unit",
                        spec.sku
                    ),
                ));
            }
        }
        sqlx::query("UPDATE products SET name = $1, unit = $2, price_fen = $3, rev = $4, updated_at = $4 WHERE sku = $5")
            .bind(spec.name.clone())
            .bind(spec.unit.as_str())
            .bind(spec.price.fen())
            .bind(now)
            .bind(spec.sku.as_str().to_owned())
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query("INSERT INTO products (sku, name, unit, price_fen, rev, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(spec.sku.as_str().to_owned())
            .bind(spec.name.clone())
            .bind(spec.unit.as_str())
            .bind(spec.price.fen())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(codes) = &spec.barcodes {
        set_barcodes(&mut tx, &spec.sku, codes).await?;
    }
    let barcodes = barcodes_of(&mut tx, Some(&spec.sku))
        .await?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    tx.commit().await?;
    Ok((
        Product {
            sku: spec.sku.to_string(),
            name: spec.name,
            unit: spec.unit,
            price: spec.price,
            barcodes,
            updated_at: clock::rfc3339(now),
        },
        created,
    ))
}

/// Replaces a product's barcodes; a barcode already on another product is
/// refused (`barcode_taken`), so a scan names one SKU.
async fn set_barcodes(conn: &mut AnyConnection, sku: &Sku, codes: &[Barcode]) -> Result<()> {
    for b in codes {
        let other =
            sqlx::query("SELECT sku FROM product_barcodes WHERE barcode = $1 AND sku <> $2")
                .bind(b.as_str().to_owned())
                .bind(sku.as_str().to_owned())
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(row) = other {
            let owner: String = row.get("sku");
            return Err(Error::new(
                Code::BarcodeTaken,
                format!("barcode {b} is already on product {owner}"),
            ));
        }
    }
    sqlx::query("DELETE FROM product_barcodes WHERE sku = $1")
        .bind(sku.as_str().to_owned())
        .execute(&mut *conn)
        .await?;
    for (pos, b) in (0_i64..).zip(codes) {
        sqlx::query("INSERT INTO product_barcodes (barcode, sku, pos) VALUES ($1, $2, $3)")
            .bind(b.as_str().to_owned())
            .bind(sku.as_str().to_owned())
            .bind(pos)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// (sku, barcode) pairs, in each product's own order.
async fn barcodes_of(
    conn: &mut AnyConnection,
    only: Option<&Sku>,
) -> Result<Vec<(String, Barcode)>> {
    let rows = sqlx::query(
        "SELECT sku, barcode FROM product_barcodes WHERE ($1 = '' OR sku = $1) ORDER BY sku, pos",
    )
    .bind(only.map(|s| s.as_str().to_owned()).unwrap_or_default())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let b = Barcode::parse(&r.get::<String, _>("barcode")).map_err(Error::internal)?;
            Ok((r.get::<String, _>("sku"), b))
        })
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Store {
    pub id: String,
    pub name: String,
    pub state: String,
}

pub async fn put_store(db: &Db, id: &StoreId, name: String) -> Result<(Store, bool)> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let n = sqlx::query("UPDATE stores SET name = $1, updated_at = $2 WHERE id = $3")
        .bind(name.clone())
        .bind(now)
        .bind(id.as_str().to_owned())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let created = n == 0;
    if created {
        sqlx::query(
            "INSERT INTO stores (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id.as_str().to_owned())
        .bind(name.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    tx.commit().await?;
    Ok((
        Store {
            id: id.to_string(),
            name,
            state: "open".into(),
        },
        created,
    ))
}

pub async fn store_exists(conn: &mut AnyConnection, id: &StoreId) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM stores WHERE id = $1")
        .bind(id.as_str().to_owned())
        .fetch_optional(conn)
        .await?
        .is_some())
}

pub async fn require_store(conn: &mut AnyConnection, id: &StoreId) -> Result<()> {
    if store_exists(conn, id).await? {
        Ok(())
    } else {
        Err(Error::new(Code::UnknownStore, format!("no store {id}")))
    }
}

/// A change to one product's stock and availability in one store; absent
/// fields stay as they are.
#[derive(Default)]
pub struct ItemChange {
    pub on_hand: Option<String>,
    pub available: Option<bool>,
    /// `Some(None)` removes the store's price override.
    pub price: Option<Option<Money>>,
    /// `Some(None)` ends a snooze.
    pub snoozed_until: Option<Option<i64>>,
}

pub async fn put_item(
    db: &Db,
    store: &StoreId,
    sku: &Sku,
    change: ItemChange,
) -> Result<CatalogItem> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    require_store(&mut tx, store).await?;
    // The store row first, as every order writer takes it before its
    // items: the reverse order could deadlock with an order on PostgreSQL.
    bump_catalog(&mut tx, store).await?;
    let unit = product_unit(&mut tx, sku)
        .await?
        .ok_or_else(|| Error::new(Code::UnknownSku, format!("no product {sku}")))?;
    let on_hand = change
        .on_hand
        .as_deref()
        .map(|s| Quantity::parse_stock(unit, s))
        .transpose()?;
    sqlx::query(
        "INSERT INTO store_items (store_id, sku, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (store_id, sku) DO NOTHING",
    )
    .bind(store.as_str().to_owned())
    .bind(sku.as_str().to_owned())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if let Some(q) = on_hand {
        set_item_col(&mut tx, store, sku, "on_hand", Some(q.milli()), now).await?;
    }
    if let Some(a) = change.available {
        set_item_col(&mut tx, store, sku, "available", Some(i64::from(a)), now).await?;
    }
    if let Some(p) = change.price {
        set_item_col(&mut tx, store, sku, "price_fen", p.map(Money::fen), now).await?;
    }
    if let Some(s) = change.snoozed_until {
        set_item_col(&mut tx, store, sku, "snoozed_until", s, now).await?;
    }
    let item = items(&mut tx, store, Some(sku), now)
        .await?
        .pop()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("item vanished")))?;
    // Platforms selling this item hear of it through the outbox.
    let sync = crate::outbox::ItemSync {
        stock: on_hand.is_some(),
        status: change.available.is_some() || change.snoozed_until.is_some(),
    };
    crate::outbox::enqueue_for_item(&mut tx, store, &item, sync, now).await?;
    tx.commit().await?;
    Ok(item)
}

async fn set_item_col(
    conn: &mut AnyConnection,
    store: &StoreId,
    sku: &Sku,
    col: &'static str,
    value: Option<i64>,
    now: i64,
) -> Result<()> {
    let sql = format!(
        "UPDATE store_items SET {col} = $1, updated_at = $2 WHERE store_id = $3 AND sku = $4"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(now)
        .bind(store.as_str().to_owned())
        .bind(sku.as_str().to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn bump_catalog(conn: &mut AnyConnection, store: &StoreId) -> Result<()> {
    sqlx::query("UPDATE stores SET catalog_rev = catalog_rev + 1 WHERE id = $1")
        .bind(store.as_str().to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn product_unit(conn: &mut AnyConnection, sku: &Sku) -> Result<Option<Unit>> {
    let row = sqlx::query("SELECT unit FROM products WHERE sku = $1")
        .bind(sku.as_str().to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| Unit::parse(&r.get::<String, _>("unit")).map_err(Error::internal))
        .transpose()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Catalog {
    pub store_id: String,
    pub store_name: String,
    /// Changes whenever anything in this store's catalog or stock changes.
    pub version: String,
    pub currency: &'static str,
    pub items: Vec<CatalogItem>,
}

pub async fn catalog(db: &Db, store: &StoreId) -> Result<Catalog> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query(
        "SELECT name, catalog_rev, (SELECT COALESCE(MAX(rev), 0) FROM products) AS prev
         FROM stores WHERE id = $1",
    )
    .bind(store.as_str().to_owned())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::new(Code::UnknownStore, format!("no store {store}")))?;
    let items = items(&mut conn, store, None, db.now_micros()).await?;
    Ok(Catalog {
        store_id: store.to_string(),
        store_name: row.get("name"),
        version: format!(
            "{}.{}",
            row.get::<i64, _>("prev"),
            row.get::<i64, _>("catalog_rev")
        ),
        currency: proto::order::CURRENCY,
        items,
    })
}

/// A stock count changed outside `put_item` (a refund's restock): platforms
/// selling the item hear of it through the outbox, in the caller's
/// transaction.
pub async fn stock_changed(
    conn: &mut AnyConnection,
    store: &StoreId,
    sku: &Sku,
    now: i64,
) -> Result<()> {
    let Some(item) = items(conn, store, Some(sku), now).await?.pop() else {
        return Ok(());
    };
    let sync = crate::outbox::ItemSync {
        stock: true,
        status: false,
    };
    crate::outbox::enqueue_for_item(conn, store, &item, sync, now).await
}

async fn items(
    conn: &mut AnyConnection,
    store: &StoreId,
    only: Option<&Sku>,
    now: i64,
) -> Result<Vec<CatalogItem>> {
    let sql = "SELECT p.sku, p.name, p.unit, p.price_fen,
                      i.price_fen AS override_fen, COALESCE(i.on_hand, 0) AS on_hand,
                      COALESCE(i.reserved, 0) AS reserved, COALESCE(i.available, 0) AS listed,
                      i.snoozed_until
               FROM products p
               LEFT JOIN store_items i ON i.sku = p.sku AND i.store_id = $1
               WHERE ($2 = '' OR p.sku = $2)
               ORDER BY p.sku";
    let rows = sqlx::query(sql)
        .bind(store.as_str().to_owned())
        .bind(only.map(|s| s.as_str().to_owned()).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
    let mut codes: std::collections::HashMap<String, Vec<Barcode>> =
        std::collections::HashMap::new();
    for (sku, b) in barcodes_of(conn, only).await? {
        codes.entry(sku).or_default().push(b);
    }
    rows.into_iter()
        .map(|r| {
            let unit = Unit::parse(&r.get::<String, _>("unit")).map_err(Error::internal)?;
            let list = Money::from_fen(r.get("price_fen"));
            let price = r
                .get::<Option<i64>, _>("override_fen")
                .map(Money::from_fen)
                .unwrap_or(list);
            let on_hand: i64 = r.get("on_hand");
            let reserved: i64 = r.get("reserved");
            let sellable = (on_hand - reserved).max(0);
            let listed = r.get::<i64, _>("listed") != 0;
            let snoozed = r
                .get::<Option<i64>, _>("snoozed_until")
                .filter(|u| *u > now);
            let sku: String = r.get("sku");
            let barcodes = codes.remove(&sku).unwrap_or_default();
            Ok(CatalogItem {
                sku: Sku::parse(&sku).map_err(Error::internal)?,
                name: r.get("name"),
                unit,
                price,
                list_price: list,
                on_hand: Quantity::from_milli(unit, on_hand),
                reserved: Quantity::from_milli(unit, reserved),
                sellable: Quantity::from_milli(unit, sellable),
                available: listed && snoozed.is_none() && sellable > 0,
                listed,
                snoozed_until: snoozed.map(clock::rfc3339),
                barcodes,
            })
        })
        .collect()
}
