//! The scanner task: each scan does what the cashier's scan means — a
//! product code or a weighed-goods label adds a line, a customer's payment
//! code pays the basket (with nothing in the basket it is ignored, so a
//! code shown too early charges nothing). The outcome is kept as the last
//! scan for the screen; the customer display shows the line or the payment.

use std::time::Duration;

use proto::device::scanner::Code;
use proto::soap::{PeripheralKind, PeripheralStatus};
use tokio::sync::watch;

use super::api::ApiState;
use super::counter::ScanRecord;
use super::store::{now_us, rfc3339};
use crate::device::ErrorKind;
use crate::device::scanner::{Scanned, Scanner};
use crate::device::serial::{LineSettings, PortSpec, SerialConnect};

const NAME: &str = "scanner";

/// Does what the scan means; the record for the screen.
pub async fn handle(st: &ApiState, s: &Scanned) -> ScanRecord {
    let at = rfc3339(now_us());
    let (kind, shown) = match &s.code {
        Code::Product(_) => ("product", s.raw.clone()),
        Code::StoreLabel(_) => ("label", s.raw.clone()),
        Code::WeChatPay(_) | Code::Alipay(_) => ("payment_code", proto::wechatpay::mask(&s.raw)),
        Code::Other(_) => ("other", s.raw.chars().take(64).collect()),
    };
    let result = match &s.code {
        Code::Product(_) | Code::StoreLabel(_) => {
            super::api::add_product(st, None, Some(&s.raw), None, false)
                .await
                .map(|_| "added".to_owned())
        }
        Code::WeChatPay(_) | Code::Alipay(_) => match st.store.basket().await {
            Ok(b) if b.lines.is_empty() => Ok("ignored_empty_basket".to_owned()),
            Ok(_) => match super::pay::pay_code(st, &s.raw).await {
                Ok(_) => Ok("paid".to_owned()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        },
        Code::Other(_) => Err(super::api::ApiError::bad(
            "invalid_barcode",
            "not a product code, a weighed-goods label or a payment code",
        )),
    };
    let (outcome, message) = match result {
        Ok(o) => (o, None),
        Err(e) => (e.code().to_owned(), Some(e.message().to_owned())),
    };
    tracing::info!(kind, outcome = %outcome, "scan");
    ScanRecord {
        code: shown,
        kind,
        outcome,
        message,
        at,
    }
}

/// Reads the scanner for ever (reopening it after a replug).
pub async fn run(port: Option<PortSpec>, st: ApiState, mut closing: watch::Receiver<bool>) {
    let Some(spec) = port else {
        // Nothing to drive; stay up until shutdown.
        let _ = closing.wait_for(|c| *c).await;
        return;
    };
    st.devices.configured(NAME, PeripheralKind::Scanner);
    let mut sc = Scanner::new(SerialConnect::new(spec, LineSettings::scanner()));
    sc.open();
    let mut enabled = false;
    loop {
        if *closing.borrow() {
            return;
        }
        if !enabled {
            let r = async {
                sc.claim(Duration::from_secs(2)).await?;
                sc.enable().await
            }
            .await;
            match r {
                Ok(()) => {
                    enabled = true;
                    st.devices.ok(NAME, PeripheralKind::Scanner);
                }
                Err(e) => {
                    let status = if e.kind == ErrorKind::NoHardware {
                        PeripheralStatus::NotPresent
                    } else {
                        PeripheralStatus::Offline
                    };
                    st.devices
                        .failed(NAME, PeripheralKind::Scanner, false, status, &e.to_string());
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = closing.changed() => return,
                    }
                    continue;
                }
            }
        }
        let next = tokio::select! {
            n = sc.next_within(Duration::from_secs(5)) => n,
            _ = closing.changed() => return,
        };
        match next {
            Ok(s) => {
                st.devices.ok(NAME, PeripheralKind::Scanner);
                let rec = handle(&st, &s).await;
                st.counter.record_scan(rec);
            }
            Err(e) if e.kind == ErrorKind::Timeout => {}
            Err(e) => {
                enabled = false;
                st.devices.failed(
                    NAME,
                    PeripheralKind::Scanner,
                    false,
                    PeripheralStatus::Offline,
                    &e.to_string(),
                );
            }
        }
    }
}
