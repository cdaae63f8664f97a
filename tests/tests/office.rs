//! `hw-sim office`: a one-minute store day with every fault on SQLite and
//! on PostgreSQL exits 0 with nothing lost or doubled and the stock as the
//! orders say; a run with an invariant broken on purpose exits non-zero and
//! names the failing check.

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;
use tests::{Backend, TestDb};

/// The directory with this build profile's binaries, `hw-sim`, `gateway`
/// and `terminal` built in it.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tests::agent::build_bins(&["hw-sim", "gateway", "terminal-sdk"]))
        .clone()
}

fn office(args: &[&str], report: &std::path::Path) -> Output {
    std::process::Command::new(bin_dir().join("hw-sim"))
        .arg("office")
        .args(args)
        .arg("--report")
        .arg(report)
        .env("RUST_LOG", "error")
        .output()
        .expect("hw-sim office runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn a_day_holds(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let report = dir.path().join("report.json");
    // Every fault of the plan, the store PC's clock jump and full disk
    // among them (those need libfaketime and root: skipped with why on a
    // machine without, never under CI).
    let planned = 15;
    let mut args = vec!["--minutes", "1", "--seed", "1", "--faults", "all"];
    if backend == Backend::Postgres {
        args.extend(["--database-url", db.url()]);
    }
    let out = office(&args, &report);
    let all = text(&out);
    assert!(out.status.success(), "hw-sim office failed:\n{all}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let t = &r["total"];
    assert_eq!(t["duplicates"], 0, "{all}");
    assert_eq!(t["lost"], 0, "{all}");
    assert_eq!(t["tickets_duplicated"], 0, "{all}");
    // A real day: counter sales and platform orders, all on the gateway,
    // each sale's receipt printed, the three faults injected.
    let counter = t["orders_acknowledged"]["terminal"].as_u64().unwrap_or(0);
    let platform = t["orders_acknowledged"]["third_party"]
        .as_u64()
        .unwrap_or(0);
    let app = t["orders_acknowledged"]["official"].as_u64().unwrap_or(0);
    assert!(counter >= 10 && platform >= 4 && app >= 2, "{all}");
    assert_eq!(t["orders_by_channel"]["terminal"], counter, "{all}");
    assert_eq!(t["orders_by_channel"]["third_party"], platform, "{all}");
    assert_eq!(t["orders_by_channel"]["official"], app, "{all}");
    // Orders moved on at the counter and on the gateway, and refunded by
    // line with their goods back in stock.
    for k in [
        "accepts_acknowledged",
        "ready_acknowledged",
        "completes_acknowledged",
        "refunds_succeeded",
    ] {
        assert!(t[k].as_u64().unwrap_or(0) > 0, "{k}: {all}");
    }
    assert_eq!(t["stock_mismatches"], 0, "{all}");
    // Every field of the report, per store and in total.
    for st in r["stores"].as_array().into_iter().flatten().chain([t]) {
        for k in [
            "orders_by_channel",
            "orders_acknowledged",
            "orders_on_gateway",
            "duplicates",
            "lost",
            "receipts_printed",
            "tickets_printed",
            "tickets_duplicated",
            "charges",
            "charges_not_final",
            "ledger_mismatches",
            "stock_mismatches",
            "outbox_undelivered",
            "offline_sales_uploaded",
            "faults_injected",
            "checks",
        ] {
            assert!(!st[k].is_null(), "{k} missing: {all}");
        }
    }
    let skipped = r["faults_skipped"].as_array().cloned().unwrap_or_default();
    for f in &skipped {
        let f = f.as_str().unwrap_or_default();
        assert!(
            !tests::in_ci()
                && (f.starts_with("clock_jump_on_the_store_pc")
                    || f.starts_with("agent_state_disk_full")),
            "only the store PC's faults may be skipped, and not in CI: {f}\n{all}"
        );
        eprintln!("SKIPPED fault: {f}");
    }
    assert_eq!(t["receipts_printed"], counter, "{all}");
    // What the printer printed, drawn for a person to look at.
    let images = r["receipt_images"].as_str().unwrap_or_default().to_owned();
    if images.starts_with("not drawn") && !tests::in_ci() {
        eprintln!("SKIPPED receipt images: {images}");
    } else {
        let pngs: Vec<_> = std::fs::read_dir(dir.path().join("receipts"))
            .unwrap_or_else(|e| panic!("{images}: {e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        assert!(pngs.len() as u64 >= counter, "{images}: {pngs:?}");
        let first = std::fs::read(&pngs[0]).expect("png");
        assert!(first.starts_with(b"\x89PNG\r\n\x1a\n"), "{:?}", pngs[0]);
    }
    assert_eq!(
        r["faults_injected"].as_array().map(Vec::len),
        Some(planned - skipped.len()),
        "{all}"
    );
    if skipped.is_empty() {
        // Sales on the full disk were refused, not half saved.
        assert!(
            t["basket_lines_refused"]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| k.contains("disk_full"))),
            "{all}"
        );
    }
    assert_eq!(t["charges_not_final"], 0, "{all}");
    assert_eq!(t["ledger_mismatches"], 0, "{all}");
    assert_eq!(t["outbox_undelivered"], 0, "{all}");
    assert!(
        r["checks"]
            .as_object()
            .is_some_and(|c| !c.is_empty() && c.values().all(|c| c["pass"] == true)),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_minute_day_with_every_fault_loses_and_doubles_nothing_on_sqlite() {
    a_day_holds(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_minute_day_with_every_fault_loses_and_doubles_nothing_on_postgres() {
    a_day_holds(Backend::Postgres).await
}

/// Two stores with two counters each: every store's day on its own
/// counters, sales at both, accepts taking turns and each pick ticket at
/// one counter only, the ledger split by store, and the totals the sum of
/// the stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_with_two_counters_each_lose_and_double_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let report = dir.path().join("report.json");
    let args = [
        "--minutes",
        "1",
        "--seed",
        "3",
        "--faults",
        "all",
        "--stores",
        "2",
        "--terminals",
        "2",
    ];
    let out = office(&args, &report);
    let all = text(&out);
    assert!(out.status.success(), "hw-sim office failed:\n{all}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let stores = r["stores"].as_array().cloned().unwrap_or_default();
    assert_eq!(stores.len(), 2, "{all}");
    let t = &r["total"];
    let mut sum = 0;
    for (st, id) in stores.iter().zip(["S001", "S002"]) {
        assert_eq!(st["store"], id, "{all}");
        let terminals: Vec<&str> = st["terminals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            terminals,
            [format!("{id}-T01"), format!("{id}-T02")],
            "{all}"
        );
        // Both counters sold, and the gateway has each sale once.
        for tid in &terminals {
            assert!(
                st["sales_by_terminal"][tid].as_u64().unwrap_or(0) > 0,
                "no sales at {tid}: {all}"
            );
        }
        let counter = st["orders_acknowledged"]["terminal"].as_u64().unwrap_or(0);
        assert!(counter >= 10, "{all}");
        assert_eq!(st["orders_by_channel"]["terminal"], counter, "{all}");
        assert_eq!(st["receipts_printed"], counter, "{all}");
        assert!(
            st["accepts_acknowledged"].as_u64().unwrap_or(0) > 0,
            "{all}"
        );
        assert!(
            st["charges"].as_object().is_some_and(|c| !c.is_empty()),
            "{all}"
        );
        for k in [
            "duplicates",
            "lost",
            "tickets_duplicated",
            "ledger_mismatches",
        ] {
            assert_eq!(st[k], 0, "{id} {k}: {all}");
        }
        assert!(
            st["checks"]
                .as_object()
                .is_some_and(|c| c.values().all(|c| c["pass"] == true)),
            "{all}"
        );
        sum += st["orders_on_gateway"].as_u64().unwrap_or(0);
    }
    assert_eq!(t["orders_on_gateway"], sum, "{all}");
    // The gateway's, platform's and provider's faults once for the day;
    // a network cut in each store.
    let faults: Vec<&str> = r["faults_injected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let restarts = faults
        .iter()
        .filter(|f| f.starts_with("gateway_killed"))
        .count();
    assert_eq!(restarts, 1, "{all}");
    for id in ["S001", "S002"] {
        assert!(
            faults
                .iter()
                .any(|f| f.starts_with("network_cut") && f.ends_with(&format!("({id})"))),
            "{all}"
        );
    }
    // Receipts drawn per counter.
    let images = r["receipt_images"].as_str().unwrap_or_default();
    if !images.starts_with("not drawn") {
        assert!(dir.path().join("receipts/S002-T02").is_dir(), "{images}");
    }
    assert!(
        r["checks"]
            .as_object()
            .is_some_and(|c| !c.is_empty() && c.values().all(|c| c["pass"] == true)),
        "{all}"
    );
}

/// The harness can fail: one gateway order hidden from the report makes an
/// acknowledged sale look lost, and the run says so, with the seed.
#[test]
fn a_broken_invariant_fails_the_day_and_names_the_check() {
    let dir = tempfile::tempdir().expect("dir");
    let report = dir.path().join("report.json");
    let out = office(
        &[
            "--minutes",
            "1",
            "--seed",
            "2",
            "--faults",
            "none",
            "--break",
            "hide-one-order",
        ],
        &report,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("FAIL  no_lost_orders"), "{all}");
    assert!(all.contains("hw-sim office --seed 2"), "{all}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(r["total"]["lost"], 1, "{all}");
    assert_eq!(r["checks"]["no_lost_orders"]["pass"], false, "{all}");
}

/// A free local port (bound and let go: the simulator binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `--against`: a day played on a gateway someone else started (as the
/// go-live regression run does) holds the same checks; the gateway is not
/// killed (that fault is reported skipped) and is still serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_against_a_running_gateway_holds_and_skips_the_restart() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("dir");
    let (pay, platform) = (free_port(), free_port());
    let mut cmd = tokio::process::Command::new(bin_dir().join("gateway"));
    cmd.arg("serve")
        .arg("--demo")
        .args(["--listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("gw.db").display()));
    for (k, v) in [
        (
            "payments.wechatpay_base_url",
            format!("http://127.0.0.1:{pay}"),
        ),
        ("payments.wechatpay_appid", "wx2421b1c4370ec43b".into()),
        ("payments.wechatpay_mch_id", "10000100".into()),
        (
            "payments.wechatpay_key",
            "192006250b4c09247ec02edce69f6a2d".into(),
        ),
        ("payments.poll_ms", "100".into()),
        ("payments.deadline_ms", "6000".into()),
        (
            "channels.meituan_base_url",
            format!("http://127.0.0.1:{platform}"),
        ),
        ("channels.meituan_app_id", "office-mt".into()),
        ("channels.meituan_secret", "office-mt-secret-0123".into()),
        ("outbox.backoff_ms", "50".into()),
        ("outbox.backoff_max_ms", "400".into()),
        ("outbox.poll_ms", "50".into()),
    ] {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let mut gw = cmd
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gateway starts");
    let mut lines = tokio::io::BufReader::new(gw.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("gateway stdout")
            .expect("the gateway exited at start");
        if let Some(a) = line.strip_prefix("gateway listening on ") {
            break a.trim().to_owned();
        }
        printed.push(line);
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let demo = |prefix: &str| {
        printed
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in {printed:?}"))
    };
    let report = dir.path().join("report.json");
    let out = std::process::Command::new(bin_dir().join("hw-sim"))
        .arg("office")
        .args(["--minutes", "1", "--seed", "4", "--faults", "some"])
        .args(["--against", &addr, "--store", "S002"])
        .arg("--pay-listen")
        .arg(format!("127.0.0.1:{pay}"))
        .arg("--platform-listen")
        .arg(format!("127.0.0.1:{platform}"))
        .arg("--report")
        .arg(&report)
        .env("OFFICE_ADMIN_KEY", demo("demo admin key:"))
        .env("OFFICE_APP_KEY", demo("demo app key:"))
        .env("OFFICE_TERMINAL_KEY", demo("demo terminal key S002:"))
        .env("OFFICE_TERMINAL_ID", demo("demo terminal id S002:"))
        .env("RUST_LOG", "error")
        .output()
        .expect("hw-sim office runs");
    let all = text(&out);
    assert!(
        out.status.success(),
        "hw-sim office --against failed:\n{all}"
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let t = &r["total"];
    assert_eq!(t["store"], "S002", "{all}");
    assert_eq!(t["lost"], 0, "{all}");
    assert_eq!(t["duplicates"], 0, "{all}");
    assert!(
        t["orders_acknowledged"]["terminal"].as_u64().unwrap_or(0) >= 10,
        "{all}"
    );
    // Paper out and the cut injected; the restart skipped, with why.
    assert_eq!(
        r["faults_injected"].as_array().map(Vec::len),
        Some(2),
        "{all}"
    );
    let skipped = r["faults_skipped"].to_string();
    assert!(skipped.contains("gateway_killed_and_restarted"), "{all}");
    // The gateway was left running: it still answers.
    assert!(
        gw.try_wait().expect("wait").is_none(),
        "the gateway exited: {all}"
    );
    let ready = reqwest::get(format!("{addr}/readyz"))
        .await
        .expect("readyz");
    assert!(ready.status().is_success(), "{all}");
}
