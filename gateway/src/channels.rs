//! Third-party channels: delivery platforms push orders and order events in,
//! the store's actions and stock go back out through the outbox.
//!
//! Each platform's wire format is a [`Platform`](crate::platforms::Platform)
//! (`platforms::meituan`: signed form pushes; `platforms::webhook`:
//! HMAC-signed JSON for other aggregators), which only verifies and decodes.
//! What a push *does* is the same for every platform and lives here:
//! `push` hands it to the platform and then to `ingest`, where a new order
//! becomes a canonical order (channel `third_party`) in the store's queue, a
//! cancel goes through the one state machine, refund requests become feed
//! events. Every push is idempotent; an event about an order not seen yet is
//! held until it comes. `actions` are the store's platform-only actions
//! (self-delivery, refunds), `mappings` the SKU and store mappings, `alerts`
//! the unconfirmed-order alert.

pub mod actions;
pub mod alerts;
pub mod ingest;
pub mod mappings;
pub mod push;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proto::meituan as mt;
use proto::order::StoreId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::watch;

use crate::db::Db;
use crate::error::Result;
use crate::events::Hub;
use crate::outbox::{self, Dispatcher, OutboxConfig, Stats};
use crate::platforms::{self, Credentials, Sender};

// The platforms' modules and the neutral types of a push, where callers
// (and `ingest`) have always found them.
pub use crate::platforms::meituan::{MEITUAN, MeituanConfig, call_parts};
pub use crate::platforms::{
    Discount, EventKind, Inbound, OrderEvent, PlatformItem, PlatformOrder, RawPush, Refusal,
    meituan, webhook,
};

/// Their jobs' names (see `jobs`).
pub use crate::jobs::{OUTBOX_DISPATCHER, UNCONFIRMED_ALERTS};

// ------------------------------------------------------------ configuration

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
                platforms::name_ok(p) && p != MEITUAN,
                "webhook_secrets (GATEWAY_WEBHOOK_SECRETS): platform name {p:?} must be 1-32 of a-z, 0-9, '-', '_' and not {MEITUAN}"
            );
        }
        Ok(())
    }
}

// ------------------------------------------------------------ the service

/// The channels of one gateway process: the platforms' settings, the
/// dispatcher, the alert check.
pub struct Channels {
    pub config: ChannelsConfig,
    pub stats: Arc<Stats>,
    pub dispatcher: Arc<Dispatcher>,
}

impl Channels {
    /// Builds the channels without starting anything (see [`Channels::start`]).
    pub fn new(config: ChannelsConfig, db: Db) -> anyhow::Result<Arc<Channels>> {
        config.check()?;
        let stats = Arc::new(Stats::default());
        let mut senders: HashMap<String, Arc<dyn Sender>> = HashMap::new();
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
        Ok(Arc::new(Channels {
            config,
            stats,
            dispatcher,
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

    pub async fn register_stores(&self, db: &Db) -> anyhow::Result<()> {
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

    /// The dispatcher and the alert check, as the scheduler's jobs.
    pub fn jobs(&self, db: &Db, hub: &Hub) -> Vec<crate::jobs::Job> {
        vec![
            self.dispatcher.job(hub),
            alerts::job(
                db.clone(),
                hub.clone(),
                self.config.unconfirmed_alert,
                self.config.alert_check,
                Arc::clone(&self.stats),
            ),
        ]
    }

    /// Both jobs on a scheduler of their own (`app::build` puts them on the
    /// gateway's one instead): supervised, shown by `/readyz`.
    fn spawn_tasks(&self, db: Db, hub: Hub, closing: watch::Receiver<bool>) {
        let jobs = self.jobs(&db, &hub);
        crate::jobs::start(
            &db,
            "channel_jobs",
            &crate::jobs::JobsConfig::default(),
            jobs,
            Some(closing),
        );
    }

    fn window_s(&self) -> i64 {
        self.config.timestamp_window.as_secs() as i64
    }

    /// What Meituan's pushes are checked with, if it is configured.
    pub fn meituan_credentials(&self) -> Option<Credentials<'_>> {
        self.config.meituan.as_ref().map(|m| Credentials {
            app_id: Some(&m.app_id),
            secret: m.secret.expose_secret(),
            window_s: self.window_s(),
        })
    }

    /// What a webhook platform's pushes are checked with, if it is configured.
    pub fn webhook_credentials(&self, platform: &str) -> Option<Credentials<'_>> {
        self.config
            .webhook_secrets
            .get(platform)
            .map(|s| Credentials {
                app_id: None,
                secret: s.expose_secret(),
                window_s: self.window_s(),
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_pairs_and_platform_names() {
        assert_eq!(
            pairs("X", "a:b, c:d,").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert!(pairs("X", "a").is_err());
        assert!(pairs("X", ":b").is_err());
        let mut c = ChannelsConfig::default();
        c.webhook_secrets
            .insert(MEITUAN.into(), SecretString::from("x".to_owned()));
        assert!(c.check().is_err(), "meituan is not a webhook platform");
    }
}
