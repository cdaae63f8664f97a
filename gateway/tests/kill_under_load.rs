//! SIGKILL under load: REST orders (with an Idempotency-Key), SOAP
//! `SubmitOrder`s (with a clientOrderId) and signed Meituan pushes are fired
//! at the real `gateway` binary from several clients at once, and the process
//! is killed (no shutdown of any kind) while they are in flight, several
//! times in a row. After each restart the clients retry what was not
//! acknowledged with the same key, as terminals do, and then:
//! - every order acknowledged with a 2xx is in the store's queue exactly once;
//! - no order exists that nobody asked for (no duplicate from a retry);
//! - each item's reserved stock is what the open orders hold, and on hand is
//!   what completed orders left;
//! - the store's feed is numbered 1..N without a gap, N being the store head.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::db::Db;
use gateway::keys::Role;
use hw_sim::platform::{ItemSpec, OrderSpec, PlatformConfig, PlatformSim, PushKind, PushRequest};
use proto::order::{Sku, StoreId};
use proto::soap::{self, SubmitLine, SubmitOrder, SubmitOrderResponse, UsernameToken};
use serde_json::{Value, json};
use tests::{Backend, TestDb};

const APP_ID: &str = "mt-app-kill";
const SECRET: &str = "mt-secret-kill-0123456789";
const TERMINAL: &str = "S001-T01";
/// Kills per engine.
const ROUNDS: usize = 4;
/// Acknowledged orders per round before the kill: enough that the kill
/// lands among requests in flight on every surface.
const ACKS_BEFORE_KILL: usize = 40;
/// Pieces of COLA on hand at the start: far more than the test orders, so no
/// order is refused for stock.
const ON_HAND: i64 = 100_000;

/// A `gateway serve` process; SIGKILLed when dropped.
struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(db_url: &str, sim: &PlatformSim) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEWAY_DATABASE_URL", db_url)
            .env("GATEWAY_MEITUAN_BASE_URL", sim.url())
            .env("GATEWAY_MEITUAN_APP_ID", APP_ID)
            .env("GATEWAY_MEITUAN_SECRET", SECRET)
            .env("GATEWAY_OUTBOX_POLL_MS", "100")
            .env("RUST_LOG", "error")
            .env_remove("GATEWAY_CONFIG")
            .env_remove("GATEWAY_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gateway");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the gateway exited before listening")
                .expect("read stdout");
            if let Some(url) = line.strip_prefix("gateway listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        sim.set_gateway_url(&base);
        Gateway { child, base }
    }

    /// SIGKILL: nothing is flushed, nothing is answered.
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

/// One logical order request; a retry sends the same one again.
#[derive(Clone, Debug)]
enum Req {
    /// `POST /api/v1/orders` with this Idempotency-Key (also the order's note,
    /// so the order can be found by it).
    Rest { key: String, qty: i64 },
    /// SOAP `SubmitOrder` with this clientOrderId.
    Soap { client_id: String, qty: i64 },
    /// A signed Meituan `new_order` push with this platform order id.
    Push { order_id: String, qty: i64 },
}

impl Req {
    fn qty(&self) -> i64 {
        match self {
            Req::Rest { qty, .. } | Req::Soap { qty, .. } | Req::Push { qty, .. } => *qty,
        }
    }
}

/// What a request came to.
enum Sent {
    /// A 2xx; the order id when the answer names it, and whether the
    /// answer says it is a replay of an earlier one.
    Acked(Option<String>, bool),
    /// No answer: the process died under it (or before it).
    NoAnswer(String),
}

/// An answer's status, whether it says it replayed, and its body; `Err`
/// when the connection gave none in full (the gateway may be down).
async fn answer(
    r: reqwest::Result<reqwest::Response>,
) -> Result<(reqwest::StatusCode, bool, String), String> {
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    let replayed = r.headers().contains_key("idempotent-replayed");
    let body = r.text().await.map_err(|e| e.to_string())?;
    Ok((status, replayed, body))
}

struct Keys {
    admin: String,
    app: String,
    terminal: String,
}

struct Client {
    http: reqwest::Client,
    sim: PlatformSim,
    keys: Keys,
}

impl Client {
    async fn send(&self, base: &str, req: &Req) -> Sent {
        match req {
            Req::Rest { key, qty } => {
                let r = self
                    .http
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(&self.keys.app)
                    .header("Idempotency-Key", key)
                    .json(&json!({
                        "store_id": "S001",
                        "note": key,
                        "lines": [{"sku": "COLA", "quantity": qty.to_string()}],
                    }))
                    .send()
                    .await;
                let (status, replayed_header, body) = match answer(r).await {
                    Ok(a) => a,
                    Err(e) => return Sent::NoAnswer(e),
                };
                assert!(status.is_success(), "REST {key}: {status}: {body}");
                let v: Value = serde_json::from_str(&body).expect("order JSON");
                let replayed = replayed_header || status == reqwest::StatusCode::OK;
                Sent::Acked(Some(v["id"].as_str().expect("id").to_owned()), replayed)
            }
            Req::Soap { client_id, qty } => {
                let token = UsernameToken {
                    username: TERMINAL.into(),
                    password: self.keys.terminal.clone(),
                };
                let msg = SubmitOrder {
                    client_order_id: client_id.clone(),
                    lines: vec![SubmitLine {
                        sku: Sku::parse("COLA").unwrap(),
                        quantity: qty.to_string(),
                        unit_price: None,
                    }],
                    note: None,
                    sold_at: None,
                    catalog_version: None,
                };
                let r = self
                    .http
                    .post(format!("{base}/soap/terminal"))
                    .header("content-type", "text/xml; charset=utf-8")
                    .body(soap::write_request(&token, &msg))
                    .send()
                    .await;
                let (status, _, body) = match answer(r).await {
                    Ok(a) => a,
                    Err(e) => return Sent::NoAnswer(e),
                };
                assert!(status.is_success(), "SOAP {client_id}: {status}: {body}");
                let resp = soap::parse_response::<SubmitOrderResponse>(body.as_bytes())
                    .unwrap_or_else(|e| panic!("SOAP answer {e:?}: {body}"));
                Sent::Acked(Some(resp.order.id), resp.replayed)
            }
            Req::Push { order_id, qty } => {
                let mut push = PushRequest::new(
                    PushKind::New,
                    OrderSpec {
                        order_id: Some(order_id.clone()),
                        store: Some("S001".into()),
                        items: vec![ItemSpec::new(
                            "COLA",
                            "可口可乐",
                            u32::try_from(*qty).unwrap(),
                            350,
                        )],
                        ..OrderSpec::default()
                    },
                );
                push.repeat = 1;
                let out = self.sim.push(push).await.expect("a valid push");
                match out.status {
                    0 => Sent::NoAnswer(format!("{:?}", out.answer)),
                    s if (200..300).contains(&s) => Sent::Acked(None, false),
                    // A push the gateway could not finish (e.g. its database
                    // went away under it mid-request is impossible here: the
                    // whole process dies) must not be answered 4xx/5xx.
                    s => panic!("push {order_id}: {s}: {}", out.answer),
                }
            }
        }
    }
}

#[derive(Default)]
struct Ledger {
    /// Logical requests acknowledged with a 2xx, with the order id answered.
    acked: Vec<(Req, Option<String>)>,
    /// Sent but not answered: to retry after the restart.
    unanswered: Vec<Req>,
}

/// Fires requests of one kind at `base` until `stop`, or until a request
/// gets no answer (the process is gone).
async fn worker(
    c: Arc<Client>,
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicUsize>,
    kind: usize,
) {
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let qty = 1 + (n % 3) as i64;
        let req = match kind {
            0 => Req::Rest {
                key: format!("idem-{n}"),
                qty,
            },
            1 => Req::Soap {
                client_id: format!("sale-{n}"),
                qty,
            },
            _ => Req::Push {
                order_id: format!("{}", 7_000_000_000u64 + n as u64),
                qty,
            },
        };
        match c.send(&base, &req).await {
            Sent::Acked(id, _) => ledger.lock().unwrap().acked.push((req, id)),
            Sent::NoAnswer(_) => {
                ledger.lock().unwrap().unanswered.push(req);
                return;
            }
        }
    }
}

/// Every order of the store, through the cursor API, and the store head.
async fn all_orders(c: &Client, base: &str) -> (Vec<Value>, i64) {
    let mut since = 0;
    let mut orders = Vec::new();
    loop {
        let v: Value = c
            .http
            .get(format!(
                "{base}/api/v1/stores/S001/orders?since={since}&limit=1000"
            ))
            .bearer_auth(&c.keys.admin)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list JSON");
        orders.extend(v["orders"].as_array().expect("orders").iter().cloned());
        since = v["cursor"].as_i64().expect("cursor");
        if v["has_more"] != true {
            return (orders, since);
        }
    }
}

/// Thousandths from a decimal string such as "12" or "0.355".
fn milli(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_owned();
    frac.truncate(3);
    while frac.len() < 3 {
        frac.push('0');
    }
    whole.parse::<i64>().expect("whole") * 1000 + frac.parse::<i64>().expect("fraction")
}

/// The invariants, checked on a quiet gateway. Returns how many orders were
/// checked.
async fn check(c: &Client, base: &str, db_url: &str, ledger: &Ledger, consumed: i64) -> usize {
    let (orders, head) = all_orders(c, base).await;
    let by_id: HashMap<&str, &Value> = orders
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o))
        .collect();
    assert_eq!(by_id.len(), orders.len(), "an order listed twice");

    // Every acknowledged request: exactly one order, the one answered.
    for (req, id) in &ledger.acked {
        let matching: Vec<&Value> = orders
            .iter()
            .filter(|o| match req {
                Req::Rest { key, .. } => o["note"] == key.as_str() && o["channel"] == "official",
                Req::Soap { client_id, .. } => {
                    o["channel"] == "terminal"
                        && o["channel_order_id"] == format!("{TERMINAL}:{client_id}").as_str()
                }
                Req::Push { order_id, .. } => {
                    o["channel"] == "third_party" && o["channel_order_id"] == order_id.as_str()
                }
            })
            .collect();
        assert_eq!(matching.len(), 1, "{req:?}: {matching:?}");
        if let Some(id) = id {
            assert_eq!(matching[0]["id"], id.as_str(), "{req:?}");
        }
        let lines = matching[0]["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 1, "{req:?}");
        assert_eq!(
            milli(lines[0]["quantity"].as_str().expect("quantity")),
            req.qty() * 1000,
            "{req:?}"
        );
    }
    // And nothing else: a retry that made a second order would show here.
    assert_eq!(
        orders.len(),
        ledger.acked.len(),
        "orders in the queue vs orders acknowledged"
    );

    // Stock: reserved is what the open orders hold; on hand is what the
    // completed ones left.
    let open: i64 = orders
        .iter()
        .filter(|o| matches!(o["status"].as_str(), Some("created" | "accepted" | "ready")))
        .flat_map(|o| o["lines"].as_array().unwrap().iter())
        .map(|l| milli(l["quantity"].as_str().unwrap()))
        .sum();
    let cat: Value = c
        .http
        .get(format!("{base}/api/v1/stores/S001/catalog"))
        .bearer_auth(&c.keys.admin)
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("catalog JSON");
    let item = cat["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["sku"] == "COLA")
        .expect("COLA");
    let on_hand = milli(item["on_hand"].as_str().expect("on_hand"));
    let reserved = milli(item["reserved"].as_str().expect("reserved"));
    let sellable = milli(item["sellable"].as_str().expect("sellable"));
    assert_eq!(on_hand, ON_HAND * 1000 - consumed, "on hand: {item}");
    assert_eq!(reserved, open, "reserved vs open orders: {item}");
    assert_eq!(sellable, on_hand - reserved, "{item}");

    // The feed: 1..=head, no gap, and every order's last change within it.
    let db = Db::connect(db_url).await.expect("connect");
    let store = StoreId::parse("S001").unwrap();
    let mut seqs = Vec::new();
    loop {
        let page = gateway::events::after(&db, &store, seqs.last().copied().unwrap_or(0), 500)
            .await
            .expect("feed");
        if page.is_empty() {
            break;
        }
        seqs.extend(page.iter().map(|e| e.seq));
    }
    db.pool.close().await;
    let want: Vec<i64> = (1..=head).collect();
    assert!(seqs == want, "feed not 1..={head}: {seqs:?}");
    for o in &orders {
        let seq = o["seq"].as_i64().unwrap();
        assert!(
            (1..=head).contains(&seq),
            "order seq {seq} past head {head}"
        );
    }
    orders.len()
}

/// Store S001 with COLA, an admin, an app and a terminal key.
async fn seed(db_url: &str) -> Keys {
    let db = Db::connect(db_url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    tests::seed_cola(&db, "S001", "人民路店", &ON_HAND.to_string()).await;
    let key = |role, store, terminal| tests::key_for(&db, role, store, terminal);
    let keys = Keys {
        admin: key(Role::Admin, None, None).await,
        app: key(Role::App, None, None).await,
        terminal: key(Role::Terminal, Some("S001"), Some(TERMINAL)).await,
    };
    db.pool.close().await;
    keys
}

/// Moves a few open orders on, acknowledged one by one, so that the stock
/// check covers released and consumed stock too. Returns the pieces consumed
/// (in thousandths).
async fn settle_some(c: &Client, base: &str) -> i64 {
    let (orders, _) = all_orders(c, base).await;
    let open: Vec<&Value> = orders
        .iter()
        .filter(|o| o["status"] == "created")
        .take(4)
        .collect();
    let mut consumed = 0;
    for (i, o) in open.iter().enumerate() {
        let id = o["id"].as_str().unwrap();
        let steps: &[&str] = if i % 2 == 0 {
            &["accept", "ready", "complete"]
        } else {
            &["cancel"]
        };
        for a in steps {
            let r = c
                .http
                .post(format!("{base}/api/v1/orders/{id}/{a}"))
                .bearer_auth(&c.keys.terminal)
                .json(&json!({"reason": "售罄"}))
                .send()
                .await
                .expect("act");
            let status = r.status();
            assert!(status.is_success(), "{a} {id}: {status}");
        }
        if i % 2 == 0 {
            consumed += milli(o["lines"][0]["quantity"].as_str().unwrap());
        }
    }
    consumed
}

async fn acknowledged_orders_survive_sigkill_under_load(backend: Backend) {
    let Some(store) = TestDb::new(backend).await else {
        return;
    };
    let started = Instant::now();
    let keys = seed(store.url()).await;
    let sim = PlatformSim::start(PlatformConfig::new("http://127.0.0.1:1", APP_ID, SECRET))
        .await
        .expect("platform simulator");
    let c = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        sim,
        keys,
    });
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut consumed = 0;
    let mut checked = 0;
    let mut retried = 0;
    let mut replays = 0;
    let mut resent = 0;
    let mut gw = Gateway::start(store.url(), &c.sim);
    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let before = ledger.lock().unwrap().acked.len();
        let mut workers = Vec::new();
        // Three clients per surface.
        for kind in [0, 1, 2, 0, 1, 2, 0, 1, 2] {
            workers.push(tokio::spawn(worker(
                c.clone(),
                gw.base.clone(),
                ledger.clone(),
                stop.clone(),
                next.clone(),
                kind,
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while ledger.lock().unwrap().acked.len() < before + ACKS_BEFORE_KILL {
            assert!(
                Instant::now() < deadline,
                "round {round}: load never got going"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Mid-load: every client has a request in flight or about to be.
        gw.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("worker");
        }

        gw = Gateway::start(store.url(), &c.sim);
        // Retry what got no answer, with the same key, until answered.
        let pending = std::mem::take(&mut ledger.lock().unwrap().unanswered);
        retried += pending.len();
        for req in pending {
            let deadline = Instant::now() + Duration::from_secs(30);
            let id = loop {
                match c.send(&gw.base, &req).await {
                    Sent::Acked(id, replayed) => {
                        // Committed before the kill, answered now.
                        replays += usize::from(replayed);
                        break id;
                    }
                    Sent::NoAnswer(e) => {
                        assert!(Instant::now() < deadline, "retry of {req:?}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            ledger.lock().unwrap().acked.push((req, id));
        }
        // A terminal whose answer was lost sends again: the same order
        // comes back, marked as a replay, and nothing new is made.
        let resend: Vec<(Req, Option<String>)> = {
            let l = ledger.lock().unwrap();
            l.acked.iter().rev().take(9).cloned().collect()
        };
        for (req, id) in resend {
            match c.send(&gw.base, &req).await {
                Sent::Acked(again, replayed) => {
                    assert_eq!(again, id, "{req:?}");
                    if !matches!(req, Req::Push { .. }) {
                        assert!(replayed, "{req:?} not answered as a replay");
                    }
                    resent += 1;
                }
                Sent::NoAnswer(e) => panic!("resend of {req:?}: {e}"),
            }
        }
        let acked = ledger.lock().unwrap().acked.len();
        eprintln!("round {round}: {acked} orders acknowledged so far");
        let snapshot = {
            let l = ledger.lock().unwrap();
            Ledger {
                acked: l.acked.clone(),
                unanswered: Vec::new(),
            }
        };
        checked = check(&c, &gw.base, store.url(), &snapshot, consumed).await;
        consumed += settle_some(&c, &gw.base).await;
        check(&c, &gw.base, store.url(), &snapshot, consumed).await;
    }
    gw.kill();
    eprintln!(
        "kill under load ({backend:?}): {ROUNDS} SIGKILLs, {checked} orders checked, \
         {retried} unanswered requests retried ({replays} of them committed before the kill), \
         {resent} acknowledged ones sent again, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(retried > 0, "no kill landed mid-request");
}

tests::on_both_databases!(acknowledged_orders_survive_sigkill_under_load);
