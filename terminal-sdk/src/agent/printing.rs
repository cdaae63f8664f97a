//! The printer task: works the printed-ticket ledger ([`super::tickets`])
//! through the receipt printer, and kicks the cash drawer.
//!
//! A ticket is taken only when the printer says it is ready (status read
//! first); it counts as printed only when the printer answers the job's
//! process-id request (`GS ( H`), see [`crate::device::printer`]. A job that
//! fails after its first byte may be partly on paper: the ticket becomes
//! `uncertain` and prints again marked "补打 / REPRINT n" — never silently
//! twice. A fault seen before the job (paper out, cover open, unplugged)
//! leaves the ticket owed, unnumbered, and it prints once the fault clears.
//!
//! A printer that loses power mid-job drops its line (or stops answering
//! status requests, and the driver drops the line itself): the printer shows
//! offline, the port is opened again every half second or so until the
//! printer answers, and then the interrupted ticket prints marked REPRINT and
//! every later one as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proto::device::escpos::Receipt;
use proto::soap::{PeripheralKind, PeripheralStatus};
use tokio::sync::{Notify, watch};

use super::devices::DeviceHealth;
use super::store::{Store, now_us};
use super::tickets::{self, Kind, Ticket};
use crate::device::printer::{Printer, PrinterHealth};
use crate::device::serial::{LineSettings, PortSpec, SerialConnect};

const NAME: &str = "printer";

/// What the rest of the agent tells the printer task.
#[derive(Default)]
pub struct Handle {
    wake: Notify,
    drawer: AtomicBool,
}

impl Handle {
    /// A ticket was enqueued: look at the ledger now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A cash sale was committed: open the drawer once.
    pub fn open_drawer(&self) {
        self.drawer.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

pub struct Setup {
    pub store: Store,
    pub port: Option<PortSpec>,
    pub health: DeviceHealth,
    pub handle: Arc<Handle>,
    pub store_name: String,
    pub terminal: String,
}

/// Renders ticket `t` (with its reprint number); `None` when what it stands
/// for is gone (then it is marked with the reason and skipped).
async fn render(
    s: &Setup,
    t: &Ticket,
) -> Result<Result<Receipt, String>, super::store::StoreError> {
    match t.kind {
        Kind::Receipt => {
            let Ok(local_no) = t.key.parse::<i64>() else {
                return Ok(Err(format!("receipt key {:?} is not a sale number", t.key)));
            };
            // The store's name as the gateway's catalog gives it; the
            // configured id until a catalog came.
            let name = s
                .store
                .catalog_info()
                .await?
                .map(|c| c.store_name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| s.store_name.clone());
            Ok(match s.store.sale(local_no).await? {
                Some(sale) => Ok(super::receipt::sale_receipt(
                    &sale,
                    &name,
                    &s.terminal,
                    t.reprint_no,
                )),
                None => Err(format!("no sale {local_no}")),
            })
        }
        Kind::Pick | Kind::Cancelled => Ok(match t.pick_order() {
            Some(o) if t.kind == Kind::Pick => Ok(super::receipt::pick_ticket(&o, t.reprint_no)),
            Some(o) => Ok(super::receipt::cancelled_ticket(&o, t.reprint_no)),
            None => Err("the ticket's order could not be read".into()),
        }),
    }
}

fn status_of(h: &PrinterHealth) -> PeripheralStatus {
    if h.cover_open {
        PeripheralStatus::CoverOpen
    } else if h.paper_end {
        PeripheralStatus::PaperEnd
    } else if h.offline {
        PeripheralStatus::Offline
    } else if h.cutter_error {
        PeripheralStatus::Error
    } else if h.paper_near_end {
        PeripheralStatus::PaperNearEnd
    } else {
        PeripheralStatus::Ok
    }
}

async fn pause(handle: &Handle, closing: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = handle.wake.notified() => {}
        _ = tokio::time::sleep(d) => {}
        _ = closing.wait_for(|c| *c) => return false,
    }
    !*closing.borrow()
}

/// Runs until `closing` turns true.
pub async fn run(s: Arc<Setup>, mut closing: watch::Receiver<bool>) {
    let pool = s.store.pool().clone();
    match tickets::recover(&pool).await {
        Ok(n) if n > 0 => {
            tracing::warn!(
                tickets = n,
                "tickets left printing by the last run will print again marked REPRINT"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!("ticket ledger: {e}"),
    }
    let Some(spec) = s.port.clone() else {
        s.health.failed(
            NAME,
            PeripheralKind::Printer,
            false,
            PeripheralStatus::NotPresent,
            "no printer configured",
        );
        // Tickets stay owed, with the reason, until a printer is configured.
        while !*closing.borrow() {
            if let Ok(Some(t)) = tickets::next_due(&pool).await
                && t.last_error.as_deref() != Some("no printer configured")
            {
                let _ = tickets::note_fault(&pool, t.id, "no printer configured").await;
            }
            s.handle.drawer.store(false, Ordering::SeqCst);
            if !pause(&s.handle, &mut closing, Duration::from_secs(5)).await {
                return;
            }
        }
        return;
    };
    s.health.configured(NAME, PeripheralKind::Printer);
    let mut p = Printer::new(SerialConnect::new(spec, LineSettings::printer()));
    // Short reconnect attempts: while the printer is away (switched off,
    // unplugged) the loop keeps reporting it offline and tries again.
    p.set_reconnect_for(Duration::from_secs(1));
    p.open();
    let mut enabled = false;
    while !*closing.borrow() {
        if !enabled {
            match p.claim(Duration::from_secs(2)).await.and(Ok(())) {
                Ok(()) => match p.enable().await {
                    Ok(_) => enabled = true,
                    Err(e) => fault(&s, false, PeripheralStatus::Offline, &e.to_string()),
                },
                Err(e) => fault(&s, false, PeripheralStatus::NotPresent, &e.to_string()),
            }
            if !enabled {
                if !pause(&s.handle, &mut closing, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
        }
        let h = match p.health().await {
            Ok(h) => h,
            Err(e) => {
                fault(&s, false, PeripheralStatus::Offline, &e.to_string());
                if let Ok(Some(t)) = tickets::next_due(&pool).await {
                    let _ = tickets::note_fault(&pool, t.id, &e.to_string()).await;
                }
                if !pause(&s.handle, &mut closing, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
        };
        if let Some((_, why)) = h.blocking_error() {
            fault(&s, true, status_of(&h), why);
            if let Ok(Some(t)) = tickets::next_due(&pool).await {
                let _ = tickets::note_fault(&pool, t.id, why).await;
            }
            if !pause(&s.handle, &mut closing, Duration::from_millis(300)).await {
                return;
            }
            continue;
        }
        match status_of(&h) {
            PeripheralStatus::Ok => s.health.ok(NAME, PeripheralKind::Printer),
            st => s
                .health
                .failed(NAME, PeripheralKind::Printer, true, st, "paper near end"),
        }
        if s.handle.drawer.swap(false, Ordering::SeqCst) {
            match p.open_drawer().await {
                Ok(()) => tracing::info!("cash drawer opened"),
                Err(e) => {
                    tracing::warn!("cash drawer: {e}");
                    s.health.failed(
                        "drawer",
                        PeripheralKind::Drawer,
                        true,
                        PeripheralStatus::Error,
                        &e.to_string(),
                    );
                }
            }
        }
        let next = match tickets::next_due(&pool).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("ticket ledger: {e}");
                None
            }
        };
        let Some(t) = next else {
            if !pause(&s.handle, &mut closing, Duration::from_secs(2)).await {
                return;
            }
            continue;
        };
        let t = match tickets::begin(&pool, t.id).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!("ticket ledger: {e}");
                let _ = pause(&s.handle, &mut closing, Duration::from_secs(1)).await;
                continue;
            }
        };
        let receipt = match render(&s, &t).await {
            Ok(Ok(r)) => r,
            Ok(Err(why)) => {
                tracing::error!(ticket = t.id, "cannot render: {why}");
                // Nothing can print it; record why and leave it printed-off.
                let _ = tickets::mark_printed(&pool, t.id, now_us()).await;
                continue;
            }
            Err(e) => {
                tracing::error!("ticket ledger: {e}");
                let _ = tickets::note_fault(&pool, t.id, "local storage").await;
                continue;
            }
        };
        match p.print(&receipt).await {
            Ok(job) => {
                tracing::info!(
                    ticket = t.id,
                    kind = t.kind.as_str(),
                    job = job.0,
                    reprint = t.reprint_no,
                    "printed (confirmed by the printer)"
                );
                // Recorded before the next ticket, however long the disk
                // refuses: left `printing`, the ticket would come out again
                // as a REPRINT after a restart although the printer
                // confirmed it.
                let mut wait = Duration::from_millis(200);
                while let Err(e) = tickets::mark_printed(&pool, t.id, now_us()).await {
                    tracing::error!(
                        ticket = t.id,
                        "ticket ledger: cannot record a confirmed print: {e}"
                    );
                    if !pause(&s.handle, &mut closing, wait).await {
                        return;
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
            Err(e) => {
                if p.pending_sent() {
                    // Bytes may be on paper: print again, marked, never
                    // silently twice.
                    tracing::warn!(ticket = t.id, "print not confirmed: {e}");
                    let _ = tickets::mark_uncertain(&pool, t.id, &e.to_string()).await;
                } else {
                    // Refused before its first byte: still owed as it was.
                    tracing::warn!(ticket = t.id, "not printed: {e}");
                    let _ = tickets::mark_not_sent(&pool, t.id, &e.to_string()).await;
                }
                p.discard_pending();
                // The line gone (power lost, cable out): offline until it
                // answers again.
                let connected = p.is_connected();
                let status = if connected {
                    PeripheralStatus::Error
                } else {
                    PeripheralStatus::Offline
                };
                fault(&s, connected, status, &e.to_string());
            }
        }
    }
}

fn fault(s: &Setup, connected: bool, status: PeripheralStatus, why: &str) {
    s.health
        .failed(NAME, PeripheralKind::Printer, connected, status, why);
}
