//! `hw-sim office`: a store day in the office, scripted from a seed.
//!
//! Starts the real `gateway` (demo catalog, a throwaway SQLite file or a
//! given PostgreSQL database) and a real `terminal run` agent, with the
//! device, payment and platform simulators in this process; plays a day
//! compressed into `--minutes` (counter sales, platform pushes with
//! duplicates and cancels, accepts at the counter, faults on a seeded
//! schedule); drains; then compares what the script was told succeeded
//! with what the gateway, the agent and the printer hold, and exits 0 only
//! when every check holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::link::Link;
use crate::platform::{ItemSpec, PlatformConfig, PlatformSim, PushKind, PushRequest};

mod plan;

pub use plan::{Event, FaultKind, Faults, Line, Plan, Tender};

/// The WeChat Pay merchant the payment simulator and the gateway share.
const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const PAY_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
/// The platform app both sides sign with.
const MT_APP_ID: &str = "office-mt";
const MT_SECRET: &str = "office-mt-secret-0123";
/// The store the day is played in (the gateway's demo store).
const STORE: &str = "S001";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The day's seed: the same seed plays the same day.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wall-clock minutes the day is compressed into (1–720).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub minutes: u32,
    #[arg(long, value_enum, default_value_t = Faults::Some)]
    pub faults: Faults,
    /// Stores (only 1 for now).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1))]
    pub stores: u32,
    /// postgres://… for the gateway (default: a SQLite file in a temp dir).
    #[arg(long)]
    pub database_url: Option<String>,
    /// The `gateway` binary (default: next to this one).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The `terminal` binary (default: next to this one).
    #[arg(long)]
    pub terminal_bin: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Test only: break an invariant on purpose, to show the checks fail.
    #[arg(long = "break", value_enum)]
    pub breaks: Option<Break>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Break {
    /// Forget one acknowledged counter sale (the gateway then has one more
    /// order than the script was told of).
    DropOneSale,
    /// Hide one counter order the gateway holds (an acknowledged sale then
    /// looks lost).
    HideOneOrder,
}

/// Runs the day; `Ok(true)` when every check holds.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let cmd = rerun_command(&args);
    let report = Office::play(&args).await?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = report.checks.values().all(|c| c.pass);
    if !ok {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|(_, c)| !c.pass)
            .map(|(n, _)| n.as_str())
            .collect();
        println!("FAILED checks: {}", failed.join(", "));
        println!("seed {}; rerun with: {cmd}", args.seed);
    }
    Ok(ok)
}

fn rerun_command(a: &Args) -> String {
    let mut s = format!(
        "hw-sim office --seed {} --minutes {} --faults {}",
        a.seed,
        a.minutes,
        a.faults.as_str()
    );
    if a.database_url.is_some() {
        s.push_str(" --database-url <the same database>");
    }
    if let Some(b) = a.breaks {
        s.push_str(match b {
            Break::DropOneSale => " --break drop-one-sale",
            Break::HideOneOrder => " --break hide-one-order",
        });
    }
    s
}

// ---------------------------------------------------------------- report

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub pass: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreReport {
    pub store: String,
    pub orders_by_channel: BTreeMap<String, u64>,
    /// What the script was told succeeded: counter sales checked out,
    /// platform pushes answered 200.
    pub orders_acknowledged: BTreeMap<String, u64>,
    pub orders_on_gateway: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub receipts_printed: u64,
    pub tickets_printed: u64,
    pub tickets_duplicated: u64,
    pub cancels_acknowledged: u64,
    pub accepts_acknowledged: u64,
    pub offline_sales_uploaded: u64,
    /// The payment simulator's charges by their final state.
    pub charges: BTreeMap<String, u64>,
    /// Charges still USERPAYING or NOTPAY after the drain.
    pub charges_not_final: u64,
    /// Code-paid sales and paid charges that do not match one to one (count
    /// and sum of amounts).
    pub ledger_mismatches: u64,
    /// Outbox rows (calls to the platform) pending, delivering or failed.
    pub outbox_undelivered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub minutes: u32,
    pub faults: String,
    pub database: String,
    #[serde(rename = "break", skip_serializing_if = "Option::is_none")]
    pub breaks: Option<Break>,
    pub elapsed_s: u64,
    pub stores: Vec<StoreReport>,
    pub total: StoreReport,
    pub faults_injected: Vec<String>,
    pub checks: BTreeMap<String, Check>,
}

impl Report {
    pub fn table(&self) -> String {
        let t = &self.total;
        let mut s = String::new();
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<24} {v}\n"));
        s.push_str(&format!(
            "office day: seed {} · {} min · faults {} · {} · {} s\n",
            self.seed, self.minutes, self.faults, self.database, self.elapsed_s
        ));
        let by = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for st in &self.stores {
            s.push_str(&format!("store {}\n", st.store));
            row(&mut s, "orders_by_channel", by(&st.orders_by_channel));
            row(&mut s, "orders_acknowledged", by(&st.orders_acknowledged));
            row(
                &mut s,
                "orders_on_gateway",
                st.orders_on_gateway.to_string(),
            );
            row(&mut s, "duplicates", st.duplicates.to_string());
            row(&mut s, "lost", st.lost.to_string());
            row(&mut s, "receipts_printed", st.receipts_printed.to_string());
            row(&mut s, "tickets_printed", st.tickets_printed.to_string());
            row(
                &mut s,
                "tickets_duplicated",
                st.tickets_duplicated.to_string(),
            );
            row(
                &mut s,
                "accepts_acknowledged",
                st.accepts_acknowledged.to_string(),
            );
            row(
                &mut s,
                "cancels_acknowledged",
                st.cancels_acknowledged.to_string(),
            );
            row(
                &mut s,
                "offline_sales_uploaded",
                st.offline_sales_uploaded.to_string(),
            );
            row(&mut s, "charges", by(&st.charges));
            row(
                &mut s,
                "charges_not_final",
                st.charges_not_final.to_string(),
            );
            row(
                &mut s,
                "ledger_mismatches",
                st.ledger_mismatches.to_string(),
            );
            row(
                &mut s,
                "outbox_undelivered",
                st.outbox_undelivered.to_string(),
            );
        }
        s.push_str(&format!(
            "total: {} acknowledged, {} on the gateway, {} duplicates, {} lost\n",
            t.orders_acknowledged.values().sum::<u64>(),
            t.orders_on_gateway,
            t.duplicates,
            t.lost
        ));
        s.push_str("faults injected\n");
        if self.faults_injected.is_empty() {
            s.push_str("  (none)\n");
        }
        for f in &self.faults_injected {
            s.push_str(&format!("  {f}\n"));
        }
        s.push_str("checks\n");
        for (name, c) in &self.checks {
            let mark = if c.pass { "pass" } else { "FAIL" };
            s.push_str(&format!("  {mark}  {name:<28} {}\n", c.reason));
        }
        s
    }
}

// ---------------------------------------------------------------- processes

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("this executable")?;
    let dir = exe.parent().context("its directory")?;
    let p = dir.join(name);
    anyhow::ensure!(
        p.exists(),
        "no {name} binary at {} (build it, or pass --{name}-bin)",
        p.display()
    );
    Ok(p)
}

struct Gateway {
    child: Child,
    /// host:port
    addr: String,
}

struct GatewaySpec {
    bin: PathBuf,
    db_url: String,
    log: PathBuf,
    pay_base: String,
    platform_base: String,
}

impl GatewaySpec {
    /// Starts `gateway serve` on a fresh port; with `demo`, returns the
    /// demo lines it printed (keys) too.
    async fn start(&self, demo: bool) -> anyhow::Result<(Gateway, Vec<String>)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut c = Command::new(&self.bin);
        c.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(&self.db_url);
        if demo {
            c.arg("--demo");
        }
        for (k, v) in [
            ("payments.wechatpay_base_url", self.pay_base.as_str()),
            ("payments.wechatpay_appid", APPID),
            ("payments.wechatpay_mch_id", MCH_ID),
            ("payments.wechatpay_key", PAY_KEY),
            ("payments.poll_ms", "100"),
            ("payments.deadline_ms", "6000"),
            ("payments.timeout_ms", "3000"),
            ("channels.meituan_base_url", self.platform_base.as_str()),
            ("channels.meituan_app_id", MT_APP_ID),
            ("channels.meituan_secret", MT_SECRET),
            ("outbox.backoff_ms", "50"),
            ("outbox.backoff_max_ms", "400"),
            ("outbox.poll_ms", "50"),
        ] {
            c.arg("--set").arg(format!("{k}={v}"));
        }
        c.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = c.spawn().context("starting the gateway")?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .context("the gateway did not start within 60 s")??;
            let Some(line) = line else {
                bail!("the gateway exited at start (see {})", self.log.display());
            };
            if let Some(a) = line.strip_prefix("gateway listening on http://") {
                break a.trim().to_owned();
            }
            printed.push(line);
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((Gateway { child, addr }, printed))
    }
}

fn demo_value(lines: &[String], prefix: &str) -> anyhow::Result<String> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("the gateway printed no {prefix:?}"))
}

async fn start_agent(
    bin: &Path,
    config: &Path,
    key: &str,
    log: &Path,
) -> anyhow::Result<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("TERMINAL_KEY", key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the terminal agent")?;
    let stdout = child.stdout.take().context("agent stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the agent did not start within 60 s")??
        .context("the agent exited at start")?;
    let base = line
        .strip_prefix("terminal agent listening on ")
        .with_context(|| format!("unexpected first line from the agent: {line:?}"))?
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}

// ---------------------------------------------------------------- the day

/// A counter sale the agent committed (201 from checkout).
#[derive(Debug, Clone)]
struct Sale {
    local_no: i64,
    client_order_id: String,
    /// Sold while the gateway was cut off or down.
    offline: bool,
}

#[derive(Debug, Clone, Default)]
struct PlatformOrderState {
    poid: String,
    items: Vec<ItemSpec>,
    repeat: u32,
    acked: bool,
    /// The accept the agent confirmed.
    accepted: bool,
    /// The cancel push answered 200.
    cancelled: bool,
}

/// Work the script owes but could not do yet (the gateway away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Push(usize),
    Accept(usize),
    Cancel(usize),
}

struct Office {
    http: reqwest::Client,
    agent: String,
    devices: String,
    pay: String,
    platform: PlatformSim,
    link: Link,
    gw_spec: GatewaySpec,
    gateway: Option<Gateway>,
    admin: String,
    sales: Vec<Sale>,
    platform_orders: Vec<PlatformOrderState>,
    owed: Vec<Owed>,
    /// The network to the gateway cut, or the gateway down.
    away: bool,
    faults_injected: Vec<String>,
    started: Instant,
    day_ms: u64,
    seed: u64,
    code_no: u64,
    /// Payment codes get no micropay answer (the money still moves).
    provider_silent: bool,
}

/// "22.66" → 2266 fen; `None` unless a plain amount with two decimals.
fn fen(s: &str) -> Option<i64> {
    let (y, f) = s.split_once('.')?;
    if y.is_empty() || y.len() > 12 || f.len() != 2 {
        return None;
    }
    if !y.bytes().chain(f.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    y.parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(f.parse::<i64>().ok()?)
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, (fen % 100).abs())
}

fn day_clock(at_ms: u64, day_ms: u64) -> String {
    // The day runs 08:00–20:00, compressed into day_ms.
    let sim_min = at_ms.saturating_mul(720) / day_ms.max(1);
    let m = 8 * 60 + sim_min.min(720);
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl Office {
    async fn play(args: &Args) -> anyhow::Result<Report> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("hw-sim-office-")
            .tempdir()?;
        let gateway_bin = match &args.gateway_bin {
            Some(p) => p.clone(),
            None => sibling("gateway")?,
        };
        let terminal_bin = match &args.terminal_bin {
            Some(p) => p.clone(),
            None => sibling("terminal")?,
        };
        let plan = Plan::make(args.seed, args.minutes, args.faults);

        // In-process simulators.
        let devices = crate::devices::Devices::start(&crate::devices::Config {
            dir: dir.path().join("devices"),
            record: None,
        })?;
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let devices_base = format!("http://{}", l.local_addr()?);
        tokio::spawn(Arc::clone(&devices).serve(l, std::future::pending::<()>()));

        let provider = crate::payments::Provider::new(crate::payments::Credentials {
            appid: APPID.to_owned(),
            mch_id: MCH_ID.to_owned(),
            key: PAY_KEY.to_owned(),
        });
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let pay_base = format!("http://{}", l.local_addr()?);
        tokio::spawn(provider.serve(l, std::future::pending::<()>()));

        // The platform first (the gateway needs its URL), told the
        // gateway's once it listens.
        let platform = PlatformSim::start(PlatformConfig::new(
            "http://127.0.0.1:9",
            MT_APP_ID,
            MT_SECRET,
        ))
        .await?;

        let (db_url, database) = match &args.database_url {
            Some(u) => (u.clone(), "postgres".to_owned()),
            None => (
                format!("sqlite://{}", dir.path().join("gateway.db").display()),
                "sqlite".to_owned(),
            ),
        };
        let gw_spec = GatewaySpec {
            bin: gateway_bin,
            db_url,
            log: dir.path().join("gateway.log"),
            pay_base: pay_base.clone(),
            platform_base: platform.url(),
        };
        let (gateway, demo) = gw_spec.start(true).await?;
        platform.set_gateway_url(&format!("http://{}", gateway.addr));
        let admin = demo_value(&demo, "demo admin key:")?;
        let tkey = demo_value(&demo, &format!("demo terminal key {STORE}:"))?;
        let tid = demo_value(&demo, &format!("demo terminal id {STORE}:"))?;

        let link = Link::start(gateway.addr.as_str()).await?;
        let config = dir.path().join("terminal.toml");
        let link_path = |d: &str| -> anyhow::Result<String> {
            Ok(devices
                .link(d)
                .with_context(|| format!("no {d} link"))?
                .display()
                .to_string())
        };
        std::fs::write(
            &config,
            format!(
                r#"gateway_url = "{}"
terminal_id = "{tid}"
store_id = "{STORE}"
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
                link.url,
                dir.path().join("agent-state").display(),
                link_path("printer")?,
                link_path("scale")?,
                link_path("scanner")?,
                link_path("display")?,
            ),
        )?;
        let (agent_child, agent) =
            start_agent(&terminal_bin, &config, &tkey, &dir.path().join("agent.log")).await?;

        let mut office = Office {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            agent,
            devices: devices_base,
            pay: pay_base,
            platform,
            link,
            gw_spec,
            gateway: Some(gateway),
            admin,
            sales: Vec::new(),
            platform_orders: Vec::new(),
            owed: Vec::new(),
            away: false,
            faults_injected: Vec::new(),
            started,
            day_ms: plan.day_ms,
            seed: args.seed,
            code_no: 0,
            provider_silent: false,
        };
        office.wait_ready().await?;
        let result = office.day(&plan, args).await;
        // Stop the children before the temp dir goes.
        let mut agent_child = agent_child;
        let _ = agent_child.kill().await;
        if let Some(mut g) = office.gateway.take() {
            let _ = g.child.kill().await;
        }
        devices.unplug_all();
        office.platform.stop();
        match result {
            Ok(mut r) => {
                r.database = database;
                Ok(r)
            }
            Err(e) => {
                // Keep the logs for a look.
                let kept = dir.keep();
                Err(e.context(format!("logs kept in {}", kept.display())))
            }
        }
    }

    async fn get(&self, url: &str) -> anyhow::Result<Value> {
        let r = self.http.get(url).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {url}: {status} {v}");
        Ok(v)
    }

    async fn post(&self, url: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(url).json(&body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn put(&self, url: &str, body: Value) -> anyhow::Result<()> {
        let r = self.http.put(url).json(&body).send().await?;
        let status = r.status();
        anyhow::ensure!(status.is_success(), "PUT {url}: {status}");
        Ok(())
    }

    async fn status(&self) -> anyhow::Result<Value> {
        self.get(&format!("{}/api/status", self.agent)).await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await?;
            if s["catalog"]["items"].as_i64().unwrap_or(0) >= 4
                && s["devices"]["printer"]["status"] == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the agent did not get its catalog and printer in 60 s: {s}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn progress(&self, at_ms: u64) {
        let acked: usize = self.platform_orders.iter().filter(|p| p.acked).count();
        eprintln!(
            "[{} {:>4}s] sales {} · platform orders {} · faults {}{}",
            day_clock(at_ms, self.day_ms),
            self.started.elapsed().as_secs(),
            self.sales.len(),
            acked,
            self.faults_injected.len(),
            if self.away { " · gateway away" } else { "" }
        );
    }

    async fn day(&mut self, plan: &Plan, args: &Args) -> anyhow::Result<Report> {
        let start = Instant::now();
        let mut last_progress = 0u64;
        for ev in &plan.events {
            let due = start + Duration::from_millis(ev.at_ms);
            tokio::time::sleep_until(due.into()).await;
            self.event(&ev.event, ev.at_ms).await?;
            if !self.away {
                self.pay_owed().await?;
            }
            if ev.at_ms >= last_progress + 5_000 {
                last_progress = ev.at_ms;
                self.progress(ev.at_ms);
            }
        }
        // End of day: every fault over.
        if self.away {
            self.link.up.send_replace(true);
            self.away = false;
        }
        self.put(
            &format!("{}/printer/state", self.devices),
            json!({"paper": "ok", "cover": "closed"}),
        )
        .await?;
        eprintln!("[20:00] day over; draining");
        let drained = self.drain().await?;
        self.report(args, drained).await
    }

    async fn event(&mut self, ev: &Event, at_ms: u64) -> anyhow::Result<()> {
        let when = day_clock(at_ms, self.day_ms);
        match ev {
            Event::Sale { lines, tender } => self.sale(lines, *tender).await,
            Event::Push { n, items, repeat } => {
                while self.platform_orders.len() <= *n {
                    self.platform_orders.push(PlatformOrderState::default());
                }
                self.platform_orders[*n] = PlatformOrderState {
                    poid: format!("{}{:06}", 27_000 + self.seed % 1000, n),
                    items: items.clone(),
                    repeat: *repeat,
                    ..Default::default()
                };
                self.try_owed(Owed::Push(*n)).await
            }
            Event::Accept { n } => self.try_owed(Owed::Accept(*n)).await,
            Event::Cancel { n } => self.try_owed(Owed::Cancel(*n)).await,
            Event::Fault { kind, secs } => {
                self.faults_injected
                    .push(format!("{} at {when} for {secs} s", kind.as_str()));
                self.fault(*kind, *secs).await
            }
            Event::FaultEnd { kind } => self.fault_end(*kind).await,
        }
    }

    async fn fault(&mut self, kind: FaultKind, _secs: u64) -> anyhow::Result<()> {
        let printer = format!("{}/printer/state", self.devices);
        match kind {
            FaultKind::PaperOut => self.put(&printer, json!({"paper": "end"})).await,
            FaultKind::CoverOpen => self.put(&printer, json!({"cover": "open"})).await,
            FaultKind::NetworkCut => {
                self.link.up.send_replace(false);
                self.away = true;
                Ok(())
            }
            FaultKind::Platform503 => {
                self.platform
                    .set_faults(crate::platform::Faults {
                        status: Some(503),
                        ..Default::default()
                    })
                    .map_err(|e| anyhow::anyhow!("platform faults: {e}"))?;
                Ok(())
            }
            FaultKind::ProviderNoAnswer => {
                self.provider_silent = true;
                Ok(())
            }
            FaultKind::GatewayRestart => {
                self.away = true;
                if let Some(mut g) = self.gateway.take() {
                    g.child.kill().await.context("killing the gateway")?;
                    let _ = g.child.wait().await;
                }
                Ok(())
            }
        }
    }

    async fn fault_end(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let printer = format!("{}/printer/state", self.devices);
        match kind {
            FaultKind::PaperOut => self.put(&printer, json!({"paper": "ok"})).await,
            FaultKind::CoverOpen => self.put(&printer, json!({"cover": "closed"})).await,
            FaultKind::NetworkCut => {
                self.link.up.send_replace(true);
                self.away = self.gateway.is_none();
                Ok(())
            }
            FaultKind::Platform503 => {
                self.platform.clear_faults();
                Ok(())
            }
            FaultKind::ProviderNoAnswer => {
                self.provider_silent = false;
                Ok(())
            }
            FaultKind::GatewayRestart => {
                let (g, _) = self.gw_spec.start(false).await?;
                self.link.point_at(&g.addr);
                self.platform.set_gateway_url(&format!("http://{}", g.addr));
                self.gateway = Some(g);
                self.away = !*self.link.up.borrow();
                Ok(())
            }
        }
    }

    fn gateway_url(&self, path: &str) -> Option<String> {
        self.gateway
            .as_ref()
            .map(|g| format!("http://{}{path}", g.addr))
    }

    async fn sale(&mut self, lines: &[Line], tender: Tender) -> anyhow::Result<()> {
        let basket = format!("{}/api/basket/lines", self.agent);
        let mut added = 0;
        for line in lines {
            let body = match line {
                Line::Barcode(code) => json!({"barcode": code}),
                Line::Pieces(sku, qty) => json!({"sku": sku, "quantity": qty.to_string()}),
                Line::Weigh(sku, grams) => {
                    let kg = format!("{}.{:03}", grams / 1000, grams % 1000);
                    self.put(
                        &format!("{}/scale", self.devices),
                        json!({"kg": kg, "settle_ms": 50}),
                    )
                    .await?;
                    json!({"sku": sku, "weigh": true})
                }
            };
            let (st, v) = self.post(&basket, body).await?;
            if matches!(line, Line::Weigh(..)) {
                self.put(&format!("{}/scale", self.devices), json!({"kg": "0"}))
                    .await?;
            }
            if st == 201 {
                added += 1;
            } else {
                eprintln!("  a basket line was refused ({st}): {v}");
            }
        }
        if added == 0 {
            return Ok(());
        }
        let checkout = format!("{}/api/checkout", self.agent);
        let offline = self.away;
        let mut sale = None;
        if let Tender::Code(outcome) = tender {
            let outcome = if self.provider_silent {
                "no_answer"
            } else {
                outcome
            };
            self.code_no += 1;
            let code = format!(
                "13{:016}",
                self.seed.wrapping_mul(100_000) % 10u64.pow(10) * 100_000 + self.code_no
            );
            self.put(
                &format!("{}/scenario", self.pay),
                json!({"auth_code": code, "outcome": outcome, "after_ms": 300}),
            )
            .await?;
            let (st, v) = self
                .post(&checkout, json!({"tender": "code", "auth_code": code}))
                .await?;
            match st {
                201 => sale = Some(v),
                202 => {
                    // Unresolved: ask again until the charge is final.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let (st, v) = self
                            .post(&format!("{}/api/payment/check", self.agent), json!({}))
                            .await?;
                        if st == 201 {
                            sale = Some(v["sale"].clone());
                            break;
                        }
                        if st == 200 {
                            break;
                        }
                    }
                }
                _ => {} // declined or the gateway away: cash instead
            }
        }
        if sale.is_none() {
            let (st, v) = self
                .post(&checkout, json!({"tender": "cash", "tendered": "1000.00"}))
                .await?;
            if st == 201 {
                sale = Some(v);
            } else {
                eprintln!("  a cash checkout was refused ({st}): {v}; basket cleared");
                let _ = self
                    .http
                    .delete(format!("{}/api/basket", self.agent))
                    .send()
                    .await;
            }
        }
        if let Some(v) = sale {
            let local_no = v["local_no"].as_i64().context("a sale without local_no")?;
            let client_order_id = v["client_order_id"].as_str().unwrap_or("").to_owned();
            self.sales.push(Sale {
                local_no,
                client_order_id,
                offline,
            });
        }
        Ok(())
    }

    async fn pay_owed(&mut self) -> anyhow::Result<()> {
        let owed = std::mem::take(&mut self.owed);
        for o in owed {
            self.try_owed(o).await?;
        }
        Ok(())
    }

    /// Does `o` now, or owes it again.
    async fn try_owed(&mut self, o: Owed) -> anyhow::Result<()> {
        let done = if self.away {
            false
        } else {
            match o {
                Owed::Push(n) => self.push(n).await?,
                Owed::Accept(n) => self.accept(n).await?,
                Owed::Cancel(n) => self.cancel(n).await?,
            }
        };
        if !done && !self.owed.contains(&o) {
            self.owed.push(o);
        }
        Ok(())
    }

    async fn push(&mut self, n: usize) -> anyhow::Result<bool> {
        let p = &self.platform_orders[n];
        if p.acked {
            return Ok(true);
        }
        let mut req = PushRequest::new_order(STORE, p.items.clone());
        req.order.order_id = Some(p.poid.clone());
        req.repeat = p.repeat;
        req.concurrent = p.repeat > 1;
        let out = self
            .platform
            .push(req)
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        let ok = out.statuses.contains(&200);
        self.platform_orders[n].acked = ok;
        Ok(ok)
    }

    /// The gateway's id of a platform order, from the admin API.
    async fn gateway_id(&self, poid: &str) -> anyhow::Result<Option<String>> {
        let Some(url) = self.gateway_url(&format!(
            "/api/v1/stores/{STORE}/orders?channel=third_party&limit=1000"
        )) else {
            return Ok(None);
        };
        let r = match self.http.get(url).bearer_auth(&self.admin).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => return Ok(None),
        };
        let v: Value = r.json().await.unwrap_or(Value::Null);
        Ok(v["orders"].as_array().and_then(|os| {
            os.iter()
                .find(|o| o["channel_order_id"] == poid)
                .and_then(|o| o["id"].as_str().map(str::to_owned))
        }))
    }

    async fn accept(&mut self, n: usize) -> anyhow::Result<bool> {
        let p = &self.platform_orders[n];
        if !p.acked {
            return Ok(false); // not pushed yet: later
        }
        if p.accepted || p.cancelled {
            return Ok(true);
        }
        let Some(id) = self.gateway_id(&p.poid.clone()).await? else {
            return Ok(false);
        };
        let (st, _) = self
            .post(&format!("{}/api/queue/{id}/accept", self.agent), json!({}))
            .await?;
        match st {
            200 => {
                self.platform_orders[n].accepted = true;
                Ok(true)
            }
            409 => Ok(true), // refused (e.g. cancelled first): nothing owed
            _ => Ok(false),  // not in the agent's queue yet, or the gateway away
        }
    }

    async fn cancel(&mut self, n: usize) -> anyhow::Result<bool> {
        let p = &self.platform_orders[n];
        if !p.acked {
            return Ok(false);
        }
        if p.cancelled {
            return Ok(true);
        }
        let req = PushRequest::event_on(PushKind::Cancel, &p.poid);
        let out = self
            .platform
            .push(req)
            .await
            .map_err(|e| anyhow::anyhow!("cancel push: {e}"))?;
        let ok = out.statuses.contains(&200);
        self.platform_orders[n].cancelled = ok;
        Ok(ok)
    }

    /// Waits until nothing is owed, the agent's queue is empty and every
    /// ticket is printed, and the platform heard of each accept; up to 90 s.
    /// Returns what is still outstanding (empty when drained).
    async fn drain(&mut self) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.pay_owed().await?;
            let mut left = Vec::new();
            if !self.owed.is_empty() {
                left.push(format!("{} script actions owed", self.owed.len()));
            }
            let s = self.status().await?;
            let pending = s["queue"]["pending"].as_i64().unwrap_or(-1);
            if pending != 0 {
                left.push(format!("agent queue pending {pending}"));
            }
            let t = self
                .get(&format!("{}/api/tickets?limit=500", self.agent))
                .await?;
            let unprinted = t["tickets"]
                .as_array()
                .map(|ts| ts.iter().filter(|t| t["state"] != "printed").count())
                .unwrap_or(0);
            if unprinted > 0 {
                left.push(format!("{unprinted} tickets not printed"));
            }
            let unconfirmed = self
                .platform_orders
                .iter()
                .filter(|p| p.accepted)
                .filter(|p| {
                    self.platform
                        .order(&p.poid)
                        .is_none_or(|o| o.status != 4 && o.status != 9)
                })
                .count();
            if unconfirmed > 0 {
                left.push(format!("{unconfirmed} accepts not at the platform"));
            }
            match self.outbox_undelivered().await {
                Ok(0) => {}
                Ok(n) => left.push(format!("{n} outbox rows undelivered")),
                Err(e) => left.push(format!("the outbox unreadable: {e:#}")),
            }
            if left.is_empty() || Instant::now() > deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Outbox rows not delivered (pending, delivering, failed).
    async fn outbox_undelivered(&self) -> anyhow::Result<u64> {
        let mut n = 0u64;
        for state in ["pending", "delivering", "failed"] {
            let url = self
                .gateway_url(&format!("/api/v1/outbox?state={state}&limit=1000"))
                .context("no gateway")?;
            let r = self.http.get(url).bearer_auth(&self.admin).send().await?;
            anyhow::ensure!(
                r.status().is_success(),
                "GET /api/v1/outbox: {}",
                r.status()
            );
            let v: Value = r.json().await?;
            let k = v["entries"].as_array().map_or(0, Vec::len);
            n = n.saturating_add(k as u64);
        }
        Ok(n)
    }

    async fn report(&mut self, args: &Args, drained: Vec<String>) -> anyhow::Result<Report> {
        let mut checks = BTreeMap::new();
        let mut check = |name: &str, pass: bool, reason: String| {
            checks.insert(name.to_owned(), Check { pass, reason });
        };
        check(
            "drained",
            drained.is_empty(),
            if drained.is_empty() {
                "nothing owed, queue empty, tickets printed".into()
            } else {
                format!("after 90 s still: {}", drained.join("; "))
            },
        );

        // What the gateway holds.
        let url = self
            .gateway_url(&format!("/api/v1/stores/{STORE}/orders?limit=1000"))
            .context("no gateway at the end of the day")?;
        let r = self.http.get(url).bearer_auth(&self.admin).send().await?;
        anyhow::ensure!(r.status().is_success(), "listing orders: {}", r.status());
        let v: Value = r.json().await?;
        let mut orders: Vec<Value> = v["orders"].as_array().cloned().unwrap_or_default();
        // What the agent holds.
        let agent_sales = self
            .get(&format!("{}/api/sales?limit=1000", self.agent))
            .await?["sales"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let by_local: HashMap<i64, &Value> = agent_sales
            .iter()
            .filter_map(|s| s["local_no"].as_i64().map(|n| (n, s)))
            .collect();

        let mut acked_sales = self.sales.clone();
        match args.breaks {
            Some(Break::DropOneSale) => {
                acked_sales.pop();
            }
            Some(Break::HideOneOrder) => {
                if let Some(i) = orders.iter().position(|o| o["channel"] == "terminal") {
                    orders.remove(i);
                }
            }
            None => {}
        }

        let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
        for o in &orders {
            let c = o["channel"].as_str().unwrap_or("?").to_owned();
            *by_channel.entry(c).or_default() += 1;
        }
        let gateway_ids: HashSet<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();

        // Counter sales: each acknowledged one is one gateway order.
        let mut lost = Vec::new();
        let mut sale_orders: HashMap<String, i64> = HashMap::new();
        let mut offline_uploaded = 0u64;
        for s in &acked_sales {
            let a = by_local.get(&s.local_no);
            let id = a.and_then(|a| a["order_id"].as_str());
            match id {
                Some(id) if gateway_ids.contains(id) => {
                    sale_orders.insert(id.to_owned(), s.local_no);
                    if s.offline && a.is_some_and(|a| a["state"] == "uploaded") {
                        offline_uploaded += 1;
                    }
                }
                _ => lost.push(format!("sale {} ({})", s.local_no, s.client_order_id)),
            }
        }
        let terminal_orders: Vec<&Value> = orders
            .iter()
            .filter(|o| o["channel"] == "terminal")
            .collect();
        let mut dups = Vec::new();
        for o in &terminal_orders {
            let id = o["id"].as_str().unwrap_or("");
            if !sale_orders.contains_key(id) {
                dups.push(format!("counter order {id} not acknowledged to the script"));
            }
        }
        // Platform orders: one gateway order per acknowledged push.
        let mut per_poid: HashMap<&str, Vec<&Value>> = HashMap::new();
        for o in orders.iter().filter(|o| o["channel"] == "third_party") {
            if let Some(p) = o["channel_order_id"].as_str() {
                per_poid.entry(p).or_default().push(o);
            }
        }
        let acked_platform: Vec<&PlatformOrderState> =
            self.platform_orders.iter().filter(|p| p.acked).collect();
        let mut cancel_wrong = Vec::new();
        let mut accept_wrong = Vec::new();
        for p in &acked_platform {
            match per_poid.get(p.poid.as_str()).map(Vec::as_slice) {
                None | Some([]) => lost.push(format!("platform order {}", p.poid)),
                Some([o, rest @ ..]) => {
                    for _ in rest {
                        dups.push(format!("platform order {} more than once", p.poid));
                    }
                    if p.cancelled && o["status"] != "cancelled" {
                        cancel_wrong.push(format!("{} is {}", p.poid, o["status"]));
                    }
                    if p.accepted && !p.cancelled && o["status"] != "accepted" {
                        accept_wrong.push(format!("{} is {}", p.poid, o["status"]));
                    }
                    if p.accepted
                        && self
                            .platform
                            .order(&p.poid)
                            .is_none_or(|po| po.status != 4 && po.status != 9)
                    {
                        accept_wrong.push(format!("the platform never heard {} accepted", p.poid));
                    }
                }
            }
        }
        for (poid, _) in per_poid.iter() {
            if !acked_platform.iter().any(|p| p.poid == *poid) {
                dups.push(format!("platform order {poid} never acknowledged"));
            }
        }

        // What the printer printed: receipts and pick tickets by their QR.
        let printed = self
            .get(&format!("{}/printer/receipts", self.devices))
            .await?["receipts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut receipt_keys: HashMap<String, i64> = HashMap::new();
        for s in &acked_sales {
            receipt_keys.insert(s.client_order_id.clone(), s.local_no);
            if let Some(id) = by_local
                .get(&s.local_no)
                .and_then(|a| a["order_id"].as_str())
            {
                receipt_keys.insert(id.to_owned(), s.local_no);
            }
        }
        let poid_of: HashMap<String, String> = per_poid
            .iter()
            .filter_map(|(p, os)| {
                os[0]["id"]
                    .as_str()
                    .map(|id| (id.to_owned(), (*p).to_owned()))
            })
            .collect();
        let mut receipts: HashMap<i64, u64> = HashMap::new();
        let mut picks: HashMap<String, u64> = HashMap::new();
        let mut receipts_printed = 0u64;
        let mut tickets_printed = 0u64;
        for r in printed.iter().filter(|r| r["cut"] == true) {
            let text = r["text"].as_str().unwrap_or("");
            if text.contains("REPRINT") {
                continue;
            }
            let Some(q) = r["qr"][0].as_str() else {
                continue;
            };
            if let Some(local_no) = receipt_keys.get(q) {
                receipts_printed += 1;
                *receipts.entry(*local_no).or_default() += 1;
            } else if let Some(poid) = poid_of.get(q) {
                tickets_printed += 1;
                if !text.contains("CANCELLED") {
                    *picks.entry(poid.clone()).or_default() += 1;
                }
            }
        }
        let receipts_wrong: Vec<String> = acked_sales
            .iter()
            .filter_map(|s| {
                let n = receipts.get(&s.local_no).copied().unwrap_or(0);
                (n != 1).then(|| format!("sale {} printed {n}×", s.local_no))
            })
            .collect();
        let tickets_duplicated: u64 = picks.values().map(|n| n.saturating_sub(1)).sum();
        let picks_missing: Vec<String> = acked_platform
            .iter()
            .filter(|p| p.accepted && !picks.contains_key(&p.poid))
            .map(|p| p.poid.clone())
            .collect();

        // The provider's ledger against the code-paid sales.
        let ledger = self.get(&format!("{}/ledger", self.pay)).await?["charges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut charges: BTreeMap<String, u64> = BTreeMap::new();
        let mut paid_fen = 0i64;
        let mut paid_n = 0u64;
        for c in &ledger {
            let state = c["state"].as_str().unwrap_or("?").to_owned();
            if state == "SUCCESS" {
                paid_n += 1;
                paid_fen = paid_fen.saturating_add(c["total_fen"].as_i64().unwrap_or(0));
            }
            *charges.entry(state).or_default() += 1;
        }
        let charges_not_final = charges
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "USERPAYING" | "NOTPAY"))
            .map(|(_, n)| *n)
            .sum::<u64>();
        let mut code_n = 0u64;
        let mut code_fen = 0i64;
        let mut bad_totals = 0u64;
        for s in &self.sales {
            let Some(a) = by_local.get(&s.local_no) else {
                continue;
            };
            if a["tender"] == "wechatpay" {
                code_n += 1;
                match a["total"].as_str().and_then(fen) {
                    Some(f) => code_fen = code_fen.saturating_add(f),
                    None => bad_totals += 1,
                }
            }
        }
        let ledger_mismatches =
            code_n.abs_diff(paid_n) + u64::from(code_fen != paid_fen) + bad_totals;
        let outbox_undelivered = self.outbox_undelivered().await?;

        let sum_or_none = |v: &[String]| -> String {
            if v.is_empty() {
                "none".into()
            } else {
                let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
                if v.len() > 5 {
                    s.push_str(&format!(" (+{} more)", v.len() - 5));
                }
                s
            }
        };
        check("no_lost_orders", lost.is_empty(), sum_or_none(&lost));
        check("no_duplicate_orders", dups.is_empty(), sum_or_none(&dups));
        check(
            "counter_sales_on_gateway",
            terminal_orders.len() == acked_sales.len(),
            format!(
                "{} acknowledged, {} counter orders on the gateway",
                acked_sales.len(),
                terminal_orders.len()
            ),
        );
        check(
            "receipts_once",
            receipts_wrong.is_empty(),
            if receipts_wrong.is_empty() {
                format!("{} sales, one receipt each", acked_sales.len())
            } else {
                sum_or_none(&receipts_wrong)
            },
        );
        check(
            "pick_tickets_once",
            tickets_duplicated == 0 && picks_missing.is_empty(),
            format!(
                "{} accepted here, {} without a ticket, {} duplicated",
                acked_platform.iter().filter(|p| p.accepted).count(),
                picks_missing.len(),
                tickets_duplicated
            ),
        );
        check(
            "cancels_applied",
            cancel_wrong.is_empty(),
            sum_or_none(&cancel_wrong),
        );
        check(
            "accepts_applied",
            accept_wrong.is_empty(),
            sum_or_none(&accept_wrong),
        );

        check(
            "charges_final",
            charges_not_final == 0,
            format!("{charges_not_final} charges not final"),
        );
        check(
            "ledger_matches_sales",
            ledger_mismatches == 0,
            format!(
                "{code_n} code-paid sales ({}), {paid_n} paid charges ({})",
                yuan(code_fen),
                yuan(paid_fen)
            ),
        );
        check(
            "outbox_delivered",
            outbox_undelivered == 0,
            format!("{outbox_undelivered} outbox rows undelivered"),
        );

        let mut acknowledged = BTreeMap::new();
        acknowledged.insert("terminal".to_owned(), acked_sales.len() as u64);
        acknowledged.insert("third_party".to_owned(), acked_platform.len() as u64);
        let store = StoreReport {
            store: STORE.to_owned(),
            orders_by_channel: by_channel,
            orders_acknowledged: acknowledged,
            orders_on_gateway: orders.len() as u64,
            duplicates: dups.len() as u64,
            lost: lost.len() as u64,
            receipts_printed,
            tickets_printed,
            tickets_duplicated,
            cancels_acknowledged: acked_platform.iter().filter(|p| p.cancelled).count() as u64,
            accepts_acknowledged: acked_platform.iter().filter(|p| p.accepted).count() as u64,
            offline_sales_uploaded: offline_uploaded,
            charges,
            charges_not_final,
            ledger_mismatches,
            outbox_undelivered,
        };
        Ok(Report {
            seed: args.seed,
            minutes: args.minutes,
            faults: args.faults.as_str().to_owned(),
            database: String::new(),
            breaks: args.breaks,
            elapsed_s: self.started.elapsed().as_secs(),
            total: store.clone(),
            stores: vec![store],
            faults_injected: self.faults_injected.clone(),
            checks,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_parse_to_fen_or_not_at_all() {
        assert_eq!(super::fen("22.66"), Some(2266));
        assert_eq!(super::fen("0.05"), Some(5));
        for bad in ["22.6", "22", "-1.00", "1.0a", ".50", "9999999999999.00"] {
            assert_eq!(super::fen(bad), None, "{bad}");
        }
        assert_eq!(super::yuan(2266), "22.66");
    }
}
