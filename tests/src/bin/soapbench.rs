//! SubmitOrder over SOAP next to POST /api/v1/orders, in one run, against
//! one in-process gateway on SQLite over loopback. Phases alternate (REST,
//! SOAP, REST, SOAP, …) so drift hits both alike; every request is a new
//! order with its own client order id (the same work for the database).
//!
//! `cargo run --release -p tests --bin soapbench -- --seconds 3 --rounds 2 --concurrency 8`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gateway::app::AppState;
use gateway::catalog::{self, ItemChange, ProductSpec};
use gateway::db::Db;
use gateway::http::serve;
use gateway::keys::{self, KeySpec, Role};
use proto::order::{Money, Sku, StoreId, TerminalId, Unit};
use proto::soap::{self, SubmitLine, SubmitOrder, UsernameToken};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

#[derive(Parser)]
#[command(about = "SOAP SubmitOrder vs REST POST /api/v1/orders throughput")]
struct Args {
    /// Length of each measured phase.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// REST+SOAP phase pairs.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Exit non-zero when SOAP reaches less than this share of REST.
    #[arg(long)]
    min_ratio: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Rest,
    Soap,
}

struct Target {
    http: reqwest::Client,
    base: String,
    key: String,
    token: UsernameToken,
}

impl Target {
    async fn submit(&self, api: Api, n: u64) -> Result<(), String> {
        let id = format!("bench-{n}");
        let resp = match api {
            Api::Rest => {
                let body = format!(
                    r#"{{"store_id":"S001","channel_order_id":"{id}","lines":[{{"sku":"DUCK","quantity":"0.001"}}]}}"#
                );
                self.http
                    .post(format!("{}/api/v1/orders", self.base))
                    .bearer_auth(&self.key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            }
            Api::Soap => {
                let msg = SubmitOrder {
                    client_order_id: id,
                    lines: vec![SubmitLine {
                        sku: Sku::parse("DUCK").map_err(|e| e.to_string())?,
                        quantity: "0.001".into(),
                        unit_price: None,
                    }],
                    note: None,
                    sold_at: None,
                    catalog_version: None,
                };
                self.http
                    .post(format!("{}/soap/terminal", self.base))
                    .header("content-type", "text/xml; charset=utf-8")
                    .body(soap::write_request(&self.token, &msg))
                    .send()
                    .await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    busy: Duration,
    errors: u64,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.busy.as_secs_f64().max(1e-9)
    }

    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[i] as f64 / 1000.0
    }
}

async fn phase(
    t: Arc<Target>,
    api: Api,
    len: Duration,
    concurrency: usize,
    next: Arc<std::sync::atomic::AtomicU64>,
) -> Tally {
    let start = Instant::now();
    let deadline = start + len;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let t = t.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t0 = Instant::now();
                match t.submit(api, n).await {
                    Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut tally = Tally::default();
    for w in workers {
        if let Ok((lat, errors)) = w.await {
            tally.latencies_us.extend(lat);
            tally.errors += errors;
        }
    }
    tally.busy = start.elapsed();
    tally
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!("sqlite://{}/bench.db", dir.path().display())).await?;
    db.migrate_up().await?;
    let store = StoreId::parse("S001")?;
    let sku = Sku::parse("DUCK")?;
    catalog::put_store(&db, &store, "Bench store".into()).await?;
    catalog::put_product(
        &db,
        ProductSpec {
            sku: sku.clone(),
            name: "Duck neck".into(),
            unit: Unit::Kg,
            price: Money::parse("39.90")?,
            barcodes: None,
        },
    )
    .await?;
    catalog::put_item(
        &db,
        &store,
        &sku,
        ItemChange {
            on_hand: Some("100000".into()),
            available: Some(true),
            ..Default::default()
        },
    )
    .await?;
    let key = keys::create(
        &db,
        KeySpec {
            role: Role::Terminal,
            store: Some(store.clone()),
            terminal: Some(TerminalId::parse("S001-T01")?),
            label: None,
        },
    )
    .await?
    .token;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_closing_tx, closing_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut state = AppState::new(db.clone(), closing_rx);
    state.orders = gateway::orders::Writer::start(&db).await?;
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    let target = Arc::new(Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: format!("http://{addr}"),
        key: key.clone(),
        token: UsernameToken {
            username: "S001-T01".into(),
            password: key,
        },
    });
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Warm-up: connections, key cache, SQLite pages.
    for api in [Api::Rest, Api::Soap] {
        phase(
            target.clone(),
            api,
            Duration::from_millis(500),
            args.concurrency,
            next.clone(),
        )
        .await;
    }
    let mut rest = Tally::default();
    let mut soap_t = Tally::default();
    for _ in 0..args.rounds {
        for api in [Api::Rest, Api::Soap] {
            let t = phase(
                target.clone(),
                api,
                Duration::from_secs(args.seconds),
                args.concurrency,
                next.clone(),
            )
            .await;
            let into = if api == Api::Rest {
                &mut rest
            } else {
                &mut soap_t
            };
            into.latencies_us.extend(t.latencies_us);
            into.busy += t.busy;
            into.errors += t.errors;
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;

    println!(
        "SubmitOrder benchmark: SQLite, loopback, {} in flight, {} × {} s per API",
        args.concurrency, args.rounds, args.seconds
    );
    println!(
        "{:<6} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "api", "orders", "orders/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, t) in [("REST", &mut rest), ("SOAP", &mut soap_t)] {
        println!(
            "{:<6} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>7}",
            name,
            t.latencies_us.len(),
            t.rate(),
            t.pct(0.50),
            t.pct(0.99),
            t.errors
        );
    }
    let ratio = soap_t.rate() / rest.rate().max(1e-9);
    println!("SOAP/REST throughput ratio: {ratio:.2} (target ≥ 0.80)");
    if rest.errors + soap_t.errors > 0 {
        anyhow::bail!("{} requests failed", rest.errors + soap_t.errors);
    }
    if let Some(min) = args.min_ratio
        && ratio < min
    {
        anyhow::bail!("SOAP reached {ratio:.2} of REST, below {min:.2}");
    }
    Ok(())
}
