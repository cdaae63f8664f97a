//! The running gateway assembled from its [`Config`]: the state every
//! handler shares, with every configured background task started. Reads no
//! environment; the configuration is loaded once, in [`crate::config`].

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;
use crate::db::Db;
use crate::http::AppState;

/// The state `serve` runs with: the edge settings, payments (with their
/// sweeper), channels (their stores registered, the dispatcher and the alert
/// check started) and retention. Fails, rather than serving without a
/// configured part, if one cannot start.
pub async fn build(
    config: &Config,
    db: Db,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<AppState> {
    let mut state =
        AppState::with_payments(db, closing, config.payments.clone()).context("[payments]")?;
    config.edge.clone().apply(&mut state);
    if let Some(channels) = &config.channels {
        tracing::info!(config = ?channels, "channels on");
        state.channels = Some(
            crate::channels::Channels::start(
                channels.clone(),
                state.db.clone(),
                state.hub.clone(),
                state.closing.clone(),
            )
            .await
            .context("[channels]")?,
        );
    }
    state.start_retention(config.retention.clone());
    Ok(state)
}
