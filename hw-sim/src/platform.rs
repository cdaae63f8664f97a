//! `hw-sim platform`: a Meituan-style delivery platform, for the gateway's
//! third-party order channel (codec in [`proto::meituan`]).
//!
//! It plays both sides of the platform:
//! - **Pushes** signed orders and events to the gateway at
//!   `{gateway}/channels/meituan/{event}` when told to (`POST /push`, or
//!   [`PlatformSim::push`]): it fills in the platform order id, the store's
//!   `day_seq`, timestamps and amounts, and can forge the signature, age the
//!   timestamp, repeat the push (duplicates) or override raw parameters.
//! - **Serves the platform API** the gateway calls, `POST /api/v1/{path}`
//!   (every path of [`proto::meituan::Call`]), checking `app_id`, the
//!   timestamp window and `sig` — signed over `{public_url}/api/v1/{path}`
//!   (default `http://{listen address}`) or over `http://{Host header}/api/v1/{path}`.
//!   It answers `{"data":"ok"}`; a refusal is HTTP 200 with
//!   `{"data":"ng","error":{"code":…,"msg":…}}` as the real platform does:
//!   700 malformed parameter, 701 missing parameter, 702 unknown app_id,
//!   703 bad signature, 704 bad timestamp (our code), 808 operation refused
//!   (`操作失败,订单已经确认过了` to a second confirm, or an action the
//!   order's state does not allow). Only an unknown path is a 404.
//!   See docs/simulators.md for what it follows and where it differs.
//!
//! Control API beside it:
//! - `POST /push` `{"event": "new"|"cancel"|"refund_apply"|"refund_cancel"|"delivery_status",
//!   "order": {…}, "tamper": bool, "stale_s": n, "repeat": n, "concurrent": bool,
//!   "delay_ms": n, "raw": {"param": "value" | null}}` → [`PushOutcome`].
//! - `GET /received[?ok=true][&path=…][&order_id=…]` every outbound call in arrival
//!   order ([`Received`]); `DELETE /received` forgets them.
//! - `PUT /faults` ([`Faults`]: `{"status": 503, "for_s": 60}`, `{"delay_ms": 5000}`,
//!   `{"drop": true}`, with `for_ms` / `count` limits), `GET /faults`, `DELETE /faults`.
//! - `GET /orders`: `{"orders": [PlatformOrder…], "foods": [Food…]}`.
//! - `GET /pushes`: every push sent, with the gateway's answers.

mod state;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use proto::meituan::{self as mt, Call, Push, PushEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::{ActiveFaults, Faults, Food, PlatformOrder, Received, Refund, status};

/// How long a dropped call holds its connection at most.
const SILENCE: Duration = Duration::from_secs(300);
/// Most copies of one push.
const MAX_REPEAT: u32 = 100;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve the platform API and the control API on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The gateway's base URL; pushes go to `{gateway}/channels/meituan/{event}`.
    #[arg(
        long,
        env = "HW_SIM_PLATFORM_GATEWAY",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,
    #[arg(long, env = "HW_SIM_PLATFORM_APP_ID", default_value = "hw-sim-app")]
    pub app_id: String,
    /// The app secret both sides sign with.
    #[arg(long, env = "HW_SIM_PLATFORM_SECRET")]
    pub secret: String,
    /// The base URL the gateway calls this simulator at (what it signs
    /// over); default `http://{listen address}`.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Timestamp window for the gateway's calls, seconds.
    #[arg(long, default_value_t = mt::DEFAULT_WINDOW_S)]
    pub window_s: i64,
    /// Serve the platform API over HTTPS with a certificate made at start;
    /// its CA is written here as `ca.pem` (give it to the gateway as
    /// GATEWAY_EXTRA_CA_FILE).
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
}

/// Runs the simulator until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let tls = match &args.tls_dir {
        None => None,
        Some(dir) => {
            let pki = crate::tls::TestPki::generate()?;
            pki.write_to(dir)?;
            println!("certificates: {}", dir.display());
            Some(pki.server_config(None)?)
        }
    };
    let sim = PlatformSim::start(PlatformConfig {
        listen: args.listen,
        gateway_url: args.gateway,
        app_id: args.app_id,
        secret: args.secret,
        public_url: args.public_url,
        window_s: args.window_s,
        tls,
    })
    .await?;
    println!("delivery platform: {}", sim.url());
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    Ok(())
}

/// Who the simulated platform is and where the gateway is.
#[derive(Clone)]
pub struct PlatformConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway_url: String,
    pub app_id: String,
    pub secret: String,
    /// The base URL the gateway signs its calls over; default
    /// `http://{bound address}` (`0.0.0.0` read as `127.0.0.1`).
    pub public_url: Option<String>,
    /// Timestamp window for the gateway's calls, seconds.
    pub window_s: i64,
    /// Serve HTTPS with this setup (see [`crate::tls::TestPki`]); `None`:
    /// plain HTTP.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl PlatformConfig {
    /// On `127.0.0.1:0`, with the default window and public URL.
    pub fn new(gateway_url: &str, app_id: &str, secret: &str) -> PlatformConfig {
        PlatformConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway_url: gateway_url.to_owned(),
            app_id: app_id.to_owned(),
            secret: secret.to_owned(),
            public_url: None,
            window_s: mt::DEFAULT_WINDOW_S,
            tls: None,
        }
    }
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("listen", &self.listen)
            .field("gateway_url", &self.gateway_url)
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .field("public_url", &self.public_url)
            .field("window_s", &self.window_s)
            .finish()
    }
}

// ------------------------------------------------------------ push requests

/// An amount in yuan on the control API: `"12.50"` or `12.5`, read without
/// floats; held as fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Yuan(pub i64);

impl<'de> Deserialize<'de> for Yuan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Yuan, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        mt::parse_json_yuan(raw.get())
            .map(Yuan)
            .map_err(|e| serde::de::Error::custom(format!("amount {}: {e}", raw.get())))
    }
}

impl Serialize for Yuan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&mt::format_yuan(self.0))
    }
}

/// The kind of push, as `POST /push` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushKind {
    #[serde(alias = "new_order")]
    New,
    Cancel,
    RefundApply,
    RefundCancel,
    DeliveryStatus,
}

impl PushKind {
    pub fn event(self) -> PushEvent {
        match self {
            PushKind::New => PushEvent::NewOrder,
            PushKind::Cancel => PushEvent::Cancel,
            PushKind::RefundApply => PushEvent::RefundApply,
            PushKind::RefundCancel => PushEvent::RefundCancel,
            PushKind::DeliveryStatus => PushEvent::DeliveryStatus,
        }
    }
}

/// One item line of a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    /// The platform's item code (`app_food_code`).
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    pub quantity: u32,
    /// Unit price.
    pub price: Yuan,
    #[serde(default)]
    pub unit: Option<String>,
}

impl ItemSpec {
    pub fn new(sku: &str, name: &str, quantity: u32, price_fen: i64) -> ItemSpec {
        ItemSpec {
            sku: sku.to_owned(),
            name: Some(name.to_owned()),
            quantity,
            price: Yuan(price_fen),
            unit: None,
        }
    }
}

/// The `order` of a push; what each event uses is listed per field. All
/// optional: the simulator fills the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSpec {
    /// new: default a fresh unique number; others: required.
    #[serde(default)]
    pub order_id: Option<String>,
    /// new: the platform store id (`app_poi_code`), required.
    #[serde(default)]
    pub store: Option<String>,
    /// new: at least one.
    #[serde(default)]
    pub items: Vec<ItemSpec>,
    /// new: the customer's note (`caution`).
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub recipient_name: Option<String>,
    #[serde(default)]
    pub recipient_phone: Option<String>,
    /// new: delivery fee, default 0.
    #[serde(default)]
    pub shipping_fee: Option<Yuan>,
    /// new: one platform discount, default none.
    #[serde(default)]
    pub discount: Option<Yuan>,
    /// cancel: default 1002 (customer cancelled).
    #[serde(default)]
    pub reason_code: Option<i32>,
    /// cancel / refund_apply / refund_cancel.
    #[serde(default)]
    pub reason: Option<String>,
    /// refund_apply: default fresh; refund_cancel: default the order's latest.
    #[serde(default)]
    pub refund_id: Option<String>,
    /// refund_apply: amount; absent = the whole order.
    #[serde(default)]
    pub money: Option<Yuan>,
    /// delivery_status: 0, 10, 15, 20, 40, 100 (default 20, picked up).
    #[serde(default)]
    pub logistics_status: Option<i32>,
}

fn one() -> u32 {
    1
}

/// What `POST /push` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub event: PushKind,
    #[serde(default)]
    pub order: OrderSpec,
    /// Send a wrong `sig`.
    #[serde(default)]
    pub tamper: bool,
    /// Date the `timestamp` this many seconds back (negative: ahead).
    #[serde(default)]
    pub stale_s: i64,
    /// Send the very same form (same timestamp and sig) this many times.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Send the repeats at the same time instead of one after the other.
    #[serde(default)]
    pub concurrent: bool,
    /// Wait this long before sending.
    #[serde(default)]
    pub delay_ms: u64,
    /// Parameters to set (or, with `null`, remove) before signing, to send
    /// malformed pushes with a valid signature.
    #[serde(default)]
    pub raw: BTreeMap<String, Option<String>>,
}

impl PushRequest {
    pub fn new(event: PushKind, order: OrderSpec) -> PushRequest {
        PushRequest {
            event,
            order,
            tamper: false,
            stale_s: 0,
            repeat: 1,
            concurrent: false,
            delay_ms: 0,
            raw: BTreeMap::new(),
        }
    }

    /// A new order at platform store `store`.
    pub fn new_order(store: &str, items: Vec<ItemSpec>) -> PushRequest {
        PushRequest::new(
            PushKind::New,
            OrderSpec {
                store: Some(store.to_owned()),
                items,
                ..OrderSpec::default()
            },
        )
    }

    /// An event (`cancel`, `refund_apply`, …) on platform order `order_id`.
    pub fn event_on(event: PushKind, order_id: &str) -> PushRequest {
        PushRequest::new(
            event,
            OrderSpec {
                order_id: Some(order_id.to_owned()),
                ..OrderSpec::default()
            },
        )
    }
}

/// What a push did: the ids the simulator filled in and the gateway's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushOutcome {
    /// The event path segment, e.g. `new_order`.
    pub event: String,
    pub order_id: String,
    pub day_seq: Option<u32>,
    pub refund_id: Option<String>,
    /// The URL posted to (and signed over).
    pub url: String,
    /// The gateway's HTTP status to the last copy; 0 when it could not be reached.
    pub status: u16,
    /// One status per copy, in sending order.
    pub statuses: Vec<u16>,
    /// The gateway's body to the last copy (JSON when it is JSON).
    pub answer: Value,
    /// The form sent, `sig` included.
    pub params: BTreeMap<String, String>,
}

/// A push request the simulator cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPush(pub String);

impl std::fmt::Display for BadPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadPush {}

/// One push sent, as `GET /pushes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentPush {
    pub at_ms: i64,
    pub event: String,
    pub order_id: String,
    /// Neither tampered, stale nor raw-edited.
    pub genuine: bool,
    pub statuses: Vec<u16>,
}

// ------------------------------------------------------------ the simulator

/// A running simulated platform. Cheap to clone; stops on [`PlatformSim::stop`].
#[derive(Clone)]
pub struct PlatformSim {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PlatformConfig,
    addr: SocketAddr,
    public_url: String,
    gateway: Mutex<String>,
    state: Mutex<state::State>,
    pushes: Mutex<Vec<SentPush>>,
    client: reqwest::Client,
    closing: watch::Sender<bool>,
    /// Prefix of platform order ids: the start time, so ids differ across runs.
    id_base: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the data as it was.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unix_s() -> i64 {
    unix_ms() / 1000
}

impl PlatformSim {
    /// Binds `config.listen` and serves the platform and control APIs in
    /// a background task.
    pub async fn start(config: PlatformConfig) -> io::Result<PlatformSim> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = match &config.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if addr.ip().is_unspecified() => format!("{scheme}://127.0.0.1:{}", addr.port()),
            None => format!("{scheme}://{addr}"),
        };
        let tls = config.tls.clone();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(io::Error::other)?;
        let sim = PlatformSim {
            inner: Arc::new(Inner {
                gateway: Mutex::new(config.gateway_url.trim_end_matches('/').to_owned()),
                cfg: config,
                addr,
                public_url,
                state: Mutex::new(state::State::default()),
                pushes: Mutex::new(Vec::new()),
                client,
                closing: watch::Sender::new(false),
                id_base: unix_s(),
            }),
        };
        let mut closing = sim.inner.closing.subscribe();
        let app = sim.router();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            let served = match tls {
                Some(tls) => crate::tls::serve(listener, tls, app, shutdown).await,
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "platform simulator stopped");
            }
        });
        Ok(sim)
    }

    /// The routes, for serving elsewhere.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/{*path}", post(api_call))
            .route("/push", post(post_push))
            .route("/received", get(get_received).delete(delete_received))
            .route(
                "/faults",
                put(put_faults).get(get_faults).delete(delete_faults),
            )
            .route("/orders", get(get_orders))
            .route("/pushes", get(get_pushes))
            .with_state(self.clone())
    }

    /// The base URL the gateway should call (`GATEWAY_MEITUAN_BASE_URL`),
    /// also the control API's.
    pub fn url(&self) -> String {
        self.inner.public_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Points pushes at another gateway (e.g. one started after the simulator).
    pub fn set_gateway_url(&self, url: &str) {
        *lock(&self.inner.gateway) = url.trim_end_matches('/').to_owned();
    }

    /// Stops serving (open dropped calls are released).
    pub fn stop(&self) {
        let _ = self.inner.closing.send(true);
    }

    /// Every outbound call received, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.state).received().to_vec()
    }

    /// The calls that took effect (answered `{"data":"ok"}`), in arrival order.
    pub fn received_ok(&self) -> Vec<Received> {
        lock(&self.inner.state)
            .received()
            .iter()
            .filter(|r| r.ok)
            .cloned()
            .collect()
    }

    pub fn clear_received(&self) {
        lock(&self.inner.state).clear_received();
    }

    /// Makes outbound calls fail as `faults` says (replacing any before).
    pub fn set_faults(&self, faults: Faults) -> Result<(), BadPush> {
        faults.check().map_err(BadPush)?;
        lock(&self.inner.state).set_faults(faults, Instant::now());
        Ok(())
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.state).clear_faults();
    }

    /// The platform's view of every order it knows.
    pub fn orders(&self) -> Vec<PlatformOrder> {
        lock(&self.inner.state).orders().to_vec()
    }

    /// One order's view.
    pub fn order(&self, order_id: &str) -> Option<PlatformOrder> {
        lock(&self.inner.state).order(order_id).cloned()
    }

    /// Stock and sell status per item, from the gateway's calls.
    pub fn foods(&self) -> Vec<Food> {
        lock(&self.inner.state).foods()
    }

    /// Every push sent.
    pub fn pushes(&self) -> Vec<SentPush> {
        lock(&self.inner.pushes).clone()
    }

    /// Builds, signs and sends a push to the gateway; see [`PushRequest`].
    /// A gateway that cannot be reached gives status 0, not an error.
    pub async fn push(&self, req: PushRequest) -> Result<PushOutcome, BadPush> {
        if req.repeat == 0 || req.repeat > MAX_REPEAT {
            return Err(BadPush(format!("repeat must be 1 to {MAX_REPEAT}")));
        }
        let now_s = unix_s();
        let (push, day_seq, refund_id) = self.build(&req, now_s)?;
        let event = push.event();
        let url = format!(
            "{}/channels/meituan/{}",
            lock(&self.inner.gateway),
            event.as_str()
        );
        let mut params = push.params();
        if let Push::NewOrder(o) = &push {
            // `detail` and `extras` as the platform writes them.
            for (k, v) in &mut params {
                match k.as_str() {
                    "detail" => *v = platform_detail(&o.items),
                    "extras" => *v = platform_discounts(&o.discounts),
                    _ => {}
                }
            }
        }
        params.extend(platform_extras(&push, now_s));
        for (k, v) in &req.raw {
            params.retain(|(pk, _)| pk != k);
            if let Some(v) = v {
                params.push((k.clone(), v.clone()));
            }
        }
        let genuine = !req.tamper && req.stale_s == 0 && req.raw.is_empty();
        let timestamp = now_s.saturating_sub(req.stale_s);
        params.retain(|(k, _)| k != "app_id" && k != "timestamp" && k != "sig");
        params.push(("app_id".into(), self.inner.cfg.app_id.clone()));
        params.push(("timestamp".into(), timestamp.to_string()));
        let mut sig = mt::sign(&url, &params, &self.inner.cfg.secret);
        if req.tamper {
            // Flip the first hex digit.
            let first = if sig.starts_with('0') { "1" } else { "0" };
            sig.replace_range(..1, first);
        }
        params.push(("sig".into(), sig));
        if genuine {
            lock(&self.inner.state).pushed(&push);
        }
        if req.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(req.delay_ms)).await;
        }
        let body = mt::encode_form(&params);
        let answers: Vec<(u16, Value)> = if req.concurrent {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..req.repeat {
                let (c, u, b) = (self.inner.client.clone(), url.clone(), body.clone());
                set.spawn(async move { (i, send(&c, &u, b).await) });
            }
            let mut v = set.join_all().await;
            v.sort_by_key(|(i, _)| *i);
            v.into_iter().map(|(_, a)| a).collect()
        } else {
            let mut v = Vec::new();
            for _ in 0..req.repeat {
                v.push(send(&self.inner.client, &url, body.clone()).await);
            }
            v
        };
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        let (status, answer) = answers.into_iter().last().unwrap_or((0, Value::Null));
        let order_id = push.order_id().to_owned();
        tracing::info!(event = %event, order_id, ?statuses, genuine, "push sent");
        lock(&self.inner.pushes).push(SentPush {
            at_ms: unix_ms(),
            event: event.as_str().to_owned(),
            order_id: order_id.clone(),
            genuine,
            statuses: statuses.clone(),
        });
        Ok(PushOutcome {
            event: event.as_str().to_owned(),
            order_id,
            day_seq,
            refund_id,
            url,
            status,
            statuses,
            answer,
            params: params.into_iter().collect(),
        })
    }

    /// The typed push for `req`, with the ids filled in.
    fn build(
        &self,
        req: &PushRequest,
        now_s: i64,
    ) -> Result<(Push, Option<u32>, Option<String>), BadPush> {
        let o = &req.order;
        if let Some(id) = &o.order_id {
            platform_id("order.order_id", id)?;
        }
        if let Some(id) = &o.refund_id {
            platform_id("order.refund_id", id)?;
        }
        let mut st = lock(&self.inner.state);
        let need_order_id = || {
            o.order_id
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| BadPush("order.order_id is required for this event".into()))
        };
        let text = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
        Ok(match req.event {
            PushKind::New => {
                let store = o
                    .store
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| BadPush("order.store is required".into()))?;
                if o.items.is_empty() {
                    return Err(BadPush("order.items: at least one item".into()));
                }
                let order_id = match &o.order_id {
                    Some(id) if !id.is_empty() => id.clone(),
                    _ => format!("{}{:06}", self.inner.id_base, st.next_number()),
                };
                let day_seq = match st.order(&order_id) {
                    Some(known) if known.day_seq > 0 => known.day_seq,
                    // Days as in China (UTC+8).
                    _ => st.next_day_seq(&store, (now_s + 8 * 3600).div_euclid(86_400)),
                };
                let mut original: i64 = 0;
                for i in &o.items {
                    original = i
                        .price
                        .0
                        .checked_mul(i64::from(i.quantity))
                        .and_then(|line| original.checked_add(line))
                        .ok_or_else(|| BadPush("order.items: amounts overflow".into()))?;
                }
                let shipping = o.shipping_fee.unwrap_or_default().0;
                let discount = o.discount.unwrap_or_default().0;
                let receive = original - discount;
                if receive < 0 {
                    return Err(BadPush("order.discount is larger than the items".into()));
                }
                let push = Push::NewOrder(mt::NewOrderPush {
                    order_id,
                    app_poi_code: store,
                    day_seq,
                    ctime: now_s,
                    caution: text(&o.note, ""),
                    recipient_name: text(&o.recipient_name, "测试顾客"),
                    recipient_phone: text(&o.recipient_phone, "13800000000"),
                    recipient_address: text(&o.address, "测试路1号"),
                    shipping_fee_fen: shipping,
                    total_fen: receive + shipping,
                    original_price_fen: original + shipping,
                    poi_receive_amount_fen: receive,
                    items: o
                        .items
                        .iter()
                        .map(|i| mt::PushItem {
                            app_food_code: i.sku.clone(),
                            food_name: text(&i.name, &i.sku),
                            quantity: i.quantity,
                            price_fen: i.price.0,
                            unit: text(&i.unit, "份"),
                        })
                        .collect(),
                    discounts: if discount > 0 {
                        vec![mt::PushDiscount {
                            reduce_fee_fen: discount,
                            remark: "满减优惠".into(),
                        }]
                    } else {
                        Vec::new()
                    },
                });
                (push, Some(day_seq), None)
            }
            PushKind::Cancel => (
                Push::Cancel(mt::CancelPush {
                    order_id: need_order_id()?,
                    reason_code: o.reason_code.unwrap_or(1002),
                    reason: text(&o.reason, "用户取消"),
                }),
                None,
                None,
            ),
            PushKind::RefundApply => {
                let order_id = need_order_id()?;
                let refund_id = match &o.refund_id {
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => format!("{}{:06}", self.inner.id_base, st.next_number()),
                };
                (
                    Push::RefundApply(mt::RefundApplyPush {
                        order_id,
                        refund_id: refund_id.clone(),
                        reason: text(&o.reason, "商品有问题"),
                        money_fen: o.money.map(|m| m.0),
                    }),
                    None,
                    Some(refund_id),
                )
            }
            PushKind::RefundCancel => {
                let order_id = need_order_id()?;
                let refund_id = match &o.refund_id {
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => st.last_refund(&order_id).ok_or_else(|| {
                        BadPush("order.refund_id: the order has no refund to cancel".into())
                    })?,
                };
                (
                    Push::RefundCancel(mt::RefundCancelPush {
                        order_id,
                        refund_id: refund_id.clone(),
                        reason: text(&o.reason, ""),
                    }),
                    None,
                    Some(refund_id),
                )
            }
            PushKind::DeliveryStatus => (
                Push::DeliveryStatus(mt::DeliveryStatusPush {
                    order_id: need_order_id()?,
                    logistics_status: o.logistics_status.unwrap_or(20),
                    courier_name: "测试骑手".into(),
                    courier_phone: "13900000000".into(),
                }),
                None,
                None,
            ),
        })
    }

    /// Handles one call to `/api/v1/{path}`: `(status, body)`, or `None`
    /// when the call is to be dropped.
    fn handle_call(
        &self,
        path: &str,
        host: Option<&str>,
        body: &[u8],
    ) -> (Option<(StatusCode, String)>, Option<Duration>) {
        let now = Instant::now();
        let parsed = mt::parse_form(body);
        let params = parsed.as_ref().map(Vec::as_slice).unwrap_or(&[]);
        let suffix = format!("/api/v1/{path}");
        let sig_ok = mt::verify(
            &format!("{}{suffix}", self.inner.public_url),
            params,
            &self.inner.cfg.secret,
        )
        .is_ok()
            || host.is_some_and(|h| {
                mt::verify(
                    &format!("http://{h}{suffix}"),
                    params,
                    &self.inner.cfg.secret,
                )
                .is_ok()
            });
        let mut rec = Received {
            seq: 0,
            path: path.to_owned(),
            params: params.iter().filter(|(k, _)| k != "sig").cloned().collect(),
            order_id: mt::param(params, "order_id").map(str::to_owned),
            at_ms: unix_ms(),
            sig_ok,
            fault: false,
            answered: None,
            ok: false,
            error: None,
        };
        let mut st = lock(&self.inner.state);
        let fault = st.take_fault(now);
        if fault.drop {
            rec.fault = true;
            rec.error = Some("dropped (fault)".into());
            st.record(rec);
            return (None, fault.delay);
        }
        if let Some(code) = fault.status {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            rec.fault = true;
            rec.answered = Some(status.as_u16());
            rec.error = Some(format!("fault: status {code}"));
            st.record(rec);
            return (
                Some((status, mt::answer_ng(i64::from(code), "simulated fault"))),
                fault.delay,
            );
        }
        if !mt::CALL_PATHS.contains(&path) {
            rec.answered = Some(404);
            rec.error = Some("unknown path".into());
            st.record(rec);
            return (
                Some((
                    StatusCode::NOT_FOUND,
                    mt::answer_ng(mt::ERR_PARAM, "unknown path"),
                )),
                fault.delay,
            );
        }
        let answer: state::Answer = (|| {
            let params = parsed
                .as_ref()
                .map_err(|e| (mt::ERR_PARAM, e.to_string()))?;
            if mt::param(params, "app_id") != Some(self.inner.cfg.app_id.as_str()) {
                return Err((mt::ERR_APP_ID, "app_id不存在".into()));
            }
            mt::check_timestamp(
                mt::param(params, "timestamp").unwrap_or(""),
                unix_s(),
                self.inner.cfg.window_s,
            )
            .map_err(|e| (mt::ERR_TIMESTAMP, format!("timestamp: {e}")))?;
            if !sig_ok {
                return Err((mt::ERR_SIG, "签名验证错误".into()));
            }
            let call = Call::parse(path, params).map_err(|e| match e {
                mt::CallError::Missing(_) => (mt::ERR_MISSING, e.to_string()),
                _ => (mt::ERR_PARAM, e.to_string()),
            })?;
            st.apply(&call)
        })();
        rec.answered = Some(200);
        let body = match answer {
            Ok(()) => {
                rec.ok = true;
                mt::ANSWER_OK.to_owned()
            }
            Err((code, msg)) => {
                rec.error = Some(format!("{code} {msg}"));
                mt::answer_ng(code, &msg)
            }
        };
        tracing::info!(path, order_id = ?rec.order_id, ok = rec.ok, error = ?rec.error, "platform call");
        st.record(rec);
        (Some((StatusCode::OK, body)), fault.delay)
    }
}

/// Longest platform id (order, refund): the platform's ids are numbers.
pub const MAX_PLATFORM_ID_DIGITS: usize = 32;

/// The platform's order and refund ids are numbers (`order_id` is a long,
/// `wm_order_id_view` its display form): an id given on the control API must
/// be 1 to [`MAX_PLATFORM_ID_DIGITS`] digits (empty means "make one up").
fn platform_id(field: &str, id: &str) -> Result<(), BadPush> {
    if id.is_empty()
        || (id.len() <= MAX_PLATFORM_ID_DIGITS && id.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(BadPush(format!(
            "{field} {id:?}: the platform's ids are 1 to {MAX_PLATFORM_ID_DIGITS} digits \
             (send anything else with `raw`)"
        )))
    }
}

/// One `detail` entry as the platform writes it: numbers for amounts and
/// counts, and the item fields the gateway does not read (`sku_id`, boxes,
/// discount ratio, spec and properties).
#[derive(Serialize)]
struct PlatformItem<'a> {
    app_food_code: &'a str,
    food_name: &'a str,
    sku_id: &'a str,
    quantity: u32,
    price: Box<serde_json::value::RawValue>,
    box_num: u32,
    box_price: u32,
    unit: &'a str,
    food_discount: u32,
    spec: &'a str,
    food_property: &'a str,
}

/// One `extras` entry as the platform writes it (`type` 2: money off).
#[derive(Serialize)]
struct PlatformDiscount<'a> {
    reduce_fee: Box<serde_json::value::RawValue>,
    remark: &'a str,
    r#type: u32,
}

fn platform_detail(items: &[mt::PushItem]) -> String {
    let v: Vec<PlatformItem<'_>> = items
        .iter()
        .map(|i| PlatformItem {
            app_food_code: &i.app_food_code,
            food_name: &i.food_name,
            sku_id: &i.app_food_code,
            quantity: i.quantity,
            price: yuan_number(i.price_fen),
            box_num: 0,
            box_price: 0,
            unit: &i.unit,
            food_discount: 1,
            spec: "",
            food_property: "",
        })
        .collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

fn platform_discounts(discounts: &[mt::PushDiscount]) -> String {
    let v: Vec<PlatformDiscount<'_>> = discounts
        .iter()
        .map(|d| PlatformDiscount {
            reduce_fee: yuan_number(d.reduce_fee_fen),
            remark: &d.remark,
            r#type: 2,
        })
        .collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

/// Fen as a JSON number of yuan with two decimals (`1250` → `12.50`),
/// written from its text: no floats.
fn yuan_number(fen: i64) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(mt::format_yuan(fen)).unwrap_or_default()
}

/// Parameters the real platform pushes that the gateway does not read:
/// sent so that a receiver meets the push as the platform writes it.
fn platform_extras(push: &Push, now_s: i64) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: String| v.push((k.to_owned(), val));
    match push {
        Push::NewOrder(o) => {
            // The display id: in the real pushes it differs from order_id.
            put("wm_order_id_view", format!("1{}", o.order_id));
            put("wm_poi_name", format!("测试门店 {}", o.app_poi_code));
            put("wm_poi_address", "测试路1号".into());
            put("wm_poi_phone", "4009208801".into());
            put("wm_poi_id", "1000001".into());
            put("city_id", "999999".into());
            // 2: pushed to the store (1 submitted, 4 confirmed, 8 done, 9 cancelled).
            put("status", "2".into());
            put("utime", o.ctime.to_string());
            // 0: deliver as soon as possible.
            put("delivery_time", "0".into());
            // 2: paid online (1: cash on delivery).
            put("pay_type", "2".into());
            put("is_third_shipping", "0".into());
            put("has_invoiced", "0".into());
            put("invoice_title", String::new());
            put("shipper_phone", String::new());
            put("latitude", "31.143873".into());
            put("longitude", "121.175621".into());
        }
        Push::RefundApply(_) => put("notify_type", "apply".into()),
        Push::RefundCancel(_) => put("notify_type", "cancelRefund".into()),
        Push::DeliveryStatus(_) => put("time", now_s.to_string()),
        Push::Cancel(_) => {}
    }
    v
}

async fn send(client: &reqwest::Client, url: &str, body: String) -> (u16, Value) {
    let res = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, answer)
        }
        Err(e) => (0, json!({ "error": e.to_string() })),
    }
}

// ------------------------------------------------------------ handlers

fn json_answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn problem(code: &str, detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "code": code,
            "detail": detail,
        })
        .to_string(),
    )
        .into_response()
}

async fn api_call(
    State(sim): State<PlatformSim>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let (answer, delay) = sim.handle_call(&path, host, &body);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match answer {
        Some((status, body)) => json_answer(status, body),
        None => {
            let mut closing = sim.inner.closing.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(SILENCE) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn post_push(State(sim): State<PlatformSim>, body: Bytes) -> Response {
    let req: PushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem("invalid_push", &e.to_string()),
    };
    match sim.push(req).await {
        Ok(o) => Json(o).into_response(),
        Err(e) => problem("invalid_push", &e.0),
    }
}

#[derive(Deserialize)]
struct ReceivedQuery {
    ok: Option<bool>,
    path: Option<String>,
    order_id: Option<String>,
}

async fn get_received(
    State(sim): State<PlatformSim>,
    Query(q): Query<ReceivedQuery>,
) -> Json<Vec<Received>> {
    let all = sim.received();
    Json(
        all.into_iter()
            .filter(|r| q.ok.is_none_or(|ok| r.ok == ok))
            .filter(|r| q.path.as_ref().is_none_or(|p| r.path == *p))
            .filter(|r| {
                q.order_id
                    .as_ref()
                    .is_none_or(|id| r.order_id.as_ref() == Some(id))
            })
            .collect(),
    )
}

async fn delete_received(State(sim): State<PlatformSim>) -> StatusCode {
    sim.clear_received();
    StatusCode::NO_CONTENT
}

async fn put_faults(State(sim): State<PlatformSim>, body: Bytes) -> Response {
    let f: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return problem("invalid_faults", &e.to_string()),
    };
    match sim.set_faults(f) {
        Ok(()) => get_faults(State(sim)).await.into_response(),
        Err(e) => problem("invalid_faults", &e.0),
    }
}

async fn get_faults(State(sim): State<PlatformSim>) -> Json<Value> {
    let active = lock(&sim.inner.state).faults(Instant::now());
    Json(json!({ "active": active }))
}

async fn delete_faults(State(sim): State<PlatformSim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn get_orders(State(sim): State<PlatformSim>) -> Json<Value> {
    Json(json!({ "orders": sim.orders(), "foods": sim.foods() }))
}

async fn get_pushes(State(sim): State<PlatformSim>) -> Json<Vec<SentPush>> {
    Json(sim.pushes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sim-test-secret";

    /// A simulator whose gateway is a closed port: pushes are built,
    /// signed and answered with status 0.
    async fn sim() -> PlatformSim {
        PlatformSim::start(PlatformConfig::new("http://127.0.0.1:9", "app-1", SECRET))
            .await
            .unwrap()
    }

    fn form(out: &PushOutcome) -> Vec<(String, String)> {
        out.params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[tokio::test]
    async fn refuses_ids_the_platform_never_sends() {
        let sim = sim().await;
        for id in [
            "MT-1001",
            "12a",
            " 1",
            &"9".repeat(MAX_PLATFORM_ID_DIGITS + 1),
        ] {
            let mut req = PushRequest::new_order("s1", vec![ItemSpec::new("A", "a", 1, 100)]);
            req.order.order_id = Some(id.to_owned());
            let e = sim.push(req).await.unwrap_err();
            assert!(e.0.contains("1 to 32 digits"), "{id}: {e}");
            let e = sim
                .push(PushRequest::event_on(PushKind::Cancel, id))
                .await
                .unwrap_err();
            assert!(e.0.contains("order.order_id"), "{id}: {e}");
        }
        let mut req = PushRequest::event_on(PushKind::RefundApply, "123");
        req.order.refund_id = Some("r1".into());
        assert!(
            sim.push(req)
                .await
                .unwrap_err()
                .0
                .contains("order.refund_id")
        );
        // Nothing was sent.
        assert!(sim.pushes().is_empty());
        sim.stop();
    }

    #[tokio::test]
    async fn every_push_it_makes_passes_the_gateways_parser_and_signature() {
        let sim = sim().await;
        let mut req = PushRequest::new_order(
            "s1",
            vec![
                ItemSpec::new("A", "面", 2, 1250),
                ItemSpec::new("B", "茶", 1, 60),
            ],
        );
        req.order.discount = Some(Yuan(300));
        let new = sim.push(req).await.unwrap();
        // Amounts are JSON numbers with two decimals, as the platform writes them.
        let detail = &new.params["detail"];
        assert!(
            detail.starts_with(
                r#"[{"app_food_code":"A","food_name":"面","sku_id":"A","quantity":2,"price":12.50,"#
            ),
            "{detail}"
        );
        assert_eq!(
            new.params["extras"],
            r#"[{"reduce_fee":3.00,"remark":"满减优惠","type":2}]"#
        );
        let id = new.order_id.clone();
        assert!(
            !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        let p = form(&new);
        for k in [
            "wm_order_id_view",
            "status",
            "utime",
            "pay_type",
            "poi_receive_detail",
        ] {
            assert!(mt::param(&p, k).is_some(), "new_order lacks {k}");
        }
        assert_eq!(mt::param(&p, "poi_receive_amount"), None);
        let mut outs = vec![new];
        for kind in [
            PushKind::RefundApply,
            PushKind::RefundCancel,
            PushKind::DeliveryStatus,
            PushKind::Cancel,
        ] {
            outs.push(sim.push(PushRequest::event_on(kind, &id)).await.unwrap());
        }
        for out in &outs {
            let p = form(out);
            assert_eq!(mt::verify(&out.url, &p, SECRET), Ok(()), "{}", out.event);
            assert_eq!(mt::param(&p, "app_id"), Some("app-1"));
            let ts = mt::param(&p, "timestamp").unwrap();
            assert!(mt::check_timestamp(ts, unix_s(), 60).is_ok(), "{ts}");
            let push = Push::parse(&out.event, &p)
                .unwrap_or_else(|e| panic!("{}: the gateway would refuse it: {e}", out.event));
            assert_eq!(push.order_id(), id);
            if let Push::NewOrder(o) = push {
                // What the store receives travels as whole fen in poi_receive_detail.
                assert_eq!(o.poi_receive_amount_fen, 2260);
                assert_eq!(o.total_fen, 2260);
                assert_eq!(o.items[0].price_fen, 1250);
                assert_eq!(o.discounts[0].reduce_fee_fen, 300);
            }
        }
        let p = form(&outs[1]);
        assert_eq!(mt::param(&p, "notify_type"), Some("apply"));
        assert_eq!(
            mt::param(&form(&outs[2]), "notify_type"),
            Some("cancelRefund")
        );
        let ds = form(&outs[3]);
        assert!(mt::param(&ds, "dispatcher_name").is_some());
        assert!(mt::param(&ds, "time").is_some());
        sim.stop();
    }

    fn call(sim: &PlatformSim, call: &Call) -> Value {
        let params = call.signed_params(&sim.url(), "app-1", SECRET, unix_s());
        let body = mt::encode_form(&params);
        let (answer, _) = sim.handle_call(call.path(), None, body.as_bytes());
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str(&body).unwrap()
    }

    #[tokio::test]
    async fn api_answers_in_the_platforms_shape() {
        let sim = sim().await;
        let confirm = Call::Confirm {
            order_id: "100200300".into(),
        };
        assert_eq!(call(&sim, &confirm), json!({"data": "ok"}));
        assert_eq!(
            call(&sim, &confirm),
            json!({"data": "ng", "error": {"code": 808, "msg": "操作失败,订单已经确认过了"}})
        );
        // A malformed order id is a 700, a missing one a 701.
        let body = mt::encode_form(
            &mt::Call::Confirm {
                order_id: "MT-1".into(),
            }
            .signed_params(&sim.url(), "app-1", SECRET, unix_s()),
        );
        let (a, _) = sim.handle_call("order/confirm", None, body.as_bytes());
        let v: Value = serde_json::from_str(&a.unwrap().1).unwrap();
        assert_eq!(v["error"]["code"], 700, "{v}");
        let missing = mt::encode_form(&[
            ("app_id".to_owned(), "app-1".to_owned()),
            ("timestamp".to_owned(), unix_s().to_string()),
        ]);
        let url = mt::api_url(&sim.url(), "order/confirm");
        let mut p = mt::parse_form(missing.as_bytes()).unwrap();
        p.push(("sig".into(), mt::sign(&url, &p, SECRET)));
        let (a, _) = sim.handle_call("order/confirm", None, mt::encode_form(&p).as_bytes());
        let v: Value = serde_json::from_str(&a.unwrap().1).unwrap();
        assert_eq!(v["error"]["code"], 701, "{v}");
        // Wrong app id, bad signature.
        let wrong = mt::encode_form(&confirm.signed_params(&sim.url(), "app-2", SECRET, unix_s()));
        let (a, _) = sim.handle_call("order/confirm", None, wrong.as_bytes());
        let v: Value = serde_json::from_str(&a.unwrap().1).unwrap();
        assert_eq!(v["error"]["code"], 702, "{v}");
        let forged = mt::encode_form(&confirm.signed_params(&sim.url(), "app-1", "x", unix_s()));
        let (a, _) = sim.handle_call("order/confirm", None, forged.as_bytes());
        let v: Value = serde_json::from_str(&a.unwrap().1).unwrap();
        assert_eq!(v["error"]["code"], 703, "{v}");
        sim.stop();
    }
}
