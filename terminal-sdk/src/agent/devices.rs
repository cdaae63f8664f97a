//! The counter peripherals' health, shared by every device task.
//!
//! Each device task (scanner, scale, display, printer, ...) writes its own
//! entry, keyed by device name; `GET /api/status` shows the map under
//! `devices` and the heartbeat sends it to the gateway as
//! [`PeripheralHealth`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto::soap::{MAX_PERIPHERALS, PeripheralHealth, PeripheralKind, PeripheralStatus};
use serde::Serialize;

/// Longest `last_error` kept (characters); the wire allows 200.
const MAX_DETAIL: usize = 200;

/// One device as its task last saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub kind: PeripheralKind,
    pub configured: bool,
    pub connected: bool,
    pub status: PeripheralStatus,
    pub last_error: Option<String>,
}

/// The shared registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct DeviceHealth {
    inner: Arc<Mutex<BTreeMap<String, Device>>>,
}

fn bounded(s: &str) -> String {
    s.chars().take(MAX_DETAIL).collect()
}

impl DeviceHealth {
    /// Records that a device is configured but not yet opened.
    pub fn configured(&self, name: &str, kind: PeripheralKind) {
        self.set(name, kind, false, PeripheralStatus::Offline, None);
    }

    /// The device answered as expected.
    pub fn ok(&self, name: &str, kind: PeripheralKind) {
        self.set(name, kind, true, PeripheralStatus::Ok, None);
    }

    /// The device failed or is missing; `connected` says whether the line
    /// itself is still open.
    pub fn failed(
        &self,
        name: &str,
        kind: PeripheralKind,
        connected: bool,
        status: PeripheralStatus,
        error: &str,
    ) {
        self.set(name, kind, connected, status, Some(bounded(error)));
    }

    fn set(
        &self,
        name: &str,
        kind: PeripheralKind,
        connected: bool,
        status: PeripheralStatus,
        last_error: Option<String>,
    ) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(
            name.to_string(),
            Device {
                kind,
                configured: true,
                connected,
                status,
                last_error,
            },
        );
    }

    /// Every device, keyed by name (for `GET /api/status`).
    pub fn snapshot(&self) -> BTreeMap<String, Device> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the heartbeat sends: at most [`MAX_PERIPHERALS`] entries.
    pub fn peripherals(&self) -> Vec<PeripheralHealth> {
        self.snapshot()
            .into_values()
            .take(MAX_PERIPHERALS)
            .map(|d| PeripheralHealth {
                kind: d.kind,
                status: d.status,
                detail: d.last_error,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_keyed_by_name_and_sent_in_the_heartbeat() {
        let h = DeviceHealth::default();
        h.configured("scale", PeripheralKind::Scale);
        h.ok("scanner", PeripheralKind::Scanner);
        h.failed(
            "scale",
            PeripheralKind::Scale,
            true,
            PeripheralStatus::Error,
            &"x".repeat(500),
        );
        let snap = h.snapshot();
        assert_eq!(snap.len(), 2);
        assert!(snap["scanner"].connected);
        assert_eq!(
            snap["scale"].last_error.as_ref().map(|e| e.len()),
            Some(200)
        );
        let p = h.peripherals();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].status, PeripheralStatus::Error);
    }
}
