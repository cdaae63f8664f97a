//! Payment-code charges at the counter, refunds, and the sweeper.
//!
//! A charge belongs to an order and is recorded before the provider hears of
//! it; its id is the provider's `out_trade_no`, derived from the order id and
//! the attempt number, so any later call about it (query, reverse) is about
//! the same money. The flow: micropay; on "user paying" or any unknown answer
//! query every `poll_interval` until the charge's deadline, then reverse
//! (again while the provider asks to). A unique index lets an order have only
//! one charge that may take money; a second request for the same order waits
//! for that charge instead of making another. Whatever a crash leaves
//! `created` or `pending`, the sweeper finishes: at start and periodically.
//!
//! Two providers sit behind [`Provider`]: WeChat Pay and Alipay. A payment
//! code's prefix picks which one charges it; every later call about a charge
//! goes to the provider recorded on it.

mod alipay;
pub mod cash;
mod provider;
pub(crate) mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use proto::order::{Money, PaymentEvent, PaymentStatus, Quantity, StoreId};
use proto::wechatpay::{self as wx, CodeKind, ScannedCode, SignType};
use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use tokio::sync::watch;

pub use alipay::Alipay;
pub use provider::{
    Micropay, MicropayRequest, Provider, Query, Refund as ProviderRefund, RefundRequest,
    RefundStatus, Reverse, WeChatPay, WeChatTls,
};
pub use store::{Charge, ChargeState, Exchange, Refund, RefundState};

use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::{self, Hub};
use crate::keys::Principal;
use crate::orders::held::{payment_pending, refund_pending};

/// Reverse calls in one go before the charge is left to the sweeper.
const MAX_REVERSE_CALLS: u32 = 10;
/// Refund queries in one request before the refund is left to the sweeper.
const MAX_REFUND_QUERIES: u32 = 3;
/// Acceptances of one refund the provider later says it never made, before
/// the refund counts as closed.
const MAX_REFUND_ACCEPTANCES: u32 = 3;
/// Charges and refunds one sweep looks at.
const SWEEP_BATCH: i64 = 100;
/// Longest request id of a refund.
const MAX_REQUEST_ID: usize = 64;

/// Settings of the payment service. WeChat Pay is on when its base URL is
/// not empty, Alipay when `alipay` is set; at least one must be.
#[derive(Clone)]
pub struct PaymentsConfig {
    pub wechatpay_base_url: String,
    pub wechatpay_appid: String,
    pub wechatpay_mch_id: String,
    pub wechatpay_key: SecretString,
    pub sign_type: SignType,
    /// How often a pending charge is queried.
    pub poll_interval: Duration,
    /// How long after the charge it is reversed if still not paid.
    pub deadline: Duration,
    /// How long one provider call may take.
    pub request_timeout: Duration,
    /// How often the sweeper looks for unsettled charges.
    pub sweep_interval: Duration,
    /// The Alipay-shaped provider; `None`: Alipay codes are not accepted.
    pub alipay: Option<AlipayConfig>,
    /// The extra CA both providers trust, and WeChat's client certificate.
    pub tls: WeChatTls,
}

/// The Alipay-shaped provider: where, which app, and the two keys as PEM.
#[derive(Clone)]
pub struct AlipayConfig {
    pub base_url: String,
    pub app_id: String,
    /// Ours, which signs the requests.
    pub private_key_pem: SecretString,
    /// Alipay's, which checks the answers.
    pub public_key_pem: String,
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

impl AlipayConfig {
    /// The keys, parsed: an error names which one is wrong, never its text.
    fn keys(&self) -> anyhow::Result<(proto::alipay::PrivateKey, proto::alipay::PublicKey)> {
        use secrecy::ExposeSecret;
        let private = proto::alipay::PrivateKey::from_pem(self.private_key_pem.expose_secret())
            .context("the Alipay private key (ours)")?;
        let public = proto::alipay::PublicKey::from_pem(&self.public_key_pem)
            .context("the Alipay public key (Alipay's)")?;
        Ok((private, public))
    }
}

impl std::fmt::Debug for PaymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsConfig")
            .field("wechatpay_base_url", &self.wechatpay_base_url)
            .field("wechatpay_appid", &self.wechatpay_appid)
            .field("wechatpay_mch_id", &self.wechatpay_mch_id)
            .field("wechatpay_key", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
            .field("deadline", &self.deadline)
            .field("alipay", &self.alipay)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The `[payments]` table of the configuration, already merged from the
/// file, the environment and flags (see [`crate::config`]); every key optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsFile {
    pub wechatpay_base_url: Option<String>,
    pub wechatpay_appid: Option<String>,
    pub wechatpay_mch_id: Option<String>,
    pub wechatpay_key: Option<SecretString>,
    /// `MD5` or `HMAC-SHA256`.
    pub wechatpay_sign_type: Option<String>,
    pub alipay_base_url: Option<String>,
    pub alipay_app_id: Option<String>,
    /// PEM file of our private key.
    pub alipay_private_key_file: Option<String>,
    /// PEM file of Alipay's public key.
    pub alipay_public_key_file: Option<String>,
    pub poll_ms: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub sweep_ms: Option<u64>,
    /// PEM file of CA certificates trusted beside the public roots.
    pub extra_ca_file: Option<String>,
    /// The WeChat Pay API client certificate (`/secapi/`): a PEM pair...
    pub wechatpay_client_cert_file: Option<String>,
    pub wechatpay_client_key_file: Option<String>,
    /// ...or a PKCS#12 file with its password.
    pub wechatpay_client_p12_file: Option<String>,
    pub wechatpay_client_p12_password: Option<SecretString>,
}

/// The extra CA and WeChat's client certificate (`extra_ca_file`,
/// `wechatpay_client_cert_file` + `…_key_file`, or `…_p12_file` +
/// `…_p12_password`; `GATEWAY_EXTRA_CA_FILE`, `GATEWAY_WECHATPAY_CLIENT_*`).
fn provider_tls(f: &PaymentsFile) -> anyhow::Result<WeChatTls> {
    use secrecy::ExposeSecret;
    let extra_ca_pem = crate::outbound::extra_ca(f.extra_ca_file.as_deref())?;
    let read = |name: &str, path: &str| {
        std::fs::read(path).with_context(|| format!("{name}: reading {path}"))
    };
    let cert = setting(
        "GATEWAY_WECHATPAY_CLIENT_CERT_FILE",
        f.wechatpay_client_cert_file.clone(),
    );
    let key = setting(
        "GATEWAY_WECHATPAY_CLIENT_KEY_FILE",
        f.wechatpay_client_key_file.clone(),
    );
    let p12 = setting(
        "GATEWAY_WECHATPAY_CLIENT_P12_FILE",
        f.wechatpay_client_p12_file.clone(),
    );
    let p12_password = f
        .wechatpay_client_p12_password
        .clone()
        .filter(|p| !p.expose_secret().is_empty());
    let client_cert = match (cert, key, p12) {
        (None, None, None) => None,
        (Some(cert), Some(key), None) => {
            let text = |name: &str, path: &str| -> anyhow::Result<String> {
                String::from_utf8(read(name, path)?)
                    .with_context(|| format!("{name}: {path} is not PEM text"))
            };
            let cert_pem = text("GATEWAY_WECHATPAY_CLIENT_CERT_FILE", &cert)?;
            let key_pem = text("GATEWAY_WECHATPAY_CLIENT_KEY_FILE", &key)?;
            Some(
                crate::outbound::ClientIdentity::from_pem(&cert_pem, &key_pem)
                    .context("the WeChat Pay client certificate and key")?,
            )
        }
        (None, None, Some(p12)) => {
            let der = read("GATEWAY_WECHATPAY_CLIENT_P12_FILE", &p12)?;
            // WeChat's own files use the merchant id as the password; no default here.
            let password = p12_password.with_context(|| {
                "GATEWAY_WECHATPAY_CLIENT_P12_PASSWORD (or wechatpay_client_p12_password) is \
                 required with a PKCS#12 file"
            })?;
            Some(
                crate::outbound::ClientIdentity::from_pkcs12(&der, password.expose_secret())
                    .with_context(|| format!("the WeChat Pay client certificate {p12}"))?,
            )
        }
        (_, _, Some(_)) => anyhow::bail!(
            "the WeChat Pay client certificate is either a PEM pair or a PKCS#12 file, not both"
        ),
        _ => anyhow::bail!(
            "the WeChat Pay client certificate needs both GATEWAY_WECHATPAY_CLIENT_CERT_FILE \
             and GATEWAY_WECHATPAY_CLIENT_KEY_FILE"
        ),
    };
    Ok(WeChatTls {
        extra_ca_pem,
        client_cert,
    })
}

/// A setting named `name` (its environment variable, for messages), unset
/// when empty.
fn setting(_name: &str, value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn ms(name: &str, value: Option<u64>, default_ms: u64) -> anyhow::Result<Duration> {
    let v = value.unwrap_or(default_ms);
    anyhow::ensure!(v > 0, "{name} must be a positive number of milliseconds");
    Ok(Duration::from_millis(v))
}

impl PaymentsConfig {
    /// From the merged `[payments]` table (keys `wechatpay_*`, `alipay_*`,
    /// `poll_ms`, `deadline_ms`, `timeout_ms`, `sweep_ms`; environment
    /// `GATEWAY_WECHATPAY_*`, `GATEWAY_ALIPAY_*`, `GATEWAY_PAYMENTS_*_MS`).
    /// `None` when it names no provider's base URL: payments are off. A
    /// base URL without its credentials, or a bad value, is an error.
    pub fn load(file: Option<&PaymentsFile>) -> anyhow::Result<Option<Self>> {
        use secrecy::ExposeSecret;
        let f = file.cloned().unwrap_or_default();
        let tls = provider_tls(&f)?;
        let need = |name: &str, file: Option<String>| {
            setting(name, file).with_context(|| {
                format!("{name} (or the file's [payments] key) is required with a base URL")
            })
        };
        let alipay = match setting("GATEWAY_ALIPAY_BASE_URL", f.alipay_base_url.clone()) {
            None => None,
            Some(base) => {
                anyhow::ensure!(
                    base.starts_with("http://") || base.starts_with("https://"),
                    "the Alipay base URL must start with http:// or https://"
                );
                let read = |name: &str, file: Option<String>| {
                    let path = need(name, file)?;
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("{name}: reading {path}"))
                };
                let config = AlipayConfig {
                    base_url: base,
                    app_id: need("GATEWAY_ALIPAY_APP_ID", f.alipay_app_id.clone())?,
                    private_key_pem: SecretString::from(read(
                        "GATEWAY_ALIPAY_PRIVATE_KEY_FILE",
                        f.alipay_private_key_file.clone(),
                    )?),
                    public_key_pem: read(
                        "GATEWAY_ALIPAY_PUBLIC_KEY_FILE",
                        f.alipay_public_key_file.clone(),
                    )?,
                };
                config.keys()?;
                Some(config)
            }
        };
        let Some(base) = setting("GATEWAY_WECHATPAY_BASE_URL", f.wechatpay_base_url) else {
            return match alipay {
                None => Ok(None),
                Some(alipay) => Ok(Some(PaymentsConfig {
                    wechatpay_base_url: String::new(),
                    wechatpay_appid: String::new(),
                    wechatpay_mch_id: String::new(),
                    wechatpay_key: SecretString::from(String::new()),
                    sign_type: SignType::Md5,
                    poll_interval: ms("GATEWAY_PAYMENTS_POLL_MS", f.poll_ms, 5_000)?,
                    deadline: ms("GATEWAY_PAYMENTS_DEADLINE_MS", f.deadline_ms, 30_000)?,
                    request_timeout: ms("GATEWAY_PAYMENTS_TIMEOUT_MS", f.timeout_ms, 10_000)?,
                    sweep_interval: ms("GATEWAY_PAYMENTS_SWEEP_MS", f.sweep_ms, 30_000)?,
                    alipay: Some(alipay),
                    tls,
                })),
            };
        };
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "the WeChat Pay base URL must start with http:// or https://"
        );
        let sign_type =
            match setting("GATEWAY_WECHATPAY_SIGN_TYPE", f.wechatpay_sign_type).as_deref() {
                None | Some("MD5") => SignType::Md5,
                Some("HMAC-SHA256") => SignType::HmacSha256,
                Some(other) => {
                    anyhow::bail!("GATEWAY_WECHATPAY_SIGN_TYPE {other:?} is not MD5 or HMAC-SHA256")
                }
            };
        let file_key = f
            .wechatpay_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        Ok(Some(PaymentsConfig {
            wechatpay_base_url: base,
            wechatpay_appid: need("GATEWAY_WECHATPAY_APPID", f.wechatpay_appid)?,
            wechatpay_mch_id: need("GATEWAY_WECHATPAY_MCH_ID", f.wechatpay_mch_id)?,
            wechatpay_key: SecretString::from(need("GATEWAY_WECHATPAY_KEY", file_key)?),
            sign_type,
            poll_interval: ms("GATEWAY_PAYMENTS_POLL_MS", f.poll_ms, 5_000)?,
            deadline: ms("GATEWAY_PAYMENTS_DEADLINE_MS", f.deadline_ms, 30_000)?,
            request_timeout: ms("GATEWAY_PAYMENTS_TIMEOUT_MS", f.timeout_ms, 10_000)?,
            sweep_interval: ms("GATEWAY_PAYMENTS_SWEEP_MS", f.sweep_ms, 30_000)?,
            alipay,
            tls,
        }))
    }
}

/// The payment service, or the one answer every payment endpoint (REST and
/// SOAP) gives when no provider is configured.
pub(crate) fn configured(payments: Option<&Arc<Payments>>) -> Result<&Arc<Payments>> {
    payments.ok_or_else(|| {
        Error::new(
            Code::PaymentsNotConfigured,
            "payments are not configured on this gateway",
        )
    })
}

/// The payment service of one gateway process.
pub struct Payments {
    db: Db,
    hub: Hub,
    /// One per kind of payment code at most.
    providers: Vec<Arc<dyn Provider>>,
    poll_interval: Duration,
    deadline: Duration,
    request_timeout: Duration,
    /// Charges and refunds this process is driving right now; the sweeper
    /// leaves them alone.
    active: Arc<Mutex<HashSet<String>>>,
    /// The gateway's shutdown ([`Payments::stop_at`]): a charge still
    /// waiting for the customer then stops where it is, recorded `pending`
    /// with its deadline, and is answered so; the sweeper (this instance's
    /// next run, or another's) settles it.
    closing: std::sync::OnceLock<watch::Receiver<bool>>,
}

/// Marks an id as driven by this process until dropped.
struct Claim {
    active: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.active).remove(&self.id);
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

impl Payments {
    pub fn new(config: &PaymentsConfig, db: Db, hub: Hub) -> anyhow::Result<Arc<Payments>> {
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        if !config.wechatpay_base_url.trim().is_empty() {
            providers.push(Arc::new(WeChatPay::new(
                &config.wechatpay_base_url,
                config.wechatpay_appid.clone(),
                config.wechatpay_mch_id.clone(),
                config.wechatpay_key.clone(),
                config.sign_type,
                config.request_timeout,
                &config.tls,
            )?));
        }
        if let Some(a) = &config.alipay {
            let (key, alipay_key) = a.keys()?;
            providers.push(Arc::new(Alipay::new(
                &a.base_url,
                a.app_id.clone(),
                key,
                alipay_key,
                config.request_timeout,
                config.tls.extra_ca_pem.as_deref(),
            )?));
        }
        anyhow::ensure!(!providers.is_empty(), "no payment provider is configured");
        Ok(Arc::new(Payments {
            db,
            hub,
            providers,
            poll_interval: config.poll_interval,
            deadline: config.deadline,
            request_timeout: config.request_timeout,
            active: Arc::new(Mutex::new(HashSet::new())),
            closing: std::sync::OnceLock::new(),
        }))
    }

    /// Charges in flight stop waiting once `closing` turns true (see
    /// `closing`). Set once; later calls are ignored.
    pub fn stop_at(&self, closing: watch::Receiver<bool>) {
        let _ = self.closing.set(closing);
    }

    /// Resolves once the gateway is shutting down (never without
    /// [`Payments::stop_at`]).
    async fn closed(&self) {
        match self.closing.get() {
            Some(c) => {
                let mut c = c.clone();
                if c.wait_for(|v| *v).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Leaves charge `id` as it is recorded (pending, with its deadline)
    /// for the sweeper: the gateway is shutting down.
    async fn left_at_shutdown(&self, id: &str, during: &str) -> Result<()> {
        tracing::info!(
            charge = id,
            during,
            "shutting down: charge left pending for the sweeper"
        );
        self.log(id, during, "left_at_shutdown", None).await;
        Ok(())
    }

    /// Builds the service and starts its sweeper on a scheduler of its own
    /// (`app::build` puts it on the gateway's one instead), which stops when
    /// `closing` turns true. Must run inside the tokio runtime.
    pub fn start(
        config: &PaymentsConfig,
        db: Db,
        hub: Hub,
        closing: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Payments>> {
        let payments = Payments::new(config, db, hub)?;
        payments.stop_at(closing.clone());
        crate::jobs::start(
            &payments.db.clone(),
            "payment_jobs",
            &crate::jobs::JobsConfig::default(),
            vec![Payments::sweeper_job(&payments, config.sweep_interval)],
            Some(closing),
        );
        Ok(payments)
    }

    /// The provider that takes codes of `kind`, if configured.
    fn provider_for(&self, kind: CodeKind) -> Option<Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.kind() == kind).cloned()
    }

    /// The provider a charge was made with.
    fn provider_named(&self, name: &str) -> Result<Arc<dyn Provider>> {
        self.providers
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| {
                Error::internal(anyhow::anyhow!(
                    "the charge's provider {name} is not configured"
                ))
            })
    }

    /// How far a request drives a refund before it answers.
    fn request_budget(&self) -> RefundBudget {
        RefundBudget {
            queries: MAX_REFUND_QUERIES,
            pause: self.poll_interval,
        }
    }

    /// `None` when this process already drives `id`.
    fn claim(&self, id: &str) -> Option<Claim> {
        lock(&self.active).insert(id.to_owned()).then(|| Claim {
            active: Arc::clone(&self.active),
            id: id.to_owned(),
        })
    }

    // ------------------------------------------------------------- paying

    /// Charges the order with a scanned payment code and answers once the
    /// charge is final (or, if even reversing fails, still pending). A second
    /// call for an order with a live charge waits for that charge. The charge
    /// is driven on a task of its own, so a caller hanging up cannot leave
    /// it half done.
    pub async fn pay(
        self: &Arc<Self>,
        order_id: &str,
        raw_code: &str,
        who: &Principal,
    ) -> Result<Charge> {
        let code = wx::parse_code(raw_code).ok_or_else(|| {
            Error::new(
                Code::InvalidPaymentCode,
                "this is not a WeChat Pay or Alipay payment code",
            )
        })?;
        let Some(provider) = self.provider_for(code.kind) else {
            return Err(Error::new(
                Code::UnsupportedPaymentCode,
                format!("{} payment codes are not accepted here", code.kind.as_str()),
            ));
        };
        // Twice at most: a racing request may win the unique index.
        for _ in 0..2 {
            let now = self.db.now_micros();
            let mut tx = self.db.write().await?;
            // The store row first, as every order write takes it (the order is
            // shown `pending` while its charge runs); then the order row, so
            // two pays of one order queue here.
            let store_id = store::order_facts(&mut tx, order_id).await?.store;
            let seq = events::next_seq(&mut tx, &store_id)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
            let order = store::lock_order_facts(&mut tx, order_id).await?;
            who.check_order(&order.store, order_id)?;
            if let Some(live) = store::live_charge(&mut tx, order_id).await? {
                drop(tx);
                return self.wait_for(live).await;
            }
            if order.payment_status != PaymentStatus::Unpaid {
                return Err(Error::new(
                    Code::OrderAlreadyPaid,
                    format!("order {order_id} is {}", order.payment_status.as_str()),
                ));
            }
            order.check_payable(order_id)?;
            let attempt = store::next_attempt(&mut tx, order_id).await?;
            if attempt > 999 {
                return Err(Error::new(
                    Code::TooManyAttempts,
                    "this order has been tried too often",
                ));
            }
            let id = out_trade_no(order_id, attempt);
            // Claimed before it is visible, so the sweeper never races us.
            let Some(claim) = self.claim(&id) else {
                return Err(Error::internal(anyhow::anyhow!(
                    "charge {id} already claimed"
                )));
            };
            let masked = code.masked();
            let deadline_at = now + micros(self.deadline);
            let inserted = store::insert_charge(
                &mut tx,
                store::NewCharge {
                    id: &id,
                    order_id,
                    attempt,
                    provider: provider.name(),
                    code_kind: code.kind.as_str(),
                    code_masked: &masked,
                    amount_fen: order.total_fen,
                    deadline_at,
                    created_by: &who.actor().to_string(),
                    now,
                },
            )
            .await?;
            if !inserted {
                continue;
            }
            store::set_payment_status(
                &mut tx,
                order_id,
                order.payment_status,
                PaymentEvent::ChargeStarted,
                Some(seq),
                now,
            )
            .await?;
            append_event(
                &mut tx,
                &order.store,
                seq,
                order_id,
                "order.payment_pending",
                now,
            )
            .await?;
            tx.commit().await?;
            self.hub.notify(&order.store);
            tracing::info!(charge = %id, order = order_id, code = %code, amount_fen = order.total_fen, "charging");
            let me = Arc::clone(self);
            let amount_fen = order.total_fen;
            let charge_id = id.clone();
            let driver = tokio::spawn(async move {
                let _claim = claim;
                me.drive_new(&*provider, &charge_id, &code, amount_fen, deadline_at)
                    .await
            });
            driver
                .await
                .map_err(|e| Error::internal(anyhow::anyhow!("charge driver failed: {e}")))??;
            return self.load_charge(&id).await;
        }
        Err(Error::new(
            Code::ConcurrentUpdate,
            "the order changed meanwhile; retry",
        ))
    }

    async fn drive_new(
        &self,
        provider: &dyn Provider,
        id: &str,
        code: &ScannedCode,
        amount_fen: i64,
        deadline_at: i64,
    ) -> Result<()> {
        {
            let mut tx = self.db.write().await?;
            sqlx::query(
                "UPDATE charges SET state = 'pending', updated_at = $1 WHERE id = $2 AND state = 'created'",
            )
            .bind(self.db.now_micros())
            .bind(id.to_owned())
            .execute(&mut **tx)
            .await?;
            tx.commit().await?;
        }
        // The charge is recorded `pending` before the call: a shutdown may
        // drop the call, the sweeper's query finds out what it did.
        let answer = tokio::select! {
            a = provider.micropay(MicropayRequest {
                out_trade_no: id,
                auth_code: code.expose(),
                total_fen: amount_fen,
                body: "门店消费",
            }) => a,
            () = self.closed() => return self.left_at_shutdown(id, "micropay").await,
        };
        let (outcome, detail) = match &answer {
            Micropay::Paid { .. } => ("paid", None),
            Micropay::Declined { provider_code, .. } => ("declined", Some(provider_code.as_str())),
            Micropay::Unknown { why } => ("unknown", Some(why.as_str())),
        };
        self.log(id, "micropay", outcome, detail).await;
        match answer {
            Micropay::Paid { transaction_id } => self.succeed(id, &transaction_id).await,
            Micropay::Declined { code, .. } => self.finish(id, ChargeState::Failed, code).await,
            Micropay::Unknown { .. } => self.settle(provider, id, deadline_at).await,
        }
    }

    /// Queries until the deadline, then reverses.
    async fn settle(&self, provider: &dyn Provider, id: &str, deadline_at: i64) -> Result<()> {
        loop {
            let left = deadline_at - self.db.now_micros();
            if left <= 0 {
                break;
            }
            let pause = self
                .poll_interval
                .min(Duration::from_micros(u64::try_from(left).unwrap_or(0)));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.closed() => return self.left_at_shutdown(id, "orderquery").await,
            }
            if self.query_once(provider, id).await? {
                return Ok(());
            }
        }
        self.reverse(provider, id).await
    }

    /// One query; `true` when it made the charge final.
    async fn query_once(&self, provider: &dyn Provider, id: &str) -> Result<bool> {
        let answer = provider.query(id).await;
        let (outcome, detail) = match &answer {
            Query::Paid { .. } => ("paid", None),
            Query::Waiting => ("waiting", None),
            Query::Declined { provider_code, .. } => ("declined", Some(provider_code.as_str())),
            Query::Reversed => ("reversed", None),
            Query::NotFound => ("not_found", None),
            Query::Unknown { why } => ("unknown", Some(why.as_str())),
        };
        self.log(id, "orderquery", outcome, detail).await;
        match answer {
            Query::Paid { transaction_id } => self.succeed(id, &transaction_id).await.map(|_| true),
            Query::Declined { code, .. } => self
                .finish(id, ChargeState::Failed, code)
                .await
                .map(|_| true),
            Query::Reversed => self
                .finish(id, ChargeState::Reversed, Code::PaymentCancelled)
                .await
                .map(|_| true),
            Query::Waiting | Query::NotFound | Query::Unknown { .. } => Ok(false),
        }
    }

    /// Reverses, repeating while the provider asks to. A charge the provider
    /// will not reverse is queried once more, else left to the sweeper.
    async fn reverse(&self, provider: &dyn Provider, id: &str) -> Result<()> {
        for _ in 0..MAX_REVERSE_CALLS {
            let answer = provider.reverse(id).await;
            let (outcome, detail) = match &answer {
                Reverse::Done => ("reversed", None),
                Reverse::Retry { why } => ("retry", Some(why.as_str())),
                Reverse::Refused { provider_code } => ("refused", Some(provider_code.as_str())),
            };
            self.log(id, "reverse", outcome, detail).await;
            match answer {
                Reverse::Done => {
                    return self
                        .finish(id, ChargeState::Reversed, Code::PaymentTimeout)
                        .await;
                }
                Reverse::Retry { .. } => tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = self.closed() => return self.left_at_shutdown(id, "reverse").await,
                },
                Reverse::Refused { .. } => {
                    self.query_once(provider, id).await?;
                    return Ok(());
                }
            }
        }
        tracing::warn!(charge = id, "reverse still failing; left to the sweeper");
        Ok(())
    }

    /// Waits for a charge someone else drives, up to a little past its
    /// deadline; answers it as it then is.
    async fn wait_for(&self, charge: Charge) -> Result<Charge> {
        let limit = charge.deadline_at
            + micros(self.request_timeout + self.poll_interval) * i64::from(MAX_REVERSE_CALLS + 1);
        let step = (self.poll_interval / 2).max(Duration::from_millis(20));
        let mut current = charge;
        while !current.state.is_final() && self.db.now_micros() < limit {
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                // Answered as it is: the driver leaves it to the sweeper.
                () = self.closed() => break,
            }
            current = self.load_charge(&current.id).await?;
        }
        Ok(current)
    }

    async fn load_charge(&self, id: &str) -> Result<Charge> {
        let mut conn = self.db.pool.acquire().await?;
        store::charge(&mut conn, id)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("charge {id} vanished")))
    }

    /// Paid: the charge succeeds and the order is paid, with a feed event,
    /// in one transaction. Nothing happens if the charge was already final.
    async fn succeed(&self, id: &str, transaction_id: &str) -> Result<()> {
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let Some(charge) = store::charge(&mut tx, id).await? else {
            return Err(Error::internal(anyhow::anyhow!("charge {id} vanished")));
        };
        let facts = store::order_facts(&mut tx, &charge.order_id).await?;
        // The store row lock first, as every order write takes it.
        let seq = events::next_seq(&mut tx, &facts.store)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
        let txn = (!transaction_id.is_empty()).then_some(transaction_id);
        if !store::settle_charge(&mut tx, id, ChargeState::Succeeded, None, txn, now).await? {
            return Ok(());
        }
        store::set_payment_status(
            &mut tx,
            &charge.order_id,
            facts.payment_status,
            PaymentEvent::ChargeSucceeded,
            Some(seq),
            now,
        )
        .await?;
        append_event(
            &mut tx,
            &facts.store,
            seq,
            &charge.order_id,
            "order.paid",
            now,
        )
        .await?;
        tx.commit().await?;
        self.hub.notify(&facts.store);
        tracing::info!(charge = id, order = %charge.order_id, "paid");
        Ok(())
    }

    /// Failed or reversed: the charge ends and the order is payable again
    /// (`unpaid`, with a feed event), in one transaction.
    async fn finish(&self, id: &str, to: ChargeState, code: Code) -> Result<()> {
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let Some(charge) = store::charge(&mut tx, id).await? else {
            return Err(Error::internal(anyhow::anyhow!("charge {id} vanished")));
        };
        let facts = store::order_facts(&mut tx, &charge.order_id).await?;
        // Only an order shown `pending` changes (and so takes a feed number).
        let pending = facts.payment_status == PaymentStatus::Pending;
        let seq = if pending {
            events::next_seq(&mut tx, &facts.store)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?
        } else {
            0
        };
        if !store::settle_charge(&mut tx, id, to, Some(code), None, now).await? {
            return Ok(());
        }
        if pending {
            store::set_payment_status(
                &mut tx,
                &charge.order_id,
                facts.payment_status,
                PaymentEvent::ChargeEnded,
                Some(seq),
                now,
            )
            .await?;
            append_event(
                &mut tx,
                &facts.store,
                seq,
                &charge.order_id,
                "order.payment_failed",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if pending {
            self.hub.notify(&facts.store);
        }
        tracing::info!(
            charge = id,
            state = to.as_str(),
            code = code.as_str(),
            "charge final"
        );
        Ok(())
    }

    /// Records one provider exchange; a failure to record is only logged.
    async fn log(&self, id: &str, call: &str, outcome: &str, detail: Option<&str>) {
        tracing::info!(charge = id, call, outcome, detail, "provider exchange");
        let result = async {
            let mut tx = self.db.write().await?;
            store::log_exchange(&mut tx, id, call, outcome, detail, self.db.now_micros()).await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(charge = id, error = %e, "could not record a provider exchange");
        }
    }

    // ------------------------------------------------------------- reading

    pub async fn of_order(&self, order_id: &str, who: &Principal) -> Result<OrderPayments> {
        let mut conn = self.db.pool.acquire().await?;
        let facts = store::order_facts(&mut conn, order_id).await?;
        who.check_order(&facts.store, order_id)?;
        let charges = store::charges_of_order(&mut conn, order_id).await?;
        let mut with_log = Vec::with_capacity(charges.len());
        for charge in charges {
            let exchanges = store::exchanges(&mut conn, &charge.id).await?;
            with_log.push(ChargeWithLog { charge, exchanges });
        }
        let refunds = store::refunds_of_order(&mut conn, order_id).await?;
        // The status is read after the charges and refunds it follows from,
        // so it is never older than they are (a charge settling between the
        // reads shows settled with the status it set, not before it).
        let payment_status = store::order_facts(&mut conn, order_id)
            .await?
            .payment_status;
        Ok(OrderPayments {
            order_id: order_id.to_owned(),
            payment_status,
            charges: with_log,
            refunds,
            prepaid: store::prepayment(&mut conn, order_id).await?,
            cash: cash::of_order(&mut conn, order_id).await?,
        })
    }

    // ------------------------------------------------------------- refunds

    /// Refunds part or all of the order's paid charge. The same request id
    /// answers the same refund; the total never exceeds what was paid.
    pub async fn refund(
        &self,
        order_id: &str,
        request_id: &str,
        amount: Money,
        who: &Principal,
    ) -> Result<Refund> {
        let spec = RefundSpec {
            request_id: request_id.to_owned(),
            amount: Some(amount),
            ..RefundSpec::default()
        };
        self.refund_with(order_id, spec, who).await
    }

    /// A refund by amount, or by order lines (the amount is then their share
    /// of each line's total, and the goods may go back into stock once the
    /// provider has refunded).
    pub async fn refund_with(
        &self,
        order_id: &str,
        spec: RefundSpec,
        who: &Principal,
    ) -> Result<Refund> {
        let request_id = spec.request_id.trim();
        let reason = crate::orders::check_note(spec.reason.clone())?;
        if spec.restock && spec.lines.is_empty() {
            return Err(Error::new(
                Code::InvalidRefund,
                "restock needs the lines whose goods come back",
            ));
        }
        if spec.amount.is_none() && spec.lines.is_empty() {
            return Err(Error::new(
                Code::InvalidRefund,
                "a refund needs an amount or lines",
            ));
        }
        if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
            return Err(Error::new(
                Code::InvalidRequestId,
                format!("request_id must be 1 to {MAX_REQUEST_ID} characters"),
            ));
        }
        if spec.amount.is_some_and(|a| a.fen() <= 0) {
            return Err(Error::new(
                Code::InvalidMoney,
                "a refund must be more than zero",
            ));
        }
        if is_close_request_id(request_id) {
            return Err(Error::new(
                Code::InvalidRequestId,
                "request ids starting with cancel: or reject: are the gateway's own",
            ));
        }
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let facts = store::order_facts(&mut tx, order_id).await?;
        who.check_order(&facts.store, order_id)?;
        let charge = match store::paid_charge(&mut tx, order_id).await? {
            Some(c) => store::lock_paid_charge(&mut tx, &c.id).await?,
            None => None,
        };
        // From here on the charge row is held: what earlier refunds gave
        // back, and the next refund number, cannot change under us.
        if let Some(existing) = store::refund_by_request(&mut tx, order_id, request_id).await? {
            drop(tx);
            let same_lines = spec.lines.is_empty()
                || (existing.lines.len() == spec.lines.len()
                    && existing.lines.iter().zip(&spec.lines).all(|(had, asked)| {
                        had.line_no == asked.line_no
                            && Quantity::parse(had.quantity.unit(), &asked.quantity)
                                .is_ok_and(|q| q == had.quantity)
                    }));
            if spec.amount.is_some_and(|a| a.fen() != existing.amount_fen) || !same_lines {
                return Err(Error::new(
                    Code::IdempotencyConflict,
                    "this request_id was already used with a different refund",
                ));
            }
            return self.drive_refund(existing, self.request_budget()).await;
        }
        let Some(charge) = charge else {
            if let Some(p) = store::prepayment(&mut tx, order_id).await? {
                return Err(Error::new(
                    Code::PaidElsewhere,
                    format!(
                        "this order was paid in the app ({} {}); refund it there",
                        p.provider, p.transaction_id
                    ),
                ));
            }
            return Err(Error::new(
                Code::OrderNotPaid,
                "this order has no payment to refund",
            ));
        };
        let lines = if spec.lines.is_empty() {
            Vec::new()
        } else {
            if spec.restock && facts.status != "completed" {
                return Err(Error::new(
                    Code::RestockNeedsCompletedOrder,
                    "goods go back into stock only from a completed order; cancel an open order instead",
                ));
            }
            refund_lines_of(&mut tx, order_id, &spec.lines).await?
        };
        let amount = match (spec.amount, lines.is_empty()) {
            (Some(a), true) => a,
            (given, _) => {
                let from_lines = lines
                    .iter()
                    .try_fold(0i64, |sum, l| sum.checked_add(l.2))
                    .map(Money::from_fen)
                    .ok_or_else(|| Error::new(Code::InvalidMoney, "the lines come to too much"))?;
                if given.is_some_and(|a| a != from_lines) {
                    return Err(Error::new(
                        Code::RefundAmountMismatch,
                        format!(
                            "the lines come to {from_lines}, not {}",
                            given.unwrap_or(from_lines)
                        ),
                    ));
                }
                if from_lines.fen() <= 0 {
                    return Err(Error::new(
                        Code::InvalidMoney,
                        "a refund must be more than zero",
                    ));
                }
                from_lines
            }
        };
        let refund = self
            .insert_refund_locked(
                &mut tx,
                &charge,
                NewRefundOf {
                    order_id,
                    request_id,
                    amount_fen: amount.fen(),
                    reason: reason.as_deref(),
                    restock: spec.restock,
                    lines: &lines,
                    actor: &who.actor().to_string(),
                    now,
                },
            )
            .await?;
        tx.commit().await?;
        self.drive_refund(refund, self.request_budget()).await
    }

    /// Gives back in full what the order's charge took and is not refunded
    /// yet, before the order is cancelled or rejected (`action`). Safe to
    /// repeat and to resume after a crash: a refund still with the provider
    /// is driven again under its own `out_refund_no`, and only what is
    /// neither refunded nor being refunded is asked for, so money goes back
    /// once. `Ok` when the gateway keeps nothing it took (also when it took
    /// nothing); the order itself is left to the caller.
    pub async fn refund_to_close(
        &self,
        order_id: &str,
        action: proto::order::OrderAction,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        for _ in 0..3 {
            let now = self.db.now_micros();
            let mut tx = self.db.write().await?;
            let facts = store::order_facts(&mut tx, order_id).await?;
            if facts.payment_status == PaymentStatus::Pending {
                return Err(payment_pending(order_id));
            }
            let charge = match store::paid_charge(&mut tx, order_id).await? {
                Some(c) => store::lock_paid_charge(&mut tx, &c.id).await?,
                None => None,
            };
            let Some(charge) = charge else {
                return Ok(());
            };
            let running = store::refunds_of_order(&mut tx, order_id)
                .await?
                .into_iter()
                .find(|r| r.charge_id == charge.id && !r.state.is_final());
            if let Some(r) = running {
                drop(tx);
                let r = self.drive_refund(r, self.request_budget()).await?;
                match r.state {
                    RefundState::Requested | RefundState::Processing => {
                        return Err(refund_pending(order_id));
                    }
                    RefundState::Failed if is_close_request_id(&r.request_id) => {
                        return Err(refund_refused(&r));
                    }
                    // Someone else's refund ended: look again.
                    _ => continue,
                }
            }
            let kept = charge.amount_fen - charge.refunded_fen;
            if kept <= 0 {
                return Ok(());
            }
            // Numbered under the charge's lock, like the refund's own id.
            let n = store::count_refunds(&mut tx, &charge.id).await? + 1;
            let request_id = format!("{}:{n}", action.as_str());
            let why = match reason {
                Some(r) => format!("order {}: {r}", action.as_str()),
                None => format!("order {}", action.as_str()),
            };
            let refund = self
                .insert_refund_locked(
                    &mut tx,
                    &charge,
                    NewRefundOf {
                        order_id,
                        request_id: &request_id,
                        amount_fen: kept,
                        reason: Some(&why),
                        restock: false,
                        lines: &[],
                        actor,
                        now,
                    },
                )
                .await?;
            tx.commit().await?;
            tracing::info!(order = order_id, refund = %refund.id, amount_fen = kept, "refunding in full to {}", action.as_str());
            let r = self.drive_refund(refund, self.request_budget()).await?;
            return match r.state {
                RefundState::Succeeded => Ok(()),
                RefundState::Requested | RefundState::Processing => Err(refund_pending(order_id)),
                RefundState::Failed => Err(refund_refused(&r)),
            };
        }
        Err(Error::new(
            Code::ConcurrentUpdate,
            "the order's payments changed meanwhile; retry",
        ))
    }

    /// Records a pending refund of `charge`, whose row the caller holds
    /// ([`store::lock_paid_charge`]); its id is the charge's id and the
    /// refund's number, the provider's `out_refund_no`.
    async fn insert_refund_locked(
        &self,
        tx: &mut AnyConnection,
        charge: &Charge,
        r: NewRefundOf<'_>,
    ) -> Result<Refund> {
        let n = store::count_refunds(tx, &charge.id).await?;
        if n >= 999 {
            return Err(Error::new(
                Code::TooManyRefunds,
                "this payment has too many refunds",
            ));
        }
        let id = format!("{}R{}", charge.id, n + 1);
        let ok = store::insert_refund(
            tx,
            store::NewRefund {
                id: &id,
                charge_id: &charge.id,
                order_id: r.order_id,
                request_id: r.request_id,
                amount_fen: r.amount_fen,
                reason: r.reason,
                restock: r.restock,
                lines: r.lines,
                created_by: r.actor,
                now: r.now,
            },
        )
        .await?;
        if !ok {
            return Err(Error::new(
                Code::RefundExceedsPaid,
                format!(
                    "{} was paid and {} is already refunded or being refunded",
                    charge.amount, charge.refunded
                ),
            ));
        }
        store::refund_by_request(tx, r.order_id, r.request_id)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("refund {id} vanished")))
    }

    /// Moves a refund that is not final along its state machine, calling
    /// the provider under the refund's own `out_refund_no` (so repeating is
    /// safe). `requested` is sent: accepted, it is `processing`; refused,
    /// `failed`; an unknown answer (no answer, the merchant's balance short)
    /// leaves it `requested` for the sweeper to send again. `processing` is
    /// queried, at most `budget.queries` times: succeeded, the money is back
    /// (payment status, restock, `order.refunded`); closed or CHANGE,
    /// `failed`; unknown to the provider, sent again; still on its way, left
    /// `processing`. Answers the refund as it then is.
    async fn drive_refund(&self, refund: Refund, budget: RefundBudget) -> Result<Refund> {
        if refund.state.is_final() {
            return Ok(refund);
        }
        let Some(_claim) = self.claim(&refund.id) else {
            return Ok(refund);
        };
        let charge = self.load_charge(&refund.charge_id).await?;
        let provider = self.provider_named(&charge.provider)?;
        // As it is now: another process may have moved it meanwhile.
        let mut refund = self.reload_refund(&refund).await?;
        let (mut sent, mut queries) = (false, 0);
        while !refund.state.is_final() {
            match refund.state {
                RefundState::Requested if !sent => {
                    sent = true;
                    self.send_refund(&*provider, &charge, &refund).await?;
                }
                RefundState::Processing if queries < budget.queries => {
                    if queries > 0 {
                        tokio::time::sleep(budget.pause).await;
                    }
                    queries += 1;
                    self.query_refund(&*provider, &charge, &refund).await?;
                }
                // Sent and not accepted, or queried enough: the sweeper goes on.
                _ => break,
            }
            refund = self.reload_refund(&refund).await?;
        }
        Ok(refund)
    }

    async fn reload_refund(&self, refund: &Refund) -> Result<Refund> {
        let mut conn = self.db.pool.acquire().await?;
        store::refund_by_request(&mut conn, &refund.order_id, &refund.request_id)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("refund {} vanished", refund.id)))
    }

    /// One refund call, and what it makes of the refund.
    async fn send_refund(
        &self,
        provider: &dyn Provider,
        charge: &Charge,
        refund: &Refund,
    ) -> Result<()> {
        let answer = provider
            .refund(RefundRequest {
                out_trade_no: &charge.id,
                out_refund_no: &refund.id,
                total_fen: charge.amount_fen,
                refund_fen: refund.amount_fen,
            })
            .await;
        let (outcome, detail) = match &answer {
            ProviderRefund::Done { .. } => ("accepted", None),
            ProviderRefund::Refused { provider_code, .. } => {
                ("refused", Some(provider_code.as_str()))
            }
            ProviderRefund::Unknown { why } => ("unknown", Some(why.as_str())),
        };
        self.log(
            &charge.id,
            &format!("refund {}", refund.id),
            outcome,
            detail,
        )
        .await;
        self.touched(refund).await?;
        match answer {
            // Accepted, not done: the refund query tells the outcome. (A
            // refund sent again while processing stays so.)
            ProviderRefund::Done { refund_ref } => {
                let mut tx = self.db.write().await?;
                store::accept_refund(&mut tx, &refund.id, &refund_ref, self.db.now_micros())
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            ProviderRefund::Refused { code, .. } => self.refund_failed(refund, code).await,
            ProviderRefund::Unknown { .. } => Ok(()),
        }
    }

    /// Notes that the provider was just called about `refund`.
    async fn touched(&self, refund: &Refund) -> Result<()> {
        let mut tx = self.db.write().await?;
        store::refund_queried(&mut tx, &refund.id, self.db.now_micros()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One refund query, and what it makes of the refund.
    async fn query_refund(
        &self,
        provider: &dyn Provider,
        charge: &Charge,
        refund: &Refund,
    ) -> Result<()> {
        let status = provider.refund_query(&charge.id, &refund.id).await;
        let (outcome, detail) = match &status {
            RefundStatus::Succeeded { .. } => ("succeeded", None),
            RefundStatus::Processing => ("processing", None),
            RefundStatus::Failed { provider_code, .. } => ("failed", Some(provider_code.as_str())),
            RefundStatus::NotFound => ("not_found", None),
            RefundStatus::Unknown { why } => ("unknown", Some(why.as_str())),
        };
        self.log(
            &charge.id,
            &format!("refundquery {}", refund.id),
            outcome,
            detail,
        )
        .await;
        self.touched(refund).await?;
        match status {
            RefundStatus::Succeeded { refund_ref } => {
                self.refund_succeeded(refund, charge, &refund_ref).await
            }
            RefundStatus::Failed { code, .. } => self.refund_failed(refund, code).await,
            // Never accepted as far as the provider knows: ask again, under
            // the same out_refund_no. A refund it accepted that many times and
            // then never knew (Alipay answers a refund it closed so) is
            // closed: the cashier sees it failed instead of it cycling.
            RefundStatus::NotFound => {
                if self.times_accepted(charge, refund).await? >= MAX_REFUND_ACCEPTANCES {
                    self.refund_failed(refund, Code::RefundClosed).await
                } else {
                    self.send_refund(provider, charge, refund).await
                }
            }
            RefundStatus::Processing | RefundStatus::Unknown { .. } => Ok(()),
        }
    }

    /// How often the provider accepted this refund, by the exchange log.
    async fn times_accepted(&self, charge: &Charge, refund: &Refund) -> Result<u32> {
        let mut conn = self.db.pool.acquire().await?;
        let call = format!("refund {}", refund.id);
        let n = store::exchanges(&mut conn, &charge.id)
            .await?
            .iter()
            .filter(|e| e.call == call && e.outcome == "accepted")
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The money is back with the customer: the refund succeeds, and the
    /// order's payment status, the restock and `order.refunded` follow in
    /// the same transaction. Nothing happens if it was already final.
    async fn refund_succeeded(
        &self,
        refund: &Refund,
        charge: &Charge,
        provider_ref: &str,
    ) -> Result<()> {
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let facts = store::order_facts(&mut tx, &refund.order_id).await?;
        let seq = events::next_seq(&mut tx, &facts.store)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
        if !store::settle_refund(
            &mut tx,
            refund,
            RefundState::Succeeded,
            None,
            Some(provider_ref),
            now,
        )
        .await?
        {
            return Ok(());
        }
        // Everything refunded that succeeded, running ones not counted.
        let done: i64 = store::refunds_of_order(&mut tx, &refund.order_id)
            .await?
            .iter()
            .filter(|r| r.charge_id == charge.id && r.state == RefundState::Succeeded)
            .map(|r| r.amount_fen)
            .sum();
        store::set_payment_status(
            &mut tx,
            &refund.order_id,
            facts.payment_status,
            PaymentEvent::RefundSucceeded {
                all: done >= charge.amount_fen,
            },
            Some(seq),
            now,
        )
        .await?;
        if refund.restock {
            for line in store::refund_lines(&mut tx, &refund.id).await? {
                sqlx::query(
                    "UPDATE store_items SET on_hand = on_hand + $1, updated_at = $2
                     WHERE store_id = $3 AND sku = $4",
                )
                .bind(line.quantity.milli())
                .bind(now)
                .bind(facts.store.as_str().to_owned())
                .bind(line.sku.clone())
                .execute(&mut **tx)
                .await?;
                let sku = proto::order::Sku::parse(&line.sku).map_err(Error::internal)?;
                crate::catalog::stock_changed(&mut tx, &facts.store, &sku, now).await?;
            }
            crate::catalog::bump_catalog(&mut tx, &facts.store).await?;
        }
        append_event(
            &mut tx,
            &facts.store,
            seq,
            &refund.order_id,
            "order.refunded",
            now,
        )
        .await?;
        tx.commit().await?;
        self.hub.notify(&facts.store);
        tracing::info!(refund = %refund.id, order = %refund.order_id, "refunded");
        Ok(())
    }

    /// The refund will not reach the customer: refused, closed by the
    /// provider, or CHANGE (the customer's account cannot take it back; the
    /// provider holds the money for the merchant to pay out by hand). It
    /// fails with `code`, its amount refundable again except after CHANGE,
    /// and the store's feed gets `order.refund_failed` so a manager sees it.
    async fn refund_failed(&self, refund: &Refund, code: Code) -> Result<()> {
        let now = self.db.now_micros();
        let mut tx = self.db.write().await?;
        let facts = store::order_facts(&mut tx, &refund.order_id).await?;
        let seq = events::next_seq(&mut tx, &facts.store)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
        if !store::settle_refund(&mut tx, refund, RefundState::Failed, Some(code), None, now)
            .await?
        {
            return Ok(());
        }
        crate::orders::append_order_event(
            &mut tx,
            &facts.store,
            seq,
            &refund.order_id,
            "order.refund_failed",
            serde_json::json!({
                "refund_id": refund.id,
                "request_id": refund.request_id,
                "amount": refund.amount,
                "code": code,
            }),
            now,
        )
        .await?;
        tx.commit().await?;
        self.hub.notify(&facts.store);
        tracing::warn!(refund = %refund.id, order = %refund.order_id, code = code.as_str(), "refund failed");
        Ok(())
    }

    // ------------------------------------------------------------- sweeper

    /// The scheduler's sweeper job: [`Payments::sweep_once`] every `every`.
    pub fn sweeper_job(payments: &Arc<Payments>, every: Duration) -> crate::jobs::Job {
        let payments = Arc::clone(payments);
        crate::jobs::Job::new(crate::jobs::PAYMENT_SWEEPER, every, move || {
            let payments = Arc::clone(&payments);
            async move {
                payments.sweep_once().await.map_err(|e| e.into_anyhow())?;
                Ok(crate::jobs::Ran::Done)
            }
        })
    }

    /// Drives every unsettled charge and refund this process is not already
    /// driving: a query settles what the provider knows; a charge past its
    /// deadline and still unpaid is reversed. Returns how many it looked at.
    pub async fn sweep_once(&self) -> Result<usize> {
        let (charges, refunds) = {
            let mut conn = self.db.pool.acquire().await?;
            (
                store::unsettled_charges(&mut conn, SWEEP_BATCH).await?,
                store::unsettled_refunds(&mut conn, SWEEP_BATCH).await?,
            )
        };
        let mut seen = 0;
        for charge in charges {
            let Some(_claim) = self.claim(&charge.id) else {
                continue;
            };
            let Ok(provider) = self.provider_named(&charge.provider) else {
                tracing::warn!(charge = %charge.id, provider = %charge.provider, "cannot sweep: its provider is not configured");
                continue;
            };
            seen += 1;
            tracing::info!(charge = %charge.id, state = charge.state.as_str(), "sweeping");
            if self.query_once(&*provider, &charge.id).await? {
                continue;
            }
            if self.db.now_micros() >= charge.deadline_at {
                self.reverse(&*provider, &charge.id).await?;
            }
        }
        for refund in refunds {
            seen += 1;
            tracing::info!(refund = %refund.id, state = refund.state.as_str(), "sweeping");
            let id = refund.id.clone();
            // One refund that cannot be driven (its provider no longer
            // configured, say) does not hold up the others.
            if let Err(e) = self.drive_refund(refund, RefundBudget::SWEEP).await {
                tracing::warn!(refund = %id, error = %e, "cannot sweep this refund now");
            }
        }
        Ok(seen)
    }
}

/// The charge's id and out_trade_no: at most 28 characters of
/// `[0-9a-f-]`, the same for the same order and attempt.
pub fn out_trade_no(order_id: &str, attempt: i64) -> String {
    let digest = hex::encode(Sha256::digest(order_id.as_bytes()));
    format!("{}-{attempt}", &digest[..24])
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A feed event with the whole order, in the shape of the order events.
async fn append_event(
    conn: &mut AnyConnection,
    store: &StoreId,
    seq: i64,
    order_id: &str,
    kind: &str,
    now: i64,
) -> Result<()> {
    let order = crate::orders::load(conn, order_id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("order {order_id} vanished")))?;
    let payload = crate::orders::feed_payload(kind, seq, &order)?;
    events::append(conn, store, seq, order_id, kind, now, &payload).await
}

/// How far one drive of a refund goes before it is left as it is.
#[derive(Debug, Clone, Copy)]
struct RefundBudget {
    /// Refund queries at most (the refund call is sent once, and again only
    /// when the provider does not know it).
    queries: u32,
    /// Between two queries that found it still processing.
    pause: Duration,
}

impl RefundBudget {
    /// A sweep asks once about each refund and moves on.
    const SWEEP: RefundBudget = RefundBudget {
        queries: 1,
        pause: Duration::ZERO,
    };
}

/// A refund about to be recorded, under the charge row's lock.
struct NewRefundOf<'a> {
    order_id: &'a str,
    request_id: &'a str,
    amount_fen: i64,
    reason: Option<&'a str>,
    restock: bool,
    /// (line_no, qty_milli, amount_fen)
    lines: &'a [(i64, i64, i64)],
    actor: &'a str,
    now: i64,
}

/// `orders::act`, after refunding in full what the gateway's providers took
/// for the order when the action cancels or rejects it (`payments`: the
/// service, when configured). The order changes only once the provider has
/// refunded; a retry after a failure or crash resumes the same refund.
#[allow(clippy::too_many_arguments)]
pub async fn act_refunding(
    db: &Db,
    hub: &Hub,
    payments: Option<&Payments>,
    id: &str,
    action: proto::order::OrderAction,
    reason: Option<String>,
    actor: &str,
    guard: crate::orders::Guard<'_>,
) -> Result<proto::order::Order> {
    use proto::order::OrderAction;
    if let (OrderAction::Cancel | OrderAction::Reject, Some(p)) = (action, payments) {
        // Everything `act` would refuse up front is refused before money moves.
        let checked = crate::orders::check_reason(action, reason.clone())?;
        let current = crate::orders::get(db, id).await?;
        guard(&current)?;
        proto::order::transition(current.status, action)?;
        p.refund_to_close(id, action, checked.as_deref(), actor)
            .await?;
    }
    crate::orders::act(db, hub, id, action, reason, actor, guard).await
}

/// The request ids of the refunds a cancel or reject makes (`cancel:1`, …):
/// the gateway's own, refused from callers so they never collide.
fn is_close_request_id(request_id: &str) -> bool {
    request_id.starts_with("cancel:") || request_id.starts_with("reject:")
}

fn refund_refused(r: &Refund) -> Error {
    Error::new(
        Code::RefundRefused,
        format!(
            "the provider did not refund {} ({}); the order is unchanged",
            r.amount,
            r.code.as_deref().unwrap_or("refused")
        ),
    )
}

/// What a refund asks for: an amount, or order lines (with or without the
/// amount they come to), each under its own request id.
#[derive(Debug, Clone, Default)]
pub struct RefundSpec {
    pub request_id: String,
    pub amount: Option<Money>,
    pub reason: Option<String>,
    pub lines: Vec<RefundLineSpec>,
    /// Put the lines' goods back into the store's stock once refunded.
    pub restock: bool,
}

#[derive(Debug, Clone)]
pub struct RefundLineSpec {
    pub line_no: i64,
    /// As sent, in the line's unit ("1", "0.250").
    pub quantity: String,
}

/// Checks refund lines against the order's lines and what earlier refunds
/// gave back; `(line_no, qty_milli, amount_fen)` for each. A line's amount is
/// its share of the line total, rounded to the fen; the last of a line gets
/// exactly what is left, so a line refunded in parts sums to its total.
async fn refund_lines_of(
    conn: &mut AnyConnection,
    order_id: &str,
    asked: &[RefundLineSpec],
) -> Result<Vec<(i64, i64, i64)>> {
    let order = crate::orders::load(conn, order_id)
        .await?
        .ok_or_else(|| Error::new(Code::OrderNotFound, format!("no order {order_id}")))?;
    let done = store::refunded_per_line(conn, order_id).await?;
    let mut out: Vec<(i64, i64, i64)> = Vec::with_capacity(asked.len());
    for a in asked {
        if out.iter().any(|l| l.0 == a.line_no) {
            return Err(Error::new(
                Code::InvalidRefund,
                format!("line {} is named twice", a.line_no),
            ));
        }
        let line = usize::try_from(a.line_no)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| order.lines.get(i))
            .ok_or_else(|| {
                Error::new(
                    Code::InvalidRefund,
                    format!("order {order_id} has no line {}", a.line_no),
                )
            })?;
        let q = Quantity::parse(line.unit, &a.quantity).map_err(|e| {
            Error::new(
                Code::InvalidQuantity,
                format!("line {}: {}", a.line_no, e.message),
            )
        })?;
        let (qty_done, fen_done) = done.get(&a.line_no).copied().unwrap_or((0, 0));
        let left = line.quantity.milli() - qty_done;
        if q.milli() > left {
            return Err(Error::new(
                Code::RefundExceedsLine,
                format!(
                    "line {} has {} left to refund",
                    a.line_no,
                    Quantity::from_milli(line.unit, left.max(0))
                ),
            ));
        }
        let fen = if q.milli() == left {
            line.line_total.fen() - fen_done
        } else {
            proto::order::share(line.line_total, q, line.quantity)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("refund share out of range")))?
                .fen()
        };
        out.push((a.line_no, q.milli(), fen.max(0)));
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChargeWithLog {
    #[serde(flatten)]
    pub charge: Charge,
    pub exchanges: Vec<Exchange>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderPayments {
    pub order_id: String,
    pub payment_status: PaymentStatus,
    pub charges: Vec<ChargeWithLog>,
    pub refunds: Vec<Refund>,
    /// Paid in the app before the order reached the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepaid: Option<store::Prepayment>,
    /// Paid in cash at the counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cash: Option<cash::CashTender>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_no_is_stable_short_and_per_attempt() {
        let a = out_trade_no("0195f3c2-7d4e-7b8a-9c1d-2e3f4a5b6c7d", 1);
        assert_eq!(a, out_trade_no("0195f3c2-7d4e-7b8a-9c1d-2e3f4a5b6c7d", 1));
        assert_ne!(a, out_trade_no("0195f3c2-7d4e-7b8a-9c1d-2e3f4a5b6c7d", 2));
        assert!(out_trade_no("x", 999).len() <= 28);
        assert!(format!("{}R999", out_trade_no("x", 999)).len() <= 32);
    }
}
