//! Channel benchmark, on SQLite and PostgreSQL:
//! 1. signed Meituan-style `new_order` pushes accepted per second through the
//!    real HTTP stack (form parsing, signature and timestamp checks, the
//!    order written with its inbox, details and feed event), with latency;
//! 2. the outbox's delivery throughput: rows delivered per second to the
//!    platform simulator answering at once (each call signed, sent, its
//!    signature checked by the simulator, and recorded delivered).
//!
//! cargo run --release -p tests --bin chanbench -- --seconds 10 --concurrency 32 --rows 5000

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use gateway::app::AppState;
use gateway::channels::{self, Channels, ChannelsConfig, MeituanConfig};
use gateway::db::Db;
use gateway::http;
use gateway::outbox::{self, NewCall, OutboxConfig};
use hw_sim::platform::{PlatformConfig, PlatformSim};
use proto::meituan::{self as mt, Call, FoodStock, Push, SkuStock};
use proto::order::{Money, Sku, StoreId, Unit};
use secrecy::SecretString;
use tests::TestDb;
use tests::bench::{self, percentile_ms};
use tokio::sync::watch;

const APP_ID: &str = "bench-app";
const SECRET: &str = "bench-secret-0123456789";
const SKUS: usize = 16;

#[derive(Parser)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    db: String,
    /// Seconds of pushing.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Outbox rows to deliver.
    #[arg(long, default_value_t = 5000)]
    rows: usize,
    /// Calls the dispatcher has in flight at once.
    #[arg(long, default_value_t = 32)]
    outbox_concurrency: usize,
    /// Stores the pushes are spread over (a store's orders queue on its row).
    #[arg(long, default_value_t = 1)]
    stores: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("error"), gateway::telemetry::LogFormat::Text);
    bench::runtime()?.block_on(async {
        println!(
            "chanbench: {} s of pushes, {} in flight; {} outbox rows, {} calls in flight; gateway, simulator and client in one process on {} cores",
            args.seconds,
            args.concurrency,
            args.rows,
            args.outbox_concurrency,
            bench::cores()
        );
        for b in bench::backends(&args.db) {
            let name = bench::name(b);
            let Some(store) = TestDb::new(b).await else {
                println!("{name}: skipped (database unavailable)");
                continue;
            };
            pushes(&name, &store, &args).await?;
            outbox_rows(&name, &store, &args).await?;
        }
        Ok(())
    })
}

fn config(sim_url: &str, outbox_concurrency: usize) -> ChannelsConfig {
    ChannelsConfig {
        meituan: Some(MeituanConfig {
            base_url: sim_url.to_owned(),
            app_id: APP_ID.to_owned(),
            secret: SecretString::from(SECRET.to_owned()),
            stores: Vec::new(),
        }),
        outbox: OutboxConfig {
            concurrency: outbox_concurrency,
            poll: Duration::from_millis(50),
            ..OutboxConfig::default()
        },
        ..ChannelsConfig::default()
    }
}

fn store_id(n: usize) -> String {
    format!("S{:03}", n + 1)
}

async fn seed(db: &Db, stores: usize) -> anyhow::Result<()> {
    for s in 0..stores {
        seed_store(db, &StoreId::parse(&store_id(s))?, s == 0).await?;
    }
    Ok(())
}

async fn seed_store(db: &Db, store: &StoreId, products: bool) -> anyhow::Result<()> {
    let store = store.clone();
    gateway::catalog::put_store(db, &store, "门店".into())
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    for i in 0..SKUS {
        let sku = Sku::parse(&format!("SKU{i:03}"))?;
        if products {
            gateway::catalog::put_product(
                db,
                gateway::catalog::ProductSpec {
                    sku: sku.clone(),
                    name: format!("商品{i}"),
                    unit: Unit::Piece,
                    price: Money::parse("2.50")?,
                    barcodes: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
        gateway::catalog::put_item(
            db,
            &store,
            &sku,
            gateway::catalog::ItemChange {
                on_hand: Some("90000".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    Ok(())
}

fn new_order(n: u64, url: &str, stores: usize) -> String {
    let sku = format!("SKU{:03}", n as usize % SKUS);
    let push = Push::NewOrder(mt::NewOrderPush {
        order_id: format!("{}", 9_000_000_000u64 + n),
        app_poi_code: store_id(n as usize % stores.max(1)),
        day_seq: (n % 10_000) as u32 + 1,
        ctime: now_s(),
        caution: "少辣".into(),
        recipient_name: "顾客".into(),
        recipient_phone: "13800000000".into(),
        recipient_address: "人民路 1 号".into(),
        shipping_fee_fen: 500,
        total_fen: 1000,
        original_price_fen: 1000,
        poi_receive_amount_fen: 500,
        items: vec![mt::PushItem {
            app_food_code: sku,
            food_name: "商品".into(),
            quantity: 2,
            price_fen: 250,
            unit: "份".into(),
        }],
        discounts: Vec::new(),
    });
    mt::encode_form(&push.signed_params(url, APP_ID, SECRET, now_s()))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn pushes(name: &str, store: &TestDb, args: &Args) -> anyhow::Result<()> {
    let db = Db::connect(store.url()).await?;
    db.migrate_up().await?;
    seed(&db, args.stores).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let sim = PlatformSim::start(PlatformConfig::new(&base, APP_ID, SECRET)).await?;
    let (closing, closing_rx) = watch::channel(false);
    let mut state = AppState::new(db.clone(), closing_rx.clone());
    state.orders = gateway::orders::Writer::start(&db).await?;
    state.channels = Some(
        Channels::start(
            config(&sim.url(), args.outbox_concurrency),
            db.clone(),
            state.hub.clone(),
            closing_rx.clone(),
        )
        .await?,
    );
    let mut rx = closing_rx;
    tokio::spawn(http::serve(listener, state, async move {
        let _ = rx.wait_for(|c| *c).await;
    }));

    let url = format!("{base}/channels/meituan/new_order");
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stores = args.stores;
    let measure = |warm: bool| {
        let (client, url, next, ok, errors, stop) = (
            client.clone(),
            url.clone(),
            next.clone(),
            ok.clone(),
            errors.clone(),
            stop.clone(),
        );
        async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = new_order(n, &url, stores);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await;
                let good = match r {
                    Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|b| b == mt::ANSWER_OK),
                    _ => false,
                };
                if !warm {
                    lat.push(t.elapsed());
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }
    };
    // Warm up for a second, then measure.
    for (warm, secs) in [(true, 1), (false, args.seconds)] {
        stop.store(false, Ordering::Relaxed);
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| tokio::spawn(measure(warm)))
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await?);
        }
        if warm {
            continue;
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort();
        let count = ok.load(Ordering::Relaxed);
        let stored: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM third_party_orders")
            .fetch_one(&db.pool)
            .await?;
        println!(
            "{name:<9} signed new_order pushes to {stores} store(s): {count} accepted, {} errors, {:.0} per s, p50 {:.2} ms, p99 {:.2} ms (third-party orders in the database, warm-up included: {})",
            errors.load(Ordering::Relaxed),
            count as f64 / elapsed,
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99),
            stored.0
        );
    }
    let _ = closing.send(true);
    sim.stop();
    db.pool.close().await;
    Ok(())
}

async fn outbox_rows(name: &str, store: &TestDb, args: &Args) -> anyhow::Result<()> {
    let db = Db::connect(store.url()).await?;
    let sim = PlatformSim::start(PlatformConfig::new("http://127.0.0.1:1", APP_ID, SECRET)).await?;
    // Rows for 1/5 as many keys: each key's rows go one after the other.
    let keys = (args.rows / 5).max(1);
    let now = gateway::clock::now_micros();
    let mut calls = Vec::with_capacity(args.rows);
    for i in 0..args.rows {
        let key = i % keys;
        let (path, params) = channels::call_parts(&Call::SkuStock {
            app_poi_code: "S001".into(),
            foods: vec![FoodStock {
                app_food_code: format!("F{key}"),
                skus: vec![SkuStock {
                    sku_id: format!("F{key}"),
                    stock: i as u32,
                }],
            }],
        });
        calls.push(NewCall {
            platform: channels::MEITUAN.into(),
            order_key: format!("sku:S001:F{key}"),
            path,
            params,
            store_id: Some("S001".into()),
            order_id: None,
            not_before: None,
        });
    }
    for chunk in calls.chunks(500) {
        let mut tx = db.write().await?;
        outbox::enqueue(&mut tx, chunk, now)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        tx.commit().await?;
    }
    let before: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")
        .fetch_one(&db.pool)
        .await?;
    let channels = Channels::new(config(&sim.url(), args.outbox_concurrency), db.clone())?;
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let n = channels
            .dispatcher
            .round()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        if n == 0 {
            break;
        }
        sent += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")
        .fetch_one(&db.pool)
        .await?;
    let delivered = (after.0 - before.0) as usize;
    let at_sim = sim.received_ok().len();
    println!(
        "{name:<9} outbox delivery: {delivered} rows ({keys} keys, 5 in order each) in {elapsed:.2} s = {:.0} rows per s; {sent} calls made, {at_sim} accepted by the platform",
        delivered as f64 / elapsed
    );
    sim.stop();
    db.pool.close().await;
    Ok(())
}
