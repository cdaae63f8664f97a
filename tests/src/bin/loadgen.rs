//! Load generator: orders created per second and their latency through the
//! real HTTP stack, next to a no-op route on the same server in the same
//! run, on SQLite and on PostgreSQL.
//!
//! cargo run --release -p tests --bin loadgen -- --seconds 10 --concurrency 32
//!
//! `--db postgres` (PostgreSQL at `TEST_POSTGRES_URL`, else 127.0.0.1:5432) or
//! `--db sqlite`; `--stores 8` spreads the orders over stores S001…S008
//! (worker `w` orders in store `w mod N`), one store by default.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use proto::order::Unit;
use serde_json::json;
use tests::TestApp;
use tests::bench::{self, percentile_ms};

#[derive(Parser)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    db: String,
    /// Seconds of load per measured route.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stores the orders are spread over (S001, S002, …).
    #[arg(long, default_value_t = 1)]
    stores: usize,
}

const SKUS: usize = 64;

struct Figures {
    count: u64,
    errors: u64,
    per_sec: f64,
    /// Milliseconds.
    p50: f64,
    p99: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("warn"), gateway::telemetry::LogFormat::Text);
    bench::runtime()?.block_on(async {
        println!(
            "loadgen: {} s per route, {} in flight, gateway and client in one process on {} cores",
            args.seconds,
            args.concurrency,
            bench::cores()
        );
        println!(
            "{:<10} {:<22} {:>9} {:>7} {:>10} {:>9} {:>9}",
            "database", "route", "requests", "errors", "per sec", "p50 ms", "p99 ms"
        );
        for b in bench::backends(&args.db) {
            let Some(app) = TestApp::spawn(b).await else {
                println!("{b:?}: skipped (database unavailable)");
                continue;
            };
            let stores: Vec<String> = (1..=args.stores.max(1)).map(|s| format!("S{s:03}")).collect();
            for s in stores.iter().skip(2) {
                let id = proto::order::StoreId::parse(s)?;
                gateway::catalog::put_store(&app.db, &id, format!("门店 {s}")).await?;
            }
            for i in 0..SKUS {
                let sku = format!("SKU{i:03}");
                app.product(&sku, &format!("商品{i}"), Unit::Piece, "2.50", "100000").await;
                for s in stores.iter().skip(2) {
                    app.stock(s, &sku, "100000").await;
                }
            }
            let app = Arc::new(app);
            let name = bench::name(b);
            // Warm both paths up, then measure.
            let stores = Arc::new(stores);
            run(&app, &stores, Route::Noop, Duration::from_secs(1), args.concurrency).await;
            run(&app, &stores, Route::Order, Duration::from_secs(1), args.concurrency).await;
            let before = count_orders(&app).await;
            let noop = run(&app, &stores, Route::Noop, Duration::from_secs(args.seconds), args.concurrency).await;
            print_row(&name, "GET /livez (no-op)", &noop);
            let orders = run(&app, &stores, Route::Order, Duration::from_secs(args.seconds), args.concurrency).await;
            print_row(&name, "POST /api/v1/orders", &orders);
            let stored = count_orders(&app).await - before;
            println!(
                "{name:<10} ratio orders/no-op = {:.3}   ({} stores; 2xx answered: {}, orders in the database: {stored})",
                orders.per_sec / noop.per_sec,
                stores.len(),
                orders.count
            );
            if stored != orders.count {
                println!("WARNING: {} answered orders are not in the database", orders.count as i64 - stored as i64);
            }
        }
        Ok(())
    })
}

fn print_row(db: &str, route: &str, f: &Figures) {
    println!(
        "{db:<10} {route:<22} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2}",
        f.count, f.errors, f.per_sec, f.p50, f.p99
    );
}

async fn count_orders(app: &TestApp) -> u64 {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or((0,));
    row.0 as u64
}

#[derive(Clone, Copy)]
enum Route {
    Noop,
    Order,
}

async fn run(
    app: &Arc<TestApp>,
    stores: &Arc<Vec<String>>,
    route: Route,
    how_long: Duration,
    concurrency: usize,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (app, stop, errors) = (app.clone(), stop.clone(), errors.clone());
            let store = stores[w % stores.len()].clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = match route {
                        Route::Noop => app
                            .http
                            .get(app.url("/livez"))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success()),
                        Route::Order => {
                            n += 1;
                            let sku = format!("SKU{:03}", (w * 7 + n) % SKUS);
                            app.http
                                .post(app.url("/api/v1/orders"))
                                .bearer_auth(&app.app)
                                .header("Idempotency-Key", format!("load-{w}-{n}-{}", uuid::Uuid::new_v4()))
                                .json(&json!({"store_id": store, "lines": [{"sku": sku, "quantity": "1"}]}))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().as_u16() == 201)
                        }
                    };
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(how_long).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    all.sort();
    Figures {
        count: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile_ms(&all, 0.50),
        p99: percentile_ms(&all, 0.99),
    }
}
