//! A point in time from outside: an RFC 3339 timestamp, read once.
//!
//! ```text
//! timestamp = date ("T" / "t") time [ "." 1*9DIGIT ] ( "Z" / "z" / ("+" / "-") HH ":" MM )
//! date      = YYYY "-" MM "-" DD          ; years 2000-2999
//! time      = HH ":" MM ":" SS            ; no leap second
//! ```
//!
//! At most [`MAX_LEN`] characters; the value is kept as microseconds since
//! the Unix epoch (UTC), computed with checked arithmetic: no input panics.
//! Proto reads no clock: how far from now a timestamp may be is the
//! caller's business.

use crate::order::ParseError;

/// Longest timestamp read (`2026-12-03T14:05:09.123456789+08:00` is 35).
pub const MAX_LEN: usize = 40;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A valid RFC 3339 timestamp: its text as sent and its instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    text: String,
    micros: i64,
}

impl Timestamp {
    /// Reads `s` (surrounding spaces are not allowed: the caller trims).
    pub fn parse(s: &str) -> Result<Timestamp, ParseError> {
        let bad = |why: &str| {
            let shown: String = s.chars().take(MAX_LEN).collect();
            ParseError::new(
                "invalid_time",
                format!("{shown:?} is not an RFC 3339 time like 2026-12-03T14:05:09+08:00: {why}"),
            )
        };
        if s.len() > MAX_LEN {
            return Err(bad("too long"));
        }
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(bad("too short"));
        }
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            part.iter().try_fold(0_i64, |acc, d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            return Err(bad("wrong separators"));
        }
        let fields = (
            num(0, 4),
            num(5, 2),
            num(8, 2),
            num(11, 2),
            num(14, 2),
            num(17, 2),
        );
        let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
        else {
            return Err(bad("a field is not digits"));
        };
        if !(2000..=2999).contains(&year) {
            return Err(bad("the year must be 2000-2999"));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("no such date"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad("no such time of day"));
        }
        // Fraction: up to nine digits, kept to the microsecond.
        let mut at = 19;
        let mut frac_micros = 0_i64;
        if sep(at, b".") {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            let digits = at - start;
            if digits == 0 || digits > 9 {
                return Err(bad("the fraction of a second needs 1-9 digits"));
            }
            for i in 0..6 {
                let d = if i < digits {
                    i64::from(b[start + i] - b'0')
                } else {
                    0
                };
                frac_micros = frac_micros * 10 + d;
            }
        }
        let offset_s = match b.get(at) {
            Some(b'Z' | b'z') if b.len() == at + 1 => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 && sep(at + 3, b":") => {
                let (Some(oh), Some(om)) = (num(at + 1, 2), num(at + 4, 2)) else {
                    return Err(bad("the offset is not digits"));
                };
                if oh > 23 || om > 59 {
                    return Err(bad("no such offset"));
                }
                let off = oh * 3600 + om * 60;
                if sign == b'-' { -off } else { off }
            }
            _ => return Err(bad("it must end in Z or an offset like +08:00")),
        };
        // Years 2000-2999: every value below stays far inside i64.
        let days = days_from_civil(year, month, day);
        let local_s = days * 86_400 + hour * 3600 + minute * 60 + second;
        let micros = (local_s - offset_s)
            .checked_mul(MICROS_PER_SECOND)
            .and_then(|m| m.checked_add(frac_micros))
            .ok_or_else(|| bad("out of range"))?;
        Ok(Timestamp {
            text: s.to_owned(),
            micros,
        })
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub fn micros(&self) -> i64 {
        self.micros
    }

    /// The text as it was sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian), for years
/// from 2000: whole years, then whole months of the year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let years = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum::<i64>();
    let months = (1..month).map(|m| days_in_month(year, m)).sum::<i64>();
    years + months + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_never_panics(s in "\\PC{0,48}") {
            let _ = Timestamp::parse(&s);
        }

        #[test]
        fn near_times_never_panic_and_agree_with_their_offset(
            s in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,11})?",
            off in 0_i64..(24 * 60),
        ) {
            let (h, m) = (off / 60, off % 60);
            let utc = Timestamp::parse(&format!("{s}Z"));
            let east = Timestamp::parse(&format!("{s}+{h:02}:{m:02}"));
            if let (Ok(u), Ok(e)) = (&utc, &east) {
                prop_assert_eq!(u.micros() - e.micros(), off * 60 * MICROS_PER_SECOND);
            } else {
                prop_assert_eq!(utc.is_ok(), east.is_ok());
            }
        }
    }

    #[test]
    fn reads_utc_offsets_and_fractions() {
        let t = |s: &str| Timestamp::parse(s).map(|t| t.micros());
        // 2026-12-03T06:00:00Z, known from `date -d ... +%s`: 1796277600.
        assert_eq!(t("2026-12-03T06:00:00Z"), Ok(1_796_277_600_000_000));
        assert_eq!(t("2026-12-03T14:00:00+08:00"), Ok(1_796_277_600_000_000));
        assert!(t("2026-12-02t22:00:00-08:00z").is_err());
        assert_eq!(t("2026-12-02T22:00:00-08:00"), Ok(1_796_277_600_000_000));
        assert_eq!(t("2026-12-03T06:00:00.5Z"), Ok(1_796_277_600_500_000));
        assert_eq!(
            t("2026-12-03T06:00:00.123456789z"),
            Ok(1_796_277_600_123_456)
        );
        assert_eq!(t("2000-01-01T00:00:00Z"), Ok(946_684_800_000_000));
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000_000));
        assert_eq!(
            Timestamp::parse("2026-12-03T14:00:00+08:00")
                .unwrap()
                .as_str(),
            "2026-12-03T14:00:00+08:00"
        );
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for s in [
            "",
            "2026-12-03",
            "2026-12-03 06:00:00Z",
            "2026-12-03T06:00:00",
            "2026-13-03T06:00:00Z",
            "2026-02-29T06:00:00Z",
            "2026-12-32T06:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T06:60:00Z",
            "2026-12-03T06:00:60Z",
            "1999-12-31T23:59:59Z",
            "3000-01-01T00:00:00Z",
            "2026-12-03T06:00:00.Z",
            "2026-12-03T06:00:00.1234567890Z",
            "2026-12-03T06:00:00+24:00",
            "2026-12-03T06:00:00+08:0",
            "2026-12-03T06:00:00+0800",
            "2026-12-03T06:00:00Z ",
            "+026-12-03T06:00:00Z",
            "２０26-12-03T06:00:00Z",
            "2026-12-03T06:00:00.000000000000000000000001Z",
        ] {
            let e = Timestamp::parse(s).expect_err(s);
            assert_eq!(e.code, "invalid_time", "{s}");
        }
    }
}
