//! Payment-code charges per second through the whole path — HTTP into the
//! gateway, the charge row, the signed micropay call to the provider
//! simulator (answering SUCCESS at once), the order marked paid, the answer —
//! and the latency the gateway adds to each charge: the caller's latency
//! minus the time the simulator spent on that charge's own calls (measured
//! inside the simulator, per out_trade_no).
//!
//! cargo run --release -p tests --bin paybench -- --charges 3000 --concurrency 16

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use clap::Parser;
use serde_json::{Value, json};
use tests::Backend;
use tests::bench::{self, percentile_ms as pct};
use tests::pay::{PayGateway, PayOptions, PaySim};

#[derive(Parser)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    db: String,
    /// Charges to make (one order each, created before the clock starts).
    #[arg(long, default_value_t = 3000)]
    charges: usize,
    /// Charges in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

const CODE: &str = "134567890123456789";

/// Time the simulator spent per out_trade_no.
type SimTimes = Arc<Mutex<HashMap<String, Duration>>>;

async fn time_simulator(State(times): State<SimTimes>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let started = Instant::now();
    let bytes = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let key = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| {
            let from = s.find("<out_trade_no>")? + "<out_trade_no>".len();
            let len = s[from..].find('<')?;
            Some(
                s[from..from + len]
                    .trim_start_matches("<![CDATA[")
                    .to_owned(),
            )
        })
        .unwrap_or_default();
    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let spent = started.elapsed();
    *times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += spent;
    res
}

struct Bench {
    gw: PayGateway,
    orders: Vec<String>,
    times: SimTimes,
}

/// The gateway of `tests::pay` with the bench's own intervals, its
/// simulator timed per out_trade_no, and `charges` orders of two lattes.
async fn setup(backend: Backend, charges: usize) -> Option<Bench> {
    let times: SimTimes = Arc::default();
    let layer = middleware::from_fn_with_state(times.clone(), time_simulator);
    let sim = PaySim::start_routed(|sim| sim.router().layer(layer)).await;
    let options = PayOptions {
        poll_interval: Duration::from_millis(500),
        deadline: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        stock: (charges * 2 + 100).to_string(),
        ..PayOptions::default()
    };
    let gw = PayGateway::spawn_with(backend, sim, options).await?;
    let mut orders = Vec::with_capacity(charges);
    for _ in 0..charges {
        orders.push(gw.order().await);
    }
    Some(Bench { gw, orders, times })
}

struct Sample {
    total: Duration,
    charge: String,
}

async fn run(bench: Arc<Bench>, orders: Vec<String>, concurrency: usize) -> (Vec<Sample>, u64) {
    let queue = Arc::new(Mutex::new(orders));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (bench, queue) = (bench.clone(), queue.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut errors = 0u64;
                loop {
                    let Some(order) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        break;
                    };
                    let t = Instant::now();
                    let answer = bench
                        .gw
                        .http
                        .post(bench.gw.url(&format!("/api/v1/orders/{order}/payments")))
                        .bearer_auth(&bench.gw.terminal)
                        .json(&json!({"auth_code": CODE}))
                        .send()
                        .await;
                    let total = t.elapsed();
                    let body: Option<Value> = match answer {
                        Ok(r) if r.status().is_success() => r.json().await.ok(),
                        _ => None,
                    };
                    match body {
                        Some(v) if v["state"] == "succeeded" => samples.push(Sample {
                            total,
                            charge: v["id"].as_str().unwrap_or_default().to_owned(),
                        }),
                        _ => errors += 1,
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((s, e)) = w.await {
            all.extend(s);
            errors += e;
        }
    }
    (all, errors)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("warn"), gateway::telemetry::LogFormat::Text);
    bench::runtime()?.block_on(async {
        println!(
            "paybench: {} charges, {} in flight, gateway, simulator and client in one process on {} cores",
            args.charges,
            args.concurrency,
            bench::cores()
        );
        println!(
            "{:<10} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            "database", "charges", "errors", "per sec", "p50 ms", "p99 ms", "sim p50", "sim p99",
            "added p50", "added p99"
        );
        for b in bench::backends(&args.db) {
            let Some(bench) = setup(b, args.charges + 200).await else {
                println!("{b:?}: skipped (database unavailable)");
                continue;
            };
            let bench = Arc::new(bench);
            let mut orders = bench.orders.clone();
            // Warm-up on 200 orders of their own, then the measured run.
            let warm = orders.split_off(args.charges);
            run(bench.clone(), warm, args.concurrency).await;
            bench.times.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let started = Instant::now();
            let (samples, errors) = run(bench.clone(), orders, args.concurrency).await;
            let elapsed = started.elapsed();

            let times = bench.times.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut total: Vec<Duration> = samples.iter().map(|s| s.total).collect();
            let mut sim: Vec<Duration> = samples
                .iter()
                .map(|s| times.get(&s.charge).copied().unwrap_or_default())
                .collect();
            let mut added: Vec<Duration> = samples
                .iter()
                .map(|s| s.total.saturating_sub(times.get(&s.charge).copied().unwrap_or_default()))
                .collect();
            let unseen = samples.iter().filter(|s| !times.contains_key(&s.charge)).count();
            total.sort();
            sim.sort();
            added.sort();
            println!(
                "{:<10} {:>8} {:>7} {:>10.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
                bench::name(b),
                samples.len(),
                errors,
                samples.len() as f64 / elapsed.as_secs_f64(),
                pct(&total, 0.50),
                pct(&total, 0.99),
                pct(&sim, 0.50),
                pct(&sim, 0.99),
                pct(&added, 0.50),
                pct(&added, 0.99),
            );
            if unseen > 0 {
                println!("WARNING: {unseen} charges not seen by the simulator's clock");
            }
            drop(bench);
        }
        Ok(())
    })
}
