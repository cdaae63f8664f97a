//! WeChat Pay API v2, the "micropay" (payment-code) family: parameter
//! signing, the flat `<xml>` message codec, the names of the answers, and
//! payment-code classification and masking. Pure: the caller brings the
//! nonce and does the HTTP.
//!
//! A v2 message is a flat map of parameters. Its signature is over all
//! non-empty parameters except `sign`, sorted by name, joined `k=v&…`, with
//! `&key=API_KEY` appended, hashed with MD5 (or HMAC-SHA256 keyed with the API
//! key) and written as upper-case hex.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};

use crate::device::scanner::{self, Code, PaymentCode};
use crate::soap::xml;

/// The parameters of one request or answer, sorted by name.
pub type Params = BTreeMap<String, String>;

/// The real provider's paths, below its base URL.
pub const PATH_MICROPAY: &str = "/pay/micropay";
pub const PATH_ORDERQUERY: &str = "/pay/orderquery";
pub const PATH_REVERSE: &str = "/secapi/pay/reverse";
pub const PATH_REFUND: &str = "/secapi/pay/refund";
pub const PATH_REFUNDQUERY: &str = "/pay/refundquery";

/// Largest message either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Most parameters in one message (the largest real answer has about 30).
const MAX_PARAMS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignType {
    #[default]
    Md5,
    HmacSha256,
}

impl SignType {
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// The `sign_type` parameter; absent means MD5.
    pub fn of(params: &Params) -> Option<SignType> {
        match params.get("sign_type").map(String::as_str) {
            None | Some("") | Some("MD5") => Some(SignType::Md5),
            Some("HMAC-SHA256") => Some(SignType::HmacSha256),
            Some(_) => None,
        }
    }
}

/// The string that is hashed: `k=v&…&key=KEY`.
fn signing_string(params: &Params, key: &str) -> String {
    let mut s = String::new();
    for (k, v) in params {
        if k == "sign" || v.is_empty() {
            continue;
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(key);
    s
}

/// The signature of `params` under `key`, upper-case hex.
pub fn sign(params: &Params, key: &str, sign_type: SignType) -> String {
    let input = signing_string(params, key);
    match sign_type {
        SignType::Md5 => upper_hex(&Md5::digest(input.as_bytes())),
        SignType::HmacSha256 => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(key.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            mac.update(input.as_bytes());
            upper_hex(&mac.finalize().into_bytes())
        }
    }
}

/// Adds `sign` (and `sign_type` when not MD5) to `params`.
pub fn sign_in_place(params: &mut Params, key: &str, sign_type: SignType) {
    params.remove("sign");
    if sign_type != SignType::Md5 {
        params.insert("sign_type".into(), sign_type.as_str().into());
    }
    let s = sign(params, key, sign_type);
    params.insert("sign".into(), s);
}

/// True when `params` carries a valid `sign` for `key`, by its `sign_type`
/// (how a provider checks a request, which names its type).
pub fn verify(params: &Params, key: &str) -> bool {
    SignType::of(params).is_some_and(|t| verify_as(params, key, t))
}

/// True when `params` carries a valid `sign` for `key` under `sign_type`,
/// whatever `sign_type` `params` names: how an answer is checked, since it
/// carries none of its own (the request's applies) and a forged one must
/// not pick a weaker algorithm.
pub fn verify_as(params: &Params, key: &str, sign_type: SignType) -> bool {
    let Some(given) = params.get("sign") else {
        return false;
    };
    let expected = sign(params, key, sign_type);
    // Constant-time enough for hex strings of equal length.
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_uppercase() ^ b))
            == 0
}

fn upper_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

// ---------------------------------------------------------------- the codec

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

/// Writes `<xml><k>v</k>…</xml>`, values escaped.
pub fn encode(params: &Params) -> String {
    let mut out = String::from("<xml>");
    for (k, v) in params {
        // Names come from this code or from a parsed message: both are XML names.
        out.push('<');
        out.push_str(k);
        out.push('>');
        xml::escape_into(&mut out, v);
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

/// Reads a flat `<xml>` message. Text and CDATA are both accepted; nested
/// elements, a second root, DTDs and oversized input are refused.
pub fn decode(input: &[u8]) -> Result<Params, XmlError> {
    let root = xml::parse(input, MAX_MESSAGE_BYTES).map_err(|f| XmlError(f.message))?;
    if root.name != "xml" || !root.ns.is_empty() {
        return Err(XmlError(format!(
            "the root element is <{}>, not <xml>",
            root.name
        )));
    }
    if root.children.len() > MAX_PARAMS {
        return Err(XmlError(format!("more than {MAX_PARAMS} parameters")));
    }
    let mut params = Params::new();
    for child in root.children {
        if !child.children.is_empty() {
            return Err(XmlError(format!(
                "<{}> is not a flat parameter",
                child.name
            )));
        }
        if params.insert(child.name.clone(), child.text).is_some() {
            return Err(XmlError(format!("<{}> appears twice", child.name)));
        }
    }
    Ok(params)
}

// ------------------------------------------------------------------ answers

/// `return_code`/`result_code` value of a successful call.
pub const SUCCESS: &str = "SUCCESS";
pub const FAIL: &str = "FAIL";

/// `err_code`s of micropay that matter to the flow.
pub mod err {
    /// The customer must confirm on the phone: query.
    pub const USERPAYING: &str = "USERPAYING";
    /// The provider does not know yet: query.
    pub const SYSTEMERROR: &str = "SYSTEMERROR";
    pub const BANKERROR: &str = "BANKERROR";
    pub const NOTENOUGH: &str = "NOTENOUGH";
    pub const AUTHCODEEXPIRE: &str = "AUTHCODEEXPIRE";
    pub const AUTH_CODE_INVALID: &str = "AUTH_CODE_INVALID";
    pub const AUTH_CODE_ERROR: &str = "AUTH_CODE_ERROR";
    pub const ORDERPAID: &str = "ORDERPAID";
    pub const ORDERREVERSED: &str = "ORDERREVERSED";
    pub const ORDERCLOSED: &str = "ORDERCLOSED";
    pub const ORDERNOTEXIST: &str = "ORDERNOTEXIST";
    pub const SIGNERROR: &str = "SIGNERROR";
    pub const PARAM_ERROR: &str = "PARAM_ERROR";
    pub const TRADE_ERROR: &str = "TRADE_ERROR";
    /// Refund: more than is still refundable ("refund_fee大于可退金额").
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// Refund: the order is already refunded in full ("订单已全额退款").
    pub const ERROR: &str = "ERROR";
    /// Refund: this `out_refund_no` was used with another amount.
    pub const REFUND_FEE_MISMATCH: &str = "REFUND_FEE_MISMATCH";
    /// Refund query: no such refund.
    pub const REFUNDNOTEXIST: &str = "REFUNDNOTEXIST";
    /// Refund: refused under concurrency; send it again unchanged.
    pub const BIZERR_NEED_RETRY: &str = "BIZERR_NEED_RETRY";
    /// Refund: too many requests; send it again later, unchanged.
    pub const FREQUENCY_LIMITED: &str = "FREQUENCY_LIMITED";
    /// Refund: too many invalid requests; send it again later, unchanged.
    pub const INVALID_REQ_TOO_MUCH: &str = "INVALID_REQ_TOO_MUCH";
    /// Refund: the order is still being processed; try again shortly.
    pub const ORDER_NOT_READY: &str = "ORDER_NOT_READY";
}

/// `refund_status_$n` of a refund, as refundquery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// The money is back with the customer.
    Success,
    /// Accepted, on its way.
    Processing,
    /// Closed by the provider: no money went back.
    RefundClose,
    /// The customer's account cannot take it back the original way; the
    /// merchant must pay out another way.
    Change,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::RefundClose => "REFUNDCLOSE",
            RefundStatus::Change => "CHANGE",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        [
            RefundStatus::Success,
            RefundStatus::Processing,
            RefundStatus::RefundClose,
            RefundStatus::Change,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// Most refunds one refundquery answer is read for: the provider allows at
/// most 50 partial refunds of one order, so `refund_count` is never trusted
/// beyond that (nor beyond the fields actually present).
pub const MAX_REFUNDS: usize = 50;

/// Why a refundquery answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefundQueryError(pub String);

/// What a successful refundquery answer (`result_code=SUCCESS`) says of the
/// refund `out_refund_no`: its `refund_status_$n` and `refund_id_$n`, at
/// the index `$n` whose `out_refund_no_$n` is ours. `Ok(None)` when the
/// answer lists refunds but not this one; `Err` when `refund_count` is not a
/// small number or our refund's status is missing or unknown. Looks at no
/// more than [`MAX_REFUNDS`] indices and never panics.
pub fn refund_status_of(
    params: &Params,
    out_refund_no: &str,
) -> Result<Option<(RefundStatus, String)>, RefundQueryError> {
    let raw = params.get("refund_count").map(String::as_str).unwrap_or("");
    // At most three digits: anything longer is not a count we believe.
    let count = Some(raw)
        .filter(|c| (1..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<usize>().ok())
        .ok_or_else(|| RefundQueryError(format!("refund_count {raw:?} is not a number")))?;
    for n in 0..count.min(MAX_REFUNDS) {
        if params
            .get(&format!("out_refund_no_{n}"))
            .map(String::as_str)
            != Some(out_refund_no)
        {
            continue;
        }
        let status = params
            .get(&format!("refund_status_{n}"))
            .map(String::as_str)
            .unwrap_or("");
        let Some(status) = RefundStatus::parse(status) else {
            return Err(RefundQueryError(format!(
                "refund_status_{n} {status:?} is not a refund status"
            )));
        };
        let refund_id = params
            .get(&format!("refund_id_{n}"))
            .cloned()
            .unwrap_or_default();
        return Ok(Some((status, refund_id)));
    }
    Ok(None)
}

/// `trade_state` of an order, as orderquery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
        }
    }

    pub fn parse(s: &str) -> Option<TradeState> {
        [
            TradeState::Success,
            TradeState::Refund,
            TradeState::NotPay,
            TradeState::Closed,
            TradeState::Revoked,
            TradeState::UserPaying,
            TradeState::PayError,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

// ------------------------------------------------------------ payment codes

/// Which wallet a payment code belongs to, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    WeChatPay,
    Alipay,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::WeChatPay => "wechatpay",
            CodeKind::Alipay => "alipay",
        }
    }

    pub fn parse(s: &str) -> Option<CodeKind> {
        match s {
            "wechatpay" => Some(CodeKind::WeChatPay),
            "alipay" => Some(CodeKind::Alipay),
            _ => None,
        }
    }
}

/// A scanned payment code: only built by [`parse_code`], so always one of
/// the two wallets' shapes. Its `Display` and `Debug` are masked.
#[derive(Clone, PartialEq, Eq)]
pub struct ScannedCode {
    pub kind: CodeKind,
    code: PaymentCode,
}

impl ScannedCode {
    /// The full code, for the provider call only.
    pub fn expose(&self) -> &str {
        self.code.as_str()
    }

    pub fn masked(&self) -> String {
        mask(self.code.as_str())
    }
}

impl fmt::Display for ScannedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ScannedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScannedCode({:?}, {})", self.kind, self.masked())
    }
}

/// WeChat: 18 digits starting 10–15; Alipay: 16–24 digits starting 25–30
/// (the scanner's classification). Anything else is `None`.
pub fn parse_code(code: &str) -> Option<ScannedCode> {
    match scanner::classify(code) {
        Code::WeChatPay(code) => Some(ScannedCode {
            kind: CodeKind::WeChatPay,
            code,
        }),
        Code::Alipay(code) => Some(ScannedCode {
            kind: CodeKind::Alipay,
            code,
        }),
        _ => None,
    }
}

/// A code fit for a log: the first two and last four characters of a code
/// longer than eight, otherwise only `***`. Never panics.
pub fn mask(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}******{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn published() -> Params {
        params(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ])
    }

    #[test]
    fn md5_matches_the_published_vector() {
        assert_eq!(
            sign(&published(), KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn signing_skips_empty_values_and_sign() {
        let mut p = published();
        p.insert("attach".into(), String::new());
        p.insert("sign".into(), "WHATEVER".into());
        assert_eq!(
            sign(&p, KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn hmac_sha256_is_keyed_and_upper_hex() {
        // RFC 4231 test case 2 shape: HMAC-SHA256("Jefe", …) checked through
        // the signing string of a one-parameter message.
        let s = sign(&params(&[("a", "b")]), "Jefe", SignType::HmacSha256);
        assert_eq!(s.len(), 64);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"a=b&key=Jefe");
        assert_eq!(s, upper_hex(&mac.finalize().into_bytes()));
        // RFC 4231 test case 2 itself, so the primitive is the real one.
        let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            upper_hex(&mac.finalize().into_bytes()),
            "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"
        );
        assert_ne!(s, sign(&params(&[("a", "b")]), "Jefe", SignType::Md5));
    }

    #[test]
    fn verify_round_trips_and_refuses_tampering() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            let mut p = published();
            sign_in_place(&mut p, KEY, t);
            assert!(verify(&p, KEY));
            assert!(!verify(&p, "another-key"));
            let mut lowered = p.clone();
            let s = lowered["sign"].to_ascii_lowercase();
            lowered.insert("sign".into(), s);
            assert!(verify(&lowered, KEY), "hex case does not matter");
            p.insert("body".into(), "tampered".into());
            assert!(!verify(&p, KEY));
        }
        let mut p = published();
        p.insert("sign_type".into(), "SHA1".into());
        p.insert("sign".into(), sign(&published(), KEY, SignType::Md5));
        assert!(!verify(&p, KEY), "unknown sign types are refused");
        assert!(!verify(&published(), KEY), "a missing sign is refused");
        let mut hmac = published();
        hmac.insert("sign".into(), sign(&published(), KEY, SignType::HmacSha256));
        assert!(
            verify_as(&hmac, KEY, SignType::HmacSha256),
            "no sign_type needed"
        );
        assert!(!verify_as(&hmac, KEY, SignType::Md5));
        let mut md5 = published();
        md5.insert("sign".into(), sign(&published(), KEY, SignType::Md5));
        assert!(
            !verify_as(&md5, KEY, SignType::HmacSha256),
            "an MD5 answer does not pass when HMAC-SHA256 is configured"
        );
    }

    #[test]
    fn codec_round_trips_with_escaping() {
        let p = params(&[("body", "咖啡 <大> & \"杯\""), ("total_fee", "2116")]);
        let xml = encode(&p);
        assert_eq!(decode(xml.as_bytes()).expect("decode"), p);
    }

    #[test]
    fn decode_reads_cdata_as_the_provider_sends_it() {
        let got = decode(
            b"<xml><return_code><![CDATA[SUCCESS]]></return_code>\n  <total_fee>1</total_fee></xml>",
        )
        .expect("decode");
        assert_eq!(
            got,
            params(&[("return_code", "SUCCESS"), ("total_fee", "1")])
        );
    }

    #[test]
    fn decode_refuses_what_is_not_a_flat_message() {
        let bad: &[&[u8]] = &[
            b"",
            b"<xml>",
            b"<root><a>1</a></root>",
            b"<xml><a><b>1</b></a></xml>",
            b"<xml><a>1</a><a>2</a></xml>",
            b"<!DOCTYPE x [<!ENTITY e \"x\">]><xml><a>&e;</a></xml>",
            b"<xml></xml><xml></xml>",
            b"\xff\xfe",
        ];
        for input in bad {
            assert!(
                decode(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let huge = format!("<xml><a>{}</a></xml>", "x".repeat(MAX_MESSAGE_BYTES));
        assert!(decode(huge.as_bytes()).is_err());
    }

    #[test]
    fn codes_are_classified_by_prefix() {
        let cases = [
            ("134567890123456789", Some(CodeKind::WeChatPay)),
            ("104567890123456789", Some(CodeKind::WeChatPay)),
            ("164567890123456789", None),
            ("13456789012345678", None),
            ("2512345678901234", Some(CodeKind::Alipay)),
            ("301234567890123456789012", Some(CodeKind::Alipay)),
            ("3112345678901234", None),
            ("251234567890123", None),
            ("6901234567892", None),
            ("", None),
            ("13456789012345678x", None),
        ];
        for (code, kind) in cases {
            assert_eq!(parse_code(code).map(|c| c.kind), kind, "{code}");
        }
    }

    #[test]
    fn masking_hides_the_middle_and_never_panics() {
        let c = parse_code("134567890123456789").expect("code");
        assert_eq!(c.to_string(), "13******6789");
        assert!(!format!("{c:?}").contains("4567890123"));
        assert_eq!(c.expose(), "134567890123456789");
        assert_eq!(mask(""), "***");
        assert_eq!(mask("12345678"), "***");
        assert_eq!(mask("微信支付码一二三四五"), "微信******二三四五");
    }

    fn refund_answer(pairs: &[(&str, &str)]) -> Params {
        let mut p = params(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("out_trade_no", "T1"),
        ]);
        p.extend(params(pairs));
        p
    }

    #[test]
    fn refund_status_is_read_at_our_refunds_index() {
        let a = refund_answer(&[
            ("refund_count", "2"),
            ("out_refund_no_0", "R1"),
            ("refund_id_0", "5000001"),
            ("refund_status_0", "SUCCESS"),
            ("out_refund_no_1", "R2"),
            ("refund_id_1", "5000002"),
            ("refund_status_1", "PROCESSING"),
        ]);
        assert_eq!(
            refund_status_of(&a, "R1"),
            Ok(Some((RefundStatus::Success, "5000001".into())))
        );
        assert_eq!(
            refund_status_of(&a, "R2"),
            Ok(Some((RefundStatus::Processing, "5000002".into())))
        );
        assert_eq!(refund_status_of(&a, "R3"), Ok(None));
        for (s, want) in [
            ("REFUNDCLOSE", RefundStatus::RefundClose),
            ("CHANGE", RefundStatus::Change),
        ] {
            let a = refund_answer(&[
                ("refund_count", "1"),
                ("out_refund_no_0", "R1"),
                ("refund_status_0", s),
            ]);
            assert_eq!(
                refund_status_of(&a, "R1"),
                Ok(Some((want, String::new()))),
                "{s}"
            );
        }
    }

    #[test]
    fn refund_status_refuses_what_it_cannot_read() {
        for count in ["", "x", "-1", "1.0", " 1", "99999999999999999999", "0x1"] {
            let a = refund_answer(&[
                ("refund_count", count),
                ("out_refund_no_0", "R1"),
                ("refund_status_0", "SUCCESS"),
            ]);
            assert!(refund_status_of(&a, "R1").is_err(), "{count:?}");
        }
        let no_count = refund_answer(&[("out_refund_no_0", "R1"), ("refund_status_0", "SUCCESS")]);
        assert!(refund_status_of(&no_count, "R1").is_err());
        for status in [None, Some(""), Some("success"), Some("REFUND_SUCCESS")] {
            let mut a = refund_answer(&[("refund_count", "1"), ("out_refund_no_0", "R1")]);
            if let Some(s) = status {
                a.insert("refund_status_0".into(), s.into());
            }
            assert!(refund_status_of(&a, "R1").is_err(), "{status:?}");
        }
    }

    #[test]
    fn refund_count_is_never_trusted_beyond_the_cap_or_the_fields() {
        // A count larger than the fields present: only what is there is read.
        let a = refund_answer(&[
            ("refund_count", "999"),
            ("out_refund_no_0", "R1"),
            ("refund_status_0", "SUCCESS"),
        ]);
        assert_eq!(
            refund_status_of(&a, "R1"),
            Ok(Some((RefundStatus::Success, String::new())))
        );
        assert_eq!(refund_status_of(&a, "R2"), Ok(None));
        // Past the cap, even a matching entry is not looked at.
        let n = MAX_REFUNDS;
        let mut a = refund_answer(&[("refund_count", "60")]);
        a.insert(format!("out_refund_no_{n}"), "R1".into());
        a.insert(format!("refund_status_{n}"), "SUCCESS".into());
        assert_eq!(refund_status_of(&a, "R1"), Ok(None));
        // A count smaller than the entries: the ones past it are not ours.
        let a = refund_answer(&[
            ("refund_count", "0"),
            ("out_refund_no_0", "R1"),
            ("refund_status_0", "SUCCESS"),
        ]);
        assert_eq!(refund_status_of(&a, "R1"), Ok(None));
    }

    #[test]
    fn trade_states_round_trip() {
        for s in [
            "SUCCESS",
            "REFUND",
            "NOTPAY",
            "CLOSED",
            "REVOKED",
            "USERPAYING",
            "PAYERROR",
        ] {
            assert_eq!(TradeState::parse(s).map(TradeState::as_str), Some(s));
        }
        assert_eq!(TradeState::parse("success"), None);
    }
}
