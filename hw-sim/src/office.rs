//! `hw-sim office`: a store day in the office, scripted from a seed.
//!
//! Starts the real `gateway` (demo catalog, a throwaway SQLite file or a
//! given PostgreSQL database) and, for each of `--stores` stores,
//! `--terminals` real `terminal run` agents, each with its own simulated
//! devices, behind one network link per store; the payment and platform
//! simulators run in this process. Plays each store's day (made from the
//! seed and the store's number) on one clock compressed into `--minutes`:
//! counter sales taking turns at the store's counters, platform pushes with
//! duplicates and cancels, app orders, accepts at a counter, refunds, and
//! faults on a seeded schedule (the gateway's, the platform's and the
//! provider's once for the whole day, the others per store or per
//! counter); drains; then compares what the script was told succeeded with
//! what the gateway, the agents and the printers hold, per store and in
//! total, and exits 0 only when every check holds.

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
use crate::osfaults::{FakeClock, SmallDisk};
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
/// `serve --demo` makes stores S001 and S002 and a terminal key for each.
const DEMO_STORES: usize = 2;

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
    /// Stores (S001, S002, …; more than the demo's two are made), each
    /// with its own day from the seed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub stores: u32,
    /// Counters (agents, each with its own devices) per store; the
    /// store's sales take turns at them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub terminals: u32,
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
    if a.stores > 1 {
        s.push_str(&format!(" --stores {}", a.stores));
    }
    if a.terminals > 1 {
        s.push_str(&format!(" --terminals {}", a.terminals));
    }
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
    /// Its counters' terminal ids.
    pub terminals: Vec<String>,
    /// Acknowledged counter sales by the terminal that made them.
    pub sales_by_terminal: BTreeMap<String, u64>,
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
    pub terminals_per_store: u32,
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

impl StoreReport {
    /// Adds `o`'s counts to these (the checks are the caller's).
    fn add(&mut self, o: &StoreReport) {
        let merge = |a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            for (k, v) in b {
                *a.entry(k.clone()).or_default() += v;
            }
        };
        self.terminals.extend(o.terminals.iter().cloned());
        merge(&mut self.orders_by_channel, &o.orders_by_channel);
        merge(&mut self.sales_by_terminal, &o.sales_by_terminal);
        merge(&mut self.orders_acknowledged, &o.orders_acknowledged);
        merge(&mut self.basket_lines_refused, &o.basket_lines_refused);
        merge(&mut self.charges, &o.charges);
        self.orders_on_gateway += o.orders_on_gateway;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
        self.receipts_printed += o.receipts_printed;
        self.tickets_printed += o.tickets_printed;
        self.tickets_duplicated += o.tickets_duplicated;
        self.cancels_acknowledged += o.cancels_acknowledged;
        self.accepts_acknowledged += o.accepts_acknowledged;
        self.rejects_acknowledged += o.rejects_acknowledged;
        self.ready_acknowledged += o.ready_acknowledged;
        self.completes_acknowledged += o.completes_acknowledged;
        self.app_orders_prepaid += o.app_orders_prepaid;
        self.refunds_requested += o.refunds_requested;
        self.refunds_succeeded += o.refunds_succeeded;
        self.offline_sales_uploaded += o.offline_sales_uploaded;
        self.charges_not_final += o.charges_not_final;
        self.ledger_mismatches += o.ledger_mismatches;
        self.stock_mismatches += o.stock_mismatches;
        self.outbox_undelivered += o.outbox_undelivered;
        self.faults_injected
            .extend(o.faults_injected.iter().cloned());
    }
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
            s.push_str(&format!(
                "store {} ({})\n",
                st.store,
                st.terminals.join(", ")
            ));
            row(&mut s, "orders_by_channel", by(&st.orders_by_channel));
            row(&mut s, "orders_acknowledged", by(&st.orders_acknowledged));
            if st.sales_by_terminal.len() > 1 {
                row(&mut s, "sales_by_terminal", by(&st.sales_by_terminal));
            }
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

impl GatewaySpec {
    /// A new terminal key of `store` for terminal `tid`
    /// (`gateway keys create`, on the gateway's database).
    async fn terminal_key(&self, store: &str, tid: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["keys", "create", "--role", "terminal", "--store", store])
            .args(["--terminal", tid, "--database-url", &self.db_url])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running gateway keys create")?;
        anyhow::ensure!(
            out.status.success(),
            "gateway keys create for {tid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| l.trim().to_owned())
            .filter(|k| !k.is_empty())
            .with_context(|| format!("gateway keys create for {tid} printed no key"))
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
    env: &[(String, String)],
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
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    /// The counter (index into `Office::counters`) that sold it.
    counter: usize,
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
    /// Refund the store's counter sale at this index of its sales.
    Refund(usize),
}

/// A counter: one `terminal run` agent with its own devices.
struct Counter {
    terminal_id: String,
    /// The agent's local API.
    agent: String,
    /// The device simulator's control API.
    devices: String,
    sim: Arc<crate::devices::Devices>,
    child: Child,
    /// The store PC's wall clock under the agent, or why it cannot be
    /// moved.
    clock: Result<FakeClock, String>,
    /// The small disk under the agent's state, or why there is none.
    disk: Result<SmallDisk, String>,
}

impl Counter {
    /// Why this counter cannot have `kind` injected, if it cannot.
    fn cannot(&self, kind: FaultKind) -> Option<String> {
        match kind {
            FaultKind::ClockJump => self.clock.as_ref().err().cloned(),
            FaultKind::DiskFull => self.disk.as_ref().err().cloned(),
            _ => None,
        }
    }
}

/// How far the store PC's clock jumps ahead (and back at the fault's end).
const CLOCK_JUMP_S: i64 = 3 * 3600;
/// The tmpfs under an agent's state when the day fills its disk.
const SMALL_DISK_BYTES: u64 = 256 << 20;

/// A store of the day: its counters, its network to the gateway, and what
/// the script was told about its orders.
struct Shop {
    id: String,
    /// The store's network to the gateway, shared by its counters.
    link: Link,
    /// Its counters (indices into `Office::counters`).
    counters: Vec<usize>,
    /// The network to the gateway cut.
    cut: bool,
    sales: Vec<Sale>,
    /// Basket lines the agents refused, by status and code.
    lines_refused: BTreeMap<String, u64>,
    platform_orders: Vec<PlatformOrderState>,
    app_orders: Vec<AppOrderState>,
    /// Platform orders held for the reordered pushes.
    held_pushes: Vec<usize>,
    refunds: Vec<RefundAsked>,
    /// On hand less reserved per SKU (milli-units) at the day's start.
    stock_start: BTreeMap<String, i64>,
    /// The store's orders before the day (`--against`): not the day's.
    orders_before: HashSet<String>,
    owed: Vec<Owed>,
    /// Payment codes shown at this store's counters (the provider's
    /// ledger is split by them).
    codes: HashSet<String>,
    /// Whose turn it is: to sell, to accept or reject, to have a device
    /// fault (round robin over the counters).
    turn_sale: usize,
    turn_act: usize,
    turn_fault: usize,
    /// Device faults in force and the counter each hit; the store's sales
    /// go to the latest one's counter while it lasts (its sales are what
    /// the fault is for).
    device_faults: Vec<(FaultKind, usize)>,
}

struct Office {
    http: reqwest::Client,
    pay: String,
    platform: PlatformSim,
    gw_spec: GatewaySpec,
    gateway: Option<Gateway>,
    admin: String,
    app_key: String,
    skip_faults: Vec<String>,
    /// A gateway this run did not start (`--against`): not restarted, its
    /// stock left as it is.
    against: bool,
    shops: Vec<Shop>,
    counters: Vec<Counter>,
    faults_skipped: Vec<String>,
    /// Faults injected, by store (index into `shops`; the gateway's,
    /// platform's and provider's are the first store's).
    faults_injected: Vec<(usize, String)>,
    /// The gateway killed and not started again yet.
    gateway_down: bool,
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

/// Store `k`'s id: S001, S002, … (the demo's two first).
fn store_id(k: usize) -> String {
    format!("S{:03}", k + 1)
}

/// The seed of store `k`'s day: the run's own for the first store (a
/// one-store day is the day of its seed), mixed with `k` for the others.
fn store_seed(seed: u64, k: usize) -> u64 {
    if k == 0 {
        seed
    } else {
        seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Faults of the whole installation, not of a store: played from the
/// first store's plan only.
fn global_fault(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::GatewayRestart | FaultKind::Platform503 | FaultKind::ProviderNoAnswer
    )
}

/// Faults of one counter's devices.
fn device_fault(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::PaperOut
            | FaultKind::CoverOpen
            | FaultKind::ScaleNoise
            | FaultKind::CablePulled
            | FaultKind::PrinterPowerCycle
            | FaultKind::ClockJump
            | FaultKind::DiskFull
    )
}

/// The day of every store on one clock: (offset, store, event), stable
/// (the first store's events first at the same moment).
fn timeline(
    seed: u64,
    minutes: u32,
    faults: Faults,
    stores: usize,
) -> (u64, Vec<(u64, usize, Event)>) {
    let mut day_ms = 0;
    let mut all = Vec::new();
    for k in 0..stores {
        let plan = Plan::make(store_seed(seed, k), minutes, faults);
        day_ms = plan.day_ms;
        for ev in plan.events {
            let global = match &ev.event {
                Event::Fault { kind, .. } | Event::FaultEnd { kind } => global_fault(*kind),
                _ => false,
            };
            if k > 0 && global {
                continue;
            }
            all.push((ev.at_ms, k, ev.event));
        }
    }
    all.sort_by_key(|e| e.0);
    (day_ms, all)
}

impl Office {
    async fn play(args: &Args) -> anyhow::Result<Report> {
        let started = Instant::now();
        let stores = args.stores as usize;
        let terminals = args.terminals as usize;
        if args.against.is_some() && (stores > 1 || terminals > 1) {
            bail!("--against plays one store with one counter (its --terminal-key)");
        }
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
        let (day_ms, events) = timeline(args.seed, args.minutes, args.faults, stores);

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
        let store_ids: Vec<String> = match &args.against {
            Some(_) => vec![args.store.clone()],
            None => (0..stores).map(store_id).collect(),
        };
        let (gateway, admin, app_key, demo) = match &args.against {
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
                    Vec::new(),
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
                let admin = demo_value(&demo, "demo admin key:")?;
                let app = demo_value(&demo, "demo app key:")?;
                (gateway, admin, app, demo)
            }
        };
        platform.set_gateway_url(&format!("http://{}", gateway.addr));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;

        // Every store's counters: a network to the gateway per store, a
        // key, devices and an agent per counter.
        let os = OsPlan::new(args, dir.path());
        let mut shops = Vec::new();
        let mut counters = Vec::new();
        let mut children_ok = Ok(());
        for (k, sid) in store_ids.iter().enumerate() {
            if args.against.is_none() && k >= DEMO_STORES {
                put_store(&http, &gateway.addr, &admin, sid).await?;
            }
            let link = Link::start(gateway.addr.as_str()).await?;
            let mut mine = Vec::new();
            for j in 0..terminals {
                let (key, tid) = match &args.against {
                    Some(_) => (
                        args.terminal_key
                            .clone()
                            .context("--against needs --terminal-key")?,
                        args.terminal_id
                            .clone()
                            .context("--against needs --terminal-id")?,
                    ),
                    // One store, one counter: the demo's key (as before
                    // there were several); else a key per counter, named.
                    None if stores == 1 && terminals == 1 => (
                        demo_value(&demo, &format!("demo terminal key {sid}:"))?,
                        demo_value(&demo, &format!("demo terminal id {sid}:"))?,
                    ),
                    None => {
                        let tid = format!("{sid}-T{:02}", j + 1);
                        (gw_spec.terminal_key(sid, &tid).await?, tid)
                    }
                };
                match start_counter(&terminal_bin, dir.path(), &link, sid, &tid, &key, &os).await {
                    Ok(c) => {
                        mine.push(counters.len());
                        counters.push(c);
                    }
                    Err(e) => {
                        children_ok = Err(e);
                        break;
                    }
                }
            }
            shops.push(Shop {
                id: sid.clone(),
                link,
                counters: mine,
                cut: false,
                sales: Vec::new(),
                lines_refused: BTreeMap::new(),
                platform_orders: Vec::new(),
                app_orders: Vec::new(),
                held_pushes: Vec::new(),
                refunds: Vec::new(),
                stock_start: BTreeMap::new(),
                orders_before: HashSet::new(),
                owed: Vec::new(),
                codes: HashSet::new(),
                turn_sale: 0,
                turn_act: 0,
                turn_fault: 0,
                device_faults: Vec::new(),
            });
            if children_ok.is_err() {
                break;
            }
        }

        let mut office = Office {
            http,
            pay: pay_base,
            platform,
            gw_spec,
            gateway: Some(gateway),
            admin,
            app_key,
            skip_faults: args.skip_faults.clone(),
            against: args.against.is_some(),
            shops,
            counters,
            faults_skipped: Vec::new(),
            faults_injected: Vec::new(),
            gateway_down: false,
            started,
            day_ms,
            seed: args.seed,
            code_no: 0,
            provider_silent: false,
        };
        let result = match children_ok {
            Ok(()) => match office.wait_ready().await {
                Ok(()) => match office.stock_up().await {
                    Ok(()) => office.day(&events, args).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        // Stop the children before the temp dir goes.
        for c in &mut office.counters {
            let _ = c.child.kill().await;
        }
        if let Some(mut g) = office.gateway.take()
            && let Some(c) = g.child.as_mut()
        {
            let _ = c.kill().await;
        }
        for c in &office.counters {
            c.sim.unplug_all();
        }
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
                    // One counter: its receipts in the folder; several:
                    // a folder per terminal.
                    let many = office.counters.len() > 1;
                    let mut drawn_n = 0usize;
                    let mut failed = None;
                    for c in &office.counters {
                        let d = Arc::clone(&c.sim);
                        let to = if many {
                            folder.join(&c.terminal_id)
                        } else {
                            folder.clone()
                        };
                        match tokio::task::spawn_blocking(move || d.write_pngs(&to)).await {
                            Ok(Ok(n)) => drawn_n += n,
                            Ok(Err(e)) => failed = Some(format!("{e:#}")),
                            Err(e) => failed = Some(e.to_string()),
                        }
                    }
                    r.receipt_images = Some(match failed {
                        None => format!("{drawn_n} images in {}", folder.display()),
                        Some(e) => format!("not drawn: {e}"),
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

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for c in &self.counters {
            loop {
                let s = self.get(&format!("{}/api/status", c.agent)).await?;
                if s["catalog"]["items"].as_i64().unwrap_or(0) >= 4
                    && s["devices"]["printer"]["status"] == "ok"
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "agent {} did not get its catalog and printer in 60 s: {s}",
                        c.terminal_id
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Store `s` cannot reach the gateway: its network cut or the gateway
    /// down.
    fn away(&self, s: usize) -> bool {
        self.gateway_down || self.shops[s].cut
    }

    /// The day's clock and counters, for the progress bar or line.
    fn counters_line(&self, at_ms: u64) -> String {
        let sum = |f: &dyn Fn(&Shop) -> usize| self.shops.iter().map(f).sum::<usize>();
        let acked = sum(&|s| s.platform_orders.iter().filter(|p| p.acked).count());
        let app = sum(&|s| s.app_orders.iter().filter(|o| o.id.is_some()).count());
        let away = (0..self.shops.len()).filter(|&s| self.away(s)).count();
        format!(
            "[{} {:>4}s] sales {} · app {} · platform {} · refunds {} · faults {}{}",
            day_clock(at_ms, self.day_ms),
            self.started.elapsed().as_secs(),
            sum(&|s| s.sales.len()),
            app,
            acked,
            sum(&|s| s.refunds.len()),
            self.faults_injected.len(),
            match (away, self.shops.len()) {
                (0, _) => String::new(),
                (_, 1) => " · gateway away".to_owned(),
                (n, _) => format!(" · gateway away from {n} stores"),
            }
        )
    }

    async fn day(&mut self, events: &[(u64, usize, Event)], args: &Args) -> anyhow::Result<Report> {
        use std::io::IsTerminal;
        let start = Instant::now();
        let mut last_progress = 0u64;
        // A bar on a terminal; a plain line every 5 s of the day otherwise
        // (a log, a test).
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(events.len() as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg}\n{wide_bar} {pos}/{len} events")
            {
                b.set_style(style);
            }
            b
        });
        for (i, (at_ms, s, ev)) in events.iter().enumerate() {
            let due = start + Duration::from_millis(*at_ms);
            tokio::time::sleep_until(due.into()).await;
            self.event(*s, ev, *at_ms).await?;
            for k in 0..self.shops.len() {
                if !self.away(k) {
                    self.pay_owed(k).await?;
                }
            }
            match &bar {
                Some(b) => {
                    b.set_position(i as u64 + 1);
                    b.set_message(self.counters_line(*at_ms));
                }
                None if *at_ms >= last_progress + 5_000 => {
                    last_progress = *at_ms;
                    eprintln!("{}", self.counters_line(*at_ms));
                }
                None => {}
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        // End of day: every fault over.
        for shop in &mut self.shops {
            if shop.cut {
                shop.link.up.send_replace(true);
                shop.cut = false;
            }
        }
        for c in &self.counters {
            self.put(
                &format!("{}/printer/state", c.devices),
                json!({"paper": "ok", "cover": "closed"}),
            )
            .await?;
        }
        eprintln!("[20:00] day over; draining");
        let drained = self.drain().await?;
        self.report(args, drained).await
    }

    /// Where a fault of store `s` hits, for the report when the day has
    /// more than one counter.
    fn fault_place(&self, s: usize, kind: FaultKind, counter: Option<usize>) -> String {
        if self.counters.len() <= 1 || global_fault(kind) {
            return String::new();
        }
        match counter {
            Some(c) => format!(" ({})", self.counters[c].terminal_id),
            None => format!(" ({})", self.shops[s].id),
        }
    }

    async fn event(&mut self, s: usize, ev: &Event, at_ms: u64) -> anyhow::Result<()> {
        let when = day_clock(at_ms, self.day_ms);
        match ev {
            Event::Sale { lines, tender } => self.sale(s, lines, *tender).await,
            Event::Push { n, items, repeat } => {
                let shop = &mut self.shops[s];
                while shop.platform_orders.len() <= *n {
                    shop.platform_orders.push(PlatformOrderState::default());
                }
                shop.platform_orders[*n] = PlatformOrderState {
                    poid: format!("{}{s:02}{n:06}", 27_000 + self.seed % 1000),
                    items: items.clone(),
                    repeat: (*repeat).max(1),
                    ..Default::default()
                };
                if *repeat == 0 {
                    // Pushed by the reordering fault, just after.
                    shop.held_pushes.push(*n);
                    return Ok(());
                }
                self.try_owed(s, Owed::Push(*n)).await
            }
            Event::Cancel { n } => self.try_owed(s, Owed::Cancel(*n)).await,
            Event::App { n, lines, prepaid } => {
                let shop = &mut self.shops[s];
                while shop.app_orders.len() <= *n {
                    shop.app_orders.push(AppOrderState::default());
                }
                shop.app_orders[*n] = AppOrderState {
                    ref_no: format!("APP-{}-{}-{n:05}", self.seed, shop.id),
                    lines: lines.clone(),
                    prepaid: *prepaid,
                    ..Default::default()
                };
                self.try_owed(s, Owed::App(*n)).await
            }
            Event::Act { target, step } => self.try_owed(s, Owed::Act(*target, *step)).await,
            Event::Refund => {
                let Some(i) = self.shops[s]
                    .sales
                    .iter()
                    .rposition(|x| x.code_paid && !x.refunded && !x.offline)
                else {
                    return Ok(());
                };
                self.shops[s].sales[i].refunded = true;
                self.try_owed(s, Owed::Refund(i)).await
            }
            Event::Fault { kind, secs } => {
                let mut why = match kind {
                    FaultKind::GatewayRestart if self.against => Some(
                        "a gateway this run did not start is not killed (--against)".to_owned(),
                    ),
                    k if self.skip_faults.iter().any(|f| f == k.as_str()) => {
                        Some("left out (--skip-fault)".to_owned())
                    }
                    _ => None,
                };
                // A counter's fault: the counter whose turn it is.
                let counter = (why.is_none() && device_fault(*kind)).then(|| {
                    let shop = &mut self.shops[s];
                    let c = shop.counters[shop.turn_fault % shop.counters.len()];
                    shop.turn_fault += 1;
                    c
                });
                if let (None, Some(c)) = (&why, counter) {
                    why = self.counters[c].cannot(*kind);
                }
                if let Some(why) = why {
                    let place = self.fault_place(s, *kind, counter);
                    self.faults_skipped
                        .push(format!("{}{place} at {when}: {why}", kind.as_str()));
                    return Ok(());
                }
                if let Some(c) = counter {
                    self.shops[s].device_faults.push((*kind, c));
                }
                let place = self.fault_place(s, *kind, counter);
                self.faults_injected.push((
                    s,
                    format!("{} at {when} for {secs} s{place}", kind.as_str()),
                ));
                self.fault(s, counter, *kind, *secs).await
            }
            Event::FaultEnd { kind } => {
                if (*kind == FaultKind::GatewayRestart && self.against)
                    || self.skip_faults.iter().any(|f| f == kind.as_str())
                {
                    return Ok(());
                }
                let counter = if device_fault(*kind) {
                    let shop = &mut self.shops[s];
                    match shop.device_faults.iter().rposition(|(k, _)| k == kind) {
                        Some(i) => Some(shop.device_faults.remove(i).1),
                        None => return Ok(()),
                    }
                } else {
                    None
                };
                self.fault_end(s, counter, *kind).await
            }
        }
    }

    async fn fault(
        &mut self,
        s: usize,
        counter: Option<usize>,
        kind: FaultKind,
        secs: u64,
    ) -> anyhow::Result<()> {
        let devices = counter.map(|c| self.counters[c].devices.clone());
        let devices = devices.as_deref().unwrap_or("");
        let printer = format!("{devices}/printer/state");
        let line = |d: &str| format!("{devices}/lines/{d}/faults");
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
                // The store's next order upload (SOAP SubmitOrder).
                self.shops[s].link.lose_next_answer("SubmitOrder");
                Ok(())
            }
            FaultKind::PushesReordered => {
                let held = std::mem::take(&mut self.shops[s].held_pushes);
                // b a b a: the later order first, each twice, one after
                // the other.
                for &n in held.iter().rev().chain(held.iter().rev()) {
                    let shop = &self.shops[s];
                    let Some(p) = shop.platform_orders.get(n) else {
                        continue;
                    };
                    if p.acked {
                        let mut req = PushRequest::new_order(&shop.id, p.items.clone());
                        req.order.order_id = Some(p.poid.clone());
                        self.platform
                            .push(req)
                            .await
                            .map_err(|e| anyhow::anyhow!("push again: {e}"))?;
                    } else {
                        self.try_owed(s, Owed::Push(n)).await?;
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
                    json!({"unplug_after_bytes": 60, "replug_after_ms": 1000, "power_loss": true}),
                )
                .await
            }
            FaultKind::WechatNegative => Ok(()),
            FaultKind::ClockJump | FaultKind::DiskFull => self.os_fault(counter, kind, true),
            FaultKind::PaperOut => self.put(&printer, json!({"paper": "end"})).await,
            FaultKind::CoverOpen => self.put(&printer, json!({"cover": "open"})).await,
            FaultKind::NetworkCut => {
                self.shops[s].link.up.send_replace(false);
                self.shops[s].cut = true;
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
                self.gateway_down = true;
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

    async fn fault_end(
        &mut self,
        s: usize,
        counter: Option<usize>,
        kind: FaultKind,
    ) -> anyhow::Result<()> {
        let devices = counter.map(|c| self.counters[c].devices.clone());
        let devices = devices.as_deref().unwrap_or("");
        let printer = format!("{devices}/printer/state");
        let line = |d: &str| format!("{devices}/lines/{d}/faults");
        match kind {
            FaultKind::ScaleNoise => self.put(&line("scale"), json!({})).await,
            FaultKind::CablePulled => self.put(&line("scale"), json!({"plugged": true})).await,
            FaultKind::LostAck => {
                let link = &self.shops[s].link;
                link.disarm();
                let lost = link.answers_lost();
                if let Some((_, f)) = self
                    .faults_injected
                    .iter_mut()
                    .rev()
                    .find(|(k, f)| *k == s && f.starts_with("lost_ack"))
                {
                    f.push_str(&format!(" ({lost} answers lost)"));
                }
                Ok(())
            }
            // The power comes back by itself (a trap no job sprang yet
            // springs on the next one: a power cycle mid-job all the same).
            FaultKind::PrinterPowerCycle => Ok(()),
            FaultKind::PushesReordered | FaultKind::WechatNegative => Ok(()),
            // The clock set right again (a jump back by as much), the disk
            // freed.
            FaultKind::ClockJump | FaultKind::DiskFull => self.os_fault(counter, kind, false),
            FaultKind::PaperOut => self.put(&printer, json!({"paper": "ok"})).await,
            FaultKind::CoverOpen => self.put(&printer, json!({"cover": "closed"})).await,
            FaultKind::NetworkCut => {
                self.shops[s].link.up.send_replace(true);
                self.shops[s].cut = false;
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
                for shop in &self.shops {
                    shop.link.point_at(&g.addr);
                }
                self.platform.set_gateway_url(&format!("http://{}", g.addr));
                self.gateway = Some(g);
                self.gateway_down = false;
                Ok(())
            }
        }
    }

    /// The store PC's clock jump (ahead when `on`, back when not) or full
    /// disk (filled, freed) on `counter`.
    fn os_fault(&self, counter: Option<usize>, kind: FaultKind, on: bool) -> anyhow::Result<()> {
        let c = &self.counters[counter.context("a store-PC fault without its counter")?];
        let done = (|| -> Result<(), String> {
            let clock = || c.clock.as_ref().map_err(Clone::clone);
            let disk = || c.disk.as_ref().map_err(Clone::clone);
            match (kind, on) {
                (FaultKind::ClockJump, true) => clock()?.jump(CLOCK_JUMP_S).map(|_| ()),
                (FaultKind::ClockJump, false) => clock()?.reset(),
                (FaultKind::DiskFull, true) => disk()?.fill().map(|_| ()),
                (FaultKind::DiskFull, false) => disk()?.free(),
                _ => Ok(()),
            }
        })();
        done.map_err(|e| anyhow::anyhow!("{} on {}: {e}", kind.as_str(), c.terminal_id))
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

    /// A store's catalog as the gateway has it.
    async fn catalog(&self, store: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/stores/{store}/catalog");
        match self
            .gw(reqwest::Method::GET, &path, &self.admin, None, None)
            .await
        {
            Some((200, v)) => Ok(v["items"].as_array().cloned().unwrap_or_default()),
            other => bail!("GET {path}: {other:?}"),
        }
    }

    /// On hand less reserved per SKU, in milli-units.
    async fn stock(&self, store: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for it in self.catalog(store).await? {
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

    /// Every order of a store, page by page.
    async fn all_orders(&self, store: &str, channel: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut out: Vec<Value> = Vec::new();
        let mut seen = HashSet::new();
        let mut since: Option<i64> = None;
        for _ in 0..1000 {
            let mut path = format!("/api/v1/stores/{store}/orders?limit=1000");
            if let Some(c) = channel {
                path.push_str(&format!("&channel={c}"));
            }
            if let Some(c) = since {
                path.push_str(&format!("&since={c}"));
            }
            let v = match self
                .gw(reqwest::Method::GET, &path, &self.admin, None, None)
                .await
            {
                Some((200, v)) => v,
                other => bail!("GET {path}: {other:?}"),
            };
            for o in v["orders"].as_array().into_iter().flatten() {
                let id = o["id"].as_str().unwrap_or("").to_owned();
                if seen.insert(id.clone()) {
                    out.push(o.clone());
                } else if let Some(old) = out.iter_mut().find(|x| x["id"] == id.as_str()) {
                    *old = o.clone(); // changed since: the newer copy
                }
            }
            if v["has_more"] != true {
                return Ok(out);
            }
            since = v["cursor"].as_i64();
            if since.is_none() {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Stock for a long day (the demo's runs out in a few minutes), then
    /// what the day starts from.
    async fn stock_up(&mut self) -> anyhow::Result<()> {
        if self.against {
            let store = self.shops[0].id.clone();
            self.shops[0].orders_before = self
                .all_orders(&store, None)
                .await?
                .iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect();
        } else {
            // The products are the chain's: the first store lists them all.
            let items = self.catalog(&self.shops[0].id).await?;
            for shop in &self.shops {
                for it in &items {
                    let sku = it["sku"].as_str().unwrap_or("");
                    let on_hand = if it["unit"] == "kg" {
                        "5000.000"
                    } else {
                        "50000"
                    };
                    let path = format!("/api/v1/stores/{}/items/{sku}", shop.id);
                    match self
                        .gw(
                            reqwest::Method::PUT,
                            &path,
                            &self.admin,
                            Some(json!({"on_hand": on_hand, "available": true})),
                            None,
                        )
                        .await
                    {
                        Some((200, _)) => {}
                        other => bail!("PUT {path}: {other:?}"),
                    }
                }
            }
        }
        for s in 0..self.shops.len() {
            let id = self.shops[s].id.clone();
            self.shops[s].stock_start = self.stock(&id).await?;
        }
        Ok(())
    }

    /// Creates app order `n` of store `s` (idempotent: its own number and
    /// key).
    async fn app_order(&mut self, s: usize, n: usize) -> anyhow::Result<bool> {
        let shop = &self.shops[s];
        let o = &shop.app_orders[n];
        if o.id.is_some() {
            return Ok(true);
        }
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
            .collect();
        let mut body = json!({
            "store_id": shop.id,
            "lines": lines,
            "channel_order_id": o.ref_no,
            "note": "app order",
        });
        if o.prepaid {
            // What the gateway's prices make it: the app charged that.
            let prices: HashMap<String, i64> = self
                .catalog(&shop.id)
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
                let id = v["id"].as_str().map(str::to_owned);
                let ok = id.is_some();
                self.shops[s].app_orders[n].id = id;
                Ok(ok)
            }
            500..=599 => Ok(false),
            _ => bail!("the gateway refused app order {n} ({st}): {v}"),
        }
    }

    /// Moves an order of another channel on: accept and reject at a
    /// counter of its store (the agent's queue; the counters take turns),
    /// ready and complete on the gateway.
    async fn act(&mut self, s: usize, target: Target, step: Step) -> anyhow::Result<bool> {
        let (id, accepted, cancelled, steps) = match target {
            Target::Platform(n) => {
                let p = &self.shops[s].platform_orders[n];
                if !p.acked {
                    return Ok(false);
                }
                let (accepted, cancelled, steps) = (p.accepted, p.cancelled, p.steps);
                let poid = p.poid.clone();
                (self.gateway_id(s, &poid).await?, accepted, cancelled, steps)
            }
            Target::App(n) => {
                let o = &self.shops[s].app_orders[n];
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
                let shop = &mut self.shops[s];
                let c = shop.counters[shop.turn_act % shop.counters.len()];
                shop.turn_act += 1;
                let agent = self.counters[c].agent.clone();
                self.post(&format!("{agent}/api/queue/{id}/{}", step.as_str()), body)
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
                let shop = &mut self.shops[s];
                match target {
                    Target::Platform(n) => {
                        let p = &mut shop.platform_orders[n];
                        set(&mut p.accepted, &mut p.steps);
                    }
                    Target::App(n) => {
                        let o = &mut shop.app_orders[n];
                        set(&mut o.accepted, &mut o.steps);
                    }
                }
                Ok(true)
            }
            409 => Ok(true), // refused (e.g. cancelled first): nothing owed
            _ => Ok(false),  // not in the agent's queue yet, or the gateway away
        }
    }

    /// Refunds store `s`'s counter sale `i`'s first line, goods back into
    /// stock: the order is completed first (a restock needs a completed
    /// order).
    async fn refund(&mut self, s: usize, i: usize) -> anyhow::Result<bool> {
        let sale = self.shops[s].sales[i].clone();
        let c = &self.counters[sale.counter];
        let local_no = sale.local_no;
        let request_id = format!("office-refund-{}-{local_no}", c.terminal_id);
        let v = self
            .get(&format!("{}/api/sales/{local_no}", c.agent))
            .await?;
        let Some(id) = v["order_id"].as_str().map(str::to_owned) else {
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
                        "request_id": request_id,
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
                            self.shops[s].refunds.push(RefundAsked {
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

    /// A sale at one of store `s`'s counters: the one with a device fault
    /// in force, else the next in turn.
    async fn sale(&mut self, s: usize, lines: &[Line], tender: Tender) -> anyhow::Result<()> {
        let shop = &mut self.shops[s];
        let ci = match shop.device_faults.last() {
            Some(&(_, c)) => c,
            None => {
                let c = shop.counters[shop.turn_sale % shop.counters.len()];
                shop.turn_sale += 1;
                c
            }
        };
        let agent = self.counters[ci].agent.clone();
        let devices = self.counters[ci].devices.clone();
        let basket = format!("{agent}/api/basket/lines");
        let mut added = 0;
        for line in lines {
            let body = match line {
                Line::Barcode(code) => json!({"barcode": code}),
                Line::Pieces(sku, qty) => json!({"sku": sku, "quantity": qty.to_string()}),
                Line::Weigh(sku, grams) => {
                    let kg = format!("{}.{:03}", grams / 1000, grams % 1000);
                    self.put(
                        &format!("{devices}/scale"),
                        json!({"kg": kg, "settle_ms": 50}),
                    )
                    .await?;
                    json!({"sku": sku, "weigh": true})
                }
            };
            let (st, v) = self.post(&basket, body).await?;
            if matches!(line, Line::Weigh(..)) {
                self.put(&format!("{devices}/scale"), json!({"kg": "0"}))
                    .await?;
            }
            if st == 201 {
                added += 1;
            } else {
                // The scale not settling, a line lost: the cashier moves on.
                let code = v["code"].as_str().unwrap_or("?").to_owned();
                *self.shops[s]
                    .lines_refused
                    .entry(format!("{st} {code}"))
                    .or_default() += 1;
            }
        }
        if added == 0 {
            return Ok(());
        }
        let checkout = format!("{agent}/api/checkout");
        let offline = self.away(s);
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
            self.shops[s].codes.insert(code.clone());
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
                            .post(&format!("{agent}/api/payment/check"), json!({}))
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
                let _ = self.http.delete(format!("{agent}/api/basket")).send().await;
            }
        }
        if let Some(v) = sale {
            let local_no = v["local_no"].as_i64().context("a sale without local_no")?;
            let client_order_id = v["client_order_id"].as_str().unwrap_or("").to_owned();
            self.shops[s].sales.push(Sale {
                counter: ci,
                local_no,
                client_order_id,
                offline,
                code_paid,
                refunded: false,
            });
        }
        Ok(())
    }

    async fn pay_owed(&mut self, s: usize) -> anyhow::Result<()> {
        let owed = std::mem::take(&mut self.shops[s].owed);
        for o in owed {
            self.try_owed(s, o).await?;
        }
        Ok(())
    }

    /// Does `o` now, or owes it again.
    async fn try_owed(&mut self, s: usize, o: Owed) -> anyhow::Result<()> {
        let done = if self.away(s) {
            false
        } else {
            match o {
                Owed::Push(n) => self.push(s, n).await?,
                Owed::Cancel(n) => self.cancel(s, n).await?,
                Owed::App(n) => self.app_order(s, n).await?,
                Owed::Act(t, step) => self.act(s, t, step).await?,
                Owed::Refund(i) => self.refund(s, i).await?,
            }
        };
        let owed = &mut self.shops[s].owed;
        if !done && !owed.contains(&o) {
            owed.push(o);
        }
        Ok(())
    }

    async fn push(&mut self, s: usize, n: usize) -> anyhow::Result<bool> {
        let shop = &self.shops[s];
        let p = &shop.platform_orders[n];
        if p.acked {
            return Ok(true);
        }
        let mut req = PushRequest::new_order(&shop.id, p.items.clone());
        req.order.order_id = Some(p.poid.clone());
        req.repeat = p.repeat;
        req.concurrent = p.repeat > 1;
        let out = self
            .platform
            .push(req)
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        let ok = out.statuses.contains(&200);
        self.shops[s].platform_orders[n].acked = ok;
        Ok(ok)
    }

    /// The gateway's id of a platform order of store `s`, from the admin
    /// API.
    async fn gateway_id(&self, s: usize, poid: &str) -> anyhow::Result<Option<String>> {
        if self.gateway.is_none() {
            return Ok(None);
        }
        let Ok(orders) = self
            .all_orders(&self.shops[s].id, Some("third_party"))
            .await
        else {
            return Ok(None);
        };
        Ok(orders
            .iter()
            .find(|o| o["channel_order_id"] == poid)
            .and_then(|o| o["id"].as_str().map(str::to_owned)))
    }

    async fn cancel(&mut self, s: usize, n: usize) -> anyhow::Result<bool> {
        let p = &self.shops[s].platform_orders[n];
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
        self.shops[s].platform_orders[n].cancelled = ok;
        Ok(ok)
    }

    /// Waits until nothing is owed, every agent's queue is empty and every
    /// ticket is printed, the platform heard of each accept, and every
    /// refund is final; up to 90 s. Returns what is still outstanding
    /// (empty when drained).
    async fn drain(&mut self) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let many = self.counters.len() > 1;
        loop {
            let mut left = Vec::new();
            for s in 0..self.shops.len() {
                self.pay_owed(s).await?;
                let shop = &self.shops[s];
                if !shop.owed.is_empty() {
                    left.push(format!(
                        "{}: {} script actions owed",
                        shop.id,
                        shop.owed.len()
                    ));
                }
            }
            for c in &self.counters {
                let at = if many {
                    format!(" at {}", c.terminal_id)
                } else {
                    String::new()
                };
                let st = self.get(&format!("{}/api/status", c.agent)).await?;
                let pending = st["queue"]["pending"].as_i64().unwrap_or(-1);
                if pending != 0 {
                    left.push(format!("agent queue pending {pending}{at}"));
                }
                let t = self
                    .get(&format!("{}/api/tickets?limit=500", c.agent))
                    .await?;
                let unprinted: Vec<&Value> = t["tickets"]
                    .as_array()
                    .map(|ts| ts.iter().filter(|t| t["state"] != "printed").collect())
                    .unwrap_or_default();
                if let Some(first) = unprinted.first() {
                    left.push(format!(
                        "{} tickets not printed{at} (the first {} after {} attempts: {})",
                        unprinted.len(),
                        first["state"],
                        first["attempts"],
                        first["last_error"].as_str().unwrap_or("-")
                    ));
                }
            }
            let unconfirmed: usize = self
                .shops
                .iter()
                .flat_map(|s| s.platform_orders.iter())
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
            for r in self.shops.iter().flat_map(|s| s.refunds.iter()) {
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
                Ok(rows) if rows.is_empty() => {}
                Ok(rows) => left.push(format!("{} outbox rows undelivered", rows.len())),
                Err(e) => left.push(format!("the outbox unreadable: {e:#}")),
            }
            if left.is_empty() || Instant::now() > deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Outbox rows not delivered (pending, delivering, failed) as the
    /// gateway lists them. (Calls about an order the platform cancelled are
    /// the gateway's to drop as moot, not the harness's to excuse.)
    async fn outbox_undelivered(&self) -> anyhow::Result<Vec<Value>> {
        let mut rows = Vec::new();
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
            for mut e in v["entries"].as_array().cloned().unwrap_or_default() {
                e["state"] = json!(state);
                rows.push(e);
            }
        }
        Ok(rows)
    }

    async fn report(&mut self, args: &Args, drained: Vec<String>) -> anyhow::Result<Report> {
        let drained_check = Check {
            pass: drained.is_empty(),
            reason: if drained.is_empty() {
                "nothing owed, queues empty, tickets printed, refunds final".into()
            } else {
                format!("after 90 s still: {}", drained.join("; "))
            },
        };
        let ledger = self.get(&format!("{}/ledger", self.pay)).await?["charges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let outbox = self.outbox_undelivered().await?;
        let mut stores = Vec::new();
        let mut order_ids: HashSet<String> = HashSet::new();
        for s in 0..self.shops.len() {
            let (mut r, ids) = self.store_report(s, args, &ledger, &outbox).await?;
            r.checks.insert("drained".to_owned(), drained_check.clone());
            order_ids.extend(ids);
            stores.push(r);
        }
        // The whole day: the stores added up, a check passing only where
        // it passes in every store, and what no store accounts for (a
        // charge made with no counter's code, an outbox row of no day's
        // order).
        let mut total = StoreReport {
            store: if stores.len() == 1 {
                stores[0].store.clone()
            } else {
                "total".to_owned()
            },
            ..StoreReport::default()
        };
        for r in &stores {
            total.add(r);
        }
        // Charges no store's code made: a reverse that came before its
        // micropay leaves an empty, codeless one (counted, harmless); any
        // other is money nobody sold for.
        let codes: HashSet<&str> = self
            .shops
            .iter()
            .flat_map(|s| s.codes.iter().map(String::as_str))
            .collect();
        let mut strays = Vec::new();
        for c in &ledger {
            let code = c["auth_code"].as_str().unwrap_or("");
            if codes.contains(code) {
                continue;
            }
            let state = c["state"].as_str().unwrap_or("?").to_owned();
            *total.charges.entry(state).or_default() += 1;
            if !code.is_empty() || c["total_fen"].as_i64().unwrap_or(0) != 0 {
                strays.push(c["out_trade_no"].as_str().unwrap_or("?").to_owned());
            }
        }
        let orphans = outbox
            .iter()
            .filter(|e| {
                e["order_id"]
                    .as_str()
                    .is_none_or(|id| !order_ids.contains(id))
            })
            .count() as u64;
        total.ledger_mismatches += strays.len() as u64;
        total.outbox_undelivered += orphans;
        let mut checks: BTreeMap<String, Check> = BTreeMap::new();
        let names: Vec<String> = stores[0].checks.keys().cloned().collect();
        for name in names {
            let per: Vec<(&str, &Check)> = stores
                .iter()
                .filter_map(|r| r.checks.get(&name).map(|c| (r.store.as_str(), c)))
                .collect();
            let pass = per.iter().all(|(_, c)| c.pass);
            let reason = if per.len() == 1 {
                per[0].1.reason.clone()
            } else if pass {
                format!(
                    "holds in each of the {} stores ({}: {})",
                    per.len(),
                    per[0].0,
                    per[0].1.reason
                )
            } else {
                per.iter()
                    .filter(|(_, c)| !c.pass)
                    .map(|(st, c)| format!("{st}: {}", c.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            checks.insert(name, Check { pass, reason });
        }
        if !strays.is_empty() {
            let c = checks
                .entry("ledger_matches_sales".into())
                .or_insert(Check {
                    pass: true,
                    reason: String::new(),
                });
            c.pass = false;
            c.reason = format!(
                "{} charges no counter's code made: {}",
                strays.len(),
                strays
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if orphans > 0 {
            let c = checks.entry("outbox_delivered".into()).or_insert(Check {
                pass: true,
                reason: String::new(),
            });
            c.pass = false;
            c.reason = format!("{orphans} outbox rows of no store's orders undelivered");
        }
        total.checks = checks.clone();
        let faults_injected: Vec<String> = self
            .faults_injected
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        Ok(Report {
            seed: args.seed,
            minutes: args.minutes,
            faults: args.faults.as_str().to_owned(),
            terminals_per_store: args.terminals,
            database: String::new(),
            breaks: args.breaks,
            elapsed_s: self.started.elapsed().as_secs(),
            total,
            stores,
            faults_injected,
            faults_skipped: self.faults_skipped.clone(),
            checks,
            receipt_images: None,
        })
    }

    /// Store `s`'s part of the report, and the ids of its orders of the
    /// day.
    async fn store_report(
        &self,
        s: usize,
        args: &Args,
        ledger: &[Value],
        outbox: &[Value],
    ) -> anyhow::Result<(StoreReport, HashSet<String>)> {
        let shop = &self.shops[s];
        let mut checks = BTreeMap::new();
        let mut check = |name: &str, pass: bool, reason: String| {
            checks.insert(name.to_owned(), Check { pass, reason });
        };

        // What the gateway holds.
        let mut orders = self.all_orders(&shop.id, None).await?;
        orders.retain(|o| {
            o["id"]
                .as_str()
                .is_none_or(|id| !shop.orders_before.contains(id))
        });
        // What the store's agents hold: (counter, local_no) → sale.
        let mut by_local: HashMap<(usize, i64), Value> = HashMap::new();
        for &c in &shop.counters {
            let sales = self
                .get(&format!("{}/api/sales?limit=1000", self.counters[c].agent))
                .await?["sales"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for a in sales {
                if let Some(n) = a["local_no"].as_i64() {
                    by_local.insert((c, n), a);
                }
            }
        }
        let local = |x: &Sale| by_local.get(&(x.counter, x.local_no));
        let many = self.counters.len() > 1;
        let sale_name = |x: &Sale| {
            if many {
                format!(
                    "sale {} of {}",
                    x.local_no, self.counters[x.counter].terminal_id
                )
            } else {
                format!("sale {}", x.local_no)
            }
        };

        let mut acked_sales = shop.sales.clone();
        if s == 0 {
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
        }

        let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
        for o in &orders {
            let c = o["channel"].as_str().unwrap_or("?").to_owned();
            *by_channel.entry(c).or_default() += 1;
        }
        let gateway_ids: HashSet<String> = orders
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect();

        // Counter sales: each acknowledged one is one gateway order.
        let mut lost = Vec::new();
        let mut sale_orders: HashSet<String> = HashSet::new();
        let mut offline_uploaded = 0u64;
        for x in &acked_sales {
            let a = local(x);
            let id = a.and_then(|a| a["order_id"].as_str());
            match id {
                Some(id) if gateway_ids.contains(id) => {
                    sale_orders.insert(id.to_owned());
                    if x.offline && a.is_some_and(|a| a["state"] == "uploaded") {
                        offline_uploaded += 1;
                    }
                }
                _ => lost.push(format!("{} ({})", sale_name(x), x.client_order_id)),
            }
        }
        let terminal_orders: Vec<&Value> = orders
            .iter()
            .filter(|o| o["channel"] == "terminal")
            .collect();
        let mut dups = Vec::new();
        for o in &terminal_orders {
            let id = o["id"].as_str().unwrap_or("");
            if !sale_orders.contains(id) {
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
            shop.platform_orders.iter().filter(|p| p.acked).collect();
        let acked_app: Vec<&AppOrderState> =
            shop.app_orders.iter().filter(|o| o.id.is_some()).collect();
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

        // What the store's printers printed: receipts and pick tickets by
        // their QR. A job whose outcome the agent could not know prints
        // again marked REPRINT: an original at most once, and something
        // for each; a pick ticket at one counter only.
        let mut printed = Vec::new();
        for &c in &shop.counters {
            printed.extend(
                self.get(&format!("{}/printer/receipts", self.counters[c].devices))
                    .await?["receipts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        let mut receipt_keys: HashMap<String, usize> = HashMap::new();
        for (i, x) in acked_sales.iter().enumerate() {
            receipt_keys.insert(x.client_order_id.clone(), i);
            if let Some(id) = local(x).and_then(|a| a["order_id"].as_str()) {
                receipt_keys.insert(id.to_owned(), i);
            }
        }
        // (originals, reprints)
        let mut receipts: HashMap<usize, (u64, u64)> = HashMap::new();
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
            if let Some(i) = receipt_keys.get(q) {
                bump(receipts.entry(*i).or_default());
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
            .enumerate()
            .filter_map(|(i, x)| {
                let (n, again) = receipts.get(&i).copied().unwrap_or((0, 0));
                (n > 1 || n + again == 0)
                    .then(|| format!("{} printed {n}× (+{again} reprints)", sale_name(x)))
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
        for r in &shop.refunds {
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

        // The provider's ledger (this store's codes) against the code-paid
        // sales and refunds.
        let mut charges: BTreeMap<String, u64> = BTreeMap::new();
        let mut paid_fen = 0i64;
        let mut paid_n = 0u64;
        let mut provider_refunded = 0i64;
        for c in ledger.iter().filter(|c| {
            c["auth_code"]
                .as_str()
                .is_some_and(|a| shop.codes.contains(a))
        }) {
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
        for x in &shop.sales {
            let Some(a) = local(x) else {
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
        let outbox_mine: Vec<&Value> = outbox
            .iter()
            .filter(|e| {
                e["order_id"]
                    .as_str()
                    .is_some_and(|id| gateway_ids.contains(id))
            })
            .collect();
        let outbox_undelivered = outbox_mine.len() as u64;
        let outbox_what: Vec<String> = outbox_mine
            .iter()
            .take(5)
            .map(|e| {
                format!(
                    "{} {} {} after {} attempts: {}",
                    e["path"].as_str().unwrap_or("?"),
                    e["order_key"].as_str().unwrap_or("?"),
                    e["state"].as_str().unwrap_or("?"),
                    e["attempts"],
                    e["last_error"].as_str().unwrap_or("-")
                )
            })
            .collect();

        // Stock: on hand less reserved against the start less what the
        // orders of the day hold (open: reserved, completed: consumed;
        // rejected and cancelled gave theirs back) plus the restocks.
        let stock_now = self.stock(&shop.id).await?;
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
            let start = shop.stock_start.get(sku).copied().unwrap_or(0);
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
                    shop.refunds.len(),
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
        let mut sales_by_terminal: BTreeMap<String, u64> = BTreeMap::new();
        for x in &acked_sales {
            *sales_by_terminal
                .entry(self.counters[x.counter].terminal_id.clone())
                .or_default() += 1;
        }
        let report = StoreReport {
            store: shop.id.clone(),
            sales_by_terminal,
            terminals: shop
                .counters
                .iter()
                .map(|&c| self.counters[c].terminal_id.clone())
                .collect(),
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
            basket_lines_refused: shop.lines_refused.clone(),
            refunds_requested: shop.refunds.len() as u64,
            refunds_succeeded,
            offline_sales_uploaded: offline_uploaded,
            charges,
            charges_not_final,
            ledger_mismatches,
            stock_mismatches: stock_wrong.len() as u64,
            outbox_undelivered,
            faults_injected: self
                .faults_injected
                .iter()
                .filter(|(k, _)| *k == s)
                .map(|(_, f)| f.clone())
                .collect(),
            checks,
        };
        Ok((report, gateway_ids))
    }
}

/// Makes store `id` on the gateway (the demo has the first two).
async fn put_store(
    http: &reqwest::Client,
    addr: &str,
    admin: &str,
    id: &str,
) -> anyhow::Result<()> {
    let url = format!("http://{addr}/api/v1/stores/{id}");
    let r = http
        .put(&url)
        .bearer_auth(admin)
        .json(&json!({"name": format!("{id} 门店")}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "PUT {url}: {}", r.status());
    Ok(())
}

/// Starts a counter of store `store`: its devices (pseudo-terminals and a
/// control API), its agent config and the agent, through the store's link.
async fn start_counter(
    terminal_bin: &Path,
    dir: &Path,
    link: &Link,
    store: &str,
    tid: &str,
    key: &str,
    os: &OsPlan,
) -> anyhow::Result<Counter> {
    let state_dir = dir.join(format!("agent-state-{tid}"));
    std::fs::create_dir_all(&state_dir)?;
    let disk = match &os.disk {
        Ok(()) => SmallDisk::mount(&state_dir, SMALL_DISK_BYTES),
        Err(why) => Err(why.clone()),
    };
    let clock = match &os.clock {
        Ok(()) => {
            let at = dir.join(format!("clock-{tid}"));
            std::fs::create_dir_all(&at)?;
            FakeClock::new(&at)
        }
        Err(why) => Err(why.clone()),
    };
    let env = clock.as_ref().map(FakeClock::env).unwrap_or_default();
    let sim = crate::devices::Devices::start(&crate::devices::Config {
        dir: dir.join(format!("devices-{tid}")),
        record: None,
    })?;
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let devices = format!("http://{}", l.local_addr()?);
    tokio::spawn(Arc::clone(&sim).serve(l, std::future::pending::<()>()));
    let link_path = |d: &str| -> anyhow::Result<String> {
        Ok(sim
            .link(d)
            .with_context(|| format!("no {d} link"))?
            .display()
            .to_string())
    };
    let config = dir.join(format!("terminal-{tid}.toml"));
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
            state_dir.display(),
            link_path("printer")?,
            link_path("scale")?,
            link_path("scanner")?,
            link_path("display")?,
        ),
    )?;
    let log = dir.join(format!("agent-{tid}.log"));
    let (child, agent) = start_agent(terminal_bin, &config, key, &log, &env).await?;
    Ok(Counter {
        terminal_id: tid.to_owned(),
        agent,
        devices,
        sim,
        child,
        clock,
        disk,
    })
}

/// Whether the day's store-PC faults can be injected here: `Err` says why
/// not (not planned, left out, no libfaketime, not root).
struct OsPlan {
    clock: Result<(), String>,
    disk: Result<(), String>,
}

impl OsPlan {
    fn new(args: &Args, dir: &Path) -> OsPlan {
        let planned = |k: FaultKind| {
            if args.faults != Faults::All {
                Err("not planned".to_owned())
            } else if args.skip_faults.iter().any(|f| f == k.as_str()) {
                Err("left out (--skip-fault)".to_owned())
            } else {
                Ok(())
            }
        };
        let clock = planned(FaultKind::ClockJump).and_then(|()| {
            // One look that libfaketime really moves a child's clock.
            let at = dir.join("clock-probe");
            std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            let probe = FakeClock::new(&at)?;
            probe.probe()
        });
        let disk = planned(FaultKind::DiskFull);
        OsPlan { clock, disk }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_fen_or_not_at_all() {
        assert_eq!(fen("22.66"), Some(2266));
        assert_eq!(fen("0.05"), Some(5));
        for bad in ["22.6", "22", "-1.00", "1.0a", ".50", "9999999999999.00"] {
            assert_eq!(fen(bad), None, "{bad}");
        }
        assert_eq!(yuan(2266), "22.66");
    }

    #[test]
    fn quantities_parse_to_milli_units_or_not_at_all() {
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(milli("12.500"), Some(12500));
        assert_eq!(milli("0.35"), Some(350));
        for bad in ["", "-1", "1.2345", "1,5", ".5", "9999999999999"] {
            assert_eq!(milli(bad), None, "{bad}");
        }
        assert_eq!(thousandths(-1500), "-1.500");
    }

    #[test]
    fn several_stores_play_their_own_days_and_one_set_of_installation_faults() {
        let (_, one) = timeline(7, 2, Faults::All, 1);
        let (_, three) = timeline(7, 2, Faults::All, 3);
        // The first store's day is the one-store day of the same seed.
        let first: Vec<_> = three.iter().filter(|e| e.1 == 0).cloned().collect();
        assert_eq!(first, one);
        // The others differ, and carry no gateway, platform or provider
        // fault of their own.
        let second: Vec<_> = three
            .iter()
            .filter(|e| e.1 == 1)
            .map(|e| e.2.clone())
            .collect();
        assert_ne!(second, one.iter().map(|e| e.2.clone()).collect::<Vec<_>>());
        let restarts = three
            .iter()
            .filter(|e| matches!(e.2, Event::Fault { kind, .. } if global_fault(kind)))
            .count();
        let restarts_one = one
            .iter()
            .filter(|e| matches!(e.2, Event::Fault { kind, .. } if global_fault(kind)))
            .count();
        assert_eq!(restarts, restarts_one);
        assert!(three.windows(2).all(|w| w[0].0 <= w[1].0));
        // Store fault on every store.
        for k in 0..3 {
            assert!(three.iter().any(|e| e.1 == k
                && matches!(
                    e.2,
                    Event::Fault {
                        kind: FaultKind::NetworkCut,
                        ..
                    }
                )));
        }
    }
}
