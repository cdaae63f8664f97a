//! The aggregated queue: list with filters and a cursor, and the live SSE
//! feed with resume after reconnect.

use std::time::Duration;

use futures::StreamExt;
use proto::order::Unit;
use serde_json::Value;
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    queue_filters_and_cursor,
    sse_delivers_new_orders_and_resumes,
    feed_stays_in_order_under_concurrent_writers
);

async fn queue_filters_and_cursor(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let t = app.terminal("S001").to_owned();
    let (_, a) = app.order("S001", &[("COLA", "1")]).await;
    let (_, b2) = app.order("S001", &[("COLA", "1")]).await;
    let (s, counter) = app
        .post_json(
            "/api/v1/orders",
            &t,
            &serde_json::json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]}),
        )
        .await;
    assert_eq!(s, 201);
    app.order("S002", &[("COLA", "1")]).await;
    app.act(a["id"].as_str().unwrap(), "accept", &t).await;

    let (_, all) = app.get_json("/api/v1/stores/S001/orders", &t).await;
    assert_eq!(
        all["orders"].as_array().unwrap().len(),
        3,
        "all channels of S001 only"
    );
    let (_, created) = app
        .get_json("/api/v1/stores/S001/orders?status=created", &t)
        .await;
    let ids: Vec<&Value> = created["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&b2["id"], &counter["id"]]);
    let (_, official) = app
        .get_json("/api/v1/stores/S001/orders?channel=official", &t)
        .await;
    assert_eq!(official["orders"].as_array().unwrap().len(), 2);
    let (_, two) = app
        .get_json(
            "/api/v1/stores/S001/orders?status=created,accepted&channel=terminal",
            &t,
        )
        .await;
    assert_eq!(two["orders"].as_array().unwrap().len(), 1);

    // Poll with the cursor: each change once.
    let cursor = all["cursor"].as_i64().unwrap();
    let (_, none) = app
        .get_json(&format!("/api/v1/stores/S001/orders?since={cursor}"), &t)
        .await;
    assert!(none["orders"].as_array().unwrap().is_empty());
    assert_eq!(none["cursor"], cursor);
    app.act(b2["id"].as_str().unwrap(), "reject", &t).await;
    let (_, changed) = app
        .get_json(&format!("/api/v1/stores/S001/orders?since={cursor}"), &t)
        .await;
    let changed = changed["orders"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["status"], "rejected");

    for bad in [
        "status=lost",
        "channel=fax",
        "since=-1",
        "since=abc",
        "limit=0",
    ] {
        let (s, p) = app
            .get_json(&format!("/api/v1/stores/S001/orders?{bad}"), &t)
            .await;
        assert_eq!(s, 400, "{bad}: {p}");
    }
    assert_eq!(
        app.get_json("/api/v1/stores/S404/orders", &app.admin)
            .await
            .0,
        404
    );
    app.stop().await;
}

/// Reads SSE events (id, event, data) from a response body.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(r: reqwest::Response) -> Self {
        SseReader {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event, skipping keep-alive comments; panics after 15 s so a
    /// broken feed fails instead of hanging.
    pub async fn next(&mut self) -> (String, String, Value) {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut ev, mut data) = (String::new(), String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            ev = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return (
                        id,
                        ev,
                        serde_json::from_str(&data).expect("event data is JSON"),
                    );
                }
                let chunk = self
                    .body
                    .next()
                    .await
                    .expect("stream ended")
                    .expect("stream error");
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("no event within 15 s")
    }
}

async fn sse_delivers_new_orders_and_resumes(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let t = app.terminal("S001").to_owned();
    let open = |last: Option<String>| {
        let mut req = app
            .http
            .get(app.url("/api/v1/stores/S001/orders/stream"))
            .bearer_auth(&t);
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        req.send()
    };
    let r = open(None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut feed = SseReader::new(r);

    let (_, o1) = app.order("S001", &[("COLA", "1")]).await;
    app.order("S002", &[("COLA", "1")]).await; // another store: not in this feed
    let (id1, ev, data) = feed.next().await;
    assert_eq!(ev, "order.created");
    assert_eq!(data["order"]["id"], o1["id"]);
    assert_eq!(data["order"]["lines"][0]["name"], "可口可乐");

    app.act(o1["id"].as_str().unwrap(), "accept", &t).await;
    let (id2, ev, data) = feed.next().await;
    assert_eq!(
        (ev.as_str(), data["order"]["status"].as_str()),
        ("order.status_changed", Some("accepted"))
    );
    assert!(id2.parse::<i64>().unwrap() > id1.parse::<i64>().unwrap());
    drop(feed);

    // While disconnected: two more changes.
    let (_, o2) = app.order("S001", &[("COLA", "2")]).await;
    app.act(o1["id"].as_str().unwrap(), "ready", &t).await;

    let mut feed = SseReader::new(open(Some(id2)).await.unwrap());
    let (_, ev, data) = feed.next().await;
    assert_eq!(
        (ev.as_str(), &data["order"]["id"]),
        ("order.created", &o2["id"])
    );
    let (_, ev, data) = feed.next().await;
    assert_eq!(
        (ev.as_str(), data["order"]["status"].as_str()),
        ("order.status_changed", Some("ready"))
    );
    // Nothing is delivered twice: the next event is a new change.
    let (_, o3) = app.order("S001", &[("COLA", "1")]).await;
    let (_, _, data) = feed.next().await;
    assert_eq!(data["order"]["id"], o3["id"]);
    drop(feed);
    app.stop().await;
}

/// "In number order without gaps", under load: several writers create and
/// act on orders of one store at once while an SSE reader and a cursor
/// reader follow the feed. The stream sees every event exactly once, numbered
/// 1, 2, 3, …; the cursor reader sees numbers only ever increasing, each
/// once, and ends with every order's last change.
async fn feed_stays_in_order_under_concurrent_writers(b: Backend) {
    const WRITERS: usize = 6;
    const ORDERS_EACH: usize = 8;
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "10000")
        .await;
    let t = app.terminal("S001").to_owned();
    let r = app
        .http
        .get(app.url("/api/v1/stores/S001/orders/stream?since=0"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut sse = SseReader::new(r);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The cursor reader: small pages, so paging runs too.
    let cursor_reader = {
        let (app, t, done) = (app.clone(), t.clone(), done.clone());
        tokio::spawn(async move {
            let mut since = 0i64;
            let mut seen: Vec<(i64, String, String)> = Vec::new();
            loop {
                // Read once more after the writers finished, to the end.
                let last_round = done.load(std::sync::atomic::Ordering::SeqCst);
                loop {
                    let (s, page) = app
                        .get_json(
                            &format!("/api/v1/stores/S001/orders?since={since}&limit=7"),
                            &t,
                        )
                        .await;
                    assert_eq!(s, 200, "{page}");
                    for o in page["orders"].as_array().unwrap() {
                        seen.push((
                            o["seq"].as_i64().unwrap(),
                            o["id"].as_str().unwrap().to_owned(),
                            o["status"].as_str().unwrap().to_owned(),
                        ));
                    }
                    since = page["cursor"].as_i64().unwrap();
                    if !page["has_more"].as_bool().unwrap() {
                        break;
                    }
                }
                if last_round {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..ORDERS_EACH {
                    let (s, o) = app.order("S001", &[("COLA", "1")]).await;
                    assert_eq!(s, 201, "{o}");
                    ids.push(o["id"].as_str().unwrap().to_owned());
                }
                for action in ["accept", "ready", "complete"] {
                    for id in &ids {
                        let (s, p) = app.act(id, action, &t).await;
                        assert_eq!(s, 200, "{action}: {p}");
                    }
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for w in writers {
        ids.extend(w.await.expect("writer"));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let events = (WRITERS * ORDERS_EACH * 4) as i64;

    // The stream: 1..=events, each once, each order's changes in its order.
    let mut last_status = std::collections::HashMap::new();
    for want in 1..=events {
        let (id, _, data) = sse.next().await;
        assert_eq!(
            id.parse::<i64>().unwrap(),
            want,
            "stream out of order or gapped"
        );
        last_status.insert(
            data["order"]["id"].as_str().unwrap().to_owned(),
            data["order"]["status"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(last_status.len(), ids.len());
    assert!(
        last_status.values().all(|s| s == "completed"),
        "{last_status:?}"
    );

    // The cursor reader: strictly increasing numbers, and every order's last
    // change (number and status) among what it saw.
    let seen = cursor_reader.await.expect("cursor reader");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "cursor reader saw a number twice or went back: {:?}",
        seen.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    let (_, all) = app
        .get_json("/api/v1/stores/S001/orders?limit=1000", &t)
        .await;
    let all = all["orders"].as_array().unwrap();
    assert_eq!(all.len(), ids.len());
    for o in all {
        let (seq, id) = (o["seq"].as_i64().unwrap(), o["id"].as_str().unwrap());
        assert!(
            seen.iter()
                .any(|(s, i, st)| *s == seq && i == id && st == "completed"),
            "cursor reader missed the last change of {id} (seq {seq})"
        );
    }
    assert_eq!(
        all.iter().map(|o| o["seq"].as_i64().unwrap()).max(),
        Some(events)
    );
    drop(sse);
}
