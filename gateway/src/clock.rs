//! Time as the service sees it: µs since the epoch in the database, RFC 3339
//! on the wire, and the store's business day in Asia/Shanghai.

use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// China Standard Time: UTC+8 all year (no daylight saving since 1991).
const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

pub fn now_micros() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1000) as i64
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
}
