//! One place sets up logging: human-readable lines, or one JSON object per
//! line (`log_format = "json"`) for a log shipper; either way every line
//! logged while a request is served carries its `request_id` (the span of
//! `http/observe.rs`; the `x-request-id` the gateway answers with).

use tracing_subscriber::EnvFilter;

/// The default filter when the configuration's `log` (RUST_LOG, or the
/// file's key) is unset or unreadable.
const DEFAULT: &str = "info,sqlx=warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `text` or `json` (the configuration's `log_format`).
    pub fn parse(s: &str) -> anyhow::Result<LogFormat> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("log_format must be \"text\" or \"json\", got {other:?}"),
        }
    }
}

/// Logs to stderr through `filter` (the configuration's `log`; this reads no
/// environment) in `format`.
pub fn init(filter: Option<&str>, format: LogFormat) {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT))
        .or_else(|_| EnvFilter::try_new(DEFAULT))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
