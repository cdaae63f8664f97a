//! Layered configuration: built-in defaults, then an optional TOML file,
//! then environment variables and flags (clap reads those two).

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/gateway.db";

/// The TOML file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    /// Apply pending migrations on `serve` (default true).
    pub migrate: Option<bool>,
    /// Log filter, e.g. `info,gateway=debug` (RUST_LOG wins).
    pub log: Option<String>,
    /// Payment-code charges (see `GATEWAY_WECHATPAY_*`, which win).
    pub payments: Option<crate::payments::PaymentsFile>,
    /// This gateway's public base URL, e.g. `https://gw.example.com`
    /// (`GATEWAY_PUBLIC_URL` wins): signed pushes are checked against it and
    /// the WSDL names it. Default: `http://` + the listening address.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-*` headers are believed, e.g.
    /// `["127.0.0.1/32"]` (`GATEWAY_TRUSTED_PROXIES` wins). Default: none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Client timeouts and caps (see `GATEWAY_*_TIMEOUT_S`, which win).
    pub limits: Option<crate::http::LimitsFile>,
    /// How long old rows are kept (see `GATEWAY_RETENTION_*`, which win).
    pub retention: Option<crate::retention::RetentionFile>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
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
}
