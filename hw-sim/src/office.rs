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

pub use plan::{Event, FaultKind, Faults, Line, Plan, Step, Target, Tender};

/// The WeChat Pay merchant the payment simulator and the gateway share.
const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const PAY_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
/// The platform app both sides sign with.
const MT_APP_ID: &str = "office-mt";
const MT_SECRET: &str = "office-mt-secret-0123";

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
    #[arg(long, conflicts_with = "against")]
    pub database_url: Option<String>,
    /// Play the day against this running gateway (`http://host:port`)
    /// instead of starting one: it must charge the payment simulator at
    /// `--pay-listen` and call the platform simulator at
    /// `--platform-listen` with the simulators' test credentials (see
    /// README). It is not killed and restarted (that fault is skipped) and
    /// its stock is left as it is.
    #[arg(long, requires_all = ["admin_key", "app_key", "terminal_key", "terminal_id"])]
    pub against: Option<String>,
    /// With `--against`: an admin key.
    #[arg(long, env = "OFFICE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// With `--against`: an app key.
    #[arg(long, env = "OFFICE_APP_KEY", hide_env_values = true)]
    pub app_key: Option<String>,
    /// With `--against`: a terminal key of `--store`.
    #[arg(long, env = "OFFICE_TERMINAL_KEY", hide_env_values = true)]
    pub terminal_key: Option<String>,
    /// With `--against`: that key's terminal id.
    #[arg(long, env = "OFFICE_TERMINAL_ID")]
    pub terminal_id: Option<String>,
    /// With `--against`: the store the day is played in.
    #[arg(long, default_value = "S001")]
    pub store: String,
    /// Where the payment simulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub pay_listen: std::net::SocketAddr,
    /// Where the platform simulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub platform_listen: std::net::SocketAddr,
    /// The `gateway` binary (default: next to this one).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The `terminal` binary (default: next to this one).
    #[arg(long)]
    pub terminal_bin: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Leave this fault of the plan out (its name as the report shows it,
    /// e.g. `printer_power_cycle_mid_job`; repeatable), to narrow a failure
    /// down.
    #[arg(long = "skip-fault")]
    pub skip_faults: Vec<String>,
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
    if let Some(images) = &report.receipt_images {
        println!("receipts: {images}");
    }
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
    for f in &a.skip_faults {
        s.push_str(&format!(" --skip-fault {f}"));
    }
    if let Some(u) = &a.against {
        s.push_str(&format!(
            " --against {u} --store {} (keys from the environment)",
            a.store
        ));
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
    /// Sales whose receipt is on paper (an original, or only a REPRINT of
    /// one whose job was cut short).
    pub receipts_printed: u64,
    pub tickets_printed: u64,
    pub tickets_duplicated: u64,
    pub cancels_acknowledged: u64,
    pub accepts_acknowledged: u64,
    pub rejects_acknowledged: u64,
    pub ready_acknowledged: u64,
    pub completes_acknowledged: u64,
    /// App orders that arrived paid in the app.
    pub app_orders_prepaid: u64,
    /// Basket lines the agent refused (by status and code), e.g. a weight
    /// that did not settle: the sale goes on without them.
    pub basket_lines_refused: BTreeMap<String, u64>,
    /// Refunds by line (goods back into stock) of code-paid counter sales:
    /// asked for, and succeeded on the gateway.
    pub refunds_requested: u64,
    pub refunds_succeeded: u64,
    pub offline_sales_uploaded: u64,
    /// The payment simulator's charges by their final state.
    pub charges: BTreeMap<String, u64>,
    /// Charges still USERPAYING or NOTPAY after the drain.
    pub charges_not_final: u64,
    /// Code-paid sales and paid charges that do not match one to one (count
    /// and sum of amounts).
    pub ledger_mismatches: u64,
    /// Store items whose on hand less reserved differs from the day's
    /// start less what the gateway's orders took (open ones reserve,
    /// completed ones consume, rejected and cancelled ones give back) plus
    /// what refunds put back.
    pub stock_mismatches: u64,
    /// Outbox rows (calls to the platform) pending, delivering or failed.
    pub outbox_undelivered: u64,
    pub faults_injected: Vec<String>,
    pub checks: BTreeMap<String, Check>,
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
    /// Faults of the plan the harness cannot inject here, with why.
    pub faults_skipped: Vec<String>,
    pub checks: BTreeMap<String, Check>,
    /// With `--report FILE`: where the printer's receipts and tickets were
    /// drawn as PNG images (`receipts/` beside the report), how many, or why
    /// not (no CJK font).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_images: Option<String>,
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
                "rejects/ready/complete",
                format!(
                    "{} / {} / {}",
                    st.rejects_acknowledged, st.ready_acknowledged, st.completes_acknowledged
                ),
            );
            row(
                &mut s,
                "app_orders_prepaid",
                st.app_orders_prepaid.to_string(),
            );
            row(&mut s, "basket_lines_refused", by(&st.basket_lines_refused));
            row(
                &mut s,
                "refunds",
                format!(
                    "{} requested, {} succeeded",
                    st.refunds_requested, st.refunds_succeeded
                ),
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
            row(&mut s, "stock_mismatches", st.stock_mismatches.to_string());
            row(
                &mut s,
                "outbox_undelivered",
                st.outbox_undelivered.to_string(),
            );
            row(
                &mut s,
                "faults_injected",
                st.faults_injected.len().to_string(),
            );
            let failed = st.checks.values().filter(|c| !c.pass).count();
            row(
                &mut s,
                "checks",
                format!("{} passed, {failed} failed", st.checks.len() - failed),
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
        for f in &self.faults_skipped {
            s.push_str(&format!("  skipped: {f}\n"));
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
    /// `None`: a gateway this run did not start (`--against`).
    child: Option<Child>,
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
        Ok((
            Gateway {
                child: Some(child),
                addr,
            },
            printed,
        ))
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
    /// Paid with a payment code (the gateway holds its charge).
    code_paid: bool,
    /// A refund by line was asked for.
    refunded: bool,
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
    steps: Steps,
}

/// The steps the script was told succeeded (besides the accept).
#[derive(Debug, Clone, Copy, Default)]
struct Steps {
    rejected: bool,
    ready: bool,
    completed: bool,
}

impl Steps {
    /// The status the gateway must show, by what was acknowledged.
    fn expected(&self, accepted: bool, cancelled: bool) -> Option<&'static str> {
        if cancelled {
            Some("cancelled")
        } else if self.rejected {
            Some("rejected")
        } else if self.completed {
            Some("completed")
        } else if self.ready {
            Some("ready")
        } else if accepted {
            Some("accepted")
        } else {
            None
        }
    }
}

/// An app order (channel official).
#[derive(Debug, Clone, Default)]
struct AppOrderState {
    /// The app's own number for it (`channel_order_id`).
    ref_no: String,
    lines: Vec<(&'static str, u32)>,
    prepaid: bool,
    /// The gateway's id, once created (201/200).
    id: Option<String>,
    accepted: bool,
    steps: Steps,
}

/// A refund by line the script asked for.
#[derive(Debug, Clone)]
struct RefundAsked {
    order_id: String,
    local_no: i64,
}

/// Work the script owes but could not do yet (the gateway away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Push(usize),
    Cancel(usize),
    App(usize),
    Act(Target, Step),
    /// Refund counter sale `local_no`.
    Refund(i64),
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
    app_key: String,
    /// The store the day is played in.
    store: String,
    skip_faults: Vec<String>,
    /// Basket lines the agent refused, by status and code.
    lines_refused: BTreeMap<String, u64>,
    /// A gateway this run did not start (`--against`): not restarted, its
    /// stock left as it is.
    against: bool,
    /// The store's orders before the day (`--against`): not the day's.
    orders_before: HashSet<String>,
    sales: Vec<Sale>,
    platform_orders: Vec<PlatformOrderState>,
    app_orders: Vec<AppOrderState>,
    /// Platform orders held for the reordered pushes.
    held_pushes: Vec<usize>,
    refunds: Vec<RefundAsked>,
    /// On hand less reserved per SKU (milli-units) at the day's start.
    stock_start: BTreeMap<String, i64>,
    faults_skipped: Vec<String>,
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

/// "12.500" or "2" → milli-units (12500, 2000); `None` unless a plain
/// decimal with at most three places.
fn milli(s: &str) -> Option<i64> {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if w.is_empty() || w.len() > 12 || f.len() > 3 {
        return None;
    }
    if !w.bytes().chain(f.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{f:0<3}").parse::<i64>().ok()?;
    w.parse::<i64>().ok()?.checked_mul(1000)?.checked_add(frac)
}

fn thousandths(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let m = milli.unsigned_abs();
    format!("{sign}{}.{:03}", m / 1000, m % 1000)
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
        let l = TcpListener::bind(args.pay_listen)
            .await
            .with_context(|| format!("the payment simulator on {}", args.pay_listen))?;
        let pay_base = format!("http://{}", l.local_addr()?);
        tokio::spawn(provider.serve(l, std::future::pending::<()>()));

        // The platform first (the gateway needs its URL), told the
        // gateway's once it listens.
        let mut pc = PlatformConfig::new("http://127.0.0.1:9", MT_APP_ID, MT_SECRET);
        pc.listen = args.platform_listen;
        let platform = PlatformSim::start(pc)
            .await
            .with_context(|| format!("the platform simulator on {}", args.platform_listen))?;

        let (db_url, database) = match (&args.against, &args.database_url) {
            (Some(u), _) => (String::new(), format!("against {u}")),
            (None, Some(u)) => (u.clone(), "postgres".to_owned()),
            (None, None) => (
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
        let store = args.store.clone();
        let (gateway, admin, app_key, tkey, tid) = match &args.against {
            Some(url) => {
                let addr = url
                    .strip_prefix("http://")
                    .context("--against takes http://host:port")?
                    .trim_end_matches('/')
                    .to_owned();
                let key = |k: &Option<String>, what: &str| {
                    k.clone().with_context(|| format!("--against needs {what}"))
                };
                (
                    Gateway { child: None, addr },
                    key(&args.admin_key, "--admin-key")?,
                    key(&args.app_key, "--app-key")?,
                    key(&args.terminal_key, "--terminal-key")?,
                    key(&args.terminal_id, "--terminal-id")?,
                )
            }
            None => {
                let (gateway, demo) = match gw_spec.start(true).await {
                    Ok(started) => started,
                    Err(e) => {
                        // Keep its log for a look.
                        let kept = dir.keep();
                        return Err(e.context(format!("logs kept in {}", kept.display())));
                    }
                };
                (
                    gateway,
                    demo_value(&demo, "demo admin key:")?,
                    demo_value(&demo, "demo app key:")?,
                    demo_value(&demo, &format!("demo terminal key {store}:"))?,
                    demo_value(&demo, &format!("demo terminal id {store}:"))?,
                )
            }
        };
        platform.set_gateway_url(&format!("http://{}", gateway.addr));

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
store_id = "{store}"
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
            app_key,
            store,
            skip_faults: args.skip_faults.clone(),
            lines_refused: BTreeMap::new(),
            against: args.against.is_some(),
            orders_before: HashSet::new(),
            sales: Vec::new(),
            platform_orders: Vec::new(),
            app_orders: Vec::new(),
            held_pushes: Vec::new(),
            refunds: Vec::new(),
            stock_start: BTreeMap::new(),
            faults_skipped: Vec::new(),
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
        let result = match office.stock_up().await {
            Ok(()) => office.day(&plan, args).await,
            Err(e) => Err(e),
        };
        // Stop the children before the temp dir goes.
        let mut agent_child = agent_child;
        let _ = agent_child.kill().await;
        if let Some(mut g) = office.gateway.take()
            && let Some(c) = g.child.as_mut()
        {
            let _ = c.kill().await;
        }
        devices.unplug_all();
        office.platform.stop();
        match result {
            Ok(mut r) => {
                r.database = database;
                if let Some(report) = &args.report {
                    let folder = report
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .join("receipts");
                    let d = Arc::clone(&devices);
                    let to = folder.clone();
                    let drawn = tokio::task::spawn_blocking(move || d.write_pngs(&to)).await;
                    r.receipt_images = Some(match drawn {
                        Ok(Ok(n)) => format!("{n} images in {}", folder.display()),
                        Ok(Err(e)) => format!("not drawn: {e:#}"),
                        Err(e) => format!("not drawn: {e}"),
                    });
                }
                if r.checks.values().any(|c| !c.pass) {
                    let kept = dir.keep();
                    eprintln!("logs kept in {}", kept.display());
                }
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

    /// The day's clock and counters, for the progress bar or line.
    fn counters(&self, at_ms: u64) -> String {
        let acked: usize = self.platform_orders.iter().filter(|p| p.acked).count();
        let app: usize = self.app_orders.iter().filter(|o| o.id.is_some()).count();
        format!(
            "[{} {:>4}s] sales {} · app {} · platform {} · refunds {} · faults {}{}",
            day_clock(at_ms, self.day_ms),
            self.started.elapsed().as_secs(),
            self.sales.len(),
            app,
            acked,
            self.refunds.len(),
            self.faults_injected.len(),
            if self.away { " · gateway away" } else { "" }
        )
    }

    async fn day(&mut self, plan: &Plan, args: &Args) -> anyhow::Result<Report> {
        use std::io::IsTerminal;
        let start = Instant::now();
        let mut last_progress = 0u64;
        // A bar on a terminal; a plain line every 5 s of the day otherwise
        // (a log, a test).
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(plan.events.len() as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg}\n{wide_bar} {pos}/{len} events")
            {
                b.set_style(style);
            }
            b
        });
        for (i, ev) in plan.events.iter().enumerate() {
            let due = start + Duration::from_millis(ev.at_ms);
            tokio::time::sleep_until(due.into()).await;
            self.event(&ev.event, ev.at_ms).await?;
            if !self.away {
                self.pay_owed().await?;
            }
            match &bar {
                Some(b) => {
                    b.set_position(i as u64 + 1);
                    b.set_message(self.counters(ev.at_ms));
                }
                None if ev.at_ms >= last_progress + 5_000 => {
                    last_progress = ev.at_ms;
                    eprintln!("{}", self.counters(ev.at_ms));
                }
                None => {}
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
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
                    repeat: (*repeat).max(1),
                    ..Default::default()
                };
                if *repeat == 0 {
                    // Pushed by the reordering fault, just after.
                    self.held_pushes.push(*n);
                    return Ok(());
                }
                self.try_owed(Owed::Push(*n)).await
            }
            Event::Cancel { n } => self.try_owed(Owed::Cancel(*n)).await,
            Event::App { n, lines, prepaid } => {
                while self.app_orders.len() <= *n {
                    self.app_orders.push(AppOrderState::default());
                }
                self.app_orders[*n] = AppOrderState {
                    ref_no: format!("APP-{}-{n:05}", self.seed),
                    lines: lines.clone(),
                    prepaid: *prepaid,
                    ..Default::default()
                };
                self.try_owed(Owed::App(*n)).await
            }
            Event::Act { target, step } => self.try_owed(Owed::Act(*target, *step)).await,
            Event::Refund => {
                let Some(s) = self
                    .sales
                    .iter_mut()
                    .rev()
                    .find(|s| s.code_paid && !s.refunded && !s.offline)
                else {
                    return Ok(());
                };
                s.refunded = true;
                let local_no = s.local_no;
                self.try_owed(Owed::Refund(local_no)).await
            }
            Event::Fault { kind, secs } => {
                let why = match kind {
                    FaultKind::GatewayRestart if self.against => {
                        Some("a gateway this run did not start is not killed (--against)")
                    }
                    k if self.skip_faults.iter().any(|f| f == k.as_str()) => {
                        Some("left out (--skip-fault)")
                    }
                    _ => kind.skipped(),
                };
                if let Some(why) = why {
                    self.faults_skipped
                        .push(format!("{} at {when}: {why}", kind.as_str()));
                    return Ok(());
                }
                self.faults_injected
                    .push(format!("{} at {when} for {secs} s", kind.as_str()));
                self.fault(*kind, *secs).await
            }
            Event::FaultEnd { kind } => {
                if (*kind == FaultKind::GatewayRestart && self.against)
                    || self.skip_faults.iter().any(|f| f == kind.as_str())
                {
                    return Ok(());
                }
                self.fault_end(*kind).await
            }
        }
    }

    async fn fault(&mut self, kind: FaultKind, secs: u64) -> anyhow::Result<()> {
        let printer = format!("{}/printer/state", self.devices);
        let line = |d: &str| format!("{}/lines/{d}/faults", self.devices);
        match kind {
            FaultKind::ScaleNoise => {
                self.put(
                    &line("scale"),
                    json!({"bit_error_rate": 0.002, "seed": self.seed}),
                )
                .await
            }
            FaultKind::CablePulled => self.put(&line("scale"), json!({"plugged": false})).await,
            FaultKind::LostAck => {
                // The counter's next order upload (SOAP SubmitOrder).
                self.link.lose_next_answer("SubmitOrder");
                Ok(())
            }
            FaultKind::PushesReordered => {
                let held = std::mem::take(&mut self.held_pushes);
                // b a b a: the later order first, each twice, one after
                // the other.
                for &n in held.iter().rev().chain(held.iter().rev()) {
                    let Some(p) = self.platform_orders.get(n) else {
                        continue;
                    };
                    if p.acked {
                        let mut req = PushRequest::new_order(&self.store, p.items.clone());
                        req.order.order_id = Some(p.poid.clone());
                        self.platform
                            .push(req)
                            .await
                            .map_err(|e| anyhow::anyhow!("push again: {e}"))?;
                    } else {
                        self.try_owed(Owed::Push(n)).await?;
                    }
                }
                Ok(())
            }
            FaultKind::PrinterPowerCycle => {
                // Loses power a little way into the next job (after the
                // status requests before it), back on a second later.
                let _ = secs;
                self.put(
                    &line("printer"),
                    json!({"unplug_after_bytes": 60, "replug_after_ms": 1000}),
                )
                .await
            }
            FaultKind::WechatNegative | FaultKind::ClockJump | FaultKind::DiskFull => Ok(()),
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
                if let Some(mut g) = self.gateway.take()
                    && let Some(c) = g.child.as_mut()
                {
                    c.kill().await.context("killing the gateway")?;
                    let _ = c.wait().await;
                }
                Ok(())
            }
        }
    }

    async fn fault_end(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let printer = format!("{}/printer/state", self.devices);
        let line = |d: &str| format!("{}/lines/{d}/faults", self.devices);
        match kind {
            FaultKind::ScaleNoise => self.put(&line("scale"), json!({})).await,
            FaultKind::CablePulled => self.put(&line("scale"), json!({"plugged": true})).await,
            FaultKind::LostAck => {
                self.link.disarm();
                if let Some(f) = self
                    .faults_injected
                    .iter_mut()
                    .rev()
                    .find(|f| f.starts_with("lost_ack"))
                {
                    f.push_str(&format!(" ({} answers lost)", self.link.answers_lost()));
                }
                Ok(())
            }
            // The power comes back by itself (a trap no job sprang yet
            // springs on the next one: a power cycle mid-job all the same).
            FaultKind::PrinterPowerCycle => Ok(()),
            FaultKind::PushesReordered
            | FaultKind::WechatNegative
            | FaultKind::ClockJump
            | FaultKind::DiskFull => Ok(()),
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

    /// A call to the gateway with `key`; `None` when the gateway is down or
    /// did not answer.
    async fn gw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        idem: Option<&str>,
    ) -> Option<(u16, Value)> {
        let url = self.gateway_url(path)?;
        let mut rb = self.http.request(method, url).bearer_auth(key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        if let Some(k) = idem {
            rb = rb.header("Idempotency-Key", k);
        }
        let r = rb.send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The store's catalog as the gateway has it.
    async fn catalog(&self) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/stores/{}/catalog", self.store);
        match self
            .gw(reqwest::Method::GET, &path, &self.admin, None, None)
            .await
        {
            Some((200, v)) => Ok(v["items"].as_array().cloned().unwrap_or_default()),
            other => bail!("GET {path}: {other:?}"),
        }
    }

    /// On hand less reserved per SKU, in milli-units.
    async fn stock(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for it in self.catalog().await? {
            let sku = it["sku"].as_str().context("a catalog item without sku")?;
            let q = |k: &str| {
                it[k]
                    .as_str()
                    .and_then(milli)
                    .with_context(|| format!("{sku}: {k} {}", it[k]))
            };
            out.insert(sku.to_owned(), q("on_hand")?.saturating_sub(q("reserved")?));
        }
        Ok(out)
    }

    /// Stock for a long day (the demo's runs out in a few minutes), then
    /// what the day starts from.
    async fn stock_up(&mut self) -> anyhow::Result<()> {
        if self.against {
            let path = format!("/api/v1/stores/{}/orders?limit=1000", self.store);
            match self
                .gw(reqwest::Method::GET, &path, &self.admin, None, None)
                .await
            {
                Some((200, v)) => {
                    self.orders_before = v["orders"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|o| o["id"].as_str().map(str::to_owned))
                        .collect();
                }
                other => bail!("GET {path}: {other:?}"),
            }
        }
        for it in self.catalog().await? {
            if self.against {
                break; // its stock is its own
            }
            let sku = it["sku"].as_str().unwrap_or("");
            let on_hand = if it["unit"] == "kg" {
                "5000.000"
            } else {
                "50000"
            };
            let path = format!("/api/v1/stores/{}/items/{sku}", self.store);
            match self
                .gw(
                    reqwest::Method::PUT,
                    &path,
                    &self.admin,
                    Some(json!({"on_hand": on_hand})),
                    None,
                )
                .await
            {
                Some((200, _)) => {}
                other => bail!("PUT {path}: {other:?}"),
            }
        }
        self.stock_start = self.stock().await?;
        Ok(())
    }

    /// Creates app order `n` (idempotent: its own number and key).
    async fn app_order(&mut self, n: usize) -> anyhow::Result<bool> {
        let o = &self.app_orders[n];
        if o.id.is_some() {
            return Ok(true);
        }
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
            .collect();
        let mut body = json!({
            "store_id": self.store,
            "lines": lines,
            "channel_order_id": o.ref_no,
            "note": "app order",
        });
        if o.prepaid {
            // What the gateway's prices make it: the app charged that.
            let prices: HashMap<String, i64> = self
                .catalog()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|it| {
                    Some((it["sku"].as_str()?.to_owned(), fen(it["price"].as_str()?)?))
                })
                .collect();
            let mut total = 0i64;
            for (sku, q) in &o.lines {
                let p = prices
                    .get(*sku)
                    .copied()
                    .context("an app SKU not in the catalog")?;
                total = total
                    .checked_add(p.checked_mul(i64::from(*q)).context("too much")?)
                    .context("too much")?;
            }
            body["prepaid"] = json!({
                "provider": "wechatpay",
                "transaction_id": format!("4200{}", o.ref_no.replace('-', "")),
                "amount": yuan(total),
            });
        }
        let key = format!("office-{}", o.ref_no);
        let Some((st, v)) = self
            .gw(
                reqwest::Method::POST,
                "/api/v1/orders",
                &self.app_key.clone(),
                Some(body),
                Some(&key),
            )
            .await
        else {
            return Ok(false);
        };
        match st {
            200 | 201 => {
                self.app_orders[n].id = v["id"].as_str().map(str::to_owned);
                Ok(self.app_orders[n].id.is_some())
            }
            500..=599 => Ok(false),
            _ => bail!("the gateway refused app order {n} ({st}): {v}"),
        }
    }

    /// Moves an order of another channel on: accept and reject at the
    /// counter (the agent's queue), ready and complete on the gateway.
    async fn act(&mut self, target: Target, step: Step) -> anyhow::Result<bool> {
        let (id, accepted, cancelled, steps) = match target {
            Target::Platform(n) => {
                let p = &self.platform_orders[n];
                if !p.acked {
                    return Ok(false);
                }
                let (accepted, cancelled, steps) = (p.accepted, p.cancelled, p.steps);
                let poid = p.poid.clone();
                (self.gateway_id(&poid).await?, accepted, cancelled, steps)
            }
            Target::App(n) => {
                let o = &self.app_orders[n];
                (o.id.clone(), o.accepted, false, o.steps)
            }
        };
        let Some(id) = id else {
            return Ok(false);
        };
        if cancelled || steps.rejected {
            return Ok(true); // nothing left to move
        }
        let ready_for_it = match step {
            Step::Accept | Step::Reject => !accepted,
            Step::Ready => accepted && !steps.ready,
            Step::Complete => steps.ready && !steps.completed,
        };
        let waiting = match step {
            Step::Ready => !accepted,
            Step::Complete => !steps.ready,
            _ => false,
        };
        if waiting {
            return Ok(false); // its accept (or ready) is still owed
        }
        if !ready_for_it {
            return Ok(true);
        }
        let st = match step {
            Step::Accept | Step::Reject => {
                let body = if step == Step::Reject {
                    json!({"reason": "sold out"})
                } else {
                    json!({})
                };
                self.post(
                    &format!("{}/api/queue/{id}/{}", self.agent, step.as_str()),
                    body,
                )
                .await?
                .0
            }
            Step::Ready | Step::Complete => {
                let path = format!("/api/v1/orders/{id}/{}", step.as_str());
                match self
                    .gw(reqwest::Method::POST, &path, &self.admin, None, None)
                    .await
                {
                    Some((st, _)) => st,
                    None => return Ok(false),
                }
            }
        };
        let set = |accepted: &mut bool, steps: &mut Steps| match step {
            Step::Accept => *accepted = true,
            Step::Reject => steps.rejected = true,
            Step::Ready => steps.ready = true,
            Step::Complete => steps.completed = true,
        };
        match st {
            200 => {
                match target {
                    Target::Platform(n) => {
                        let p = &mut self.platform_orders[n];
                        set(&mut p.accepted, &mut p.steps);
                    }
                    Target::App(n) => {
                        let o = &mut self.app_orders[n];
                        set(&mut o.accepted, &mut o.steps);
                    }
                }
                Ok(true)
            }
            409 => Ok(true), // refused (e.g. cancelled first): nothing owed
            _ => Ok(false),  // not in the agent's queue yet, or the gateway away
        }
    }

    /// Refunds counter sale `local_no`'s first line, goods back into stock:
    /// the order is completed first (a restock needs a completed order).
    async fn refund(&mut self, local_no: i64) -> anyhow::Result<bool> {
        let sale = self
            .get(&format!("{}/api/sales/{local_no}", self.agent))
            .await?;
        let Some(id) = sale["order_id"].as_str().map(str::to_owned) else {
            return Ok(false); // not uploaded yet
        };
        for _ in 0..5 {
            let Some((200, o)) = self
                .gw(
                    reqwest::Method::GET,
                    &format!("/api/v1/orders/{id}"),
                    &self.admin,
                    None,
                    None,
                )
                .await
            else {
                return Ok(false);
            };
            let step = match o["status"].as_str().unwrap_or("") {
                "created" => "accept",
                "accepted" => "ready",
                "ready" => "complete",
                "completed" => {
                    let q = o["lines"][0]["quantity"].as_str().unwrap_or("1").to_owned();
                    let body = json!({
                        "request_id": format!("office-refund-{local_no}"),
                        "lines": [{"line_no": 1, "quantity": q}],
                        "restock": true,
                        "reason": "returned at the counter",
                    });
                    let path = format!("/api/v1/orders/{id}/refunds");
                    return match self
                        .gw(reqwest::Method::POST, &path, &self.admin, Some(body), None)
                        .await
                    {
                        Some((200 | 202, _)) => {
                            self.refunds.push(RefundAsked {
                                order_id: id,
                                local_no,
                            });
                            Ok(true)
                        }
                        Some((st, v)) if (400..500).contains(&st) => {
                            eprintln!("  refund of sale {local_no} refused ({st}): {v}");
                            Ok(true)
                        }
                        _ => Ok(false),
                    };
                }
                _ => return Ok(true), // rejected or cancelled: nothing to refund
            };
            let path = format!("/api/v1/orders/{id}/{step}");
            match self
                .gw(reqwest::Method::POST, &path, &self.admin, None, None)
                .await
            {
                Some((200 | 409, _)) => {}
                _ => return Ok(false),
            }
        }
        Ok(false)
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
                // The scale not settling, a line lost: the cashier moves on.
                let code = v["code"].as_str().unwrap_or("?").to_owned();
                *self
                    .lines_refused
                    .entry(format!("{st} {code}"))
                    .or_default() += 1;
            }
        }
        if added == 0 {
            return Ok(());
        }
        let checkout = format!("{}/api/checkout", self.agent);
        let offline = self.away;
        let mut sale = None;
        let mut code_paid = false;
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
                201 => {
                    sale = Some(v);
                    code_paid = true;
                }
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
                            code_paid = true;
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
                code_paid,
                refunded: false,
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
                Owed::Cancel(n) => self.cancel(n).await?,
                Owed::App(n) => self.app_order(n).await?,
                Owed::Act(t, step) => self.act(t, step).await?,
                Owed::Refund(local_no) => self.refund(local_no).await?,
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
        let mut req = PushRequest::new_order(&self.store, p.items.clone());
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
            "/api/v1/stores/{}/orders?channel=third_party&limit=1000",
            self.store
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
            let unprinted: Vec<&Value> = t["tickets"]
                .as_array()
                .map(|ts| ts.iter().filter(|t| t["state"] != "printed").collect())
                .unwrap_or_default();
            if let Some(first) = unprinted.first() {
                left.push(format!(
                    "{} tickets not printed (the first {} after {} attempts: {})",
                    unprinted.len(),
                    first["state"],
                    first["attempts"],
                    first["last_error"].as_str().unwrap_or("-")
                ));
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
            let mut refunds_open = 0;
            for r in &self.refunds {
                let v = self
                    .gw(
                        reqwest::Method::GET,
                        &format!("/api/v1/orders/{}/payments", r.order_id),
                        &self.admin,
                        None,
                        None,
                    )
                    .await;
                let open = v.is_none_or(|(_, v)| {
                    v["refunds"].as_array().is_none_or(|rs| {
                        rs.iter()
                            .any(|f| !matches!(f["state"].as_str(), Some("succeeded" | "failed")))
                    })
                });
                refunds_open += usize::from(open);
            }
            if refunds_open > 0 {
                left.push(format!("{refunds_open} refunds not final"));
            }
            match self.outbox_undelivered().await {
                Ok((0, _)) => {}
                Ok((n, _)) => left.push(format!("{n} outbox rows undelivered")),
                Err(e) => left.push(format!("the outbox unreadable: {e:#}")),
            }
            if left.is_empty() || Instant::now() > deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Outbox rows not delivered (pending, delivering, failed), and what
    /// they are.
    async fn outbox_undelivered(&self) -> anyhow::Result<(u64, Vec<String>)> {
        let mut n = 0u64;
        let mut what = Vec::new();
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
            let mut es = v["entries"].as_array().cloned().unwrap_or_default();
            if state == "failed" {
                // A call the platform refused because the order was closed
                // there meanwhile (a confirm after the customer cancelled),
                // for an order closed here too: nothing is owed.
                let mut open = Vec::new();
                for e in es {
                    let closed = match e["order_id"].as_str() {
                        Some(id) => matches!(
                            self.gw(
                                reqwest::Method::GET,
                                &format!("/api/v1/orders/{id}"),
                                &self.admin,
                                None,
                                None,
                            )
                            .await,
                            Some((200, o)) if matches!(o["status"].as_str(), Some("cancelled" | "rejected"))
                        ),
                        None => false,
                    };
                    let refused_as_closed = e["last_error"]
                        .as_str()
                        .is_some_and(|m| m.contains("platform refused"));
                    if closed && refused_as_closed {
                        what.push(format!(
                            "moot: {} {} (the order is closed on both sides)",
                            e["path"].as_str().unwrap_or("?"),
                            e["order_key"].as_str().unwrap_or("?")
                        ));
                    } else {
                        open.push(e);
                    }
                }
                es = open;
            }
            n = n.saturating_add(es.len() as u64);
            for e in es.iter().take(5) {
                what.push(format!(
                    "{} {} {state} after {} attempts: {}",
                    e["path"].as_str().unwrap_or("?"),
                    e["order_key"].as_str().unwrap_or("?"),
                    e["attempts"],
                    e["last_error"].as_str().unwrap_or("-")
                ));
            }
        }
        Ok((n, what))
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
                "nothing owed, queue empty, tickets printed, refunds final".into()
            } else {
                format!("after 90 s still: {}", drained.join("; "))
            },
        );

        // What the gateway holds.
        let url = self
            .gateway_url(&format!("/api/v1/stores/{}/orders?limit=1000", self.store))
            .context("no gateway at the end of the day")?;
        let r = self.http.get(url).bearer_auth(&self.admin).send().await?;
        anyhow::ensure!(r.status().is_success(), "listing orders: {}", r.status());
        let v: Value = r.json().await?;
        let mut orders: Vec<Value> = v["orders"].as_array().cloned().unwrap_or_default();
        orders.retain(|o| {
            o["id"]
                .as_str()
                .is_none_or(|id| !self.orders_before.contains(id))
        });
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
        // Platform and app orders: one gateway order per acknowledged one,
        // by the channel's own number.
        let mut per_ref: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
        for o in orders.iter().filter(|o| o["channel"] != "terminal") {
            if let (Some(c), Some(p)) = (o["channel"].as_str(), o["channel_order_id"].as_str()) {
                per_ref.entry((c, p)).or_default().push(o);
            }
        }
        let acked_platform: Vec<&PlatformOrderState> =
            self.platform_orders.iter().filter(|p| p.acked).collect();
        let acked_app: Vec<&AppOrderState> =
            self.app_orders.iter().filter(|o| o.id.is_some()).collect();
        let mut cancel_wrong = Vec::new();
        let mut steps_wrong = Vec::new();
        // Gateway id → what its pick ticket is counted under.
        let mut pick_key: HashMap<String, String> = HashMap::new();
        let mut accepted_keys: Vec<String> = Vec::new();
        for p in &acked_platform {
            match per_ref
                .get(&("third_party", p.poid.as_str()))
                .map(Vec::as_slice)
            {
                None | Some([]) => lost.push(format!("platform order {}", p.poid)),
                Some([o, rest @ ..]) => {
                    for _ in rest {
                        dups.push(format!("platform order {} more than once", p.poid));
                    }
                    if let Some(id) = o["id"].as_str() {
                        pick_key.insert(id.to_owned(), p.poid.clone());
                    }
                    if p.cancelled && o["status"] != "cancelled" {
                        cancel_wrong.push(format!("{} is {}", p.poid, o["status"]));
                    }
                    if let Some(want) = p.steps.expected(p.accepted, p.cancelled)
                        && !p.cancelled
                        && o["status"] != want
                    {
                        steps_wrong.push(format!("{} is {}, not {want}", p.poid, o["status"]));
                    }
                    if p.accepted {
                        accepted_keys.push(p.poid.clone());
                        if self
                            .platform
                            .order(&p.poid)
                            .is_none_or(|po| po.status != 4 && po.status != 9)
                        {
                            steps_wrong
                                .push(format!("the platform never heard {} accepted", p.poid));
                        }
                    }
                }
            }
        }
        for a in &acked_app {
            match per_ref
                .get(&("official", a.ref_no.as_str()))
                .map(Vec::as_slice)
            {
                None | Some([]) => lost.push(format!("app order {}", a.ref_no)),
                Some([o, rest @ ..]) => {
                    for _ in rest {
                        dups.push(format!("app order {} more than once", a.ref_no));
                    }
                    if let Some(id) = o["id"].as_str() {
                        pick_key.insert(id.to_owned(), a.ref_no.clone());
                    }
                    if let Some(want) = a.steps.expected(a.accepted, false)
                        && o["status"] != want
                    {
                        steps_wrong.push(format!("{} is {}, not {want}", a.ref_no, o["status"]));
                    }
                    if a.prepaid && o["payment_status"] != "paid" {
                        steps_wrong
                            .push(format!("prepaid {} is {}", a.ref_no, o["payment_status"]));
                    }
                    if a.accepted {
                        accepted_keys.push(a.ref_no.clone());
                    }
                }
            }
        }
        for ((c, r), _) in per_ref.iter() {
            let known = match *c {
                "third_party" => acked_platform.iter().any(|p| p.poid == *r),
                "official" => acked_app.iter().any(|a| a.ref_no == *r),
                _ => false,
            };
            if !known {
                dups.push(format!("{c} order {r} never acknowledged"));
            }
        }

        // What the printer printed: receipts and pick tickets by their QR.
        // A job whose outcome the agent could not know prints again marked
        // REPRINT: an original at most once, and something for each.
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
        // (originals, reprints)
        let mut receipts: HashMap<i64, (u64, u64)> = HashMap::new();
        let mut picks: HashMap<String, (u64, u64)> = HashMap::new();
        let mut tickets_printed = 0u64;
        for r in printed.iter().filter(|r| r["cut"] == true) {
            let text = r["text"].as_str().unwrap_or("");
            let reprint = text.contains("REPRINT");
            let Some(q) = r["qr"][0].as_str() else {
                continue;
            };
            let bump = |e: &mut (u64, u64)| {
                if reprint {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            };
            if let Some(local_no) = receipt_keys.get(q) {
                bump(receipts.entry(*local_no).or_default());
            } else if let Some(key) = pick_key.get(q) {
                tickets_printed += u64::from(!reprint);
                if !text.contains("CANCELLED") {
                    bump(picks.entry(key.clone()).or_default());
                }
            }
        }
        // Sales whose receipt is on paper: as an original, or only as a
        // REPRINT when the original's job was cut short (a power cycle).
        let receipts_printed = receipts.len() as u64;
        let receipts_wrong: Vec<String> = acked_sales
            .iter()
            .filter_map(|s| {
                let (n, again) = receipts.get(&s.local_no).copied().unwrap_or((0, 0));
                (n > 1 || n + again == 0)
                    .then(|| format!("sale {} printed {n}× (+{again} reprints)", s.local_no))
            })
            .collect();
        let tickets_duplicated: u64 = picks.values().map(|n| n.0.saturating_sub(1)).sum();
        let picks_missing: Vec<String> = accepted_keys
            .iter()
            .filter(|k| picks.get(*k).is_none_or(|n| n.0 + n.1 == 0))
            .cloned()
            .collect();

        // Refunds as the gateway has them; what they put back into stock.
        let mut refunds_succeeded = 0u64;
        let mut refunded_fen = 0i64;
        let mut restocked: BTreeMap<String, i64> = BTreeMap::new();
        let mut refunds_open = Vec::new();
        for r in &self.refunds {
            let Some((200, v)) = self
                .gw(
                    reqwest::Method::GET,
                    &format!("/api/v1/orders/{}/payments", r.order_id),
                    &self.admin,
                    None,
                    None,
                )
                .await
            else {
                refunds_open.push(format!("sale {}: payments unreadable", r.local_no));
                continue;
            };
            for f in v["refunds"].as_array().into_iter().flatten() {
                match f["state"].as_str() {
                    Some("succeeded") => {
                        refunds_succeeded += 1;
                        refunded_fen =
                            refunded_fen.saturating_add(f["amount_fen"].as_i64().unwrap_or(0));
                        if f["restock"] == true {
                            for l in f["lines"].as_array().into_iter().flatten() {
                                let sku = l["sku"].as_str().unwrap_or("?").to_owned();
                                let q = l["quantity"].as_str().and_then(milli).unwrap_or(0);
                                *restocked.entry(sku).or_default() += q;
                            }
                        }
                    }
                    Some("failed") => {}
                    other => refunds_open.push(format!("sale {}: refund {other:?}", r.local_no)),
                }
            }
        }

        // The provider's ledger against the code-paid sales and refunds.
        let ledger = self.get(&format!("{}/ledger", self.pay)).await?["charges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut charges: BTreeMap<String, u64> = BTreeMap::new();
        let mut paid_fen = 0i64;
        let mut paid_n = 0u64;
        let mut provider_refunded = 0i64;
        for c in &ledger {
            let state = c["state"].as_str().unwrap_or("?").to_owned();
            // A refunded charge was paid first.
            if state == "SUCCESS" || state == "REFUND" {
                paid_n += 1;
                paid_fen = paid_fen.saturating_add(c["total_fen"].as_i64().unwrap_or(0));
            }
            provider_refunded =
                provider_refunded.saturating_add(c["refunded_fen"].as_i64().unwrap_or(0));
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
        let ledger_mismatches = code_n.abs_diff(paid_n)
            + u64::from(code_fen != paid_fen)
            + u64::from(provider_refunded != refunded_fen)
            + bad_totals;
        let (outbox_undelivered, outbox_what) = self.outbox_undelivered().await?;

        // Stock: on hand less reserved against the start less what the
        // orders of the day hold (open: reserved, completed: consumed;
        // rejected and cancelled gave theirs back) plus the restocks.
        let stock_now = self.stock().await?;
        let mut taken: BTreeMap<String, i64> = BTreeMap::new();
        for o in &orders {
            if matches!(o["status"].as_str(), Some("rejected" | "cancelled")) {
                continue;
            }
            for l in o["lines"].as_array().into_iter().flatten() {
                let sku = l["sku"].as_str().unwrap_or("?").to_owned();
                let q = l["quantity"].as_str().and_then(milli).unwrap_or(0);
                *taken.entry(sku).or_default() += q;
            }
        }
        let mut stock_wrong = Vec::new();
        for (sku, now) in &stock_now {
            let start = self.stock_start.get(sku).copied().unwrap_or(0);
            let want = start
                .saturating_sub(taken.get(sku).copied().unwrap_or(0))
                .saturating_add(restocked.get(sku).copied().unwrap_or(0));
            if *now != want {
                stock_wrong.push(format!(
                    "{sku}: {} sellable, the orders say {}",
                    thousandths(*now),
                    thousandths(want)
                ));
            }
        }

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
                accepted_keys.len(),
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
            "steps_applied",
            steps_wrong.is_empty(),
            if steps_wrong.is_empty() {
                "every accept, reject, ready and complete shows on the gateway".into()
            } else {
                sum_or_none(&steps_wrong)
            },
        );
        check(
            "refunds_final",
            refunds_open.is_empty(),
            if refunds_open.is_empty() {
                format!(
                    "{} asked, {refunds_succeeded} succeeded ({})",
                    self.refunds.len(),
                    yuan(refunded_fen)
                )
            } else {
                sum_or_none(&refunds_open)
            },
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
                "{code_n} code-paid sales ({}), {paid_n} paid charges ({}); refunded {} here, {} at the provider",
                yuan(code_fen),
                yuan(paid_fen),
                yuan(refunded_fen),
                yuan(provider_refunded)
            ),
        );
        check(
            "stock_matches_orders",
            stock_wrong.is_empty(),
            if stock_wrong.is_empty() {
                format!(
                    "{} items, on hand less reserved as the orders say",
                    stock_now.len()
                )
            } else {
                sum_or_none(&stock_wrong)
            },
        );
        check(
            "outbox_delivered",
            outbox_undelivered == 0,
            if outbox_what.is_empty() {
                format!("{outbox_undelivered} outbox rows undelivered")
            } else {
                sum_or_none(&outbox_what)
            },
        );

        let mut acknowledged = BTreeMap::new();
        acknowledged.insert("terminal".to_owned(), acked_sales.len() as u64);
        acknowledged.insert("third_party".to_owned(), acked_platform.len() as u64);
        acknowledged.insert("official".to_owned(), acked_app.len() as u64);
        let count = |f: &dyn Fn(bool, &Steps) -> bool| -> u64 {
            (acked_platform
                .iter()
                .filter(|p| f(p.accepted, &p.steps))
                .count()
                + acked_app.iter().filter(|a| f(a.accepted, &a.steps)).count()) as u64
        };
        let store = StoreReport {
            store: self.store.clone(),
            orders_by_channel: by_channel,
            orders_acknowledged: acknowledged,
            orders_on_gateway: orders.len() as u64,
            duplicates: dups.len() as u64,
            lost: lost.len() as u64,
            receipts_printed,
            tickets_printed,
            tickets_duplicated,
            cancels_acknowledged: acked_platform.iter().filter(|p| p.cancelled).count() as u64,
            accepts_acknowledged: count(&|a, _| a),
            rejects_acknowledged: count(&|_, s| s.rejected),
            ready_acknowledged: count(&|_, s| s.ready),
            completes_acknowledged: count(&|_, s| s.completed),
            app_orders_prepaid: acked_app.iter().filter(|a| a.prepaid).count() as u64,
            basket_lines_refused: self.lines_refused.clone(),
            refunds_requested: self.refunds.len() as u64,
            refunds_succeeded,
            offline_sales_uploaded: offline_uploaded,
            charges,
            charges_not_final,
            ledger_mismatches,
            stock_mismatches: stock_wrong.len() as u64,
            outbox_undelivered,
            faults_injected: self.faults_injected.clone(),
            checks: checks.clone(),
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
            faults_skipped: self.faults_skipped.clone(),
            checks,
            receipt_images: None,
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

    #[test]
    fn quantities_parse_to_milli_units_or_not_at_all() {
        assert_eq!(super::milli("2"), Some(2000));
        assert_eq!(super::milli("12.500"), Some(12500));
        assert_eq!(super::milli("0.35"), Some(350));
        for bad in ["", "-1", "1.2345", "1,5", ".5", "9999999999999"] {
            assert_eq!(super::milli(bad), None, "{bad}");
        }
        assert_eq!(super::thousandths(-1500), "-1.500");
    }
}
