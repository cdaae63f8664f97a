//! The terminal's client for the gateway's SOAP interface: one async method
//! per operation, built on the `proto::soap` messages.
//!
//! Retries are safe by construction: a submit is resent byte for byte, so it
//! carries the same `clientOrderId` and the gateway answers with the first
//! order; reads and heartbeats are idempotent; a status change whose first
//! answer was lost is checked with `GetOrder` instead of being blindly
//! repeated. A payment is keyed by its order: a resent `PayOrder` joins the
//! charge already running for the order, or gets the one that succeeded,
//! never a second charge; a resent `RefundOrder` carries the same request
//! id. A Fault becomes [`ClientError::Fault`] carrying the gateway's stable
//! code (`out_of_stock`, `illegal_transition`, …).

use std::fmt;
use std::time::Duration;

use proto::order::{Money, Order, OrderAction, OrderStatus, TerminalId};
use proto::soap::{
    self, Fault, FaultKind, GetCatalog, GetCatalogResponse, GetOrder, GetOrderResponse, GetPayment,
    GetPaymentResponse, Heartbeat, HeartbeatResponse, ListOrders, ListOrdersResponse, Message,
    PayOrder, PayOrderResponse, Payment, PaymentRefund, RefundOrder, RefundOrderResponse,
    ResponseError, SubmitOrder, SubmitOrderResponse, TenderCash, TenderCashResponse,
    UpdateOrderStatus, UpdateOrderStatusResponse, UsernameToken,
};

/// How to reach the gateway and how patiently.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `http://gateway.local:8080` (the endpoint is `/soap/terminal`).
    pub base_url: String,
    pub terminal: TerminalId,
    /// The terminal's API key (role terminal).
    pub key: String,
    /// Limit for one attempt, connect to last byte.
    pub timeout: Duration,
    /// Limit for one `PayOrder` attempt: the gateway answers only when the
    /// charge is final, which may take its whole deadline (about 30 s) and
    /// a reverse. Keep it well above the gateway's deadline.
    pub pay_timeout: Duration,
    /// Attempts in all for a retryable failure (at least 1).
    pub attempts: u32,
    /// Pause before the second attempt; doubles after each.
    pub backoff: Duration,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("terminal", &self.terminal)
            .field("key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("pay_timeout", &self.pay_timeout)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, terminal: TerminalId, key: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            terminal,
            key: key.into(),
            timeout: Duration::from_secs(10),
            pay_timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The gateway answered with a Fault.
    Fault(Fault),
    /// No answer: connection refused or broken.
    Transport(String),
    /// No answer in time (the request may or may not have been applied).
    Timeout,
    /// An answer that is not the expected SOAP message (e.g. a proxy's page).
    Protocol { status: u16, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Fault(fault) => write!(f, "{fault}"),
            ClientError::Transport(m) => write!(f, "gateway unreachable: {m}"),
            ClientError::Timeout => f.write_str("the gateway did not answer in time"),
            ClientError::Protocol { status, message } => {
                write!(f, "unexpected answer (HTTP {status}): {message}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The stable code: the gateway's for a Fault, else `transport`,
    /// `timeout` or `protocol`.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Fault(f) => &f.code,
            ClientError::Transport(_) => "transport",
            ClientError::Timeout => "timeout",
            ClientError::Protocol { .. } => "protocol",
        }
    }

    /// Worth trying again with the same request.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Fault(f) => f.kind == FaultKind::Server && f.code == "unavailable",
            ClientError::Transport(_) | ClientError::Timeout => true,
            ClientError::Protocol { status, .. } => matches!(status, 502..=504),
        }
    }
}

fn transport(e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout
    } else {
        ClientError::Transport(e.to_string())
    }
}

/// The status an action leads to (used to recognise a lost answer).
fn target(action: OrderAction) -> OrderStatus {
    match action {
        OrderAction::Accept => OrderStatus::Accepted,
        OrderAction::Reject => OrderStatus::Rejected,
        OrderAction::Ready => OrderStatus::Ready,
        OrderAction::Complete => OrderStatus::Completed,
        OrderAction::Cancel => OrderStatus::Cancelled,
    }
}

/// A client for one terminal. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    endpoint: String,
    token: UsernameToken,
    cfg: ClientConfig,
}

impl fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayClient")
            .field("endpoint", &self.endpoint)
            .field("terminal", &self.cfg.terminal)
            .finish()
    }
}

impl GatewayClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(GatewayClient {
            http,
            endpoint: format!("{}/soap/terminal", cfg.base_url.trim_end_matches('/')),
            token: UsernameToken {
                username: cfg.terminal.to_string(),
                password: cfg.key.clone(),
            },
            cfg,
        })
    }

    /// A counter sale. Retried on transport failures with the same
    /// `clientOrderId`, so it is created at most once.
    pub async fn submit_order(
        &self,
        req: &SubmitOrder,
    ) -> Result<SubmitOrderResponse, ClientError> {
        self.call(req).await
    }

    pub async fn get_order(&self, order_id: &str) -> Result<Order, ClientError> {
        let r: GetOrderResponse = self
            .call(&GetOrder {
                order_id: order_id.to_owned(),
            })
            .await?;
        Ok(r.order)
    }

    /// The store's queue, all channels; pass the answer's `cursor` as
    /// `since` next time.
    pub async fn list_orders(&self, req: &ListOrders) -> Result<ListOrdersResponse, ClientError> {
        self.call(req).await
    }

    /// Accept, reject, ready, complete or cancel. When an attempt's answer is
    /// lost and the retry finds the order already moved, the order is read
    /// back: if it is where this action leads, that counts as success.
    pub async fn update_order_status(
        &self,
        order_id: &str,
        action: OrderAction,
        reason: Option<&str>,
    ) -> Result<Order, ClientError> {
        let req = UpdateOrderStatus {
            order_id: order_id.to_owned(),
            action,
            reason: reason.map(str::to_owned),
        };
        let body = soap::write_request(&self.token, &req);
        let mut lost_answer = false;
        let mut attempt = 1;
        loop {
            match self
                .once::<UpdateOrderStatusResponse>(
                    UpdateOrderStatus::ELEMENT,
                    &body,
                    self.cfg.timeout,
                )
                .await
            {
                Ok(r) => return Ok(r.order),
                Err(ClientError::Fault(f)) if lost_answer && f.code == "illegal_transition" => {
                    let order = self.get_order(order_id).await?;
                    if order.status == target(action) {
                        return Ok(order);
                    }
                    return Err(ClientError::Fault(f));
                }
                Err(e) if e.is_retryable() && attempt < self.cfg.attempts.max(1) => {
                    lost_answer |= matches!(e, ClientError::Timeout | ClientError::Transport(_));
                    self.pause(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The catalog; with the version the terminal holds, `unchanged` is set
    /// and no items are sent when nothing moved.
    pub async fn get_catalog(
        &self,
        known_version: Option<&str>,
    ) -> Result<GetCatalogResponse, ClientError> {
        self.call(&GetCatalog {
            known_version: known_version.map(str::to_owned),
        })
        .await
    }

    pub async fn heartbeat(&self, req: &Heartbeat) -> Result<HeartbeatResponse, ClientError> {
        self.call(req).await
    }

    /// Charges the order with the scanned payment code and waits for the
    /// final answer: `succeeded`, `failed` (see `failure_code` and
    /// `failure_reason`) or `reversed` (the customer did not confirm in
    /// time; no money moved). `pending` only when even reversing got no
    /// answer: ask [`GatewayClient::get_payment`] later. Each attempt may
    /// take up to [`ClientConfig::pay_timeout`]. A retry after a lost answer
    /// joins the charge the first attempt started (or gets it, if it
    /// succeeded): the order is never charged twice.
    pub async fn pay_order(&self, order_id: &str, auth_code: &str) -> Result<Payment, ClientError> {
        let r: PayOrderResponse = self
            .call_with(
                &PayOrder {
                    order_id: order_id.to_owned(),
                    auth_code: auth_code.to_owned(),
                },
                self.cfg.pay_timeout,
            )
            .await?;
        Ok(r.charge)
    }

    /// Records cash taken at the counter for the order: `tendered` is what
    /// the customer handed over (at least the order's total). The order is
    /// the idempotency key: the same tender again answers the recorded one,
    /// so a retry after a lost answer is safe.
    pub async fn tender_cash(
        &self,
        order_id: &str,
        tendered: Money,
    ) -> Result<TenderCashResponse, ClientError> {
        self.call(&TenderCash {
            order_id: order_id.to_owned(),
            tendered,
        })
        .await
    }

    /// Every charge (with its provider exchanges) and refund of the order,
    /// and its payment status.
    pub async fn get_payment(&self, order_id: &str) -> Result<GetPaymentResponse, ClientError> {
        self.call(&GetPayment {
            order_id: order_id.to_owned(),
        })
        .await
    }

    /// Refunds `amount` of what the order paid. `request_id` is the
    /// terminal's id of this refund: the same id again answers the same
    /// refund (so retries are safe), a new id is a new refund. The answer's
    /// `state` is `succeeded` once the money is back with the customer,
    /// `failed` (see `failure_code`: `refund_closed`, `refund_change`, …)
    /// if it will not be, and `requested` or `processing` while the provider
    /// has not finished: the money is not back yet; the gateway finishes it
    /// and [`GatewayClient::get_payment`] (or the same request again) shows
    /// the outcome. More than is left to refund is a `refund_exceeds_paid`
    /// Fault. For refunds by
    /// order line, with a reason or restocking, see
    /// [`GatewayClient::refund_order_with`].
    pub async fn refund_order(
        &self,
        order_id: &str,
        request_id: &str,
        amount: Money,
    ) -> Result<PaymentRefund, ClientError> {
        self.refund_order_with(&RefundOrder::of_amount(order_id, request_id, amount))
            .await
    }

    /// Any refund: an amount, or order lines (`lines`, each `lineNo` and a
    /// quantity in the line's unit; the amount is then their share of the
    /// lines' totals, and if `amount` is given too it must match), with an
    /// optional `reason`, and `restock` to put the goods back into stock
    /// (completed orders only). The same `request_id` again answers the same
    /// refund; with different lines or amount it is `idempotency_conflict`.
    /// Other Faults: `refund_exceeds_line`, `refund_amount_mismatch`,
    /// `restock_needs_completed_order`, `invalid_refund`,
    /// `invalid_quantity`, `paid_elsewhere` (paid in the app).
    pub async fn refund_order_with(&self, req: &RefundOrder) -> Result<PaymentRefund, ClientError> {
        let r: RefundOrderResponse = self
            .call_with(req, self.cfg.timeout.max(self.cfg.pay_timeout))
            .await?;
        Ok(r.refund)
    }

    /// Sends an idempotent request, retrying what is worth retrying.
    async fn call<Req: Message, Resp: Message>(&self, req: &Req) -> Result<Resp, ClientError> {
        self.call_with(req, self.cfg.timeout).await
    }

    /// [`Self::call`] with its own limit per attempt.
    async fn call_with<Req: Message, Resp: Message>(
        &self,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError> {
        let body = soap::write_request(&self.token, req);
        let mut attempt = 1;
        loop {
            match self.once::<Resp>(Req::ELEMENT, &body, timeout).await {
                Err(e) if e.is_retryable() && attempt < self.cfg.attempts.max(1) => {
                    self.pause(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn pause(&self, attempt: u32) {
        let factor = 1u32 << attempt.saturating_sub(1).min(6);
        tokio::time::sleep(self.cfg.backoff.saturating_mul(factor)).await;
    }

    async fn once<Resp: Message>(
        &self,
        op: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Resp, ClientError> {
        let resp = self
            .http
            .post(&self.endpoint)
            .timeout(timeout)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", format!("\"{}/{op}\"", soap::NS))
            .body(body.to_owned())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if resp
            .content_length()
            .is_some_and(|n| n > soap::MAX_RESPONSE as u64)
        {
            return Err(ClientError::Protocol {
                status,
                message: "the answer is too large".into(),
            });
        }
        let bytes = resp.bytes().await.map_err(transport)?;
        soap::parse_response::<Resp>(&bytes).map_err(|e| match e {
            ResponseError::Fault(f) => ClientError::Fault(f),
            ResponseError::Malformed(f) => ClientError::Protocol {
                status,
                message: f.message,
            },
        })
    }
}
