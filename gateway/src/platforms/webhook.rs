//! The generic JSON webhook platform, for other aggregators (they receive no
//! calls):
//! `POST /channels/webhook/{platform}`, authenticated by HMAC-SHA256 over
//! `timestamp + "." + id + "." + raw body` (headers `X-Webhook-Id`,
//! `X-Webhook-Timestamp`, `X-Webhook-Signature: v1=<hex>`), a replay window
//! on the timestamp, and de-duplication by `event_id`.
//!
//! The body (money as decimal strings in yuan, at most two decimals):
//!
//! ```json
//! {"event_id": "evt_1", "type": "order.created",
//!  "order": {"id": "A-1001", "store_id": "S001", "day_seq": 7, "note": "少辣",
//!            "recipient": {"name": "王先生", "phone": "138…", "address": "…"},
//!            "shipping_fee": "5.00", "total": "40.00", "original_total": "45.00",
//!            "store_receives": "32.00",
//!            "items": [{"sku": "COLA", "name": "可乐", "quantity": 2, "price": "3.50"}],
//!            "discounts": [{"name": "满减", "amount": "5.00"}]}}
//! ```
//!
//! Other `type`s: `order.cancelled`, `order.refund_requested`,
//! `order.refund_cancelled`, each with `{"order": {"id": …}}` and optional
//! `reason`, `refund_id`, `amount`.

use proto::order::{CatalogItem, Money};
use proto::webhook::{self as wh, SigError, TimestampError};
use serde::Deserialize;
use serde_json::json;

use super::{
    Call, Credentials, Discount, EventKind, Inbound, ItemCall, ItemCode, ItemSync, OrderAction,
    OrderEvent, Platform, PlatformItem, PlatformOrder, RawPush, Refusal,
};
use crate::error::Code;

/// Largest webhook body read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_TEXT: usize = 512;

/// Every webhook platform: its name is the one it pushes under
/// (`/channels/webhook/{platform}`), its secret configured by that name.
pub struct Webhook;

#[derive(Deserialize)]
struct Message {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    order: WireOrder,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    refund_id: Option<String>,
    #[serde(default)]
    amount: Option<String>,
}

#[derive(Deserialize)]
struct WireOrder {
    id: String,
    #[serde(default)]
    store_id: Option<String>,
    #[serde(default)]
    day_seq: Option<i64>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    recipient: Option<Recipient>,
    #[serde(default)]
    shipping_fee: Option<String>,
    #[serde(default)]
    total: Option<String>,
    #[serde(default)]
    original_total: Option<String>,
    #[serde(default)]
    store_receives: Option<String>,
    #[serde(default)]
    items: Vec<WireItem>,
    #[serde(default)]
    discounts: Vec<WireDiscount>,
}

#[derive(Deserialize, Default)]
struct Recipient {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct WireItem {
    sku: String,
    #[serde(default)]
    name: Option<String>,
    quantity: i64,
    price: String,
}

#[derive(Deserialize)]
struct WireDiscount {
    #[serde(default)]
    name: Option<String>,
    amount: String,
}

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal::new(Code::MalformedPush, msg)
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn text(field: &str, s: Option<String>) -> Result<String, Refusal> {
    let s = s.unwrap_or_default();
    if s.chars().count() > MAX_TEXT || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(format!(
            "{field}: at most {MAX_TEXT} printable characters"
        )));
    }
    Ok(s)
}

/// An amount in fen, read by proto's one money grammar ([`Money::parse`]:
/// yuan, at most two decimals); absent is 0.
fn fen(field: &str, s: Option<&str>) -> Result<i64, Refusal> {
    s.map_or(Ok(Money::ZERO), parse_money(field))
        .map(Money::fen)
}

fn parse_money(field: &str) -> impl Fn(&str) -> Result<Money, Refusal> + '_ {
    move |s| Money::parse(s).map_err(|e| bad(format!("{field}: {}", e.message)))
}

fn header<'a>(push: &'a RawPush<'_>, name: &str) -> Option<&'a str> {
    push.headers.get(name).and_then(|v| v.to_str().ok())
}

impl Platform for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn decode(
        &self,
        credentials: &Credentials<'_>,
        push: &RawPush<'_>,
    ) -> Result<Inbound, Refusal> {
        let refuse = |code, msg: &str| Refusal::new(code, msg);
        let id = header(push, wh::WEBHOOK_ID_HEADER)
            .filter(|i| !i.is_empty() && i.len() <= 128)
            .ok_or_else(|| refuse(Code::MissingSignature, "missing X-Webhook-Id"))?;
        let ts = header(push, wh::WEBHOOK_TIMESTAMP_HEADER)
            .ok_or_else(|| refuse(Code::MissingSignature, "missing X-Webhook-Timestamp"))?;
        let sig = header(push, wh::WEBHOOK_SIGNATURE_HEADER).unwrap_or_default();
        wh::webhook_verify(credentials.secret, ts, id, push.body, sig).map_err(|e| match e {
            SigError::Missing => refuse(Code::MissingSignature, "missing X-Webhook-Signature v1=…"),
            SigError::Mismatch => refuse(Code::BadSignature, "the signature does not match"),
        })?;
        wh::check_timestamp(ts, push.now_s, credentials.window_s).map_err(|e| match e {
            TimestampError::Malformed => Refusal::new(Code::BadTimestamp, e.to_string()),
            _ => refuse(Code::StaleTimestamp, &e.to_string()),
        })?;
        let m: Message = serde_json::from_slice(push.body)
            .map_err(|e| bad(format!("the body does not fit the webhook schema: {e}")))?;
        if !id_ok(&m.event_id) || !id_ok(&m.order.id) {
            return Err(bad(
                "event_id and order.id must be 1-64 of A-Z a-z 0-9 - _ . :",
            ));
        }
        let platform = push.segment.to_owned();
        let o = m.order;
        let kind = match m.kind.as_str() {
            "order.created" => None,
            "order.cancelled" => Some(EventKind::Cancel),
            "order.refund_requested" => Some(EventKind::RefundApply),
            "order.refund_cancelled" => Some(EventKind::RefundCancel),
            other => return Err(bad(format!("unknown type {other:?}"))),
        };
        if let Some(kind) = kind {
            let amount = m
                .amount
                .as_deref()
                .map(|a| parse_money("amount")(a).map(|m| m.to_string()))
                .transpose()?;
            return Ok(Inbound::Event(OrderEvent {
                platform,
                platform_order_id: o.id,
                kind,
                dedupe_ref: m.event_id,
                detail: json!({
                    "reason": text("reason", m.reason)?,
                    "refund_id": text("refund_id", m.refund_id)?,
                    "amount": amount,
                }),
            }));
        }
        let store = o
            .store_id
            .filter(|s| id_ok(s))
            .ok_or_else(|| bad("order.store_id is required"))?;
        if o.items.is_empty() || o.items.len() > 100 {
            return Err(bad("order.items: 1-100 items"));
        }
        let items = o
            .items
            .into_iter()
            .enumerate()
            .map(|(n, i)| {
                if !id_ok(&i.sku) || !(1..=100_000).contains(&i.quantity) {
                    return Err(bad(format!("order.items[{n}]: sku and quantity 1-100000")));
                }
                Ok(PlatformItem {
                    name: text("name", i.name)?,
                    platform_sku: i.sku,
                    quantity: i.quantity,
                    price_fen: fen(&format!("order.items[{n}].price"), Some(&i.price))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let discounts = o
            .discounts
            .into_iter()
            .take(100)
            .map(|d| {
                Ok(Discount {
                    name: text("discount name", d.name)?,
                    amount_fen: fen("discount amount", Some(&d.amount))?,
                })
            })
            .collect::<Result<Vec<_>, Refusal>>()?;
        let r = o.recipient.unwrap_or_default();
        if o.day_seq.is_some_and(|d| !(0..=1_000_000).contains(&d)) {
            return Err(bad("order.day_seq out of range"));
        }
        Ok(Inbound::NewOrder(PlatformOrder {
            platform,
            platform_order_id: o.id,
            platform_store_id: store,
            dedupe_ref: m.event_id,
            day_seq: o.day_seq,
            note: text("note", o.note)?,
            recipient_name: text("recipient.name", r.name)?,
            recipient_phone: text("recipient.phone", r.phone)?,
            recipient_address: text("recipient.address", r.address)?,
            shipping_fee_fen: fen("shipping_fee", o.shipping_fee.as_deref())?,
            paid_fen: fen("total", o.total.as_deref())?,
            original_fen: fen("original_total", o.original_total.as_deref())?,
            store_receives_fen: fen("store_receives", o.store_receives.as_deref())?,
            items,
            discounts,
        }))
    }

    /// A webhook platform receives no calls.
    fn order_call(&self, _platform_order_id: &str, _action: &OrderAction<'_>) -> Option<Call> {
        None
    }

    fn item_calls(&self, _: &ItemCode, _: &CatalogItem, _: ItemSync, _: i64) -> Vec<ItemCall> {
        Vec::new()
    }
}
