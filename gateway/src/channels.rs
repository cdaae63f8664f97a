//! Third-party channels: delivery platforms push orders and order events in,
//! the store's actions and stock go back out through the outbox.
//!
//! Each platform's wire format lives in an [`Adapter`] (`meituan`: signed
//! form pushes; `webhook`: HMAC-signed JSON for other aggregators). An adapter
//! only verifies and decodes; what a push *does* is the same for every
//! platform and lives in `ingest`: a new order becomes a canonical order
//! (channel `third_party`) in the store's queue, a cancel goes through the
//! one state machine, refund requests become feed events. Every push is
//! idempotent; an event about an order not seen yet is held until it comes.

pub mod alerts;
pub mod ingest;
pub mod meituan;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use proto::meituan::{self as mt, Call, FoodStock, SellStatus, SkuStock};
use proto::order::{CatalogItem, OrderStatus, StoreId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use crate::clock;
use crate::db::Db;
use crate::error::{Code, Result};
use crate::events::Hub;
use crate::outbox::{self, Dispatcher, ItemSync, NewCall, OutboxConfig, Params, Stats};
use crate::supervise;

/// The platform name of the Meituan-style adapter.
pub const MEITUAN: &str = "meituan";
/// Supervised components (see `supervise`).
pub const OUTBOX_DISPATCHER: &str = "outbox_dispatcher";
pub const UNCONFIRMED_ALERTS: &str = "unconfirmed_alerts";

// ------------------------------------------------------------ configuration

/// The Meituan-style platform: where its API is, who we are to it.
#[derive(Clone)]
pub struct MeituanConfig {
    /// The platform's API base; calls go to `{base_url}/api/v1/{path}`.
    pub base_url: String,
    pub app_id: String,
    pub secret: SecretString,
    /// Platform store id → our store id, beyond the default (the same id).
    pub stores: Vec<(String, String)>,
}

impl std::fmt::Debug for MeituanConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeituanConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .field("stores", &self.stores)
            .finish()
    }
}

/// Settings of the channels.
#[derive(Clone)]
pub struct ChannelsConfig {
    pub meituan: Option<MeituanConfig>,
    /// Generic webhook platforms and their HMAC secrets.
    pub webhook_secrets: HashMap<String, SecretString>,
    /// This gateway's public base URL (what platforms POST to), used to check
    /// Meituan signatures; without it the request's Host is used.
    pub public_url: Option<String>,
    /// How far a push's timestamp may be from now, either way.
    pub timestamp_window: Duration,
    /// A third-party order still `created` this long raises an alert.
    pub unconfirmed_alert: Duration,
    /// How often the alert check runs.
    pub alert_check: Duration,
    pub outbox: OutboxConfig,
    /// PEM CA certificates the platform API client trusts beside the public
    /// roots (the configuration's `extra_ca_file`).
    pub extra_ca_pem: Option<String>,
}

impl std::fmt::Debug for ChannelsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsConfig")
            .field("meituan", &self.meituan)
            .field(
                "webhook_platforms",
                &self.webhook_secrets.keys().collect::<Vec<_>>(),
            )
            .field("public_url", &self.public_url)
            .field("timestamp_window", &self.timestamp_window)
            .field("unconfirmed_alert", &self.unconfirmed_alert)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            meituan: None,
            webhook_secrets: HashMap::new(),
            public_url: None,
            timestamp_window: Duration::from_secs(mt::DEFAULT_WINDOW_S as u64),
            unconfirmed_alert: Duration::from_secs(120),
            alert_check: Duration::from_secs(5),
            outbox: OutboxConfig::default(),
            extra_ca_pem: None,
        }
    }
}

/// `[channels]` of the configuration, already merged from the file, the
/// environment and flags (see [`crate::config`]); every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsFile {
    /// Meituan is on when this is set (`GATEWAY_MEITUAN_BASE_URL`).
    pub meituan_base_url: Option<String>,
    pub meituan_app_id: Option<String>,
    pub meituan_secret: Option<SecretString>,
    /// `pstore:store,…` (`GATEWAY_MEITUAN_STORES`).
    pub meituan_stores: Option<String>,
    /// `platform:secret,…` (`GATEWAY_WEBHOOK_SECRETS`).
    pub webhook_secrets: Option<SecretString>,
    pub timestamp_window_s: Option<u64>,
    pub unconfirmed_alert_s: Option<u64>,
}

fn pairs(name: &str, v: &str) -> anyhow::Result<Vec<(String, String)>> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once(':')
                .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .with_context(|| format!("{name}: {p:?} is not name:value"))
        })
        .collect()
}

fn secs(name: &str, value: Option<u64>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(0) => anyhow::bail!("{name} must be a positive number of seconds"),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

impl ChannelsConfig {
    /// From the merged `[channels]` and `[outbox]` (environment
    /// `GATEWAY_MEITUAN_BASE_URL`, `…_APP_ID`, `…_SECRET`, `…_STORES`
    /// (`pstore:store,…`), `GATEWAY_WEBHOOK_SECRETS` (`platform:secret,…`),
    /// `GATEWAY_CHANNEL_TIMESTAMP_WINDOW_S` (300),
    /// `GATEWAY_UNCONFIRMED_ALERT_S` (120), `GATEWAY_OUTBOX_*`), the checked
    /// public URL and the extra CA. `None` when no platform is configured:
    /// channels are off. A bad value is an error naming its key.
    pub fn load(
        file: Option<&ChannelsFile>,
        outbox: Option<&outbox::OutboxFile>,
        public_url: Option<String>,
        extra_ca_pem: Option<String>,
    ) -> anyhow::Result<Option<Self>> {
        let f = file.cloned().unwrap_or_default();
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let meituan = match set(f.meituan_base_url) {
            Some(base) => {
                anyhow::ensure!(
                    base.starts_with("http://") || base.starts_with("https://"),
                    "meituan_base_url (GATEWAY_MEITUAN_BASE_URL) {base:?} must start with \
                     http:// or https://"
                );
                let need = |name: &str, v: Option<String>| {
                    set(v).with_context(|| {
                        format!(
                            "{name} is required with meituan_base_url (GATEWAY_MEITUAN_BASE_URL)"
                        )
                    })
                };
                let stores = match set(f.meituan_stores) {
                    Some(v) => pairs("meituan_stores (GATEWAY_MEITUAN_STORES)", &v)?,
                    None => Vec::new(),
                };
                for (_, store) in &stores {
                    StoreId::parse(store).map_err(|e| {
                        anyhow::anyhow!("meituan_stores (GATEWAY_MEITUAN_STORES): {}", e.message)
                    })?;
                }
                Some(MeituanConfig {
                    base_url: base,
                    app_id: need("meituan_app_id (GATEWAY_MEITUAN_APP_ID)", f.meituan_app_id)?,
                    secret: SecretString::from(need(
                        "meituan_secret (GATEWAY_MEITUAN_SECRET)",
                        f.meituan_secret.map(|s| s.expose_secret().to_owned()),
                    )?),
                    stores,
                })
            }
            None => None,
        };
        let webhook_secrets: HashMap<String, SecretString> =
            match set(f.webhook_secrets.map(|s| s.expose_secret().to_owned())) {
                Some(v) => pairs("webhook_secrets (GATEWAY_WEBHOOK_SECRETS)", &v)
                    // The secret itself never reaches a message.
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "webhook_secrets (GATEWAY_WEBHOOK_SECRETS) must be platform:secret,…"
                        )
                    })?
                    .into_iter()
                    .map(|(p, s)| (p, SecretString::from(s)))
                    .collect(),
                None => HashMap::new(),
            };
        let d = ChannelsConfig::default();
        let unconfirmed_alert = secs(
            "unconfirmed_alert_s (GATEWAY_UNCONFIRMED_ALERT_S)",
            f.unconfirmed_alert_s,
            d.unconfirmed_alert,
        )?;
        let timestamp_window = secs(
            "timestamp_window_s (GATEWAY_CHANNEL_TIMESTAMP_WINDOW_S)",
            f.timestamp_window_s,
            d.timestamp_window,
        )?;
        let outbox = OutboxConfig::load(outbox).context("[outbox]")?;
        if meituan.is_none() && webhook_secrets.is_empty() {
            return Ok(None);
        }
        let config = ChannelsConfig {
            meituan,
            webhook_secrets,
            public_url,
            timestamp_window,
            alert_check: (unconfirmed_alert / 4).clamp(Duration::from_millis(100), d.alert_check),
            unconfirmed_alert,
            outbox,
            extra_ca_pem,
        };
        config.check()?;
        Ok(Some(config))
    }

    pub fn check(&self) -> anyhow::Result<()> {
        for p in self.webhook_secrets.keys() {
            anyhow::ensure!(
                platform_name_ok(p) && p != MEITUAN,
                "webhook_secrets (GATEWAY_WEBHOOK_SECRETS): platform name {p:?} must be 1-32 of a-z, 0-9, '-', '_' and not {MEITUAN}"
            );
        }
        Ok(())
    }
}

pub fn platform_name_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 32
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

// ------------------------------------------------------------ the service

/// The channels of one gateway process: inbound adapters, the dispatcher,
/// the alert check.
pub struct Channels {
    pub config: ChannelsConfig,
    pub stats: Arc<Stats>,
    pub dispatcher: Arc<Dispatcher>,
    meituan: Option<meituan::Adapter>,
}

impl Channels {
    /// Builds the channels without starting anything (see [`Channels::start`]).
    pub fn new(config: ChannelsConfig, db: Db) -> anyhow::Result<Arc<Channels>> {
        config.check()?;
        let stats = Arc::new(Stats::default());
        let mut senders: HashMap<String, Arc<dyn outbox::Sender>> = HashMap::new();
        if let Some(m) = &config.meituan {
            senders.insert(
                MEITUAN.to_owned(),
                Arc::new(
                    meituan::ApiClient::with_extra_ca(
                        m,
                        config.outbox.request_timeout,
                        config.extra_ca_pem.as_deref(),
                    )?
                    .with_clock(db.clock().clone()),
                ),
            );
        }
        let dispatcher = Dispatcher::new(db, config.outbox.clone(), senders, Arc::clone(&stats));
        let meituan = config.meituan.as_ref().map(|m| meituan::Adapter {
            app_id: m.app_id.clone(),
            secret: m.secret.clone(),
            public_url: config.public_url.clone(),
            window_s: config.timestamp_window.as_secs() as i64,
        });
        Ok(Arc::new(Channels {
            config,
            stats,
            dispatcher,
            meituan,
        }))
    }

    /// Builds the channels, registers the configured platform stores, and
    /// starts the dispatcher and the alert check (until `closing`).
    pub async fn start(
        config: ChannelsConfig,
        db: Db,
        hub: Hub,
        closing: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Channels>> {
        let channels = Channels::new(config, db.clone())?;
        channels.register_stores(&db).await?;
        channels.spawn_tasks(db, hub, closing);
        Ok(channels)
    }

    async fn register_stores(&self, db: &Db) -> anyhow::Result<()> {
        if let Some(m) = &self.config.meituan {
            for (pstore, store) in &m.stores {
                let store = StoreId::parse(store)
                    .map_err(|e| anyhow::anyhow!("meituan_stores: {}", e.message))?;
                register_store(db, MEITUAN, pstore, &store)
                    .await
                    .map_err(|e| anyhow::anyhow!("registering store {pstore}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Both tasks are supervised: restarted if they die, shown by `/readyz`.
    fn spawn_tasks(&self, db: Db, hub: Hub, closing: watch::Receiver<bool>) {
        let health = db.health().clone();
        let dispatcher = Arc::clone(&self.dispatcher);
        let (h, c) = (hub.clone(), closing.clone());
        supervise::spawn(
            &health,
            OUTBOX_DISPATCHER,
            Some(closing.clone()),
            move |up| {
                up.ready();
                let run = Arc::clone(&dispatcher).run(h.clone(), c.clone());
                async move {
                    run.await;
                    Ok(())
                }
            },
        );
        let (limit, every, stats) = (
            self.config.unconfirmed_alert,
            self.config.alert_check,
            Arc::clone(&self.stats),
        );
        supervise::spawn(
            &health,
            UNCONFIRMED_ALERTS,
            Some(closing.clone()),
            move |up| {
                up.ready();
                let run = alerts::run(
                    db.clone(),
                    hub.clone(),
                    limit,
                    every,
                    Arc::clone(&stats),
                    closing.clone(),
                );
                async move {
                    run.await;
                    Ok(())
                }
            },
        );
    }

    pub fn meituan(&self) -> Option<&meituan::Adapter> {
        self.meituan.as_ref()
    }

    pub fn webhook_secret(&self, platform: &str) -> Option<&str> {
        self.config
            .webhook_secrets
            .get(platform)
            .map(|s| s.expose_secret())
    }
}

/// Maps a platform store to ours (idempotent: an existing mapping stays).
pub async fn register_store(db: &Db, platform: &str, pstore: &str, store: &StoreId) -> Result<()> {
    let mut tx = db.write().await?;
    sqlx::query(
        "INSERT INTO channel_stores (platform, platform_store_id, store_id, created_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (platform, platform_store_id) DO UPDATE SET store_id = excluded.store_id",
    )
    .bind(platform.to_owned())
    .bind(pstore.to_owned())
    .bind(store.as_str().to_owned())
    .bind(db.now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------ adapters

/// A push as it arrived, before anything is believed.
pub struct RawPush<'a> {
    /// The last path segment (`/channels/meituan/{event}`,
    /// `/channels/webhook/{platform}`).
    pub segment: &'a str,
    pub headers: &'a HeaderMap,
    /// URLs this request may have been sent to (the configured public URL,
    /// then what the Host header says).
    pub urls: Vec<String>,
    pub body: &'a [u8],
    pub now_s: i64,
}

/// Why a push was refused; nothing was written.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Stable code, e.g. [`Code::BadSignature`].
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status the push is answered with: the code's own.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// One platform's wire format: verifies a push and says what it means.
pub trait Adapter: Send + Sync {
    /// The platform's name, as orders show it.
    fn platform(&self) -> &str;
    /// Checks authenticity and freshness, then decodes. Pure: no I/O.
    fn decode(&self, push: &RawPush<'_>) -> std::result::Result<Inbound, Refusal>;
}

/// What a push means, whatever platform sent it.
#[derive(Debug, Clone)]
pub enum Inbound {
    NewOrder(PlatformOrder),
    Event(OrderEvent),
}

impl Inbound {
    pub fn platform_order_id(&self) -> &str {
        match self {
            Inbound::NewOrder(o) => &o.platform_order_id,
            Inbound::Event(e) => &e.platform_order_id,
        }
    }
}

/// A platform's order, in our terms (money in fen).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformOrder {
    pub platform: String,
    pub platform_order_id: String,
    pub platform_store_id: String,
    /// De-duplication reference of the push (its event id, or the order id).
    pub dedupe_ref: String,
    pub day_seq: Option<i64>,
    pub note: String,
    pub recipient_name: String,
    pub recipient_phone: String,
    pub recipient_address: String,
    pub shipping_fee_fen: i64,
    /// What the customer paid.
    pub paid_fen: i64,
    /// Before discounts.
    pub original_fen: i64,
    /// What the store receives after the platform's cut.
    pub store_receives_fen: i64,
    pub items: Vec<PlatformItem>,
    pub discounts: Vec<Discount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformItem {
    /// The platform's item code; mapped to our SKU.
    pub platform_sku: String,
    pub name: String,
    /// How many of the platform's items.
    pub quantity: i64,
    /// Price of one, fen.
    pub price_fen: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discount {
    pub name: String,
    pub amount_fen: i64,
}

/// Something that happened to a platform order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Cancel,
    RefundApply,
    RefundCancel,
    DeliveryStatus,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Cancel => "cancel",
            EventKind::RefundApply => "refund_apply",
            EventKind::RefundCancel => "refund_cancel",
            EventKind::DeliveryStatus => "delivery_status",
        }
    }

    /// The feed event it becomes (a cancel is a status change instead).
    pub fn feed_kind(self) -> &'static str {
        match self {
            EventKind::Cancel => "order.status_changed",
            EventKind::RefundApply => "order.refund_requested",
            EventKind::RefundCancel => "order.refund_cancelled",
            EventKind::DeliveryStatus => "order.delivery_status",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderEvent {
    pub platform: String,
    pub platform_order_id: String,
    pub kind: EventKind,
    /// Equal for duplicates of the same push.
    pub dedupe_ref: String,
    /// What the platform said (reason, refund id, amount, courier…), shown
    /// in the feed event.
    pub detail: serde_json::Value,
}

// ------------------------------------------------------------ outbound

/// The platform call for a store's action on one of its orders, if any.
pub fn action_call(
    platform: &str,
    platform_order_id: &str,
    to: OrderStatus,
    reason: Option<&str>,
) -> Option<(String, Params)> {
    if platform != MEITUAN {
        return None;
    }
    let order_id = platform_order_id.to_owned();
    let call = match to {
        OrderStatus::Accepted => Call::Confirm { order_id },
        OrderStatus::Rejected | OrderStatus::Cancelled => {
            let (reason_code, reason) = reason_code(reason.unwrap_or_default());
            Call::Cancel {
                order_id,
                reason_code,
                reason,
            }
        }
        OrderStatus::Ready => Call::PreparationMealComplete { order_id },
        _ => return None,
    };
    Some(call_parts(&call))
}

pub fn call_parts(call: &Call) -> (String, Params) {
    (call.path().to_owned(), call.params().into_iter().collect())
}

/// A reason may start with the platform's reason code (`"2008 售罄"`);
/// otherwise it is a store cancel.
fn reason_code(reason: &str) -> (i32, String) {
    let reason = reason.trim();
    let digits: String = reason.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<i32>() {
        Ok(code) if !digits.is_empty() && digits.len() <= 6 => {
            let rest = reason[digits.len()..]
                .trim_start_matches([' ', ':', '-'])
                .trim();
            (code, rest.to_owned())
        }
        _ => (mt::REASON_CODE_STORE_CANCEL, reason.to_owned()),
    }
}

/// The calls that tell every platform the store is registered with about a
/// changed item (stock count, sell status, and the end of a snooze).
pub async fn item_calls(
    conn: &mut AnyConnection,
    store: &StoreId,
    item: &CatalogItem,
    what: ItemSync,
    now: i64,
) -> Result<Vec<NewCall>> {
    let rows = sqlx::query(
        "SELECT platform, platform_store_id FROM channel_stores WHERE store_id = $1 AND platform = $2",
    )
    .bind(store.as_str().to_owned())
    .bind(MEITUAN)
    .fetch_all(&mut *conn)
    .await?;
    let mut calls = Vec::new();
    for r in rows {
        let platform: String = r.get("platform");
        let pstore: String = r.get("platform_store_id");
        let mapped = sqlx::query(
            "SELECT platform_sku, per_item_milli FROM sku_mappings
             WHERE platform = $1 AND sku = $2 AND store_id IN ('', $3) ORDER BY platform_sku",
        )
        .bind(platform.clone())
        .bind(item.sku.as_str().to_owned())
        .bind(store.as_str().to_owned())
        .fetch_all(&mut *conn)
        .await?;
        let mut codes: Vec<(String, i64)> = mapped
            .iter()
            .map(|m| (m.get("platform_sku"), m.get("per_item_milli")))
            .collect();
        if codes.is_empty() {
            // Default mapping: the platform's code is our SKU.
            codes.push((item.sku.to_string(), 1000));
        }
        for (psku, per_item) in codes {
            let key = format!("sku:{pstore}:{psku}");
            let mut push = |call: Call, key: String, not_before: Option<i64>| {
                let (path, params) = call_parts(&call);
                calls.push(NewCall {
                    platform: platform.clone(),
                    order_key: key,
                    path,
                    params,
                    store_id: Some(store.to_string()),
                    order_id: None,
                    not_before,
                });
            };
            if what.stock {
                let count = item.sellable.milli() / per_item.max(1);
                push(
                    Call::SkuStock {
                        app_poi_code: pstore.clone(),
                        foods: vec![FoodStock {
                            app_food_code: psku.clone(),
                            skus: vec![SkuStock {
                                sku_id: psku.clone(),
                                stock: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
                            }],
                        }],
                    },
                    key.clone(),
                    None,
                );
            }
            if what.status {
                let on_sale = item.listed && item.snoozed_until.is_none();
                let status = |s| Call::SellStatus {
                    app_poi_code: pstore.clone(),
                    sell_status: s,
                    app_food_codes: vec![psku.clone()],
                };
                push(
                    status(if on_sale {
                        SellStatus::OnSale
                    } else {
                        SellStatus::SoldOut
                    }),
                    key.clone(),
                    None,
                );
                let until = item
                    .snoozed_until
                    .as_deref()
                    .and_then(clock::parse_rfc3339)
                    .filter(|u| *u > now);
                if let (true, Some(until)) = (item.listed, until) {
                    push(
                        status(SellStatus::OnSale),
                        format!("{key}:snooze_end"),
                        Some(until),
                    );
                }
            }
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_lead_the_reason_or_default_to_a_store_cancel() {
        assert_eq!(reason_code("2008 售罄"), (2008, "售罄".into()));
        assert_eq!(reason_code("2007: 太忙"), (2007, "太忙".into()));
        assert_eq!(
            reason_code("售罄"),
            (mt::REASON_CODE_STORE_CANCEL, "售罄".into())
        );
        assert_eq!(
            reason_code(""),
            (mt::REASON_CODE_STORE_CANCEL, String::new())
        );
        assert_eq!(
            reason_code("12345678901 big"),
            (mt::REASON_CODE_STORE_CANCEL, "12345678901 big".into())
        );
    }

    #[test]
    fn store_actions_map_to_platform_calls() {
        let call = |to, reason| action_call(MEITUAN, "99", to, reason).map(|(p, _)| p);
        assert_eq!(
            call(OrderStatus::Accepted, None).as_deref(),
            Some("order/confirm")
        );
        assert_eq!(
            call(OrderStatus::Rejected, Some("x")).as_deref(),
            Some("order/cancel")
        );
        assert_eq!(
            call(OrderStatus::Cancelled, Some("x")).as_deref(),
            Some("order/cancel")
        );
        assert_eq!(
            call(OrderStatus::Ready, None).as_deref(),
            Some("order/preparationMealComplete")
        );
        assert_eq!(call(OrderStatus::Completed, None), None);
        assert_eq!(action_call("aggr", "99", OrderStatus::Accepted, None), None);
        let (_, p) = action_call(MEITUAN, "99", OrderStatus::Rejected, Some("2008 售罄")).unwrap();
        assert_eq!(p["reason_code"], "2008");
        assert_eq!(p["order_id"], "99");
    }

    #[test]
    fn configuration_pairs_and_platform_names() {
        assert_eq!(
            pairs("X", "a:b, c:d,").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert!(pairs("X", "a").is_err());
        assert!(pairs("X", ":b").is_err());
        assert!(platform_name_ok("ele-me_2"));
        assert!(!platform_name_ok("Ele"));
        assert!(!platform_name_ok(""));
        let mut c = ChannelsConfig::default();
        c.webhook_secrets
            .insert(MEITUAN.into(), SecretString::from("x".to_owned()));
        assert!(c.check().is_err(), "meituan is not a webhook platform");
    }
}
