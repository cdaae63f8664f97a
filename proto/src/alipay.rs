//! The Alipay open API, barcode-pay family (`alipay.trade.pay`, `.query`,
//! `.cancel`, `.refund`): request parameters, RSA2 signing and checking, the
//! signed JSON answers, and fen ↔ yuan. Pure: the caller brings the clock
//! (`timestamp`) and does the HTTP.
//!
//! A request is a form POST to `{base}/gateway.do` with the common parameters
//! (`app_id`, `method`, `charset`, `sign_type`, `timestamp`, `version`), the
//! business parameters as JSON in `biz_content`, and `sign`: SHA256withRSA
//! (PKCS#1 v1.5) over every non-empty parameter except `sign`, sorted by name
//! and joined `k=v&…`, in base64. An answer is
//! `{"alipay_trade_pay_response": {…}, "sign": "…"}`; its signature covers
//! the raw JSON text of the `…_response` object exactly as sent.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::Sha256;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The parameters of one request, sorted by name.
pub type Params = BTreeMap<String, String>;

/// The one path of the open API, below its base URL.
pub const PATH_GATEWAY: &str = "/gateway.do";

/// Largest request or answer either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Most parameters in one request (a real one has about a dozen).
const MAX_PARAMS: usize = 50;

pub const CHARSET: &str = "utf-8";
pub const SIGN_TYPE: &str = "RSA2";
pub const VERSION: &str = "1.0";
/// `scene` of a payment-code charge.
pub const SCENE_BAR_CODE: &str = "bar_code";

/// The `method` parameter.
pub mod method {
    pub const PAY: &str = "alipay.trade.pay";
    pub const QUERY: &str = "alipay.trade.query";
    pub const CANCEL: &str = "alipay.trade.cancel";
    pub const REFUND: &str = "alipay.trade.refund";
    pub const REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
    pub const ALL: [&str; 5] = [PAY, QUERY, CANCEL, REFUND, REFUND_QUERY];
}

/// The answer's `code`.
pub mod code {
    /// Done.
    pub const SUCCESS: &str = "10000";
    /// The customer must confirm on the phone: query.
    pub const WAITING: &str = "10003";
    /// The provider does not know (yet): query.
    pub const UNKNOWN: &str = "20000";
    /// Not authorised for this call.
    pub const NO_AUTH: &str = "20001";
    /// A parameter is missing.
    pub const MISSING_PARAM: &str = "40001";
    /// A parameter is wrong, including the signature.
    pub const INVALID_PARAM: &str = "40002";
    /// A business failure: `sub_code` says which.
    pub const FAILED: &str = "40004";
}

/// `sub_code`s that matter to the flow.
pub mod sub {
    pub const AUTH_CODE_INVALID: &str = "ACQ.PAYMENT_AUTH_CODE_INVALID";
    pub const BALANCE_NOT_ENOUGH: &str = "ACQ.BUYER_BALANCE_NOT_ENOUGH";
    /// Pay: the buyer's bank card behind the wallet is short.
    pub const BANKCARD_BALANCE_NOT_ENOUGH: &str = "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH";
    pub const TRADE_HAS_CLOSE: &str = "ACQ.TRADE_HAS_CLOSE";
    pub const TRADE_HAS_SUCCESS: &str = "ACQ.TRADE_HAS_SUCCESS";
    pub const TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
    pub const TRADE_STATUS_ERROR: &str = "ACQ.TRADE_STATUS_ERROR";
    pub const SYSTEM_ERROR: &str = "ACQ.SYSTEM_ERROR";
    pub const REFUND_AMT_NOT_EQUAL_TOTAL: &str = "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL";
    /// Refund: more than is still refundable ("退款金额无效").
    pub const REASON_TRADE_REFUND_FEE_ERR: &str = "ACQ.REASON_TRADE_REFUND_FEE_ERR";
    /// Refund or cancel: the merchant's own account is short; it works once
    /// the account is topped up.
    pub const SELLER_BALANCE_NOT_ENOUGH: &str = "ACQ.SELLER_BALANCE_NOT_ENOUGH";
    pub const INVALID_PARAMETER: &str = "ACQ.INVALID_PARAMETER";
    pub const INVALID_SIGNATURE: &str = "isv.invalid-signature";
    pub const INVALID_APP_ID: &str = "isv.invalid-app-id";
    pub const MISSING_PARAM: &str = "isv.missing-method";
}

/// `trade_status` of a trade, as `alipay.trade.query` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    WaitBuyerPay,
    TradeSuccess,
    TradeClosed,
    TradeFinished,
}

impl TradeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
        }
    }

    pub fn parse(s: &str) -> Option<TradeStatus> {
        [
            TradeStatus::WaitBuyerPay,
            TradeStatus::TradeSuccess,
            TradeStatus::TradeClosed,
            TradeStatus::TradeFinished,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

// ------------------------------------------------------------------- money

/// Fen as Alipay's yuan string with two places: 2116 → `"21.16"`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A non-negative yuan string with at most two decimals as fen:
/// `"21.16"` → 2116, `"5"` → 500, `"0.5"` → 50, in the one grammar of
/// [`crate::number`] (at most [`crate::order::MAX_FEN`]). Anything else is
/// `None`.
pub fn fen(yuan: &str) -> Option<i64> {
    crate::number::parse_scaled(yuan, 2, crate::order::MAX_FEN).ok()
}

// -------------------------------------------------------------------- keys

/// Why a key, a signature or a message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AlipayError(pub String);

/// An RSA private key that signs (ours toward Alipay, or the simulator's).
/// Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct PrivateKey(rsa::PrivateKey);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// PEM in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE
    /// KEY`), or the bare base64 PKCS#8 text Alipay's tools hand out.
    pub fn from_pem(text: &str) -> Result<Self, AlipayError> {
        let text = text.trim();
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            rsa::PrivateKey::from_pkcs1_pem(text).ok()
        } else if text.contains("BEGIN PRIVATE KEY") {
            rsa::PrivateKey::from_pkcs8_pem(text).ok()
        } else {
            bare_der(text).and_then(|der| rsa::PrivateKey::from_pkcs8_der(&der).ok())
        };
        // The parser's message could quote key material: say only what failed.
        key.map(PrivateKey)
            .ok_or_else(|| AlipayError("not an RSA private key in PEM (PKCS#8 or PKCS#1)".into()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_public_key())
    }

    /// The base64 RSA2 signature of `content`.
    pub fn sign(&self, content: &str) -> Result<String, AlipayError> {
        self.0
            .pkcs1v15_sign::<Sha256>(content.as_bytes())
            .map(|s| B64.encode(s))
            .map_err(|e| AlipayError(format!("signing failed: {e}")))
    }
}

/// An RSA public key that checks signatures (Alipay's, or the app's in the
/// simulator).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(rsa::PublicKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(RSA)")
    }
}

impl PublicKey {
    /// PEM as `BEGIN PUBLIC KEY` (X.509 SubjectPublicKeyInfo) or `BEGIN RSA
    /// PUBLIC KEY` (PKCS#1), or bare base64 SubjectPublicKeyInfo.
    pub fn from_pem(text: &str) -> Result<Self, AlipayError> {
        let text = text.trim();
        let key = if text.contains("BEGIN RSA PUBLIC KEY") {
            rsa::PublicKey::from_pkcs1_pem(text).ok()
        } else if text.contains("BEGIN PUBLIC KEY") {
            rsa::PublicKey::from_public_key_pem(text).ok()
        } else {
            bare_der(text).and_then(|der| rsa::PublicKey::from_public_key_der(&der).ok())
        };
        key.map(PublicKey)
            .ok_or_else(|| AlipayError("not an RSA public key in PEM".into()))
    }

    /// True when `signature` (base64) is the RSA2 signature of `content`.
    /// Never panics, whatever the input.
    pub fn verify(&self, content: &str, signature: &str) -> bool {
        let Ok(sig) = B64.decode(signature.trim()) else {
            return false;
        };
        self.0
            .pkcs1v15_verify::<Sha256>(content.as_bytes(), &sig)
            .is_ok()
    }
}

fn bare_der(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.split_whitespace().collect();
    B64.decode(compact).ok()
}

// ---------------------------------------------------------------- requests

/// The string that is signed: `k=v&…` over non-empty parameters but `sign`.
pub fn signing_string(params: &Params) -> String {
    let mut s = String::new();
    for (k, v) in params {
        if k == "sign" || v.is_empty() {
            continue;
        }
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// Adds `sign` to `params`.
pub fn sign_params(params: &mut Params, key: &PrivateKey) -> Result<(), AlipayError> {
    params.remove("sign");
    let s = key.sign(&signing_string(params))?;
    params.insert("sign".into(), s);
    Ok(())
}

/// True when `params` carries a valid RSA2 `sign` by `key`.
pub fn verify_params(params: &Params, key: &PublicKey) -> bool {
    match (params.get("sign"), params.get("sign_type")) {
        (Some(sig), Some(t)) if t == SIGN_TYPE => key.verify(&signing_string(params), sig),
        _ => false,
    }
}

/// The unsigned common parameters of a call, with its `biz_content`.
/// `timestamp` is `yyyy-MM-dd HH:mm:ss` in China time, from the caller.
pub fn request(app_id: &str, method: &str, timestamp: &str, biz_content: String) -> Params {
    let mut p = Params::new();
    p.insert("app_id".into(), app_id.into());
    p.insert("method".into(), method.into());
    p.insert("charset".into(), CHARSET.into());
    p.insert("sign_type".into(), SIGN_TYPE.into());
    p.insert("timestamp".into(), timestamp.into());
    p.insert("version".into(), VERSION.into());
    p.insert("biz_content".into(), biz_content);
    p
}

/// A signed request, ready to be sent as `application/x-www-form-urlencoded`.
pub fn signed_request<B: Serialize>(
    app_id: &str,
    method: &str,
    timestamp: &str,
    biz: &B,
    key: &PrivateKey,
) -> Result<Params, AlipayError> {
    let biz = serde_json::to_string(biz).map_err(|e| AlipayError(e.to_string()))?;
    let mut p = request(app_id, method, timestamp, biz);
    sign_params(&mut p, key)?;
    Ok(p)
}

/// The form body of `params`.
pub fn encode_form(params: &Params) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

/// Reads a form body; a repeated name, too many names or oversized input
/// are refused.
pub fn decode_form(body: &[u8]) -> Result<Params, AlipayError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(AlipayError("the request is too large".into()));
    }
    let mut p = Params::new();
    for (k, v) in form_urlencoded::parse(body) {
        if p.len() >= MAX_PARAMS {
            return Err(AlipayError(format!("more than {MAX_PARAMS} parameters")));
        }
        if p.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(AlipayError(format!("{k} appears twice")));
        }
    }
    Ok(p)
}

/// True for `yyyy-MM-dd HH:mm:ss` (the shape only).
pub fn valid_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// `biz_content` of `alipay.trade.pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayBiz {
    pub out_trade_no: String,
    pub scene: String,
    pub auth_code: String,
    /// Yuan, two places.
    pub total_amount: String,
    pub subject: String,
}

/// `biz_content` of `alipay.trade.query` and `alipay.trade.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBiz {
    pub out_trade_no: String,
}

/// `biz_content` of `alipay.trade.refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundBiz {
    pub out_trade_no: String,
    /// Yuan, two places.
    pub refund_amount: String,
    /// The refund's own idempotency key.
    pub out_request_no: String,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`, as we send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryBiz {
    pub out_trade_no: String,
    pub out_request_no: String,
}

/// `refund_status` of a refund query: present only once the refund is done.
pub const REFUND_SUCCESS: &str = "REFUND_SUCCESS";

// ----------------------------------------------------------------- answers

/// The key of a method's answer: `alipay.trade.pay` →
/// `alipay_trade_pay_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The fields of any of the four answers; absent ones are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub code: String,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_status: Option<String>,
    /// Cancel: "Y" when it must be called again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_flag: Option<String>,
    /// Cancel: `close` (nothing was paid) or `refund` (paid money went back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Refund: everything refunded on the trade so far, yuan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_fee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fund_change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_request_no: Option<String>,
    /// Refund query: this refund's amount, yuan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<String>,
    /// Refund query: `REFUND_SUCCESS` once done; absent while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
}

impl Answer {
    pub fn new(code: &str, msg: &str) -> Answer {
        Answer {
            code: code.into(),
            msg: msg.into(),
            ..Answer::default()
        }
    }

    /// A 40004 (or other) failure with its `sub_code`.
    pub fn failed(code: &str, sub_code: &str, sub_msg: &str) -> Answer {
        Answer {
            sub_code: Some(sub_code.into()),
            sub_msg: Some(sub_msg.into()),
            ..Answer::new(code, msg_of(code))
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == code::SUCCESS
    }

    pub fn sub_code(&self) -> &str {
        self.sub_code.as_deref().unwrap_or("")
    }
}

/// The `msg` Alipay sends with a `code`.
pub fn msg_of(c: &str) -> &'static str {
    match c {
        code::SUCCESS => "Success",
        code::WAITING => "order success pay inprocess",
        code::UNKNOWN => "Service Currently Unavailable",
        code::NO_AUTH => "Insufficient Token Permissions",
        code::MISSING_PARAM => "Missing Required Arguments",
        code::INVALID_PARAM => "Invalid Arguments",
        _ => "Business Failed",
    }
}

/// The parts of an answer: the raw text of its `…_response` object, exactly
/// as it came, and its `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer<'a> {
    pub raw: &'a str,
    pub sign: Option<String>,
}

/// Splits an answer to `method` into its `…_response` text and `sign`. An
/// `error_response` (the gateway refused the call itself) is taken as the
/// answer when the method's own key is missing.
pub fn split_answer<'a>(body: &'a str, method: &str) -> Result<RawAnswer<'a>, AlipayError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(AlipayError("the answer is too large".into()));
    }
    let top: BTreeMap<String, &'a RawValue> =
        serde_json::from_str(body).map_err(|e| AlipayError(format!("not a JSON answer: {e}")))?;
    let key = response_key(method);
    let raw = top
        .get(&key)
        .or_else(|| top.get("error_response"))
        .ok_or_else(|| AlipayError(format!("the answer has no {key}")))?;
    let sign = match top.get("sign") {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<String>(s.get())
                .map_err(|_| AlipayError("sign is not a string".into()))?,
        ),
    };
    Ok(RawAnswer {
        raw: raw.get(),
        sign,
    })
}

/// Reads an answer to `method` whose signature by `key` must verify over the
/// raw `…_response` text. `Err` says why it cannot be trusted.
pub fn open_answer(body: &str, method: &str, key: &PublicKey) -> Result<Answer, AlipayError> {
    let parts = split_answer(body, method)?;
    let Some(sign) = parts.sign else {
        return Err(AlipayError("the answer is not signed".into()));
    };
    if !key.verify(parts.raw, &sign) {
        return Err(AlipayError("the answer's signature does not verify".into()));
    }
    serde_json::from_str(parts.raw).map_err(|e| AlipayError(format!("unreadable answer: {e}")))
}

/// The signed JSON body answering `method` with `answer`.
pub fn signed_answer(
    method: &str,
    answer: &Answer,
    key: &PrivateKey,
) -> Result<String, AlipayError> {
    let raw = serde_json::to_string(answer).map_err(|e| AlipayError(e.to_string()))?;
    let sign = key.sign(&raw)?;
    let sign = serde_json::to_string(&sign).map_err(|e| AlipayError(e.to_string()))?;
    let key =
        serde_json::to_string(&response_key(method)).map_err(|e| AlipayError(e.to_string()))?;
    Ok(format!("{{{key}:{raw},\"sign\":{sign}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed 2048-bit test keys (openssl genrsa / rsa -pubout), never used
    // anywhere real; generating keys at test time is slow in debug builds.
    const APP_PRIVATE: &str = include_str!("../tests/fixtures/alipay_test_app_private.pem");
    const APP_PUBLIC: &str = include_str!("../tests/fixtures/alipay_test_app_public.pem");
    const ALIPAY_PRIVATE: &str = include_str!("../tests/fixtures/alipay_test_alipay_private.pem");
    const ALIPAY_PUBLIC: &str = include_str!("../tests/fixtures/alipay_test_alipay_public.pem");

    fn app_key() -> PrivateKey {
        PrivateKey::from_pem(APP_PRIVATE).expect("app key")
    }

    fn pay_request() -> Params {
        signed_request(
            "2021000000000001",
            method::PAY,
            "2024-05-01 12:00:00",
            &PayBiz {
                out_trade_no: "abc-1".into(),
                scene: SCENE_BAR_CODE.into(),
                auth_code: "284567890123456789".into(),
                total_amount: yuan(2116),
                subject: "门店消费".into(),
            },
            &app_key(),
        )
        .expect("sign")
    }

    #[test]
    fn keys_load_and_match() {
        let public = PublicKey::from_pem(APP_PUBLIC).expect("public");
        assert_eq!(app_key().public_key(), public);
        assert_ne!(
            PublicKey::from_pem(ALIPAY_PUBLIC).expect("alipay public"),
            public
        );
        // Bare base64, as Alipay's key tool prints it.
        let bare: String = APP_PUBLIC
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(PublicKey::from_pem(&bare).expect("bare"), public);
        assert!(PrivateKey::from_pem("nonsense").is_err());
        assert!(PublicKey::from_pem("").is_err());
        assert!(PublicKey::from_pem(APP_PRIVATE).is_err());
        assert!(!format!("{:?}", app_key()).contains("MII"));
    }

    #[test]
    fn the_signing_string_is_sorted_and_skips_sign_and_empty_values() {
        let mut p = Params::new();
        p.insert("method".into(), "m".into());
        p.insert("app_id".into(), "1".into());
        p.insert("sign".into(), "x".into());
        p.insert("notify_url".into(), String::new());
        p.insert("biz_content".into(), "{\"a\":1}".into());
        assert_eq!(
            signing_string(&p),
            "app_id=1&biz_content={\"a\":1}&method=m"
        );
    }

    #[test]
    fn requests_round_trip_through_the_form_and_verify() {
        let p = pay_request();
        assert_eq!(p["charset"], "utf-8");
        assert_eq!(p["sign_type"], "RSA2");
        assert_eq!(p["version"], "1.0");
        let back = decode_form(encode_form(&p).as_bytes()).expect("form");
        assert_eq!(back, p);
        let public = app_key().public_key();
        assert!(verify_params(&back, &public));
        let biz: PayBiz = serde_json::from_str(&back["biz_content"]).expect("biz");
        assert_eq!(biz.total_amount, "21.16");
        assert_eq!(biz.scene, "bar_code");
        // Deterministic: PKCS#1 v1.5 signs the same text the same way.
        assert_eq!(pay_request()["sign"], p["sign"]);
    }

    #[test]
    fn a_tampered_or_wrongly_keyed_request_fails() {
        let public = app_key().public_key();
        let mut p = pay_request();
        p.insert("timestamp".into(), "2024-05-01 12:00:01".into());
        assert!(!verify_params(&p, &public));
        let mut p = pay_request();
        let biz = p["biz_content"].replace("21.16", "0.01");
        p.insert("biz_content".into(), biz);
        assert!(!verify_params(&p, &public));
        let p = pay_request();
        let alipay = PublicKey::from_pem(ALIPAY_PUBLIC).expect("key");
        assert!(!verify_params(&p, &alipay));
        let mut p = pay_request();
        p.insert("sign_type".into(), "RSA".into());
        assert!(!verify_params(&p, &public), "only RSA2");
        let mut p = pay_request();
        p.insert("sign".into(), "***not base64***".into());
        assert!(!verify_params(&p, &public));
        p.remove("sign");
        assert!(!verify_params(&p, &public));
    }

    #[test]
    fn decode_form_refuses_repeats_and_size() {
        assert!(decode_form(b"a=1&a=2").is_err());
        assert!(decode_form("x=".repeat(MAX_MESSAGE_BYTES).as_bytes()).is_err());
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        assert!(decode_form(many.join("&").as_bytes()).is_err());
        assert_eq!(decode_form(b"").expect("empty"), Params::new());
    }

    #[test]
    fn answers_are_verified_over_their_raw_text() {
        let alipay = PrivateKey::from_pem(ALIPAY_PRIVATE).expect("key");
        let public = alipay.public_key();
        let mut a = Answer::new(code::SUCCESS, "Success");
        a.trade_no = Some("2024050122001".into());
        a.total_amount = Some("21.16".into());
        let body = signed_answer(method::PAY, &a, &alipay).expect("sign");
        assert!(body.starts_with("{\"alipay_trade_pay_response\":{"));
        assert_eq!(open_answer(&body, method::PAY, &public), Ok(a.clone()));
        // The wrong method's key is not there.
        assert!(open_answer(&body, method::QUERY, &public).is_err());
        // Signed by someone else.
        let forged = signed_answer(method::PAY, &a, &app_key()).expect("sign");
        assert!(open_answer(&forged, method::PAY, &public).is_err());
        // A changed amount no longer verifies.
        let tampered = body.replace("21.16", "0.01");
        assert!(open_answer(&tampered, method::PAY, &public).is_err());
        // Unsigned.
        let unsigned = format!(
            "{{\"alipay_trade_pay_response\":{}}}",
            serde_json::to_string(&a).expect("json")
        );
        assert!(open_answer(&unsigned, method::PAY, &public).is_err());
        for junk in ["", "[]", "{", "{\"sign\":1}", "null"] {
            assert!(open_answer(junk, method::PAY, &public).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_raw_response_text_is_taken_exactly_as_sent() {
        // Spacing, key order and escapes as the provider wrote them: the
        // signature covers these bytes, not a re-serialisation.
        let raw = "{ \"code\":\"10000\",  \"msg\":\"Success\",\"trade_no\":\"a\\/b\",\"subject\":\"\\u5496\" }";
        let alipay = PrivateKey::from_pem(ALIPAY_PRIVATE).expect("key");
        let sign = alipay.sign(raw).expect("sign");
        let body = format!("{{\"sign\":\"{sign}\",\n \"alipay_trade_query_response\": {raw} }}");
        let parts = split_answer(&body, method::QUERY).expect("split");
        assert_eq!(parts.raw, raw);
        assert_eq!(parts.sign.as_deref(), Some(sign.as_str()));
        let a = open_answer(&body, method::QUERY, &alipay.public_key()).expect("open");
        assert_eq!(a.trade_no.as_deref(), Some("a/b"));
        // An error_response stands in for the method's own.
        let err = format!("{{\"error_response\":{raw},\"sign\":\"{sign}\"}}");
        assert_eq!(split_answer(&err, method::PAY).expect("split").raw, raw);
    }

    #[test]
    fn fen_and_yuan() {
        for (f, y) in [
            (2116, "21.16"),
            (0, "0.00"),
            (1, "0.01"),
            (10, "0.10"),
            (100, "1.00"),
            (10_000_000_000, "100000000.00"),
        ] {
            assert_eq!(yuan(f), y);
            assert_eq!(fen(y), Some(f), "{y}");
        }
        assert_eq!(yuan(-5), "-0.05");
        assert_eq!(fen("5"), Some(500));
        assert_eq!(fen("0.5"), Some(50));
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "1.234",
            "-1.00",
            "1e3",
            " 1.00",
            "1,00",
            "abc",
            "0x10",
            "9999999999999.00",
            "100000000.01",
            "+1",
            "1_0",
        ] {
            assert_eq!(fen(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_and_shapes() {
        assert_eq!(response_key(method::CANCEL), "alipay_trade_cancel_response");
        assert!(valid_timestamp("2024-05-01 12:00:00"));
        assert!(!valid_timestamp("2024-05-01T12:00:00"));
        assert!(!valid_timestamp("2024-5-1 12:00:00"));
        for s in [
            "WAIT_BUYER_PAY",
            "TRADE_SUCCESS",
            "TRADE_CLOSED",
            "TRADE_FINISHED",
        ] {
            assert_eq!(TradeStatus::parse(s).map(TradeStatus::as_str), Some(s));
        }
        assert_eq!(TradeStatus::parse("SUCCESS"), None);
    }
}
