//! The counter devices' wire protocols: ESC/POS receipt printers, Toledo
//! 8217-style scales, serial barcode scanners and CD5220 customer displays.
//!
//! Everything here is sans-IO and shared by both ends of a line: the drivers in
//! `terminal-sdk` encode host commands and decode device replies, the
//! simulators in `hw-sim` do the opposite. A decoder is a pure function over a
//! byte buffer that returns a [`Decode`]: a complete item and how many bytes it
//! took, "need more bytes", or "these bytes cannot start an item, drop them".
//! Decoders never panic, whatever the input.

use std::fmt;

use crate::order::{ParseError, Quantity, Unit};

pub mod display;
pub mod escpos;
pub mod scale;
pub mod scanner;

/// What a decoder made of the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode<T> {
    /// A complete item that took the first `len` bytes.
    Done(T, usize),
    /// The buffer holds the start of an item: read more bytes and try again.
    NeedMore,
    /// The first `skip` bytes (at least one) cannot start an item: drop them
    /// and try again. This is how decoders resynchronise after line noise.
    Invalid { skip: usize, reason: &'static str },
}

impl<T> Decode<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decode<U> {
        match self {
            Decode::Done(t, n) => Decode::Done(f(t), n),
            Decode::NeedMore => Decode::NeedMore,
            Decode::Invalid { skip, reason } => Decode::Invalid { skip, reason },
        }
    }
}

/// A weight in whole grams, never negative. Scales report kilograms with three
/// decimals, so grams are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(u32);

/// Heaviest weight any supported scale can show (99.999 kg, five digits).
pub const MAX_GRAMS: u32 = 99_999;

impl Weight {
    pub const ZERO: Weight = Weight(0);

    /// A weight of `grams`, if a scale can show it.
    pub fn from_grams(grams: u32) -> Option<Self> {
        (grams <= MAX_GRAMS).then_some(Weight(grams))
    }

    pub fn grams(self) -> u32 {
        self.0
    }

    /// The weight as an order-line quantity in kilograms.
    pub fn to_quantity(self) -> Quantity {
        Quantity::from_milli(Unit::Kg, i64::from(self.0))
    }

    /// Parses kilograms with at most three decimals, e.g. `"0.355"`.
    pub fn parse_kg(s: &str) -> Result<Self, ParseError> {
        match parse_milli(s) {
            Some(g) if g >= 0 => u32::try_from(g)
                .ok()
                .and_then(Weight::from_grams)
                .ok_or_else(|| ParseError::new("invalid_weight", format!("{s:?} is too heavy"))),
            _ => Err(ParseError::new(
                "invalid_weight",
                format!("weight must be kilograms with at most 3 decimals, got {s:?}"),
            )),
        }
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} kg", self.0 / 1000, self.0 % 1000)
    }
}

/// Parses a signed decimal with at most three places into thousandths,
/// without floating point: `"-0.01"` → `-10`. A leading `-` is allowed (a
/// scale shows negative net weight); the rest is the grammar of
/// [`crate::number`], at most 999,999,999.999. Surrounding spaces are
/// ignored, as a scale pads its display.
pub fn parse_milli(s: &str) -> Option<i64> {
    const MAX: i64 = 999_999_999_999;
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let milli = crate::number::parse_scaled(s, 3, MAX).ok()?;
    Some(if neg { -milli } else { milli })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_exactly() {
        let cases = [
            ("0.355", Some(355)),
            ("1", Some(1000)),
            ("12.5", Some(12_500)),
            ("99.999", Some(99_999)),
            ("100", None),
            ("-0.001", None),
            ("0.0001", None),
            ("1e3", None),
            ("", None),
            (".5", None),
        ];
        for (s, grams) in cases {
            assert_eq!(Weight::parse_kg(s).ok().map(Weight::grams), grams, "{s}");
        }
        assert_eq!(parse_milli("-0.01"), Some(-10));
        assert_eq!(parse_milli(" 1.5 "), Some(1500));
        for bad in [
            "--1",
            "-+1",
            "+1",
            "1_0",
            "1.",
            "1e3",
            "1000000000",
            "1.0001",
        ] {
            assert_eq!(parse_milli(bad), None, "{bad:?}");
        }
        assert_eq!(Weight(1234).to_string(), "1.234 kg");
        assert_eq!(Weight(1234).to_quantity().milli(), 1234);
    }
}
