//! Real `gateway serve` processes on one database, and an SSE reader of a
//! store's feed: what the several-instances test and the feed benchmark
//! share.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use futures::StreamExt;
use tokio::sync::mpsc;

/// A `gateway serve` process; SIGKILLed when dropped.
pub struct GatewayProc {
    pub child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl GatewayProc {
    /// Starts `bin serve` on port 0 over `db_url` with `env` (`GATEWAY_*`)
    /// and `--set` settings, and waits until it listens.
    pub fn start(bin: &Path, db_url: &str, env: &[(&str, &str)], set: &[&str]) -> GatewayProc {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEWAY_DATABASE_URL", db_url)
            .env("RUST_LOG", "error")
            .env_remove("GATEWAY_CONFIG")
            .env_remove("GATEWAY_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        for s in set {
            cmd.args(["--set", s]);
        }
        let mut child = cmd.spawn().expect("spawn gateway");
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
        GatewayProc { child, base }
    }

    /// SIGKILL: nothing is flushed, nothing is answered.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success(), "kill -TERM failed");
        self.child.wait().expect("wait for the gateway")
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Server-Sent Event: its `id`, `event`, `retry` and `data` fields.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub retry: Option<String>,
    pub data: String,
}

/// Opens `url` as an event stream with `key`; events arrive on the
/// receiver, which closes when the stream ends. Returns once the answer's
/// head is in (the stream is open).
pub async fn sse(
    http: &reqwest::Client,
    url: &str,
    key: &str,
) -> mpsc::UnboundedReceiver<SseEvent> {
    let r = http
        .get(url)
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open the stream");
    assert!(r.status().is_success(), "stream {url}: {}", r.status());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = r.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                let mut any = false;
                for line in block.lines() {
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v).to_owned();
                    match k {
                        "id" => ev.id = Some(v),
                        "event" => ev.event = Some(v),
                        "retry" => ev.retry = Some(v),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(&v);
                        }
                        _ => continue,
                    }
                    any = true;
                }
                if any && tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`;
/// panics naming `what` when it does not.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
