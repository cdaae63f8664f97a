//! `hw-sim payments`: a WeChat-Pay-v2-shaped provider. It serves the real
//! paths (`/pay/micropay`, `/pay/orderquery`, `/secapi/pay/reverse`,
//! `/secapi/pay/refund`, `/pay/refundquery`) in XML, checks every request's
//! signature, signs its answers, and keeps a ledger (see docs/simulators.md
//! for what it follows and what it leaves out). Beside them, a control API:
//! `PUT /scenario` picks what happens to a code (or to every code), and
//! `GET /ledger` shows where the money is.
//!
//! The same process can also be Alipay (`POST /gateway.do`, see
//! [`alipay`]), over the same books and scenarios, when given its keys.
//!
//! Plain HTTP by default. With `--tls-dir` it serves HTTPS with
//! certificates made at start (see [`crate::tls`]) and writes them out; with
//! `--require-client-cert` the `/secapi/` paths, as at the real service,
//! answer only a caller that presented a client certificate. Answers carry
//! no `sign_type`: they are signed with the type of the request.

mod alipay;
mod ledger;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use proto::wechatpay::{self as wx, Params, RefundStatus, SignType, TradeState, err};
use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tls::ClientCert;

pub use alipay::AlipayCredentials;
use ledger::{Ledger, MicropayAnswer, RefundAnswer, ReverseAnswer};
pub use ledger::{LedgerEntry, Outcome, RefundOutcome, RefundRecord, Scenario};

/// How long a `no_answer` micropay holds the connection at most.
const SILENCE: Duration = Duration::from_secs(300);
/// The size of a flooded answer ([`Provider::flood_answers`]).
const FLOOD_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve the provider and its control API on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "wx2421b1c4370ec43b")]
    pub appid: String,
    #[arg(long, default_value = "10000100")]
    pub mch_id: String,
    /// The merchant's API key both sides sign with.
    #[arg(long, env = "HW_SIM_WECHATPAY_KEY")]
    pub key: String,
    /// Alipay's `app_id` of the merchant app; Alipay is served only with
    /// this and both keys below.
    #[arg(long, env = "HW_SIM_ALIPAY_APP_ID")]
    pub alipay_app_id: Option<String>,
    /// PEM file: the app's public key, which requests must verify with.
    #[arg(long, env = "HW_SIM_ALIPAY_APP_PUBLIC_KEY")]
    pub alipay_app_public_key: Option<std::path::PathBuf>,
    /// PEM file: the simulator's own private key, which signs answers.
    #[arg(long, env = "HW_SIM_ALIPAY_PRIVATE_KEY")]
    pub alipay_private_key: Option<std::path::PathBuf>,
    /// Serve HTTPS: a CA, a server certificate for 127.0.0.1/localhost and
    /// a client CA with one client certificate are made at start and
    /// written here as PEM (`ca.pem`, `client.pem`, `client-key.pem`, …).
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// `/secapi/` (reverse, refund) needs a client certificate; needs
    /// `--tls-dir`.
    #[arg(long, requires = "tls_dir")]
    pub require_client_cert: bool,
    /// PEM file of the CA client certificates must chain to, instead of the
    /// one made at start.
    #[arg(long, requires = "tls_dir")]
    pub client_ca: Option<std::path::PathBuf>,
}

impl Args {
    /// Alipay's setup from the flags: `None` when none is given, an error
    /// when only some are, or a key file cannot be read.
    pub fn alipay(&self) -> anyhow::Result<Option<AlipayCredentials>> {
        use anyhow::Context;
        match (
            &self.alipay_app_id,
            &self.alipay_app_public_key,
            &self.alipay_private_key,
        ) {
            (None, None, None) => Ok(None),
            (Some(app_id), Some(public), Some(private)) => {
                let read = |path: &std::path::Path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))
                };
                Ok(Some(AlipayCredentials {
                    app_id: app_id.clone(),
                    app_public_key: proto::alipay::PublicKey::from_pem(&read(public)?)
                        .context("--alipay-app-public-key")?,
                    private_key: proto::alipay::PrivateKey::from_pem(&read(private)?)
                        .context("--alipay-private-key")?,
                }))
            }
            _ => anyhow::bail!(
                "Alipay needs --alipay-app-id, --alipay-app-public-key and --alipay-private-key together"
            ),
        }
    }
}

/// Who the simulated provider is, and the key it shares with the merchant.
#[derive(Clone)]
pub struct Credentials {
    pub appid: String,
    pub mch_id: String,
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Runs the simulator until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let alipay = args.alipay()?;
    let with_alipay = alipay.is_some();
    let provider = Provider::with_alipay(
        Credentials {
            appid: args.appid,
            mch_id: args.mch_id,
            key: args.key,
        },
        alipay,
    );
    let listener = TcpListener::bind(args.listen).await?;
    let tls = match &args.tls_dir {
        None => None,
        Some(dir) => {
            use anyhow::Context;
            let pki = crate::tls::TestPki::generate()?;
            pki.write_to(dir)?;
            let client_ca = match &args.client_ca {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => pki.client_ca_pem.clone(),
            };
            println!("certificates: {}", dir.display());
            Some(pki.server_config(Some(&client_ca))?)
        }
    };
    provider.require_client_cert(args.require_client_cert);
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("payment provider: {scheme}://{}", listener.local_addr()?);
    if with_alipay {
        println!("alipay: {scheme}://{}/gateway.do", listener.local_addr()?);
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tls {
        None => provider.serve(listener, shutdown).await?,
        Some(config) => provider.serve_tls(listener, config, shutdown).await?,
    }
    Ok(())
}

pub struct Provider {
    creds: Credentials,
    /// `None`: Alipay is off.
    alipay: Option<alipay::AlipayFace>,
    ledger: Mutex<Ledger>,
    closing: watch::Sender<bool>,
    /// `/secapi/` answers only callers with a client certificate.
    require_client_cert: AtomicBool,
    /// A test hook: WeChat answers signed with this type, not the request's.
    answer_sign_type: Mutex<Option<SignType>>,
    /// A test hook: this many next WeChat answers are 10 MB long.
    flood: AtomicU32,
}

impl Provider {
    /// WeChat Pay only.
    pub fn new(creds: Credentials) -> Arc<Provider> {
        Provider::with_alipay(creds, None)
    }

    /// WeChat Pay, and Alipay when given its credentials, on shared books.
    pub fn with_alipay(creds: Credentials, alipay: Option<AlipayCredentials>) -> Arc<Provider> {
        Arc::new(Provider {
            creds,
            alipay: alipay.map(|creds| alipay::AlipayFace {
                creds,
                sign_with: Mutex::new(None),
            }),
            ledger: Mutex::new(Ledger::default()),
            closing: watch::Sender::new(false),
            require_client_cert: AtomicBool::new(false),
            answer_sign_type: Mutex::new(None),
            flood: AtomicU32::new(0),
        })
    }

    /// `/secapi/` (reverse, refund) refuses a caller without a client
    /// certificate (always so over plain HTTP) while `on`.
    pub fn require_client_cert(&self, on: bool) {
        self.require_client_cert.store(on, Ordering::Relaxed);
    }

    /// A test hook: WeChat answers are signed with `t` whatever the request
    /// used, until called again with `None`.
    pub fn wechat_sign_answers_with(&self, t: Option<SignType>) {
        *self
            .answer_sign_type
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// A test hook: the next `count` WeChat answers (after the books have
    /// moved) are 10 MB of padding, streamed without a length.
    pub fn flood_answers(&self, count: u32) {
        self.flood.store(count, Ordering::Relaxed);
    }

    /// A test hook: Alipay answers are signed with `key` (a forger's) until
    /// called again with `None`.
    pub fn alipay_sign_with(&self, key: Option<proto::alipay::PrivateKey>) {
        if let Some(face) = &self.alipay {
            *face.sign_with.lock().unwrap_or_else(|p| p.into_inner()) = key;
        }
    }

    fn books(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves the books as they were.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_scenario(&self, s: Scenario) {
        self.books().set_scenario(s);
    }

    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.books().entries(Instant::now())
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(wx::PATH_MICROPAY, post(micropay))
            .route(wx::PATH_ORDERQUERY, post(orderquery))
            .route(wx::PATH_REVERSE, post(reverse))
            .route(wx::PATH_REFUND, post(refund))
            .route(wx::PATH_REFUNDQUERY, post(refundquery))
            .route(
                proto::alipay::PATH_GATEWAY,
                post(alipay::gateway).get(alipay::gateway),
            )
            .route("/alipay/signing_key", put(alipay::put_signing_key))
            .route("/scenario", put(put_scenario))
            .route("/ledger", get(get_ledger))
            .with_state(self)
    }

    /// Serves on `listener` until `shutdown` resolves; silent calls are then
    /// dropped so the shutdown does not wait for them.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let closing = self.closing.clone();
        axum::serve(listener, Arc::clone(&self).router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = closing.send(true);
            })
            .await
    }

    /// The same over TLS with `config` (see [`crate::tls::TestPki`]).
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        config: Arc<tokio_rustls::rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let closing = self.closing.clone();
        crate::tls::serve(listener, config, Arc::clone(&self).router(), async move {
            shutdown.await;
            let _ = closing.send(true);
        })
        .await
    }

    /// The answer to a `/secapi/` call without the certificate it needs
    /// (`return_code=FAIL`, as the real service says it); `None`: go on.
    fn check_client_cert(&self, cert: Option<&crate::tls::ClientCert>) -> Option<Response> {
        if self.require_client_cert.load(Ordering::Relaxed) && cert.is_none_or(|c| !c.0) {
            tracing::warn!("a /secapi/ call without a client certificate");
            return Some(self.fail_return("证书错误: a client certificate is required"));
        }
        None
    }

    /// Checks the envelope every call shares: parses, our appid and mch_id,
    /// a nonce, a valid signature. `Err` is the answer to send back.
    fn open(&self, body: &[u8]) -> Result<(Params, SignType), Refused> {
        let params = wx::decode(body).map_err(|e| Refused::Return(e.0))?;
        let sign_type = SignType::of(&params).ok_or_else(|| Refused::Return("sign_type".into()))?;
        if params.get("appid") != Some(&self.creds.appid) {
            return Err(Refused::Return("appid不存在".into()));
        }
        if params.get("mch_id") != Some(&self.creds.mch_id) {
            return Err(Refused::Return("mch_id不存在".into()));
        }
        if params
            .get("nonce_str")
            .is_none_or(|n| n.is_empty() || n.len() > 32)
        {
            return Err(Refused::Return("nonce_str".into()));
        }
        if !wx::verify(&params, &self.creds.key) {
            tracing::warn!("request with a bad signature");
            return Err(Refused::Return("签名错误".into()));
        }
        Ok((params, sign_type))
    }

    fn refused(&self, r: Refused) -> Response {
        match r {
            Refused::Return(msg) => self.fail_return(&msg),
            Refused::Param(t) => self.answer(t, Some(err::PARAM_ERROR), Params::new()),
        }
    }

    /// `return_code=FAIL`: the call itself was refused (unsigned).
    fn fail_return(&self, msg: &str) -> Response {
        let mut p = Params::new();
        p.insert("return_code".into(), wx::FAIL.into());
        p.insert("return_msg".into(), msg.into());
        xml(wx::encode(&p))
    }

    /// A signed business answer: `result_code` SUCCESS, or FAIL with
    /// `err_code`. Signed with the request's type, which it does not name.
    fn answer(&self, sign_type: SignType, fail: Option<&str>, fields: Params) -> Response {
        match fail {
            None => self.signed(sign_type, None, fields),
            Some(code) => self.signed(sign_type, Some((code, describe(code))), fields),
        }
    }

    /// A signed FAIL with `err_code` `code` described as `des`.
    fn answer_described(
        &self,
        sign_type: SignType,
        code: &str,
        des: &str,
        fields: Params,
    ) -> Response {
        self.signed(sign_type, Some((code, des)), fields)
    }

    fn signed(&self, sign_type: SignType, fail: Option<(&str, &str)>, fields: Params) -> Response {
        let mut p = fields;
        p.insert("return_code".into(), wx::SUCCESS.into());
        p.insert("return_msg".into(), "OK".into());
        p.insert("appid".into(), self.creds.appid.clone());
        p.insert("mch_id".into(), self.creds.mch_id.clone());
        p.insert("nonce_str".into(), nonce());
        match fail {
            None => {
                p.insert("result_code".into(), wx::SUCCESS.into());
            }
            Some((code, des)) => {
                p.insert("result_code".into(), wx::FAIL.into());
                p.insert("err_code".into(), code.into());
                p.insert("err_code_des".into(), des.into());
            }
        }
        let sign_type = self
            .answer_sign_type
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(sign_type);
        let sign = wx::sign(&p, &self.creds.key, sign_type);
        p.insert("sign".into(), sign);
        if self
            .flood
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return flooded();
        }
        xml(wx::encode(&p))
    }
}

/// [`FLOOD_BYTES`] of XML whitespace, in chunks and without a length.
fn flooded() -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunks = futures::stream::iter(
        (0..FLOOD_BYTES / CHUNK).map(|_| Ok::<_, io::Error>(Bytes::from(vec![b' '; CHUNK]))),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn describe(code: &str) -> &'static str {
    match code {
        err::USERPAYING => "需要用户输入支付密码",
        err::SYSTEMERROR => "系统超时",
        err::NOTENOUGH => "余额不足",
        err::AUTH_CODE_INVALID => "授权码检验错误",
        err::ORDERPAID => "订单已支付",
        err::ORDERREVERSED => "订单已撤销",
        err::ORDERCLOSED => "订单已关闭",
        err::ORDERNOTEXIST => "此交易订单号不存在",
        err::TRADE_ERROR => "交易错误",
        err::PARAM_ERROR => "参数错误",
        err::INVALID_REQUEST => "refund_fee大于可退金额",
        err::ERROR => "订单已全额退款",
        err::REFUND_FEE_MISMATCH => "订单金额或退款金额与之前请求不一致，请核实后再试",
        err::REFUNDNOTEXIST => "not exist",
        INVALID_TRANSACTIONID => "无效transaction_id",
        _ => "错误",
    }
}

/// `err_code_des` of a refund's refusal: NOTENOUGH there is the merchant's
/// balance, not the customer's.
fn describe_refund(code: &str) -> &'static str {
    match code {
        err::NOTENOUGH => "基本账户余额不足，请充值后重新发起",
        other => describe(other),
    }
}

/// `trade_state_desc` of orderquery.
fn trade_state_desc(s: TradeState) -> &'static str {
    match s {
        TradeState::Success => "支付成功",
        TradeState::Refund => "转入退款",
        TradeState::NotPay => "未支付",
        TradeState::Closed => "已关闭",
        TradeState::Revoked => "已撤销（付款码支付）",
        TradeState::UserPaying => "用户支付中（付款码支付）",
        TradeState::PayError => "支付失败(其他原因，如银行返回失败)",
    }
}

/// Why a call is answered without touching the books.
enum Refused {
    /// `return_code=FAIL` with this message (bad envelope or signature).
    Return(String),
    /// A signed PARAM_ERROR.
    Param(SignType),
}

/// Refund, refund query: no order has this `transaction_id`.
const INVALID_TRANSACTIONID: &str = "INVALID_TRANSACTIONID";

/// Longest value of a parameter this face reads.
const MAX_VALUE: usize = 128;

/// A required parameter.
fn required<'a>(p: &'a Params, name: &str, t: SignType) -> Result<&'a str, Refused> {
    optional(p, name, t)?.ok_or(Refused::Param(t))
}

/// An optional parameter: absent or empty is `None`.
fn optional<'a>(p: &'a Params, name: &str, t: SignType) -> Result<Option<&'a str>, Refused> {
    match p.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) if v.len() <= MAX_VALUE => Ok(Some(v)),
        Some(_) => Err(Refused::Param(t)),
    }
}

/// A required positive amount in fen.
fn fee(p: &Params, name: &str, t: SignType) -> Result<i64, Refused> {
    required(p, name, t)?
        .parse::<i64>()
        .ok()
        .filter(|f| *f > 0)
        .ok_or(Refused::Param(t))
}

/// The order a call names. The real API takes `transaction_id` or
/// `out_trade_no`, `transaction_id` first when both are given.
#[derive(Debug, Clone)]
enum Named {
    Transaction(String),
    OutTradeNo(String),
}

impl Named {
    fn of(p: &Params, t: SignType) -> Result<Named, Refused> {
        match (
            optional(p, "transaction_id", t)?,
            optional(p, "out_trade_no", t)?,
        ) {
            (Some(id), _) => Ok(Named::Transaction(id.to_owned())),
            (None, Some(no)) => Ok(Named::OutTradeNo(no.to_owned())),
            (None, None) => Err(Refused::Param(t)),
        }
    }

    /// The `out_trade_no` the books know it by, if they know it.
    fn resolve(&self, books: &Ledger) -> Option<String> {
        match self {
            Named::Transaction(id) => books.out_trade_no_of(id),
            Named::OutTradeNo(no) => Some(no.clone()),
        }
    }
}

/// `at` (an instant of this process) as China wall time (UTC+8), from the
/// system clock.
fn china_time(at: Instant) -> ChinaTime {
    let (now_i, now_s) = (Instant::now(), SystemTime::now());
    let wall = if at <= now_i {
        now_s.checked_sub(now_i - at)
    } else {
        now_s.checked_add(at - now_i)
    }
    .unwrap_or(now_s);
    let unix = wall
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    ChinaTime::of_unix(unix)
}

/// A moment as a wall clock in China reads it (UTC+8, no DST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChinaTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

impl ChinaTime {
    fn of_unix(unix_s: i64) -> ChinaTime {
        let local = unix_s.saturating_add(8 * 3600);
        let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        ChinaTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
        }
    }

    /// `yyyyMMddHHmmss`, as `time_end`.
    fn compact(&self) -> String {
        let ChinaTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = self;
        format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}")
    }

    /// `yyyy-MM-dd HH:mm:ss`, as `refund_success_time_$n`.
    fn dashed(&self) -> String {
        let ChinaTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = self;
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
    }
}

/// What micropay and orderquery say of a paid charge: every field the v2
/// documentation marks as always returned.
fn paid_fields(c: &ledger::Charge) -> Params {
    let mut p = Params::new();
    p.insert("out_trade_no".into(), c.out_trade_no.clone());
    p.insert("transaction_id".into(), c.transaction_id.clone());
    p.insert("total_fee".into(), c.total_fee.to_string());
    // No coupons here: the customer paid all of it in cash.
    p.insert("cash_fee".into(), c.total_fee.to_string());
    p.insert("fee_type".into(), "CNY".into());
    p.insert("trade_type".into(), "MICROPAY".into());
    p.insert("bank_type".into(), BANK_TYPE.into());
    p.insert("is_subscribe".into(), "N".into());
    p.insert("openid".into(), OPENID.into());
    p.insert(
        "time_end".into(),
        china_time(c.paid_at.unwrap_or(c.created)).compact(),
    );
    p
}

/// The customer every charge comes from.
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
/// What the customer paid with (`OTHERS`: not a bank card).
const BANK_TYPE: &str = "OTHERS";
/// Where a refund went: the customer's WeChat balance.
const REFUND_RECV_ACCOUNT: &str = "支付用户零钱";

async fn micropay(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    let fields = sim.open(&body).and_then(|(p, t)| {
        Ok((
            required(&p, "out_trade_no", t)?.to_owned(),
            required(&p, "auth_code", t)?.to_owned(),
            fee(&p, "total_fee", t)?,
            required(&p, "body", t).map(|_| t)?,
        ))
    });
    let (out_trade_no, auth_code, total_fee, t) = match fields {
        Ok(v) => v,
        Err(r) => return sim.refused(r),
    };
    let answer = sim
        .books()
        .micropay(&out_trade_no, &auth_code, total_fee, Instant::now());
    tracing::info!(out_trade_no, code = %wx::mask(&auth_code), total_fee, ?answer, "micropay");
    match answer {
        MicropayAnswer::Paid(c) => sim.answer(t, None, paid_fields(&c)),
        MicropayAnswer::Fail(code) => sim.answer(t, Some(code), Params::new()),
        MicropayAnswer::Silence => {
            let mut closing = sim.closing.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(SILENCE) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
            (StatusCode::GATEWAY_TIMEOUT, "").into_response()
        }
    }
}

async fn orderquery(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    let fields = sim
        .open(&body)
        .and_then(|(p, t)| Ok((Named::of(&p, t)?, t)));
    let (named, t) = match fields {
        Ok(v) => v,
        Err(r) => return sim.refused(r),
    };
    let found = {
        let mut books = sim.books();
        named
            .resolve(&books)
            .and_then(|no| books.query(&no, Instant::now()))
    };
    match found {
        None => sim.answer(t, Some(err::ORDERNOTEXIST), Params::new()),
        Some(c) => {
            // As the documentation says: the payment's fields only once
            // money moved; otherwise the number and the state.
            let mut f = if matches!(c.state, TradeState::Success | TradeState::Refund) {
                paid_fields(&c)
            } else {
                let mut f = Params::new();
                f.insert("out_trade_no".into(), c.out_trade_no.clone());
                f
            };
            f.insert("trade_state".into(), c.state.as_str().into());
            f.insert("trade_state_desc".into(), trade_state_desc(c.state).into());
            sim.answer(t, None, f)
        }
    }
}

async fn reverse(
    State(sim): State<Arc<Provider>>,
    cert: Option<Extension<ClientCert>>,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.check_client_cert(cert.as_deref()) {
        return r;
    }
    let fields = sim
        .open(&body)
        .and_then(|(p, t)| Ok((Named::of(&p, t)?, t)));
    let (named, t) = match fields {
        Ok(v) => v,
        Err(r) => return sim.refused(r),
    };
    let answer = {
        let mut books = sim.books();
        // An unknown out_trade_no is reversed (its number closed); an
        // unknown transaction_id names nothing.
        named
            .resolve(&books)
            .map(|no| (books.reverse(&no, Instant::now()), no))
    };
    let Some((answer, out_trade_no)) = answer else {
        return sim.answer(t, Some(err::ORDERNOTEXIST), Params::new());
    };
    tracing::info!(out_trade_no, ?answer, "reverse");
    let mut f = Params::new();
    match answer {
        ReverseAnswer::Done => {
            f.insert("recall".into(), "N".into());
            sim.answer(t, None, f)
        }
        ReverseAnswer::Fail { code, recall } => {
            f.insert("recall".into(), if recall { "Y" } else { "N" }.into());
            sim.answer(t, Some(code), f)
        }
    }
}

async fn refund(
    State(sim): State<Arc<Provider>>,
    cert: Option<Extension<ClientCert>>,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.check_client_cert(cert.as_deref()) {
        return r;
    }
    let fields = sim.open(&body).and_then(|(p, t)| {
        Ok((
            Named::of(&p, t)?,
            required(&p, "out_refund_no", t)?.to_owned(),
            fee(&p, "total_fee", t)?,
            fee(&p, "refund_fee", t)?,
            t,
        ))
    });
    let (named, out_refund_no, total_fee, refund_fee, t) = match fields {
        Ok(v) => v,
        Err(r) => return sim.refused(r),
    };
    if refund_fee > total_fee {
        // The real service refuses the call itself, unsigned.
        return sim.fail_return("invalid refund_fee");
    }
    let now = Instant::now();
    let outcome = {
        let mut books = sim.books();
        match named.resolve(&books) {
            None => Err(INVALID_TRANSACTIONID),
            Some(no) => {
                let answer = books.refund(&no, &out_refund_no, total_fee, refund_fee, now);
                let charge = books.peek(&no, now);
                Ok((no, answer, charge))
            }
        }
    };
    let (out_trade_no, answer, charge) = match outcome {
        Ok(v) => v,
        Err(code) => return sim.answer(t, Some(code), Params::new()),
    };
    tracing::info!(out_trade_no, out_refund_no, refund_fee, ?answer, "refund");
    match (answer, charge) {
        (
            RefundAnswer::Done {
                refund_id,
                refund_fee,
            },
            Some(c),
        ) => {
            let mut f = Params::new();
            f.insert("transaction_id".into(), c.transaction_id.clone());
            f.insert("out_trade_no".into(), out_trade_no);
            f.insert("out_refund_no".into(), out_refund_no);
            f.insert("refund_id".into(), refund_id);
            f.insert("refund_fee".into(), refund_fee.to_string());
            f.insert("total_fee".into(), c.total_fee.to_string());
            f.insert("cash_fee".into(), c.total_fee.to_string());
            f.insert("cash_refund_fee".into(), refund_fee.to_string());
            sim.answer(t, None, f)
        }
        (RefundAnswer::Done { .. }, None) => sim.answer(t, Some(err::ORDERNOTEXIST), Params::new()),
        (RefundAnswer::Fail(code), _) => {
            sim.answer_described(t, code, describe_refund(code), Params::new())
        }
    }
}

/// Most refunds one refundquery answer lists (the real service pages by 10).
const REFUNDS_PER_PAGE: usize = 10;

async fn refundquery(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    let fields = sim.open(&body).and_then(|(p, t)| {
        let offset = match optional(&p, "offset", t)? {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| Refused::Param(t))?),
        };
        let by = match (
            optional(&p, "refund_id", t)?,
            optional(&p, "out_refund_no", t)?,
        ) {
            (Some(id), _) => RefundNamed::RefundId(id.to_owned()),
            (None, Some(no)) => RefundNamed::OutRefundNo(no.to_owned()),
            (None, None) => RefundNamed::Order(Named::of(&p, t)?),
        };
        Ok((by, offset, t))
    });
    let (by, offset, t) = match fields {
        Ok(v) => v,
        Err(r) => return sim.refused(r),
    };
    let found = {
        let mut books = sim.books();
        let target = match &by {
            RefundNamed::RefundId(id) => books
                .refund_by_id(id)
                .map(|(order, no)| (order, Some(no)))
                .ok_or(err::REFUNDNOTEXIST),
            RefundNamed::OutRefundNo(no) => books
                .refund_owner(no)
                .map(|order| (order, Some(no.clone())))
                .ok_or(err::REFUNDNOTEXIST),
            RefundNamed::Order(named @ Named::Transaction(_)) => named
                .resolve(&books)
                .map(|order| (order, None))
                .ok_or(INVALID_TRANSACTIONID),
            RefundNamed::Order(named @ Named::OutTradeNo(_)) => named
                .resolve(&books)
                .map(|order| (order, None))
                .ok_or(err::REFUNDNOTEXIST),
        };
        target.and_then(|(order, no)| {
            books
                .refund_query(&order, no.as_deref(), Instant::now())
                // No order under a merchant's number: no refund either.
                .map_err(|e| {
                    if e == err::ORDERNOTEXIST {
                        err::REFUNDNOTEXIST
                    } else {
                        e
                    }
                })
        })
    };
    let (c, refunds) = match found {
        Ok(v) => v,
        Err(code) => return sim.answer(t, Some(code), Params::new()),
    };
    let total = refunds.len();
    let from = offset.unwrap_or(0);
    if from >= total {
        return sim.answer(t, Some(err::PARAM_ERROR), Params::new());
    }
    let page: Vec<&ledger::RefundRecord> =
        refunds.iter().skip(from).take(REFUNDS_PER_PAGE).collect();
    let mut f = Params::new();
    f.insert("transaction_id".into(), c.transaction_id.clone());
    f.insert("out_trade_no".into(), c.out_trade_no.clone());
    f.insert("total_fee".into(), c.total_fee.to_string());
    f.insert("cash_fee".into(), c.total_fee.to_string());
    f.insert("fee_type".into(), "CNY".into());
    f.insert("refund_count".into(), page.len().to_string());
    // As the service: the order's count when paged, or when there is more
    // than one page.
    if offset.is_some() || total > REFUNDS_PER_PAGE {
        f.insert("total_refund_count".into(), total.to_string());
    }
    for (n, r) in page.iter().enumerate() {
        f.insert(format!("out_refund_no_{n}"), r.out_refund_no.clone());
        f.insert(format!("refund_id_{n}"), r.refund_id.clone());
        f.insert(format!("refund_fee_{n}"), r.refund_fee.to_string());
        f.insert(format!("refund_status_{n}"), r.status.as_str().into());
        f.insert(format!("refund_channel_{n}"), "ORIGINAL".into());
        f.insert(
            format!("refund_account_{n}"),
            "REFUND_SOURCE_UNSETTLED_FUNDS".into(),
        );
        f.insert(
            format!("refund_recv_accout_{n}"),
            REFUND_RECV_ACCOUNT.into(),
        );
        if let (RefundStatus::Success, Some(at)) = (r.status, r.settled_at) {
            f.insert(format!("refund_success_time_{n}"), china_time(at).dashed());
        }
    }
    tracing::info!(
        out_trade_no = c.out_trade_no,
        refunds = total,
        "refundquery"
    );
    sim.answer(t, None, f)
}

/// The refund (or the order's refunds) a refundquery names, by the real
/// service's priority: refund_id, out_refund_no, transaction_id, out_trade_no.
enum RefundNamed {
    RefundId(String),
    OutRefundNo(String),
    Order(Named),
}

async fn put_scenario(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Scenario>(&body) {
        Ok(s) => {
            sim.set_scenario(s.clone());
            (StatusCode::OK, Json(s)).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/problem+json")],
            json!({
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "code": "invalid_scenario",
                "detail": e.to_string(),
            })
            .to_string(),
        )
            .into_response(),
    }
}

async fn get_ledger(State(sim): State<Arc<Provider>>) -> Json<serde_json::Value> {
    Json(json!({ "charges": sim.ledger() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
    const APPID: &str = "wx2421b1c4370ec43b";
    const MCH_ID: &str = "10000100";
    const CODE: &str = "134567890123456789";

    struct Sim {
        provider: Arc<Provider>,
        base: String,
        http: reqwest::Client,
        closing: watch::Sender<bool>,
    }

    impl Drop for Sim {
        fn drop(&mut self) {
            let _ = self.closing.send(true);
        }
    }

    async fn sim() -> Sim {
        let provider = Provider::new(Credentials {
            appid: APPID.into(),
            mch_id: MCH_ID.into(),
            key: KEY.into(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (closing, mut rx) = watch::channel(false);
        tokio::spawn(Arc::clone(&provider).serve(listener, async move {
            let _ = rx.wait_for(|c| *c).await;
        }));
        Sim {
            provider,
            base,
            http: reqwest::Client::new(),
            closing,
        }
    }

    impl Sim {
        /// A signed call; the answer, its signature checked with `t`.
        async fn call(&self, path: &str, fields: &[(&str, &str)], t: SignType) -> Params {
            let mut p = Params::new();
            p.insert("appid".into(), APPID.into());
            p.insert("mch_id".into(), MCH_ID.into());
            p.insert("nonce_str".into(), "n0nce".into());
            for (k, v) in fields {
                p.insert((*k).into(), (*v).into());
            }
            wx::sign_in_place(&mut p, KEY, t);
            let raw = self
                .http
                .post(format!("{}{path}", self.base))
                .body(wx::encode(&p))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let a = wx::decode(&raw).unwrap();
            if a["return_code"] == wx::SUCCESS {
                assert!(wx::verify_as(&a, KEY, t), "{a:?}");
                assert!(!a.contains_key("sign_type"), "{a:?}");
            }
            a
        }

        async fn md5(&self, path: &str, fields: &[(&str, &str)]) -> Params {
            self.call(path, fields, SignType::Md5).await
        }

        async fn pay(&self, out_trade_no: &str, fee: &str) -> Params {
            self.md5(
                wx::PATH_MICROPAY,
                &[
                    ("out_trade_no", out_trade_no),
                    ("auth_code", CODE),
                    ("total_fee", fee),
                    ("body", "cola"),
                ],
            )
            .await
        }
    }

    fn has(a: &Params, fields: &[&str]) {
        for f in fields {
            assert!(a.get(*f).is_some_and(|v| !v.is_empty()), "no {f} in {a:?}");
        }
    }

    const PAID: &[&str] = &[
        "openid",
        "is_subscribe",
        "trade_type",
        "bank_type",
        "fee_type",
        "total_fee",
        "cash_fee",
        "transaction_id",
        "out_trade_no",
        "time_end",
    ];

    #[test]
    fn china_time_is_utc_plus_eight() {
        // 2023-11-14 22:13:20 UTC.
        let t = ChinaTime::of_unix(1_700_000_000);
        assert_eq!(t.compact(), "20231115061320");
        assert_eq!(t.dashed(), "2023-11-15 06:13:20");
        assert_eq!(ChinaTime::of_unix(0).dashed(), "1970-01-01 08:00:00");
        // A leap day.
        assert_eq!(
            ChinaTime::of_unix(1_709_222_400).dashed(),
            "2024-03-01 00:00:00"
        );
        assert_eq!(
            ChinaTime::of_unix(1_709_222_399).dashed(),
            "2024-02-29 23:59:59"
        );
    }

    #[tokio::test]
    async fn paid_answers_carry_every_always_returned_field() {
        let s = sim().await;
        let a = s.pay("o1", "2116").await;
        assert_eq!(a["result_code"], "SUCCESS", "{a:?}");
        has(&a, PAID);
        assert_eq!(
            (a["cash_fee"].as_str(), a["is_subscribe"].as_str()),
            ("2116", "N")
        );
        assert_eq!(a["time_end"].len(), 14);
        let txn = a["transaction_id"].clone();
        let q = s
            .md5(wx::PATH_ORDERQUERY, &[("transaction_id", &txn)])
            .await;
        assert_eq!(
            (q["trade_state"].as_str(), q["out_trade_no"].as_str()),
            ("SUCCESS", "o1")
        );
        has(&q, PAID);
        assert_eq!(q["trade_state_desc"], "支付成功");
        // transaction_id ranks above out_trade_no.
        let q = s
            .md5(
                wx::PATH_ORDERQUERY,
                &[("transaction_id", &txn), ("out_trade_no", "other")],
            )
            .await;
        assert_eq!(q["out_trade_no"], "o1");
        let q = s.md5(wx::PATH_ORDERQUERY, &[]).await;
        assert_eq!(q["err_code"], "PARAM_ERROR");
        let q = s
            .md5(wx::PATH_ORDERQUERY, &[("transaction_id", "4200999")])
            .await;
        assert_eq!(q["err_code"], "ORDERNOTEXIST");
    }

    #[tokio::test]
    async fn an_unpaid_order_is_queried_with_its_state_described() {
        let s = sim().await;
        s.provider.set_scenario(Scenario {
            outcome: Outcome::UserpayingForever,
            ..Scenario::default()
        });
        assert_eq!(s.pay("o1", "100").await["err_code"], "USERPAYING");
        let q = s.md5(wx::PATH_ORDERQUERY, &[("out_trade_no", "o1")]).await;
        assert_eq!(q["trade_state"], "USERPAYING");
        assert!(!q["trade_state_desc"].is_empty());
        assert!(!q.contains_key("transaction_id"), "{q:?}");
        let r = s.md5(wx::PATH_REVERSE, &[("out_trade_no", "o1")]).await;
        assert_eq!(r["result_code"], "SUCCESS");
        let q = s.md5(wx::PATH_ORDERQUERY, &[("out_trade_no", "o1")]).await;
        assert_eq!(q["trade_state"], "REVOKED");
        let r = s
            .md5(wx::PATH_REVERSE, &[("transaction_id", "4200999")])
            .await;
        assert_eq!(r["err_code"], "ORDERNOTEXIST");
    }

    #[tokio::test]
    async fn refunds_and_their_queries_answer_as_the_service() {
        let s = sim().await;
        let txn = s.pay("o1", "1000").await["transaction_id"].clone();
        let refund = |no: &'static str, fee: &'static str| {
            let txn = txn.clone();
            let s = &s;
            async move {
                s.md5(
                    wx::PATH_REFUND,
                    &[
                        ("transaction_id", &txn),
                        ("out_refund_no", no),
                        ("total_fee", "1000"),
                        ("refund_fee", fee),
                    ],
                )
                .await
            }
        };
        let a = refund("r1", "300").await;
        assert_eq!(a["result_code"], "SUCCESS", "{a:?}");
        has(
            &a,
            &[
                "transaction_id",
                "out_trade_no",
                "out_refund_no",
                "refund_id",
                "refund_fee",
                "total_fee",
                "cash_fee",
            ],
        );
        assert_eq!(a["out_trade_no"], "o1");
        assert_eq!(refund("r2", "800").await["err_code"], "INVALID_REQUEST");
        assert_eq!(refund("r1", "400").await["err_code"], "REFUND_FEE_MISMATCH");
        let over = refund("r3", "1001").await;
        assert_eq!(over["return_code"], "FAIL", "{over:?}");
        assert_eq!(refund("r2", "700").await["result_code"], "SUCCESS");
        assert_eq!(refund("r4", "1").await["err_code"], "ERROR");

        let q = s.md5(wx::PATH_REFUNDQUERY, &[("out_trade_no", "o1")]).await;
        assert_eq!(q["refund_count"], "2", "{q:?}");
        has(
            &q,
            &[
                "transaction_id",
                "total_fee",
                "cash_fee",
                "out_refund_no_1",
                "refund_id_1",
                "refund_fee_1",
                "refund_status_1",
                "refund_channel_1",
                "refund_recv_accout_1",
                "refund_success_time_1",
            ],
        );
        assert_eq!(q["refund_status_0"], "SUCCESS");
        assert_eq!(q["refund_fee_1"], "700");
        let by_id = s
            .md5(wx::PATH_REFUNDQUERY, &[("refund_id", &a["refund_id"])])
            .await;
        assert_eq!(
            (
                by_id["refund_count"].as_str(),
                by_id["out_refund_no_0"].as_str()
            ),
            ("1", "r1")
        );
        let by_no = s
            .md5(wx::PATH_REFUNDQUERY, &[("out_refund_no", "r2")])
            .await;
        assert_eq!(by_no["refund_fee_0"], "700");
        let by_txn = s
            .md5(wx::PATH_REFUNDQUERY, &[("transaction_id", &txn)])
            .await;
        assert_eq!(by_txn["refund_count"], "2");
        let paged = s
            .md5(
                wx::PATH_REFUNDQUERY,
                &[("out_trade_no", "o1"), ("offset", "1")],
            )
            .await;
        assert_eq!(
            (
                paged["refund_count"].as_str(),
                paged["total_refund_count"].as_str()
            ),
            ("1", "2")
        );
        assert_eq!(paged["out_refund_no_0"], "r2");
        for fields in [
            &[("out_refund_no", "r9")][..],
            &[("out_trade_no", "nope")][..],
        ] {
            let q = s.md5(wx::PATH_REFUNDQUERY, fields).await;
            assert_eq!(q["err_code"], "REFUNDNOTEXIST", "{q:?}");
        }
        let q = s
            .md5(wx::PATH_REFUNDQUERY, &[("transaction_id", "4200999")])
            .await;
        assert_eq!(q["err_code"], "INVALID_TRANSACTIONID");
        assert_eq!(
            s.md5(wx::PATH_REFUNDQUERY, &[]).await["err_code"],
            "PARAM_ERROR"
        );
    }

    #[tokio::test]
    async fn refund_scenarios_show_in_refundquery() {
        let s = sim().await;
        s.provider.set_scenario(Scenario {
            refund: RefundOutcome::ProcessingForever,
            refund_notenough_calls: 1,
            ..Scenario::default()
        });
        s.pay("o1", "1000").await;
        let fields = [
            ("out_trade_no", "o1"),
            ("out_refund_no", "r1"),
            ("total_fee", "1000"),
            ("refund_fee", "1000"),
        ];
        let a = s.md5(wx::PATH_REFUND, &fields).await;
        assert_eq!(a["err_code"], "NOTENOUGH");
        assert_eq!(a["err_code_des"], "基本账户余额不足，请充值后重新发起");
        assert_eq!(
            s.md5(wx::PATH_REFUND, &fields).await["result_code"],
            "SUCCESS"
        );
        let q = s
            .call(
                wx::PATH_REFUNDQUERY,
                &[("out_refund_no", "r1")],
                SignType::HmacSha256,
            )
            .await;
        assert_eq!(q["refund_status_0"], "PROCESSING");
        assert!(!q.contains_key("refund_success_time_0"));

        s.provider.set_scenario(Scenario {
            auth_code: Some(CODE.into()),
            refund: RefundOutcome::Closed,
            refund_after_ms: Some(0),
            ..Scenario::default()
        });
        s.pay("o2", "1000").await;
        let fields = [
            ("out_trade_no", "o2"),
            ("out_refund_no", "r2"),
            ("total_fee", "1000"),
            ("refund_fee", "1000"),
        ];
        assert_eq!(
            s.md5(wx::PATH_REFUND, &fields).await["result_code"],
            "SUCCESS"
        );
        let q = s
            .md5(wx::PATH_REFUNDQUERY, &[("out_refund_no", "r2")])
            .await;
        assert_eq!(q["refund_status_0"], "REFUNDCLOSE");
        let o = s.md5(wx::PATH_ORDERQUERY, &[("out_trade_no", "o2")]).await;
        assert_eq!(o["trade_state"], "SUCCESS");
    }
}
