//! The server loop: HTTP/1.1 connections driven one by one with hyper, so
//! that slow and greedy clients are bounded — a cap on open connections,
//! deadlines for a request's head, its body and its answer, and an idle
//! keep-alive timeout. Long streams (SSE) are not cut: the request deadline
//! only runs until the answer's head is ready.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;

use crate::error::{Code, Error};

/// How long a client may take, and how many it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From a request's first byte to the end of its head (request line and
    /// headers).
    pub header_read: Duration,
    /// From a request's head to the end of its body.
    pub body: Duration,
    /// From a request's head to its answer's head (streams then go on).
    pub request: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle: Duration,
    /// Open connections at most; beyond it new ones wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
    /// Open SSE streams per API key at most; beyond it 429.
    pub streams_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            body: Duration::from_secs(30),
            request: Duration::from_secs(60),
            idle: Duration::from_secs(75),
            max_connections: 1024,
            streams_per_key: 8,
        }
    }
}

/// `[http]` in the configuration file; each key is optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// The address `serve` binds (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// This gateway's public base URL, e.g. `https://gw.example.com`:
    /// signed pushes are checked against it and the WSDL names it. Default:
    /// `http://` + the listening address.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-*` headers are believed, e.g.
    /// `["127.0.0.1/32"]`. Default: none.
    pub trusted_proxies: Option<Vec<String>>,
    pub header_read_timeout_s: Option<u64>,
    pub body_timeout_s: Option<u64>,
    pub request_timeout_s: Option<u64>,
    pub idle_timeout_s: Option<u64>,
    pub max_connections: Option<usize>,
    pub streams_per_key: Option<usize>,
}

impl Limits {
    /// Defaults, then the merged `[http]` limits (environment
    /// `GATEWAY_HEADER_READ_TIMEOUT_S`, `GATEWAY_BODY_TIMEOUT_S`,
    /// `GATEWAY_REQUEST_TIMEOUT_S`, `GATEWAY_IDLE_TIMEOUT_S`,
    /// `GATEWAY_MAX_CONNECTIONS`, `GATEWAY_STREAMS_PER_KEY`; see
    /// [`crate::config`]). Every value must be positive.
    pub fn load(f: &HttpFile) -> anyhow::Result<Limits> {
        let d = Limits::default();
        let secs = |env: &str, file: Option<u64>, default: Duration| -> anyhow::Result<Duration> {
            let n = positive(env, file, default.as_secs())?;
            Ok(Duration::from_secs(n))
        };
        let limits = Limits {
            header_read: secs(
                "GATEWAY_HEADER_READ_TIMEOUT_S",
                f.header_read_timeout_s,
                d.header_read,
            )?,
            body: secs("GATEWAY_BODY_TIMEOUT_S", f.body_timeout_s, d.body)?,
            request: secs("GATEWAY_REQUEST_TIMEOUT_S", f.request_timeout_s, d.request)?,
            idle: secs("GATEWAY_IDLE_TIMEOUT_S", f.idle_timeout_s, d.idle)?,
            max_connections: positive(
                "GATEWAY_MAX_CONNECTIONS",
                f.max_connections.map(|n| n as u64),
                d.max_connections as u64,
            )? as usize,
            streams_per_key: positive(
                "GATEWAY_STREAMS_PER_KEY",
                f.streams_per_key.map(|n| n as u64),
                d.streams_per_key as u64,
            )? as usize,
        };
        anyhow::ensure!(
            limits.max_connections <= Semaphore::MAX_PERMITS,
            "max_connections is too large"
        );
        Ok(limits)
    }
}

fn positive(env: &str, v: Option<u64>, default: u64) -> anyhow::Result<u64> {
    match v {
        Some(0) => anyhow::bail!("{env} (or its file key) must be positive"),
        Some(n) if n > 1_000_000 => anyhow::bail!("{env} (or its file key) is too large"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// What the watchdog of one connection knows about it.
struct ConnState {
    /// Requests whose answer is not fully written yet.
    active: AtomicUsize,
    /// When the connection last went quiet (accepted, or an answer ended).
    idle_since: Mutex<Instant>,
    /// When the first byte of a request head arrived, while none is active.
    head_since: Mutex<Option<Instant>>,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            head_since: Mutex::new(None),
        }
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut h) = self.head_since.lock() {
            *h = None;
        }
        ActiveGuard(Arc::clone(self))
    }

    /// When this connection is to be closed, if nothing happens first;
    /// `None` while a request is being served.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if let Some(t) = self.head_since.lock().ok().and_then(|h| *h) {
            return Some(t + limits.header_read);
        }
        self.idle_since.lock().ok().map(|t| *t + limits.idle)
    }
}

/// Held by a request until its answer's body is dropped (written or given up).
struct ActiveGuard(Arc<ConnState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.idle_since.lock() {
            *t = Instant::now();
        }
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The socket, noting when a new request head starts arriving.
struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let st = &self.state;
            if st.active.load(Ordering::SeqCst) == 0
                && let Ok(mut h) = st.head_since.lock()
                && h.is_none()
            {
                *h = Some(Instant::now());
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The answer when a request ran out of time before its answer was ready.
fn timed_out(path: &str) -> Response<Body> {
    let message = "the request took longer than this gateway allows";
    if path.starts_with("/soap/") {
        crate::soap::timeout_fault(message)
    } else {
        Error::new(Code::RequestTimeout, message).into_response()
    }
}

/// Accepts connections until `shutdown` resolves, then lets requests in
/// flight finish (streams end when the state's `closing` turns true).
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let limits = Arc::new(limits);
    loop {
        // At the cap, stop accepting: new clients wait in the backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            got = listener.accept() => match got {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let limits = Arc::clone(&limits);
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, peer, router, limits, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    drop(listener);
    // Every connection holds a permit until it ends.
    // `Limits::load` bounds max_connections far below u32::MAX.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        // What is still running has recorded its state (a charge is
        // `pending` before its first call): the next start's sweeper ends it.
        tracing::warn!(
            open = limits.max_connections - permits.available_permits(),
            drain_s = DRAIN.as_secs(),
            "connections still open after the drain deadline; stopping anyway"
        );
    }
    Ok(())
}

/// How long a stopping server lets requests in flight finish.
pub const DRAIN: Duration = Duration::from_secs(10);

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched {
        io: stream,
        state: Arc::clone(&state),
    });
    let svc_state = Arc::clone(&state);
    let svc_limits = Arc::clone(&limits);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = svc_state.begin();
        let router = router.clone();
        let limits = Arc::clone(&svc_limits);
        async move {
            let path = req.uri().path().to_owned();
            let mut req = req.map(|b| Body::new(DeadlineBody::new(limits.body, b)));
            req.extensions_mut().insert(ConnectInfo(peer));
            let resp = match tokio::time::timeout(limits.request, router.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::info!(%peer, path, "request timed out");
                    timed_out(&path)
                }
            };
            // The connection counts as busy until the answer is written.
            let resp = resp.map(|b| {
                Body::new(b.map_frame(move |f| {
                    let _ = &guard;
                    f
                }))
            });
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The watchdog below times heads: hyper's own timer would also run
        // while a keep-alive connection waits, cutting it at that deadline.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let tick = (limits.header_read.min(limits.idle) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if state.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    // Nothing in flight: a stalled head or a quiet
                    // keep-alive. Dropping the connection closes it.
                    tracing::debug!(%peer, "closing a slow or idle connection");
                    return;
                }
            }
        }
    }
}

/// What the edge of the gateway believes: its public URL, the proxies whose
/// forwarded headers count, and the client limits.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub limits: Limits,
}

impl Edge {
    /// The merged `[http]` `public_url`, `trusted_proxies` and limits (environment
    /// `GATEWAY_PUBLIC_URL`, `GATEWAY_TRUSTED_PROXIES`, comma-separated CIDRs
    /// or addresses, and the `GATEWAY_*` limits, see [`Limits::load`]).
    pub fn load(f: &HttpFile) -> anyhow::Result<Edge> {
        let public_url = f
            .public_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(check_public_url)
            .transpose()?;
        let trusted_proxies = f
            .trusted_proxies
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| parse_proxy(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Edge {
            public_url,
            trusted_proxies,
            limits: Limits::load(f)?,
        })
    }

    /// Puts these settings into the state `serve` will run with.
    pub fn apply(self, state: &mut crate::app::AppState) {
        let inner = Arc::make_mut(&mut state.inner);
        inner.public_url = self.public_url;
        inner.trusted_proxies = self.trusted_proxies;
        inner.limits = self.limits;
    }
}

/// `http(s)://host[:port][/prefix]`, without query, fragment or spaces; the
/// trailing `/` dropped.
pub fn check_public_url(u: &str) -> anyhow::Result<String> {
    let u = u.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| anyhow::anyhow!("public_url {u:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    anyhow::ensure!(
        !host.is_empty()
            && !u.contains(['?', '#', '@'])
            && !u.chars().any(|c| c.is_whitespace() || c.is_control()),
        "public_url {u:?} must be http(s)://host[:port][/prefix]"
    );
    Ok(u.to_owned())
}

/// A CIDR (`10.0.0.0/8`) or a single address (`127.0.0.1`, `::1`).
fn parse_proxy(p: &str) -> anyhow::Result<ipnet::IpNet> {
    if let Ok(net) = p.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    p.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| anyhow::anyhow!("trusted proxy {p:?} is not an address or CIDR range"))
}
