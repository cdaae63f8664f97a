//! A charge in flight when the gateway process dies: the `gateway` binary is
//! killed (SIGKILL, no shutdown of any kind) while two charges wait for the
//! customer at the provider simulator. A second process on the same database
//! must finish both through its sweeper, and the gateway's records must agree
//! with the provider's ledger: one charge per order, every charge final.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway::db::Db;
use serde_json::{Value, json};
use tests::pay::{APPID, KEY, MCH_ID, PaySim, SeedKeys};
use tests::{Backend, TestDb};

/// Paid by the customer three seconds after the scan.
const PAYS_LATE: &str = "134567890123456789";
/// Never confirmed by the customer.
const NEVER_PAYS: &str = "120061098828009406";
/// A second code for the order whose first charge was reversed.
const NEW_CODE: &str = "101234567890123456";

/// A `gateway serve` process; killed when dropped.
struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(db_url: &str, sim: &str, deadline_ms: u64) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEWAY_DATABASE_URL", db_url)
            .env("GATEWAY_WECHATPAY_BASE_URL", sim)
            .env("GATEWAY_WECHATPAY_APPID", APPID)
            .env("GATEWAY_WECHATPAY_MCH_ID", MCH_ID)
            .env("GATEWAY_WECHATPAY_KEY", KEY)
            .env("GATEWAY_WECHATPAY_SIGN_TYPE", "HMAC-SHA256")
            .env("GATEWAY_PAYMENTS_POLL_MS", "200")
            .env("GATEWAY_PAYMENTS_DEADLINE_MS", deadline_ms.to_string())
            .env("GATEWAY_PAYMENTS_TIMEOUT_MS", "5000")
            .env("GATEWAY_PAYMENTS_SWEEP_MS", "300")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let base = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("gateway listening on ").map(str::to_owned))
            .expect("the gateway says where it listens");
        Gateway { child, base }
    }

    /// SIGKILL: no graceful shutdown, no chance to settle anything.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    http: reqwest::Client,
    sim: PaySim,
    terminal: String,
    app: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder, key: &str, body: Option<Value>) -> Value {
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

    async fn order(&self, gw: &Gateway) -> String {
        let v = self
            .send(
                self.http.post(format!("{}/api/v1/orders", gw.base)),
                &self.app,
                Some(json!({"store_id": "S001", "lines": [{"sku": "LATTE", "quantity": 2}]})),
            )
            .await;
        v["id"].as_str().expect("id").to_owned()
    }

    async fn payments(&self, gw: &Gateway, order: &str) -> Value {
        self.send(
            self.http
                .get(format!("{}/api/v1/orders/{order}/payments", gw.base)),
            &self.terminal,
            None,
        )
        .await
    }
}

/// `tests::pay`'s store S001 with LATTE, and its keys, in a migrated database.
async fn seed(db_url: &str) -> SeedKeys {
    let db = Db::connect(db_url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    let keys = tests::pay::seed_latte_store(&db).await;
    db.pool.close().await;
    keys
}

async fn killed_mid_charge_then_the_sweeper_settles(backend: Backend) {
    let Some(store) = TestDb::new(backend).await else {
        return;
    };
    let sim = PaySim::start(None).await;
    let sim_base = sim.base.clone();

    let SeedKeys {
        admin,
        terminal,
        app,
    } = seed(store.url()).await;
    let c = Client {
        http: reqwest::Client::new(),
        sim,
        terminal,
        app,
    };
    c.sim
        .scenario(
            json!({"auth_code": PAYS_LATE, "outcome": "userpaying_then_success", "after_s": 6}),
        )
        .await;
    c.sim
        .scenario(json!({"auth_code": NEVER_PAYS, "outcome": "userpaying_forever"}))
        .await;

    // The late code pays 6 s after its charge, the deadline is 15 s: both far
    // enough beyond the kill that a loaded machine still kills the first
    // process while both wait, so only the second process can end them.
    let first = Gateway::start(store.url(), &sim_base, 15_000);
    c.send(
        c.http
            .put(format!("{}/api/v1/stores/S001/stock/LATTE", first.base)),
        &admin,
        Some(json!({"on_hand": "100"})),
    )
    .await;
    let late = c.order(&first).await;
    let stuck = c.order(&first).await;
    let mut calls = Vec::new();
    for (order, code) in [(&late, PAYS_LATE), (&stuck, NEVER_PAYS)] {
        let req = c
            .http
            .post(format!("{}/api/v1/orders/{order}/payments", first.base))
            .bearer_auth(&c.terminal)
            .json(&json!({"auth_code": code}));
        calls.push(tokio::spawn(async move { req.send().await }));
    }
    // Both charges reached the provider and wait for the customer.
    tests::procs::eventually(
        Duration::from_secs(20),
        "two USERPAYING charges",
        || async {
            let l = c.sim.ledger().await;
            (l.len() == 2 && l.iter().all(|e| e.state == "USERPAYING")).then_some(())
        },
    )
    .await;
    first.kill();
    for call in calls {
        let answer = call.await.expect("task");
        assert!(
            answer.is_err(),
            "the killed gateway answered a pay call: {answer:?}"
        );
    }

    // The database holds both charges unsettled.
    {
        let db = Db::connect(store.url()).await.expect("connect");
        let states: Vec<String> =
            sqlx::query_scalar("SELECT state FROM charges ORDER BY created_at")
                .fetch_all(&db.pool)
                .await
                .expect("charges");
        assert_eq!(states, ["pending", "pending"], "left behind by the crash");
        db.pool.close().await;
    }

    // A new process on the same database: its sweeper finishes both.
    let second = Gateway::start(store.url(), &sim_base, 15_000);
    let charge_state = |v: &Value| v["charges"][0]["state"].as_str().unwrap_or("").to_owned();
    let paid = tests::procs::eventually(Duration::from_secs(60), "the late payment", || async {
        let v = c.payments(&second, &late).await;
        (charge_state(&v) == "succeeded").then_some(v)
    })
    .await;
    assert_eq!(paid["payment_status"], "paid");
    let reversed = tests::procs::eventually(Duration::from_secs(60), "the reverse", || async {
        let v = c.payments(&second, &stuck).await;
        (charge_state(&v) == "reversed").then_some(v)
    })
    .await;
    assert_eq!(reversed["payment_status"], "unpaid");

    // The ledgers agree: one charge per order, each final, the same money.
    let ledger = c.sim.ledger().await;
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
        assert_eq!(entry.total_fee, 2116);
        assert_eq!(entry.micropay_calls, 1, "charged once: {entry:?}");
        assert_eq!(charges[0]["amount"], "21.16", "{v}");
    }

    // The reversed order is payable again, with a new code.
    c.sim
        .scenario(json!({"auth_code": NEW_CODE, "outcome": "success"}))
        .await;
    let again = c
        .send(
            c.http
                .post(format!("{}/api/v1/orders/{stuck}/payments", second.base)),
            &c.terminal,
            Some(json!({"auth_code": NEW_CODE})),
        )
        .await;
    assert_eq!(again["state"], "succeeded", "{again}");
    let ledger = c.sim.ledger().await;
    assert_eq!(ledger.len(), 3);
    assert_eq!(
        ledger.iter().filter(|e| e.state == "SUCCESS").count(),
        2,
        "{ledger:?}"
    );
    second.kill();
}

tests::on_both_databases!(killed_mid_charge_then_the_sweeper_settles);
