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
    /// A refund: `pending` until the provider confirmed or refused it.
    RefundState, "invalid_refund_state", {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

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

/// Refunds part or all of what the order paid. `request_id` is the
/// idempotency key: the same id answers the same refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    pub order_id: String,
    pub request_id: String,
    pub amount: Money,
}

impl Message for RefundOrder {
    const ELEMENT: &'static str = "RefundOrder";

    fn write(&self, w: &mut Writer) {
        w.text("orderId", &self.order_id);
        w.text("requestId", &self.request_id);
        w.display("amount", self.amount);
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId", "requestId", "amount"])?;
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
        Ok(RefundOrder {
            order_id: bounded("orderId", text(e, "orderId")?, 64)?,
            request_id: request_id.to_owned(),
            amount: Money::parse(text(e, "amount")?).map_err(from_parse)?,
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
        ],
    )?;
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
    }

    fn read(e: &Element) -> Result<Self, Fault> {
        only(e, &["orderId", "paymentStatus", "charge", "refund"])?;
        Ok(GetPaymentResponse {
            order_id: text(e, "orderId")?.to_owned(),
            payment_status: PaymentStatus::parse(text(e, "paymentStatus")?).map_err(from_parse)?,
            charges: all(e, "charge")
                .map(read_payment)
                .collect::<Result<_, _>>()?,
            refunds: all(e, "refund")
                .map(read_refund)
                .collect::<Result<_, _>>()?,
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
