//! The store PC's own troubles, for the counter screen: a disk filling up
//! under the state directory, and the wall clock jumping.
//!
//! Neither loses a sale: a sale is shown as paid only after its commit, so
//! a full disk turns checkout into a clear refusal (`disk_full`, 507) and
//! what was already committed stays. A clock jump is reported (sales keep
//! their local order by number, not by time; the uploader sends the time
//! the sale was recorded, so a wrong clock shows on the gateway as a
//! wrong `soldAt`, nothing worse).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::store::{now_us, rfc3339};

/// Below this much free space under the state directory the screen warns.
pub const DISK_LOW_BYTES: u64 = 64 * 1024 * 1024;
/// A wall-clock step larger than this against the monotonic clock is a jump.
const JUMP: Duration = Duration::from_secs(5);
/// How long a clock jump stays on the screen.
const JUMP_SHOWN: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
    pub since: String,
}

/// A warning and until when it shows (`None`: until cleared).
type Shown = (Warning, Option<Instant>);

/// Shared between the watcher, the API and the screen. Cheap to clone.
#[derive(Clone, Default)]
pub struct Warnings {
    inner: Arc<Mutex<BTreeMap<&'static str, Shown>>>,
}

impl Warnings {
    pub fn snapshot(&self) -> Vec<Warning> {
        let now = Instant::now();
        match self.inner.lock() {
            Ok(mut m) => {
                m.retain(|_, (_, until)| until.is_none_or(|u| u > now));
                m.values().map(|(w, _)| w.clone()).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Raises (or keeps) warning `code`; `for_` limits how long it shows.
    pub fn raise(&self, code: &'static str, message: String, for_: Option<Duration>) {
        if let Ok(mut m) = self.inner.lock() {
            let until = for_.map(|d| Instant::now() + d);
            let since = m
                .get(code)
                .map(|(w, _)| w.since.clone())
                .unwrap_or_else(|| rfc3339(now_us()));
            m.insert(
                code,
                (
                    Warning {
                        code,
                        message,
                        since,
                    },
                    until,
                ),
            );
        }
    }

    pub fn clear(&self, code: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(code);
        }
    }
}

/// Free bytes for this user on the filesystem holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// Watches the disk and the clock every `every`.
pub async fn run_watch(
    dir: PathBuf,
    warnings: Warnings,
    every: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut mono = Instant::now();
    let mut wall = SystemTime::now();
    loop {
        match free_bytes(&dir) {
            Some(free) if free < DISK_LOW_BYTES => warnings.raise(
                "disk_low",
                format!(
                    "only {} MB free under the state directory {}: sales may soon be refused; free some space",
                    free / (1024 * 1024),
                    dir.display()
                ),
                None,
            ),
            Some(_) => warnings.clear("disk_low"),
            None => {}
        }
        let (m, w) = (Instant::now(), SystemTime::now());
        let mono_d = m.duration_since(mono).as_secs_f64();
        let wall_d = match w.duration_since(wall) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        let step = wall_d - mono_d;
        if step.abs() > JUMP.as_secs_f64() {
            let msg = format!(
                "the PC's clock jumped {} by {:.0} s; check the time (sales are kept in order; their recorded times may be off)",
                if step > 0.0 { "forward" } else { "back" },
                step.abs()
            );
            tracing::warn!("{msg}");
            warnings.raise("clock_jump", msg, Some(JUMP_SHOWN));
        }
        (mono, wall) = (m, w);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}

/// True for SQLite's "database or disk is full" (and the OS's ENOSPC).
pub fn is_disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("13") || d.message().contains("disk is full")
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}
