//! The one configuration of the gateway, loaded once: built-in defaults,
//! then the TOML file (`--config` / `GATEWAY_CONFIG`), then the environment
//! (`GATEWAY_*`), then flags (`--listen`, `--database-url`, `--no-migrate`,
//! `--demo`, and `--set key=value` for any key). Sections: `[http]`,
//! `[database]`, `[payments]`, `[channels]`, `[outbox]`, `[retention]`, `[jobs]`. Each layer overrides the one
//! before key by key; every setting has one TOML key and (nearly) every one
//! an environment variable, listed in [`SETTINGS`]. This is the only module
//! that reads the environment.
//!
//! [`Settings::load`] merges the layers into one TOML document and parses it
//! (unknown keys are refused); [`Settings::config`] checks every section and
//! gives the [`Config`] the gateway runs with, or one line naming the
//! section and the key that is wrong. [`Settings::show`] prints the merged
//! document as TOML, secrets as `"***"`, each value with its source.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::channels::{ChannelsConfig, ChannelsFile};
use crate::outbox::OutboxFile;
use crate::payments::{PaymentsConfig, PaymentsFile};
use crate::retention::{RetentionConfig, RetentionFile};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/gateway.db";

/// The merged TOML document; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Seed demo stores, products and stock on `serve`, and print demo keys.
    pub demo: Option<bool>,
    /// Log filter, e.g. `info,gateway=debug` (environment: RUST_LOG).
    pub log: Option<String>,
    /// `text` (the default) or `json`: one JSON object per log line
    /// (environment: GATEWAY_LOG_FORMAT).
    pub log_format: Option<String>,
    /// PEM file of CA certificates every outbound client (payment
    /// providers, platforms) trusts beside the public roots.
    pub extra_ca_file: Option<String>,
    /// Where and how the gateway listens: address, public URL, trusted
    /// proxies, client timeouts and caps.
    pub http: Option<crate::http::HttpFile>,
    /// The store's database.
    pub database: Option<DatabaseFile>,
    /// Payment-code charges.
    pub payments: Option<PaymentsFile>,
    /// Delivery platforms.
    pub channels: Option<ChannelsFile>,
    /// The platform-call dispatcher.
    pub outbox: Option<OutboxFile>,
    /// How long old rows are kept.
    pub retention: Option<RetentionFile>,
    /// The scheduler: job leases, this instance's name, the WAL checkpoint.
    pub jobs: Option<crate::jobs::JobsFile>,
}

/// `[database]` in the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    /// `sqlite://…` (the embedded default) or `postgres://…`.
    pub url: Option<String>,
    /// Apply pending migrations on `serve` (default true).
    pub migrate: Option<bool>,
    /// PostgreSQL: wake other instances' feed readers with LISTEN/NOTIFY
    /// (default true; off, they see changes at their next poll).
    pub notify: Option<bool>,
}

/// Keys of earlier releases, read as their new names (a file, `--set`):
/// the top-level `listen`, `database_url`, `migrate`, `public_url`,
/// `trusted_proxies` and the `[limits]` section.
pub const RENAMED: &[(&str, &str)] = &[
    ("listen", "http.listen"),
    ("public_url", "http.public_url"),
    ("trusted_proxies", "http.trusted_proxies"),
    ("database_url", "database.url"),
    ("migrate", "database.migrate"),
    ("limits.header_read_timeout_s", "http.header_read_timeout_s"),
    ("limits.body_timeout_s", "http.body_timeout_s"),
    ("limits.request_timeout_s", "http.request_timeout_s"),
    ("limits.idle_timeout_s", "http.idle_timeout_s"),
    ("limits.max_connections", "http.max_connections"),
    ("limits.streams_per_key", "http.streams_per_key"),
];

/// A key as it is named now.
fn current_name(key: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// A file's document with the keys of earlier releases under their new
/// names; the old and the new name of one key together are refused.
fn renamed(file: toml::Table) -> anyhow::Result<toml::Table> {
    let mut out = toml::Table::new();
    let mut moved: Vec<(String, toml::Value)> = Vec::new();
    for (k, v) in file {
        match (k.as_str(), v) {
            ("limits", toml::Value::Table(t)) => {
                for (kk, vv) in t {
                    let old = format!("limits.{kk}");
                    let new = current_name(&old);
                    // An unknown key keeps its old place, to be refused there.
                    moved.push((if new == old { old } else { new.to_owned() }, vv));
                }
            }
            (key, v) => {
                let new = current_name(key);
                if new == key {
                    out.insert(k, v);
                } else {
                    moved.push((new.to_owned(), v));
                }
            }
        }
    }
    for (key, v) in moved {
        anyhow::ensure!(
            get(&out, &key).is_none(),
            "{key} is set twice (once under its old name)"
        );
        put(&mut out, &key, v)?;
    }
    Ok(out)
}

/// How a setting's text (from the environment or a flag) becomes TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Text that is never shown.
    Secret,
    Number,
    /// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`.
    Bool,
    /// A flag that says the opposite of its key (`GATEWAY_NO_MIGRATE`).
    NotBool,
    /// Comma-separated.
    List,
}

/// One setting: its TOML key (`section.key` or a top-level `key`), its
/// environment variable, how its text reads, and its default as TOML.
#[derive(Debug)]
pub struct Setting {
    pub key: &'static str,
    pub env: Option<&'static str>,
    pub kind: Kind,
    pub default: Option<&'static str>,
}

const fn s(
    key: &'static str,
    env: &'static str,
    kind: Kind,
    default: Option<&'static str>,
) -> Setting {
    Setting {
        key,
        env: if env.is_empty() { None } else { Some(env) },
        kind,
        default,
    }
}

use Kind::{Bool, List, NotBool, Number, Secret, Text};

/// Every setting, in the order `config show` prints them.
pub const SETTINGS: &[Setting] = &[
    s("demo", "GATEWAY_DEMO", Bool, Some("false")),
    s("log", "RUST_LOG", Text, None),
    s("log_format", "GATEWAY_LOG_FORMAT", Text, Some("\"text\"")),
    s("extra_ca_file", "GATEWAY_EXTRA_CA_FILE", Text, None),
    // [http]
    s(
        "http.listen",
        "GATEWAY_LISTEN",
        Text,
        Some("\"127.0.0.1:8080\""),
    ),
    s("http.public_url", "GATEWAY_PUBLIC_URL", Text, None),
    s(
        "http.trusted_proxies",
        "GATEWAY_TRUSTED_PROXIES",
        List,
        None,
    ),
    s(
        "http.header_read_timeout_s",
        "GATEWAY_HEADER_READ_TIMEOUT_S",
        Number,
        Some("10"),
    ),
    s(
        "http.body_timeout_s",
        "GATEWAY_BODY_TIMEOUT_S",
        Number,
        Some("30"),
    ),
    s(
        "http.request_timeout_s",
        "GATEWAY_REQUEST_TIMEOUT_S",
        Number,
        Some("60"),
    ),
    s(
        "http.idle_timeout_s",
        "GATEWAY_IDLE_TIMEOUT_S",
        Number,
        Some("75"),
    ),
    s(
        "http.max_connections",
        "GATEWAY_MAX_CONNECTIONS",
        Number,
        Some("1024"),
    ),
    s(
        "http.streams_per_key",
        "GATEWAY_STREAMS_PER_KEY",
        Number,
        Some("8"),
    ),
    // [database]
    s(
        "database.url",
        "GATEWAY_DATABASE_URL",
        Secret,
        Some("\"sqlite://data/gateway.db\""),
    ),
    s(
        "database.migrate",
        "GATEWAY_NO_MIGRATE",
        NotBool,
        Some("true"),
    ),
    s(
        "database.notify",
        "GATEWAY_DATABASE_NOTIFY",
        Bool,
        Some("true"),
    ),
    // [payments]
    s(
        "payments.wechatpay_base_url",
        "GATEWAY_WECHATPAY_BASE_URL",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_appid",
        "GATEWAY_WECHATPAY_APPID",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_mch_id",
        "GATEWAY_WECHATPAY_MCH_ID",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_key",
        "GATEWAY_WECHATPAY_KEY",
        Secret,
        None,
    ),
    s(
        "payments.wechatpay_sign_type",
        "GATEWAY_WECHATPAY_SIGN_TYPE",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_client_cert_file",
        "GATEWAY_WECHATPAY_CLIENT_CERT_FILE",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_client_key_file",
        "GATEWAY_WECHATPAY_CLIENT_KEY_FILE",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_client_p12_file",
        "GATEWAY_WECHATPAY_CLIENT_P12_FILE",
        Text,
        None,
    ),
    s(
        "payments.wechatpay_client_p12_password",
        "GATEWAY_WECHATPAY_CLIENT_P12_PASSWORD",
        Secret,
        None,
    ),
    s(
        "payments.alipay_base_url",
        "GATEWAY_ALIPAY_BASE_URL",
        Text,
        None,
    ),
    s(
        "payments.alipay_app_id",
        "GATEWAY_ALIPAY_APP_ID",
        Text,
        None,
    ),
    s(
        "payments.alipay_private_key_file",
        "GATEWAY_ALIPAY_PRIVATE_KEY_FILE",
        Text,
        None,
    ),
    s(
        "payments.alipay_public_key_file",
        "GATEWAY_ALIPAY_PUBLIC_KEY_FILE",
        Text,
        None,
    ),
    // The top-level extra_ca_file (GATEWAY_EXTRA_CA_FILE) wins over this one;
    // either is trusted by every outbound client.
    s("payments.extra_ca_file", "", Text, None),
    s(
        "payments.poll_ms",
        "GATEWAY_PAYMENTS_POLL_MS",
        Number,
        Some("5000"),
    ),
    s(
        "payments.deadline_ms",
        "GATEWAY_PAYMENTS_DEADLINE_MS",
        Number,
        Some("30000"),
    ),
    s(
        "payments.timeout_ms",
        "GATEWAY_PAYMENTS_TIMEOUT_MS",
        Number,
        Some("10000"),
    ),
    s(
        "payments.sweep_ms",
        "GATEWAY_PAYMENTS_SWEEP_MS",
        Number,
        Some("30000"),
    ),
    // [channels]
    s(
        "channels.meituan_base_url",
        "GATEWAY_MEITUAN_BASE_URL",
        Text,
        None,
    ),
    s(
        "channels.meituan_app_id",
        "GATEWAY_MEITUAN_APP_ID",
        Text,
        None,
    ),
    s(
        "channels.meituan_secret",
        "GATEWAY_MEITUAN_SECRET",
        Secret,
        None,
    ),
    s(
        "channels.meituan_stores",
        "GATEWAY_MEITUAN_STORES",
        Text,
        None,
    ),
    s(
        "channels.webhook_secrets",
        "GATEWAY_WEBHOOK_SECRETS",
        Secret,
        None,
    ),
    s(
        "channels.timestamp_window_s",
        "GATEWAY_CHANNEL_TIMESTAMP_WINDOW_S",
        Number,
        Some("300"),
    ),
    s(
        "channels.unconfirmed_alert_s",
        "GATEWAY_UNCONFIRMED_ALERT_S",
        Number,
        Some("120"),
    ),
    // [outbox]
    s(
        "outbox.backoff_ms",
        "GATEWAY_OUTBOX_BACKOFF_MS",
        Number,
        Some("1000"),
    ),
    s(
        "outbox.backoff_max_ms",
        "GATEWAY_OUTBOX_BACKOFF_MAX_MS",
        Number,
        Some("300000"),
    ),
    s(
        "outbox.max_attempts",
        "GATEWAY_OUTBOX_MAX_ATTEMPTS",
        Number,
        Some("20"),
    ),
    s(
        "outbox.max_age_s",
        "GATEWAY_OUTBOX_MAX_AGE_S",
        Number,
        Some("86400"),
    ),
    s(
        "outbox.poll_ms",
        "GATEWAY_OUTBOX_POLL_MS",
        Number,
        Some("1000"),
    ),
    s(
        "outbox.timeout_ms",
        "GATEWAY_OUTBOX_TIMEOUT_MS",
        Number,
        Some("10000"),
    ),
    s(
        "outbox.concurrency",
        "GATEWAY_OUTBOX_CONCURRENCY",
        Number,
        Some("16"),
    ),
    // [retention]
    s(
        "retention.idempotency_days",
        "GATEWAY_RETENTION_IDEMPOTENCY_DAYS",
        Number,
        Some("7"),
    ),
    s(
        "retention.outbox_days",
        "GATEWAY_RETENTION_OUTBOX_DAYS",
        Number,
        Some("30"),
    ),
    s(
        "retention.inbox_days",
        "GATEWAY_RETENTION_INBOX_DAYS",
        Number,
        Some("30"),
    ),
    s(
        "retention.feed_days",
        "GATEWAY_RETENTION_FEED_DAYS",
        Number,
        Some("30"),
    ),
    s(
        "retention.held_days",
        "GATEWAY_RETENTION_HELD_DAYS",
        Number,
        Some("7"),
    ),
    s(
        "retention.interval_s",
        "GATEWAY_RETENTION_INTERVAL_S",
        Number,
        Some("3600"),
    ),
    s(
        "retention.batch",
        "GATEWAY_RETENTION_BATCH",
        Number,
        Some("1000"),
    ),
    // [jobs]
    s(
        "jobs.lease_ms",
        "GATEWAY_JOBS_LEASE_MS",
        Number,
        Some("3000"),
    ),
    s("jobs.instance", "GATEWAY_INSTANCE", Text, None),
    s(
        "jobs.wal_checkpoint_ms",
        "GATEWAY_JOBS_WAL_CHECKPOINT_MS",
        Number,
        Some("100"),
    ),
];

/// The environment variables the configuration reads (`GATEWAY_*`),
/// captured once: the process's, or a given set (tests).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// This process's `GATEWAY_*` variables and `RUST_LOG` (those that are
    /// valid UTF-8).
    pub fn process() -> Env {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("GATEWAY_") || k == "RUST_LOG")
            .collect())
    }

    /// No variables at all.
    pub fn empty() -> Env {
        Env::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> Env {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env(&'static str),
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

fn setting(key: &str) -> Option<&'static Setting> {
    let key = current_name(key);
    SETTINGS.iter().find(|s| s.key == key)
}

/// `text` (from the environment or a flag, named `from`) as the TOML value
/// of a setting of `kind`.
fn value(kind: Kind, from: &str, text: &str) -> anyhow::Result<toml::Value> {
    let t = text.trim();
    let truth = |t: &str| match t.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "f" => Some(false),
        _ => None,
    };
    Ok(match kind {
        Text | Secret => toml::Value::String(text.to_owned()),
        Number => toml::Value::Integer(
            t.parse::<u64>()
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .with_context(|| format!("{from} must be a whole number, got {t:?}"))?,
        ),
        Bool | NotBool => {
            let b = truth(t).with_context(|| format!("{from} must be true or false, got {t:?}"))?;
            toml::Value::Boolean(if kind == NotBool { !b } else { b })
        }
        List => toml::Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| toml::Value::String(p.to_owned()))
                .collect(),
        ),
    })
}

fn put(doc: &mut toml::Table, key: &str, v: toml::Value) -> anyhow::Result<()> {
    match key.split_once('.') {
        None => {
            doc.insert(key.to_owned(), v);
        }
        Some((section, k)) => {
            let table = doc
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let table = table
                .as_table_mut()
                .with_context(|| format!("[{section}] must be a table"))?;
            table.insert(k.to_owned(), v);
        }
    }
    Ok(())
}

fn get<'a>(doc: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        None => doc.get(key),
        Some((section, k)) => doc.get(section)?.as_table()?.get(k),
    }
}

/// A flag for one setting: `key=value` (`--set payments.poll_ms=500`).
pub fn parse_set(kv: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--set {kv:?} is not key=value"))?;
    let k = k.trim();
    anyhow::ensure!(
        setting(k).is_some(),
        "--set {k}: no such setting (see `gateway config show`)"
    );
    Ok((k.to_owned(), v.to_owned()))
}

/// The merged configuration document and where each value came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub file: FileConfig,
    doc: toml::Table,
    sources: BTreeMap<String, Source>,
}

/// An error as one line (TOML parse errors come with a picture of the line).
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Settings {
    /// The log format the file, environment and flags ask for (text when it
    /// is not one: loading the configuration then says why).
    pub fn log_format(&self) -> crate::telemetry::LogFormat {
        self.file
            .log_format
            .as_deref()
            .and_then(|f| crate::telemetry::LogFormat::parse(f).ok())
            .unwrap_or_default()
    }

    /// Defaults, then the file at `path` (if any), then `env`, then `flags`
    /// (`(key, text)` pairs, later ones win).
    pub fn load(
        path: Option<&Path>,
        env: &Env,
        flags: &[(String, String)],
    ) -> anyhow::Result<Settings> {
        let mut doc = toml::Table::new();
        let mut sources = BTreeMap::new();
        for s in SETTINGS {
            if let Some(d) = s.default {
                let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {d}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .with_context(|| format!("bad built-in default of {}", s.key))?;
                put(&mut doc, s.key, v)?;
                sources.insert(s.key.to_owned(), Source::Default);
            }
        }
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file: toml::Table = toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!("parsing config file {}: {}", path.display(), one_line(e))
            })?;
            let file = renamed(file).with_context(|| format!("config file {}", path.display()))?;
            for (k, v) in file {
                match (v, doc.get_mut(&k)) {
                    (toml::Value::Table(t), Some(toml::Value::Table(into))) => {
                        for (kk, vv) in t {
                            sources.insert(format!("{k}.{kk}"), Source::File);
                            into.insert(kk, vv);
                        }
                    }
                    (v, _) => {
                        match &v {
                            toml::Value::Table(t) => {
                                for kk in t.keys() {
                                    sources.insert(format!("{k}.{kk}"), Source::File);
                                }
                            }
                            _ => {
                                sources.insert(k.clone(), Source::File);
                            }
                        }
                        doc.insert(k, v);
                    }
                }
            }
        }
        for s in SETTINGS {
            if let Some(name) = s.env
                && let Some(text) = env.get(name)
            {
                put(&mut doc, s.key, value(s.kind, name, text)?)?;
                sources.insert(s.key.to_owned(), Source::Env(name));
            }
        }
        for (k, text) in flags {
            let s = setting(k).with_context(|| format!("--set {k}: no such setting"))?;
            // A flag names the key itself: `migrate=false`, not its inverted variable.
            let kind = if s.kind == NotBool { Bool } else { s.kind };
            put(&mut doc, s.key, value(kind, &format!("--set {k}"), text)?)?;
            sources.insert(s.key.to_owned(), Source::Flag);
        }
        let file: FileConfig = toml::Value::Table(doc.clone())
            .try_into()
            .map_err(|e| anyhow::anyhow!("configuration: {}", one_line(e)))?;
        Ok(Settings { file, doc, sources })
    }

    /// Where `key` (`section.key` or `key`) came from; `None`: not set.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.sources.get(key)
    }

    /// Every section checked: the configuration `serve` runs with, or the
    /// first wrong section and key, in one line.
    pub fn config(&self) -> anyhow::Result<Config> {
        let f = &self.file;
        let http = f.http.clone().unwrap_or_default();
        let edge = crate::http::Edge::load(&http).context("[http]")?;
        let database = f.database.clone().unwrap_or_default();
        // One extra CA for every outbound client: the top-level key
        // (GATEWAY_EXTRA_CA_FILE), else the one in [payments].
        let mut payments = f.payments.clone().unwrap_or_default();
        let extra_ca_file = f.extra_ca_file.clone().or(payments.extra_ca_file.clone());
        payments.extra_ca_file = extra_ca_file.clone();
        let payments = PaymentsConfig::load(Some(&payments)).context("[payments]")?;
        let extra_ca_pem =
            crate::outbound::extra_ca(extra_ca_file.as_deref()).context("extra_ca_file")?;
        let channels = ChannelsConfig::load(
            f.channels.as_ref(),
            f.outbox.as_ref(),
            edge.public_url.clone(),
            extra_ca_pem,
        )
        .context("[channels]")?;
        let retention = RetentionConfig::load(f.retention.as_ref()).context("[retention]")?;
        if let Some(f) = &f.log_format {
            crate::telemetry::LogFormat::parse(f)?;
        }
        let jobs = crate::jobs::JobsConfig::load(f.jobs.as_ref()).context("[jobs]")?;
        let listen = http
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        anyhow::ensure!(
            !listen.trim().is_empty(),
            "[http]: listen must not be empty"
        );
        Ok(Config {
            listen,
            database_url: database
                .url
                .clone()
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            migrate: database.migrate.unwrap_or(true),
            feed_notify: database.notify.unwrap_or(true),
            demo: f.demo.unwrap_or(false),
            log: f.log.clone(),
            edge,
            payments,
            channels,
            retention,
            jobs,
        })
    }

    /// Each section checked on its own by the loader [`Settings::config`]
    /// uses, with that loader's own message when it is wrong (`gateway
    /// check`): `[http]`, `[database]`, `[payments]`, `extra_ca_file`,
    /// `[channels]`, `[outbox]`, `[retention]`, `[jobs]`.
    pub fn sections(&self) -> Vec<(&'static str, anyhow::Result<()>)> {
        let f = &self.file;
        let http = f.http.clone().unwrap_or_default();
        let edge = crate::http::Edge::load(&http).and_then(|edge| {
            anyhow::ensure!(
                !http.listen.as_deref().is_some_and(|l| l.trim().is_empty()),
                "listen must not be empty"
            );
            Ok(edge)
        });
        let public_url = edge.as_ref().ok().and_then(|e| e.public_url.clone());
        let database = f.database.clone().unwrap_or_default();
        let url = database
            .url
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let mut payments = f.payments.clone().unwrap_or_default();
        let extra_ca_file = f.extra_ca_file.clone().or(payments.extra_ca_file.clone());
        payments.extra_ca_file = extra_ca_file.clone();
        vec![
            ("[http]", edge.map(|_| ())),
            ("[database]", crate::db::Backend::of_url(&url).map(|_| ())),
            (
                "[payments]",
                PaymentsConfig::load(Some(&payments)).map(|_| ()),
            ),
            (
                "extra_ca_file",
                crate::outbound::extra_ca(extra_ca_file.as_deref()).map(|_| ()),
            ),
            (
                "log_format",
                f.log_format.as_deref().map_or(Ok(()), |l| {
                    crate::telemetry::LogFormat::parse(l).map(|_| ())
                }),
            ),
            (
                "[channels]",
                ChannelsConfig::load(f.channels.as_ref(), None, public_url, None).map(|_| ()),
            ),
            (
                "[outbox]",
                crate::outbox::OutboxConfig::load(f.outbox.as_ref()).map(|_| ()),
            ),
            (
                "[retention]",
                RetentionConfig::load(f.retention.as_ref()).map(|_| ()),
            ),
            (
                "[jobs]",
                crate::jobs::JobsConfig::load(f.jobs.as_ref()).map(|_| ()),
            ),
        ]
    }

    /// The merged configuration as TOML, each value followed by its source;
    /// secrets as `"***"`, a database URL's password as `***`.
    pub fn show(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for s in SETTINGS {
            let Some(v) = get(&self.doc, s.key) else {
                continue;
            };
            let (sec, k) = s.key.split_once('.').unwrap_or(("", s.key));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let shown = match (s.kind, v) {
                (Secret, toml::Value::String(u)) if s.key == "database.url" => {
                    toml::Value::String(redact_url(u)).to_string()
                }
                (Secret, _) => "\"***\"".to_owned(),
                _ => v.to_string(),
            };
            let from = self
                .sources
                .get(s.key)
                .map_or_else(String::new, |src| format!("  # {src}"));
            out.push_str(&format!("{k} = {shown}{from}\n"));
        }
        out.trim_start().to_owned()
    }
}

/// Everything the gateway runs with, every section checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// May hold a password: log it through [`redact_url`].
    pub database_url: String,
    /// Apply pending migrations before serving (and before `keys`).
    pub migrate: bool,
    /// Seed the demo data on `serve`.
    pub demo: bool,
    pub log: Option<String>,
    /// Public URL, trusted proxies, client limits.
    pub edge: crate::http::Edge,
    /// `None`: payments are off.
    pub payments: Option<PaymentsConfig>,
    /// `None`: channels (and the outbox dispatcher) are off.
    pub channels: Option<ChannelsConfig>,
    pub retention: RetentionConfig,
    /// PostgreSQL: the feed's LISTEN/NOTIFY wake-ups across instances.
    pub feed_notify: bool,
    /// The scheduler.
    pub jobs: crate::jobs::JobsConfig,
}

impl Default for Config {
    /// The defaults alone: nothing optional on, no environment read.
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            migrate: true,
            demo: false,
            log: None,
            edge: crate::http::Edge::default(),
            payments: None,
            channels: None,
            retention: RetentionConfig::default(),
            feed_notify: true,
            jobs: crate::jobs::JobsConfig::default(),
        }
    }
}

/// The database URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/gw"),
            "postgres://app:***@db:5432/gw"
        );
        assert_eq!(
            super::redact_url("sqlite://data/gateway.db"),
            "sqlite://data/gateway.db"
        );
    }

    /// The defaults written in [`SETTINGS`] are the ones each section has
    /// without them.
    #[test]
    fn the_listed_defaults_are_the_sections_defaults() {
        let c = Settings::load(None, &Env::empty(), &[])
            .unwrap()
            .config()
            .unwrap();
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
        let outbox = crate::outbox::OutboxConfig::load(
            Settings::load(None, &Env::empty(), &[])
                .unwrap()
                .file
                .outbox
                .as_ref(),
        )
        .unwrap();
        assert_eq!(
            format!("{outbox:?}"),
            format!("{:?}", crate::outbox::OutboxConfig::default())
        );
        let ch = ChannelsConfig::default();
        assert_eq!(ch.timestamp_window.as_secs(), 300);
        assert_eq!(ch.unconfirmed_alert.as_secs(), 120);
    }

    #[test]
    fn file_then_env_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        std::fs::write(&path, "[outbox]\npoll_ms = 111\nconcurrency = 3\n").unwrap();
        let env = Env::empty()
            .with("GATEWAY_OUTBOX_POLL_MS", "222")
            .with("GATEWAY_OUTBOX_BACKOFF_MS", "5");
        let flags = [("outbox.poll_ms".to_owned(), "333".to_owned())];
        let s = Settings::load(Some(&path), &env, &flags).unwrap();
        let o = s.file.outbox.clone().unwrap();
        assert_eq!(o.poll_ms, Some(333));
        assert_eq!(o.concurrency, Some(3));
        assert_eq!(o.backoff_ms, Some(5));
        assert_eq!(o.max_attempts, Some(20));
        assert_eq!(s.source("outbox.poll_ms"), Some(&Source::Flag));
        assert_eq!(
            s.source("outbox.backoff_ms"),
            Some(&Source::Env("GATEWAY_OUTBOX_BACKOFF_MS"))
        );
        assert_eq!(s.source("outbox.concurrency"), Some(&Source::File));
        assert_eq!(s.source("outbox.max_attempts"), Some(&Source::Default));
        let s = Settings::load(Some(&path), &env, &[]).unwrap();
        assert_eq!(s.file.outbox.unwrap().poll_ms, Some(222));
    }

    /// `[http]` and `[database]` hold what was top-level (and `[limits]`)
    /// before; the old names still read, as the new ones, and both at once
    /// are refused.
    #[test]
    fn http_and_database_sections_and_their_old_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:9\"\nmax_connections = 7\n[database]\nurl = \"sqlite://x.db\"\n",
        )
        .unwrap();
        let c = Settings::load(Some(&path), &Env::empty(), &[])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.edge.limits.max_connections, 7);
        assert_eq!(c.database_url, "sqlite://x.db");

        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9\"\ndatabase_url = \"sqlite://y.db\"\nmigrate = false\n[limits]\nmax_connections = 5\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), &Env::empty(), &[]).unwrap();
        assert_eq!(s.source("http.max_connections"), Some(&Source::File));
        let c = s.config().unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.edge.limits.max_connections, 5);
        assert_eq!(c.database_url, "sqlite://y.db");
        assert!(!c.migrate);
        // The environment and `--set` under either name land on one key.
        let env = Env::empty().with("GATEWAY_MAX_CONNECTIONS", "6");
        let flags = [("listen".to_owned(), "127.0.0.1:10".to_owned())];
        let c = Settings::load(Some(&path), &env, &flags)
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(
            (c.listen.as_str(), c.edge.limits.max_connections),
            ("127.0.0.1:10", 6)
        );

        std::fs::write(&path, "listen = \"a:1\"\n[http]\nlisten = \"b:2\"\n").unwrap();
        let e = format!(
            "{:#}",
            Settings::load(Some(&path), &Env::empty(), &[]).unwrap_err()
        );
        assert!(e.contains("http.listen is set twice"), "{e}");
        std::fs::write(&path, "[limits]\nbogus = 1\n").unwrap();
        assert!(Settings::load(Some(&path), &Env::empty(), &[]).is_err());
        std::fs::write(&path, "[http]\nmax_connections = 0\n").unwrap();
        let e = format!(
            "{:#}",
            Settings::load(Some(&path), &Env::empty(), &[])
                .unwrap()
                .config()
                .unwrap_err()
        );
        assert!(e.starts_with("[http]") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn a_bad_section_is_one_line_naming_its_key() {
        let env = Env::empty()
            .with("GATEWAY_WEBHOOK_SECRETS", "nocolon")
            .with("GATEWAY_NO_MIGRATE", "1");
        let s = Settings::load(None, &env, &[]).unwrap();
        assert_eq!(
            s.file.database.as_ref().and_then(|d| d.migrate),
            Some(false)
        );
        let e = format!("{:#}", s.config().unwrap_err());
        assert!(e.starts_with("[channels]"), "{e}");
        assert!(e.contains("webhook_secrets"), "{e}");
        assert!(!e.contains("nocolon"), "the secret leaked: {e}");
        assert!(!e.contains('\n'), "{e}");

        let e = Settings::load(None, &Env::empty().with("GATEWAY_OUTBOX_POLL_MS", "x"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("GATEWAY_OUTBOX_POLL_MS"), "{e}");
    }

    #[test]
    fn show_masks_secrets() {
        let env = Env::empty()
            .with("GATEWAY_WECHATPAY_KEY", "k-secret")
            .with("GATEWAY_DATABASE_URL", "postgres://u:pw-secret@h/db");
        let shown = Settings::load(None, &env, &[]).unwrap().show();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("wechatpay_key = \"***\"  # env GATEWAY_WECHATPAY_KEY"),
            "{shown}"
        );
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
        // What it prints is a configuration file again.
        toml::from_str::<toml::Table>(&shown).unwrap();
    }
}
