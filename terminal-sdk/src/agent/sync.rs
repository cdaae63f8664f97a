//! The agent's conversations with the gateway, each a task of its own: the
//! uploader (store-and-forward of the sales queue), the catalog refresh and
//! the heartbeat. None of them is on the checkout path.
//!
//! The uploader sends the oldest due sale with `SubmitOrder` under the
//! sale's own `clientOrderId` and marks it uploaded only after the answer.
//! If the answer is lost (timeout, broken connection, a kill of the agent)
//! the same sale is sent again with the same id, and the gateway, which
//! de-duplicates terminal orders by `<terminal id>:<clientOrderId>`, answers
//! with the order it already made (`replayed`). A refusal (a Fault other
//! than `unavailable`, e.g. `out_of_stock`) holds the sale with the error
//! shown and tries it again after `held_retry`; it is never dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::soap::{FaultKind, Heartbeat, SubmitLine, SubmitOrder};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::store::{Sale, SaleError, Store, Uploaded, now_us};
use crate::client::{ClientError, GatewayClient};

/// The longest pause between upload attempts while the gateway is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the agent last learnt about the gateway, for the status page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkState {
    /// `None` until the first call has an outcome.
    pub reachable: Option<bool>,
    pub last_ok_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The catalog's store differs from the configured `store_id`.
    pub store_mismatch: Option<String>,
}

/// Shared between the tasks and the local API.
#[derive(Debug, Default)]
pub struct Link {
    state: Mutex<LinkState>,
    /// Signalled when the gateway answers again after it was away, so the
    /// uploader does not sit out the rest of a long backoff.
    back: Notify,
}

impl Link {
    pub fn snapshot(&self) -> LinkState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn ok(&self) {
        if let Ok(mut s) = self.state.lock() {
            let was_away = s.reachable == Some(false);
            s.reachable = Some(true);
            s.last_ok_at = Some(super::store::rfc3339(now_us()));
            if was_away {
                self.back.notify_one();
            }
        }
    }

    /// Any answer from the gateway, even a Fault, shows it is reachable;
    /// only no answer shows it is not.
    pub(crate) fn failed(&self, e: &ClientError) {
        if let Ok(mut s) = self.state.lock() {
            if matches!(e, ClientError::Fault(_)) {
                if s.reachable == Some(false) {
                    self.back.notify_one();
                }
                s.reachable = Some(true);
            } else {
                s.reachable = Some(false);
            }
            s.last_error = Some(e.to_string());
            s.last_error_at = Some(super::store::rfc3339(now_us()));
        }
    }

    fn store_mismatch(&self, m: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.store_mismatch = m;
        }
    }
}

/// A refusal that another try of the same request will not change soon.
fn is_refusal(e: &ClientError) -> bool {
    match e {
        ClientError::Fault(f) => !(f.kind == FaultKind::Server || f.code == "unavailable"),
        _ => false,
    }
}

/// The sale as it happened: its time, its lines at the counter's prices,
/// the catalog version they came from. The gateway records such an order
/// as sold (never refused for stock; flagged `short_stock` /
/// `price_differs`), priced as the receipt was.
fn submit_of(sale: &Sale) -> SubmitOrder {
    // A clock so wrong that the time is out of the protocol's range (a PC
    // that lost its date) still uploads: the gateway's arrival time stands.
    let sold_at = proto::time::Timestamp::parse(&super::store::rfc3339(sale.created_at))
        .or_else(|_| proto::time::Timestamp::parse(&super::store::rfc3339(now_us())))
        .ok();
    SubmitOrder {
        client_order_id: sale.client_order_id.clone(),
        lines: sale
            .lines
            .iter()
            .map(|l| SubmitLine {
                sku: l.sku.clone(),
                quantity: l.quantity.to_string(),
                unit_price: sold_at.as_ref().map(|_| l.unit_price),
            })
            .collect(),
        // Derived from the sale, so a resend is the same request.
        note: Some(format!("counter sale {}", sale.local_no)),
        catalog_version: sold_at.as_ref().and(
            sale.catalog_version
                .clone()
                .filter(|v| (1..=64).contains(&v.len()) && v.chars().all(|c| !c.is_control())),
        ),
        sold_at,
    }
}

/// The gateway's flags on an order as SOAP shows them: leading its note,
/// `⚠ short_stock, price_differs: … | counter sale 42` (the prices only
/// when they differ).
pub fn flags_of_note(note: Option<&str>) -> Vec<String> {
    let Some(rest) = note.and_then(|n| n.strip_prefix('⚠')) else {
        return Vec::new();
    };
    let head = rest.split([':', '|']).next().unwrap_or("");
    head.split(',')
        .map(str::trim)
        .filter(|f| {
            !f.is_empty() && f.len() <= 40 && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_read_from_the_head_of_the_note() {
        let f = |n: &str| super::flags_of_note(Some(n));
        assert_eq!(f("⚠ short_stock | counter sale 2"), ["short_stock"]);
        assert_eq!(
            f("⚠ short_stock, price_differs: COLA 3.20 (now 3.50) | counter sale 42"),
            ["short_stock", "price_differs"]
        );
        assert!(f("counter sale 3").is_empty());
        assert!(super::flags_of_note(None).is_empty());
    }
}

/// What one upload attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Uploaded,
    Held,
    /// No (usable) answer: try again later.
    Retry,
}

/// Sends one sale and records the outcome.
pub async fn upload_one(
    store: &Store,
    client: &GatewayClient,
    link: &Link,
    sale: &Sale,
    held_retry: Duration,
) -> Result<Outcome, super::store::StoreError> {
    match client.submit_order(&submit_of(sale)).await {
        Ok(r) => {
            link.ok();
            // The cash the customer handed over, recorded on the order (the
            // same tender again after a lost answer is the recorded one).
            // Not sent yet: the sale stays queued and both go again.
            match client.tender_cash(&r.order.id, sale.tendered).await {
                Ok(_) => {}
                Err(e) if is_refusal(&e) => tracing::warn!(
                    local_no = sale.local_no,
                    order = %r.order.id,
                    code = e.code(),
                    "the gateway did not record the cash of sale {}: {e}",
                    sale.local_no
                ),
                Err(e) => {
                    link.failed(&e);
                    let err = SaleError {
                        code: e.code().to_owned(),
                        message: e.to_string(),
                    };
                    store.note_attempt(sale.local_no, &err).await?;
                    return Ok(Outcome::Retry);
                }
            }
            if r.order.total != sale.total {
                tracing::warn!(
                    local_no = sale.local_no,
                    "the gateway priced sale {} at {}, the counter at {}",
                    sale.local_no,
                    r.order.total,
                    sale.total
                );
            }
            store
                .mark_uploaded(
                    sale.local_no,
                    &Uploaded {
                        order_id: r.order.id.clone(),
                        display_no: r.order.display_no,
                        total: r.order.total,
                        flags: flags_of_note(r.order.note.as_deref()),
                    },
                    now_us(),
                )
                .await?;
            tracing::info!(
                local_no = sale.local_no,
                order = %r.order.id,
                replayed = r.replayed,
                "sale uploaded"
            );
            Ok(Outcome::Uploaded)
        }
        Err(e) => {
            link.failed(&e);
            let err = SaleError {
                code: e.code().to_owned(),
                message: e.to_string(),
            };
            if is_refusal(&e) {
                tracing::warn!(local_no = sale.local_no, code = %err.code, "the gateway refused sale: held");
                store
                    .hold(sale.local_no, &err, now_us(), held_retry)
                    .await?;
                Ok(Outcome::Held)
            } else {
                store.note_attempt(sale.local_no, &err).await?;
                Ok(Outcome::Retry)
            }
        }
    }
}

/// Drains the queue for ever: woken by each new sale, by a held sale's
/// retry time, by another task finding the gateway back, or after a backoff
/// while the gateway is away.
pub async fn run_uploader(
    store: Store,
    client: GatewayClient,
    link: Arc<Link>,
    wake: Arc<Notify>,
    retry: Duration,
    held_retry: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut backoff = retry;
    loop {
        if *closing.borrow() {
            return;
        }
        let pause = match store.next_to_upload(now_us(), held_retry).await {
            Ok(Some(sale)) => match upload_one(&store, &client, &link, &sale, held_retry).await {
                Ok(Outcome::Uploaded | Outcome::Held) => {
                    backoff = retry;
                    continue;
                }
                Ok(Outcome::Retry) => {
                    let p = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    p
                }
                Err(e) => {
                    tracing::error!("uploader: {e}");
                    retry.max(Duration::from_secs(1))
                }
            },
            Ok(None) => match store.next_held_due().await {
                Ok(Some(at)) => {
                    // Never longer than one retry period: a due time further
                    // off was set before the wall clock went back.
                    let wait = at.saturating_sub(now_us()).max(0);
                    Duration::from_micros(u64::try_from(wait).unwrap_or(0))
                        .min(held_retry)
                        .max(retry)
                }
                Ok(None) => Duration::from_secs(3600),
                Err(e) => {
                    tracing::error!("uploader: {e}");
                    Duration::from_secs(1)
                }
            },
            Err(e) => {
                tracing::error!("uploader: {e}");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            // Another task reached the gateway: it is back, try now.
            _ = link.back.notified() => backoff = retry,
            _ = closing.changed() => {}
        }
    }
}

/// Fetches the catalog now and then (asking with the version held, so an
/// unchanged catalog costs no items) and keeps it in the store.
pub async fn run_catalog(
    store: Store,
    client: GatewayClient,
    link: Arc<Link>,
    configured_store: proto::order::StoreId,
    every: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        let known = store.catalog_info().await.ok().flatten().map(|c| c.version);
        match client.get_catalog(known.as_deref()).await {
            Ok(c) => {
                link.ok();
                if c.store_id != configured_store {
                    let m = format!(
                        "the key belongs to store {}, the configuration says {configured_store}",
                        c.store_id
                    );
                    tracing::error!("{m}");
                    link.store_mismatch(Some(m));
                } else {
                    link.store_mismatch(None);
                }
                if let Err(e) = store.save_catalog(&c, now_us()).await {
                    tracing::error!("catalog: {e}");
                }
            }
            Err(e) => link.failed(&e),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Tells the gateway the terminal is alive, with each configured device's
/// health as the device tasks last recorded it.
pub async fn run_heartbeat(
    client: GatewayClient,
    link: Arc<Link>,
    devices: super::devices::DeviceHealth,
    every: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        let hb = Heartbeat {
            software_version: format!("terminal {}", env!("CARGO_PKG_VERSION")),
            peripherals: devices.peripherals(),
        };
        match client.heartbeat(&hb).await {
            Ok(_) => link.ok(),
            Err(e) => link.failed(&e),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}
