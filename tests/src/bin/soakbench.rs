//! The soak (issue 16): the real `gateway serve` process under a steady,
//! mixed, rate-limited load for `--minutes` — REST orders across several
//! stores (some retried with their Idempotency-Key), SOAP `SubmitOrder`
//! (some sent twice), signed Meituan-style pushes from the platform simulator
//! (some repeated), the stores accepting those orders (the outbox calls the
//! simulator back), payment-code charges and refunds against the WeChat-Pay
//! simulator, queue reads, and several SSE readers per store (one of them
//! reconnecting with `Last-Event-ID` every few seconds) that must each see
//! every order of their store exactly once.
//!
//! Every 10 s it reads the gateway's resident memory (`VmRSS` in
//! `/proc/<pid>/status`); every minute it prints a row: RSS, requests,
//! errors, p99 per kind. At the end: RSS at minute 2 against the end, every
//! error (any non-2xx or unexpected answer; the first few printed), what the
//! SSE readers missed or saw twice, and the ERROR lines of the gateway's log.
//! Exits non-zero when anything failed, a reader lost or doubled an order,
//! or the RSS at the end is above 1.10 × the RSS at minute 2.
//!
//! SQLite (a throwaway file) by default; `--database-url postgres://…` names
//! a PostgreSQL server on which a throwaway database is made and dropped.
//!
//! ```sh
//! nice cargo build --release -p tests --bin soakbench -p gateway
//! ./target/release/soakbench --minutes 10
//! ./target/release/soakbench --minutes 10 --database-url postgres://postgres@127.0.0.1:5432/postgres
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use gateway::catalog::{self, ItemChange, ProductSpec};
use gateway::db::Db;
use gateway::keys::Role;
use hw_sim::platform::{ItemSpec, PlatformConfig, PlatformSim, PushRequest};
use proto::order::{Money, Sku, StoreId, Unit};
use proto::soap::{self, SubmitLine, SubmitOrder, SubmitOrderResponse, UsernameToken};
use serde_json::{Value, json};
use tests::pay::{self, PaySim};

#[derive(Parser)]
#[command(about = "ten minutes of mixed load against the gateway process, memory sampled")]
struct Args {
    /// Minutes of load (at most 25: at the default rates the stock seeded,
    /// 100,000 of each item, the most one holds, ran out at 29 minutes).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=25))]
    minutes: u64,
    /// A PostgreSQL server (`postgres://user@host:port/db`): the soak runs on
    /// a throwaway database made there. Default: a throwaway SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Stores the load is spread over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=16))]
    stores: u64,
    /// SSE readers per store (each with its own key).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=6))]
    readers: u64,
    /// REST `POST /api/v1/orders` per second (all stores).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=2000))]
    rest_per_s: u64,
    /// SOAP `SubmitOrder` per second.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=2000))]
    soap_per_s: u64,
    /// Signed platform `new_order` pushes per second (each accepted by its
    /// store once its SSE reader sees it).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pushes_per_s: u64,
    /// Orders paid with a payment code per second (a third refunded in part).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=500))]
    pays_per_s: u64,
    /// Queue reads per second.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=500))]
    queue_per_s: u64,
    /// Seconds between two `/metrics` scrapes (0: nobody scrapes, as when
    /// no Prometheus is set up).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    scrape_s: u64,
    /// Seconds between the reconnects of each store's last SSE reader.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    reconnect_s: u64,
}

const PLATFORM_APP_ID: &str = "soak-app";
const PLATFORM_SECRET: &str = "soak-secret-0123456789";
/// A WeChat payment code (18 digits, 10-15 first).
const PAY_CODE: &str = "134567890123456789";
/// (sku, name, price) of the products every store sells.
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("LATTE", "拿铁", "12.50"),
    ("MOCHA", "摩卡", "15.00"),
    ("BAGEL", "贝果", "8.80"),
    ("COLA", "可乐", "3.50"),
];
/// Pieces of each product on hand in each store: the most an item holds
/// (`proto::order::MAX_MILLI` thousandths).
const STOCK: &str = "100000";
/// First errors kept for the report.
const KEEP_ERRORS: usize = 12;
/// Largest SSE event the readers buffer.
const MAX_EVENT: usize = 1 << 20;
/// Orders waiting for their store to accept them at most.
const MAX_TO_ACCEPT: usize = 10_000;
/// Requests in flight per kind at most (workers per kind).
const MAX_WORKERS: u64 = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Rest,
    Soap,
    Push,
    Accept,
    Pay,
    Refund,
    Queue,
    Metrics,
    Sse,
}

const KINDS: [Kind; 9] = [
    Kind::Rest,
    Kind::Soap,
    Kind::Push,
    Kind::Accept,
    Kind::Pay,
    Kind::Refund,
    Kind::Queue,
    Kind::Metrics,
    Kind::Sse,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rest => "rest",
            Kind::Soap => "soap",
            Kind::Push => "push",
            Kind::Accept => "accept",
            Kind::Pay => "pay",
            Kind::Refund => "refund",
            Kind::Queue => "queue",
            Kind::Metrics => "metrics",
            Kind::Sse => "sse",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests and latencies of one kind.
#[derive(Default)]
struct KindStats {
    count: AtomicU64,
    errors: AtomicU64,
    /// Latencies (µs) since the last minute's row.
    minute: Mutex<Vec<u32>>,
    /// Every latency (µs) of the run.
    all: Mutex<Vec<u32>>,
}

/// What the bench was told a store has: the orders it must see on its feed.
#[derive(Default)]
struct Expected {
    /// Gateway order ids answered 2xx (REST, SOAP, orders to pay).
    ids: HashSet<String>,
    /// Platform order ids of pushes answered ok.
    pushed: HashSet<String>,
}

/// One SSE reader's view of its store's feed.
#[derive(Default)]
struct ReaderView {
    /// `order.created` events per order id.
    created: HashMap<String, u32>,
    /// Platform order id → gateway order id, from third-party orders' events.
    platform: HashMap<String, String>,
    last_id: Option<String>,
    connects: u64,
    events: u64,
}

struct Shared {
    started: Instant,
    stats: Vec<KindStats>,
    first_errors: Mutex<Vec<String>>,
    expected: Vec<Mutex<Expected>>,
    /// (store index, order id) of third-party orders to accept.
    to_accept: Mutex<VecDeque<(usize, String)>>,
    accept_dropped: AtomicU64,
    /// The load is over: workers stop.
    stop: AtomicBool,
    /// The readers are done: they stop.
    readers_stop: AtomicBool,
}

impl Shared {
    fn stat(&self, k: Kind) -> &KindStats {
        &self.stats[k as usize]
    }

    fn ok(&self, k: Kind, took: Duration) {
        let s = self.stat(k);
        s.count.fetch_add(1, Ordering::Relaxed);
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        lock(&s.minute).push(us);
        lock(&s.all).push(us);
    }

    fn error(&self, k: Kind, took: Option<Duration>, what: String) {
        let s = self.stat(k);
        s.count.fetch_add(1, Ordering::Relaxed);
        s.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = took {
            let us = u32::try_from(t.as_micros()).unwrap_or(u32::MAX);
            lock(&s.minute).push(us);
            lock(&s.all).push(us);
        }
        let mut first = lock(&self.first_errors);
        if first.len() < KEEP_ERRORS {
            let what: String = what.chars().take(300).collect();
            first.push(format!(
                "t={:.1}s {}: {what}",
                self.started.elapsed().as_secs_f64(),
                k.name()
            ));
        }
    }

    fn errors(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.errors.load(Ordering::Relaxed))
            .sum()
    }

    fn requests(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }
}

struct Store {
    id: String,
    /// The counter's terminal (SOAP, charges, refunds, accepts).
    terminal_id: String,
    terminal_key: String,
    /// One key per SSE reader (each a screen of its own).
    reader_keys: Vec<String>,
    /// The queue reader's cursor.
    cursor: AtomicU64,
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    app: String,
    admin: String,
    stores: Vec<Store>,
    platform: PlatformSim,
    sh: Arc<Shared>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = tests::agent::build_bins(&["gateway"]).join("gateway");
    anyhow::ensure!(bin.exists(), "no gateway binary at {}", bin.display());
    tests::bench::runtime()?.block_on(run(args, bin))
}

/// A throwaway PostgreSQL database on the server of `admin`.
struct Pg {
    admin: String,
    name: String,
    url: String,
}

impl Pg {
    async fn create(admin: &str) -> anyhow::Result<Pg> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c =
            tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect(admin))
                .await
                .context("timed out connecting to PostgreSQL")??;
        let name = format!("gw_soak_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        Ok(Pg {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop_db(&self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::AnyConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
        }
    }
}

async fn run(args: Args, bin: std::path::PathBuf) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pg = match &args.database_url {
        Some(admin) => {
            anyhow::ensure!(
                admin.starts_with("postgres://") || admin.starts_with("postgresql://"),
                "--database-url must be a postgres:// URL"
            );
            Some(Pg::create(admin).await?)
        }
        None => None,
    };
    let db_url = match &pg {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}/gateway.db", dir.path().display()),
    };
    let engine = if pg.is_some() { "postgres" } else { "sqlite" };
    let outcome = soak(&args, &bin, &db_url, engine, dir.path()).await;
    if let Some(pg) = &pg {
        pg.drop_db().await;
    }
    outcome
}

/// Stores, products, stock and keys, written before the gateway starts.
async fn seed(db_url: &str, n: u64, readers: u64) -> anyhow::Result<(String, String, Vec<Store>)> {
    let db = Db::connect(db_url).await?;
    db.migrate_up().await?;
    let e = |e: gateway::error::Error| anyhow::anyhow!("{}", e.message);
    for (sku, name, price) in PRODUCTS {
        catalog::put_product(
            &db,
            ProductSpec {
                sku: Sku::parse(sku)?,
                name: (*name).to_owned(),
                unit: Unit::Piece,
                price: Money::parse(price)?,
                barcodes: None,
            },
        )
        .await
        .map_err(e)?;
    }
    let mut stores = Vec::new();
    for i in 0..n {
        let id = format!("S{:03}", i + 1);
        let store = StoreId::parse(&id)?;
        catalog::put_store(&db, &store, format!("门店 {id}"))
            .await
            .map_err(e)?;
        for (sku, _, _) in PRODUCTS {
            catalog::put_item(
                &db,
                &store,
                &Sku::parse(sku)?,
                ItemChange {
                    on_hand: Some(STOCK.into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(e)?;
        }
        let terminal_id = format!("{id}-T01");
        let terminal_key = tests::key_for(&db, Role::Terminal, Some(&id), Some(&terminal_id)).await;
        let mut reader_keys = Vec::new();
        for _ in 0..readers {
            reader_keys.push(tests::key_for(&db, Role::Terminal, Some(&id), None).await);
        }
        stores.push(Store {
            id,
            terminal_id,
            terminal_key,
            reader_keys,
            cursor: AtomicU64::new(0),
        });
    }
    let app = tests::new_key(&db, Role::App, None).await;
    let admin = tests::new_key(&db, Role::Admin, None).await;
    db.pool.close().await;
    Ok((app, admin, stores))
}

/// `gateway serve` on 127.0.0.1:0; its log (warn and up) goes to `log`.
fn start_gateway(
    bin: &Path,
    db_url: &str,
    log: &Path,
    settings: &[(&str, String)],
) -> anyhow::Result<(Child, String)> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEWAY_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?);
    for (k, v) in settings {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let mut child = cmd.spawn().context("starting the gateway")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let base = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            anyhow::bail!(
                "the gateway exited before listening (see {})",
                log.display()
            );
        };
        if let Some(url) = line?.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, base))
}

/// The gateway's resident set in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// One KiB field of `/proc/<pid>/status` (`RssAnon:`: the heap and stacks,
/// without the mapped files and SQLite's shared memory).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: u64) -> String {
    format!("{}.{}", kib / 1024, (kib % 1024) * 10 / 1024)
}

/// The `q`-th per-mille latency of `v` (µs), in ms with two decimals.
fn pct_ms(v: &mut [u32], per_mille: usize) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let i = (v.len() * per_mille / 1000).min(v.len() - 1);
    let us = u64::from(v[i]);
    format!("{}.{:02}", us / 1000, (us % 1000) / 10)
}

async fn soak(
    args: &Args,
    bin: &Path,
    db_url: &str,
    engine: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let (app, admin, stores) = seed(db_url, args.stores, args.readers).await?;
    let paysim = PaySim::start(None).await;
    let platform = PlatformSim::start(PlatformConfig::new(
        "http://127.0.0.1:1",
        PLATFORM_APP_ID,
        PLATFORM_SECRET,
    ))
    .await?;
    let log = dir.join("gateway.log");
    let settings: Vec<(&str, String)> = vec![
        ("payments.wechatpay_base_url", paysim.base.clone()),
        ("payments.wechatpay_appid", pay::APPID.into()),
        ("payments.wechatpay_mch_id", pay::MCH_ID.into()),
        ("payments.wechatpay_key", pay::KEY.into()),
        ("payments.poll_ms", "200".into()),
        ("payments.deadline_ms", "10000".into()),
        ("payments.timeout_ms", "5000".into()),
        ("payments.sweep_ms", "1000".into()),
        ("channels.meituan_base_url", platform.url()),
        ("channels.meituan_app_id", PLATFORM_APP_ID.into()),
        ("channels.meituan_secret", PLATFORM_SECRET.into()),
        ("outbox.poll_ms", "100".into()),
    ];
    let (mut child, base) = start_gateway(bin, db_url, &log, &settings)?;
    let pid = child.id();
    platform.set_gateway_url(&base);

    let started = Instant::now();
    let sh = Arc::new(Shared {
        started,
        stats: KINDS.iter().map(|_| KindStats::default()).collect(),
        first_errors: Mutex::new(Vec::new()),
        expected: stores.iter().map(|_| Mutex::default()).collect(),
        to_accept: Mutex::new(VecDeque::new()),
        accept_dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        readers_stop: AtomicBool::new(false),
    });
    let ctx = Arc::new(Ctx {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?,
        base: base.clone(),
        app,
        admin,
        stores,
        platform: platform.clone(),
        sh: sh.clone(),
    });
    println!(
        "soakbench: {} min on {engine}, {} stores, {} SSE readers each (one reconnecting every {} s), \
         per second: {} REST orders, {} SOAP SubmitOrder, {} pushes, {} charges (a third refunded), {} queue reads; \
         /metrics {}; gateway pid {pid} at {base}, {} cores",
        args.minutes,
        args.stores,
        args.readers,
        args.reconnect_s,
        args.rest_per_s,
        args.soap_per_s,
        args.pushes_per_s,
        args.pays_per_s,
        args.queue_per_s,
        if args.scrape_s == 0 {
            "never scraped".to_owned()
        } else {
            format!("scraped every {} s", args.scrape_s)
        },
        tests::bench::cores()
    );

    // The readers first: without a resume point a stream starts at the
    // feed's head, so each must be open before the first order.
    let mut views: Vec<(usize, Arc<Mutex<ReaderView>>)> = Vec::new();
    let mut reader_tasks = Vec::new();
    for (si, store) in ctx.stores.iter().enumerate() {
        for ri in 0..store.reader_keys.len() {
            let view = Arc::new(Mutex::new(ReaderView::default()));
            let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
            let churn = (ri + 1 == store.reader_keys.len() && ri > 0)
                .then(|| Duration::from_secs(args.reconnect_s));
            reader_tasks.push(tokio::spawn(reader(
                ctx.clone(),
                si,
                ri,
                view.clone(),
                churn,
                opened_tx,
            )));
            let _ = tokio::time::timeout(Duration::from_secs(30), opened_rx).await;
            views.push((si, view));
        }
    }

    let mut workers = Vec::new();
    for (kind, per_s) in [
        (Kind::Rest, args.rest_per_s),
        (Kind::Soap, args.soap_per_s),
        (Kind::Push, args.pushes_per_s),
        (Kind::Accept, args.pushes_per_s),
        (Kind::Pay, args.pays_per_s),
        (Kind::Queue, args.queue_per_s),
    ] {
        if per_s == 0 {
            continue;
        }
        // Enough workers that one slow answer does not stall the rate.
        let n = per_s.div_ceil(5).clamp(1, MAX_WORKERS);
        let period = Duration::from_micros(n * 1_000_000 / per_s);
        let next = Arc::new(AtomicU64::new(0));
        for w in 0..n {
            let offset = period * u32::try_from(w).unwrap_or(0) / u32::try_from(n).unwrap_or(1);
            workers.push(tokio::spawn(worker(
                ctx.clone(),
                kind,
                period,
                offset,
                next.clone(),
            )));
        }
    }
    if args.scrape_s > 0 {
        workers.push(tokio::spawn(worker(
            ctx.clone(),
            Kind::Metrics,
            Duration::from_secs(args.scrape_s),
            Duration::ZERO,
            Arc::new(AtomicU64::new(0)),
        )));
    }

    // Sample RSS every 10 s; a row per minute.
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let shown = [
        Kind::Rest,
        Kind::Soap,
        Kind::Push,
        Kind::Accept,
        Kind::Pay,
        Kind::Refund,
        Kind::Queue,
    ];
    let mut head = "| min | RSS MiB | RssAnon MiB | requests | errors |".to_owned();
    let mut rule = "|---|---|---|---|---|".to_owned();
    for k in shown {
        head.push_str(&format!(" {} p99 ms |", k.name()));
        rule.push_str("---|");
    }
    println!("{head}\n{rule}");
    if let Some(kib) = rss_kib(pid) {
        samples.push((0, kib));
    }
    let (mut last_req, mut last_err) = (0, 0);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(started) + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    for step in 1..=args.minutes * 6 {
        tick.tick().await;
        let t = step * 10;
        let Some(kib) = rss_kib(pid) else {
            sh.error(Kind::Rest, None, "the gateway process is gone".into());
            break;
        };
        samples.push((t, kib));
        if t.is_multiple_of(60) {
            let (req, err) = (sh.requests(), sh.errors());
            let anon = status_kib(pid, "RssAnon:").map_or("?".to_owned(), mib);
            let mut row = format!(
                "| {} | {} | {} | {} | {} |",
                t / 60,
                mib(kib),
                anon,
                req - last_req,
                err - last_err
            );
            (last_req, last_err) = (req, err);
            for k in shown {
                let mut v = std::mem::take(&mut *lock(&sh.stat(k).minute));
                row.push_str(&format!(" {} |", pct_ms(&mut v, 990)));
            }
            println!("{row}");
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let load_secs = started.elapsed().as_secs();

    // Let the readers catch up with the last orders (bounded), then stop them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind = views
            .iter()
            .filter(|(si, v)| missing(&lock(&sh.expected[*si]), &lock(v)) > 0)
            .count();
        if behind == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sh.readers_stop.store(true, Ordering::Relaxed);
    for t in reader_tasks {
        t.abort();
    }
    let rss_after = rss_kib(pid);

    // ---------------------------------------------------------------- report
    println!();
    println!(
        "RSS every 10 s (MiB): {}",
        samples
            .iter()
            .map(|(_, k)| mib(*k))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Minute 2, or half-way through a shorter run.
    let base_t = if args.minutes >= 3 {
        120
    } else {
        args.minutes * 30
    };
    let base_rss = samples.iter().find(|(t, _)| *t == base_t).map(|s| s.1);
    let end_rss = samples.last().map(|s| s.1);
    let mut failed = Vec::new();
    match (base_rss, end_rss) {
        (Some(b), Some(e)) => {
            println!(
                "RSS at {} s: {} MiB; at the end ({} s): {} MiB; end / minute-2 = {}.{:03}{}",
                base_t,
                mib(b),
                samples.last().map_or(0, |s| s.0),
                mib(e),
                e / b.max(1),
                (e % b.max(1)) * 1000 / b.max(1),
                rss_after.map_or(String::new(), |a| format!(
                    " (after the load: {} MiB)",
                    mib(a)
                ))
            );
            if e * 100 > b * 110 {
                failed.push(format!(
                    "RSS grew more than 10% after minute 2 ({} → {} MiB)",
                    mib(b),
                    mib(e)
                ));
            }
        }
        _ => failed.push("no RSS samples".into()),
    }

    println!();
    println!("| kind | requests | per s | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for k in KINDS {
        let s = sh.stat(k);
        let n = s.count.load(Ordering::Relaxed);
        if n == 0 {
            continue;
        }
        let mut all = std::mem::take(&mut *lock(&s.all));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            k.name(),
            n,
            n / load_secs.max(1),
            s.errors.load(Ordering::Relaxed),
            pct_ms(&mut all, 500),
            pct_ms(&mut all, 990),
            pct_ms(&mut all, 1000),
        );
    }

    // What the readers saw.
    let (mut missed, mut doubled, mut extra, mut connects, mut events) = (0u64, 0u64, 0u64, 0, 0);
    for (si, v) in &views {
        let e = lock(&sh.expected[*si]);
        let v = lock(v);
        missed += missing(&e, &v);
        doubled += v
            .created
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum::<u64>();
        let pushed: HashSet<&String> = e.pushed.iter().filter_map(|p| v.platform.get(p)).collect();
        extra += v
            .created
            .keys()
            .filter(|id| !e.ids.contains(*id) && !pushed.contains(id))
            .count() as u64;
        connects += v.connects;
        events += v.events;
    }
    let orders: usize = sh
        .expected
        .iter()
        .map(|e| {
            let e = lock(e);
            e.ids.len() + e.pushed.len()
        })
        .sum();
    println!();
    println!(
        "SSE: {} readers, {connects} connections, {events} events; {orders} orders answered 2xx, \
         each to be seen once by each reader of its store: {missed} missed, {doubled} seen twice, \
         {extra} not answered to the bench",
        views.len()
    );
    if missed > 0 || doubled > 0 {
        failed.push(format!(
            "SSE readers missed {missed} and doubled {doubled} orders"
        ));
    }
    let delivered = platform
        .received_ok()
        .iter()
        .filter(|r| r.path.contains("confirm"))
        .count();
    let accepted = sh.stat(Kind::Accept).count.load(Ordering::Relaxed)
        - sh.stat(Kind::Accept).errors.load(Ordering::Relaxed);
    println!(
        "platform: {accepted} orders accepted, {delivered} confirm calls received by the simulator, \
         {} left unaccepted (queue full)",
        sh.accept_dropped.load(Ordering::Relaxed)
    );
    let ledger = paysim.ledger().await.len();
    println!("payments: {ledger} charges in the simulator's ledger");

    // The gateway's log.
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let logged: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    let warned = text.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "gateway log: {} ERROR lines, {warned} WARN lines",
        logged.len()
    );
    for l in logged.iter().take(5) {
        println!("  {}", l.chars().take(300).collect::<String>());
    }
    for l in text.lines().filter(|l| l.contains("WARN")).take(5) {
        println!("  {}", l.chars().take(300).collect::<String>());
    }
    if !logged.is_empty() {
        failed.push(format!("the gateway logged {} errors", logged.len()));
    }

    let errors = sh.errors();
    println!("errors: {errors}");
    for e in lock(&sh.first_errors).iter() {
        println!("  {e}");
    }
    if errors > 0 {
        failed.push(format!("{errors} requests failed"));
    }
    platform.stop();
    if failed.is_empty() {
        println!("soak passed");
        Ok(())
    } else {
        anyhow::bail!("soak failed: {}", failed.join("; "))
    }
}

/// Orders of the store the reader has not seen created.
fn missing(e: &Expected, v: &ReaderView) -> u64 {
    let ids = e
        .ids
        .iter()
        .filter(|id| !v.created.contains_key(*id))
        .count();
    let pushed = e
        .pushed
        .iter()
        .filter(|p| {
            v.platform
                .get(*p)
                .is_none_or(|id| !v.created.contains_key(id))
        })
        .count();
    (ids + pushed) as u64
}

/// One kind's requests at `period`, until the load stops.
async fn worker(
    ctx: Arc<Ctx>,
    kind: Kind,
    period: Duration,
    offset: Duration,
    next: Arc<AtomicU64>,
) {
    let start = tokio::time::Instant::from_std(ctx.sh.started) + offset;
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ctx.sh.stop.load(Ordering::Relaxed) {
            return;
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        match kind {
            Kind::Rest => {
                let _ = rest_order(&ctx, n).await;
            }
            Kind::Soap => soap_order(&ctx, n).await,
            Kind::Push => push(&ctx, n).await,
            Kind::Accept => accept(&ctx).await,
            Kind::Pay => pay_and_refund(&ctx, n).await,
            Kind::Queue => queue(&ctx, n).await,
            Kind::Metrics => scrape(&ctx).await,
            Kind::Refund | Kind::Sse => return,
        }
    }
}

fn store_of(ctx: &Ctx, n: u64) -> usize {
    (n % ctx.stores.len() as u64) as usize
}

/// Sends `req`; the status and body, or what went wrong.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let r = req.send().await.map_err(|e| format!("send: {e}"))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| format!("body: {e}"))?;
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| {
        Value::String(String::from_utf8_lossy(&body).chars().take(300).collect())
    });
    Ok((status, v))
}

/// A REST order of the app in store `n % stores`; every 25th is sent again
/// with its Idempotency-Key and must answer the same order. Its id.
async fn rest_order(ctx: &Ctx, n: u64) -> Option<(usize, String)> {
    let si = store_of(ctx, n);
    let (sku, _, _) = PRODUCTS[(n as usize / ctx.stores.len()) % PRODUCTS.len()];
    let body = json!({
        "store_id": ctx.stores[si].id,
        "note": format!("soak {n}"),
        "lines": [{"sku": sku, "quantity": "2"}, {"sku": "COLA", "quantity": "1"}],
    });
    let key = format!("soak-rest-{n}-{}", uuid::Uuid::new_v4().simple());
    let post = || {
        ctx.http
            .post(format!("{}/api/v1/orders", ctx.base))
            .bearer_auth(&ctx.app)
            .header("idempotency-key", &key)
            .json(&body)
    };
    let t = Instant::now();
    let id = match send(post()).await {
        Ok((201, v)) => match v["id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                ctx.sh.error(
                    Kind::Rest,
                    Some(t.elapsed()),
                    format!("201 without id: {v}"),
                );
                return None;
            }
        },
        Ok((s, v)) => {
            ctx.sh
                .error(Kind::Rest, Some(t.elapsed()), format!("HTTP {s}: {v}"));
            return None;
        }
        Err(e) => {
            ctx.sh.error(Kind::Rest, Some(t.elapsed()), e);
            return None;
        }
    };
    ctx.sh.ok(Kind::Rest, t.elapsed());
    lock(&ctx.sh.expected[si]).ids.insert(id.clone());
    if n.is_multiple_of(25) {
        let t = Instant::now();
        match send(post()).await {
            // The first answer again (its status included), the same order.
            Ok((200 | 201, v)) if v["id"].as_str() == Some(id.as_str()) => {
                ctx.sh.ok(Kind::Rest, t.elapsed())
            }
            Ok((s, v)) => ctx.sh.error(
                Kind::Rest,
                Some(t.elapsed()),
                format!("retry with the Idempotency-Key: HTTP {s}: {v}"),
            ),
            Err(e) => ctx.sh.error(Kind::Rest, Some(t.elapsed()), e),
        }
    }
    Some((si, id))
}

/// A SOAP SubmitOrder at the store's counter; every 20th is sent again with
/// its clientOrderId and must come back `replayed` with the same order.
async fn soap_order(ctx: &Ctx, n: u64) {
    let si = store_of(ctx, n);
    let store = &ctx.stores[si];
    let token = UsernameToken {
        username: store.terminal_id.clone(),
        password: store.terminal_key.clone(),
    };
    let (sku, _, _) = PRODUCTS[(n as usize / ctx.stores.len()) % PRODUCTS.len()];
    let Ok(sku) = Sku::parse(sku) else { return };
    let msg = SubmitOrder {
        client_order_id: format!("soak-soap-{n}-{}", uuid::Uuid::new_v4().simple()),
        lines: vec![SubmitLine {
            sku,
            quantity: "1".into(),
            unit_price: None,
        }],
        note: None,
        sold_at: None,
        catalog_version: None,
    };
    let envelope = soap::write_request(&token, &msg);
    let submit = || async {
        let t = Instant::now();
        let r = ctx
            .http
            .post(format!("{}/soap/terminal", ctx.base))
            .header("content-type", "text/xml; charset=utf-8")
            .body(envelope.clone())
            .send()
            .await
            .map_err(|e| (t.elapsed(), format!("send: {e}")))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| (t.elapsed(), format!("body: {e}")))?;
        if !status.is_success() {
            return Err((
                t.elapsed(),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            ));
        }
        soap::parse_response::<SubmitOrderResponse>(&body)
            .map(|a| (t.elapsed(), a))
            .map_err(|e| (t.elapsed(), format!("answer: {e:?}")))
    };
    let first = match submit().await {
        Ok((took, a)) if !a.replayed => {
            ctx.sh.ok(Kind::Soap, took);
            a.order.id
        }
        Ok((took, _)) => {
            ctx.sh.error(
                Kind::Soap,
                Some(took),
                "a new order answered replayed".into(),
            );
            return;
        }
        Err((took, e)) => {
            ctx.sh.error(Kind::Soap, Some(took), e);
            return;
        }
    };
    lock(&ctx.sh.expected[si]).ids.insert(first.clone());
    if n.is_multiple_of(20) {
        match submit().await {
            Ok((took, a)) if a.replayed && a.order.id == first => ctx.sh.ok(Kind::Soap, took),
            Ok((took, a)) => ctx.sh.error(
                Kind::Soap,
                Some(took),
                format!("resent: replayed {} order {}", a.replayed, a.order.id),
            ),
            Err((took, e)) => ctx.sh.error(Kind::Soap, Some(took), e),
        }
    }
}

/// A signed new_order push from the platform simulator; every 10th is sent
/// twice (the same form: a duplicate the gateway must absorb).
async fn push(ctx: &Ctx, n: u64) {
    let si = store_of(ctx, n);
    let (sku, name, _) = PRODUCTS[(n as usize / ctx.stores.len()) % PRODUCTS.len()];
    let mut req =
        PushRequest::new_order(&ctx.stores[si].id, vec![ItemSpec::new(sku, name, 2, 1250)]);
    if n.is_multiple_of(10) {
        req.repeat = 2;
    }
    let t = Instant::now();
    match ctx.platform.push(req).await {
        Ok(o) if o.statuses.iter().all(|s| *s == 200) && o.answer == json!({"data": "ok"}) => {
            ctx.sh.ok(Kind::Push, t.elapsed());
            lock(&ctx.sh.expected[si]).pushed.insert(o.order_id);
        }
        Ok(o) => ctx.sh.error(
            Kind::Push,
            Some(t.elapsed()),
            format!("statuses {:?}: {}", o.statuses, o.answer),
        ),
        Err(e) => ctx.sh.error(Kind::Push, Some(t.elapsed()), e.0),
    }
}

/// The store accepts the oldest third-party order its screen has seen.
async fn accept(ctx: &Ctx) {
    let Some((si, id)) = lock(&ctx.sh.to_accept).pop_front() else {
        return;
    };
    let t = Instant::now();
    let r = ctx
        .http
        .post(format!("{}/api/v1/orders/{id}/accept", ctx.base))
        .bearer_auth(&ctx.stores[si].terminal_key);
    match send(r).await {
        Ok((200, v)) if v["status"] == "accepted" => ctx.sh.ok(Kind::Accept, t.elapsed()),
        Ok((s, v)) => ctx
            .sh
            .error(Kind::Accept, Some(t.elapsed()), format!("HTTP {s}: {v}")),
        Err(e) => ctx.sh.error(Kind::Accept, Some(t.elapsed()), e),
    }
}

/// A REST order, paid by the counter with a payment code; every third
/// gets 1.00 back.
async fn pay_and_refund(ctx: &Ctx, n: u64) {
    let Some((si, order)) = rest_order(ctx, n.wrapping_mul(7).wrapping_add(3)).await else {
        return;
    };
    let key = &ctx.stores[si].terminal_key;
    let t = Instant::now();
    let r = ctx
        .http
        .post(format!("{}/api/v1/orders/{order}/payments", ctx.base))
        .bearer_auth(key)
        .json(&json!({"auth_code": PAY_CODE}));
    match send(r).await {
        Ok((200, v)) if v["state"] == "succeeded" => ctx.sh.ok(Kind::Pay, t.elapsed()),
        Ok((s, v)) => {
            ctx.sh
                .error(Kind::Pay, Some(t.elapsed()), format!("HTTP {s}: {v}"));
            return;
        }
        Err(e) => {
            ctx.sh.error(Kind::Pay, Some(t.elapsed()), e);
            return;
        }
    }
    if !n.is_multiple_of(3) {
        return;
    }
    let t = Instant::now();
    let r = ctx
        .http
        .post(format!("{}/api/v1/orders/{order}/refunds", ctx.base))
        .bearer_auth(key)
        .json(&json!({"request_id": format!("soak-refund-{n}"), "amount": "1.00"}));
    match send(r).await {
        Ok((200 | 202, v)) if v["state"] != "failed" && v["state"].is_string() => {
            ctx.sh.ok(Kind::Refund, t.elapsed())
        }
        Ok((s, v)) => ctx
            .sh
            .error(Kind::Refund, Some(t.elapsed()), format!("HTTP {s}: {v}")),
        Err(e) => ctx.sh.error(Kind::Refund, Some(t.elapsed()), e),
    }
}

/// A queue read: the open orders (what a board asks at start), or what
/// changed since the store's last cursor (what a terminal polls).
async fn queue(ctx: &Ctx, n: u64) {
    let si = store_of(ctx, n);
    let store = &ctx.stores[si];
    let url = if n.is_multiple_of(2) {
        format!(
            "{}/api/v1/stores/{}/orders?status=created,accepted&limit=100",
            ctx.base, store.id
        )
    } else {
        format!(
            "{}/api/v1/stores/{}/orders?since={}&limit=200",
            ctx.base,
            store.id,
            store.cursor.load(Ordering::Relaxed)
        )
    };
    let t = Instant::now();
    match send(ctx.http.get(url).bearer_auth(&ctx.admin)).await {
        Ok((200, v)) if v["orders"].is_array() => {
            ctx.sh.ok(Kind::Queue, t.elapsed());
            if !n.is_multiple_of(2)
                && let Some(c) = v["cursor"].as_u64()
            {
                store.cursor.fetch_max(c, Ordering::Relaxed);
            }
        }
        Ok((s, v)) => ctx
            .sh
            .error(Kind::Queue, Some(t.elapsed()), format!("HTTP {s}: {v}")),
        Err(e) => ctx.sh.error(Kind::Queue, Some(t.elapsed()), e),
    }
}

async fn scrape(ctx: &Ctx) {
    let t = Instant::now();
    let r = ctx
        .http
        .get(format!("{}/metrics", ctx.base))
        .bearer_auth(&ctx.admin);
    match send(r).await {
        Ok((200, _)) => ctx.sh.ok(Kind::Metrics, t.elapsed()),
        Ok((s, v)) => ctx
            .sh
            .error(Kind::Metrics, Some(t.elapsed()), format!("HTTP {s}: {v}")),
        Err(e) => ctx.sh.error(Kind::Metrics, Some(t.elapsed()), e),
    }
}

/// One SSE reader of store `si` with its own key, until the readers stop:
/// counts every `order.created`; the first reader of a store hands
/// third-party orders to the accepting workers. With `churn`, it drops its
/// stream that often and resumes with `Last-Event-ID`.
async fn reader(
    ctx: Arc<Ctx>,
    si: usize,
    ri: usize,
    view: Arc<Mutex<ReaderView>>,
    churn: Option<Duration>,
    opened: tokio::sync::oneshot::Sender<()>,
) {
    let store = &ctx.stores[si];
    let url = format!("{}/api/v1/stores/{}/orders/stream", ctx.base, store.id);
    let mut opened = Some(opened);
    while !ctx.sh.readers_stop.load(Ordering::Relaxed) {
        let mut req = ctx
            .http
            .get(&url)
            .bearer_auth(&store.reader_keys[ri])
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(last) = lock(&view).last_id.clone() {
            req = req.header("last-event-id", last);
        }
        let r = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let s = r.status();
                let body = r.text().await.unwrap_or_default();
                ctx.sh
                    .error(Kind::Sse, None, format!("open {url}: HTTP {s}: {body}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                ctx.sh.error(Kind::Sse, None, format!("open {url}: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        lock(&view).connects += 1;
        if let Some(o) = opened.take() {
            let _ = o.send(());
        }
        let until = churn.map(|c| tokio::time::Instant::now() + c);
        let mut body = r.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match until {
                Some(u) => match tokio::time::timeout_at(u, body.next()).await {
                    Ok(c) => c,
                    Err(_) => break, // time to reconnect
                },
                None => body.next().await,
            };
            let chunk = match chunk {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    if !ctx.sh.readers_stop.load(Ordering::Relaxed) {
                        ctx.sh.error(Kind::Sse, None, format!("stream {url}: {e}"));
                    }
                    break;
                }
                None => {
                    if !ctx.sh.readers_stop.load(Ordering::Relaxed) {
                        ctx.sh.error(Kind::Sse, None, format!("stream {url} ended"));
                    }
                    break;
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..end + 2).collect();
                on_event(&ctx, si, ri, &view, &String::from_utf8_lossy(&block));
            }
            if buf.len() > MAX_EVENT {
                ctx.sh
                    .error(Kind::Sse, None, format!("an event over {MAX_EVENT} bytes"));
                buf.clear();
            }
        }
    }
}

fn on_event(ctx: &Ctx, si: usize, ri: usize, view: &Mutex<ReaderView>, block: &str) {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        let v = v.strip_prefix(' ').unwrap_or(v);
        match k {
            "id" => id = Some(v.to_owned()),
            "event" => event = Some(v.to_owned()),
            "data" => data.push_str(v),
            _ => {}
        }
    }
    let mut view = lock(view);
    if let Some(id) = id {
        view.last_id = Some(id);
    }
    let Some(event) = event else { return };
    view.events += 1;
    if event != "order.created" {
        if !event.starts_with("order.") {
            ctx.sh
                .error(Kind::Sse, None, format!("event {event}: {data}"));
        }
        return;
    }
    let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
    let order = if v["order"].is_object() {
        &v["order"]
    } else {
        &v
    };
    let Some(oid) = order["id"].as_str() else {
        ctx.sh.error(
            Kind::Sse,
            None,
            format!("order.created without an id: {data}"),
        );
        return;
    };
    *view.created.entry(oid.to_owned()).or_insert(0) += 1;
    if order["channel"] == "third_party"
        && let Some(pid) = order["channel_order_id"].as_str()
    {
        view.platform.insert(pid.to_owned(), oid.to_owned());
        if ri == 0 && view.created.get(oid) == Some(&1) {
            let mut q = lock(&ctx.sh.to_accept);
            if q.len() < MAX_TO_ACCEPT {
                q.push_back((si, oid.to_owned()));
            } else {
                ctx.sh.accept_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
