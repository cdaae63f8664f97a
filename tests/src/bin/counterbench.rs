//! The counter agent's two figures, with the real `terminal run` binary of
//! this build profile, `hw-sim devices` and a real gateway (SQLite):
//!
//! 1. **Sale to receipt**: from `POST /api/checkout` (cash) to the receipt
//!    complete and cut on the simulated 115200-baud printer, read back from
//!    its control API (polled every 2 ms). Baseline in the same run: the
//!    time the receipt's own bytes take on a 115200-baud line (10 bits a
//!    byte). The pseudo-terminal does not pace bytes at the baud rate, so
//!    the measured time is the agent's own part (checkout, ledger, status
//!    read, the job, the printer's confirmation); a real line adds the wire.
//! 2. **Offline upload rate**: sales made with the gateway away, then the
//!    time until every one is on the gateway (`SubmitOrder` + `TenderCash`
//!    each). Baseline: the same two calls (also with `soldAt` and unit
//!    prices) made directly with the terminal's SOAP client, one sale after
//!    the other, on the same gateway.
//!
//! cargo run --release -p tests --bin counterbench -- --sales 20 --offline 200

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway::keys::Role;
use proto::order::{Money, Sku, TerminalId, Unit};
use proto::soap::{SubmitLine, SubmitOrder};
use serde_json::{Value, json};
use terminal_sdk::client::{ClientConfig, GatewayClient};
use tests::agent::{Agent, DeviceSim, Link};
use tests::bench::percentile_ms as pct;
use tests::{Backend, TestApp};

#[derive(Parser)]
struct Args {
    /// Cash sales timed from checkout to printed receipt.
    #[arg(long, default_value_t = 20)]
    sales: usize,
    /// Sales made offline, then uploaded.
    #[arg(long, default_value_t = 200)]
    offline: usize,
}

const TERMINAL: &str = "S001-T09";

fn config(dir: &Path, url: &str, printer: Option<&str>) -> std::path::PathBuf {
    let path = dir.join("terminal.toml");
    let devices = printer
        .map(|p| format!("\n[devices]\nprinter = \"{p}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            r#"gateway_url = "{url}"
terminal_id = "{TERMINAL}"
store_id = "S001"
state_dir = "{}"
listen = "127.0.0.1:0"
heartbeat_s = 5
catalog_refresh_s = 2
upload_retry_ms = 50
request_timeout_ms = 5000
{devices}"#,
            dir.join("state").display()
        ),
    )
    .expect("config");
    path
}

async fn fill(agent: &Agent) {
    agent.add(json!({"sku": "COLA", "quantity": "2"})).await;
    agent
        .add(json!({"sku": "DUCK-NECK", "quantity": "0.355"}))
        .await;
}

async fn sell(agent: &Agent) -> Value {
    fill(agent).await;
    pay(agent).await
}

async fn pay(agent: &Agent) -> Value {
    let (st, sale) = agent
        .post("/api/checkout", json!({"tender": "cash", "tendered": "50"}))
        .await;
    assert_eq!(st, 201, "{sale}");
    sale
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tests::bench::runtime()?.block_on(run(args));
    Ok(())
}

async fn run(args: Args) {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    app.product("COLA", "可乐", Unit::Piece, "3.50", "99999")
        .await;
    app.product("DUCK-NECK", "卤鸭脖", Unit::Kg, "39.90", "9999")
        .await;
    let key = tests::key_for(&app.db, Role::Terminal, Some("S001"), Some(TERMINAL)).await;
    let gw_url = format!("http://{}", app.addr);

    // 1. Sale to receipt.
    let sim = DeviceSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = Agent::start(
        &config(dir.path(), &gw_url, Some(&sim.link("printer"))),
        &key,
    )
    .await;
    agent
        .wait_for(30, "catalog and printer", |s| {
            s["catalog"]["items"] == 2 && s["devices"]["printer"]["status"] == "ok"
        })
        .await;
    let mut times = Vec::with_capacity(args.sales);
    for i in 0..args.sales {
        fill(&agent).await;
        let started = Instant::now();
        pay(&agent).await;
        // Polled every 2 ms (the harness's own wait polls every 50 ms).
        while sim.receipts().await.len() <= i {
            assert!(started.elapsed() < Duration::from_secs(30), "no receipt");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(started.elapsed());
    }
    // The receipt's size on the wire, from what was printed: GB18030 text
    // (two bytes a CJK character), the QR payload, and about 60 bytes of
    // ESC/POS commands (alignment, sizes, the QR setup, feed, cut).
    let r = sim.receipts().await;
    let last = r.last().cloned().unwrap_or_default();
    let text = last["text"].as_str().unwrap_or("");
    let qr = last["qr"][0].as_str().unwrap_or("");
    let bytes: usize = text
        .chars()
        .map(|c| if c.is_ascii() { 1 } else { 2 })
        .sum::<usize>()
        + qr.len()
        + 60;
    times.sort();
    let wire = Duration::from_secs_f64(bytes as f64 * 10.0 / 115_200.0);
    let p50 = pct(&times, 0.5);
    println!(
        "sale to receipt ({} cash sales, 115200 baud): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        args.sales,
        p50,
        pct(&times, 0.95),
        pct(&times, 1.0)
    );
    let wire_ms = wire.as_secs_f64() * 1000.0;
    println!(
        "  baseline: the receipt's ≈{bytes} bytes take {wire_ms:.1} ms on a real 115200-baud line; the \
         pseudo-terminal does not pace bytes, so the agent's own part is p50 / wire = {:.2} and a real \
         printer's sale-to-receipt is about p50 + wire = {:.1} ms",
        p50 / wire_ms,
        p50 + wire_ms
    );
    agent.kill().await;
    drop(sim);

    // 2. Offline upload rate.
    let link = Link::start(app.addr.to_string()).await.expect("link");
    let (url, up) = (link.url.clone(), &link.up);
    let dir = tempfile::tempdir().expect("dir");
    let agent = Agent::start(&config(dir.path(), &url, None), &key).await;
    agent
        .wait_for(30, "catalog", |s| s["catalog"]["items"] == 2)
        .await;
    up.send_replace(false);
    for _ in 0..args.offline {
        sell(&agent).await;
    }
    let started = Instant::now();
    up.send_replace(true);
    agent
        .wait_for(600, "every offline sale uploaded", |s| {
            s["queue"]["pending"] == 0
        })
        .await;
    let took = started.elapsed();
    let rate = args.offline as f64 / took.as_secs_f64();
    agent.kill().await;

    // Baseline: the same two calls, sequentially, straight from the client.
    let mut ccfg = ClientConfig::new(
        gw_url.clone(),
        TerminalId::parse(TERMINAL).expect("id"),
        key.clone(),
    );
    ccfg.timeout = Duration::from_secs(5);
    let client = GatewayClient::new(ccfg).expect("client");
    let started = Instant::now();
    for i in 0..args.offline {
        let r = client
            .submit_order(&SubmitOrder {
                client_order_id: format!("bench-{i}"),
                lines: vec![
                    SubmitLine {
                        sku: Sku::parse("COLA").expect("sku"),
                        quantity: "2".into(),
                        unit_price: Money::parse("3.50").ok(),
                    },
                    SubmitLine {
                        sku: Sku::parse("DUCK-NECK").expect("sku"),
                        quantity: "0.355".into(),
                        unit_price: Money::parse("39.90").ok(),
                    },
                ],
                note: None,
                // Shaped as the uploader's: a sale that already happened.
                sold_at: proto::time::Timestamp::parse("2026-12-03T08:00:00Z").ok(),
                catalog_version: None,
            })
            .await
            .expect("submit");
        client
            .tender_cash(&r.order.id, Money::parse("50").expect("money"))
            .await
            .expect("tender");
    }
    let direct = args.offline as f64 / started.elapsed().as_secs_f64();
    println!(
        "offline queue upload: {} sales in {:.2} s = {rate:.0} sales/s (gateway away while they were made; SQLite)",
        args.offline,
        took.as_secs_f64()
    );
    println!(
        "  baseline: the same SubmitOrder + TenderCash sequentially from the SDK client: {direct:.0} sales/s; uploader / direct = {:.2}",
        rate / direct
    );
}
