//! The one grammar for decimal numbers from outside: money and quantities.
//!
//! Every surface (REST, SOAP, platform pushes, provider answers, the admin
//! API) reads a decimal through [`parse_scaled`], so they all accept exactly
//! the same strings:
//!
//! ```text
//! number = 1*DIGIT [ "." 1*scale DIGIT ]      ; ASCII digits only
//! ```
//!
//! No sign, no exponent, no `_` or `,` separators, no whitespace, no leading
//! or trailing `.`, at most [`MAX_LEN`] characters, and a value of at most the
//! caller's maximum. The result is an integer count of `10^-scale` units
//! (fen, thousandths), computed with checked arithmetic: no input can panic.

/// Longest decimal string read. The largest values accepted need 12
/// characters; the rest of the room is for leading zeros.
pub const MAX_LEN: usize = 32;

/// Why a decimal string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("not a plain decimal number (digits, optionally '.' and decimals)")]
    Malformed,
    #[error("negative numbers are not allowed")]
    Negative,
    #[error("more than {0} decimals")]
    TooPrecise(u32),
    #[error("longer than {MAX_LEN} characters")]
    TooLong,
    #[error("larger than the maximum")]
    TooLarge,
}

/// Reads `s` as a non-negative decimal with at most `scale` decimals into
/// whole units of `10^-scale`, refusing anything above `max` units.
///
/// `scale` above 9 is refused as [`NumberError::TooPrecise`]: nothing here
/// needs it, and it keeps `10^scale` far inside `i64`.
pub fn parse_scaled(s: &str, scale: u32, max: i64) -> Result<i64, NumberError> {
    if s.len() > MAX_LEN {
        return Err(NumberError::TooLong);
    }
    if s.starts_with('-') {
        return Err(NumberError::Negative);
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(NumberError::Malformed);
    }
    let frac = frac.unwrap_or("");
    if scale > 9 || frac.len() > scale as usize {
        return Err(NumberError::TooPrecise(scale));
    }
    let mut units: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(i64::from(b - b'0')))
            .ok_or(NumberError::TooLarge)?;
    }
    // frac.len() <= scale <= 9, so the exponent is small.
    let pad = 10_i64.pow(scale - frac.len() as u32);
    units
        .checked_mul(pad)
        .filter(|u| *u <= max)
        .ok_or(NumberError::TooLarge)
}

/// Writes `units` of `10^-scale` as the shortest decimal with exactly
/// `places` decimals (`places <= scale`) when the dropped digits are zeros,
/// else with all `scale` decimals: `format_scaled(2500, 3, 0)` is `"2.5"`.
///
/// What it writes, [`parse_scaled`] reads back to the same value.
pub fn format_scaled(units: i64, scale: u32, places: u32) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let one = 10_u64.pow(scale.min(9));
    let (whole, mut frac) = (abs / one, abs % one);
    let mut width = scale.min(9);
    while width > places && frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    if width == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac:0w$}", w = width as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i64 = 10_000_000_000;

    #[test]
    fn the_grammar_in_a_table() {
        let ok = [
            ("0", 0),
            ("00", 0),
            ("7", 700),
            ("39.9", 3990),
            ("39.90", 3990),
            ("0.01", 1),
            ("007.50", 750),
            ("100000000", MAX),
            ("100000000.00", MAX),
        ];
        for (s, want) in ok {
            assert_eq!(parse_scaled(s, 2, MAX), Ok(want), "{s:?}");
        }
        let bad = [
            ("", NumberError::Malformed),
            (".", NumberError::Malformed),
            (".5", NumberError::Malformed),
            ("5.", NumberError::Malformed),
            ("1.2.3", NumberError::Malformed),
            ("+2", NumberError::Malformed),
            ("1_0", NumberError::Malformed),
            ("1,0", NumberError::Malformed),
            ("1e3", NumberError::Malformed),
            ("1E3", NumberError::Malformed),
            (" 1", NumberError::Malformed),
            ("1 ", NumberError::Malformed),
            ("\t1", NumberError::Malformed),
            ("1\n", NumberError::Malformed),
            ("0x10", NumberError::Malformed),
            ("NaN", NumberError::Malformed),
            ("inf", NumberError::Malformed),
            ("１", NumberError::Malformed),
            ("٣", NumberError::Malformed),
            ("-1", NumberError::Negative),
            ("-0", NumberError::Negative),
            ("-0.5", NumberError::Negative),
            ("1.001", NumberError::TooPrecise(2)),
            ("1.000", NumberError::TooPrecise(2)),
            ("0.0001", NumberError::TooPrecise(2)),
            ("100000000.01", NumberError::TooLarge),
            ("99999999999", NumberError::TooLarge),
            ("9223372036854775807", NumberError::TooLarge),
            ("92233720368547758070", NumberError::TooLarge),
            ("100000000000000000000000000", NumberError::TooLarge),
        ];
        for (s, want) in bad {
            assert_eq!(parse_scaled(s, 2, MAX), Err(want), "{s:?}");
        }
        let twenty = format!("1.{}", "1".repeat(20));
        assert_eq!(
            parse_scaled(&twenty, 2, MAX),
            Err(NumberError::TooPrecise(2))
        );
        let long = "1".repeat(10_000);
        assert_eq!(parse_scaled(&long, 3, MAX), Err(NumberError::TooLong));
        let zeros = format!("{}1", "0".repeat(MAX_LEN - 1));
        assert_eq!(parse_scaled(&zeros, 3, MAX), Ok(1000));
        assert_eq!(
            parse_scaled(&format!("0{zeros}"), 3, MAX),
            Err(NumberError::TooLong)
        );
        assert_eq!(parse_scaled("2.000", 3, MAX), Ok(2000));
        assert_eq!(parse_scaled("0.355", 3, MAX), Ok(355));
        assert_eq!(parse_scaled("1", 9, i64::MAX), Ok(1_000_000_000));
        assert_eq!(
            parse_scaled("1", 10, i64::MAX),
            Err(NumberError::TooPrecise(10))
        );
    }

    #[test]
    fn formats_with_the_places_asked() {
        assert_eq!(format_scaled(3990, 2, 2), "39.90");
        assert_eq!(format_scaled(0, 2, 2), "0.00");
        assert_eq!(format_scaled(-5, 2, 2), "-0.05");
        assert_eq!(format_scaled(355, 3, 3), "0.355");
        assert_eq!(format_scaled(12_500, 3, 3), "12.500");
        assert_eq!(format_scaled(2000, 3, 0), "2");
        assert_eq!(format_scaled(2500, 3, 0), "2.5");
        assert_eq!(format_scaled(i64::MIN, 3, 3), "-9223372036854775.808");
    }

    mod props {
        use super::super::*;
        use super::MAX;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_strings_never_panic_and_round_trip(
                s in prop_oneof![
                    any::<String>(),
                    "[-+0-9._eE ]{0,40}",
                    "[0-9]{0,30}(\\.[0-9]{0,12})?",
                ],
                scale in 0u32..12,
                max in any::<i64>(),
            ) {
                if let Ok(v) = parse_scaled(&s, scale, max) {
                    prop_assert!((0..=max).contains(&v));
                    let back = format_scaled(v, scale, scale);
                    prop_assert_eq!(parse_scaled(&back, scale, max), Ok(v), "{} → {}", s, back);
                    let short = format_scaled(v, scale, 0);
                    prop_assert_eq!(parse_scaled(&short, scale, max), Ok(v), "{} → {}", s, short);
                }
            }

            #[test]
            fn every_value_up_to_the_maximum_round_trips(v in 0i64..=MAX, scale in 0u32..=3) {
                let s = format_scaled(v, scale, scale);
                prop_assert_eq!(parse_scaled(&s, scale, MAX), Ok(v));
            }
        }
    }
}
