//! Demo data: two stores, a small catalog sold by the piece and by weight,
//! stock, and keys to try it with.

use proto::order::{Money, Sku, StoreId, Unit};

use crate::catalog::{self, ItemChange, ProductSpec};
use crate::db::Db;
use crate::keys::{self, KeySpec, Role};

pub const STORES: [(&str, &str); 2] = [("S001", "人民路店"), ("S002", "解放路店")];

/// (sku, name, unit, price, stock per store)
pub const PRODUCTS: [(&str, &str, Unit, &str, &str); 6] = [
    ("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", "20.000"),
    ("DUCK-WING", "卤鸭翅", Unit::Kg, "49.90", "15.000"),
    ("TOFU", "卤豆干", Unit::Kg, "29.90", "10.000"),
    ("EGG", "卤蛋", Unit::Piece, "2.50", "200"),
    ("COLA", "可口可乐 330ml", Unit::Piece, "3.50", "100"),
    ("WATER", "农夫山泉 550ml", Unit::Piece, "2.00", "100"),
];

/// The demo products with a printed barcode (made-up codes with a valid
/// EAN-13 check digit).
fn demo_barcodes(sku: &str) -> Option<Vec<proto::order::Barcode>> {
    let code = match sku {
        "EGG" => "6920000000012",
        "COLA" => "6920000000029",
        "WATER" => "6920000000036",
        _ => return None,
    };
    proto::order::Barcode::parse(code).ok().map(|b| vec![b])
}

/// Seeds the catalog (idempotent) and makes fresh keys; returns lines to print.
pub async fn seed(db: &Db) -> anyhow::Result<Vec<String>> {
    for (id, name) in STORES {
        catalog::put_store(db, &StoreId::parse(id)?, name.to_owned()).await?;
    }
    for (sku, name, unit, price, stock) in PRODUCTS {
        let sku = Sku::parse(sku)?;
        catalog::put_product(
            db,
            ProductSpec {
                sku: sku.clone(),
                name: name.to_owned(),
                unit,
                price: Money::parse(price)?,
                barcodes: demo_barcodes(sku.as_str()),
            },
        )
        .await?;
        for (store, _) in STORES {
            let change = ItemChange {
                on_hand: Some(stock.to_owned()),
                available: Some(true),
                ..Default::default()
            };
            catalog::put_item(db, &StoreId::parse(store)?, &sku, change).await?;
        }
    }
    let mut out = Vec::new();
    let admin = keys::create(
        db,
        KeySpec {
            role: Role::Admin,
            store: None,
            terminal: None,
            label: Some("demo admin".into()),
        },
    )
    .await?;
    out.push(format!("demo admin key:          {}", admin.token));
    let app = keys::create(
        db,
        KeySpec {
            role: Role::App,
            store: None,
            terminal: None,
            label: Some("demo app".into()),
        },
    )
    .await?;
    out.push(format!("demo app key:            {}", app.token));
    for (store, _) in STORES {
        let t = keys::create(
            db,
            KeySpec {
                role: Role::Terminal,
                store: Some(StoreId::parse(store)?),
                terminal: None,
                label: Some("demo terminal".into()),
            },
        )
        .await?;
        // SOAP needs the terminal id too: it is the UsernameToken username.
        let id = keys::list(db)
            .await?
            .into_iter()
            .find(|k| k.id == t.id)
            .and_then(|k| k.terminal)
            .ok_or_else(|| anyhow::anyhow!("demo terminal key {} has no terminal id", t.id))?;
        out.push(format!("demo terminal key {store}:  {}", t.token));
        out.push(format!("demo terminal id {store}:   {id}"));
    }
    Ok(out)
}
