//! SIGTERM while payment-code charges wait for the customer at the provider
//! simulator: the `gateway` process answers the pay calls with the charges
//! `pending` (their state recorded, not lost), exits 0 within its drain
//! deadline rather than waiting out the charges, and a new process on the
//! same database settles them with its sweeper as the provider's ledger
//! says: the late payer paid, the one who never pays reversed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::db::Db;
use serde_json::{Value, json};
use tests::pay::{APPID, KEY, MCH_ID, PaySim, SeedKeys};
use tests::{Backend, TestDb};

/// Paid by the customer six seconds after the scan.
const PAYS_LATE: &str = "134567890123456789";
/// Never confirmed by the customer.
const NEVER_PAYS: &str = "120061098828009406";
/// The charges' deadline: far past the SIGTERM, so only the sweeper of the
/// next process can end them.
const DEADLINE_MS: u64 = 15_000;

struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(db_url: &str, sim: &str) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEWAY_DATABASE_URL", db_url)
            .env("GATEWAY_WECHATPAY_BASE_URL", sim)
            .env("GATEWAY_WECHATPAY_APPID", APPID)
            .env("GATEWAY_WECHATPAY_MCH_ID", MCH_ID)
            .env("GATEWAY_WECHATPAY_KEY", KEY)
            .env("GATEWAY_WECHATPAY_SIGN_TYPE", "HMAC-SHA256")
            .env("GATEWAY_PAYMENTS_POLL_MS", "200")
            .env("GATEWAY_PAYMENTS_DEADLINE_MS", DEADLINE_MS.to_string())
            .env("GATEWAY_PAYMENTS_TIMEOUT_MS", "5000")
            .env("GATEWAY_PAYMENTS_SWEEP_MS", "300")
            .env("RUST_LOG", "warn")
            .env_remove("GATEWAY_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("gateway listening on ").map(str::to_owned))
            .expect("the gateway says where it listens");
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, base }
    }

    /// SIGTERM, and the exit status once it ends.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success(), "kill -TERM failed");
        self.child.wait().expect("wait")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(req: reqwest::RequestBuilder, key: &str, body: Option<Value>) -> Value {
    let req = req.bearer_auth(key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("send");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn sigterm_mid_charge_then_the_sweeper_settles(backend: Backend) {
    let Some(store) = TestDb::new(backend).await else {
        return;
    };
    let sim = PaySim::start(None).await;
    let SeedKeys {
        admin,
        terminal,
        app,
    } = {
        let db = Db::connect(store.url()).await.expect("connect");
        db.migrate_up().await.expect("migrate");
        let keys = tests::pay::seed_latte_store(&db).await;
        db.pool.close().await;
        keys
    };
    sim.scenario(
        json!({"auth_code": PAYS_LATE, "outcome": "userpaying_then_success", "after_s": 6}),
    )
    .await;
    sim.scenario(json!({"auth_code": NEVER_PAYS, "outcome": "userpaying_forever"}))
        .await;
    let http = reqwest::Client::new();
    let mut first = Gateway::start(store.url(), &sim.base);
    send(
        http.put(format!("{}/api/v1/stores/S001/stock/LATTE", first.base)),
        &admin,
        Some(json!({"on_hand": "100"})),
    )
    .await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        let v = send(
            http.post(format!("{}/api/v1/orders", first.base)),
            &app,
            Some(json!({"store_id": "S001", "lines": [{"sku": "LATTE", "quantity": 2}]})),
        )
        .await;
        orders.push(v["id"].as_str().expect("id").to_owned());
    }
    let (late, stuck) = (orders[0].clone(), orders[1].clone());
    let mut calls = Vec::new();
    for (order, code) in [(&late, PAYS_LATE), (&stuck, NEVER_PAYS)] {
        let req = http
            .post(format!("{}/api/v1/orders/{order}/payments", first.base))
            .bearer_auth(&terminal)
            .json(&json!({"auth_code": code}));
        calls.push(tokio::spawn(async move {
            let r = req.send().await.expect("the pay call is answered");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    tests::procs::eventually(
        Duration::from_secs(20),
        "two USERPAYING charges",
        || async {
            let l = sim.ledger().await;
            (l.len() == 2 && l.iter().all(|e| e.state == "USERPAYING")).then_some(())
        },
    )
    .await;

    // SIGTERM while both wait for the customer.
    let t0 = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = first.terminate();
        (s, first)
    })
    .await
    .expect("terminate");
    let took = t0.elapsed();
    let (status, first) = status;
    drop(first);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    assert!(
        took < gateway::http::DRAIN,
        "stopping took {took:?}, past the drain deadline {:?}",
        gateway::http::DRAIN
    );
    // Both calls were answered: the charge still pending, not an error.
    for call in calls {
        let (status, v) = call.await.expect("task");
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["state"], "pending", "{v}");
    }
    {
        let db = Db::connect(store.url()).await.expect("connect");
        let states: Vec<String> =
            sqlx::query_scalar("SELECT state FROM charges ORDER BY created_at")
                .fetch_all(&db.pool)
                .await
                .expect("charges");
        assert_eq!(states, ["pending", "pending"], "recorded at shutdown");
        db.pool.close().await;
    }

    // A new process: its sweeper settles both as the provider says.
    let second = Gateway::start(store.url(), &sim.base);
    let payments = |order: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/orders/{order}/payments", second.base);
        let key = terminal.clone();
        async move { send(http.get(url), &key, None).await }
    };
    let charge_state = |v: &Value| v["charges"][0]["state"].as_str().unwrap_or("").to_owned();
    let paid = tests::procs::eventually(Duration::from_secs(60), "the late payment", || async {
        let v = payments(late.clone()).await;
        (charge_state(&v) == "succeeded").then_some(v)
    })
    .await;
    assert_eq!(paid["payment_status"], "paid");
    let reversed = tests::procs::eventually(Duration::from_secs(60), "the reverse", || async {
        let v = payments(stuck.clone()).await;
        (charge_state(&v) == "reversed").then_some(v)
    })
    .await;
    assert_eq!(reversed["payment_status"], "unpaid");
    let ledger = sim.ledger().await;
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    for (v, want) in [(&paid, "SUCCESS"), (&reversed, "REVOKED")] {
        let charges = v["charges"].as_array().expect("charges");
        assert_eq!(charges.len(), 1, "one charge per order: {v}");
        let id = charges[0]["id"].as_str().expect("charge id");
        let entry = ledger
            .iter()
            .find(|e| e.out_trade_no == id)
            .unwrap_or_else(|| panic!("charge {id} not in the provider's ledger"));
        assert_eq!(entry.state, want);
        assert_eq!(entry.micropay_calls, 1, "charged once: {entry:?}");
    }
    drop(second);
}

tests::on_both_databases!(sigterm_mid_charge_then_the_sweeper_settles);
