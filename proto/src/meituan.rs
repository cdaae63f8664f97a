//! The Meituan-style delivery open platform (the generic HMAC JSON webhook
//! other aggregators use is [`crate::webhook`]). Pure: no I/O, no clock — callers bring the
//! time and do the HTTP.
//!
//! # Signatures
//! Both directions sign the same way: `sig` is the lowercase hex MD5 of
//! `url + "?" + k=v&k=v… + secret`, where `url` is the full URL without a
//! query (`http://host:port/channels/meituan/new_order`), the parameters are
//! every parameter except `sig` (empty values included as `k=`), with their
//! *decoded* values, sorted by key (then by value). Every message also carries
//! `app_id` and `timestamp` (unix seconds), checked against a window.
//!
//! # Inbound pushes
//! The platform POSTs a form to `POST /channels/meituan/{event}`, `event` one
//! of [`PushEvent`]; [`Push::parse`] reads it into typed structs, money in
//! integer fen (never floats). The gateway answers [`ANSWER_OK`].
//!
//! # Outbound calls
//! The store calls `POST {base_url}/api/v1/{path}` with a form body
//! ([`Call`], [`Call::signed_params`]); the platform answers `{"data":"ok"}`
//! or `{"data":"ng","error":{"code":…,"msg":"…"}}` ([`parse_answer`]).

use std::fmt;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The answer both sides give to an accepted message.
pub const ANSWER_OK: &str = r#"{"data":"ok"}"#;

/// Most parameters in one form body.
pub const MAX_FORM_PARAMS: usize = 200;
/// Largest form body [`parse_form`] reads.
pub const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Most items (`detail` entries) or discounts (`extras`) in one order.
pub const MAX_ITEMS: usize = 200;
/// Largest quantity of one item line.
pub const MAX_QUANTITY: u32 = 9999;
/// Longest free-text field (note, address, names), in characters.
pub const MAX_TEXT_CHARS: usize = 512;
/// Longest id (order id, store id, sku code), in characters.
pub const MAX_ID_CHARS: usize = 64;
/// A sensible default for the timestamp window, in seconds.
pub const DEFAULT_WINDOW_S: i64 = 300;

/// Reason code for a cancel by the store (the platform's "merchant cancel").
pub const REASON_CODE_STORE_CANCEL: i32 = 1001;

/// The platform's error code for a bad signature (`签名错误`).
pub const ERR_SIG: i64 = 703;
/// Our code for a bad or stale timestamp (the platform's code for it is not
/// in the documentation we could read; see docs/simulators.md).
pub const ERR_TIMESTAMP: i64 = 704;
/// The platform's error code for an unknown `app_id` (`app_id不存在`).
pub const ERR_APP_ID: i64 = 702;
/// The platform's error code for a malformed parameter (`参数格式错误`).
pub const ERR_PARAM: i64 = 700;
/// The platform's error code for a missing parameter (`缺少参数，数据不完整`).
pub const ERR_MISSING: i64 = 701;
/// The platform's error code for an operation refused on the order
/// (`操作失败`), e.g. `操作失败,订单已经确认过了` for a second confirm.
pub const ERR_STATE: i64 = 808;
/// The message the platform gives (with [`ERR_STATE`]) to a confirm of an
/// order already confirmed: the confirm has taken effect.
pub const MSG_ALREADY_CONFIRMED: &str = "操作失败,订单已经确认过了";

// ------------------------------------------------------------ signatures

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("no signature")]
    Missing,
    #[error("signature does not match")]
    Mismatch,
}

/// The string that is hashed: `url?k=v&…` + secret, params sorted, `sig` left out.
pub fn signing_string<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    params: &[(K, V)],
    secret: &str,
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "sig")
        .collect();
    sorted.sort_unstable();
    let mut s = String::with_capacity(url.len() + secret.len() + 16 * sorted.len());
    s.push_str(url);
    s.push('?');
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s.push_str(secret);
    s
}

/// The `sig` of `params` (any `sig` among them is ignored) for `url`, the
/// full URL without query, lowercase hex MD5.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)], secret: &str) -> String {
    lower_hex(&Md5::digest(signing_string(url, params, secret).as_bytes()))
}

/// Checks the `sig` parameter of `params` for `url`, in constant time
/// (upper-case hex is accepted too).
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    params: &[(K, V)],
    secret: &str,
) -> Result<(), SigError> {
    let given = params
        .iter()
        .find(|(k, _)| k.as_ref() == "sig")
        .map(|(_, v)| v.as_ref())
        .filter(|v| !v.is_empty())
        .ok_or(SigError::Missing)?;
    if hex_eq(given, &sign(url, params, secret)) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp is not unix seconds")]
    Malformed,
    #[error("timestamp is {0} s old, outside the window")]
    Stale(i64),
    #[error("timestamp is {0} s in the future, outside the window")]
    Future(i64),
}

/// Reads `ts` (unix seconds, digits only) and checks it is within
/// `window_s` of `now_unix_s`, either way. Returns the timestamp.
pub fn check_timestamp(ts: &str, now_unix_s: i64, window_s: i64) -> Result<i64, TimestampError> {
    let t = parse_digits_i64(ts, 12).ok_or(TimestampError::Malformed)?;
    let diff = now_unix_s.saturating_sub(t);
    if diff > window_s {
        Err(TimestampError::Stale(diff))
    } else if diff < -window_s {
        Err(TimestampError::Future(-diff))
    } else {
        Ok(t)
    }
}

pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Constant-time (for equal lengths) comparison of `given` hex with the
/// lowercase `expected`.
pub(crate) fn hex_eq(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b))
            == 0
}

// ------------------------------------------------------------ form bodies

/// Why a form body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("form body larger than {MAX_FORM_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_FORM_PARAMS} parameters")]
    TooManyParams,
    #[error("parameter {0:?} is not valid UTF-8 once decoded")]
    NotUtf8(String),
    #[error("bad percent-escape in the form body")]
    BadEscape,
    #[error("a parameter has an empty name")]
    EmptyName,
    #[error("parameter `{0}` given twice")]
    Duplicate(String),
}

/// Reads an `application/x-www-form-urlencoded` body (UTF-8, `+` = space),
/// strictly: bad escapes, invalid UTF-8, empty names, duplicate names, more
/// than [`MAX_FORM_PARAMS`] parameters or [`MAX_FORM_BYTES`] bytes are
/// refused. Order is kept.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(FormError::TooLarge);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        if out.len() == MAX_FORM_PARAMS {
            return Err(FormError::TooManyParams);
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let k = percent_decode(k)?;
        let k = String::from_utf8(k)
            .map_err(|e| FormError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into_owned()))?;
        if k.is_empty() {
            return Err(FormError::EmptyName);
        }
        let v = String::from_utf8(percent_decode(v)?).map_err(|_| FormError::NotUtf8(k.clone()))?;
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(FormError::Duplicate(k));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).and_then(|&b| hex_val(b));
                let lo = input.get(i + 2).and_then(|&b| hex_val(b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::BadEscape),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes `params` as an `application/x-www-form-urlencoded` body.
pub fn encode_form<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// The value of parameter `key`, if present.
pub fn param<'a, K: AsRef<str>, V: AsRef<str>>(params: &'a [(K, V)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.as_ref() == key)
        .map(|(_, v)| v.as_ref())
}

// ------------------------------------------------------------ money

/// Why an amount could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a plain decimal amount in yuan")]
    Malformed,
    #[error("negative amounts are not allowed")]
    Negative,
    #[error("more than 2 decimals (finer than one fen)")]
    TooPrecise,
    #[error("amount too large")]
    TooLarge,
}

/// Reads a yuan amount written as a plain decimal (`"12"`, `"12.5"`,
/// `"0.10"`) into fen, in the one grammar of [`crate::number`]: at most two
/// decimals, at most [`crate::order::MAX_FEN`]. No sign, exponent, spaces or
/// floats.
pub fn parse_yuan(s: &str) -> Result<i64, MoneyError> {
    use crate::number::{NumberError as N, parse_scaled};
    parse_scaled(s, 2, crate::order::MAX_FEN).map_err(|e| match e {
        N::Malformed => MoneyError::Malformed,
        N::Negative => MoneyError::Negative,
        N::TooPrecise(_) => MoneyError::TooPrecise,
        N::TooLong | N::TooLarge => MoneyError::TooLarge,
    })
}

/// Reads a JSON value that holds an amount in yuan — a number (`12.5`) or a
/// string (`"12.50"`) — into fen, from its raw JSON text, without floats.
pub fn parse_json_yuan(raw: &str) -> Result<i64, MoneyError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        let s: String = serde_json::from_str(raw).map_err(|_| MoneyError::Malformed)?;
        parse_yuan(&s)
    } else {
        // A JSON number with an exponent (1e2) is refused as Malformed.
        parse_yuan(raw)
    }
}

/// Writes fen as yuan with two decimals: `1250` → `"12.50"`.
pub fn format_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Digits only (no sign), at most `max_len` of them.
fn parse_digits_i64(s: &str, max_len: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// ------------------------------------------------------------ inbound pushes

/// The push events, by the last segment of `POST /channels/meituan/{event}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushEvent {
    NewOrder,
    Cancel,
    RefundApply,
    RefundCancel,
    DeliveryStatus,
}

impl PushEvent {
    pub const ALL: [PushEvent; 5] = [
        PushEvent::NewOrder,
        PushEvent::Cancel,
        PushEvent::RefundApply,
        PushEvent::RefundCancel,
        PushEvent::DeliveryStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushEvent::NewOrder => "new_order",
            PushEvent::Cancel => "cancel",
            PushEvent::RefundApply => "refund_apply",
            PushEvent::RefundCancel => "refund_cancel",
            PushEvent::DeliveryStatus => "delivery_status",
        }
    }

    pub fn parse(s: &str) -> Option<PushEvent> {
        PushEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for PushEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a push could not be read. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("unknown push event `{0}`")]
    UnknownEvent(String),
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PushError {
    PushError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// One item line of a new order (`detail` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushItem {
    /// The platform's code of the item: maps to our SKU.
    pub app_food_code: String,
    pub food_name: String,
    pub quantity: u32,
    /// Unit price, fen.
    pub price_fen: i64,
    pub unit: String,
}

/// One platform discount (`extras` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDiscount {
    pub reduce_fee_fen: i64,
    pub remark: String,
}

/// `new_order`: a customer placed an order with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderPush {
    /// The platform's order id (digits).
    pub order_id: String,
    /// The platform's store id.
    pub app_poi_code: String,
    /// Per-store daily sequence number, read aloud by staff.
    pub day_seq: u32,
    /// When the customer placed it, unix seconds.
    pub ctime: i64,
    /// The customer's note (may be empty).
    pub caution: String,
    pub recipient_name: String,
    pub recipient_phone: String,
    pub recipient_address: String,
    pub shipping_fee_fen: i64,
    /// What the customer paid.
    pub total_fen: i64,
    /// Price before discounts.
    pub original_price_fen: i64,
    /// What the store receives: `wmPoiReceiveCent` of `poi_receive_detail`
    /// (a JSON object the platform pushes only to apps subscribed to it),
    /// 0 when the push does not carry it.
    pub poi_receive_amount_fen: i64,
    pub items: Vec<PushItem>,
    pub discounts: Vec<PushDiscount>,
}

/// `cancel`: the platform (or customer) cancelled the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelPush {
    pub order_id: String,
    pub reason_code: i32,
    pub reason: String,
}

/// `refund_apply`: the customer asks for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundApplyPush {
    pub order_id: String,
    pub refund_id: String,
    pub reason: String,
    /// Amount asked for, fen; `None` means the whole order.
    pub money_fen: Option<i64>,
}

/// `refund_cancel`: the customer withdrew a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCancelPush {
    pub order_id: String,
    pub refund_id: String,
    pub reason: String,
}

/// `delivery_status`: the courier's progress (platform delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatusPush {
    pub order_id: String,
    /// 0 waiting for a courier, 10 accepted, 15 at the store, 20 picked
    /// up, 40 delivered, 100 cancelled.
    pub logistics_status: i32,
    /// `dispatcher_name` on the wire.
    pub courier_name: String,
    /// `dispatcher_mobile` on the wire.
    pub courier_phone: String,
}

/// One inbound push, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    NewOrder(NewOrderPush),
    Cancel(CancelPush),
    RefundApply(RefundApplyPush),
    RefundCancel(RefundCancelPush),
    DeliveryStatus(DeliveryStatusPush),
}

impl Push {
    /// Reads the push for `event` (the path segment) from its form
    /// parameters. Common parameters (`app_id`, `timestamp`, `sig`) and
    /// unknown ones are ignored here: check them with [`verify`] and
    /// [`check_timestamp`].
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(
        event: &str,
        params: &[(K, V)],
    ) -> Result<Push, PushError> {
        let ev = PushEvent::parse(event).ok_or_else(|| PushError::UnknownEvent(event.into()))?;
        let p = Fields(params);
        Ok(match ev {
            PushEvent::NewOrder => Push::NewOrder(NewOrderPush {
                order_id: p.order_id()?,
                app_poi_code: p.id("app_poi_code")?,
                day_seq: p.uint("day_seq", 100_000)?,
                ctime: p.int("ctime", 12)?,
                caution: p.text_or_empty("caution")?,
                recipient_name: p.text_or_empty("recipient_name")?,
                recipient_phone: p.text_or_empty("recipient_phone")?,
                recipient_address: p.text_or_empty("recipient_address")?,
                shipping_fee_fen: p.yuan_opt("shipping_fee")?.unwrap_or(0),
                total_fen: p.yuan("total")?,
                original_price_fen: p.yuan("original_price")?,
                poi_receive_amount_fen: match p.get("poi_receive_detail") {
                    None | Some("") => 0,
                    Some(s) => parse_receive_detail(s)?,
                },
                items: parse_detail(p.required("detail")?)?,
                discounts: match p.get("extras") {
                    None | Some("") => Vec::new(),
                    Some(s) => parse_extras(s)?,
                },
            }),
            PushEvent::Cancel => Push::Cancel(CancelPush {
                order_id: p.order_id()?,
                reason_code: p.code("reason_code")?,
                reason: p.text_or_empty("reason")?,
            }),
            PushEvent::RefundApply => Push::RefundApply(RefundApplyPush {
                order_id: p.order_id()?,
                refund_id: p.id("refund_id")?,
                reason: p.text_or_empty("reason")?,
                money_fen: p.yuan_opt("money")?,
            }),
            PushEvent::RefundCancel => Push::RefundCancel(RefundCancelPush {
                order_id: p.order_id()?,
                refund_id: p.id("refund_id")?,
                reason: p.text_or_empty("reason")?,
            }),
            PushEvent::DeliveryStatus => Push::DeliveryStatus(DeliveryStatusPush {
                order_id: p.order_id()?,
                logistics_status: p.code("logistics_status")?,
                courier_name: p.text_or_empty("dispatcher_name")?,
                courier_phone: p.text_or_empty("dispatcher_mobile")?,
            }),
        })
    }

    pub fn event(&self) -> PushEvent {
        match self {
            Push::NewOrder(_) => PushEvent::NewOrder,
            Push::Cancel(_) => PushEvent::Cancel,
            Push::RefundApply(_) => PushEvent::RefundApply,
            Push::RefundCancel(_) => PushEvent::RefundCancel,
            Push::DeliveryStatus(_) => PushEvent::DeliveryStatus,
        }
    }

    /// The platform order the push is about.
    pub fn order_id(&self) -> &str {
        match self {
            Push::NewOrder(p) => &p.order_id,
            Push::Cancel(p) => &p.order_id,
            Push::RefundApply(p) => &p.order_id,
            Push::RefundCancel(p) => &p.order_id,
            Push::DeliveryStatus(p) => &p.order_id,
        }
    }

    /// A key equal for duplicates of the same push: event and order id
    /// (plus the refund id for refund events, the status for delivery).
    pub fn dedup_key(&self) -> String {
        let ev = self.event().as_str();
        match self {
            Push::RefundApply(RefundApplyPush {
                order_id,
                refund_id,
                ..
            })
            | Push::RefundCancel(RefundCancelPush {
                order_id,
                refund_id,
                ..
            }) => format!("{ev}:{order_id}:{refund_id}"),
            Push::DeliveryStatus(d) => format!("{ev}:{}:{}", d.order_id, d.logistics_status),
            _ => format!("{ev}:{}", self.order_id()),
        }
    }

    /// The push's own parameters (without `app_id`, `timestamp`, `sig`),
    /// as the platform sends them: the inverse of [`Push::parse`].
    pub fn params(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, val: String| v.push((k.to_owned(), val));
        match self {
            Push::NewOrder(o) => {
                put("order_id", o.order_id.clone());
                put("app_poi_code", o.app_poi_code.clone());
                put("day_seq", o.day_seq.to_string());
                put("ctime", o.ctime.to_string());
                put("caution", o.caution.clone());
                put("recipient_name", o.recipient_name.clone());
                put("recipient_phone", o.recipient_phone.clone());
                put("recipient_address", o.recipient_address.clone());
                put("shipping_fee", format_yuan(o.shipping_fee_fen));
                put("total", format_yuan(o.total_fen));
                put("original_price", format_yuan(o.original_price_fen));
                put(
                    "poi_receive_detail",
                    format!(r#"{{"wmPoiReceiveCent":{}}}"#, o.poi_receive_amount_fen),
                );
                put("detail", detail_json(&o.items));
                put("extras", extras_json(&o.discounts));
            }
            Push::Cancel(c) => {
                put("order_id", c.order_id.clone());
                put("reason_code", c.reason_code.to_string());
                put("reason", c.reason.clone());
            }
            Push::RefundApply(r) => {
                put("order_id", r.order_id.clone());
                put("refund_id", r.refund_id.clone());
                put("reason", r.reason.clone());
                if let Some(m) = r.money_fen {
                    put("money", format_yuan(m));
                }
            }
            Push::RefundCancel(r) => {
                put("order_id", r.order_id.clone());
                put("refund_id", r.refund_id.clone());
                put("reason", r.reason.clone());
            }
            Push::DeliveryStatus(d) => {
                put("order_id", d.order_id.clone());
                put("logistics_status", d.logistics_status.to_string());
                put("dispatcher_name", d.courier_name.clone());
                put("dispatcher_mobile", d.courier_phone.clone());
            }
        }
        v
    }

    /// [`Push::params`] plus `app_id`, `timestamp` and `sig` for
    /// `callback_url` (the full URL the push is POSTed to).
    pub fn signed_params(
        &self,
        callback_url: &str,
        app_id: &str,
        secret: &str,
        timestamp: i64,
    ) -> Vec<(String, String)> {
        add_common(self.params(), callback_url, app_id, secret, timestamp)
    }
}

fn add_common(
    mut params: Vec<(String, String)>,
    url: &str,
    app_id: &str,
    secret: &str,
    timestamp: i64,
) -> Vec<(String, String)> {
    params.push(("app_id".into(), app_id.into()));
    params.push(("timestamp".into(), timestamp.to_string()));
    let sig = sign(url, &params, secret);
    params.push(("sig".into(), sig));
    params
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn detail_json(items: &[PushItem]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                r#"{{"app_food_code":{},"food_name":{},"quantity":{},"price":{},"unit":{}}}"#,
                json_str(&i.app_food_code),
                json_str(&i.food_name),
                i.quantity,
                format_yuan(i.price_fen),
                json_str(&i.unit),
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

fn extras_json(discounts: &[PushDiscount]) -> String {
    let parts: Vec<String> = discounts
        .iter()
        .map(|d| {
            format!(
                r#"{{"reduce_fee":{},"remark":{}}}"#,
                json_str(&format_yuan(d.reduce_fee_fen)),
                json_str(&d.remark),
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Field access with errors that name the field.
struct Fields<'a, K, V>(&'a [(K, V)]);

impl<K: AsRef<str>, V: AsRef<str>> Fields<'_, K, V> {
    fn get(&self, key: &str) -> Option<&str> {
        param(self.0, key)
    }

    fn required(&self, key: &'static str) -> Result<&str, PushError> {
        match self.get(key) {
            None | Some("") => Err(PushError::Missing(key)),
            Some(v) => Ok(v),
        }
    }

    fn order_id(&self) -> Result<String, PushError> {
        let v = self.required("order_id")?;
        if v.len() > 32 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("order_id", "must be 1 to 32 digits"));
        }
        Ok(v.to_owned())
    }

    fn id(&self, key: &'static str) -> Result<String, PushError> {
        let v = self.required(key)?;
        if v.chars().count() > MAX_ID_CHARS || v.chars().any(char::is_control) {
            return Err(invalid(
                key,
                format!("must be at most {MAX_ID_CHARS} printable characters"),
            ));
        }
        Ok(v.to_owned())
    }

    fn text_or_empty(&self, key: &'static str) -> Result<String, PushError> {
        let v = self.get(key).unwrap_or("");
        check_text(key, v)?;
        Ok(v.to_owned())
    }

    fn uint(&self, key: &'static str, max: u32) -> Result<u32, PushError> {
        let v = self.required(key)?;
        parse_digits_i64(v, 10)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= max)
            .ok_or_else(|| invalid(key, format!("must be a whole number from 0 to {max}")))
    }

    fn int(&self, key: &'static str, max_digits: usize) -> Result<i64, PushError> {
        let v = self.required(key)?;
        parse_digits_i64(v, max_digits).ok_or_else(|| invalid(key, "must be unix seconds"))
    }

    fn code(&self, key: &'static str) -> Result<i32, PushError> {
        let v = self.required(key)?;
        v.parse::<i32>()
            .map_err(|_| invalid(key, "must be a whole number"))
    }

    fn yuan(&self, key: &'static str) -> Result<i64, PushError> {
        let v = self.required(key)?;
        parse_yuan(v).map_err(|e| invalid(key, format!("{e}: {v:?}")))
    }

    fn yuan_opt(&self, key: &'static str) -> Result<Option<i64>, PushError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(_) => self.yuan(key).map(Some),
        }
    }
}

fn check_text(key: &'static str, v: &str) -> Result<(), PushError> {
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(
            key,
            format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawItem<'a> {
    app_food_code: Option<String>,
    food_name: Option<String>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    unit: Option<String>,
}

#[derive(Deserialize)]
struct RawDiscount<'a> {
    #[serde(borrow)]
    reduce_fee: Option<&'a RawValue>,
    remark: Option<String>,
}

fn parse_detail(s: &str) -> Result<Vec<PushItem>, PushError> {
    const F: &str = "detail";
    let raw: Vec<RawItem<'_>> = serde_json::from_str(s)
        .map_err(|e| invalid(F, format!("not a JSON array of items: {e}")))?;
    if raw.is_empty() {
        return Err(invalid(F, "no items"));
    }
    if raw.len() > MAX_ITEMS {
        return Err(invalid(F, format!("more than {MAX_ITEMS} items")));
    }
    raw.into_iter()
        .enumerate()
        .map(|(n, r)| {
            let at = |what: &str| invalid(F, format!("item {n}: {what}"));
            let app_food_code = r
                .app_food_code
                .filter(|c| !c.is_empty())
                .ok_or_else(|| at("missing `app_food_code`"))?;
            if app_food_code.chars().count() > MAX_ID_CHARS {
                return Err(at("`app_food_code` too long"));
            }
            let food_name = r.food_name.unwrap_or_default();
            let unit = r.unit.unwrap_or_default();
            if food_name.chars().count() > MAX_TEXT_CHARS || unit.chars().count() > MAX_TEXT_CHARS {
                return Err(at("text too long"));
            }
            let quantity = r
                .quantity
                .ok_or_else(|| at("missing `quantity`"))
                .and_then(|q| {
                    let t = q.get().trim().trim_matches('"');
                    parse_digits_i64(t, 5)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| (1..=MAX_QUANTITY).contains(n))
                        .ok_or_else(|| {
                            at(&format!(
                                "`quantity` must be a whole number from 1 to {MAX_QUANTITY}"
                            ))
                        })
                })?;
            let price_fen = r.price.ok_or_else(|| at("missing `price`")).and_then(|p| {
                parse_json_yuan(p.get()).map_err(|e| at(&format!("`price` {}: {e}", p.get())))
            })?;
            Ok(PushItem {
                app_food_code,
                food_name,
                quantity,
                price_fen,
                unit,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct RawReceiveDetail<'a> {
    #[serde(rename = "wmPoiReceiveCent", borrow)]
    receive_cent: Option<&'a RawValue>,
}

/// `wmPoiReceiveCent` (whole fen) of a `poi_receive_detail` object; 0 when
/// the object does not carry it.
fn parse_receive_detail(s: &str) -> Result<i64, PushError> {
    const F: &str = "poi_receive_detail";
    let raw: RawReceiveDetail<'_> =
        serde_json::from_str(s).map_err(|e| invalid(F, format!("not a JSON object: {e}")))?;
    match raw.receive_cent {
        None => Ok(0),
        Some(v) => {
            let t = v.get().trim().trim_matches('"');
            parse_digits_i64(t, 15)
                .filter(|n| *n <= crate::order::MAX_FEN)
                .ok_or_else(|| invalid(F, "`wmPoiReceiveCent` must be whole fen, not negative"))
        }
    }
}

fn parse_extras(s: &str) -> Result<Vec<PushDiscount>, PushError> {
    const F: &str = "extras";
    let raw: Vec<RawDiscount<'_>> = serde_json::from_str(s)
        .map_err(|e| invalid(F, format!("not a JSON array of discounts: {e}")))?;
    if raw.len() > MAX_ITEMS {
        return Err(invalid(F, format!("more than {MAX_ITEMS} discounts")));
    }
    raw.into_iter()
        .enumerate()
        .map(|(n, r)| {
            let at = |what: &str| invalid(F, format!("discount {n}: {what}"));
            let reduce_fee_fen = match r.reduce_fee {
                None => 0,
                Some(v) => parse_json_yuan(v.get())
                    .map_err(|e| at(&format!("`reduce_fee` {}: {e}", v.get())))?,
            };
            let remark = r.remark.unwrap_or_default();
            if remark.chars().count() > MAX_TEXT_CHARS {
                return Err(at("`remark` too long"));
            }
            Ok(PushDiscount {
                reduce_fee_fen,
                remark,
            })
        })
        .collect()
}

// ------------------------------------------------------------ outbound calls

/// Sell status of `food/sku/sellStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SellStatus {
    /// `0`
    OnSale,
    /// `1`
    SoldOut,
}

impl SellStatus {
    pub fn code(self) -> u8 {
        match self {
            SellStatus::OnSale => 0,
            SellStatus::SoldOut => 1,
        }
    }

    pub fn from_code(s: &str) -> Option<SellStatus> {
        match s {
            "0" => Some(SellStatus::OnSale),
            "1" => Some(SellStatus::SoldOut),
            _ => None,
        }
    }
}

/// One sku's stock in a `food/sku/stock` call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SkuStock {
    pub sku_id: String,
    /// Written as a decimal string on the wire.
    #[serde(with = "stock_str")]
    pub stock: u32,
}

/// One item in a `food/sku/stock` call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct FoodStock {
    pub app_food_code: String,
    pub skus: Vec<SkuStock>,
}

mod stock_str {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrNum {
        S(String),
        N(u32),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match StrOrNum::deserialize(d)? {
            StrOrNum::N(n) => Ok(n),
            StrOrNum::S(s) => s
                .parse()
                .map_err(|_| serde::de::Error::custom("stock must be a whole number")),
        }
    }
}

#[derive(Deserialize, serde::Serialize)]
struct FoodCode {
    app_food_code: String,
}

/// A call the store makes to the platform: `POST {base}/api/v1/{path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `order/confirm`: the store accepts the order.
    Confirm { order_id: String },
    /// `order/cancel`: the store refuses / cancels the order.
    Cancel {
        order_id: String,
        reason_code: i32,
        reason: String,
    },
    /// `order/preparationMealComplete`: the meal is ready.
    PreparationMealComplete { order_id: String },
    /// `order/delivering`: self-delivery left the store.
    Delivering { order_id: String },
    /// `order/arrived`: self-delivery arrived.
    Arrived { order_id: String },
    /// `order/refund/agree`.
    RefundAgree { order_id: String, reason: String },
    /// `order/refund/reject`.
    RefundReject { order_id: String, reason: String },
    /// `food/sku/stock`: stock counts.
    SkuStock {
        app_poi_code: String,
        foods: Vec<FoodStock>,
    },
    /// `food/sku/sellStatus`: on sale / sold out.
    SellStatus {
        app_poi_code: String,
        sell_status: SellStatus,
        app_food_codes: Vec<String>,
    },
}

/// Why a call failed, or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The platform answered `{"data":"ng","error":{…}}`.
    #[error("platform refused: {code} {msg}")]
    Rejected { code: i64, msg: String },
    /// The answer was not the platform's JSON.
    #[error("unreadable platform answer: {0}")]
    BadAnswer(String),
    #[error("unknown API path `{0}`")]
    UnknownPath(String),
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl From<PushError> for CallError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::UnknownEvent(p) => CallError::UnknownPath(p),
            PushError::Missing(f) => CallError::Missing(f),
            PushError::Invalid { field, reason } => CallError::Invalid { field, reason },
        }
    }
}

/// The URL of API `path` under `base_url` (a trailing `/` is ignored):
/// `{base_url}/api/v1/{path}`. This is also the URL that is signed.
pub fn api_url(base_url: &str, path: &str) -> String {
    format!("{}/api/v1/{path}", base_url.trim_end_matches('/'))
}

/// Every API path, in [`Call`] order.
pub const CALL_PATHS: [&str; 9] = [
    "order/confirm",
    "order/cancel",
    "order/preparationMealComplete",
    "order/delivering",
    "order/arrived",
    "order/refund/agree",
    "order/refund/reject",
    "food/sku/stock",
    "food/sku/sellStatus",
];

impl Call {
    /// The path below `/api/v1/`.
    pub fn path(&self) -> &'static str {
        match self {
            Call::Confirm { .. } => CALL_PATHS[0],
            Call::Cancel { .. } => CALL_PATHS[1],
            Call::PreparationMealComplete { .. } => CALL_PATHS[2],
            Call::Delivering { .. } => CALL_PATHS[3],
            Call::Arrived { .. } => CALL_PATHS[4],
            Call::RefundAgree { .. } => CALL_PATHS[5],
            Call::RefundReject { .. } => CALL_PATHS[6],
            Call::SkuStock { .. } => CALL_PATHS[7],
            Call::SellStatus { .. } => CALL_PATHS[8],
        }
    }

    /// The platform order the call is about; `None` for stock calls.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Call::Confirm { order_id }
            | Call::Cancel { order_id, .. }
            | Call::PreparationMealComplete { order_id }
            | Call::Delivering { order_id }
            | Call::Arrived { order_id }
            | Call::RefundAgree { order_id, .. }
            | Call::RefundReject { order_id, .. } => Some(order_id),
            Call::SkuStock { .. } | Call::SellStatus { .. } => None,
        }
    }

    /// The call's own parameters (without `app_id`, `timestamp`, `sig`).
    pub fn params(&self) -> Vec<(String, String)> {
        let o = |id: &String| vec![("order_id".to_owned(), id.clone())];
        match self {
            Call::Confirm { order_id }
            | Call::PreparationMealComplete { order_id }
            | Call::Delivering { order_id }
            | Call::Arrived { order_id } => o(order_id),
            Call::Cancel {
                order_id,
                reason_code,
                reason,
            } => vec![
                ("order_id".into(), order_id.clone()),
                ("reason_code".into(), reason_code.to_string()),
                ("reason".into(), reason.clone()),
            ],
            Call::RefundAgree { order_id, reason } | Call::RefundReject { order_id, reason } => {
                vec![
                    ("order_id".into(), order_id.clone()),
                    ("reason".into(), reason.clone()),
                ]
            }
            Call::SkuStock {
                app_poi_code,
                foods,
            } => vec![
                ("app_poi_code".into(), app_poi_code.clone()),
                (
                    "food_data".into(),
                    serde_json::to_string(foods).unwrap_or_else(|_| "[]".into()),
                ),
            ],
            Call::SellStatus {
                app_poi_code,
                sell_status,
                app_food_codes,
            } => {
                let codes: Vec<FoodCode> = app_food_codes
                    .iter()
                    .map(|c| FoodCode {
                        app_food_code: c.clone(),
                    })
                    .collect();
                vec![
                    ("app_poi_code".into(), app_poi_code.clone()),
                    ("sell_status".into(), sell_status.code().to_string()),
                    (
                        "food_data".into(),
                        serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into()),
                    ),
                ]
            }
        }
    }

    /// The full form to POST to [`api_url`]`(base_url, self.path())`:
    /// [`Call::params`] plus `app_id`, `timestamp` and `sig`.
    pub fn signed_params(
        &self,
        base_url: &str,
        app_id: &str,
        secret: &str,
        timestamp: i64,
    ) -> Vec<(String, String)> {
        add_common(
            self.params(),
            &api_url(base_url, self.path()),
            app_id,
            secret,
            timestamp,
        )
    }

    /// Reads a call from its path (below `/api/v1/`) and form parameters
    /// (the platform's side). Common and unknown parameters are ignored.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(
        path: &str,
        params: &[(K, V)],
    ) -> Result<Call, CallError> {
        let p = Fields(params);
        let call =
            match path {
                "order/confirm" => Call::Confirm {
                    order_id: p.order_id()?,
                },
                "order/cancel" => Call::Cancel {
                    order_id: p.order_id()?,
                    reason_code: p.code("reason_code")?,
                    reason: p.text_or_empty("reason")?,
                },
                "order/preparationMealComplete" => Call::PreparationMealComplete {
                    order_id: p.order_id()?,
                },
                "order/delivering" => Call::Delivering {
                    order_id: p.order_id()?,
                },
                "order/arrived" => Call::Arrived {
                    order_id: p.order_id()?,
                },
                "order/refund/agree" => Call::RefundAgree {
                    order_id: p.order_id()?,
                    reason: p.text_or_empty("reason")?,
                },
                "order/refund/reject" => Call::RefundReject {
                    order_id: p.order_id()?,
                    reason: p.text_or_empty("reason")?,
                },
                "food/sku/stock" => {
                    let foods: Vec<FoodStock> = serde_json::from_str(p.required("food_data")?)
                        .map_err(|e| CallError::Invalid {
                            field: "food_data",
                            reason: e.to_string(),
                        })?;
                    if foods.len() > MAX_ITEMS {
                        return Err(CallError::Invalid {
                            field: "food_data",
                            reason: format!("more than {MAX_ITEMS} items"),
                        });
                    }
                    Call::SkuStock {
                        app_poi_code: p.id("app_poi_code")?,
                        foods,
                    }
                }
                "food/sku/sellStatus" => {
                    let codes: Vec<FoodCode> = serde_json::from_str(p.required("food_data")?)
                        .map_err(|e| CallError::Invalid {
                            field: "food_data",
                            reason: e.to_string(),
                        })?;
                    if codes.len() > MAX_ITEMS {
                        return Err(CallError::Invalid {
                            field: "food_data",
                            reason: format!("more than {MAX_ITEMS} items"),
                        });
                    }
                    Call::SellStatus {
                        app_poi_code: p.id("app_poi_code")?,
                        sell_status: SellStatus::from_code(p.required("sell_status")?).ok_or(
                            CallError::Invalid {
                                field: "sell_status",
                                reason: "must be 0 (on sale) or 1 (sold out)".into(),
                            },
                        )?,
                        app_food_codes: codes.into_iter().map(|c| c.app_food_code).collect(),
                    }
                }
                other => return Err(CallError::UnknownPath(other.into())),
            };
        Ok(call)
    }

    /// Same as [`parse_answer`].
    pub fn parse_answer(body: &[u8]) -> Result<(), CallError> {
        parse_answer(body)
    }
}

#[derive(Deserialize)]
struct RawAnswer {
    data: Option<serde_json::Value>,
    error: Option<RawAnswerError>,
}

#[derive(Deserialize)]
struct RawAnswerError {
    code: Option<serde_json::Value>,
    msg: Option<String>,
}

/// Reads the platform's answer: `Ok` for `{"data":"ok"}`,
/// [`CallError::Rejected`] for `{"data":"ng","error":{"code":…,"msg":…}}`,
/// [`CallError::BadAnswer`] for anything else.
pub fn parse_answer(body: &[u8]) -> Result<(), CallError> {
    let a: RawAnswer = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        CallError::BadAnswer(format!("{e}: {head}"))
    })?;
    match a.data.as_ref().and_then(|d| d.as_str()) {
        Some("ok") => Ok(()),
        _ => match a.error {
            Some(err) => Err(CallError::Rejected {
                code: match err.code {
                    Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
                    Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                    _ => 0,
                },
                msg: err.msg.unwrap_or_default(),
            }),
            None => Err(CallError::BadAnswer("neither ok nor an error".into())),
        },
    }
}

/// The platform's refusal: `{"data":"ng","error":{"code":code,"msg":msg}}`.
pub fn answer_ng(code: i64, msg: &str) -> String {
    serde_json::json!({"data": "ng", "error": {"code": code, "msg": msg}}).to_string()
}

// ------------------------------------------------------------ generic webhook

// The generic webhook's codec is `crate::webhook`; its names stay here for
// the callers that have always found them here.
pub use crate::webhook::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, webhook_sign,
    webhook_verify,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    const URL: &str = "http://127.0.0.1:8080/channels/meituan/cancel";
    const SECRET: &str = "s3cret";

    #[test]
    fn sign_matches_a_hand_computed_vector() {
        // python3: hashlib.md5(b"http://127.0.0.1:8080/channels/meituan/cancel?
        //   app_id=7&order_id=123&reason=&reason_code=1001&timestamp=1700000000s3cret")
        let p = [
            ("timestamp", "1700000000"),
            ("order_id", "123"),
            ("app_id", "7"),
            ("reason_code", "1001"),
            ("reason", ""),
        ];
        assert_eq!(
            signing_string(URL, &p, SECRET),
            "http://127.0.0.1:8080/channels/meituan/cancel?app_id=7&order_id=123&reason=&reason_code=1001&timestamp=1700000000s3cret"
        );
        assert_eq!(sign(URL, &p, SECRET), VECTOR);
    }

    const VECTOR: &str = "fb4a1fc6ac32fee47761eae11f23f00f";

    #[test]
    fn sign_uses_decoded_utf8_values() {
        // python3: md5("http://h/x?a=%E4%B8%AD&b=中 文k") — values are signed as given.
        assert_eq!(
            sign("http://h/x", &[("b", "中 文"), ("a", "%E4%B8%AD")], "k"),
            "835fdc565f97f21db8c77ea097cbc1de"
        );
    }

    #[test]
    fn sign_sorts_by_key_and_ignores_sig_and_order() {
        let a = sign(URL, &[("b", "1"), ("a", "2"), ("sig", "x")], SECRET);
        let b = sign(URL, &[("a", "2"), ("b", "1")], SECRET);
        assert_eq!(a, b);
        assert_eq!(
            signing_string(URL, &[("b", "1"), ("a", "2"), ("ab", "")], SECRET),
            format!("{URL}?a=2&ab=&b=1{SECRET}")
        );
        // The empty value counts.
        assert_ne!(
            sign(URL, &[("a", "2")], SECRET),
            sign(URL, &[("a", "2"), ("c", "")], SECRET)
        );
    }

    #[test]
    fn verify_accepts_good_and_refuses_tampering() {
        let mut p = owned(&[
            ("app_id", "7"),
            ("timestamp", "1700000000"),
            ("order_id", "123"),
            ("reason_code", "1001"),
            ("reason", ""),
        ]);
        p.push(("sig".into(), VECTOR.into()));
        assert_eq!(verify(URL, &p, SECRET), Ok(()));
        let upper: Vec<_> = p
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == "sig" {
                        v.to_uppercase()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        assert_eq!(verify(URL, &upper, SECRET), Ok(()));
        assert_eq!(verify(URL, &p, "other"), Err(SigError::Mismatch));
        assert_eq!(
            verify("http://127.0.0.1:8081/channels/meituan/cancel", &p, SECRET),
            Err(SigError::Mismatch)
        );
        let mut t = p.clone();
        t[2].1 = "124".into();
        assert_eq!(verify(URL, &t, SECRET), Err(SigError::Mismatch));
        let mut t = p.clone();
        t.push(("extra".into(), String::new()));
        assert_eq!(verify(URL, &t, SECRET), Err(SigError::Mismatch));
        let no_sig: Vec<_> = p.iter().filter(|(k, _)| k != "sig").cloned().collect();
        assert_eq!(verify(URL, &no_sig, SECRET), Err(SigError::Missing));
        let mut short = p.clone();
        short.last_mut().unwrap().1 = "fb4a".into();
        assert_eq!(verify(URL, &short, SECRET), Err(SigError::Mismatch));
    }

    #[test]
    fn timestamp_window() {
        assert_eq!(check_timestamp("1000", 1000, 300), Ok(1000));
        assert_eq!(check_timestamp("700", 1000, 300), Ok(700));
        assert_eq!(check_timestamp("1300", 1000, 300), Ok(1300));
        assert_eq!(
            check_timestamp("699", 1000, 300),
            Err(TimestampError::Stale(301))
        );
        assert_eq!(
            check_timestamp("1301", 1000, 300),
            Err(TimestampError::Future(301))
        );
        for bad in ["", "-5", "1e3", " 100", "12.5", "9999999999999", "abc"] {
            assert_eq!(
                check_timestamp(bad, 1000, 300),
                Err(TimestampError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn form_round_trips_and_is_strict() {
        let p = owned(&[("a", "1 2&3=4"), ("b", "中文"), ("c", ""), ("d+", "%")]);
        let body = encode_form(&p);
        assert_eq!(parse_form(body.as_bytes()), Ok(p));
        assert_eq!(
            parse_form(b"a=1&&b&c=%41+B"),
            Ok(owned(&[("a", "1"), ("b", ""), ("c", "A B")]))
        );
        assert_eq!(parse_form(b"a=%4"), Err(FormError::BadEscape));
        assert_eq!(parse_form(b"a=%zz"), Err(FormError::BadEscape));
        assert_eq!(parse_form(b"a=%FF"), Err(FormError::NotUtf8("a".into())));
        assert_eq!(parse_form(b"a=\xff"), Err(FormError::NotUtf8("a".into())));
        assert_eq!(parse_form(b"=1"), Err(FormError::EmptyName));
        assert_eq!(
            parse_form(b"a=1&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
        let many: Vec<String> = (0..=MAX_FORM_PARAMS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse_form(many.join("&").as_bytes()),
            Err(FormError::TooManyParams)
        );
        assert_eq!(
            parse_form(many[1..].join("&").as_bytes()).map(|v| v.len()),
            Ok(200)
        );
        assert_eq!(
            parse_form(&vec![b'a'; MAX_FORM_BYTES + 1]),
            Err(FormError::TooLarge)
        );
    }

    #[test]
    fn yuan_to_fen_without_floats() {
        assert_eq!(parse_yuan("12.5"), Ok(1250));
        assert_eq!(parse_yuan("0.1"), Ok(10));
        assert_eq!(parse_yuan("0.01"), Ok(1));
        assert_eq!(parse_yuan("12"), Ok(1200));
        assert_eq!(parse_yuan("12.50"), Ok(1250));
        assert_eq!(parse_yuan("12.500"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_yuan("0"), Ok(0));
        assert_eq!(parse_yuan("1.234"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_yuan("-1.00"), Err(MoneyError::Negative));
        for bad in [
            "", ".5", "5.", "1e2", "+1", " 1", "1,5", "1.2.3", "NaN", "０",
        ] {
            assert_eq!(parse_yuan(bad), Err(MoneyError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_yuan("99999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(parse_yuan("9999999999999.99"), Err(MoneyError::TooLarge));
        assert_eq!(parse_yuan("100000000.00"), Ok(10_000_000_000));
        assert_eq!(
            parse_yuan(&format!("1{}", "0".repeat(26))),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(parse_yuan(&"9".repeat(10_000)), Err(MoneyError::TooLarge));
        assert_eq!(parse_yuan("1_0"), Err(MoneyError::Malformed));
        assert_eq!(parse_json_yuan("1e300"), Err(MoneyError::Malformed));
        assert_eq!(parse_json_yuan("-1"), Err(MoneyError::Negative));
        assert_eq!(parse_json_yuan("12.5"), Ok(1250));
        assert_eq!(parse_json_yuan("\"12.50\""), Ok(1250));
        assert_eq!(parse_json_yuan("1.234"), Err(MoneyError::TooPrecise));
        assert_eq!(parse_json_yuan("1.5e1"), Err(MoneyError::Malformed));
        assert_eq!(parse_json_yuan("null"), Err(MoneyError::Malformed));
        assert_eq!(format_yuan(1250), "12.50");
        assert_eq!(format_yuan(5), "0.05");
        assert_eq!(format_yuan(-100), "-1.00");
    }

    fn new_order_params() -> Vec<(String, String)> {
        owned(&[
            ("app_id", "7"),
            ("timestamp", "1700000000"),
            ("sig", "ignored-here"),
            ("order_id", "27061900000001"),
            ("app_poi_code", "store-1"),
            ("day_seq", "3"),
            ("ctime", "1699999990"),
            ("caution", "少辣 no onions"),
            ("recipient_name", "张三"),
            ("recipient_phone", "13800000000"),
            ("recipient_address", "1 Road"),
            ("shipping_fee", "5.00"),
            ("total", "27.6"),
            ("original_price", "30.6"),
            (
                "poi_receive_detail",
                r#"{"wmPoiReceiveCent":2210,"onlinePayment":2760}"#,
            ),
            (
                "detail",
                r#"[{"app_food_code":"A1","food_name":"面","quantity":2,"price":12.5,"unit":"份","sku_id":"x"},
                    {"app_food_code":"B2","food_name":"茶","quantity":"1","price":"0.60"}]"#,
            ),
            (
                "extras",
                r#"[{"reduce_fee":"3.00","remark":"满减"},{"reduce_fee":0}]"#,
            ),
        ])
    }

    #[test]
    fn new_order_parses() {
        let Push::NewOrder(o) = Push::parse("new_order", &new_order_params()).unwrap() else {
            panic!("not a new order");
        };
        assert_eq!(o.order_id, "27061900000001");
        assert_eq!(o.app_poi_code, "store-1");
        assert_eq!(o.day_seq, 3);
        assert_eq!(o.ctime, 1_699_999_990);
        assert_eq!(o.caution, "少辣 no onions");
        assert_eq!(o.recipient_name, "张三");
        assert_eq!(o.shipping_fee_fen, 500);
        assert_eq!(o.total_fen, 2760);
        assert_eq!(o.original_price_fen, 3060);
        assert_eq!(o.poi_receive_amount_fen, 2210);
        assert_eq!(
            o.items,
            vec![
                PushItem {
                    app_food_code: "A1".into(),
                    food_name: "面".into(),
                    quantity: 2,
                    price_fen: 1250,
                    unit: "份".into()
                },
                PushItem {
                    app_food_code: "B2".into(),
                    food_name: "茶".into(),
                    quantity: 1,
                    price_fen: 60,
                    unit: String::new()
                },
            ]
        );
        assert_eq!(o.discounts.len(), 2);
        assert_eq!(o.discounts[0].reduce_fee_fen, 300);
        assert_eq!(o.discounts[0].remark, "满减");
        assert_eq!(o.discounts[1].reduce_fee_fen, 0);
    }

    fn with(mut p: Vec<(String, String)>, key: &str, val: Option<&str>) -> Vec<(String, String)> {
        p.retain(|(k, _)| k != key);
        if let Some(v) = val {
            p.push((key.into(), v.into()));
        }
        p
    }

    fn err_of(event: &str, p: &[(String, String)]) -> String {
        Push::parse(event, p).unwrap_err().to_string()
    }

    #[test]
    fn new_order_bad_fields_name_the_field() {
        let base = new_order_params();
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("order_id", None, "missing parameter `order_id`"),
            (
                "order_id",
                Some("12a"),
                "parameter `order_id`: must be 1 to 32 digits",
            ),
            ("app_poi_code", Some(""), "missing parameter `app_poi_code`"),
            ("day_seq", Some("-1"), "parameter `day_seq`"),
            ("ctime", Some("soon"), "parameter `ctime`"),
            (
                "total",
                Some("1.234"),
                "parameter `total`: more than 2 decimals",
            ),
            ("total", Some("-3"), "parameter `total`: negative"),
            ("original_price", None, "missing parameter `original_price`"),
            (
                "poi_receive_detail",
                Some("{"),
                "parameter `poi_receive_detail`: not a JSON object",
            ),
            (
                "poi_receive_detail",
                Some(r#"{"wmPoiReceiveCent":-1}"#),
                "`wmPoiReceiveCent` must be whole fen",
            ),
            (
                "poi_receive_detail",
                Some(r#"{"wmPoiReceiveCent":1.5}"#),
                "`wmPoiReceiveCent` must be whole fen",
            ),
            (
                "shipping_fee",
                Some("x"),
                "parameter `shipping_fee`: not a plain decimal",
            ),
            ("detail", None, "missing parameter `detail`"),
            ("detail", Some("[]"), "parameter `detail`: no items"),
            ("detail", Some("{"), "parameter `detail`: not a JSON array"),
            (
                "detail",
                Some(r#"[{"food_name":"x","quantity":1,"price":1}]"#),
                "parameter `detail`: item 0: missing `app_food_code`",
            ),
            (
                "detail",
                Some(r#"[{"app_food_code":"a","quantity":0,"price":1}]"#),
                "parameter `detail`: item 0: `quantity` must be",
            ),
            (
                "detail",
                Some(r#"[{"app_food_code":"a","quantity":1.5,"price":1}]"#),
                "`quantity` must be",
            ),
            (
                "detail",
                Some(r#"[{"app_food_code":"a","quantity":1,"price":1.234}]"#),
                "parameter `detail`: item 0: `price` 1.234: more than 2 decimals",
            ),
            (
                "detail",
                Some(r#"[{"app_food_code":"a","quantity":1,"price":-1}]"#),
                "`price` -1: negative",
            ),
            (
                "detail",
                Some(r#"[{"app_food_code":"a","quantity":1}]"#),
                "item 0: missing `price`",
            ),
            (
                "extras",
                Some(r#"[{"reduce_fee":"x"}]"#),
                "parameter `extras`: discount 0",
            ),
            (
                "caution",
                Some(&"x".repeat(MAX_TEXT_CHARS + 1)),
                "parameter `caution`: longer",
            ),
        ];
        for (key, val, want) in cases {
            let e = err_of("new_order", &with(base.clone(), key, *val));
            assert!(e.contains(want), "{key}={val:?}: got {e:?}, want {want:?}");
        }
        // Optional fields may be absent.
        for key in [
            "caution",
            "recipient_name",
            "shipping_fee",
            "extras",
            "poi_receive_detail",
        ] {
            assert!(
                Push::parse("new_order", &with(base.clone(), key, None)).is_ok(),
                "{key}"
            );
        }
        // Without the (subscription-only) receive detail, the store's share is unknown: 0.
        let Ok(Push::NewOrder(o)) =
            Push::parse("new_order", &with(base.clone(), "poi_receive_detail", None))
        else {
            panic!("new order without poi_receive_detail");
        };
        assert_eq!(o.poi_receive_amount_fen, 0);
        assert_eq!(
            Push::parse("new_orders", &base),
            Err(PushError::UnknownEvent("new_orders".into()))
        );
        let many = format!(
            "[{}]",
            vec![r#"{"app_food_code":"a","quantity":1,"price":1}"#; MAX_ITEMS + 1].join(",")
        );
        assert!(err_of("new_order", &with(base, "detail", Some(&many))).contains("more than"));
    }

    #[test]
    fn other_pushes_parse_and_check_fields() {
        let p = owned(&[
            ("order_id", "9"),
            ("reason_code", "2001"),
            ("reason", "user"),
        ]);
        assert_eq!(
            Push::parse("cancel", &p),
            Ok(Push::Cancel(CancelPush {
                order_id: "9".into(),
                reason_code: 2001,
                reason: "user".into()
            }))
        );
        assert_eq!(
            err_of("cancel", &with(p.clone(), "reason_code", Some("x"))),
            "parameter `reason_code`: must be a whole number"
        );
        assert_eq!(
            err_of("cancel", &with(p, "reason_code", None)),
            "missing parameter `reason_code`"
        );

        let r = owned(&[
            ("order_id", "9"),
            ("refund_id", "r1"),
            ("reason", "cold"),
            ("money", "3.5"),
        ]);
        let Ok(Push::RefundApply(ra)) = Push::parse("refund_apply", &r) else {
            panic!("refund_apply");
        };
        assert_eq!(ra.money_fen, Some(350));
        let Ok(Push::RefundApply(full)) =
            Push::parse("refund_apply", &with(r.clone(), "money", None))
        else {
            panic!("refund_apply full");
        };
        assert_eq!(full.money_fen, None);
        assert!(
            err_of("refund_apply", &with(r.clone(), "money", Some("0.001"))).contains("`money`")
        );
        assert_eq!(
            err_of("refund_apply", &with(r, "refund_id", None)),
            "missing parameter `refund_id`"
        );

        let rc = owned(&[("order_id", "9"), ("refund_id", "r1")]);
        assert!(matches!(
            Push::parse("refund_cancel", &rc),
            Ok(Push::RefundCancel(_))
        ));
        let ds = owned(&[
            ("order_id", "9"),
            ("logistics_status", "20"),
            ("dispatcher_name", "李四"),
            ("dispatcher_mobile", "13900000000"),
        ]);
        assert_eq!(
            Push::parse("delivery_status", &ds),
            Ok(Push::DeliveryStatus(DeliveryStatusPush {
                order_id: "9".into(),
                logistics_status: 20,
                courier_name: "李四".into(),
                courier_phone: "13900000000".into(),
            }))
        );
    }

    #[test]
    fn pushes_round_trip_through_params_and_are_signed() {
        let Push::NewOrder(o) = Push::parse("new_order", &new_order_params()).unwrap() else {
            panic!();
        };
        let pushes = [
            Push::NewOrder(o),
            Push::Cancel(CancelPush {
                order_id: "1".into(),
                reason_code: 1,
                reason: "r &=%".into(),
            }),
            Push::RefundApply(RefundApplyPush {
                order_id: "1".into(),
                refund_id: "2".into(),
                reason: String::new(),
                money_fen: Some(1),
            }),
            Push::RefundCancel(RefundCancelPush {
                order_id: "1".into(),
                refund_id: "2".into(),
                reason: String::new(),
            }),
        ];
        for push in pushes {
            let url = format!("http://gw/channels/meituan/{}", push.event());
            let signed = push.signed_params(&url, "7", SECRET, 1_700_000_000);
            let body = encode_form(&signed);
            let back = parse_form(body.as_bytes()).unwrap();
            assert_eq!(verify(&url, &back, SECRET), Ok(()));
            assert_eq!(param(&back, "app_id"), Some("7"));
            assert_eq!(
                Push::parse(push.event().as_str(), &back).as_ref(),
                Ok(&push)
            );
        }
    }

    #[test]
    fn dedup_keys() {
        let c = Push::Cancel(CancelPush {
            order_id: "1".into(),
            reason_code: 1,
            reason: String::new(),
        });
        assert_eq!(c.dedup_key(), "cancel:1");
        let r = Push::RefundApply(RefundApplyPush {
            order_id: "1".into(),
            refund_id: "r".into(),
            reason: String::new(),
            money_fen: None,
        });
        assert_eq!(r.dedup_key(), "refund_apply:1:r");
    }

    #[test]
    fn calls_round_trip_and_sign_over_the_api_url() {
        let calls = vec![
            Call::Confirm {
                order_id: "1".into(),
            },
            Call::Cancel {
                order_id: "1".into(),
                reason_code: REASON_CODE_STORE_CANCEL,
                reason: "售罄".into(),
            },
            Call::PreparationMealComplete {
                order_id: "1".into(),
            },
            Call::Delivering {
                order_id: "1".into(),
            },
            Call::Arrived {
                order_id: "1".into(),
            },
            Call::RefundAgree {
                order_id: "1".into(),
                reason: "ok".into(),
            },
            Call::RefundReject {
                order_id: "1".into(),
                reason: "no".into(),
            },
            Call::SkuStock {
                app_poi_code: "s1".into(),
                foods: vec![FoodStock {
                    app_food_code: "A1".into(),
                    skus: vec![SkuStock {
                        sku_id: "A1".into(),
                        stock: 12,
                    }],
                }],
            },
            Call::SellStatus {
                app_poi_code: "s1".into(),
                sell_status: SellStatus::SoldOut,
                app_food_codes: vec!["A1".into(), "B2".into()],
            },
        ];
        for (call, path) in calls.iter().zip(CALL_PATHS) {
            assert_eq!(call.path(), path);
            let base = "http://127.0.0.1:9000/";
            let signed = call.signed_params(base, "7", SECRET, 5);
            let url = format!("http://127.0.0.1:9000/api/v1/{path}");
            assert_eq!(api_url(base, path), url);
            assert_eq!(verify(&url, &signed, SECRET), Ok(()));
            let back = parse_form(encode_form(&signed).as_bytes()).unwrap();
            assert_eq!(Call::parse(path, &back).as_ref(), Ok(call));
        }
        let stock = calls[7].params();
        assert_eq!(
            param(&stock, "food_data"),
            Some(r#"[{"app_food_code":"A1","skus":[{"sku_id":"A1","stock":"12"}]}]"#)
        );
        assert_eq!(param(&calls[8].params(), "sell_status"), Some("1"));
        assert_eq!(calls[0].order_id(), Some("1"));
        assert_eq!(calls[7].order_id(), None);
        assert_eq!(
            Call::parse("order/nope", &owned(&[("order_id", "1")])),
            Err(CallError::UnknownPath("order/nope".into()))
        );
        assert_eq!(
            Call::parse("order/confirm", &owned(&[])),
            Err(CallError::Missing("order_id"))
        );
        assert!(matches!(
            Call::parse(
                "food/sku/sellStatus",
                &owned(&[
                    ("app_poi_code", "s"),
                    ("sell_status", "2"),
                    ("food_data", "[]")
                ])
            ),
            Err(CallError::Invalid {
                field: "sell_status",
                ..
            })
        ));
        // A numeric stock is read too.
        assert!(matches!(
            Call::parse(
                "food/sku/stock",
                &owned(&[
                    ("app_poi_code", "s"),
                    (
                        "food_data",
                        r#"[{"app_food_code":"a","skus":[{"sku_id":"a","stock":3}]}]"#
                    )
                ])
            ),
            Ok(Call::SkuStock { .. })
        ));
    }

    #[test]
    fn answers() {
        assert_eq!(parse_answer(ANSWER_OK.as_bytes()), Ok(()));
        assert_eq!(parse_answer(br#"{"data":"ok","extra":1}"#), Ok(()));
        assert_eq!(
            parse_answer(answer_ng(ERR_SIG, "签名验证错误").as_bytes()),
            Err(CallError::Rejected {
                code: 703,
                msg: "签名验证错误".into()
            })
        );
        assert_eq!(
            parse_answer(br#"{"data":"ng","error":{"code":"808","msg":"x"}}"#),
            Err(CallError::Rejected {
                code: 808,
                msg: "x".into()
            })
        );
        assert!(matches!(
            parse_answer(b"<html>"),
            Err(CallError::BadAnswer(_))
        ));
        assert!(matches!(
            parse_answer(br#"{"data":"ng"}"#),
            Err(CallError::BadAnswer(_))
        ));
        assert!(matches!(parse_answer(b""), Err(CallError::BadAnswer(_))));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn form_round_trips(p in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..20)) {
                let p: Vec<(String, String)> = p.into_iter().collect();
                prop_assert_eq!(parse_form(encode_form(&p).as_bytes()), Ok(p));
            }

            #[test]
            fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), ev in "[a-z_]{0,14}") {
                if let Ok(p) = parse_form(&body) {
                    let _ = Push::parse(&ev, &p);
                    let _ = Push::parse("new_order", &p);
                    let _ = Call::parse("food/sku/stock", &p);
                    let _ = verify("http://x", &p, "k");
                }
                let _ = parse_answer(&body);
                if let Ok(s) = std::str::from_utf8(&body) {
                    let _ = parse_yuan(s);
                    let _ = parse_json_yuan(s);
                    let _ = check_timestamp(s, 0, 10);
                }
            }

            #[test]
            fn fen_round_trips(fen in 0i64..=crate::order::MAX_FEN) {
                prop_assert_eq!(parse_yuan(&format_yuan(fen)), Ok(fen));
            }

            #[test]
            fn any_single_change_breaks_the_sig(v in "[a-z0-9]{0,10}", w in "[a-z0-9]{0,10}") {
                prop_assume!(v != w);
                let p = vec![("a".to_owned(), v.clone()), ("b".to_owned(), "x".to_owned())];
                let mut s = p.clone();
                s.push(("sig".into(), sign("http://u", &p, "k")));
                prop_assert_eq!(verify("http://u", &s, "k"), Ok(()));
                s[0].1 = w;
                prop_assert_eq!(verify("http://u", &s, "k"), Err(SigError::Mismatch));
            }
        }
    }
}
