//! The counter's input and output devices besides the printer: the
//! customer display (what the customer reads), the scale (weighed lines)
//! and the scanner (products, weighed-goods labels, payment codes).
//!
//! The display task shows whatever was last put in [`Counter::show`]: each
//! added line with its price and the running total, "waiting for the
//! customer" while a charge runs, the change or the thanks after a sale. A
//! replugged display is reset and shows the current message again.
//!
//! The scale is asked only when the cashier picks a weighed product with
//! `weigh: true`; the line uses the first stable weight (several identical
//! readings in a row, no motion), never a moving one.
//!
//! The scanner task turns each scan into what the cashier would do with it:
//! a product code adds a line, a weighed-goods label adds a weighed line, a
//! customer's payment code pays the basket. The outcome of the last scan is
//! on the status page.

use std::sync::Mutex;
use std::time::Duration;

use proto::device::Weight;
use proto::order::Money;
use proto::soap::{PeripheralKind, PeripheralStatus};
use serde::Serialize;
use tokio::sync::watch;

use super::devices::DeviceHealth;
use crate::device::display::Display;
use crate::device::scale::Scale;
use crate::device::serial::{LineSettings, PortSpec, SerialConnect};
use crate::device::{Error as DeviceError, ErrorKind};

/// What the customer display shows: two lines. The CD5220 shows ASCII
/// only, so the texts are English and a product is named by its SKU when
/// its name is not ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Message {
    pub upper: String,
    pub lower: String,
}

impl Message {
    pub fn new(upper: impl Into<String>, lower: impl Into<String>) -> Self {
        Message {
            upper: upper.into(),
            lower: lower.into(),
        }
    }

    /// The idle screen.
    pub fn welcome() -> Self {
        Message::new("WELCOME", "")
    }

    /// A line just added, and the running total.
    pub fn line(name: &str, sku: &str, line_total: Money, total: Money) -> Self {
        let label = if name.is_ascii() { name } else { sku };
        Message::new(
            fit_pair(label, &line_total.to_string()),
            fit_pair("TOTAL", &total.to_string()),
        )
    }

    pub fn total(total: Money) -> Self {
        Message::new("TOTAL", right(&total.to_string()))
    }

    /// While a payment-code charge runs.
    pub fn waiting(total: Money) -> Self {
        Message::new("WAITING FOR CUSTOMER", fit_pair("PAY", &total.to_string()))
    }

    pub fn thanks_cash(tendered: Money, change: Money) -> Self {
        Message::new(
            fit_pair("PAID", &tendered.to_string()),
            fit_pair("CHANGE", &change.to_string()),
        )
    }

    pub fn thanks_paid(total: Money) -> Self {
        Message::new("THANK YOU", fit_pair("PAID", &total.to_string()))
    }

    pub fn failed(reason: &str) -> Self {
        Message::new("PAYMENT FAILED", reason)
    }

    /// A payment code while the gateway is away.
    pub fn offline() -> Self {
        Message::new("CODE PAY OFFLINE", "CASH ONLY, SORRY")
    }
}

/// `left` and `right` on one display line, `left` cut to make room.
fn fit_pair(left: &str, right: &str) -> String {
    let width = proto::device::display::WIDTH;
    let room = width.saturating_sub(right.chars().count() + 1);
    let l: String = left.chars().take(room).collect();
    let pad = width.saturating_sub(l.chars().count() + right.chars().count());
    format!("{l}{}{right}", " ".repeat(pad))
}

fn right(s: &str) -> String {
    let width = proto::device::display::WIDTH;
    format!("{}{s}", " ".repeat(width.saturating_sub(s.chars().count())))
}

/// The last scan and what became of it, for the screen.
#[derive(Debug, Clone, Serialize)]
pub struct ScanRecord {
    /// The code as read; a payment code only masked.
    pub code: String,
    /// `product`, `label`, `payment_code` or `other`.
    pub kind: &'static str,
    /// `added`, `paid`, or the error code.
    pub outcome: String,
    pub message: Option<String>,
    pub at: String,
}

/// Shared by the API, the scanner task and the display task.
pub struct Counter {
    display: watch::Sender<Message>,
    scale: tokio::sync::Mutex<Option<Scale<SerialConnect>>>,
    scale_port: Option<PortSpec>,
    health: DeviceHealth,
    last_scan: Mutex<Option<ScanRecord>>,
    /// One checkout at a time (payment code or cash): a scan and a press
    /// of "pay" at the same moment never make two sales of one basket.
    pub checkout: tokio::sync::Mutex<()>,
}

/// Why no weight was read.
#[derive(Debug)]
pub struct WeighError {
    pub code: &'static str,
    pub message: String,
}

impl Counter {
    pub fn new(scale_port: Option<PortSpec>, health: DeviceHealth) -> Self {
        let (display, _) = watch::channel(Message::welcome());
        if scale_port.is_some() {
            health.configured("scale", PeripheralKind::Scale);
        }
        Counter {
            display,
            scale: tokio::sync::Mutex::new(None),
            scale_port,
            health,
            last_scan: Mutex::new(None),
            checkout: tokio::sync::Mutex::new(()),
        }
    }

    /// Puts `m` on the customer display.
    pub fn show(&self, m: Message) {
        self.display.send_replace(m);
    }

    pub fn shown(&self) -> Message {
        self.display.borrow().clone()
    }

    pub fn last_scan(&self) -> Option<ScanRecord> {
        self.last_scan.lock().ok().and_then(|s| s.clone())
    }

    pub fn record_scan(&self, r: ScanRecord) {
        if let Ok(mut s) = self.last_scan.lock() {
            *s = Some(r);
        }
    }

    /// The scale's next stable weight.
    pub async fn weigh(&self) -> Result<Weight, WeighError> {
        let Some(spec) = self.scale_port.clone() else {
            return Err(WeighError {
                code: "no_scale",
                message: "no scale is configured at this counter".into(),
            });
        };
        let mut guard = self.scale.lock().await;
        if guard.is_none() {
            let mut s = Scale::new(SerialConnect::new(spec, LineSettings::scale()));
            s.open();
            *guard = Some(s);
        }
        let Some(s) = guard.as_mut() else {
            return Err(WeighError {
                code: "no_scale",
                message: "no scale".into(),
            });
        };
        let r = async {
            s.claim(Duration::from_secs(2)).await?;
            s.enable().await?;
            s.read_stable().await
        }
        .await;
        match r {
            Ok(w) => {
                self.health.ok("scale", PeripheralKind::Scale);
                Ok(w)
            }
            Err(e) => Err(self.scale_failed(e)),
        }
    }

    fn scale_failed(&self, e: DeviceError) -> WeighError {
        let (code, status, connected, message) = match e.kind {
            ErrorKind::Timeout => (
                "weight_not_stable",
                PeripheralStatus::Ok,
                true,
                "the weight did not settle; let the goods rest on the scale and try again",
            ),
            ErrorKind::OverCapacity => (
                "over_capacity",
                PeripheralStatus::Error,
                true,
                "the load is over the scale's capacity",
            ),
            ErrorKind::UnderZero => (
                "under_zero",
                PeripheralStatus::Error,
                true,
                "the scale shows less than zero: empty it and zero it",
            ),
            ErrorKind::NoHardware | ErrorKind::PermissionDenied => (
                "scale_unavailable",
                PeripheralStatus::NotPresent,
                false,
                "the scale is not connected",
            ),
            _ => (
                "scale_unavailable",
                PeripheralStatus::Offline,
                false,
                "the scale does not answer",
            ),
        };
        if status == PeripheralStatus::Ok {
            self.health.ok("scale", PeripheralKind::Scale);
        } else {
            self.health.failed(
                "scale",
                PeripheralKind::Scale,
                connected,
                status,
                &e.to_string(),
            );
        }
        WeighError {
            code,
            message: format!("{message} ({e})"),
        }
    }
}

/// Keeps the customer display showing the current message.
pub async fn run_display(
    port: Option<PortSpec>,
    counter: std::sync::Arc<Counter>,
    health: DeviceHealth,
    mut closing: watch::Receiver<bool>,
) {
    const NAME: &str = "display";
    let Some(spec) = port else {
        // Nothing to drive; stay up until shutdown.
        let _ = closing.wait_for(|c| *c).await;
        return;
    };
    health.configured(NAME, PeripheralKind::Display);
    let mut rx = counter.display.subscribe();
    let mut d = Display::new(SerialConnect::new(spec, LineSettings::display()));
    d.open();
    let mut enabled = false;
    loop {
        if *closing.borrow() {
            return;
        }
        let ok = async {
            if !enabled {
                d.claim(Duration::from_secs(2)).await?;
                d.enable().await?;
                enabled = true;
            }
            let m = rx.borrow_and_update().clone();
            d.show(&m.upper, &m.lower).await
        }
        .await;
        let wait = match ok {
            Ok(()) => {
                health.ok(NAME, PeripheralKind::Display);
                None
            }
            Err(e) => {
                enabled = false;
                let status = if e.kind == ErrorKind::NoHardware {
                    PeripheralStatus::NotPresent
                } else {
                    PeripheralStatus::Offline
                };
                health.failed(NAME, PeripheralKind::Display, false, status, &e.to_string());
                Some(Duration::from_millis(500))
            }
        };
        match wait {
            None => {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = closing.changed() => return,
                }
            }
            Some(w) => {
                // Try again (the message may have changed meanwhile).
                tokio::select! {
                    _ = tokio::time::sleep(w) => {}
                    _ = closing.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lines_fit_twenty_columns() {
        let m = Message::line(
            "Spicy duck neck, family pack",
            "DUCK",
            Money::from_fen(1416),
            Money::from_fen(2116),
        );
        assert_eq!(m.upper, "Spicy duck nec 14.16");
        assert_eq!(m.lower, "TOTAL          21.16");
        let m = Message::line("卤鸭脖", "DUCK-NECK", Money::from_fen(1416), Money::ZERO);
        assert!(m.upper.starts_with("DUCK-NECK "), "{m:?}");
    }
}
