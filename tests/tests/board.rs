//! The store board (`/board/{store}`) in a real headless browser (Debian's
//! chromium through chromedriver, driven by Selenium:
//! tests/interop/board.py) against the real gateway and the platform
//! simulator. The script runs the browser and asks this test, one line at a
//! time on its standard output (`CMD …`), to act as the platform and to stop
//! and start the gateway; the answer is one JSON line on its standard input.

#[path = "channels/app.rs"]
#[allow(dead_code)]
mod app;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use hw_sim::platform::{PlatformSim, PushKind, PushRequest};
use serde_json::json;
use tests::{Backend, TestDb, on_both_databases};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use app::{Chan, cola};

on_both_databases!(the_board_follows_the_queue_in_a_real_browser);

/// The page and its files carry the gateway's own-origin-only policy; a
/// malformed store id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_is_served_with_its_security_headers() {
    let app = Chan::spawn(Backend::Sqlite).await.expect("sqlite");
    for (path, kind) in [
        ("/board/S001", "text/html"),
        ("/board/assets/board.js", "text/javascript"),
        ("/board/assets/board.css", "text/css"),
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(header("content-type").starts_with(kind), "{path}: {h:?}");
        let csp = header("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    let page = app
        .http
        .get(app.url("/board/S001"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/board/assets/board.js") && page.contains("lang=\"zh-CN\""));
    assert!(!page.contains("<script>"), "no inline script");
    let r = app
        .http
        .get(app.url("/board/no%20such%20store!"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

/// The gateway as the script sees it: running (`Chan`) or stopped (its
/// database and the simulator kept).
enum Gateway {
    Up(Chan),
    Down(Arc<TestDb>),
}

/// A platform order appears on the board, accepting it reaches the
/// platform, a platform cancellation shows at once, the gateway's
/// unconfirmed-order alert flags a waiting order, and after a gateway
/// restart the board catches up with an order that arrived while it was
/// cut off (the browser held offline until the order is in) — also when
/// the feed was pruned meanwhile (`cursor_expired`: it reloads the queue).
async fn the_board_follows_the_queue_in_a_real_browser(b: Backend) {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    if let Some(missing) = browser.iter().find(|p| !Path::new(p).exists()) {
        let why = format!(
            "{missing} is missing (apt-get install chromium chromium-driver; .ci/run does)"
        );
        assert!(!tests::in_ci(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let Some(python) = tests::interop_python("board.py", "selenium") else {
        return;
    };
    // The gateway's alert for a delivery order nobody accepts, soon.
    let tweak = |c: &mut gateway::channels::ChannelsConfig| {
        c.unconfirmed_alert = std::time::Duration::from_secs(3);
    };
    let Some(app) = Chan::spawn_with(b, tweak).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_owned();
    let sim: PlatformSim = app.sim.clone();
    let shots = tempfile::tempdir().expect("dir");
    let shot = shots.path().join("board.png");
    let mut child = tokio::process::Command::new(python)
        .arg(tests::interop_script("board.py"))
        .env("BOARD_URL", format!("{}/board/S001", app.base))
        .env("KEY", &app.terminal)
        .env("SCREENSHOT", &shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut gw = Gateway::Up(app);
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read the script") {
        println!("{line}");
        let Some(cmd) = line.strip_prefix("CMD ") else {
            out.push(line);
            continue;
        };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let answer = match words.as_slice() {
            // A new order, or the platform's retry of one (`push ID`).
            ["push", rest @ ..] => {
                let mut req = PushRequest::new_order("S001", vec![cola(1)]);
                req.order.order_id = rest.first().map(|s| (*s).to_owned());
                let o = sim.push(req).await.expect("push");
                json!({"order_id": o.order_id, "day_seq": o.day_seq, "status": o.status})
            }
            ["cancel", id] => {
                let o = sim
                    .push(PushRequest::event_on(PushKind::Cancel, id))
                    .await
                    .expect("cancel push");
                json!({"status": o.status})
            }
            // Retention as if it had run long: every feed event of S001 gone.
            ["prune"] => match &gw {
                Gateway::Up(app) => {
                    let n = sqlx::query("DELETE FROM order_events WHERE store_id = $1")
                        .bind("S001")
                        .execute(&app.db.pool)
                        .await
                        .expect("prune")
                        .rows_affected();
                    json!({ "pruned": n })
                }
                Gateway::Down(_) => json!({"error": "prune needs the gateway up"}),
            },
            ["calls"] => {
                let calls: Vec<String> = sim.received_ok().into_iter().map(|r| r.path).collect();
                json!({ "calls": calls })
            }
            ["stop"] => {
                gw = match gw {
                    Gateway::Up(app) => Gateway::Down(app.stop().await.0),
                    down => down,
                };
                json!({})
            }
            ["start"] => {
                gw = match gw {
                    Gateway::Down(store) => {
                        Gateway::Up(Chan::start_on(store, sim.clone(), &addr, tweak).await)
                    }
                    up => up,
                };
                json!({})
            }
            _ => json!({"error": format!("unknown command {cmd:?}")}),
        };
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .expect("answer the script");
        stdin.flush().await.expect("flush");
    }
    let status = child.wait().await.expect("wait for the script");
    let out = out.join("\n");
    assert!(status.success(), "board.py failed:\n{out}");
    assert!(out.contains("board: all checks passed"), "{out}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    if let Ok(to) = std::env::var("BOARD_SCREENSHOT") {
        std::fs::copy(&shot, &to).expect("copy the screenshot");
    }
    if let Gateway::Up(app) = gw {
        // The platform heard of the store's accept.
        assert!(
            sim.received_ok().iter().any(|r| r.path == "order/confirm"),
            "{:?}",
            sim.received()
        );
        let _ = app.stop().await;
    } else {
        panic!("the script left the gateway stopped");
    }
}
