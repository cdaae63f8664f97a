//! A counter sale that already happened — sold while the gateway was away and
//! uploaded later with `SubmitOrder` + `soldAt` — through the terminal-sdk
//! client and REST, on both databases: recorded even when stock ran out
//! meanwhile (flagged `short_stock`, the stock still adding up), at the
//! counter's unit price (flagged `price_differs`), answered again as the same
//! order on a replay; a new order (no `soldAt`) is still refused when short.

use std::sync::Arc;
use std::time::Duration;

use proto::order::{Money, Sku, Unit};
use proto::soap::{SubmitLine, SubmitOrder};
use proto::time::Timestamp;
use serde_json::{Value, json};
use terminal_sdk::client::{ClientConfig, ClientError, GatewayClient};
use tests::{Backend, TestApp, key_for, on_both_databases};

on_both_databases!(
    a_sale_beyond_the_stock_is_recorded_flagged_and_the_stock_adds_up,
    fifty_happened_sales_racing_are_each_recorded_once,
    a_sale_at_an_old_price_totals_what_the_counter_charged,
    unknown_and_foreign_skus_are_still_refused,
    rest_takes_the_same_sale,
);

const SOLD_AT: &str = "2026-12-03T09:15:30+08:00";

async fn counter(app: &TestApp, store: &str, terminal: &str) -> GatewayClient {
    let key = key_for(
        &app.db,
        gateway::keys::Role::Terminal,
        Some(store),
        Some(terminal),
    )
    .await;
    GatewayClient::new(ClientConfig {
        timeout: Duration::from_secs(10),
        ..ClientConfig::new(
            app.base.clone(),
            proto::order::TerminalId::parse(terminal).unwrap(),
            key,
        )
    })
    .unwrap()
}

/// A sale: `(sku, quantity, unit price the counter charged)`; `sold_at`
/// `None` is a new order as before.
fn sale(id: &str, sold_at: Option<&str>, lines: &[(&str, &str, Option<&str>)]) -> SubmitOrder {
    SubmitOrder {
        client_order_id: id.into(),
        lines: lines
            .iter()
            .map(|(sku, q, p)| SubmitLine {
                sku: Sku::parse(sku).unwrap(),
                quantity: (*q).into(),
                unit_price: p.map(|p| Money::parse(p).unwrap()),
            })
            .collect(),
        note: Some(format!("counter sale {id}")),
        sold_at: sold_at.map(|t| Timestamp::parse(t).unwrap()),
        catalog_version: sold_at.map(|_| "S001:17".to_owned()),
    }
}

fn fault_code(e: ClientError) -> String {
    match e {
        ClientError::Fault(f) => f.code,
        other => panic!("expected a Fault, got {other:?}"),
    }
}

async fn order_json(app: &TestApp, id: &str) -> Value {
    let (s, o) = app
        .get_json(&format!("/api/v1/orders/{id}"), &app.admin)
        .await;
    assert_eq!(s, 200, "{o}");
    o
}

fn attention(o: &Value) -> Vec<String> {
    o["attention"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// on hand − reserved, in thousandths: what is left once every order open
/// in the store is served (negative: the shortfall).
async fn left_milli(app: &TestApp, store: &str, sku: &str) -> (i64, i64) {
    let item = app.item(store, sku).await;
    let milli = |v: &Value| {
        proto::number::parse_scaled(v.as_str().expect("a quantity"), 3, i64::MAX).unwrap()
    };
    (milli(&item["on_hand"]), milli(&item["reserved"]))
}

async fn a_sale_beyond_the_stock_is_recorded_flagged_and_the_stock_adds_up(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("LAST", "最后五个", Unit::Piece, "1.00", "5")
        .await;
    let c = counter(&app, "S001", "S001-T01").await;

    // A new order beyond the stock is refused, as before.
    let e = c
        .submit_order(&sale("new-1", None, &[("LAST", "8", None)]))
        .await
        .unwrap_err();
    assert_eq!(fault_code(e), "out_of_stock");

    // Sold at the counter while the gateway was away: 3, then 8 more.
    let first = c
        .submit_order(&sale("off-1", Some(SOLD_AT), &[("LAST", "3", None)]))
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.order.note.as_deref(), Some("counter sale off-1"));
    assert!(attention(&order_json(&app, &first.order.id).await).is_empty());
    let short = c
        .submit_order(&sale(
            "off-2",
            Some("2026-12-03T01:20:00Z"),
            &[("LAST", "8", Some("1.00"))],
        ))
        .await
        .unwrap();
    assert!(!short.replayed);
    assert_eq!(short.order.total.to_string(), "8.00");
    // The SOAP view leads the note with the flag; REST carries it too.
    let note = short.order.note.clone().unwrap_or_default();
    assert!(
        note.starts_with("⚠ short_stock") && note.ends_with("counter sale off-2"),
        "{note}"
    );
    let o = order_json(&app, &short.order.id).await;
    assert_eq!(attention(&o), ["short_stock"]);
    assert_eq!(o["channel"], "terminal");
    assert_eq!(o["status"], "created");
    // soldAt is the counter's time; createdAt when it reached the gateway.
    let sold = Timestamp::parse(o["sold_at"].as_str().expect("sold_at")).unwrap();
    assert_eq!(
        sold.micros(),
        Timestamp::parse("2026-12-03T01:20:00Z").unwrap().micros()
    );
    assert_ne!(o["created_at"], o["sold_at"]);

    // The stock equation: 5 on hand − (3 + 8) sold = −6, the shortfall in sight.
    let (on_hand, reserved) = left_milli(&app, "S001", "LAST").await;
    assert_eq!((on_hand, reserved), (5_000, 11_000));
    assert_eq!(on_hand - reserved, 5_000 - 3_000 - 8_000);
    let item = app.item("S001", "LAST").await;
    assert_eq!(item["sellable"], "0");
    assert_eq!(item["available"], false);
    // Nothing is left for a new order.
    let e = c
        .submit_order(&sale("new-2", None, &[("LAST", "1", None)]))
        .await
        .unwrap_err();
    assert_eq!(fault_code(e), "out_of_stock");

    // Restocked meanwhile: a replay is still the order first made, flags and all.
    app.stock("S001", "LAST", "100").await;
    let again = c
        .submit_order(&sale(
            "off-2",
            Some("2026-12-03T01:20:00Z"),
            &[("LAST", "8", Some("1.00"))],
        ))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, short.order.id);
    assert_eq!(again.order.total, short.order.total);
    assert_eq!(again.order.note, short.order.note);
    assert_eq!(
        attention(&order_json(&app, &short.order.id).await),
        ["short_stock"]
    );
    assert_eq!(app.queue("S001").await.len(), 2);
    app.stop().await;
}

async fn fifty_happened_sales_racing_are_each_recorded_once(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("BUN", "馒头", Unit::Piece, "1.50", "20").await;
    let c = Arc::new(counter(&app, "S001", "S001-T01").await);
    // 50 queued sales sent at once, each twice (a lost answer resent).
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let id = format!("off-{}", i % 50);
                c.submit_order(&sale(&id, Some(SOLD_AT), &[("BUN", "1", Some("1.50"))]))
                    .await
                    .map(|r| (id, r.order.id, r.replayed))
            })
        })
        .collect();
    let mut by_sale = std::collections::HashMap::new();
    let mut replays = 0;
    for t in tasks {
        let (sale_id, order_id, replayed) = t.await.unwrap().expect("never refused");
        replays += usize::from(replayed);
        let seen = by_sale.entry(sale_id).or_insert_with(|| order_id.clone());
        assert_eq!(*seen, order_id, "a sale is one order");
    }
    assert_eq!((by_sale.len(), replays), (50, 50));
    let queue = app.queue("S001").await;
    assert_eq!(queue.len(), 50);
    let short = queue
        .iter()
        .filter(|o| attention(o) == ["short_stock"])
        .count();
    assert_eq!(short, 30, "20 were covered, 30 came short");
    let (on_hand, reserved) = left_milli(&app, "S001", "BUN").await;
    assert_eq!(on_hand - reserved, 20_000 - 50_000);
    app.stop().await;
}

async fn a_sale_at_an_old_price_totals_what_the_counter_charged(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可乐", Unit::Piece, "3.50", "100")
        .await;
    app.product("DUCK", "鸭脖", Unit::Kg, "39.90", "10.000")
        .await;
    let c = counter(&app, "S001", "S001-T01").await;
    // The catalog the counter had: cola at 3.20 (the price went up since).
    let r = c
        .submit_order(&sale(
            "old-price",
            Some(SOLD_AT),
            &[
                ("COLA", "2", Some("3.20")),
                ("DUCK", "0.355", Some("39.90")),
            ],
        ))
        .await
        .unwrap();
    // 2 × 3.20 + 0.355 × 39.90 (14.1645 → 14.16): what the receipt said.
    assert_eq!(r.order.total.to_string(), "20.56");
    assert_eq!(r.order.lines[0].unit_price.to_string(), "3.20");
    assert_eq!(r.order.lines[0].line_total.to_string(), "6.40");
    assert_eq!(r.order.lines[1].unit_price.to_string(), "39.90");
    let note = r.order.note.clone().unwrap_or_default();
    assert!(
        note.starts_with("⚠ price_differs: COLA 3.20 (now 3.50)"),
        "{note}"
    );
    let o = order_json(&app, &r.order.id).await;
    assert_eq!(attention(&o), ["price_differs"]);
    assert_eq!(o["total"], "20.56");
    // A line without a unit price is priced from the catalog, unflagged.
    let plain = c
        .submit_order(&sale("no-price", Some(SOLD_AT), &[("COLA", "1", None)]))
        .await
        .unwrap();
    assert_eq!(plain.order.total.to_string(), "3.50");
    assert!(attention(&order_json(&app, &plain.order.id).await).is_empty());
    // Both flags at once; the order is still taken.
    app.stock("S001", "DUCK", "0.100").await;
    let both = c
        .submit_order(&sale(
            "both",
            Some(SOLD_AT),
            &[("DUCK", "0.500", Some("35.00"))],
        ))
        .await
        .unwrap();
    assert_eq!(both.order.total.to_string(), "17.50");
    assert_eq!(
        attention(&order_json(&app, &both.order.id).await),
        ["short_stock", "price_differs"]
    );
    app.stop().await;
}

async fn unknown_and_foreign_skus_are_still_refused(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可乐", Unit::Piece, "3.50", "100")
        .await;
    // Kept in store S002 only.
    gateway::catalog::put_product(
        &app.db,
        gateway::catalog::ProductSpec {
            sku: Sku::parse("S2ONLY").unwrap(),
            name: "二店专供".into(),
            unit: Unit::Piece,
            price: Money::parse("5.00").unwrap(),
            barcodes: None,
        },
    )
    .await
    .unwrap();
    app.stock("S002", "S2ONLY", "10").await;
    let c = counter(&app, "S001", "S001-T01").await;
    let refused = async |id: &str, lines: &[(&str, &str, Option<&str>)]| {
        fault_code(
            c.submit_order(&sale(id, Some(SOLD_AT), lines))
                .await
                .unwrap_err(),
        )
    };
    assert_eq!(refused("u-1", &[("NOPE", "1", None)]).await, "unknown_sku");
    assert_eq!(
        refused("u-2", &[("COLA", "1", None), ("S2ONLY", "1", None)]).await,
        "item_unavailable"
    );
    assert_eq!(
        refused("u-3", &[("COLA", "1.5", None)]).await,
        "invalid_quantity"
    );
    // A unit price says the sale happened: without soldAt the proto refuses it.
    let mut no_time = sale("u-4", None, &[("COLA", "1", Some("3.50"))]);
    no_time.catalog_version = None;
    assert_eq!(
        fault_code(c.submit_order(&no_time).await.unwrap_err()),
        "invalid_request"
    );
    assert!(
        app.queue("S001").await.is_empty(),
        "refusals change nothing"
    );
    assert_eq!(left_milli(&app, "S001", "COLA").await, (100_000, 0));

    // Taken off sale since the counter sold it: recorded, flagged.
    let r = app
        .http
        .put(app.url("/api/v1/stores/S001/items/COLA"))
        .bearer_auth(&app.admin)
        .json(&json!({"available": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = c
        .submit_order(&sale("new-1", None, &[("COLA", "1", None)]))
        .await
        .unwrap_err();
    assert_eq!(fault_code(e), "item_unavailable");
    let ok = c
        .submit_order(&sale("u-5", Some(SOLD_AT), &[("COLA", "1", None)]))
        .await
        .unwrap();
    assert_eq!(
        attention(&order_json(&app, &ok.order.id).await),
        ["unavailable_items"]
    );
    app.stop().await;
}

async fn rest_takes_the_same_sale(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("LAST", "最后两个", Unit::Piece, "2.00", "2")
        .await;
    let t = app.terminal("S001").to_owned();
    let body = json!({
        "store_id": "S001",
        "channel_order_id": "rest-off-1",
        "sold_at": SOLD_AT,
        "catalog_version": "S001:3",
        "lines": [{"sku": "LAST", "quantity": 3, "unit_price": "1.80"}],
    });
    let (s, o) = app.post_json("/api/v1/orders", &t, &body).await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(o["total"], "5.40");
    assert_eq!(attention(&o), ["short_stock", "price_differs"]);
    assert!(o["sold_at"].is_string(), "{o}");
    let (s, again) = app.post_json("/api/v1/orders", &t, &body).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["id"], o["id"]);
    assert_eq!(attention(&again), ["short_stock", "price_differs"]);
    let (on_hand, reserved) = left_milli(&app, "S001", "LAST").await;
    assert_eq!(on_hand - reserved, 2_000 - 3_000);

    // Only a terminal's sale has happened; a price needs its time; times are checked.
    let mut app_sale = body.clone();
    app_sale["channel_order_id"] = json!("app-1");
    let (s, p) = app.post_json("/api/v1/orders", &app.app, &app_sale).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (422, Some("invalid_request")),
        "{p}"
    );
    let no_time = json!({
        "store_id": "S001",
        "lines": [{"sku": "LAST", "quantity": 1, "unit_price": "1.80"}],
    });
    let (s, p) = app.post_json("/api/v1/orders", &t, &no_time).await;
    assert_eq!((s, p["code"].as_str()), (422, Some("invalid_lines")), "{p}");
    let mut bad_time = body.clone();
    bad_time["sold_at"] = json!("yesterday");
    let (s, p) = app.post_json("/api/v1/orders", &t, &bad_time).await;
    assert_eq!((s, p["code"].as_str()), (422, Some("invalid_time")), "{p}");
    // A new order without sold_at is refused when short, as before.
    let (s, p) = app
        .post_json(
            "/api/v1/orders",
            &t,
            &json!({"store_id": "S001", "lines": [{"sku": "LAST", "quantity": 1}]}),
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("out_of_stock")), "{p}");
    assert_eq!(app.queue("S001").await.len(), 1);
    app.stop().await;
}
