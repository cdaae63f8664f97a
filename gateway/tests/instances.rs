//! Three real `gateway` processes on one PostgreSQL database, as a
//! scaled-out installation runs: orders (REST, and Meituan pushes then
//! accepted) go through all three, and
//! - an SSE client on each instance sees every order once, in feed order;
//! - each platform call (outbox row) reaches the platform once;
//! - each scheduled job ran on one instance at a time (`job_runs`: no two
//!   runs of a job overlap);
//! - killing the instance holding the outbox dispatcher (SIGKILL) loses no
//!   acknowledged order, and another instance takes its jobs over;
//! - SIGTERM: the instance ends its SSE streams with a `shutdown` event and
//!   a `retry:` delay, and exits 0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use gateway::db::Db;
use gateway::keys::Role;
use hw_sim::platform::{ItemSpec, OrderSpec, PlatformConfig, PlatformSim, PushKind, PushRequest};
use serde_json::{Value, json};
use sqlx::Row;
use tests::procs::{GatewayProc, SseEvent, sse};
use tests::{Backend, TestDb};
use tokio::sync::mpsc::UnboundedReceiver;

const APP_ID: &str = "mt-app-three";
const SECRET: &str = "mt-secret-three-0123456789";
/// REST orders per instance.
const REST_EACH: usize = 8;
/// Meituan orders pushed to (and accepted on) each instance.
const PUSH_EACH: usize = 2;

fn start(db_url: &str, sim: &PlatformSim, name: &str) -> GatewayProc {
    let instance = format!("jobs.instance={name}");
    GatewayProc::start(
        env!("CARGO_BIN_EXE_gateway").as_ref(),
        db_url,
        &[
            ("GATEWAY_MEITUAN_BASE_URL", &sim.url()),
            ("GATEWAY_MEITUAN_APP_ID", APP_ID),
            ("GATEWAY_MEITUAN_SECRET", SECRET),
            ("GATEWAY_OUTBOX_POLL_MS", "100"),
            ("GATEWAY_RETENTION_INTERVAL_S", "1"),
        ],
        &[&instance, "jobs.lease_ms=600"],
    )
}

/// Waits (generous deadline, no timing asserted) until `cond` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a stream's events until it has seen `ids` created (or ends).
async fn created_seen(
    rx: &mut UnboundedReceiver<SseEvent>,
    want: &HashSet<String>,
    seen: &mut Vec<(i64, String, String)>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: HashSet<&String> = seen
            .iter()
            .filter(|(_, k, _)| k == "order.created")
            .map(|(_, _, id)| id)
            .collect();
        if want.iter().all(|w| have.contains(w)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, rx.recv())
            .await
            .expect("timed out waiting for the stream's events")
            .expect("the stream ended early");
        let (Some(id), Some(kind)) = (ev.id, ev.event) else {
            continue;
        };
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        let order = v["order"]["id"].as_str().unwrap_or_default().to_owned();
        seen.push((id.parse().expect("event id"), kind, order));
    }
}

async fn order_ids(http: &reqwest::Client, base: &str, admin: &str) -> Vec<Value> {
    let v: Value = http
        .get(format!(
            "{base}/api/v1/stores/S001/orders?since=0&limit=1000"
        ))
        .bearer_auth(admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list JSON");
    v["orders"].as_array().expect("orders").clone()
}

async fn push_and_accept(
    http: &reqwest::Client,
    sim: &PlatformSim,
    gw: &GatewayProc,
    admin: &str,
    platform_id: &str,
) -> String {
    sim.set_gateway_url(&gw.base);
    let mut push = PushRequest::new(
        PushKind::New,
        OrderSpec {
            order_id: Some(platform_id.to_owned()),
            store: Some("S001".into()),
            items: vec![ItemSpec::new("COLA", "可口可乐", 1, 350)],
            ..OrderSpec::default()
        },
    );
    push.repeat = 1;
    let out = sim.push(push).await.expect("push");
    assert!((200..300).contains(&out.status), "push: {}", out.answer);
    let orders = order_ids(http, &gw.base, admin).await;
    let id = orders
        .iter()
        .find(|o| o["channel_order_id"] == platform_id)
        .and_then(|o| o["id"].as_str())
        .expect("the pushed order")
        .to_owned();
    let r = http
        .post(format!("{}/api/v1/orders/{id}/accept", gw.base))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await
        .expect("accept");
    assert!(r.status().is_success(), "accept: {}", r.status());
    id
}

/// Runs of each job (start, end, holder), in start order.
async fn runs(db: &Db) -> BTreeMap<String, Vec<(i64, i64, String)>> {
    let mut out: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    for r in
        sqlx::query("SELECT name, started_at, ended_at, holder FROM job_runs ORDER BY started_at")
            .fetch_all(&db.pool)
            .await
            .expect("job_runs")
    {
        out.entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3)));
    }
    out
}

async fn holder(db: &Db, job: &str) -> Option<(String, i64)> {
    sqlx::query("SELECT holder, expires_at FROM job_leases WHERE name = $1")
        .bind(job)
        .fetch_optional(&db.pool)
        .await
        .expect("job_leases")
        .map(|r| (r.get(0), r.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_feed_the_outbox_and_the_jobs() {
    let Some(store) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let url = store.url().to_owned();
    let db = Db::connect(&url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    tests::seed_cola(&db, "S001", "人民路店", "100000").await;
    let admin = tests::new_key(&db, Role::Admin, None).await;
    let app = tests::new_key(&db, Role::App, None).await;
    let sim = PlatformSim::start(PlatformConfig::new("http://127.0.0.1:1", APP_ID, SECRET))
        .await
        .expect("platform simulator");
    let mut gws: Vec<GatewayProc> = (0..3)
        .map(|i| start(&url, &sim, &format!("gw{i}")))
        .collect();
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for gw in &gws {
        streams.push(
            sse(
                &http,
                &format!("{}/api/v1/stores/S001/orders/stream?since=0", gw.base),
                &admin,
            )
            .await,
        );
    }

    // Orders through every instance, interleaved.
    let mut acked: HashSet<String> = HashSet::new();
    for n in 0..REST_EACH {
        for gw in &gws {
            let r = http
                .post(format!("{}/api/v1/orders", gw.base))
                .bearer_auth(&app)
                .json(&json!({"store_id": "S001", "note": format!("o{n}"),
                    "lines": [{"sku": "COLA", "quantity": "1"}]}))
                .send()
                .await
                .expect("order");
            assert!(r.status().is_success(), "order: {}", r.status());
            let v: Value = r.json().await.expect("order JSON");
            acked.insert(v["id"].as_str().expect("id").to_owned());
        }
    }
    let mut pushed: HashMap<String, String> = HashMap::new();
    for n in 0..PUSH_EACH {
        for (i, gw) in gws.iter().enumerate() {
            let pid = format!("{}", 8_100_000_000u64 + (n * 3 + i) as u64);
            let id = push_and_accept(&http, &sim, gw, &admin, &pid).await;
            acked.insert(id.clone());
            pushed.insert(pid, id);
        }
    }

    // Every stream: each order created once, events in feed order, no repeat.
    for rx in &mut streams {
        let mut seen = Vec::new();
        created_seen(rx, &acked, &mut seen).await;
        let seqs: Vec<i64> = seen.iter().map(|(s, _, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "not in feed order: {seqs:?}"
        );
        let created: Vec<&String> = seen
            .iter()
            .filter(|(_, k, _)| k == "order.created")
            .map(|(_, _, id)| id)
            .collect();
        assert_eq!(created.len(), acked.len(), "orders created on the stream");
        assert_eq!(created.into_iter().cloned().collect::<HashSet<_>>(), acked);
    }

    // Each accepted platform order confirmed with the platform exactly once.
    let confirms = |sim: &PlatformSim| -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for r in sim.received_ok() {
            if r.path == "order/confirm"
                && let Some(o) = r.order_id
            {
                *n.entry(o).or_insert(0) += 1;
            }
        }
        n
    };
    until("every confirm delivered", || {
        let c = confirms(&sim);
        let done = pushed.keys().all(|p| c.contains_key(p));
        async move { done }
    })
    .await;

    // Kill whoever holds the dispatcher; another instance takes it over.
    let (first, _) = holder(&db, "outbox_dispatcher").await.expect("a holder");
    let victim: usize = first.trim_start_matches("gw").parse().expect("gwN");
    gws[victim].kill();
    let survivor = (victim + 1) % 3;
    let late = push_and_accept(&http, &sim, &gws[survivor], &admin, "8199999999").await;
    acked.insert(late);
    pushed.insert("8199999999".into(), String::new());
    until(
        "the dispatcher taken over and the late confirm delivered",
        || {
            let delivered = confirms(&sim).contains_key("8199999999");
            let db = db.clone();
            let first = first.clone();
            async move {
                delivered
                    && holder(&db, "outbox_dispatcher")
                        .await
                        .is_some_and(|(h, _)| h != first)
            }
        },
    )
    .await;
    let c = confirms(&sim);
    for p in pushed.keys() {
        assert_eq!(c.get(p), Some(&1), "confirms of {p}: {c:?}");
    }

    // Nothing acknowledged is lost.
    let listed: HashSet<String> = order_ids(&http, &gws[survivor].base, &admin)
        .await
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, acked);

    // Retention (every second) ran, on one instance at a time, and more
    // than one instance ran it over the test (the victim's runs stop).
    until("retention taken over too", || {
        let db = db.clone();
        let first = first.clone();
        async move {
            holder(&db, "retention")
                .await
                .is_some_and(|(h, _)| h != first)
                && runs(&db)
                    .await
                    .get("retention")
                    .is_some_and(|r| r.last().is_some_and(|l| l.2 != first))
        }
    })
    .await;
    let all = runs(&db).await;
    for job in ["outbox_dispatcher", "retention"] {
        assert!(all.contains_key(job), "no runs of {job}: {all:?}");
    }
    // The alert check (every 5 s) too, when it ran.
    for (job, r) in &all {
        for w in r.windows(2) {
            assert!(w[1].0 >= w[0].1, "{job}: overlapping runs {w:?}");
        }
    }

    // SIGTERM: the stream of the terminated instance ends with a reconnect
    // hint, and the process exits 0.
    let term = (victim + 2) % 3;
    let mut rx = sse(
        &http,
        &format!("{}/api/v1/stores/S001/orders/stream", gws[term].base),
        &admin,
    )
    .await;
    let status = gws[term].terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let mut last = None;
    while let Some(ev) = rx.recv().await {
        last = Some(ev);
    }
    let last = last.expect("a last event");
    let name = format!("gw{term}");
    let kept: i64 =
        sqlx::query("SELECT COUNT(*) FROM job_leases WHERE holder = $1 AND expires_at > 0")
            .bind(&name)
            .fetch_one(&db.pool)
            .await
            .expect("leases")
            .get(0);
    assert_eq!(kept, 0, "{name} kept job leases after SIGTERM");
    assert_eq!(last.event.as_deref(), Some("shutdown"), "{last:?}");
    assert_eq!(last.retry.as_deref(), Some("1000"), "{last:?}");
    drop(gws);
    db.pool.close().await;
}

/// The newest run of `job` by someone other than `not`, started at or after
/// `since` (µs), with its holder.
async fn run_by_other(db: &Db, job: &str, not: &str, since: i64) -> Option<(i64, String)> {
    sqlx::query(
        "SELECT started_at, holder FROM job_runs
         WHERE name = $1 AND holder <> $2 AND started_at >= $3 ORDER BY started_at LIMIT 1",
    )
    .bind(job)
    .bind(not)
    .bind(since)
    .fetch_optional(&db.pool)
    .await
    .expect("job_runs")
    .map(|r| (r.get(0), r.get(1)))
}

/// A job's holder killed with SIGKILL: another instance runs the job within
/// one interval of it (1 s here), not once a lease expires. The lease is
/// set to 20 s, so a takeover that waited for the dead holder's lease to
/// run out (at least two thirds of it after its last renewal) cannot land
/// within the 1 s + 5 s this allows a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_job_is_taken_over_within_one_interval() {
    const LEASE_MS: u64 = 20_000;
    const INTERVAL: Duration = Duration::from_secs(1);
    const SLACK: Duration = Duration::from_secs(5);
    let Some(store) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let url = store.url().to_owned();
    let db = Db::connect(&url).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    let gws: Vec<GatewayProc> = (0..3)
        .map(|i| {
            let instance = format!("jobs.instance=gw{i}");
            let lease = format!("jobs.lease_ms={LEASE_MS}");
            GatewayProc::start(
                env!("CARGO_BIN_EXE_gateway").as_ref(),
                &url,
                &[("GATEWAY_RETENTION_INTERVAL_S", "1")],
                &[&instance, &lease],
            )
        })
        .collect();
    let mut gws: Vec<Option<GatewayProc>> = gws.into_iter().map(Some).collect();
    // Retention (every second) runs on one of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some((_, _, h)) = runs(&db).await.get("retention").and_then(|r| r.last()) {
            break h.clone();
        }
        assert!(Instant::now() < deadline, "no retention run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the holder renew its lease at least once, so the dead holder's
    // row in `job_leases` is fresh when it dies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (holding, expires) = holder(&db, "retention").await.expect("a holder");
    assert_eq!(holding, first, "retention changed hands with no one dying");
    let victim: usize = first.trim_start_matches("gw").parse().expect("gwN");
    let killed_at = db.now_micros();
    let t0 = Instant::now();
    gws[victim].take().expect("the victim").kill();
    assert!(
        expires > killed_at + 5_000_000,
        "the victim's lease should still run for a long time: {expires} vs {killed_at}"
    );

    let deadline = t0 + INTERVAL + SLACK + Duration::from_secs(30);
    let (started, by) = loop {
        if let Some(found) = run_by_other(&db, "retention", &first, killed_at).await {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "retention was never taken over after {first} died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = Duration::from_micros(u64::try_from(started - killed_at).unwrap_or(0));
    assert!(
        took < INTERVAL + SLACK,
        "{by} took retention over {took:?} after {first} was killed (interval {INTERVAL:?}, \
         the dead holder's lease {LEASE_MS} ms)"
    );
    // The dead holder's lease row had not expired yet when it was taken.
    assert!(
        started < expires,
        "taken over only after the lease expired: {started} >= {expires}"
    );
    // The new holder shows in `job_leases`, and runs go on one at a time.
    until("the new holder in job_leases", || {
        let db = db.clone();
        let first = first.clone();
        async move {
            holder(&db, "retention")
                .await
                .is_some_and(|(h, _)| h != first)
        }
    })
    .await;
    for (job, r) in &runs(&db).await {
        for w in r.windows(2) {
            assert!(w[1].0 >= w[0].1, "{job}: overlapping runs {w:?}");
        }
    }
    drop(gws);
    db.pool.close().await;
}
