//! Payment-code charges and refunds: `PayOrder`, `GetPayment`,
//! `RefundOrder`. The views mirror the REST payment documents field for
//! field (money as two-decimal text, the payment code only masked).

use super::*;

wire_enum!(
    /// A charge's place in its state machine: `created` (recorded, the
    /// provider may not have seen it), `pending` (user paying or unknown),
    /// then one of the final states.
    ChargeState, "invalid_charge_state", {
        Created = "created",
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
        Reversed = "reversed",
    }
);

impl ChargeState {
    /// Succeeded, failed or reversed: it will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChargeState::Succeeded | ChargeState::Failed | ChargeState::Reversed
        )
    }
}

wire_enum!(
    /// A refund: `requested` (recorded, the provider has not accepted it
    /// yet), `processing` (accepted, the money is on its way), then
    /// `succeeded` (back with the customer) or `failed`.
    RefundState, "invalid_refund_state", {
        Requested = "requested",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

impl RefundState {
    /// Succeeded or failed: it will not change any more. Until then the
    /// money is not back with the customer.
    pub fn is_final(self) -> bool {
        matches!(self, RefundState::Succeeded | RefundState::Failed)
    }
}

/// Longest request id of a refund (as REST).
pub const MAX_REQUEST_ID: usize = 64;

/// Charges the order with the payment code the terminal scanned. Blocks
/// until the charge is final (up to the gateway's deadline and a reverse).
/// The order is the idempotency key: sent again while a charge is live, or
/// after it succeeded, the answer is that same charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOrder {
    pub order_id: String,
    /// The full scanned code: only ever sent to the gateway, never shown.
    pub auth_code: String,
}

impl Message for PayOrder {
    const ELEMENT: &'static str = "PayOrder";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.text("authCode", &self.auth_code);
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId", "authCode"])?;
        Ok(PayOrder {
            order_id: bounded("orderId", text(e, "orderId")?, 64)?,
            auth_code: bounded("authCode", text(e, "authCode")?, 64)?,
        })
    }
}

/// Every charge and refund of an order, and its payment status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPayment {
    pub order_id: String,
}

impl Message for GetPayment {
    const ELEMENT: &'static str = "GetPayment";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId"])?;
        Ok(GetPayment {
            order_id: bounded("orderId", text(e, "orderId")?, 64)?,
        })
    }
}

/// Longest refund reason (as an order note, and REST).
pub const MAX_REFUND_REASON: usize = 500;

/// Most lines one refund names (as many as an order can have).
pub const MAX_REFUND_LINES: usize = 100;

/// Refunds part or all of what the order paid: an `amount`, or order
/// `lines` (the amount is then their share of each line's total; if an
/// amount is given too it must match). `request_id` is the idempotency key:
/// the same id answers the same refund. `restock` puts the lines' goods
/// back into stock once refunded (completed orders only). Which
/// combinations are valid is the gateway's to say (as REST).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundOrder {
    pub order_id: String,
    pub request_id: String,
    pub amount: Option<Money>,
    pub lines: Vec<RefundLineRequest>,
    pub reason: Option<String>,
    pub restock: bool,
}

impl RefundOrder {
    /// A refund of an amount only, as before lines existed.
    pub fn of_amount(order_id: &str, request_id: &str, amount: Money) -> Self {
        RefundOrder {
            order_id: order_id.to_owned(),
            request_id: request_id.to_owned(),
            amount: Some(amount),
            ..RefundOrder::default()
        }
    }
}

/// An order line to refund: its number (1 for the first line of the order)
/// and how much of it, in the line's unit (`"1"`, `"0.250"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundLineRequest {
    pub line_no: i64,
    pub quantity: String,
}

impl Message for RefundOrder {
    const ELEMENT: &'static str = "RefundOrder";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.text("requestId", &self.request_id);
        if let Some(a) = self.amount {
            w.display("amount", a);
        }
        for l in &self.lines {
            w.open("line");
            w.display("lineNo", l.line_no);
            w.text("quantity", &l.quantity);
            w.close("line");
        }
        w.opt("reason", self.reason.as_deref());
        if self.restock {
            w.bool("restock", true);
        }
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(
            e,
            &[
                "orderId",
                "requestId",
                "amount",
                "line",
                "reason",
                "restock",
            ],
        )?;
        let request_id = text(e, "requestId")?;
        if request_id.is_empty()
            || request_id.chars().count() > MAX_REQUEST_ID
            || request_id.chars().any(char::is_control)
        {
            return Err(Fault::client(
                "invalid_request_id",
                format!("requestId must be 1 to {MAX_REQUEST_ID} printable characters"),
            ));
        }
        let lines = all(e, "line")
            .map(|l| {
                only(l, &["lineNo", "quantity"])?;
                Ok(RefundLineRequest {
                    line_no: int("lineNo", text(l, "lineNo")?)?,
                    quantity: text(l, "quantity")?.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, Fault>>()?;
        if lines.len() > MAX_REFUND_LINES {
            return Err(Fault::client(
                "invalid_refund",
                format!("a refund names at most {MAX_REFUND_LINES} lines"),
            ));
        }
        Ok(RefundOrder {
            order_id: bounded("orderId", text(e, "orderId")?, 64)?,
            request_id: request_id.to_owned(),
            amount: opt_text(e, "amount")?
                .map(|a| Money::parse(a).map_err(from_parse))
                .transpose()?,
            lines,
            // Its length is the gateway's to check (`invalid_note`, as REST).
            reason: opt_free_text(e, "reason")?,
            restock: opt_text(e, "restock")?
                .map(|b| boolean("restock", b))
                .transpose()?
                .unwrap_or(false),
        })
    }
}

/// Takes the order's total in cash at the counter: `tendered` is what the
/// customer handed over (at least the total). The order is the idempotency
/// key: the same tender again answers the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenderCash {
    pub order_id: String,
    pub tendered: Money,
}

impl Message for TenderCash {
    const ELEMENT: &'static str = "TenderCash";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.display("tendered", self.tendered);
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId", "tendered"])?;
        Ok(TenderCash {
            order_id: bounded("orderId", text(e, "orderId")?, 64)?,
            tendered: money(e, "tendered")?,
        })
    }
}

/// The cash tender as recorded: the order's total taken, what was handed
/// over, the change, who took it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenderCashResponse {
    pub order_id: String,
    pub amount: Money,
    pub tendered: Money,
    pub change: Money,
    pub by: String,
    pub at: String,
}

impl Message for TenderCashResponse {
    const ELEMENT: &'static str = "TenderCashResponse";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.display("amount", self.amount);
        w.display("tendered", self.tendered);
        w.display("change", self.change);
        w.text("by", &self.by);
        w.text("at", &self.at);
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId", "amount", "tendered", "change", "by", "at"])?;
        Ok(TenderCashResponse {
            order_id: text(e, "orderId")?.to_owned(),
            amount: money(e, "amount")?,
            tendered: money(e, "tendered")?,
            change: money(e, "change")?,
            by: text(e, "by")?.to_owned(),
            at: text(e, "at")?.to_owned(),
        })
    }
}

/// One call the gateway made to the provider about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderExchange {
    pub at: String,
    /// `micropay`, `orderquery`, `reverse`, `refund <id>`.
    pub call: String,
    /// `paid`, `declined`, `unknown`, `waiting`, `reversed`, `retry`, …
    pub outcome: String,
    /// The provider's code or why the answer is unknown.
    pub detail: Option<String>,
}

/// A charge as every surface shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Also the provider's `out_trade_no`.
    pub id: String,
    pub order_id: String,
    /// 1 for the first try of the order, 2 after a failed one, …
    pub attempt: i64,
    pub provider: String,
    /// Whose payment code: `wechatpay` or `alipay`.
    pub code_kind: String,
    /// The payment code masked, e.g. `13******6789`.
    pub auth_code: String,
    pub state: ChargeState,
    /// Why it failed or was reversed: `insufficient_balance`,
    /// `invalid_payment_code`, `payment_declined`, `payment_timeout`, …
    pub failure_code: Option<String>,
    /// The same in words, for the cashier.
    pub failure_reason: Option<String>,
    pub amount: Money,
    pub refunded: Money,
    pub transaction_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only in GetPayment answers.
    pub exchanges: Vec<ProviderExchange>,
}

/// A refund of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRefund {
    pub id: String,
    pub charge_id: String,
    pub order_id: String,
    pub request_id: String,
    pub state: RefundState,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub amount: Money,
    pub created_at: String,
    pub updated_at: String,
    /// Why, as the cashier or the app gave it.
    pub reason: Option<String>,
    /// The lines' goods go (or went, once refunded) back into stock.
    pub restock: bool,
    /// What it gives back line by line; empty for a refund of an amount.
    pub lines: Vec<RefundedLine>,
}

/// One order line's part of a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundedLine {
    pub line_no: i64,
    pub sku: String,
    /// In the line's unit, as the order shows it (`"1"`, `"0.250"`).
    pub quantity: String,
    pub amount: Money,
}

/// A payment taken before the order reached the gateway (in the app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepaid {
    /// e.g. `wechat_miniprogram`.
    pub provider: String,
    /// The app's transaction reference.
    pub transaction_id: String,
    pub amount: Money,
}

fn write_payment(w: &mut Writer, p: &Payment) {
    w.text("id", &p.id);
    w.text("orderId", &p.order_id);
    w.display("attempt", p.attempt);
    w.text("provider", &p.provider);
    w.text("codeKind", &p.code_kind);
    w.text("authCode", &p.auth_code);
    w.text("state", p.state.as_str());
    w.opt("failureCode", p.failure_code.as_deref());
    w.opt("failureReason", p.failure_reason.as_deref());
    w.display("amount", p.amount);
    w.display("refunded", p.refunded);
    w.opt("transactionId", p.transaction_id.as_deref());
    w.text("createdAt", &p.created_at);
    w.text("updatedAt", &p.updated_at);
    for x in &p.exchanges {
        w.open("exchange");
        w.text("at", &x.at);
        w.text("call", &x.call);
        w.text("outcome", &x.outcome);
        w.opt("detail", x.detail.as_deref());
        w.close("exchange");
    }
}

fn money(e: &Element, name: &str) -> Result<Money, Fault> {
    Money::parse(text(e, name)?).map_err(from_parse)
}

fn opt_string(e: &Element, name: &str) -> Result<Option<String>, Fault> {
    Ok(opt_text(e, name)?.map(str::to_owned))
}

fn read_payment(e: &Element) -> Result<Payment, Fault> {
    only(
        e,
        &[
            "id",
            "orderId",
            "attempt",
            "provider",
            "codeKind",
            "authCode",
            "state",
            "failureCode",
            "failureReason",
            "amount",
            "refunded",
            "transactionId",
            "createdAt",
            "updatedAt",
            "exchange",
        ],
    )?;
    let exchanges = all(e, "exchange")
        .map(|x| {
            only(x, &["at", "call", "outcome", "detail"])?;
            Ok(ProviderExchange {
                at: text(x, "at")?.to_owned(),
                call: text(x, "call")?.to_owned(),
                outcome: text(x, "outcome")?.to_owned(),
                detail: opt_string(x, "detail")?,
            })
        })
        .collect::<Result<Vec<_>, Fault>>()?;
    Ok(Payment {
        id: text(e, "id")?.to_owned(),
        order_id: text(e, "orderId")?.to_owned(),
        attempt: int("attempt", text(e, "attempt")?)?,
        provider: text(e, "provider")?.to_owned(),
        code_kind: text(e, "codeKind")?.to_owned(),
        auth_code: text(e, "authCode")?.to_owned(),
        state: ChargeState::parse(text(e, "state")?).map_err(from_parse)?,
        failure_code: opt_string(e, "failureCode")?,
        failure_reason: opt_free_text(e, "failureReason")?,
        amount: money(e, "amount")?,
        refunded: money(e, "refunded")?,
        transaction_id: opt_string(e, "transactionId")?,
        created_at: text(e, "createdAt")?.to_owned(),
        updated_at: text(e, "updatedAt")?.to_owned(),
        exchanges,
    })
}

fn write_refund(w: &mut Writer, r: &PaymentRefund) {
    w.text("id", &r.id);
    w.text("chargeId", &r.charge_id);
    w.text("orderId", &r.order_id);
    w.text("requestId", &r.request_id);
    w.text("state", r.state.as_str());
    w.opt("failureCode", r.failure_code.as_deref());
    w.opt("failureReason", r.failure_reason.as_deref());
    w.display("amount", r.amount);
    w.text("createdAt", &r.created_at);
    w.text("updatedAt", &r.updated_at);
    // Only when set: a refund of an amount reads exactly as before.
    w.opt("reason", r.reason.as_deref());
    if r.restock {
        w.bool("restock", true);
    }
    for l in &r.lines {
        w.open("line");
        w.display("lineNo", l.line_no);
        w.text("sku", &l.sku);
        w.text("quantity", &l.quantity);
        w.display("amount", l.amount);
        w.close("line");
    }
}

fn read_refund(e: &Element) -> Result<PaymentRefund, Fault> {
    only(
        e,
        &[
            "id",
            "chargeId",
            "orderId",
            "requestId",
            "state",
            "failureCode",
            "failureReason",
            "amount",
            "createdAt",
            "updatedAt",
            "reason",
            "restock",
            "line",
        ],
    )?;
    let lines = all(e, "line")
        .map(|l| {
            only(l, &["lineNo", "sku", "quantity", "amount"])?;
            Ok(RefundedLine {
                line_no: int("lineNo", text(l, "lineNo")?)?,
                sku: text(l, "sku")?.to_owned(),
                quantity: text(l, "quantity")?.to_owned(),
                amount: money(l, "amount")?,
            })
        })
        .collect::<Result<Vec<_>, Fault>>()?;
    Ok(PaymentRefund {
        id: text(e, "id")?.to_owned(),
        charge_id: text(e, "chargeId")?.to_owned(),
        order_id: text(e, "orderId")?.to_owned(),
        request_id: text(e, "requestId")?.to_owned(),
        state: RefundState::parse(text(e, "state")?).map_err(from_parse)?,
        failure_code: opt_string(e, "failureCode")?,
        failure_reason: opt_free_text(e, "failureReason")?,
        amount: money(e, "amount")?,
        created_at: text(e, "createdAt")?.to_owned(),
        updated_at: text(e, "updatedAt")?.to_owned(),
        reason: opt_free_text(e, "reason")?,
        restock: opt_text(e, "restock")?
            .map(|b| boolean("restock", b))
            .transpose()?
            .unwrap_or(false),
        lines,
    })
}

/// The charge as it ended (or, if even reversing got no answer, `pending`:
/// ask again with GetPayment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOrderResponse {
    pub charge: Payment,
}

impl Message for PayOrderResponse {
    const ELEMENT: &'static str = "PayOrderResponse";

    fn write(&self, w: &mut Writer) {
        w.open("charge");
        write_payment(w, &self.charge);
        w.close("charge");
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["charge"])?;
        let c = opt_el(e, "charge")?.ok_or_else(|| Fault::invalid("the answer has no charge"))?;
        Ok(PayOrderResponse {
            charge: read_payment(c)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPaymentResponse {
    pub order_id: String,
    pub payment_status: PaymentStatus,
    /// Oldest attempt first; at most one of them succeeded.
    pub charges: Vec<Payment>,
    pub refunds: Vec<PaymentRefund>,
    /// Paid in the app before the order came in: refunded there, not here.
    pub prepaid: Option<Prepaid>,
}

impl GetPaymentResponse {
    /// The charge that took the money, if any.
    pub fn paid_charge(&self) -> Option<&Payment> {
        self.charges
            .iter()
            .find(|c| c.state == ChargeState::Succeeded)
    }
}

impl Message for GetPaymentResponse {
    const ELEMENT: &'static str = "GetPaymentResponse";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.text("paymentStatus", self.payment_status.as_str());
        for c in &self.charges {
            w.open("charge");
            write_payment(w, c);
            w.close("charge");
        }
        for r in &self.refunds {
            w.open("refund");
            write_refund(w, r);
            w.close("refund");
        }
        if let Some(p) = &self.prepaid {
            w.open("prepaid");
            w.text("provider", &p.provider);
            w.text("transactionId", &p.transaction_id);
            w.display("amount", p.amount);
            w.close("prepaid");
        }
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(
            e,
            &["orderId", "paymentStatus", "charge", "refund", "prepaid"],
        )?;
        let prepaid = opt_el(e, "prepaid")?
            .map(|p| {
                only(p, &["provider", "transactionId", "amount"])?;
                Ok::<_, Fault>(Prepaid {
                    provider: text(p, "provider")?.to_owned(),
                    transaction_id: text(p, "transactionId")?.to_owned(),
                    amount: money(p, "amount")?,
                })
            })
            .transpose()?;
        Ok(GetPaymentResponse {
            order_id: text(e, "orderId")?.to_owned(),
            payment_status: PaymentStatus::parse(text(e, "paymentStatus")?).map_err(from_parse)?,
            charges: all(e, "charge")
                .map(read_payment)
                .collect::<Result<_, _>>()?,
            refunds: all(e, "refund")
                .map(read_refund)
                .collect::<Result<_, _>>()?,
            prepaid,
        })
    }
}

/// The refund as it ended (`pending` when the provider gave no definite
/// answer yet: the gateway keeps trying; ask again with GetPayment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrderResponse {
    pub refund: PaymentRefund,
}

impl Message for RefundOrderResponse {
    const ELEMENT: &'static str = "RefundOrderResponse";

    fn write(&self, w: &mut Writer) {
        w.open("refund");
        write_refund(w, &self.refund);
        w.close("refund");
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["refund"])?;
        let r = opt_el(e, "refund")?.ok_or_else(|| Fault::invalid("the answer has no refund"))?;
        Ok(RefundOrderResponse {
            refund: read_refund(r)?,
        })
    }
}
