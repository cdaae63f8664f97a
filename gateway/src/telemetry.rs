//! One place sets up logging.

use tracing_subscriber::EnvFilter;

/// The default filter when the configuration's `log` (RUST_LOG, or the
/// file's key) is unset or unreadable.
const DEFAULT: &str = "info,sqlx=warn";

/// Logs to stderr through `filter` (the configuration's `log`; this reads no
/// environment).
pub fn init(filter: Option<&str>) {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT))
        .or_else(|_| EnvFilter::try_new(DEFAULT))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
