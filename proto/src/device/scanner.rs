//! Barcode scanners in serial (USB-COM) mode, and what a scanned code is.
//!
//! A scanner sends one code per line, ended by CR, CRLF, LF or TAB, sometimes
//! after an AIM symbology identifier such as `]E0` (EAN-13) or `]Q1` (QR).
//! [`classify`] tells a customer's payment code from a product code or an
//! in-store label for weighed goods.

use std::fmt;

use super::{Decode, Weight};
use crate::order::Money;

/// Longest code we accept on one line; anything longer is noise.
pub const MAX_LINE: usize = 256;

/// One scanned line, terminator and AIM prefix removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The AIM identifier without its `]`, e.g. `E0`.
    pub aim: Option<String>,
    pub code: String,
}

fn is_terminator(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | b'\t')
}

/// Decodes one line (the host's side). A line holding anything but printable
/// ASCII is dropped whole, up to its terminator; blank lines (such as the LF
/// of a CRLF) are skipped as `Invalid`.
pub fn decode(buf: &[u8]) -> Decode<Scan> {
    let Some(end) = buf.iter().position(|&b| is_terminator(b)) else {
        if buf.len() > MAX_LINE {
            return Decode::Invalid {
                skip: buf.len(),
                reason: "line too long",
            };
        }
        return Decode::NeedMore;
    };
    if end == 0 {
        return Decode::Invalid {
            skip: 1,
            reason: "blank line",
        };
    }
    let line = &buf[..end];
    let bad = |reason| Decode::Invalid {
        skip: end + 1,
        reason,
    };
    if line.len() > MAX_LINE {
        return bad("line too long");
    }
    if !line.iter().all(|b| (0x20..0x7F).contains(b)) {
        return bad("unprintable bytes in line");
    }
    // Printable ASCII is valid UTF-8.
    let text = String::from_utf8_lossy(line);
    let (aim, code) = match text.strip_prefix(']') {
        Some(rest) if rest.len() > 2 && rest.is_char_boundary(2) => {
            (Some(rest[..2].to_owned()), rest[2..].to_owned())
        }
        Some(_) => return bad("truncated AIM prefix"),
        None => (None, text.into_owned()),
    };
    if code.trim().is_empty() {
        return bad("empty code");
    }
    Decode::Done(Scan { aim, code }, end + 1)
}

/// The bytes a scanner sends for `code` with an optional AIM prefix and a
/// terminator (the simulator's side).
pub fn encode(code: &str, aim: Option<&str>, terminator: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    if let Some(aim) = aim {
        v.push(b']');
        v.extend(aim.bytes());
    }
    v.extend(code.bytes());
    v.extend(terminator);
    v
}

/// A customer's payment code (付款码), as shown by the wallet app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentCode(String);

impl PaymentCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Payment codes are secrets for a minute: show only the first and last digits.
impl fmt::Display for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        write!(f, "{}…{}", &s[..2], &s[s.len() - 4..])
    }
}

/// What an embedded label value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelValue {
    Weight(Weight),
    Price(Money),
}

/// An EAN-13 label printed by the store's label scale for weighed goods:
/// `2F PPPPP VVVVV C` — prefix 2, a flag digit, a 5-digit PLU (the store's
/// item code), a 5-digit value and the check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreLabel {
    pub plu: String,
    pub value: LabelValue,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Code {
    WeChatPay(PaymentCode),
    Alipay(PaymentCode),
    /// An EAN-13 or EAN-8 product code with a valid check digit.
    Product(String),
    StoreLabel(StoreLabel),
    /// Anything else (a QR code URL, a code with a bad check digit, …).
    Other(String),
}

/// Which flag digits (the second digit of a `2…` label) mean what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRules {
    /// Flags `0..=price_flags_end` embed a price in fen.
    pub price_flags_end: u8,
}

impl Default for LabelRules {
    /// `20`-`24`: price in fen; `25`-`29`: weight in grams.
    fn default() -> Self {
        LabelRules { price_flags_end: 4 }
    }
}

/// The GS1 check digit of all digits but the last, compared with the last.
pub fn check_digit_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (body, check) = b.split_at(b.len() - 1);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check[0] - b'0')
}

pub fn classify(code: &str) -> Code {
    classify_with(code, LabelRules::default())
}

pub fn classify_with(code: &str, rules: LabelRules) -> Code {
    let code = code.trim();
    let digits = !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return Code::Other(code.to_owned());
    }
    let prefix: u8 = code.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    match code.len() {
        18 if (10..=15).contains(&prefix) => return Code::WeChatPay(PaymentCode(code.into())),
        16..=24 if (25..=30).contains(&prefix) => {
            return Code::Alipay(PaymentCode(code.into()));
        }
        13 | 8 if check_digit_ok(code) => {
            if code.len() == 13
                && code.starts_with('2')
                && let Some(label) = store_label(code, rules)
            {
                return Code::StoreLabel(label);
            }
            return Code::Product(code.into());
        }
        _ => {}
    }
    Code::Other(code.to_owned())
}

fn store_label(code: &str, rules: LabelRules) -> Option<StoreLabel> {
    let flag = code.as_bytes()[1] - b'0';
    let plu = code.get(2..7)?.to_owned();
    let value: u32 = code.get(7..12)?.parse().ok()?;
    let value = if flag <= rules.price_flags_end {
        LabelValue::Price(Money::from_fen(i64::from(value)))
    } else {
        LabelValue::Weight(Weight::from_grams(value)?)
    };
    Some(StoreLabel {
        plu,
        value,
        code: code.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_table() {
        let scan = |aim: Option<&str>, code: &str| Scan {
            aim: aim.map(str::to_owned),
            code: code.to_owned(),
        };
        let cases: &[(&[u8], Decode<Scan>)] = &[
            (
                b"6901234567892\r",
                Decode::Done(scan(None, "6901234567892"), 14),
            ),
            (
                b"6901234567892\r\n",
                Decode::Done(scan(None, "6901234567892"), 14),
            ),
            (
                b"\n",
                Decode::Invalid {
                    skip: 1,
                    reason: "blank line",
                },
            ),
            (
                b"]E06901234567892\t",
                Decode::Done(scan(Some("E0"), "6901234567892"), 17),
            ),
            (b"690123", Decode::NeedMore),
            (
                b"69\x0012\rnext",
                Decode::Invalid {
                    skip: 6,
                    reason: "unprintable bytes in line",
                },
            ),
            (
                b"]E\r",
                Decode::Invalid {
                    skip: 3,
                    reason: "truncated AIM prefix",
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&decode(input), want, "{input:?}");
        }
        assert!(matches!(
            decode(&[b'1'; 300]),
            Decode::Invalid { skip: 300, .. }
        ));
    }

    #[test]
    fn classification_table() {
        let pay = |s: &str| PaymentCode(s.into());
        let cases = [
            (
                "134567890123456789",
                Code::WeChatPay(pay("134567890123456789")),
            ),
            (
                "104567890123456789",
                Code::WeChatPay(pay("104567890123456789")),
            ),
            (
                "284567890123456789",
                Code::Alipay(pay("284567890123456789")),
            ),
            ("2512345678901234", Code::Alipay(pay("2512345678901234"))),
            (
                "301234567890123456789012",
                Code::Alipay(pay("301234567890123456789012")),
            ),
            (
                "164567890123456789",
                Code::Other("164567890123456789".into()),
            ),
            ("6901234567892", Code::Product("6901234567892".into())),
            ("6901234567893", Code::Other("6901234567893".into())),
            ("96385074", Code::Product("96385074".into())),
            ("https://x.cn/q", Code::Other("https://x.cn/q".into())),
            ("", Code::Other(String::new())),
        ];
        for (code, want) in cases {
            assert_eq!(classify(code), want, "{code}");
        }
    }

    #[test]
    fn store_labels_embed_weight_or_price() {
        // 27 01234 00355 check: weight 355 g of PLU 01234.
        let mut body = "270123400355".to_string();
        let check = (0..10)
            .find(|d| check_digit_ok(&format!("{body}{d}")))
            .unwrap();
        body.push_str(&check.to_string());
        match classify(&body) {
            Code::StoreLabel(l) => {
                assert_eq!(l.plu, "01234");
                assert_eq!(
                    l.value,
                    LabelValue::Weight(Weight::from_grams(355).unwrap())
                );
            }
            other => panic!("{other:?}"),
        }
        let mut body = "220123401250".to_string();
        let check = (0..10)
            .find(|d| check_digit_ok(&format!("{body}{d}")))
            .unwrap();
        body.push_str(&check.to_string());
        assert!(matches!(
            classify(&body),
            Code::StoreLabel(StoreLabel { value: LabelValue::Price(m), .. }) if m.fen() == 1250
        ));
        assert_eq!(pay_display(), "13…6789");
    }

    fn pay_display() -> String {
        PaymentCode("134567890123456789".into()).to_string()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = &bytes[..];
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode(buf) {
                prop_assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
        }

        #[test]
        fn any_string_classifies(s in "\\PC{0,30}") {
            let _ = classify(&s);
        }

        #[test]
        fn encoded_codes_decode(code in "[0-9A-Za-z]{1,40}") {
            let bytes = encode(&code, Some("E0"), b"\r\n");
            prop_assert_eq!(decode(&bytes), Decode::Done(Scan { aim: Some("E0".into()), code }, bytes.len() - 1));
        }
    }
}
