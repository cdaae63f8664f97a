//! The PHP SOAP peer (nginx + php-fpm + ext-soap + PDO SQLite, started by
//! its own `run.sh`) and this gateway on SQLite, back to back in one run,
//! under the same load: wrk, one thread, the same connections and seconds,
//! every request a new order of the same two lines (0.355 kg of DUCK-NECK,
//! 2 pieces of COLA) with its own client order id or idempotency key.
//! Prints orders/s and p99 of each, and the gateway's ratio to the peer
//! through SOAP `SubmitOrder` and through REST `POST /api/v1/orders`.
//!
//! Needs `wrk`, and for the peer `nginx php-fpm php-soap php-sqlite3 sqlite3`
//! (Debian packages).
//!
//! cargo run --release -p tests --bin peerbench -- --seconds 8 --connections 32

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use gateway::keys::Role;
use proto::order::{Sku, Unit};
use proto::soap::{self, SubmitLine, SubmitOrder, UsernameToken};
use tests::{Backend, TestApp, bench};

#[derive(Parser)]
#[command(about = "the PHP SOAP peer and the gateway back to back under wrk")]
struct Args {
    /// Seconds of wrk load per system.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// wrk connections (one wrk thread).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// The peer's directory (holds run.sh).
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Skip the PHP peer (gateway figures only, no ratios).
    #[arg(long)]
    no_peer: bool,
}

/// What wrk reported for one run.
#[derive(Debug, Default, Clone)]
struct Wrk {
    requests: u64,
    /// Responses outside 2xx/3xx plus socket errors.
    failed: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Wrk {
    /// Answered orders per second (failures excluded).
    fn per_sec(&self) -> f64 {
        self.requests.saturating_sub(self.failed) as f64 / self.seconds.max(1e-9)
    }
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` in milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// Reads wrk's `--latency` summary.
fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    let mut seen = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("50%") {
            w.p50_ms = wrk_ms(rest)?;
        } else if let Some(rest) = t.strip_prefix("99%") {
            w.p99_ms = wrk_ms(rest)?;
        } else if t.contains(" requests in ") {
            // `12345 requests in 8.00s, 3.21MB read`
            let mut parts = t.split_whitespace();
            w.requests = parts.next()?.parse().ok()?;
            let secs = t.split(" requests in ").nth(1)?.split(',').next()?;
            w.seconds = wrk_ms(secs)? / 1e3;
            seen = true;
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.failed += rest.trim().parse::<u64>().ok()?;
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 3`
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().last() {
                    w.failed += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    seen.then_some(w)
}

fn lua_long_string(s: &str) -> String {
    // A Lua long bracket no body can close early.
    let mut eq = String::from("=");
    while s.contains(&format!("]{eq}]")) {
        eq.push('=');
    }
    format!("[{eq}[{s}]{eq}]")
}

/// A wrk script posting `body` to `path` with `@ID@` replaced by a fresh
/// id per request (`prefix-n`); the id also goes into header `id_header`
/// when given. Headers in `headers` are sent as they are.
fn wrk_script(
    path: &str,
    headers: &[(&str, &str)],
    id_header: Option<&str>,
    body: &str,
    prefix: &str,
) -> String {
    let (pre, post, body_id) = match body.split_once("@ID@") {
        Some((pre, post)) => (pre, post, "id"),
        None => (body, "", "''"),
    };
    let mut s = String::new();
    s.push_str("local n = 0\n");
    s.push_str(&format!("local prefix = {}\n", lua_long_string(prefix)));
    s.push_str(&format!("local pre = {}\n", lua_long_string(pre)));
    s.push_str(&format!("local post = {}\n", lua_long_string(post)));
    s.push_str("local headers = {}\n");
    for (k, v) in headers {
        s.push_str(&format!(
            "headers[ {} ] = {}\n",
            lua_long_string(k),
            lua_long_string(v)
        ));
    }
    s.push_str("request = function()\n  n = n + 1\n  local id = prefix .. '-' .. n\n");
    if let Some(h) = id_header {
        s.push_str(&format!("  headers[ {} ] = id\n", lua_long_string(h)));
    }
    s.push_str(&format!(
        "  return wrk.format('POST', {}, headers, pre .. {body_id} .. post)\nend\n",
        lua_long_string(path)
    ));
    s
}

fn run_wrk(url: &str, script: &Path, seconds: u64, connections: u32) -> anyhow::Result<Wrk> {
    let out = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg("--latency")
        .arg(url)
        .output()
        .map_err(|e| anyhow::anyhow!("running wrk (Debian package wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "wrk said nothing readable: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn run_peer(dir: &Path, seconds: u64, connections: u32) -> anyhow::Result<Wrk> {
    let out = Command::new("bash")
        .arg(dir.join("run.sh"))
        .arg(seconds.to_string())
        .arg(connections.to_string())
        .output()
        .map_err(|e| anyhow::anyhow!("running the peer: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = text.lines().find(|l| l.starts_with("orders in db:")) {
        println!("php peer: {line}");
    }
    parse_wrk(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "the peer's run.sh said nothing readable: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn count_orders(app: &TestApp) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db.pool)
        .await
        .map(|r| r.0)
        .unwrap_or(-1)
}

fn row(name: &str, w: &Wrk) {
    println!(
        "{name:<34} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2}",
        w.requests,
        w.failed,
        w.per_sec(),
        w.p50_ms,
        w.p99_ms
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("warn"), gateway::telemetry::LogFormat::Text);
    let peer_dir = args.peer.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/php-soap")
    });
    println!(
        "peerbench: wrk -t1 -c{} -d{}s per system, {} cores; gateway in this process on SQLite",
        args.connections,
        args.seconds,
        bench::cores()
    );

    // The peer first, alone on the machine.
    let peer = if args.no_peer {
        None
    } else {
        Some(run_peer(&peer_dir, args.seconds, args.connections)?)
    };

    let scripts = tempfile::tempdir()?;
    let (soap_t, rest_t, stored) = bench::runtime()?.block_on(async {
        let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
            anyhow::bail!("no SQLite gateway");
        };
        app.product("DUCK-NECK", "鸭脖", Unit::Kg, "39.90", "100000")
            .await;
        app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100000")
            .await;
        // As much stock as the peer's schema gives (more than the API lets one
        // set): no run sells out.
        sqlx::query("UPDATE store_items SET on_hand = 1000000000000")
            .execute(&app.db.pool)
            .await?;
        let terminal = tests::key_for(&app.db, Role::Terminal, Some("S001"), Some("S001-T01")).await;
        let token = UsernameToken {
            username: "S001-T01".into(),
            password: terminal,
        };
        let msg = SubmitOrder {
            client_order_id: "@ID@".into(),
            lines: vec![
                SubmitLine {
                    sku: Sku::parse("DUCK-NECK")?,
                    quantity: "0.355".into(),
                    unit_price: None,
                },
                SubmitLine {
                    sku: Sku::parse("COLA")?,
                    quantity: "2".into(),
                    unit_price: None,
                },
            ],
            note: None,
            sold_at: None,
            catalog_version: None,
        };
        let soap_body = soap::write_request(&token, &msg);
        let rest_body = r#"{"store_id":"S001","lines":[{"sku":"DUCK-NECK","quantity":"0.355"},{"sku":"COLA","quantity":"2"}]}"#;
        let app_auth = format!("Bearer {}", app.app);
        let mut soap_scripts = Vec::new();
        let mut rest_scripts = Vec::new();
        for phase in ["warm", "run"] {
            let p = scripts.path().join(format!("soap-{phase}.lua"));
            std::fs::write(
                &p,
                wrk_script(
                    "/soap/terminal",
                    &[("Content-Type", "text/xml; charset=utf-8")],
                    None,
                    &soap_body,
                    &format!("soap-{phase}"),
                ),
            )?;
            soap_scripts.push(p);
            let p = scripts.path().join(format!("rest-{phase}.lua"));
            std::fs::write(
                &p,
                wrk_script(
                    "/api/v1/orders",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &app_auth),
                    ],
                    Some("Idempotency-Key"),
                    rest_body,
                    &format!("rest-{phase}"),
                ),
            )?;
            rest_scripts.push(p);
        }
        // One of each first, so a refusal shows its answer instead of a count.
        for (path, ctype, body, idem) in [
            ("/soap/terminal", "text/xml; charset=utf-8", soap_body.replace("@ID@", "check-1"), None),
            ("/api/v1/orders", "application/json", rest_body.to_owned(), Some("check-1")),
        ] {
            let mut req = app
                .http
                .post(app.url(path))
                .header("content-type", ctype)
                .body(body);
            if let Some(k) = idem {
                req = req.bearer_auth(&app.app).header("Idempotency-Key", k);
            }
            let r = req.send().await?;
            let status = r.status();
            let text = r.text().await?;
            anyhow::ensure!(status.is_success(), "{path}: HTTP {status}: {text}");
        }
        let base = app.base.clone();
        let (c, s) = (args.connections, args.seconds);
        let wrk = |url: String, script: PathBuf, secs: u64| {
            tokio::task::spawn_blocking(move || run_wrk(&url, &script, secs, c))
        };
        // Warm-up: connections, key cache, SQLite pages.
        wrk(format!("{base}/soap/terminal"), soap_scripts[0].clone(), 1).await??;
        wrk(format!("{base}/api/v1/orders"), rest_scripts[0].clone(), 1).await??;
        let before = count_orders(&app).await;
        let soap_t = wrk(format!("{base}/soap/terminal"), soap_scripts[1].clone(), s).await??;
        let rest_t = wrk(format!("{base}/api/v1/orders"), rest_scripts[1].clone(), s).await??;
        let stored = count_orders(&app).await - before;
        app.stop().await;
        Ok((soap_t, rest_t, stored))
    })?;

    println!(
        "{:<34} {:>9} {:>7} {:>10} {:>9} {:>9}",
        "system", "requests", "failed", "orders/s", "p50 ms", "p99 ms"
    );
    if let Some(p) = &peer {
        row("php peer: SOAP SubmitOrder", p);
    }
    row("gateway: SOAP SubmitOrder", &soap_t);
    row("gateway: REST POST /api/v1/orders", &rest_t);
    let answered = soap_t.requests + rest_t.requests - soap_t.failed - rest_t.failed;
    println!("gateway: orders stored in the measured runs {stored}, answered 2xx {answered}");
    if let Some(p) = &peer {
        let r = |g: &Wrk| g.per_sec() / p.per_sec().max(1e-9);
        let l = |g: &Wrk| g.p99_ms / p.p99_ms.max(1e-9);
        println!(
            "ratio SOAP/SOAP: {:.2}× orders/s, p99 {:.3}× (target ≥ 10×, ≤ 0.1×)",
            r(&soap_t),
            l(&soap_t)
        );
        println!(
            "ratio REST/SOAP: {:.2}× orders/s, p99 {:.3}× (target ≥ 10×, ≤ 0.1×)",
            r(&rest_t),
            l(&rest_t)
        );
    }
    println!(
        "gateway SOAP/REST: {:.2} (target ≥ 0.9)",
        soap_t.per_sec() / rest_t.per_sec().max(1e-9)
    );
    if soap_t.failed + rest_t.failed > 0 {
        anyhow::bail!("{} gateway requests failed", soap_t.failed + rest_t.failed);
    }
    Ok(())
}

#[cfg(test)]
mod wrk_summary {
    use super::*;

    #[test]
    fn reads_wrk_summary() {
        let out = "Running 8s test @ http://127.0.0.1:1/soap.php\n  Latency Distribution\n     50%   12.50ms\n     75%   20.00ms\n     90%   30.00ms\n     99%    1.10s\n  1000 requests in 8.00s, 1.00MB read\n  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 4\nRequests/sec:    125.00\n";
        let w = parse_wrk(out).expect("parsed");
        assert_eq!(w.requests, 1000);
        assert_eq!(w.failed, 7);
        assert!((w.p50_ms - 12.5).abs() < 1e-9);
        assert!((w.p99_ms - 1100.0).abs() < 1e-9);
        assert!((w.per_sec() - 124.125).abs() < 1e-9);
    }
}
