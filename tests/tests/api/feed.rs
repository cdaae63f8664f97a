//! The aggregated queue: list with filters and a cursor, and the live SSE
//! feed with resume after reconnect.

use std::time::Duration;

use futures::StreamExt;
use proto::order::Unit;
use serde_json::Value;
use tests::{Backend, TestApp, on_both_databases};

on_both_databases!(
    queue_filters_and_cursor,
    sse_delivers_new_orders_and_resumes
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
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(r: reqwest::Response) -> Self {
        SseReader {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event, skipping keep-alive comments; panics after 15 s so a
    /// broken feed fails instead of hanging.
    async fn next(&mut self) -> (String, String, Value) {
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
