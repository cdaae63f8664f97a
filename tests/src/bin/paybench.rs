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
use gateway::db::Db;
use gateway::http::{self, AppState};
use gateway::keys::Role;
use gateway::payments::{Payments, PaymentsConfig};
use hw_sim::payments::{Credentials, Provider};
use proto::order::{Money, Sku, StoreId, Unit};
use proto::wechatpay::SignType;
use secrecy::SecretString;
use serde_json::{Value, json};
use tests::{Backend, TestDb};
use tokio::sync::watch;

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

const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
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
    base: String,
    http: reqwest::Client,
    terminal: String,
    orders: Vec<String>,
    times: SimTimes,
    closing: watch::Sender<bool>,
    _db: TestDb,
}

async fn setup(backend: Backend, charges: usize) -> Option<Bench> {
    let store = TestDb::new(backend).await?;
    let (closing, closing_rx) = watch::channel(false);
    let times: SimTimes = Arc::default();
    let sim = Provider::new(Credentials {
        appid: APPID.to_owned(),
        mch_id: MCH_ID.to_owned(),
        key: KEY.to_owned(),
    });
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let sim_base = format!("http://{}", sim_listener.local_addr().ok()?);
    let router = sim.router().layer(middleware::from_fn_with_state(
        times.clone(),
        time_simulator,
    ));
    tokio::spawn(async move { axum::serve(sim_listener, router).await });

    let db = Db::connect(store.url()).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    let config = PaymentsConfig {
        wechatpay_base_url: sim_base,
        wechatpay_appid: APPID.to_owned(),
        wechatpay_mch_id: MCH_ID.to_owned(),
        wechatpay_key: SecretString::from(KEY.to_owned()),
        sign_type: SignType::HmacSha256,
        poll_interval: Duration::from_millis(500),
        deadline: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        sweep_interval: Duration::from_secs(3600),
        alipay: None,
    };
    let mut state = AppState::new(db.clone(), closing_rx.clone());
    state.payments = Some(
        Payments::start(&config, db.clone(), state.hub.clone(), closing_rx.clone())
            .expect("payments"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let base = format!("http://{}", listener.local_addr().ok()?);
    let mut rx = closing_rx;
    tokio::spawn(http::serve(listener, state, async move {
        let _ = rx.wait_for(|c| *c).await;
    }));

    gateway::catalog::put_store(&db, &StoreId::parse("S001").expect("id"), "S001".into())
        .await
        .expect("store");
    gateway::catalog::put_product(
        &db,
        gateway::catalog::ProductSpec {
            sku: Sku::parse("LATTE").expect("sku"),
            name: "拿铁".to_owned(),
            unit: Unit::Piece,
            price: Money::parse("10.58").expect("price"),
        },
    )
    .await
    .expect("product");
    let http = reqwest::Client::new();
    let admin = tests::new_key(&db, Role::Admin, None).await;
    let terminal = tests::new_key(&db, Role::Terminal, Some("S001")).await;
    let app = tests::new_key(&db, Role::App, None).await;
    let r = http
        .put(format!("{base}/api/v1/stores/S001/stock/LATTE"))
        .bearer_auth(&admin)
        .json(&json!({"on_hand": (charges * 2 + 100).to_string()}))
        .send()
        .await
        .expect("stock");
    assert!(r.status().is_success());
    let mut orders = Vec::with_capacity(charges);
    for _ in 0..charges {
        let v: Value = http
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(&app)
            .json(&json!({"store_id": "S001", "lines": [{"sku": "LATTE", "quantity": 2}]}))
            .send()
            .await
            .expect("order")
            .json()
            .await
            .expect("json");
        orders.push(v["id"].as_str().expect("id").to_owned());
    }
    Some(Bench {
        base,
        http,
        terminal,
        orders,
        times,
        closing,
        _db: store,
    })
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
                        .http
                        .post(format!("{}/api/v1/orders/{order}/payments", bench.base))
                        .bearer_auth(&bench.terminal)
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

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("warn"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let backends: Vec<Backend> = match args.db.as_str() {
            "sqlite" => vec![Backend::Sqlite],
            "postgres" => vec![Backend::Postgres],
            _ => vec![Backend::Sqlite, Backend::Postgres],
        };
        println!(
            "paybench: {} charges, {} in flight, gateway, simulator and client in one process on {} cores",
            args.charges,
            args.concurrency,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );
        println!(
            "{:<10} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            "database", "charges", "errors", "per sec", "p50 ms", "p99 ms", "sim p50", "sim p99",
            "added p50", "added p99"
        );
        for b in backends {
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
                format!("{b:?}").to_lowercase(),
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
            let _ = bench.closing.send(true);
        }
        Ok(())
    })
}
