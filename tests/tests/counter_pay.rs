//! A cashier's sale at the counter, end to end: the real agent (`terminal
//! run`) with `hw-sim devices` (scanner, scale, display, printer), the
//! payment simulator and the real gateway (SQLite and PostgreSQL).
//!
//! A product scanned by its barcode, a weighed product from the scale, a
//! weighed-goods label, then the customer's WeChat payment code scanned: the
//! display shows each line, "waiting for the customer" while the charge
//! runs, and the thanks; the receipt read back from the printer has the
//! Chinese names, the total, the payment and a QR with the gateway's order
//! id; the gateway and the provider's ledger agree; a cash sale then opens
//! the drawer once and shows the change. Then the failures: a
//! declined code leaves the basket for cash (one order on the gateway, not
//! two), and with the gateway away a payment code is refused while cash
//! still sells.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::keys::Role;
use proto::order::{Money, Sku, Unit};
use serde_json::{Value, json};
use tests::Backend;
use tests::agent::{Agent, DeviceSim, Link};
use tests::pay::{PayGateway, PayOptions};

const TERMINAL: &str = "S001-T05";
/// COLA's barcode in the gateway's catalog.
const COLA_EAN: &str = "6920000000029";
/// WeChat payment codes: 18 digits starting 10-15.
const CODE: &str = "134567890123456789";
const DECLINED: &str = "120061098828009406";

/// `body` with its EAN check digit appended.
fn with_check(body: &str) -> String {
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|c| proto::device::scanner::check_digit_ok(c))
        .expect("a check digit")
}

async fn gateway(backend: Backend) -> Option<PayGateway> {
    let gw = PayGateway::spawn(backend, PayOptions::default()).await?;
    gw.add_product("COLA", Unit::Piece, "3.50", "100").await;
    gw.add_product("DUCK-NECK", Unit::Kg, "39.90", "10.000")
        .await;
    // A weighed product whose SKU is its label item code (PLU 00042).
    gw.add_product("42", Unit::Kg, "20.00", "10.000").await;
    for (sku, name, unit, price, barcodes) in [
        ("COLA", "可乐", Unit::Piece, "3.50", vec![COLA_EAN]),
        ("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", vec![]),
        ("42", "散装花生", Unit::Kg, "20.00", vec![]),
    ] {
        gateway::catalog::put_product(
            &gw.db,
            gateway::catalog::ProductSpec {
                sku: Sku::parse(sku).expect("sku"),
                name: name.into(),
                unit,
                price: Money::parse(price).expect("price"),
                barcodes: Some(
                    barcodes
                        .iter()
                        .map(|b| proto::order::Barcode::parse(b).expect("barcode"))
                        .collect(),
                ),
            },
        )
        .await
        .expect("product");
    }
    Some(gw)
}

fn write_config(dir: &Path, gateway_url: &str, sim: &DeviceSim) -> PathBuf {
    let path = dir.join("terminal.toml");
    std::fs::write(
        &path,
        format!(
            r#"gateway_url = "{gateway_url}"
terminal_id = "{TERMINAL}"
store_id = "S001"
state_dir = "{}"
listen = "127.0.0.1:0"
heartbeat_s = 1
catalog_refresh_s = 1
upload_retry_ms = 50
request_timeout_ms = 3000

[devices]
printer = "{}"
scale = "{}"
scanner = "{}"
display = "{}"
"#,
            dir.join("state").display(),
            sim.link("printer"),
            sim.link("scale"),
            sim.link("scanner"),
            sim.link("display"),
        ),
    )
    .expect("config");
    path
}

async fn start_agent(gw: &PayGateway, url: &str, sim: &DeviceSim, dir: &Path) -> Agent {
    let key = tests::key_for(&gw.db, Role::Terminal, Some("S001"), Some(TERMINAL)).await;
    let agent = Agent::start(&write_config(dir, url, sim), &key).await;
    agent
        .wait_for(20, "the catalog and the devices", |s| {
            s["catalog"]["items"].as_i64().unwrap_or(0) >= 4
                && s["devices"]["printer"]["status"] == "ok"
                && s["devices"]["scanner"]["status"] == "ok"
                && s["devices"]["display"]["status"] == "ok"
        })
        .await;
    agent
}

async fn wait_basket(agent: &Agent, lines: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let b = agent.get("/api/basket").await;
        if b["lines"].as_array().map_or(0, Vec::len) == lines {
            return b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {lines} basket lines: {b:#} (last scan {:#})",
            agent.status().await["last_scan"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn terminal_orders(gw: &PayGateway) -> Vec<Value> {
    let r = gw
        .http
        .get(gw.url("/api/v1/stores/S001/orders?channel=terminal&limit=100"))
        .bearer_auth(&gw.admin)
        .send()
        .await
        .expect("orders");
    let v: Value = r.json().await.expect("json");
    v["orders"].as_array().cloned().unwrap_or_default()
}

mod a_cashier_sale_by_scanner_scale_and_payment_code {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::cashier_sale(super::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::cashier_sale(super::Backend::Postgres).await
    }
}

async fn cashier_sale(backend: Backend) {
    let Some(gw) = gateway(backend).await else {
        return;
    };
    let sim = DeviceSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = start_agent(&gw, &gw.base, &sim, dir.path()).await;

    // Scanned by its catalog barcode: a line, and the display shows it.
    sim.scan(COLA_EAN).await;
    let b = wait_basket(&agent, 1).await;
    assert_eq!(b["lines"][0]["sku"], "COLA", "{b}");
    sim.wait_display("TOTAL           3.50", 10).await;

    // Weighed: the scale settles, the line takes the stable weight.
    sim.put("/scale", json!({"kg": "0.355", "settle_ms": 300}))
        .await;
    let (st, line) = agent
        .post(
            "/api/basket/lines",
            json!({"sku": "DUCK-NECK", "weigh": true}),
        )
        .await;
    assert_eq!(st, 201, "{line}");
    assert_eq!(line["line"]["quantity"], "0.355", "{line}");
    assert_eq!(line["line"]["line_total"], "14.16", "{line}");
    sim.wait_display("DUCK-NECK", 10).await;
    sim.put("/scale", json!({"kg": "0"})).await;
    // Nothing on the scale: no line.
    let (st, e) = agent
        .post(
            "/api/basket/lines",
            json!({"sku": "DUCK-NECK", "weigh": true}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("nothing_on_scale")),
        "{e}"
    );

    // A weighed-goods label: 250 g of item 00042 at 20.00/kg.
    sim.scan(&with_check("250004200250")).await;
    let b = wait_basket(&agent, 3).await;
    assert_eq!(b["lines"][2]["sku"], "42", "{b}");
    assert_eq!(b["lines"][2]["quantity"], "0.250", "{b}");
    assert_eq!(b["total"], "22.66", "{b}"); // 3.50 + 14.16 + 5.00

    // The customer's payment code, paid after a moment of "user paying".
    gw.sim
        .scenario(
            json!({"auth_code": CODE, "outcome": "userpaying_then_success", "after_ms": 1500}),
        )
        .await;
    sim.scan(CODE).await;
    sim.wait_display("WAITING FOR CUSTOMER", 10).await;
    let sale = agent
        .wait_for(30, "the paid sale", |s| {
            s["last_sales"][0]["tender"] == "wechatpay"
        })
        .await["last_sales"][0]
        .clone();
    assert_eq!(sale["state"], "uploaded", "{sale}");
    assert_eq!(sale["total"], "22.66");
    assert_eq!(agent.status().await["last_scan"]["outcome"], "paid");
    sim.wait_display("THANK YOU", 10).await;
    assert!(
        agent.get("/api/basket").await["lines"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // The receipt, read back from the simulated printer.
    let printed = sim.wait_receipts(1, 20).await;
    let text = printed[0]["text"].as_str().expect("text");
    for want in ["可乐", "卤鸭脖", "散装花生", "22.66", "微信支付", TERMINAL] {
        assert!(text.contains(want), "receipt lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("OFFLINE"), "{text}");
    let order_id = sale["order_id"].as_str().expect("order id");
    assert_eq!(printed[0]["qr"][0], order_id, "{:#}", printed[0]);
    let kicks = sim.get("/drawer").await["kicks"].as_i64();
    assert_eq!(kicks, Some(0), "a code payment opens no drawer");

    // The gateway and the provider agree: one order, paid once.
    let orders = terminal_orders(&gw).await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["id"], order_id);
    assert_eq!(orders[0]["total"], "22.66");
    assert_eq!(orders[0]["payment_status"], "paid", "{:#}", orders[0]);
    let ledger = gw.sim.ledger().await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0].state.as_str(), ledger[0].total_fen),
        ("SUCCESS", 2266)
    );

    // A cash sale opens the drawer, once, and the display shows the change.
    sim.scan(COLA_EAN).await;
    wait_basket(&agent, 1).await;
    let (st, cash) = agent
        .post("/api/checkout", json!({"tender": "cash", "tendered": "10"}))
        .await;
    assert_eq!(st, 201, "{cash}");
    sim.wait_display("CHANGE          6.50", 10).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.get("/drawer").await["kicks"].as_i64() != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the drawer did not open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let printed = sim.wait_receipts(2, 20).await;
    let text = printed[1]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("现金 10.00") && text.contains("找零 6.50"),
        "{text}"
    );
    agent
        .wait_for(20, "the cash sale on the gateway", |s| {
            s["queue"]["pending"] == 0
        })
        .await;
    assert_eq!(terminal_orders(&gw).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.get("/drawer").await["kicks"].as_i64(), Some(1), "once");
    agent.kill().await;
}

/// A declined code leaves the basket; cash then sells it under the same
/// order (the gateway has one order, paid in cash). With the gateway away a
/// payment code is refused with `payment_offline` and the display says cash
/// only; cash sells and uploads when the gateway is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_offline_payment_code_leaves_the_basket_for_cash() {
    let gw = gateway(Backend::Sqlite).await.expect("sqlite");
    let link = Link::start(gw.addr.to_string()).await.expect("link");
    let sim = DeviceSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = start_agent(&gw, &link.url, &sim, dir.path()).await;

    gw.sim
        .scenario(json!({"auth_code": DECLINED, "outcome": "insufficient_balance"}))
        .await;
    agent.add(json!({"sku": "COLA", "quantity": "2"})).await;
    let (st, e) = agent
        .post(
            "/api/checkout",
            json!({"tender": "code", "auth_code": DECLINED}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (402, Some("payment_failed")),
        "{e}"
    );
    sim.wait_display("PAYMENT FAILED", 10).await;
    assert_eq!(agent.get("/api/basket").await["total"], "7.00");
    let (st, sale) = agent
        .post("/api/checkout", json!({"tender": "cash", "tendered": "10"}))
        .await;
    assert_eq!(st, 201, "{sale}");
    assert_eq!(sale["change"], "3.00");
    sim.wait_display("CHANGE", 10).await;
    agent
        .wait_for(20, "the cash sale uploaded", |s| s["queue"]["pending"] == 0)
        .await;
    let orders = terminal_orders(&gw).await;
    assert_eq!(orders.len(), 1, "one order for the basket: {orders:#?}");
    assert_eq!(orders[0]["payment_status"], "paid", "{:#}", orders[0]);

    // The gateway away: no payment code, cash still sells.
    link.up.send_replace(false);
    agent.add(json!({"sku": "COLA"})).await;
    let (st, e) = agent
        .post(
            "/api/checkout",
            json!({"tender": "code", "auth_code": CODE}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (503, Some("payment_offline")),
        "{e}"
    );
    sim.wait_display("CASH ONLY", 10).await;
    let (st, sale) = agent
        .post("/api/checkout", json!({"tender": "cash", "tendered": "5"}))
        .await;
    assert_eq!(
        (st, sale["state"].as_str()),
        (201, Some("queued")),
        "{sale}"
    );
    link.up.send_replace(true);
    agent
        .wait_for(30, "the offline sale uploaded", |s| {
            s["queue"]["pending"] == 0
        })
        .await;
    let orders = terminal_orders(&gw).await;
    assert_eq!(orders.len(), 2, "{orders:#?}");
    assert!(gw.sim.ledger().await.iter().all(|e| e.state != "SUCCESS"));

    // The day closes with nothing pending: two cash sales, 10.50.
    let (st, day) = agent.post("/api/day/close", json!({})).await;
    assert_eq!(st, 201, "{day}");
    assert_eq!(
        (day["sales"].as_i64(), day["cash"].as_str()),
        (Some(2), Some("10.50"))
    );
    agent.kill().await;
}
