//! Terminals as the store sees them: the last heartbeat of each (SOAP
//! `Heartbeat`), and the store's terminal list (`GET
//! /api/v1/stores/{store}/terminals`).

use proto::order::{StoreId, TerminalId};
use proto::soap::{Heartbeat, PeripheralHealth};
use serde::Serialize;
use sqlx::Row;

use crate::catalog;
use crate::clock;
use crate::db::Db;
use crate::error::{Error, Result};

/// A terminal silent for longer than this is shown as offline.
const ONLINE_WINDOW_MICROS: i64 = 120 * 1_000_000;

/// Stores the heartbeat as the terminal's latest; returns when (µs).
pub async fn record(
    db: &Db,
    terminal: &TerminalId,
    store: &StoreId,
    hb: &Heartbeat,
) -> Result<i64> {
    let now = db.now_micros();
    let peripherals = serde_json::to_string(&hb.peripherals).map_err(Error::internal)?;
    let mut tx = db.write().await?;
    sqlx::query(
        "INSERT INTO terminal_heartbeats (terminal_id, store_id, software_version, peripherals, received_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (terminal_id) DO UPDATE SET store_id = excluded.store_id,
             software_version = excluded.software_version, peripherals = excluded.peripherals,
             received_at = excluded.received_at",
    )
    .bind(terminal.as_str().to_owned())
    .bind(store.as_str().to_owned())
    .bind(hb.software_version.clone())
    .bind(peripherals)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(now)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TerminalView {
    pub terminal_id: String,
    /// A heartbeat arrived within the last two minutes.
    pub online: bool,
    pub last_heartbeat_at: Option<String>,
    pub software_version: Option<String>,
    pub peripherals: Vec<PeripheralHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Terminals {
    pub store_id: String,
    pub terminals: Vec<TerminalView>,
}

/// Every terminal with a live key in the store, with its last heartbeat.
pub async fn list(db: &Db, store: &StoreId) -> Result<Terminals> {
    let mut conn = db.pool.acquire().await?;
    catalog::require_store(&mut conn, store).await?;
    let rows = sqlx::query(
        "SELECT k.terminal_id, h.software_version, h.peripherals, h.received_at
         FROM api_keys k LEFT JOIN terminal_heartbeats h ON h.terminal_id = k.terminal_id
         WHERE k.role = 'terminal' AND k.store_id = $1 AND k.revoked_at IS NULL
               AND k.terminal_id IS NOT NULL
         ORDER BY k.terminal_id",
    )
    .bind(store.as_str().to_owned())
    .fetch_all(&mut *conn)
    .await?;
    let now = db.now_micros();
    let terminals = rows
        .into_iter()
        .map(|r| {
            let at: Option<i64> = r.get("received_at");
            let peripherals: Option<String> = r.get("peripherals");
            let peripherals = peripherals
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(Error::internal)?
                .unwrap_or_default();
            Ok(TerminalView {
                terminal_id: r.get("terminal_id"),
                online: at.is_some_and(|t| now - t <= ONLINE_WINDOW_MICROS),
                last_heartbeat_at: at.map(clock::rfc3339),
                software_version: r.get("software_version"),
                peripherals,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Terminals {
        store_id: store.to_string(),
        terminals,
    })
}
