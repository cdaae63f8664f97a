//! The canonical order model shared by every channel and every surface.
//!
//! Values here are parsed once at the edge and cannot hold invalid data: a
//! [`Money`] is whole fen, a [`Quantity`] is whole thousandths of its unit, a
//! [`Sku`] or [`StoreId`] has been checked. No floating point is used anywhere.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Largest amount accepted from outside: 100 million yuan.
const MAX_FEN: i64 = 10_000_000_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_fen(fen: i64) -> Self {
        Money(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// Parses a non-negative amount with at most two decimals.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| ParseError::new("invalid_money", format!("{why}: {s:?}"));
        let d = Decimal::from_str_exact(s.trim()).map_err(|_| bad("not a decimal amount"))?;
        Self::from_decimal(d).map_err(|e| bad(&e))
    }

    pub fn from_decimal(d: Decimal) -> Result<Self, String> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err("amount must not be negative".into());
        }
        if d.normalize().scale() > 2 {
            return Err("amount has more than 2 decimals".into());
        }
        let fen = (d * Decimal::ONE_HUNDRED)
            .trunc()
            .mantissa_i64()
            .filter(|f| *f <= MAX_FEN)
            .ok_or_else(|| "amount too large".to_string())?;
        Ok(Money(fen))
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

trait MantissaI64 {
    fn mantissa_i64(self) -> Option<i64>;
}

impl MantissaI64 for Decimal {
    fn mantissa_i64(self) -> Option<i64> {
        // `self` is already an integer here (trunc), so scale it away.
        let mut d = self;
        d.rescale(0);
        i64::try_from(d.mantissa()).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal())
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

/// Largest quantity accepted on one line: 100,000 pieces or 100 t.
const MAX_MILLI: i64 = 100_000_000;

impl Quantity {
    /// Parses an order-line quantity: pieces are a positive integer; kg has at
    /// most three decimals and is greater than zero.
    pub fn parse(unit: Unit, s: &str) -> Result<Self, ParseError> {
        let bad = |why: String| ParseError::new("invalid_quantity", why);
        let d = Decimal::from_str_exact(s.trim())
            .map_err(|_| bad(format!("quantity {s:?} is not a decimal number")))?;
        if d <= Decimal::ZERO {
            return Err(bad(format!(
                "quantity must be greater than zero, got {s:?}"
            )));
        }
        let scale = d.normalize().scale();
        match unit {
            Unit::Piece if scale > 0 => {
                return Err(bad(format!(
                    "items sold by the piece need a whole number, got {s:?}"
                )));
            }
            Unit::Kg if scale > 3 => {
                return Err(bad(format!(
                    "weights have at most 3 decimals (grams), got {s:?}"
                )));
            }
            _ => {}
        }
        let milli = d * Decimal::ONE_THOUSAND;
        let milli = milli
            .mantissa_i64()
            .filter(|m| *m <= MAX_MILLI)
            .ok_or_else(|| bad(format!("quantity {s:?} is too large")))?;
        Ok(Quantity { unit, milli })
    }

    /// Parses a stock count: like [`Quantity::parse`] but zero is allowed.
    pub fn parse_stock(unit: Unit, s: &str) -> Result<Self, ParseError> {
        let trimmed = s.trim();
        if Decimal::from_str_exact(trimmed).is_ok_and(|d| d.is_zero()) {
            return Ok(Quantity { unit, milli: 0 });
        }
        Self::parse(unit, s).map_err(|mut e| {
            e.message = e.message.replace("greater than zero", "zero or more");
            e
        })
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

    pub fn to_decimal(self) -> Decimal {
        let d = Decimal::new(self.milli, 3);
        match self.unit {
            Unit::Piece => d.normalize(),
            Unit::Kg => d,
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Price of `quantity` at `unit_price` per unit, rounded half-up to the fen.
pub fn line_total(unit_price: Money, quantity: Quantity) -> Option<Money> {
    let product = i128::from(unit_price.fen()) * i128::from(quantity.milli());
    let fen = (product + 500) / 1000;
    i64::try_from(fen).ok().map(Money::from_fen)
}

// --------------------------------------------------------------------- channel

/// Where an order came from. The aggregated queue is not a channel: it is the
/// union of every channel's orders of a store.
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
        [
            PaymentStatus::Unpaid,
            PaymentStatus::Pending,
            PaymentStatus::Paid,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            ParseError::new(
                "invalid_payment_status",
                format!("unknown payment status {s:?}"),
            )
        })
    }
}

// ------------------------------------------------------------------ wire views

/// One line of an order as every surface shows it.
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
}

/// One product as a store sells it, as every surface shows it.
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn identifiers_refuse_odd_characters() {
        assert!(Sku::parse("DUCK-NECK_1.5").is_ok());
        for s in ["", "a b", "鸭", "x/y", &"a".repeat(65)] {
            assert!(Sku::parse(s).is_err(), "{s}");
        }
    }
}
