//! Delivery platforms, each one module behind one trait, [`Platform`]: what
//! its pushes mean (verify and decode, no I/O) and which calls tell it about
//! a store's action or a changed item. `meituan` (signed form pushes, the
//! platform's API and its client) and `webhook` (HMAC-signed JSON from other
//! aggregators, which receive no calls) implement it.
//!
//! The registry ([`find`]) is how the outbox and the channels reach a
//! platform by the name an order or a mapping carries; neither knows any
//! platform itself. This module knows no use case: the channels (what a
//! push does) and the outbox (queue and dispatcher) import it, never the
//! other way round.

pub mod meituan;
pub mod webhook;

use std::collections::BTreeMap;

use ::http::{HeaderMap, StatusCode};
use futures::future::BoxFuture;
use proto::order::{CatalogItem, OrderStatus, Sku, StoreId};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::error::{Code, Result};

pub use meituan::MEITUAN;

// ------------------------------------------------------------ the trait

/// One delivery platform's wire knowledge.
pub trait Platform: Send + Sync {
    /// What kind of platform this is (`meituan`, `webhook`); a webhook
    /// platform's own name is the one it is configured and pushes under.
    fn kind(&self) -> &'static str;

    /// Checks a push's authenticity and freshness with this gateway's
    /// `credentials`, then says what it means. Pure: no I/O.
    fn decode(
        &self,
        credentials: &Credentials<'_>,
        push: &RawPush<'_>,
    ) -> std::result::Result<Inbound, Refusal>;

    /// The call that tells the platform about a store's action on one of its
    /// orders, if it wants to hear about it.
    fn order_call(&self, platform_order_id: &str, action: &OrderAction<'_>) -> Option<Call>;

    /// The calls that tell the platform about a changed item sold under
    /// `code` (none if it takes no item calls).
    fn item_calls(
        &self,
        code: &ItemCode,
        item: &CatalogItem,
        what: ItemSync,
        now: i64,
    ) -> Vec<ItemCall>;
}

/// The platforms known by their own name. Every other well-formed name is
/// a generic webhook platform (configured by its secret).
const NAMED: &[(&str, &dyn Platform)] = &[(MEITUAN, &meituan::Meituan)];

/// The platform an order, a mapping or a push names.
pub fn find(platform: &str) -> Option<&'static dyn Platform> {
    match NAMED.iter().find(|(name, _)| *name == platform) {
        Some((_, p)) => Some(*p),
        None if name_ok(platform) => Some(&webhook::Webhook),
        None => None,
    }
}

/// A platform name: 1-32 of `a-z`, `0-9`, `-`, `_`.
pub fn name_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 32
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

// ------------------------------------------------------------ inbound

/// What this gateway is to a platform, to check its pushes with.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The id the platform knows us by, if it has one (Meituan's `app_id`).
    pub app_id: Option<&'a str>,
    pub secret: &'a str,
    /// How far a push's timestamp may be from now, either way (seconds).
    pub window_s: i64,
}

/// A push as it arrived, before anything is believed.
pub struct RawPush<'a> {
    /// The last path segment (`/channels/meituan/{event}`,
    /// `/channels/webhook/{platform}`).
    pub segment: &'a str,
    pub headers: &'a HeaderMap,
    /// URLs this request may have been sent to (the configured public URL,
    /// then what a trusted proxy says).
    pub urls: Vec<String>,
    pub body: &'a [u8],
    pub now_s: i64,
}

/// Why a push was refused; nothing was written.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Stable code, e.g. [`Code::BadSignature`].
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status the push is answered with: the code's own.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// A platform's answer to a push, whatever carries it: status, content
/// type and body, exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// What a push means, whatever platform sent it.
#[derive(Debug, Clone)]
pub enum Inbound {
    NewOrder(PlatformOrder),
    Event(OrderEvent),
}

impl Inbound {
    pub fn platform_order_id(&self) -> &str {
        match self {
            Inbound::NewOrder(o) => &o.platform_order_id,
            Inbound::Event(e) => &e.platform_order_id,
        }
    }
}

/// A platform's order, in our terms (money in fen).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformOrder {
    pub platform: String,
    pub platform_order_id: String,
    pub platform_store_id: String,
    /// De-duplication reference of the push (its event id, or the order id).
    pub dedupe_ref: String,
    pub day_seq: Option<i64>,
    pub note: String,
    pub recipient_name: String,
    pub recipient_phone: String,
    pub recipient_address: String,
    pub shipping_fee_fen: i64,
    /// What the customer paid.
    pub paid_fen: i64,
    /// Before discounts.
    pub original_fen: i64,
    /// What the store receives after the platform's cut.
    pub store_receives_fen: i64,
    pub items: Vec<PlatformItem>,
    pub discounts: Vec<Discount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformItem {
    /// The platform's item code; mapped to our SKU.
    pub platform_sku: String,
    pub name: String,
    /// How many of the platform's items.
    pub quantity: i64,
    /// Price of one, fen.
    pub price_fen: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discount {
    pub name: String,
    pub amount_fen: i64,
}

/// Something that happened to a platform order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Cancel,
    RefundApply,
    RefundCancel,
    DeliveryStatus,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Cancel => "cancel",
            EventKind::RefundApply => "refund_apply",
            EventKind::RefundCancel => "refund_cancel",
            EventKind::DeliveryStatus => "delivery_status",
        }
    }

    /// The feed event it becomes (a cancel is a status change instead).
    pub fn feed_kind(self) -> &'static str {
        match self {
            EventKind::Cancel => "order.status_changed",
            EventKind::RefundApply => "order.refund_requested",
            EventKind::RefundCancel => "order.refund_cancelled",
            EventKind::DeliveryStatus => "order.delivery_status",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderEvent {
    pub platform: String,
    pub platform_order_id: String,
    pub kind: EventKind,
    /// Equal for duplicates of the same push.
    pub dedupe_ref: String,
    /// What the platform said (reason, refund id, amount, courier…), shown
    /// in the feed event.
    pub detail: serde_json::Value,
}

// ------------------------------------------------------------ outbound

/// Business parameters of one platform call (the platform's client adds
/// its own authentication when sending).
pub type Params = BTreeMap<String, String>;

/// One call of a platform's API: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: String,
    pub params: Params,
}

/// A store's action on a platform order, as the platform may hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction<'a> {
    /// The order's status changed (accepted, rejected, cancelled, ready…).
    Status {
        to: OrderStatus,
        reason: Option<&'a str>,
    },
    /// Self-delivery: the store's courier left.
    Delivering,
    /// Self-delivery: it arrived.
    Arrived,
    RefundAgree {
        reason: &'a str,
    },
    RefundReject {
        reason: &'a str,
    },
}

/// What changed about a store item.
#[derive(Debug, Clone, Copy)]
pub struct ItemSync {
    pub stock: bool,
    pub status: bool,
}

/// Where a platform sells one of our store's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCode {
    pub platform_store: String,
    pub platform_sku: String,
    /// How much of our SKU one platform item is (thousandths).
    pub per_item_milli: i64,
}

/// A call about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCall {
    pub call: Call,
    /// Sent at this time (µs) instead of at once: the end of a snooze. It
    /// goes under a key of its own, so a later change can take its place.
    pub at_snooze_end: Option<i64>,
}

/// The platforms a store is registered with that take item calls, and the
/// codes `sku` is sold under there (by default, the platform's code is our
/// SKU), in the caller's transaction.
pub async fn item_codes(
    conn: &mut AnyConnection,
    store: &StoreId,
    sku: &Sku,
) -> Result<Vec<(&'static str, ItemCode)>> {
    let mut out = Vec::new();
    for (name, _) in NAMED {
        let rows = sqlx::query(
            "SELECT platform, platform_store_id FROM channel_stores WHERE store_id = $1 AND platform = $2",
        )
        .bind(store.as_str().to_owned())
        .bind(*name)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let platform: String = r.get("platform");
            let pstore: String = r.get("platform_store_id");
            let mapped = sqlx::query(
                "SELECT platform_sku, per_item_milli FROM sku_mappings
                 WHERE platform = $1 AND sku = $2 AND store_id IN ('', $3) ORDER BY platform_sku",
            )
            .bind(platform)
            .bind(sku.as_str().to_owned())
            .bind(store.as_str().to_owned())
            .fetch_all(&mut *conn)
            .await?;
            let mut codes: Vec<(String, i64)> = mapped
                .iter()
                .map(|m| (m.get("platform_sku"), m.get("per_item_milli")))
                .collect();
            if codes.is_empty() {
                codes.push((sku.to_string(), 1000));
            }
            out.extend(codes.into_iter().map(|(psku, per_item)| {
                (
                    *name,
                    ItemCode {
                        platform_store: pstore.clone(),
                        platform_sku: psku,
                        per_item_milli: per_item,
                    },
                )
            }));
        }
    }
    Ok(out)
}

/// How a platform call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Worth trying again later (network, timeout, 5xx).
    Retry(String),
    /// The platform refused it for good (e.g. `{"data":"ng"}`).
    Refused(String),
}

/// Sends calls to one platform (its API client).
pub trait Sender: Send + Sync {
    fn send<'a>(&'a self, path: &'a str, params: &'a Params) -> BoxFuture<'a, Delivery>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_finds_meituan_by_name_and_any_other_name_is_a_webhook() {
        assert_eq!(find(MEITUAN).map(|p| p.kind()), Some("meituan"));
        assert_eq!(find("ele-me_2").map(|p| p.kind()), Some("webhook"));
        assert!(find("Ele").is_none());
        assert!(find("").is_none());
        let accept = OrderAction::Status {
            to: OrderStatus::Accepted,
            reason: None,
        };
        assert!(find("aggr").unwrap().order_call("99", &accept).is_none());
        assert!(find(MEITUAN).unwrap().order_call("99", &accept).is_some());
    }

    #[test]
    fn platform_names() {
        assert!(name_ok("ele-me_2"));
        assert!(!name_ok("Ele"));
        assert!(!name_ok(""));
        assert!(!name_ok(&"a".repeat(33)));
    }
}
