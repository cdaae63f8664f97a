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
    // The fields below are read leniently (a string or a bare number; any
    // other shape reads as absent), so an answer with an unexpected shape
    // for one of them still opens.
    /// Pay, query, refund: the buyer's Alipay login, masked (`159****5620`).
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub buyer_logon_id: Option<String>,
    /// Pay, query, refund: the buyer's user id (16 digits starting 2088).
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub buyer_user_id: Option<String>,
    /// Pay, query: what the merchant received, yuan.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub receipt_amount: Option<String>,
    /// Pay, query: what the buyer paid, yuan.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub buyer_pay_amount: Option<String>,
    /// Pay, query: paid in points (集分宝), yuan.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub point_amount: Option<String>,
    /// Pay, query: what may be invoiced, yuan.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub invoice_amount: Option<String>,
    /// Pay, query: when it was paid, `yyyy-MM-dd HH:mm:ss` China time.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub gmt_payment: Option<String>,
    /// Pay, query: where the money came from.
    #[serde(
        default,
        deserialize_with = "lenient_bills",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub fund_bill_list: Vec<FundBill>,
    /// Refund, refund query: when the money went back.
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub gmt_refund_pay: Option<String>,
}

/// One entry of `fund_bill_list`: a funding channel and its amount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundBill {
    /// `ALIPAYACCOUNT` (balance), `PCREDIT` (Huabei), `BANKCARD`, …
    #[serde(default, deserialize_with = "lenient_string")]
    pub fund_channel: String,
    /// Yuan, as sent.
    #[serde(default, deserialize_with = "lenient_string")]
    pub amount: String,
}

/// The text of a JSON string, or the literal text of a number (never
/// through a float); `None` for null or any other shape.
fn raw_text(raw: &RawValue) -> Option<String> {
    let s = raw.get().trim();
    match s.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(s).ok(),
        Some(b'-' | b'0'..=b'9') => Some(s.to_owned()),
        _ => None,
    }
}

fn lenient_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    Ok(raw.as_deref().and_then(raw_text))
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_text(d)?.unwrap_or_default())
}

fn lenient_bills<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<FundBill>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<Vec<FundBill>>(r.get()).ok())
        .unwrap_or_default())
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

// ------------------------------------------------- the provider's side

/// A request's `charset`: what its percent-decoded bytes are in, what its
/// signature was computed over, and what the answer is written (and signed)
/// in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// GBK; `GB2312`, a subset of it, is read as GBK.
    Gbk,
}

impl Charset {
    /// `utf-8` (or `utf8`), `gbk`, `gb2312`, in any case.
    pub fn from_label(label: &str) -> Option<Charset> {
        let l = label.trim();
        if l.eq_ignore_ascii_case("utf-8") || l.eq_ignore_ascii_case("utf8") {
            Some(Charset::Utf8)
        } else if l.eq_ignore_ascii_case("gbk") || l.eq_ignore_ascii_case("gb2312") {
            Some(Charset::Gbk)
        } else {
            None
        }
    }

    /// The name an answer's `Content-Type` gives.
    pub fn label(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::Gbk => "GBK",
        }
    }

    /// Text from `bytes`; `None` when they are not valid in this charset.
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Charset::Gbk => encoding_rs::GBK
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned()),
        }
    }

    /// `text` in this charset; `None` when it has a character the charset
    /// cannot write.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Gbk => {
                let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
                (!had_errors).then(|| bytes.into_owned())
            }
        }
    }
}

/// `application/x-www-form-urlencoded` pairs as bytes: `+` is a space,
/// `%XX` a byte, a stray `%` itself; text decoding is left to the caller.
fn form_pairs(input: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    fn unescape(s: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16);
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' => match (
                    s.get(i + 1).and_then(|b| hex(*b)),
                    s.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        // Two hex digits are below 256.
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    input
        .split(|b| *b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.iter().position(|b| *b == b'=') {
            Some(eq) => (unescape(&part[..eq]), unescape(&part[eq + 1..])),
            None => (unescape(part), Vec::new()),
        })
}

/// Reads a call as the open gateway does: its parameters from the query
/// string and the form body together (clients put any of them in either),
/// decoded in the `charset` the request names. An unknown or missing
/// charset reads as UTF-8 (the caller refuses it by the `charset`
/// parameter). A name given twice with two values, bytes that are not
/// valid in the charset, too many names or oversized input are refused.
pub fn decode_request(query: &[u8], body: &[u8]) -> Result<(Params, Charset), AlipayError> {
    if query.len().saturating_add(body.len()) > MAX_MESSAGE_BYTES {
        return Err(AlipayError("the request is too large".into()));
    }
    let raw: Vec<(Vec<u8>, Vec<u8>)> = form_pairs(query).chain(form_pairs(body)).collect();
    if raw.len() > MAX_PARAMS {
        return Err(AlipayError(format!("more than {MAX_PARAMS} parameters")));
    }
    let charset = raw
        .iter()
        .find(|(k, _)| k == b"charset")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(Charset::from_label)
        .unwrap_or(Charset::Utf8);
    let mut p = Params::new();
    for (k, v) in &raw {
        let (Some(k), Some(v)) = (charset.decode(k), charset.decode(v)) else {
            return Err(AlipayError(format!(
                "a parameter is not valid {}",
                charset.label()
            )));
        };
        match p.get(&k) {
            Some(old) if *old != v => return Err(AlipayError(format!("{k} appears twice"))),
            _ => {
                p.insert(k, v);
            }
        }
    }
    Ok((p, charset))
}

/// True when `params` carries a valid RSA2 `sign` by `key` over their
/// signing string written in `charset` (what the client signed).
pub fn verify_params_in(params: &Params, charset: Charset, key: &PublicKey) -> bool {
    match (params.get("sign"), params.get("sign_type")) {
        (Some(sig), Some(t)) if t == SIGN_TYPE => charset
            .encode(&signing_string(params))
            .is_some_and(|bytes| key.verify_bytes(&bytes, sig)),
        _ => false,
    }
}

impl PrivateKey {
    /// The base64 RSA2 signature of `content`.
    pub fn sign_bytes(&self, content: &[u8]) -> Result<String, AlipayError> {
        self.0
            .pkcs1v15_sign::<Sha256>(content)
            .map(|s| B64.encode(s))
            .map_err(|e| AlipayError(format!("signing failed: {e}")))
    }
}

impl PublicKey {
    /// True when `signature` (base64) is the RSA2 signature of `content`.
    pub fn verify_bytes(&self, content: &[u8], signature: &str) -> bool {
        let Ok(sig) = B64.decode(signature.trim()) else {
            return false;
        };
        self.0.pkcs1v15_verify::<Sha256>(content, &sig).is_ok()
    }
}

/// JSON text with every non-ASCII character written as `\uXXXX` (outside
/// strings JSON has none), for a charset that cannot write one of them.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The signed body answering `method` with `answer`, written in `charset`
/// and signed over those bytes, as the open gateway answers a request made
/// in that charset.
pub fn signed_answer_in(
    method: &str,
    answer: &Answer,
    key: &PrivateKey,
    charset: Charset,
) -> Result<Vec<u8>, AlipayError> {
    let raw = serde_json::to_string(answer).map_err(|e| AlipayError(e.to_string()))?;
    let raw = charset
        .encode(&raw)
        .unwrap_or_else(|| ascii_json(&raw).into_bytes());
    let sign = key.sign_bytes(&raw)?;
    let sign = serde_json::to_string(&sign).map_err(|e| AlipayError(e.to_string()))?;
    let key =
        serde_json::to_string(&response_key(method)).map_err(|e| AlipayError(e.to_string()))?;
    let mut body = Vec::with_capacity(raw.len() + sign.len() + key.len() + 12);
    body.push(b'{');
    body.extend_from_slice(key.as_bytes());
    body.push(b':');
    body.extend_from_slice(&raw);
    body.extend_from_slice(b",\"sign\":");
    body.extend_from_slice(sign.as_bytes());
    body.push(b'}');
    Ok(body)
}

/// [`open_answer`] for an answer written in `charset`: its signature covers
/// the `…_response` bytes in that charset.
pub fn open_answer_in(
    body: &[u8],
    method: &str,
    key: &PublicKey,
    charset: Charset,
) -> Result<Answer, AlipayError> {
    let text = charset
        .decode(body)
        .ok_or_else(|| AlipayError(format!("the answer is not {}", charset.label())))?;
    let parts = split_answer(&text, method)?;
    let Some(sign) = parts.sign else {
        return Err(AlipayError("the answer is not signed".into()));
    };
    let signed = charset
        .encode(parts.raw)
        .ok_or_else(|| AlipayError("the answer cannot be written back".into()))?;
    if !key.verify_bytes(&signed, &sign) {
        return Err(AlipayError("the answer's signature does not verify".into()));
    }
    serde_json::from_str(parts.raw).map_err(|e| AlipayError(format!("unreadable answer: {e}")))
}

/// A trade as a client names it in `biz_content`: by Alipay's `trade_no`,
/// our `out_trade_no`, or both (then `trade_no` wins). What the provider
/// side reads for query and cancel; absent fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRef {
    #[serde(default, deserialize_with = "lenient_string")]
    pub trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_trade_no: String,
}

/// `biz_content` of `alipay.trade.pay` as any client may send it (the
/// provider's reading): `total_amount` a string or a bare number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayIn {
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub scene: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub auth_code: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub total_amount: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub subject: String,
}

/// `biz_content` of `alipay.trade.refund` as any client may send it:
/// `out_request_no` may be absent (it then defaults to the trade's
/// `out_trade_no`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIn {
    #[serde(default, deserialize_with = "lenient_string")]
    pub trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub refund_amount: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_request_no: String,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query` as any client may
/// send it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryIn {
    #[serde(default, deserialize_with = "lenient_string")]
    pub trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_trade_no: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_request_no: String,
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

    #[test]
    fn charsets_by_label() {
        for l in ["utf-8", "UTF-8", "utf8"] {
            assert_eq!(Charset::from_label(l), Some(Charset::Utf8), "{l}");
        }
        for l in ["GBK", "gbk", "GB2312", "gb2312"] {
            assert_eq!(Charset::from_label(l), Some(Charset::Gbk), "{l}");
        }
        for l in ["", "latin1", "utf-16", "big5"] {
            assert_eq!(Charset::from_label(l), None, "{l}");
        }
        let gbk = Charset::Gbk.encode("门店消费").expect("gbk");
        assert_eq!(gbk, [0xC3, 0xC5, 0xB5, 0xEA, 0xCF, 0xFB, 0xB7, 0xD1]);
        assert_eq!(Charset::Gbk.decode(&gbk).as_deref(), Some("门店消费"));
        assert_eq!(Charset::Utf8.decode(&gbk), None, "GBK bytes are not UTF-8");
        assert_eq!(Charset::Gbk.decode(&[0xC3]), None, "half a character");
        assert_eq!(Charset::Gbk.encode("😀"), None);
    }

    #[test]
    fn a_request_reads_from_query_and_form_together() {
        let p = pay_request();
        let mut common = p.clone();
        let biz = common.remove("biz_content").expect("biz");
        let query = encode_form(&common);
        let mut body = Params::new();
        body.insert("biz_content".into(), biz);
        let (back, charset) =
            decode_request(query.as_bytes(), encode_form(&body).as_bytes()).expect("read");
        assert_eq!((back.clone(), charset), (p.clone(), Charset::Utf8));
        let public = app_key().public_key();
        assert!(verify_params_in(&back, charset, &public));
        // All in the query string (a GET), or all in the form: the same.
        let all = encode_form(&p);
        assert_eq!(decode_request(all.as_bytes(), b"").expect("get").0, p);
        assert_eq!(decode_request(b"", all.as_bytes()).expect("post").0, p);
        // The same name twice: fine with one value, refused with two.
        assert!(decode_request(all.as_bytes(), all.as_bytes()).is_ok());
        assert!(decode_request(b"a=1", b"a=2").is_err());
        assert!(decode_request(b"a=1&a=2", b"").is_err());
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        assert!(decode_request(many.join("&").as_bytes(), b"").is_err());
        let big = "x=".repeat(MAX_MESSAGE_BYTES / 2 + 1);
        assert!(decode_request(big.as_bytes(), big.as_bytes()).is_err());
        // Escapes: '+' is a space, a stray '%' stays.
        let (q, _) = decode_request(b"a=1+2%2B3&b=50%&c=%zz&d", b"").expect("escapes");
        assert_eq!(
            (
                q["a"].as_str(),
                q["b"].as_str(),
                q["c"].as_str(),
                q["d"].as_str()
            ),
            ("1 2+3", "50%", "%zz", "")
        );
    }

    #[test]
    fn a_gbk_request_is_read_and_verified_in_gbk() {
        // What a client with charset=GBK sends: the signing string signed as
        // GBK bytes, every value percent-encoded from GBK.
        let mut p = request(
            "2021000000000001",
            method::PAY,
            "2024-05-01 12:00:00",
            "{\"subject\":\"门店消费\"}".into(),
        );
        p.insert("charset".into(), "GBK".into());
        let signed = Charset::Gbk.encode(&signing_string(&p)).expect("gbk");
        p.insert("sign".into(), app_key().sign_bytes(&signed).expect("sign"));
        let mut form = String::new();
        for (k, v) in &p {
            let bytes = Charset::Gbk.encode(v).expect("gbk");
            let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            form.push_str(&format!("{k}={escaped}&"));
        }
        let (back, charset) = decode_request(form.as_bytes(), b"").expect("read");
        assert_eq!(charset, Charset::Gbk);
        assert_eq!(back["biz_content"], "{\"subject\":\"门店消费\"}");
        let public = app_key().public_key();
        assert!(verify_params_in(&back, charset, &public));
        // The same signature does not hold over the UTF-8 text.
        assert!(!verify_params(&back, &public));
        // Bytes that are no GBK are refused, not guessed at.
        assert!(decode_request(b"charset=GBK&subject=%C3", b"").is_err());
        assert!(decode_request(b"charset=utf-8&subject=%C3%C5", b"").is_err());
    }

    #[test]
    fn answers_in_gbk_are_signed_over_their_gbk_bytes() {
        let alipay = PrivateKey::from_pem(ALIPAY_PRIVATE).expect("key");
        let public = alipay.public_key();
        let a = Answer::failed(code::FAILED, sub::TRADE_NOT_EXIST, "交易不存在");
        let body = signed_answer_in(method::QUERY, &a, &alipay, Charset::Gbk).expect("sign");
        assert!(std::str::from_utf8(&body).is_err(), "written in GBK");
        assert_eq!(
            open_answer_in(&body, method::QUERY, &public, Charset::Gbk),
            Ok(a.clone())
        );
        assert!(open_answer_in(&body, method::QUERY, &public, Charset::Utf8).is_err());
        // UTF-8 answers are what signed_answer makes.
        let utf8 = signed_answer_in(method::QUERY, &a, &alipay, Charset::Utf8).expect("sign");
        let text = String::from_utf8(utf8).expect("utf-8");
        assert_eq!(open_answer(&text, method::QUERY, &public), Ok(a));
        // A character GBK lacks is written as a JSON escape, still signed.
        let odd = Answer::failed(code::FAILED, sub::INVALID_PARAMETER, "😀 参数");
        let body = signed_answer_in(method::PAY, &odd, &alipay, Charset::Gbk).expect("sign");
        assert!(body.is_ascii());
        assert_eq!(
            open_answer_in(&body, method::PAY, &public, Charset::Gbk),
            Ok(odd)
        );
    }

    #[test]
    fn new_answer_fields_read_leniently() {
        let raw = r#"{"code":"10000","msg":"Success","receipt_amount":"88.88",
            "buyer_pay_amount":8.88,"point_amount":null,"invoice_amount":{"x":1},
            "buyer_user_id":"2088101117955611","gmt_payment":"2014-11-27 15:45:57",
            "fund_bill_list":[{"fund_channel":"ALIPAYACCOUNT","amount":10,"real_amount":11.21},
            {"fund_channel":"PCREDIT","amount":"0.50"}]}"#;
        let a: Answer = serde_json::from_str(raw).expect("answer");
        assert_eq!(a.receipt_amount.as_deref(), Some("88.88"));
        assert_eq!(
            a.buyer_pay_amount.as_deref(),
            Some("8.88"),
            "a number's own text"
        );
        assert_eq!(a.point_amount, None);
        assert_eq!(a.invoice_amount, None, "another shape reads as absent");
        assert_eq!(a.buyer_user_id.as_deref(), Some("2088101117955611"));
        assert_eq!(
            a.fund_bill_list,
            [
                FundBill {
                    fund_channel: "ALIPAYACCOUNT".into(),
                    amount: "10".into()
                },
                FundBill {
                    fund_channel: "PCREDIT".into(),
                    amount: "0.50".into()
                }
            ]
        );
        // fund_bill_list as a string (as in notifications): read as none.
        let a: Answer =
            serde_json::from_str(r#"{"code":"10000","msg":"Success","fund_bill_list":"[]"}"#)
                .expect("answer");
        assert!(a.fund_bill_list.is_empty());
        // Absent ones are not written.
        let text = serde_json::to_string(&Answer::new(code::SUCCESS, "Success")).expect("json");
        assert_eq!(text, r#"{"code":"10000","msg":"Success"}"#);
    }

    #[test]
    fn biz_content_as_other_clients_write_it() {
        let pay: PayIn = serde_json::from_str(
            r#"{"out_trade_no":"o1","scene":"bar_code","auth_code":"28","subject":"s","total_amount":21.16,"extra":1}"#,
        )
        .expect("pay");
        assert_eq!(pay.total_amount, "21.16");
        let r: RefundIn =
            serde_json::from_str(r#"{"trade_no":"42","refund_amount":"1.00"}"#).expect("refund");
        assert_eq!(
            (
                r.trade_no.as_str(),
                r.out_trade_no.as_str(),
                r.out_request_no.as_str()
            ),
            ("42", "", "")
        );
        let q: RefundQueryIn =
            serde_json::from_str(r#"{"out_trade_no":"o1","out_request_no":"r1"}"#).expect("rq");
        assert_eq!(
            (q.out_trade_no.as_str(), q.out_request_no.as_str()),
            ("o1", "r1")
        );
        let t: TradeRef = serde_json::from_str("{}").expect("empty");
        assert_eq!(t, TradeRef::default());
    }
}
