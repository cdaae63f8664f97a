//! Time as the service sees it: µs since the epoch in the database, RFC 3339
//! on the wire, and the store's business day in Asia/Shanghai.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// China Standard Time: UTC+8 all year (no daylight saving since 1991).
const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

/// The system's time now, in µs since the epoch: what [`Clock::system`]
/// reads. The gateway's own code asks the [`Clock`] it was given instead
/// (`Db::clock`), so a test can drive its time rules; this stays for
/// callers outside it (tests, benches) that need a real "now".
pub fn now_micros() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1000) as i64
}

/// Where the gateway reads the time: the system clock when it serves, a
/// manual one in tests, which moves only when told to, so a time rule
/// (business day, alerts, deadlines, retention) is tested without sleeping.
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn system() -> Self {
        Clock::System
    }

    /// A clock that stands at `start_micros` until [`Clock::advance`] or
    /// [`Clock::set`] moves it.
    pub fn manual(start_micros: i64) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start_micros)))
    }

    /// µs since the epoch.
    pub fn now_micros(&self) -> i64 {
        match self {
            Clock::System => now_micros(),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the system clock is not moved.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            let _ = t.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
        }
    }

    /// Sets a manual clock; the system clock is not moved.
    pub fn set(&self, micros: i64) {
        if let Clock::Manual(t) = self {
            t.store(micros, Ordering::SeqCst);
        }
    }
}

fn at(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 in Shanghai local time, e.g. `2026-11-27T19:46:45.123456+08:00`.
pub fn rfc3339(micros: i64) -> String {
    at(micros)
        .to_offset(SHANGHAI)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses an RFC 3339 time into µs since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
}

/// The local business day (`YYYY-MM-DD` in Asia/Shanghai) of an instant.
pub fn business_day(micros: i64) -> String {
    let d = at(micros).to_offset(SHANGHAI).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_day_turns_at_shanghai_midnight() {
        // 2026-11-27T15:59:59Z is 23:59:59 in Shanghai; one second later is the next day.
        let before = 1_795_795_199_000_000;
        assert_eq!(rfc3339(before), "2026-11-27T23:59:59+08:00");
        assert_eq!(business_day(before), "2026-11-27");
        assert_eq!(business_day(before + 1_000_000), "2026-11-28");
        assert_eq!(parse_rfc3339("2026-11-27T23:59:59+08:00"), Some(before));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let clock = Clock::manual(1_000_000);
        let seen_by_a_task = clock.clone();
        assert_eq!(clock.now_micros(), 1_000_000);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(seen_by_a_task.now_micros(), 2_500_000);
        seen_by_a_task.set(7);
        assert_eq!(clock.now_micros(), 7);
        let system = Clock::system();
        system.set(7);
        assert!(system.now_micros() > 1_700_000_000_000_000);
    }
}
