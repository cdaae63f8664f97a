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

/// Keys and secrets that are published (the docs, the simulators' examples,
/// the tests): fine for office testing, never for a store. `gateway check`
/// refuses each of them.
pub const PUBLISHED_SECRETS: &[&str] = &[
    // The WeChat Pay v2 sandbox key the tests and the simulator sign with.
    "192006250b4c09247ec02edce69f6a2d",
    // README's example key.
    "0123456789abcdef0123456789abcdef",
    // The platform simulator's examples.
    "sim-test-secret",
    "S",
];

/// SHA-256 (hex) of the published test private keys (PEM, trimmed) of the
/// Alipay-shaped provider (proto/tests/fixtures).
pub const PUBLISHED_KEY_SHA256: &[&str] = &[
    "71e879e4ff372914edb499c131de2a28910de3d99a701aa9a436bd3e7e1e1621",
    "b17d7eb26ef4bf031e0435001109dc8a0989e28313f834897c0005524d7fc792",
];
