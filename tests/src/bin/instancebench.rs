//! Orders through one and through three real `gateway` processes on one
//! PostgreSQL database, in the same run: `--clients` concurrent clients
//! send REST orders (one line, `--stores` stores taken in turn so the
//! stores' feed locks are not the only queue) for `--seconds` after a
//! second of warm-up, each client to the instances in turn. Each setup gets
//! a fresh database. Prints orders/s and p50/p99 of each, and the ratios.
//!
//! cargo build --release -p tests --bin instancebench -p gateway
//! ./target/release/instancebench --seconds 10 --clients 24

use std::time::{Duration, Instant};

use clap::Parser;
use gateway::db::Db;
use gateway::keys::Role;
use serde_json::json;
use tests::bench::percentile_ms as pct;
use tests::procs::GatewayProc;

#[derive(Parser)]
struct Args {
    /// Seconds measured per setup (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 24)]
    clients: usize,
    /// Stores the orders go to, in turn.
    #[arg(long, default_value_t = 8)]
    stores: usize,
}

struct Run {
    orders: usize,
    failed: usize,
    per_s: f64,
    lat: Vec<Duration>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = tests::agent::build_bins(&["gateway"]).join("gateway");
    tests::bench::runtime()?.block_on(async move {
        println!(
            "orders through 1 and 3 gateway instances on one PostgreSQL: {} clients, {} stores, {} s each ({} cores)",
            args.clients,
            args.stores,
            args.seconds,
            tests::bench::cores()
        );
        println!("| instances | orders | failed | orders/s | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
        let mut runs = Vec::new();
        for n in [1usize, 3] {
            let pg = match tests::ThrowawayPg::create().await {
                Ok(pg) => pg,
                Err(why) => {
                    tests::postgres_unavailable(&why);
                    return Ok(());
                }
            };
            let db = Db::connect(&pg.url).await?;
            db.migrate_up().await?;
            let stores: Vec<String> = (1..=args.stores).map(|i| format!("S{i:03}")).collect();
            for s in &stores {
                tests::seed_cola(&db, s, &format!("门店 {s}"), "100000").await;
            }
            let app = tests::new_key(&db, Role::App, None).await;
            let gws: Vec<GatewayProc> = (0..n)
                .map(|i| {
                    let instance = format!("jobs.instance=bench{i}");
                    GatewayProc::start(&bin, &pg.url, &[], &[&instance])
                })
                .collect();
            let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
            run(&bases, &app, &stores, args.clients, Duration::from_secs(1)).await;
            let r = run(
                &bases,
                &app,
                &stores,
                args.clients,
                Duration::from_secs(args.seconds),
            )
            .await;
            println!(
                "| {n} | {} | {} | {:.0} | {:.1} | {:.1} |",
                r.orders,
                r.failed,
                r.per_s,
                pct(&r.lat, 0.5),
                pct(&r.lat, 0.99)
            );
            runs.push(r);
            drop(gws);
            db.pool.close().await;
        }
        if let [one, three] = &runs[..] {
            println!(
                "3 instances / 1: orders/s {:.2}×, p99 {:.2}×",
                three.per_s / one.per_s.max(0.001),
                pct(&three.lat, 0.99) / pct(&one.lat, 0.99).max(0.001)
            );
        }
        Ok(())
    })
}

/// `clients` clients sending orders for `time`, each to `bases` in turn.
async fn run(
    bases: &[String],
    key: &str,
    stores: &[String],
    clients: usize,
    time: Duration,
) -> Run {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let end = start + time;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, bases, key, stores) = (
            http.clone(),
            bases.to_vec(),
            key.to_owned(),
            stores.to_vec(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            let mut i = c;
            while Instant::now() < end {
                let base = &bases[i % bases.len()];
                let store = &stores[i % stores.len()];
                i += 1;
                let t = Instant::now();
                let ok = http
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(&key)
                    .json(&json!({"store_id": store,
                        "lines": [{"sku": "COLA", "quantity": "1"}]}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.expect("client");
        lat.extend(l);
        failed += f;
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort();
    Run {
        orders: lat.len(),
        failed,
        per_s: lat.len() as f64 / took,
        lat,
    }
}
