//! The store feed across instances: two real `gateway` processes on one
//! PostgreSQL database; orders are written on A one after the other, and an
//! SSE client on B times each from A's acknowledgement to B's event.
//! First with LISTEN/NOTIFY (the default), then, in the same run, with B's
//! listener off (`database.notify=false`: B sees A's writes at its next
//! feed poll, every second) as the baseline.
//!
//! cargo run --release -p tests --bin feedbench -- --orders 200

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway::db::Db;
use gateway::keys::Role;
use serde_json::{Value, json};
use tests::bench::percentile_ms as pct;
use tests::procs::{GatewayProc, sse};

#[derive(Parser)]
struct Args {
    /// Orders timed per mode.
    #[arg(long, default_value_t = 200)]
    orders: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = tests::agent::build_bins(&["gateway"]).join("gateway");
    tests::bench::runtime()?.block_on(async move {
        let pg = match tests::ThrowawayPg::create().await {
            Ok(pg) => pg,
            Err(why) => {
                tests::postgres_unavailable(&why);
                return Ok(());
            }
        };
        let db = Db::connect(&pg.url).await?;
        db.migrate_up().await?;
        tests::seed_cola(&db, "S001", "门店 S001", "100000").await;
        let app = tests::new_key(&db, Role::App, None).await;
        let admin = tests::new_key(&db, Role::Admin, None).await;
        println!(
            "feed across instances: {} orders on A, each timed from A's answer to B's SSE event ({} cores)",
            args.orders,
            tests::bench::cores()
        );
        println!("| mode | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        let a = GatewayProc::start(&bin, &pg.url, &[], &[]);
        let mut p99 = Vec::new();
        for (mode, set) in [
            ("LISTEN/NOTIFY", "database.notify=true"),
            ("poll only (baseline)", "database.notify=false"),
        ] {
            let b = GatewayProc::start(&bin, &pg.url, &[], &[set]);
            let lat = measure(&a.base, &b.base, &app, &admin, args.orders).await;
            println!(
                "| {mode} | {:.1} | {:.1} | {:.1} |",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
            );
            p99.push(pct(&lat, 0.99));
            drop(b);
        }
        if let [notify, poll] = p99[..] {
            println!(
                "p99 with NOTIFY is {:.1}× lower than polling",
                poll / notify.max(0.001)
            );
        }
        drop(a);
        Ok(())
    })
}

/// Latencies, sorted, of `n` orders written on `a` and seen on `b`'s stream.
async fn measure(a: &str, b: &str, key: &str, reader: &str, n: usize) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut events = sse(
        &http,
        &format!("{b}/api/v1/stores/S001/orders/stream"),
        reader,
    )
    .await;
    let mut lat = Vec::with_capacity(n);
    let mut early: HashMap<String, Instant> = HashMap::new();
    for i in 0..n {
        let r = http
            .post(format!("{a}/api/v1/orders"))
            .bearer_auth(key)
            .json(&json!({
                "store_id": "S001",
                "note": format!("feedbench {i}"),
                "lines": [{"sku": "COLA", "quantity": "1"}],
            }))
            .send()
            .await
            .expect("order");
        assert!(r.status().is_success(), "order: {}", r.status());
        let acked = Instant::now();
        let v: Value = r.json().await.expect("order JSON");
        let id = v["id"].as_str().expect("id").to_owned();
        let seen = match early.remove(&id) {
            Some(t) => t,
            None => loop {
                let ev = events.recv().await.expect("the stream ended");
                let now = Instant::now();
                if ev.event.as_deref() != Some("order.created") {
                    continue;
                }
                let got: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                let got_id = got["id"]
                    .as_str()
                    .or(got["order"]["id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if got_id == id {
                    break now;
                }
                early.insert(got_id, now);
            },
        };
        lat.push(seen.saturating_duration_since(acked));
    }
    lat.sort();
    lat
}
