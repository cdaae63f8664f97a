//! The counter agent under the store PC's own faults, injected for real
//! into the real `terminal run` binary (no hook in the agent):
//!
//! - the wall clock jumps (libfaketime preloaded, `hw_sim::osfaults::FakeClock`):
//!   forward over midnight, then back over midnight to the day before, while
//!   the agent sells online and offline and holds a sale the gateway
//!   refused: every sale is on the gateway once, local numbers never repeat,
//!   the uploads go on, and the held sale is retried at once after the clock
//!   went back instead of hours later;
//! - the disk under the state directory fills up (a small tmpfs mounted there,
//!   `hw_sim::osfaults::SmallDisk`, root only): checkouts are refused with
//!   `507 disk_full` and nothing is recorded, what was acknowledged stays and
//!   uploads, the agent keeps running and sells again once space is back,
//!   and each receipt prints once.
//!
//! Without libfaketime, or without root, a test is skipped with the reason
//! printed; under CI=true it fails instead.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway::keys::Role;
use hw_sim::osfaults::{FakeClock, SmallDisk};
use proto::order::Unit;
use serde_json::{Value, json};
use tests::agent::{Agent, DeviceSim, Link, command};
use tests::{Backend, TestApp, in_ci, key_for};

const TERMINAL: &str = "S001-T01";

/// `Ok` or, when the machine lacks what the test needs: a failure under
/// CI=true, else a skip with the reason written past the test capture.
fn needed<T>(what: &str, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(why) => {
            assert!(!in_ci(), "{what} is required under CI=true: {why}");
            let test = std::thread::current()
                .name()
                .unwrap_or("agent_faults")
                .to_owned();
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: no {what}: {why}");
            None
        }
    }
}

fn write_config(dir: &Path, state: &Path, gateway_url: &str, printer: &str) -> PathBuf {
    let path = dir.join("terminal.toml");
    std::fs::write(
        &path,
        format!(
            r#"gateway_url = "{gateway_url}"
terminal_id = "{TERMINAL}"
store_id = "S001"
state_dir = "{}"
listen = "127.0.0.1:0"
heartbeat_s = 1
catalog_refresh_s = 1
upload_retry_ms = 50
held_retry_s = 1
request_timeout_ms = 2000

[devices]
printer = "{printer}"
"#,
            state.display()
        ),
    )
    .expect("write config");
    path
}

async fn gateway() -> (TestApp, String) {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite gateway");
    app.product("COLA", "可乐", Unit::Piece, "3.50", "1000")
        .await;
    app.product("GUM", "口香糖", Unit::Piece, "1.50", "1000")
        .await;
    let key = key_for(&app.db, Role::Terminal, Some("S001"), Some(TERMINAL)).await;
    (app, key)
}

/// The terminal orders of S001 on the gateway.
async fn gateway_sales(app: &TestApp) -> Vec<Value> {
    let (status, v) = app
        .get_json(
            "/api/v1/stores/S001/orders?channel=terminal&limit=500",
            &app.admin,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["orders"].as_array().cloned().unwrap_or_default()
}

fn pending(s: &Value) -> i64 {
    s["queue"]["pending"].as_i64().unwrap_or(-1)
}

async fn sell(agent: &Agent, sku: &str, n: u32) -> Value {
    agent
        .add(json!({"sku": sku, "quantity": n.to_string()}))
        .await;
    let (st, sale) = agent
        .post(
            "/api/checkout",
            json!({"tender": "cash", "tendered": "100"}),
        )
        .await;
    assert_eq!(st, 201, "{sale}");
    sale
}

/// Every sale of the agent is on the gateway once, with its total and the
/// time the agent recorded (its clock, right or wrong), and nothing else is.
async fn every_sale_once(app: &TestApp, agent: &Agent, sales: &[Value]) {
    let orders = gateway_sales(app).await;
    let mut seen = HashSet::new();
    for o in &orders {
        let r = o["channel_order_id"].as_str().expect("channel ref");
        assert!(seen.insert(r.to_owned()), "{r} twice on the gateway");
    }
    assert_eq!(orders.len(), sales.len(), "{orders:#?}");
    for sale in sales {
        let id = sale["client_order_id"].as_str().expect("id");
        let o = orders
            .iter()
            .find(|o| o["channel_order_id"] == format!("{TERMINAL}:{id}"))
            .unwrap_or_else(|| panic!("sale {id} is not on the gateway"));
        assert_eq!(o["total"], sale["total"], "{o}");
        let here = agent.get(&format!("/api/sales/{}", sale["local_no"])).await;
        assert_eq!(here["state"], "uploaded", "{here}");
        assert_eq!(here["order_id"], o["id"], "{here}");
        // soldAt is the agent's clock when the sale was recorded.
        assert_eq!(
            micros(&o["sold_at"]),
            micros(&here["created_at"]),
            "{o} / {here}"
        );
    }
}

/// Microseconds since the epoch of an RFC 3339 time the agent wrote.
fn micros(t: &Value) -> i64 {
    proto::time::Timestamp::parse(t.as_str().expect("a time"))
        .expect("RFC 3339")
        .micros()
}

// ---------------------------------------------------------------- clock

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_sales_across_clock_jumps_uploads_every_sale_once() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(clock) = needed("libfaketime", FakeClock::new(dir.path())) else {
        return;
    };
    // libfaketime really moves a child's clock here (e.g. not under a
    // static `date`).
    let Some(()) = needed("working libfaketime", clock.probe()) else {
        return;
    };
    let (app, key) = gateway().await;
    let link = Link::start(app.addr.to_string()).await.expect("link");
    let sim = DeviceSim::start().await;
    let state = dir.path().join("state");
    let config = write_config(dir.path(), &state, &link.url, &sim.link("printer"));
    let mut cmd = command(&config, &key);
    cmd.envs(clock.env());
    let agent = Agent::spawn(cmd).await;
    agent
        .wait_for(20, "the catalog", |s| s["catalog"]["items"] == 2)
        .await;

    // Offsets that put the PC's clock at 00:30 tomorrow (UTC), then at 23:30
    // yesterday: over midnight forward, then back over two midnights,
    // whatever the true time.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let midnight = now - now.rem_euclid(86_400);
    let tomorrow_0030 = midnight + 86_400 + 1_800 - now;
    let yesterday_2330 = midnight - 1_800 - now;

    let mut sales = Vec::new();
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 1).await);
    }
    agent
        .wait_for(20, "the first sales uploaded", |s| pending(s) == 0)
        .await;

    // The store stops keeping GUM: a GUM sale is refused and held.
    sqlx::raw_sql(
        "CREATE TABLE kept_gum AS SELECT * FROM store_items WHERE sku = 'GUM';
         DELETE FROM store_items WHERE sku = 'GUM';",
    )
    .execute(&app.db.pool)
    .await
    .expect("GUM out of the store");
    let held = sell(&agent, "GUM", 1).await;
    sales.push(held.clone());
    let no = held["local_no"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = agent.get(&format!("/api/sales/{no}")).await;
        if s["state"] == "held" {
            break;
        }
        assert!(Instant::now() < deadline, "the GUM sale is not held: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Forward over midnight: the agent goes on selling and uploading.
    clock.set_offset(tomorrow_0030).expect("jump");
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 2).await);
    }
    agent
        .wait_for(20, "sales after the forward jump uploaded", |s| {
            s["queue"]["queued"] == 0
        })
        .await;
    // The gateway away: sales queue.
    link.up.send_replace(false);
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 3).await);
    }
    // Back over two midnights, past every time the agent has recorded.
    clock.set_offset(yesterday_2330).expect("jump");
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 1).await);
    }
    // The store keeps GUM again, and the gateway is back.
    sqlx::raw_sql(
        "INSERT INTO store_items SELECT * FROM kept_gum;
         DROP TABLE kept_gum;",
    )
    .execute(&app.db.pool)
    .await
    .expect("GUM back");
    link.up.send_replace(true);
    // The held sale is due one retry (1 s) after its refusal, which the PC's
    // clock now puts more than two days ahead: it must not wait for that.
    let s = agent
        .wait_for(30, "every sale uploaded, the held one too", |s| {
            pending(s) == 0
        })
        .await;
    assert_eq!(s["queue"]["uploaded"], sales.len() as i64, "{s:#}");
    assert_eq!(s["tasks"]["all_up"], true, "{s:#}");
    agent
        .wait_for(10, "the screen to show the clock jump", |s| {
            s["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["code"] == "clock_jump"))
        })
        .await;

    // Local numbers 1, 2, 3… in the order sold, never reused, whatever the
    // clock said; the recorded times say what the clock said.
    let nos: Vec<i64> = sales
        .iter()
        .map(|s| s["local_no"].as_i64().expect("local_no"))
        .collect();
    assert_eq!(nos, (1..=sales.len() as i64).collect::<Vec<_>>());
    let created: Vec<i64> = sales.iter().map(|s| micros(&s["created_at"])).collect();
    let day_us = 86_400_000_000;
    assert!(created[3] / day_us > created[2] / day_us, "{created:?}");
    assert!(created[7] / day_us < created[0] / day_us, "{created:?}");
    every_sale_once(&app, &agent, &sales).await;

    // The day close counts each sale once.
    let (st, day) = agent.post("/api/day/close", json!({})).await;
    assert_eq!(st, 201, "{day}");
    assert_eq!(day["sales"], sales.len() as i64, "{day}");
    assert_eq!(day["first_local_no"], 1);
    clock.reset().expect("reset");
    let after = sell(&agent, "COLA", 1).await;
    assert_eq!(after["local_no"], sales.len() as i64 + 1);

    // Each receipt printed once, none as a reprint.
    let receipts = sim.wait_receipts(sales.len() + 1, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receipts_now = sim.receipts().await;
    assert_eq!(receipts_now.len(), receipts.len(), "{receipts_now:#?}");
    assert!(
        receipts_now
            .iter()
            .all(|r| !r["text"].as_str().unwrap_or("").contains("REPRINT")),
        "{receipts_now:#?}"
    );
    agent.kill().await;
}

// ----------------------------------------------------------------- disk

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_checkouts_cleanly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let Some(disk) = needed(
        "size-limited mount (root)",
        SmallDisk::mount(&state, 16 << 20),
    ) else {
        return;
    };
    let (app, key) = gateway().await;
    let link = Link::start(app.addr.to_string()).await.expect("link");
    let sim = DeviceSim::start().await;
    let config = write_config(dir.path(), &state, &link.url, &sim.link("printer"));
    let mut agent = Agent::start(&config, &key).await;
    agent
        .wait_for(20, "the catalog", |s| s["catalog"]["items"] == 2)
        .await;

    let mut sales = Vec::new();
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 1).await);
    }
    agent
        .wait_for(20, "the first sales uploaded", |s| pending(s) == 0)
        .await;
    // The gateway away: two sales acknowledged and queued.
    link.up.send_replace(false);
    for _ in 0..2 {
        sales.push(sell(&agent, "COLA", 2).await);
    }
    sim.wait_receipts(sales.len(), 20).await;

    // The next customer's basket, then the disk fills. SQLite may still
    // commit into the room its write-ahead log already has (a sale it
    // acknowledges then is on disk): sell until the agent refuses.
    agent.add(json!({"sku": "GUM", "quantity": "2"})).await;
    assert!(disk.fill().expect("fill") > 0);
    let mut refused = 0;
    for _ in 0..500 {
        let (st, v) = agent
            .post("/api/checkout", json!({"tender": "cash", "tendered": "10"}))
            .await;
        match (st, v["code"].as_str()) {
            (201, _) => sales.push(v),
            (507, Some("disk_full")) => refused += 1,
            // The basket line below was refused: nothing to sell.
            (409, Some("empty_basket")) => {}
            _ => panic!("a checkout on a full disk answered {st}: {v}"),
        }
        if refused == 3 {
            break;
        }
        if st != 507 {
            let (st, v) = agent
                .post("/api/basket/lines", json!({"sku": "GUM", "quantity": "2"}))
                .await;
            assert!(
                st == 201 || (st, v["code"].as_str()) == (507, Some("disk_full")),
                "adding a line on a full disk answered {st}: {v}"
            );
        }
    }
    assert_eq!(refused, 3, "a sale that cannot be saved is refused");
    let acknowledged = sales.len();
    let (st, v) = agent
        .post("/api/basket/lines", json!({"sku": "COLA", "quantity": "1"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (507, Some("disk_full")), "{v}");
    agent
        .wait_for(10, "the disk warning", |s| {
            s["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["code"] == "disk_low"))
        })
        .await;
    // The gateway back while the disk is still full: the oldest queued sale
    // reaches it (the agent cannot record that, so it sends it again and
    // the later ones wait their turn).
    link.up.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway_sales(&app).await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the first queued sale did not upload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent.child.try_wait().expect("wait").is_none(),
        "the agent keeps running"
    );
    // The PC loses power while the disk is full.
    agent.child.kill().await.expect("kill");
    let _ = agent.child.wait().await;

    // Started again on the still full disk: it runs, shows every sale it
    // acknowledged, and refuses to sell.
    agent = Agent::start(&config, &key).await;
    for sale in &sales {
        let here = agent
            .http
            .get(format!("{}/api/sales/{}", agent.base, sale["local_no"]))
            .send()
            .await
            .expect("agent answers");
        assert_eq!(
            here.status(),
            200,
            "acknowledged sale {} is lost",
            sale["local_no"]
        );
    }
    if agent.get("/api/basket").await["lines"] != json!([]) {
        let (st, v) = agent
            .post("/api/checkout", json!({"tender": "cash", "tendered": "10"}))
            .await;
        assert_eq!((st, v["code"].as_str()), (507, Some("disk_full")), "{v}");
    }

    // Space back: the refused basket sells, numbered next.
    disk.free().expect("free");
    for sale in &sales {
        let here = agent
            .http
            .get(format!("{}/api/sales/{}", agent.base, sale["local_no"]))
            .send()
            .await
            .expect("agent answers");
        assert_eq!(
            here.status(),
            200,
            "acknowledged sale {} is lost",
            sale["local_no"]
        );
    }
    if agent.get("/api/basket").await["lines"] == json!([]) {
        agent.add(json!({"sku": "GUM", "quantity": "2"})).await;
    }
    let (st, sale) = agent
        .post("/api/checkout", json!({"tender": "cash", "tendered": "10"}))
        .await;
    assert_eq!(st, 201, "{sale}");
    assert_eq!(sale["total"], "3.00");
    assert_eq!(sale["local_no"], acknowledged as i64 + 1, "{sale}");
    sales.push(sale);
    let s = agent
        .wait_for(30, "every sale uploaded", |s| pending(s) == 0)
        .await;
    assert_eq!(s["tasks"]["all_up"], true, "{s:#}");
    every_sale_once(&app, &agent, &sales).await;

    // Every receipt on paper once as an original (one whose job the power
    // cut left unconfirmed may come again, marked REPRINT), and the ledger
    // has each as printed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let originals = loop {
        let r = sim.receipts().await;
        let originals = r
            .iter()
            .filter(|r| !r["text"].as_str().unwrap_or("").contains("REPRINT"))
            .count();
        let tickets = agent.get("/api/tickets?limit=500").await;
        let printed = tickets["tickets"]
            .as_array()
            .is_some_and(|t| t.len() == sales.len() && t.iter().all(|t| t["state"] == "printed"));
        if printed {
            break originals;
        }
        assert!(
            Instant::now() < deadline,
            "receipts not printed: {tickets:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(originals, sales.len());
    agent.kill().await;
    drop(disk);
}
