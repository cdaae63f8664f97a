//! The canonical order model shared by every channel and every surface.
//!
//! Values here are parsed once at the edge and cannot hold invalid data: a
//! [`Money`] is whole fen, a [`Quantity`] is whole thousandths of its unit, a
//! [`Sku`] or [`StoreId`] has been checked. No floating point is used anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::number::{self, NumberError};

/// Why a value from outside was refused; `code` is the stable machine code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The only currency the chain trades in.
pub const CURRENCY: &str = "CNY";

// ---------------------------------------------------------------- barcodes

/// At most this many barcodes per product.
pub const MAX_BARCODES: usize = 8;

/// An EAN-13 or EAN-8 barcode whose check digit is right.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Barcode(String);

impl Barcode {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let digits = s.bytes().all(|b| b.is_ascii_digit());
        if !digits || !(s.len() == 8 || s.len() == 13) {
            return Err(ParseError::new(
                "invalid_barcode",
                format!(
                    "barcode must be 8 or 13 digits (EAN-8 or EAN-13), got {}",
                    shown(s)
                ),
            ));
        }
        // The scanner's own EAN check (weights 3,1,3,… from the right).
        if !crate::device::scanner::check_digit_ok(s) {
            return Err(ParseError::new(
                "invalid_barcode",
                format!("barcode {s}: wrong check digit"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A product's barcodes: each valid, none repeated, at most [`MAX_BARCODES`].
    pub fn parse_list<'a>(
        list: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Self>, ParseError> {
        let mut out: Vec<Self> = Vec::new();
        for s in list {
            if out.len() == MAX_BARCODES {
                return Err(ParseError::new(
                    "too_many_barcodes",
                    format!("a product has at most {MAX_BARCODES} barcodes"),
                ));
            }
            let b = Self::parse(s)?;
            if out.contains(&b) {
                return Err(ParseError::new(
                    "invalid_barcode",
                    format!("barcode {b} is given twice"),
                ));
            }
            out.push(b);
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Barcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- identifiers

fn parse_ident(kind: &'static str, code: &'static str, s: &str) -> Result<String, ParseError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ParseError::new(
            code,
            format!("{kind} must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.', got {s:?}"),
        ))
    }
}

macro_rules! ident {
    ($(#[$m:meta])* $name:ident, $kind:literal, $code:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                parse_ident($kind, $code, s).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

ident!(
    /// A stock-keeping unit, e.g. `COLA` or `DUCK-NECK`.
    Sku, "sku", "invalid_sku"
);
ident!(
    /// A store of the chain, e.g. `S001`.
    StoreId, "store id", "invalid_store"
);
ident!(
    /// A counter terminal, e.g. `S001-T01`.
    TerminalId, "terminal id", "invalid_terminal"
);

// ---------------------------------------------------------------------- money

/// An amount of CNY in whole fen (1/100 yuan). Written as a decimal string
/// with two places (`"35.80"`) on every wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Largest amount accepted from outside, and the largest sum the gateway
/// forms: 100 million yuan.
pub const MAX_FEN: i64 = 10_000_000_000;

impl Money {
    pub const ZERO: Money = Money(0);
    pub const MAX: Money = Money(MAX_FEN);

    pub const fn from_fen(fen: i64) -> Self {
        Money(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// Parses a non-negative amount in yuan with at most two decimals, at
    /// most [`MAX_FEN`], in the grammar of [`crate::number`].
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        number::parse_scaled(s, 2, MAX_FEN)
            .map(Money)
            .map_err(|e| ParseError::new("invalid_money", format!("amount {}: {e}", shown(s))))
    }

    /// The sum, if it stays within [`MAX_FEN`]: every total the gateway
    /// shows must be one its own surfaces would read back.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0
            .checked_add(other.0)
            .filter(|f| *f <= MAX_FEN)
            .map(Money)
    }
}

/// A refused value as the error message quotes it: long input is cut.
fn shown(s: &str) -> String {
    const KEEP: usize = number::MAX_LEN;
    match s.char_indices().nth(KEEP) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&number::format_scaled(self.0, 2, 2))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Money::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------ unit & quantity

/// How a product is sold.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Piece,
    Kg,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Piece => "piece",
            Unit::Kg => "kg",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "piece" => Ok(Unit::Piece),
            "kg" => Ok(Unit::Kg),
            _ => Err(ParseError::new(
                "invalid_unit",
                format!("unit must be \"piece\" or \"kg\", got {s:?}"),
            )),
        }
    }
}

/// A quantity in thousandths of its unit: pieces × 1000, or grams.
///
/// Stock and reservations are kept in the same thousandths, so pieces and
/// weights share one column and one arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity {
    unit: Unit,
    milli: i64,
}

/// Largest quantity accepted on one line or as a stock count: 100,000
/// pieces or 100 t.
pub const MAX_MILLI: i64 = 100_000_000;

impl Quantity {
    /// Parses an order-line quantity, greater than zero: kg with at most three
    /// decimals; pieces a whole number (`"2"`, or `"2.000"` written in
    /// thousandths), at most [`MAX_MILLI`], in the grammar of
    /// [`crate::number`].
    pub fn parse(unit: Unit, s: &str) -> Result<Self, ParseError> {
        let q = Self::parse_stock(unit, s)?;
        if q.milli == 0 {
            return Err(ParseError::new(
                "invalid_quantity",
                format!("quantity must be greater than zero, got {}", shown(s)),
            ));
        }
        Ok(q)
    }

    /// Parses a stock count: like [`Quantity::parse`] but zero is allowed.
    pub fn parse_stock(unit: Unit, s: &str) -> Result<Self, ParseError> {
        let bad = |why: String| ParseError::new("invalid_quantity", why);
        let milli = number::parse_scaled(s, 3, MAX_MILLI).map_err(|e| match e {
            NumberError::TooPrecise(_) if unit == Unit::Piece => bad(format!(
                "items sold by the piece need a whole number, got {}",
                shown(s)
            )),
            NumberError::TooPrecise(_) => bad(format!(
                "weights have at most 3 decimals (grams), got {}",
                shown(s)
            )),
            e => bad(format!("quantity {}: {e}", shown(s))),
        })?;
        if unit == Unit::Piece && milli % 1000 != 0 {
            return Err(bad(format!(
                "items sold by the piece need a whole number, got {}",
                shown(s)
            )));
        }
        Ok(Quantity { unit, milli })
    }

    pub fn from_milli(unit: Unit, milli: i64) -> Self {
        Quantity { unit, milli }
    }

    pub fn unit(self) -> Unit {
        self.unit
    }

    pub fn milli(self) -> i64 {
        self.milli
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pieces drop zero decimals (`2`); weights always show grams (`12.500`).
        let places = match self.unit {
            Unit::Piece => 0,
            Unit::Kg => 3,
        };
        f.write_str(&number::format_scaled(self.milli, 3, places))
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Price of `quantity` at `unit_price` per unit, rounded half-up to the fen;
/// `None` when negative or above [`MAX_FEN`].
pub fn line_total(unit_price: Money, quantity: Quantity) -> Option<Money> {
    // Both factors fit i64, so their product fits i128.
    let product = i128::from(unit_price.fen()) * i128::from(quantity.milli());
    let fen = (product + 500).div_euclid(1000);
    i64::try_from(fen)
        .ok()
        .filter(|f| (0..=MAX_FEN).contains(f))
        .map(Money::from_fen)
}

/// The price per unit of something that cost `total` for `quantity`, rounded
/// half-up to the fen; `None` for a quantity that is not positive, or a price
/// above [`MAX_FEN`].
pub fn unit_price(total: Money, quantity: Quantity) -> Option<Money> {
    let q = i128::from(quantity.milli());
    if q <= 0 {
        return None;
    }
    let fen = (i128::from(total.fen()) * 1000 + q / 2).div_euclid(q);
    i64::try_from(fen)
        .ok()
        .filter(|f| (0..=MAX_FEN).contains(f))
        .map(Money::from_fen)
}

/// The share of `total` that `part` of `whole` is worth, rounded half-up to
/// the fen (what a refund of part of a line gives back); `None` when `whole`
/// is not positive, `part` is negative or more than `whole`.
pub fn share(total: Money, part: Quantity, whole: Quantity) -> Option<Money> {
    let (p, w) = (i128::from(part.milli()), i128::from(whole.milli()));
    if w <= 0 || p < 0 || p > w {
        return None;
    }
    let fen = (i128::from(total.fen()) * p + w / 2).div_euclid(w);
    i64::try_from(fen).ok().map(Money::from_fen)
}

// --------------------------------------------------------------------- channel

/// Where an order came from. The aggregated queue is not a channel: it is the
/// union of every channel's orders of a store.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The in-store counter terminal.
    Terminal,
    /// A delivery platform; the order also names the platform.
    ThirdParty,
    /// The brand's own app or mini-program.
    Official,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Terminal => "terminal",
            Channel::ThirdParty => "third_party",
            Channel::Official => "official",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "terminal" => Ok(Channel::Terminal),
            "third_party" => Ok(Channel::ThirdParty),
            "official" => Ok(Channel::Official),
            _ => Err(ParseError::new(
                "invalid_channel",
                format!("channel must be terminal, third_party or official, got {s:?}"),
            )),
        }
    }
}

// ---------------------------------------------------------------- state machine

/// The fulfilment status of an order, the same for every channel.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Accepted,
    Ready,
    Completed,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Created,
        OrderStatus::Accepted,
        OrderStatus::Ready,
        OrderStatus::Completed,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                ParseError::new(
                    "invalid_status",
                    format!(
                        "status must be one of created, accepted, ready, completed, rejected, cancelled; got {s:?}"
                    ),
                )
            })
    }

    /// No further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Completed | OrderStatus::Rejected | OrderStatus::Cancelled
        )
    }
}

/// What a store (or customer) does to an order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    Accept,
    Reject,
    Ready,
    Complete,
    Cancel,
}

impl OrderAction {
    pub const ALL: [OrderAction; 5] = [
        OrderAction::Accept,
        OrderAction::Reject,
        OrderAction::Ready,
        OrderAction::Complete,
        OrderAction::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::Accept => "accept",
            OrderAction::Reject => "reject",
            OrderAction::Ready => "ready",
            OrderAction::Complete => "complete",
            OrderAction::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                ParseError::new(
                    "invalid_action",
                    format!("action must be accept, reject, ready, complete or cancel; got {s:?}"),
                )
            })
    }

    /// Reject and cancel must say why.
    pub fn needs_reason(self) -> bool {
        matches!(self, OrderAction::Reject | OrderAction::Cancel)
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} an order that is {}", action.as_str(), from.as_str())]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub action: OrderAction,
}

/// The one place the order state machine lives:
/// `created → accepted → ready → completed`, `created|accepted → rejected|cancelled`.
pub fn transition(
    from: OrderStatus,
    action: OrderAction,
) -> Result<OrderStatus, IllegalTransition> {
    use OrderAction as A;
    use OrderStatus as S;
    let to = match (from, action) {
        (S::Created, A::Accept) => S::Accepted,
        (S::Accepted, A::Ready) => S::Ready,
        (S::Ready, A::Complete) => S::Completed,
        (S::Created | S::Accepted, A::Reject) => S::Rejected,
        (S::Created | S::Accepted, A::Cancel) => S::Cancelled,
        _ => return Err(IllegalTransition { from, action }),
    };
    Ok(to)
}

/// Payment state, kept apart from fulfilment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    Pending,
    Paid,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Paid => "paid",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                ParseError::new(
                    "invalid_payment_status",
                    format!("unknown payment status {s:?}"),
                )
            })
    }

    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Unpaid,
        PaymentStatus::Pending,
        PaymentStatus::Paid,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];
}

/// What changes an order's payment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// A charge of a payment code starts.
    ChargeStarted,
    /// The running charge succeeded.
    ChargeSucceeded,
    /// The running charge failed or was reversed: the order is payable again.
    ChargeEnded,
    /// A refund succeeded; `all` when everything the charge took is back.
    RefundSucceeded { all: bool },
    /// The store agreed to a delivery platform's refund request (again, if
    /// the customer asked again).
    PlatformRefundAgreed,
    /// The counter took the order's total in cash.
    CashTendered,
}

impl PaymentEvent {
    pub const ALL: [PaymentEvent; 7] = [
        PaymentEvent::ChargeStarted,
        PaymentEvent::ChargeSucceeded,
        PaymentEvent::ChargeEnded,
        PaymentEvent::RefundSucceeded { all: false },
        PaymentEvent::RefundSucceeded { all: true },
        PaymentEvent::PlatformRefundAgreed,
        PaymentEvent::CashTendered,
    ];
}

/// A payment status change the table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payment status {} cannot take {event:?}", from.as_str())]
pub struct IllegalPaymentTransition {
    pub from: PaymentStatus,
    pub event: PaymentEvent,
}

/// The one place the payment status machine lives:
/// `unpaid → pending → paid | unpaid` (and `unpaid → paid` when a charge
/// succeeds that the order did not show pending), `paid | partially_refunded →
/// partially_refunded | refunded` (a refund), `paid | refunded → refunded`
/// (a platform refund agreed), `unpaid → paid` (cash at the counter). An
/// order starts `unpaid`, or `paid` when it
/// was paid before it reached the gateway (prepaid, third-party).
pub fn payment_transition(
    from: PaymentStatus,
    event: PaymentEvent,
) -> Result<PaymentStatus, IllegalPaymentTransition> {
    use PaymentEvent as E;
    use PaymentStatus as S;
    let to = match (from, event) {
        (S::Unpaid, E::ChargeStarted) => S::Pending,
        // A charge is the truth about money taken: one the sweeper finds paid
        // is paid even if its order never showed `pending` (a charge row
        // without its status change, as a crash test leaves it).
        (S::Pending | S::Unpaid, E::ChargeSucceeded) => S::Paid,
        (S::Pending, E::ChargeEnded) => S::Unpaid,
        (S::Paid | S::PartiallyRefunded, E::RefundSucceeded { all: false }) => S::PartiallyRefunded,
        (S::Paid | S::PartiallyRefunded, E::RefundSucceeded { all: true }) => S::Refunded,
        (S::Paid | S::Refunded, E::PlatformRefundAgreed) => S::Refunded,
        (S::Unpaid, E::CashTendered) => S::Paid,
        _ => return Err(IllegalPaymentTransition { from, event }),
    };
    Ok(to)
}

// ------------------------------------------------------------------ wire views

/// One line of an order as every surface shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub name: String,
    pub unit: Unit,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// One entry of an order's append-only status history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// RFC 3339 time of the change.
    pub at: String,
    /// Who made it: `api-key:<id>`, `terminal:<id>`, `platform:<name>`, `system`.
    pub by: String,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub reason: Option<String>,
}

/// An order as every surface shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: String,
    pub store_id: StoreId,
    pub channel: Channel,
    /// The delivery platform's name, for `third_party` orders.
    pub platform: Option<String>,
    /// The channel's own id of this order, where it has one.
    pub channel_order_id: Option<String>,
    /// The number staff read aloud: 1, 2, 3… per store, restarting each local day.
    pub display_no: i64,
    /// The local business day (Asia/Shanghai) `display_no` belongs to.
    pub business_day: String,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub currency: &'static str,
    pub note: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Position of this order's last change in its store's event feed.
    pub seq: i64,
    pub history: Vec<StatusChange>,
    /// What the store must look at before accepting: e.g. `unmapped_items`,
    /// `short_stock`, `unavailable_items` on a delivery platform's order.
    /// Absent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<String>,
    /// When the counter sold it (RFC 3339, as the terminal sent it), for a
    /// sale uploaded after it happened; `created_at` is when it reached the
    /// gateway. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sold_at: Option<String>,
}

/// One product as a store sells it, as every surface shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogItem {
    pub sku: Sku,
    pub name: String,
    pub unit: Unit,
    /// What this store charges per unit (its override, else the list price).
    pub price: Money,
    pub list_price: Money,
    pub on_hand: Quantity,
    pub reserved: Quantity,
    /// On hand less reserved, never below zero.
    pub sellable: Quantity,
    /// Orderable now: listed, not snoozed, something sellable.
    pub available: bool,
    pub listed: bool,
    /// RFC 3339 end of a snooze still in force.
    pub snoozed_until: Option<String>,
    /// EAN-13/EAN-8 codes printed on the product, at most [`MAX_BARCODES`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub barcodes: Vec<Barcode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcodes_need_the_right_check_digit() {
        assert!(Barcode::parse("4006381333931").is_ok());
        assert!(Barcode::parse("96385074").is_ok());
        assert_eq!(
            Barcode::parse("4006381333932").unwrap_err().code,
            "invalid_barcode"
        );
        for bad in [
            "",
            "123",
            "400638133393x",
            "40063813339311",
            "９６３８５０７４",
        ] {
            assert!(Barcode::parse(bad).is_err(), "{bad}");
        }
        let nine = ["96385074"; 9];
        assert!(Barcode::parse_list(nine).is_err());
        let many: Vec<String> = (0..9).map(|i| format!("0000000{i}")).collect();
        let err = Barcode::parse_list(many.iter().map(String::as_str)).unwrap_err();
        assert!(err.code == "too_many_barcodes" || err.code == "invalid_barcode");
    }

    #[test]
    fn weight_times_price_rounds_half_up_to_the_fen() {
        let cases = [
            ("0.355", "39.90", "14.16"), // 14.1645
            ("0.5", "0.01", "0.01"),     // 0.005 → 0.01
            ("0.499", "0.01", "0.00"),   // 0.00499
            ("1.000", "39.90", "39.90"),
            ("2.125", "12.34", "26.22"), // 26.2225
            ("0.001", "0.50", "0.00"),   // 0.0005 → 0.00? 0.05 fen → 0
            ("0.010", "0.50", "0.01"),   // 0.5 fen → 1 fen
        ];
        for (q, p, want) in cases {
            let q = Quantity::parse(Unit::Kg, q).unwrap();
            let p = Money::parse(p).unwrap();
            assert_eq!(line_total(p, q).unwrap().to_string(), want, "{q} × {p}");
        }
        let two = Quantity::parse(Unit::Piece, "2").unwrap();
        assert_eq!(
            line_total(Money::parse("3.50").unwrap(), two)
                .unwrap()
                .to_string(),
            "7.00"
        );
    }

    #[test]
    fn quantities_are_checked_per_unit() {
        let bad = [
            (Unit::Piece, "0"),
            (Unit::Piece, "-1"),
            (Unit::Piece, "1.5"),
            (Unit::Piece, "abc"),
            (Unit::Piece, ""),
            (Unit::Kg, "0"),
            (Unit::Kg, "0.0001"),
            (Unit::Kg, "-0.5"),
            (Unit::Kg, "1e3"),
            (Unit::Kg, "999999999"),
        ];
        for (u, s) in bad {
            let e = Quantity::parse(u, s).unwrap_err();
            assert_eq!(e.code, "invalid_quantity", "{u:?} {s:?}");
        }
        assert_eq!(Quantity::parse(Unit::Piece, "2.000").unwrap().milli(), 2000);
        assert_eq!(Quantity::parse(Unit::Kg, "0.355").unwrap().milli(), 355);
        assert_eq!(
            Quantity::parse(Unit::Kg, "0.355").unwrap().to_string(),
            "0.355"
        );
        assert_eq!(Quantity::parse(Unit::Piece, "2").unwrap().to_string(), "2");
        assert_eq!(Quantity::parse_stock(Unit::Kg, "0").unwrap().milli(), 0);
        assert_eq!(
            Quantity::parse_stock(Unit::Kg, "12.500")
                .unwrap()
                .to_string(),
            "12.500"
        );
    }

    #[test]
    fn money_parses_two_decimals_only() {
        assert_eq!(Money::parse("39.90").unwrap().fen(), 3990);
        assert_eq!(Money::parse("39.9").unwrap().to_string(), "39.90");
        assert_eq!(Money::parse("0").unwrap().to_string(), "0.00");
        for s in ["-1.00", "1.001", "x", "", "1e2", "99999999999"] {
            assert_eq!(Money::parse(s).unwrap_err().code, "invalid_money", "{s}");
        }
    }

    #[test]
    fn hostile_numbers_are_refused_with_the_unit_code() {
        let huge = format!("1{}", "0".repeat(26));
        let fraction20 = format!("1.{}", "5".repeat(20));
        let digits10k = "9".repeat(10_000);
        let hostile = [
            huge.as_str(),
            "1e30",
            "1_0",
            "+2",
            "-1",
            "0.0001",
            fraction20.as_str(),
            digits10k.as_str(),
            " 2",
            "2 ",
            "1e300",
            "NaN",
            "9223372036854775807",
            "100001",
        ];
        for s in hostile {
            for u in [Unit::Piece, Unit::Kg] {
                let e = Quantity::parse(u, s).unwrap_err();
                assert_eq!(e.code, "invalid_quantity", "{u:?} {s:?}");
                assert!(e.message.len() < 200, "{}", e.message);
                assert_eq!(
                    Quantity::parse_stock(u, s).unwrap_err().code,
                    "invalid_quantity"
                );
            }
            if s != "100001" {
                assert_eq!(Money::parse(s).unwrap_err().code, "invalid_money", "{s:?}");
            }
        }
        assert_eq!(
            Quantity::parse(Unit::Piece, "100000").unwrap().milli(),
            MAX_MILLI
        );
        assert_eq!(
            Quantity::parse(Unit::Kg, "100000.000").unwrap().milli(),
            MAX_MILLI
        );
        assert!(Quantity::parse(Unit::Kg, "100000.001").is_err());
        assert_eq!(Money::parse("100000000.00").unwrap(), Money::MAX);
        assert!(Money::parse("100000000.01").is_err());
        assert_eq!(Money::MAX.checked_add(Money::from_fen(1)), None);
        assert_eq!(
            Money::from_fen(1).checked_add(Money::from_fen(2)),
            Some(Money::from_fen(3))
        );
    }

    #[test]
    fn a_share_rounds_half_up_and_never_exceeds_the_whole() {
        let q = |m| Quantity::from_milli(Unit::Piece, m);
        let m = Money::from_fen;
        // 1 of 3 of 1.00: 33.33… → 0.33; 2 of 3 → 66.67 → 0.67; 1 of 2 of 0.01 → 0.005 → 0.01.
        assert_eq!(share(m(100), q(1000), q(3000)), Some(m(33)));
        assert_eq!(share(m(100), q(2000), q(3000)), Some(m(67)));
        assert_eq!(share(m(1), q(1000), q(2000)), Some(m(1)));
        assert_eq!(share(m(100), q(3000), q(3000)), Some(m(100)));
        assert_eq!(
            share(m(MAX_FEN), q(MAX_MILLI), q(MAX_MILLI)),
            Some(m(MAX_FEN))
        );
        assert_eq!(share(m(100), q(0), q(3000)), Some(m(0)));
        assert_eq!(share(m(100), q(3001), q(3000)), None);
        assert_eq!(share(m(100), q(-1), q(3000)), None);
        assert_eq!(share(m(100), q(1), q(0)), None);
    }

    #[test]
    fn products_stay_within_the_maximum() {
        let q = |u, s| Quantity::parse(u, s).unwrap();
        let max_q = q(Unit::Kg, "100000");
        assert_eq!(line_total(Money::MAX, max_q), None);
        assert_eq!(
            line_total(Money::from_fen(100_000), max_q),
            Some(Money::MAX)
        );
        assert_eq!(line_total(Money::from_fen(i64::MAX), max_q), None);
        assert_eq!(line_total(Money::from_fen(-1), q(Unit::Kg, "1")), None);
        assert_eq!(
            unit_price(Money::parse("10.00").unwrap(), q(Unit::Kg, "0.250")),
            Some(Money::parse("40.00").unwrap())
        );
        assert_eq!(
            unit_price(Money::parse("10.00").unwrap(), q(Unit::Piece, "3")),
            Some(Money::parse("3.33").unwrap())
        );
        assert_eq!(
            unit_price(Money::parse("0.05").unwrap(), q(Unit::Piece, "10")),
            Some(Money::parse("0.01").unwrap()) // 0.5 fen → 1 fen
        );
        assert_eq!(unit_price(Money::MAX, q(Unit::Kg, "0.001")), None);
        assert_eq!(
            unit_price(Money::from_fen(1), Quantity::from_milli(Unit::Kg, 0)),
            None
        );
    }

    #[test]
    fn state_machine_allows_exactly_the_documented_transitions() {
        use OrderAction as A;
        use OrderStatus as S;
        let allowed = [
            (S::Created, A::Accept, S::Accepted),
            (S::Accepted, A::Ready, S::Ready),
            (S::Ready, A::Complete, S::Completed),
            (S::Created, A::Reject, S::Rejected),
            (S::Accepted, A::Reject, S::Rejected),
            (S::Created, A::Cancel, S::Cancelled),
            (S::Accepted, A::Cancel, S::Cancelled),
        ];
        for from in S::ALL {
            for action in A::ALL {
                let want = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                assert_eq!(transition(from, action).ok(), want, "{from:?} {action:?}");
            }
        }
    }

    #[test]
    fn payment_status_allows_exactly_the_documented_changes() {
        use PaymentEvent as E;
        use PaymentStatus as S;
        let allowed = [
            (S::Unpaid, E::ChargeStarted, S::Pending),
            (S::Pending, E::ChargeSucceeded, S::Paid),
            (S::Unpaid, E::ChargeSucceeded, S::Paid),
            (S::Pending, E::ChargeEnded, S::Unpaid),
            (
                S::Paid,
                E::RefundSucceeded { all: false },
                S::PartiallyRefunded,
            ),
            (S::Paid, E::RefundSucceeded { all: true }, S::Refunded),
            (
                S::PartiallyRefunded,
                E::RefundSucceeded { all: false },
                S::PartiallyRefunded,
            ),
            (
                S::PartiallyRefunded,
                E::RefundSucceeded { all: true },
                S::Refunded,
            ),
            (S::Paid, E::PlatformRefundAgreed, S::Refunded),
            (S::Refunded, E::PlatformRefundAgreed, S::Refunded),
            (S::Unpaid, E::CashTendered, S::Paid),
        ];
        for from in S::ALL {
            for event in E::ALL {
                let want = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    payment_transition(from, event).ok(),
                    want,
                    "{from:?} {event:?}"
                );
            }
        }
    }

    #[test]
    fn identifiers_refuse_odd_characters() {
        assert!(Sku::parse("DUCK-NECK_1.5").is_ok());
        for s in ["", "a b", "鸭", "x/y", &"a".repeat(65)] {
            assert!(Sku::parse(s).is_err(), "{s}");
        }
    }
}
