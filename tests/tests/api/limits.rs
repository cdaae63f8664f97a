//! Slow and greedy clients: stalled heads, stalled bodies and idle
//! keep-alives are closed within the configured time while orders go on; the
//! connection cap holds new clients back; one key cannot open unbounded
//! feed streams.

use std::time::{Duration, Instant};

use gateway::app::AppState;
use gateway::http::Limits;
use proto::order::Unit;
use tests::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long past a configured limit a connection may take to be closed on a
/// loaded machine before the test calls it "still open".
const MARGIN: Duration = Duration::from_secs(20);

fn limits(app: &mut AppState, l: Limits) {
    std::sync::Arc::make_mut(&mut app.inner).limits = l;
}

/// Reads until the server closes (EOF or reset) or `deadline` passes;
/// returns what was read and when it closed (`None`: still open).
async fn until_closed(mut s: TcpStream, deadline: Instant) -> (Vec<u8>, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A complete request on a fresh connection, then nothing more.
const LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nHost: gw\r\n\r\n";

/// Reads one small answer (headers and the 2-byte `ok` body).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_while_orders_go_on() {
    let configured = Limits {
        header_read: Duration::from_secs(1),
        body: Duration::from_secs(1),
        request: Duration::from_secs(2),
        idle: Duration::from_secs(1),
        max_connections: 1024,
        streams_per_key: 8,
    };
    let l = configured.clone();
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| limits(s, l)).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100000")
        .await;
    const EACH: usize = 100;
    let started = Instant::now();
    let mut head = Vec::new();
    let mut body = Vec::new();
    let mut idle = Vec::new();
    for i in 0..EACH {
        // Half a request line.
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"POST /api/v1/ord").await.unwrap();
        head.push(s);
        // Headers, then one byte of a 100-byte body.
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let req = format!(
            "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            app.admin
        );
        s.write_all(req.as_bytes()).await.unwrap();
        body.push(s);
        // One request answered, then a quiet keep-alive.
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(LIVEZ).await.unwrap();
        let answer = read_answer(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{i}: {answer}");
        idle.push(s);
    }
    let opened = started.elapsed();

    // Orders keep being served meanwhile.
    let orders = {
        let http = app.http.clone();
        let url = app.url("/api/v1/orders");
        let key = app.terminal("S001").to_owned();
        tokio::spawn(async move {
            let mut served = 0;
            for _ in 0..20 {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&serde_json::json!({
                        "store_id": "S001", "lines": [{"sku": "COLA", "quantity": "1"}]
                    }))
                    .send()
                    .await
                    .expect("order");
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                served += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            served
        })
    };

    let deadline = Instant::now() + configured.request + MARGIN;
    let waits = |conns: Vec<TcpStream>| {
        conns
            .into_iter()
            .map(|s| tokio::spawn(until_closed(s, deadline)))
            .collect::<Vec<_>>()
    };
    let (head, body, idle) = (waits(head), waits(body), waits(idle));
    let mut report = Vec::new();
    for (what, tasks) in [
        ("half a request line", head),
        ("body stalled after 1 byte", body),
        ("idle keep-alive", idle),
    ] {
        let mut slowest = Duration::ZERO;
        for t in tasks {
            let (got, closed) = t.await.unwrap();
            let closed = closed.unwrap_or_else(|| panic!("{what}: still open after the deadline"));
            slowest = slowest.max(closed.duration_since(started));
            if what.starts_with("body") {
                // Told why, as a problem document, before the close.
                let text = String::from_utf8_lossy(&got);
                assert!(text.starts_with("HTTP/1.1 408"), "{what}: {text}");
                assert!(text.contains("request_timeout"), "{what}: {text}");
            }
        }
        report.push(format!(
            "{what}: all {EACH} closed {slowest:.2?} after the first was opened"
        ));
    }
    assert_eq!(orders.await.unwrap(), 20, "every order was served");
    println!(
        "{} stalled connections opened in {opened:.2?}; limits header/body/idle 1 s, request 2 s",
        3 * EACH
    );
    for line in report {
        println!("{line}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_new_clients_until_one_closes() {
    let l = Limits {
        header_read: Duration::from_secs(60),
        idle: Duration::from_secs(60),
        max_connections: 3,
        ..Limits::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| limits(s, l)).await else {
        return;
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(LIVEZ).await.unwrap();
        assert!(read_answer(&mut s).await.starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    // A fourth client: the kernel takes the connection, the gateway does
    // not serve it while three are open...
    let mut fourth = TcpStream::connect(app.addr).await.unwrap();
    fourth.write_all(LIVEZ).await.unwrap();
    // ...while it still serves the open ones (the positive signal first).
    open[0].write_all(LIVEZ).await.unwrap();
    assert!(read_answer(&mut open[0]).await.starts_with("HTTP/1.1 200"));
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the fourth connection was served beyond the cap"
    );
    // One closes: the fourth is served.
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(30), read_answer(&mut fourth))
        .await
        .expect("the fourth connection is served once one closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_cannot_open_unbounded_feed_streams() {
    let l = Limits {
        // Shorter than the stream is kept open below: streams are not cut.
        request: Duration::from_secs(1),
        streams_per_key: 2,
        ..Limits::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| limits(s, l)).await else {
        return;
    };
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100")
        .await;
    let key = app.terminal("S001").to_owned();
    let open = |key: String| {
        let req = app
            .http
            .get(app.url("/api/v1/stores/S001/orders/stream"))
            .bearer_auth(key);
        async move { req.send().await.expect("stream request") }
    };
    let mut first = open(key.clone()).await;
    let second = open(key.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = open(key.clone()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry > 0);
    let p: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(p["code"], "too_many_streams", "{p}");
    // Per key: the admin still has its own.
    let admin = open(app.admin.clone()).await;
    assert_eq!(admin.status(), 200);

    // Past the request timeout, the stream still delivers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, o) = app.order("S001", &[("COLA", "1")]).await;
    assert_eq!(s, 201, "{o}");
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let mut text = String::new();
        while !text.contains("order.created") {
            let chunk = first.chunk().await.expect("chunk").expect("stream ended");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("an event on the stream after the request timeout");
    assert!(got.contains(o["id"].as_str().unwrap()), "{got}");

    // Closing one frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut freed = None;
    while Instant::now() < deadline {
        let r = open(key.clone()).await;
        if r.status() == 200 {
            freed = Some(r);
            break;
        }
        assert_eq!(r.status(), 429);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed.is_some(), "a closed stream's place was not freed");
    drop((second, admin, freed));
    app.stop().await;
}
