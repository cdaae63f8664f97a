//! A TCP forwarder between a counter agent and its gateway, as the office
//! harness and the tests use it: it can be cut (new connections closed at
//! once, open ones dropped — the network gone), pointed at a gateway
//! restarted elsewhere, and made to lose one answer: the request reaches the
//! gateway, which saves it, and the connection drops before the answer gets
//! back (the lost acknowledgement behind most duplicate orders).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

pub struct Link {
    /// `http://127.0.0.1:port`, for the agent's `gateway_url`.
    pub url: String,
    /// `false` cuts the line.
    pub up: watch::Sender<bool>,
    upstream: Arc<Mutex<String>>,
    lose: Arc<Lose>,
}

/// The armed lost-answer fault: the next request whose bytes contain
/// `needle` has its answer dropped.
#[derive(Default)]
struct Lose {
    needle: Mutex<Option<Vec<u8>>>,
    dropped: AtomicU64,
}

impl Lose {
    /// True (and disarmed) when `chunk` carries the armed request.
    fn take_if_in(&self, chunk: &[u8]) -> bool {
        let Ok(mut n) = self.needle.lock() else {
            return false;
        };
        let hit = n
            .as_ref()
            .is_some_and(|needle| chunk.windows(needle.len()).any(|w| w == needle.as_slice()));
        if hit {
            *n = None;
        }
        hit
    }
}

impl Link {
    /// Forwards to `upstream` (`host:port`) on a free local port.
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (up, rx) = watch::channel(true);
        let target = Arc::new(Mutex::new(upstream.into()));
        let lose = Arc::new(Lose::default());
        let t = Arc::clone(&target);
        let l = Arc::clone(&lose);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                let addr = t.lock().map(|a| a.clone()).unwrap_or_default();
                let mut rx = rx.clone();
                let lose = Arc::clone(&l);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(addr.as_str()).await else {
                        return;
                    };
                    tokio::select! {
                        _ = forward(client, server, lose) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Link {
            url,
            up,
            upstream: target,
            lose,
        })
    }

    /// New connections go to `addr` from now on.
    pub fn point_at(&self, addr: &str) {
        if let Ok(mut a) = self.upstream.lock() {
            *a = addr.to_owned();
        }
    }

    /// Arms the lost answer: the next request containing `needle` goes
    /// through, its answer does not (the connection drops instead).
    pub fn lose_next_answer(&self, needle: &str) {
        if let Ok(mut n) = self.lose.needle.lock() {
            *n = Some(needle.as_bytes().to_vec());
        }
    }

    /// Disarms it, if no such request came.
    pub fn disarm(&self) {
        if let Ok(mut n) = self.lose.needle.lock() {
            *n = None;
        }
    }

    /// Answers dropped so far.
    pub fn answers_lost(&self) -> u64 {
        self.lose.dropped.load(Ordering::Relaxed)
    }
}

/// Copies both ways until both ends are done, or drops the connection when
/// the answer to a doomed request starts coming back.
async fn forward(client: TcpStream, server: TcpStream, lose: Arc<Lose>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let doomed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = Notify::new();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if lose.take_if_in(&buf[..n]) {
                doomed.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if doomed.load(Ordering::SeqCst) {
                // The gateway answered (it saved the request): lose it.
                lose.dropped.fetch_add(1, Ordering::Relaxed);
                cut.notify_one();
                return;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.notified() => {}
    }
}
