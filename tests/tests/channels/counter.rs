//! Other channels' orders at the counter: a platform order pushed by the
//! simulator reaches the real agent (`terminal run`), is accepted from the
//! counter's API, and its pick ticket prints once on the simulated printer
//! across a paper-out and an agent restart; a platform cancel then prints a
//! CANCELLED ticket; a reject reaches the gateway.

use std::path::Path;
use std::time::{Duration, Instant};

use gateway::keys::Role;
use hw_sim::platform::{PushKind, PushRequest};
use serde_json::{Value, json};
use tests::Backend;
use tests::agent::{Agent, DeviceSim};

use crate::app::{Chan, cola};

const TERMINAL: &str = "S001-T77";

fn write_config(dir: &Path, gateway: &str, printer: &str) -> std::path::PathBuf {
    let path = dir.join("terminal.toml");
    std::fs::write(
        &path,
        format!(
            r#"gateway_url = "{gateway}"
terminal_id = "{TERMINAL}"
store_id = "S001"
state_dir = "{}"
listen = "127.0.0.1:0"
heartbeat_s = 1
catalog_refresh_s = 1
upload_retry_ms = 50
request_timeout_ms = 2000

[devices]
printer = "{printer}"
"#,
            dir.join("state").display()
        ),
    )
    .expect("config");
    path
}

async fn wait_queue(agent: &Agent, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let q = agent.get("/api/queue").await;
        if done(&q) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {q:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn order<'a>(q: &'a Value, id: &str) -> Option<&'a Value> {
    q["orders"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["order_id"] == id))
}

async fn pick_tickets(sim: &DeviceSim) -> Vec<String> {
    sim.receipts()
        .await
        .iter()
        .filter_map(|r| r["text"].as_str().map(str::to_owned))
        .collect()
}

async fn counter_takes_platform_orders(b: Backend) {
    let Some(app) = Chan::spawn(b).await else {
        return;
    };
    let key = tests::key_for(&app.db, Role::Terminal, Some("S001"), Some(TERMINAL)).await;
    let sim = DeviceSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), &app.base, &sim.link("printer"));
    let agent = Agent::start(&config, &key).await;
    agent
        .wait_for(20, "the printer", |s| {
            s["devices"]["printer"]["status"] == "ok"
        })
        .await;

    // Pushed on the platform → on the counter's queue, announced as new.
    let pushed = Instant::now();
    let (_, o) = app.push_new("S001", vec![cola(2)]).await;
    let id = o["id"].as_str().expect("id").to_owned();
    // Within 2 s of the gateway having it (the agent polls every 500 ms).
    let q = wait_queue(&agent, 2, "the pushed order", |q| order(q, &id).is_some()).await;
    println!(
        "platform push to counter queue: {} ms",
        pushed.elapsed().as_millis()
    );
    let seen = order(&q, &id).expect("order");
    assert_eq!(seen["status"], "created", "{seen}");
    assert_eq!(seen["new"], true, "{seen}");
    assert!(q["new"].as_i64() >= Some(1), "{q}");

    // Accepted at the counter with the paper out: accepted on the gateway,
    // the pick ticket owed, nothing printed.
    sim.put("/printer/state", json!({"paper": "end"})).await;
    agent
        .wait_for(10, "paper end seen", |s| {
            s["devices"]["printer"]["status"] == "paper_end"
        })
        .await;
    let (st, v) = agent
        .post(&format!("/api/queue/{id}/accept"), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["order"]["status"], "accepted", "{v}");
    let on_gateway = app.order_for(o["channel_order_id"].as_str().unwrap()).await;
    assert_eq!(on_gateway.expect("order")["status"], "accepted");
    // Accepting again changes nothing and owes no second ticket.
    let (st2, _) = agent
        .post(&format!("/api/queue/{id}/accept"), json!({}))
        .await;
    assert!(st2 == 200 || st2 == 409, "{st2}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        pick_tickets(&sim).await.is_empty(),
        "nothing prints without paper"
    );

    // The agent restarts; the paper comes back: one pick ticket, once.
    agent.kill().await;
    let agent = Agent::start(&config, &key).await;
    sim.put("/printer/state", json!({"paper": "ok"})).await;
    let printed = sim.wait_receipts(1, 20).await;
    let text = printed[0]["text"].as_str().unwrap_or("");
    let no = o["display_no"].as_i64().expect("display_no");
    assert!(
        text.contains(&format!("#{no}")),
        "pick ticket shows #{no}:\n{text}"
    );
    assert!(text.contains("可口可乐"), "{text}");
    assert!(!text.contains("REPRINT"), "{text}");
    let q = agent.get("/api/queue").await;
    assert_eq!(
        order(&q, &id).expect("order")["new"],
        false,
        "not re-announced: {q}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pick_tickets(&sim).await.len(), 1, "one pick ticket");

    // The platform cancels the accepted order: a CANCELLED ticket, once.
    let r = app
        .sim
        .push(PushRequest::event_on(
            PushKind::Cancel,
            o["channel_order_id"].as_str().unwrap(),
        ))
        .await
        .expect("push cancel");
    assert_eq!(r.status, 200);
    let printed = sim.wait_receipts(2, 20).await;
    let text = printed[1]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("已取消") && text.contains("CANCELLED"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(pick_tickets(&sim).await.len(), 2);

    // Another order, rejected at the counter; a repeat is refused clearly.
    let (_, o2) = app.push_new("S001", vec![cola(1)]).await;
    let id2 = o2["id"].as_str().expect("id").to_owned();
    wait_queue(&agent, 10, "the second order", |q| order(q, &id2).is_some()).await;
    let (st, v) = agent
        .post(
            &format!("/api/queue/{id2}/reject"),
            json!({"reason": "售罄 sold out"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["order"]["status"], "rejected", "{v}");
    let (st, v) = agent
        .post(&format!("/api/queue/{id2}/accept"), json!({}))
        .await;
    assert_eq!(st, 409, "accepting a rejected order: {v}");
    assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    let (st, _) = agent
        .post("/api/queue/no-such-order/accept", json!({}))
        .await;
    assert_eq!(st, 404);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pick_tickets(&sim).await.len(), 2, "a reject prints nothing");
    agent.kill().await;
}

mod a_platform_order_reaches_the_counter_and_its_pick_ticket_prints_once {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::counter_takes_platform_orders(super::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::counter_takes_platform_orders(super::Backend::Postgres).await
    }
}
