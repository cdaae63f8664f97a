//! Nothing is lost across a restart: calls written but not delivered when
//! the gateway stops (or is killed with SIGKILL) are delivered by the next
//! gateway on the same database, once.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use gateway::db::Db;
use gateway::keys::Role;
use hw_sim::platform::{Faults, PlatformConfig, PlatformSim, PushRequest};
use serde_json::{Value, json};
use tests::{Backend, TestDb, on_both_databases};

use crate::app::{APP_ID, Chan, SECRET, cola, eventually, key, platform_down};

on_both_databases!(
    undelivered_calls_survive_a_restart,
    a_call_in_flight_when_the_gateway_dies_is_sent_again,
    killed_gateway_binary_delivers_after_restart,
);

async fn undelivered_calls_survive_a_restart(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    platform_down(&app.sim);
    let (_, o) = app.push_new("S001", vec![cola(1)]).await;
    app.act_all(o["id"].as_str().unwrap(), &["accept", "ready"])
        .await;
    eventually(5, || async {
        app.sim.received().iter().any(|r| r.fault).then_some(())
    })
    .await
    .expect("tried while down");
    let (store, sim) = app.stop().await;
    sim.clear_faults();
    sim.clear_received();

    let app = Chan::start(store, Some(sim), |_| {}).await;
    app.drained(15).await;
    assert_eq!(
        app.platform_calls(),
        ["order/confirm", "order/preparationMealComplete"]
    );
}

async fn a_call_in_flight_when_the_gateway_dies_is_sent_again(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    // The platform swallows the call and never answers.
    app.sim
        .set_faults(Faults {
            drop: true,
            ..Faults::default()
        })
        .unwrap();
    let (_, o) = app.push_new("S001", vec![cola(1)]).await;
    app.act_all(o["id"].as_str().unwrap(), &["accept"]).await;
    eventually(5, || async {
        let c = app.outbox_counts().await;
        (c["delivering"] == 1).then_some(())
    })
    .await
    .expect("in flight");
    let (store, sim) = app.stop().await;
    sim.clear_faults();

    // SQLite: released at start; PostgreSQL: when its lease runs out.
    let app = Chan::start(store, Some(sim), |_| {}).await;
    app.drained(20).await;
    assert_eq!(app.platform_calls(), ["order/confirm"]);
}

// ------------------------------------------------------------ the real binary

/// The `gateway` binary of this build profile, built if needed.
fn gateway_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        // target/<profile>/deps/channels-… → target/<profile>
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-q", "-p", "gateway", "--bin", "gateway"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            c.arg("--release");
        }
        let status = c.status().expect("cargo build gateway");
        assert!(status.success(), "building the gateway binary");
        let bin = dir.join("gateway");
        assert!(bin.exists(), "no gateway binary at {}", bin.display());
        bin
    })
    .clone()
}

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db_url: &str, sim: &PlatformSim) -> Proc {
    let mut child = Command::new(gateway_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db_url])
        .env("RUST_LOG", "warn")
        .env("GATEWAY_MEITUAN_BASE_URL", sim.url())
        .env("GATEWAY_MEITUAN_APP_ID", APP_ID)
        .env("GATEWAY_MEITUAN_SECRET", SECRET)
        .env("GATEWAY_OUTBOX_BACKOFF_MS", "50")
        .env("GATEWAY_OUTBOX_BACKOFF_MAX_MS", "300")
        .env("GATEWAY_OUTBOX_POLL_MS", "50")
        .env("GATEWAY_OUTBOX_TIMEOUT_MS", "1000")
        .env_remove("GATEWAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .expect("read");
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    sim.set_gateway_url(&base);
    Proc { child, base }
}

async fn killed_gateway_binary_delivers_after_restart(b: Backend) {
    let Some(store) = TestDb::new(b).await else {
        return;
    };
    let bin = tokio::task::spawn_blocking(gateway_bin).await.unwrap();
    assert!(bin.exists());
    // Seed, then leave the database to the binary.
    let (admin, terminal) = {
        let db = Db::connect(store.url()).await.unwrap();
        db.migrate_up().await.unwrap();
        tests::seed_cola(&db, "S001", "门店", "100").await;
        let admin = key(&db, Role::Admin, None, None).await;
        let terminal = key(&db, Role::Terminal, Some("S001"), None).await;
        db.pool.close().await;
        (admin, terminal)
    };
    let sim = PlatformSim::start(PlatformConfig::new("http://127.0.0.1:1", APP_ID, SECRET))
        .await
        .unwrap();
    platform_down(&sim);
    let gw = serve(store.url(), &sim);
    let http = reqwest::Client::new();
    let out = sim
        .push(PushRequest::new_order("S001", vec![cola(2)]))
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{:?}", out.answer);
    let get = |base: String, path: &'static str, key: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(key)
                .send()
                .await
                .ok()?;
            r.json::<Value>().await.ok()
        }
    };
    let order = eventually(3, || async {
        let v = get(gw.base.clone(), "/api/v1/stores/S001/orders", admin.clone()).await?;
        v["orders"].as_array()?.first().cloned()
    })
    .await
    .expect("the pushed order");
    let id = order["id"].as_str().unwrap().to_owned();
    for a in ["accept", "ready"] {
        let r = http
            .post(format!("{}/api/v1/orders/{id}/{a}", gw.base))
            .bearer_auth(&terminal)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    eventually(5, || async {
        sim.received().iter().any(|r| r.fault).then_some(())
    })
    .await
    .expect("tried while the platform is down");
    drop(gw); // SIGKILL, then reaped
    sim.clear_faults();

    let gw = serve(store.url(), &sim);
    let ok = eventually(15, || async {
        let ok: Vec<String> = sim.received_ok().into_iter().map(|r| r.path).collect();
        (ok.len() >= 2).then_some(ok)
    })
    .await
    .expect("delivered after the restart");
    assert_eq!(ok, ["order/confirm", "order/preparationMealComplete"]);
    // The platform has answered; the gateway records the delivery right
    // after, so the count is waited for, not read at once.
    let stats = eventually(15, || async {
        let stats = get(gw.base.clone(), "/api/v1/outbox/stats", admin.clone())
            .await
            .unwrap();
        (stats["outbox"]["delivering"] == 0).then_some(stats)
    })
    .await
    .expect("the deliveries recorded");
    assert_eq!(stats["outbox"]["delivered"], 2, "{stats}");
    drop(gw);
}
