//! The one error type of the service and its stable codes. Every surface
//! maps it: REST to `application/problem+json`, SOAP to a Fault, both
//! carrying [`Code::as_str`].

use std::fmt;

use ::http::StatusCode;
use proto::order::{IllegalTransition, ParseError};
use proto::soap::FaultKind;

macro_rules! codes {
    ($($(#[$m:meta])* $variant:ident = $s:literal, $status:ident;)+) => {
        /// Every stable, machine-readable error code the gateway answers
        /// (REST `code`, SOAP Fault `code`) or records (a charge's or
        /// refund's failure code). The wire string is [`Code::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$m])* $variant,)+
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            /// The wire string, e.g. `out_of_stock`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $s,)+
                }
            }

            /// The code a wire string (a stored failure code, a code of
            /// `proto`) names; `None` for one the gateway does not know.
            pub fn parse(s: &str) -> Option<Code> {
                match s {
                    $($s => Some(Code::$variant),)+
                    _ => None,
                }
            }

            /// The HTTP status this code is answered with (a call site may
            /// say otherwise with [`Error::with_status`]).
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

codes! {
    // 400: the request itself is malformed.
    InvalidBody = "invalid_body", BAD_REQUEST;
    InvalidCursor = "invalid_cursor", BAD_REQUEST;
    InvalidIdempotencyKey = "invalid_idempotency_key", BAD_REQUEST;
    InvalidJson = "invalid_json", BAD_REQUEST;
    InvalidLimit = "invalid_limit", BAD_REQUEST;
    InvalidQuery = "invalid_query", BAD_REQUEST;
    InvalidState = "invalid_state", BAD_REQUEST;
    WsdlOnly = "wsdl_only", BAD_REQUEST;
    MalformedPush = "malformed_push", BAD_REQUEST;
    BadTimestamp = "bad_timestamp", BAD_REQUEST;
    // 401 / 403: who is calling, and may they.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    MissingAppId = "missing_app_id", UNAUTHORIZED;
    MissingSignature = "missing_signature", UNAUTHORIZED;
    BadSignature = "bad_signature", UNAUTHORIZED;
    StaleTimestamp = "stale_timestamp", UNAUTHORIZED;
    Forbidden = "forbidden", FORBIDDEN;
    UnknownAppId = "unknown_app_id", FORBIDDEN;
    // 404: what the request names does not exist (`unknown_store` and
    // `unknown_sku` are 422 when a body names them).
    NotFound = "not_found", NOT_FOUND;
    OrderNotFound = "order_not_found", NOT_FOUND;
    OutboxEntryNotFound = "outbox_entry_not_found", NOT_FOUND;
    UnknownAction = "unknown_action", NOT_FOUND;
    UnknownPlatform = "unknown_platform", NOT_FOUND;
    UnknownSku = "unknown_sku", NOT_FOUND;
    UnknownStore = "unknown_store", NOT_FOUND;
    UnknownEvent = "unknown_event", NOT_FOUND;
    // Transport-level refusals.
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT;
    // 409: the request is fine, the state of things refuses it.
    ConcurrentUpdate = "concurrent_update", CONFLICT;
    IllegalTransition = "illegal_transition", CONFLICT;
    ItemUnavailable = "item_unavailable", CONFLICT;
    NoRefundRequested = "no_refund_requested", CONFLICT;
    OrderAlreadyPaid = "order_already_paid", CONFLICT;
    OrderNotPaid = "order_not_paid", CONFLICT;
    OrderNotPayable = "order_not_payable", CONFLICT;
    OutOfStock = "out_of_stock", CONFLICT;
    OutboxEntryNotFailed = "outbox_entry_not_failed", CONFLICT;
    PaidElsewhere = "paid_elsewhere", CONFLICT;
    PaymentPending = "payment_pending", CONFLICT;
    PrepaidReferenceUsed = "prepaid_reference_used", CONFLICT;
    RefundPending = "refund_pending", CONFLICT;
    RefundRefused = "refund_refused", CONFLICT;
    RefundRequired = "refund_required", CONFLICT;
    RestockNeedsCompletedOrder = "restock_needs_completed_order", CONFLICT;
    BarcodeTaken = "barcode_taken", CONFLICT;
    TerminalExists = "terminal_exists", CONFLICT;
    TooManyAttempts = "too_many_attempts", CONFLICT;
    TooManyRefunds = "too_many_refunds", CONFLICT;
    UnitChangeBlocked = "unit_change_blocked", CONFLICT;
    CursorExpired = "cursor_expired", GONE;
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    // 422: a value in the request is not acceptable.
    IdempotencyConflict = "idempotency_conflict", UNPROCESSABLE_ENTITY;
    InvalidCode = "invalid_code", UNPROCESSABLE_ENTITY;
    InvalidItem = "invalid_item", UNPROCESSABLE_ENTITY;
    InvalidLines = "invalid_lines", UNPROCESSABLE_ENTITY;
    InvalidMoney = "invalid_money", UNPROCESSABLE_ENTITY;
    InvalidName = "invalid_name", UNPROCESSABLE_ENTITY;
    InvalidNote = "invalid_note", UNPROCESSABLE_ENTITY;
    InvalidPaymentCode = "invalid_payment_code", UNPROCESSABLE_ENTITY;
    InvalidPrepaid = "invalid_prepaid", UNPROCESSABLE_ENTITY;
    InvalidQuantity = "invalid_quantity", UNPROCESSABLE_ENTITY;
    InvalidReason = "invalid_reason", UNPROCESSABLE_ENTITY;
    InvalidRefund = "invalid_refund", UNPROCESSABLE_ENTITY;
    InvalidRequest = "invalid_request", UNPROCESSABLE_ENTITY;
    InvalidRequestId = "invalid_request_id", UNPROCESSABLE_ENTITY;
    InvalidTime = "invalid_time", UNPROCESSABLE_ENTITY;
    NothingToPay = "nothing_to_pay", UNPROCESSABLE_ENTITY;
    PrepaidAmountMismatch = "prepaid_amount_mismatch", UNPROCESSABLE_ENTITY;
    ReasonRequired = "reason_required", UNPROCESSABLE_ENTITY;
    RefundAmountMismatch = "refund_amount_mismatch", UNPROCESSABLE_ENTITY;
    RefundExceedsLine = "refund_exceeds_line", UNPROCESSABLE_ENTITY;
    RefundExceedsPaid = "refund_exceeds_paid", UNPROCESSABLE_ENTITY;
    TenderTooSmall = "tender_too_small", UNPROCESSABLE_ENTITY;
    StoreRequired = "store_required", UNPROCESSABLE_ENTITY;
    TerminalNotAllowed = "terminal_not_allowed", UNPROCESSABLE_ENTITY;
    UnknownPlatformStore = "unknown_platform_store", UNPROCESSABLE_ENTITY;
    UnsupportedPaymentCode = "unsupported_payment_code", UNPROCESSABLE_ENTITY;
    // The codes of `proto`'s parse errors (`ParseError::code`).
    InvalidSku = "invalid_sku", UNPROCESSABLE_ENTITY;
    InvalidBarcode = "invalid_barcode", UNPROCESSABLE_ENTITY;
    TooManyBarcodes = "too_many_barcodes", UNPROCESSABLE_ENTITY;
    InvalidStore = "invalid_store", UNPROCESSABLE_ENTITY;
    InvalidTerminal = "invalid_terminal", UNPROCESSABLE_ENTITY;
    InvalidWeight = "invalid_weight", UNPROCESSABLE_ENTITY;
    InvalidUnit = "invalid_unit", UNPROCESSABLE_ENTITY;
    InvalidChannel = "invalid_channel", UNPROCESSABLE_ENTITY;
    InvalidStatus = "invalid_status", UNPROCESSABLE_ENTITY;
    InvalidAction = "invalid_action", UNPROCESSABLE_ENTITY;
    InvalidPaymentStatus = "invalid_payment_status", UNPROCESSABLE_ENTITY;
    InvalidPeripheral = "invalid_peripheral", UNPROCESSABLE_ENTITY;
    InvalidPeripheralStatus = "invalid_peripheral_status", UNPROCESSABLE_ENTITY;
    // Failure codes recorded on a charge or refund (a failed charge is an
    // answer, not an error); 422 if ever raised.
    InsufficientBalance = "insufficient_balance", UNPROCESSABLE_ENTITY;
    PaymentDeclined = "payment_declined", UNPROCESSABLE_ENTITY;
    PaymentTimeout = "payment_timeout", UNPROCESSABLE_ENTITY;
    PaymentCancelled = "payment_cancelled", UNPROCESSABLE_ENTITY;
    RefundClosed = "refund_closed", UNPROCESSABLE_ENTITY;
    /// A refund the provider took but could not pay back the original way
    /// (WeChat's CHANGE): the money has left the merchant's account and the
    /// provider holds it for the merchant to pay out by hand, so it stays
    /// counted as given back and is not refundable again.
    RefundChange = "refund_change", UNPROCESSABLE_ENTITY;
    RefundConflict = "refund_conflict", UNPROCESSABLE_ENTITY;
    // Limits and the server's own trouble.
    TooManyStreams = "too_many_streams", TOO_MANY_REQUESTS;
    Internal = "internal", INTERNAL_SERVER_ERROR;
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    PaymentsNotConfigured = "payments_not_configured", SERVICE_UNAVAILABLE;
    OrderWriterFailed = "order_writer_failed", SERVICE_UNAVAILABLE;
}

impl Code {
    /// Whose fault, for SOAP: the server's for a 5xx, else the client's.
    pub fn soap_fault(self) -> FaultKind {
        fault_kind(self.status())
    }
}

fn fault_kind(status: StatusCode) -> FaultKind {
    if status.is_server_error() {
        FaultKind::Server
    } else {
        FaultKind::Client
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Usually `code.status()`; see [`Error::with_status`].
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. [`Code::OutOfStock`].
    pub code: Code,
    /// Human explanation, safe to show the caller (never set for 5xx).
    pub message: String,
    /// What really happened, for the log only.
    pub source: Option<anyhow::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `code` with its own status ([`Code::status`]).
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            status: code.status(),
            code,
            message: message.into(),
            source: None,
        }
    }

    /// The same error answered with another status (`unknown_store` named
    /// in a body is 422, not 404).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same refusal about something a request *body* names: 422
    /// instead of the code's own 404 (`unknown_store`, `unknown_sku`).
    pub fn in_body(self) -> Self {
        self.with_status(StatusCode::UNPROCESSABLE_ENTITY)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Error {
            source: Some(source.into()),
            ..Self::new(Code::Internal, "internal error")
        }
    }

    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Error {
            source: Some(source.into()),
            ..Self::new(
                Code::Unavailable,
                "the service is temporarily unavailable, retry shortly",
            )
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status.is_server_error()
    }

    /// Whose fault, for SOAP (by the status it is answered with).
    pub fn fault_kind(&self) -> FaultKind {
        fault_kind(self.status)
    }

    /// As an `anyhow` error for a background task: what really happened
    /// when known, with the message.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self.source {
            Some(src) => src.context(self.message),
            None => anyhow::anyhow!(self.message),
        }
    }

    /// Logs a 5xx with its detail; client errors are the caller's business.
    pub fn log(&self) {
        let code = self.code.as_str();
        if self.is_server_error() {
            match &self.source {
                Some(src) => tracing::error!(code, error = ?src, "request failed"),
                None => tracing::error!(code, "request failed: {}", self.message),
            }
        } else {
            tracing::debug!(code, "request refused: {}", self.message);
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Error::unavailable(e)
            }
            _ => Error::internal(e),
        }
    }
}

impl From<ParseError> for Error {
    /// `proto`'s parse errors keep their code (every one is a [`Code`], see
    /// the test below); 422.
    fn from(e: ParseError) -> Self {
        Error::new(parse_code(&e), e.message).with_status(StatusCode::UNPROCESSABLE_ENTITY)
    }
}

/// The [`Code`] of a `proto` parse error (`invalid_request` for a code
/// `proto` gained and this table did not).
pub fn parse_code(e: &ParseError) -> Code {
    Code::parse(e.code).unwrap_or(Code::InvalidRequest)
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        Error::new(Code::IllegalTransition, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::order::{Channel, Money, OrderAction, OrderStatus, PaymentStatus, Quantity, Sku};
    use proto::order::{StoreId, TerminalId, Unit};

    #[test]
    fn every_code_has_its_own_wire_string_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for &c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(Code::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
        assert_eq!(Code::parse("something_new"), None);
    }

    #[test]
    fn statuses_and_fault_sides() {
        assert_eq!(Code::OutOfStock.status(), StatusCode::CONFLICT);
        assert_eq!(
            Code::OrderWriterFailed.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(Code::OrderWriterFailed.soap_fault(), FaultKind::Server);
        assert_eq!(Code::InvalidMoney.soap_fault(), FaultKind::Client);
        let e = Error::new(Code::UnknownStore, "no store X").in_body();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (422, "unknown_store"));
        assert_eq!(e.fault_kind(), FaultKind::Client);
        let e = Error::internal(anyhow::anyhow!("boom"));
        assert_eq!(
            (e.status.as_u16(), e.code, e.fault_kind()),
            (500, Code::Internal, FaultKind::Server)
        );
    }

    #[test]
    fn every_parse_error_of_proto_keeps_its_code() {
        let errors = [
            Sku::parse("").unwrap_err(),
            StoreId::parse("").unwrap_err(),
            TerminalId::parse("").unwrap_err(),
            Money::parse("x").unwrap_err(),
            Quantity::parse(Unit::Piece, "x").unwrap_err(),
            Unit::parse("x").unwrap_err(),
            Channel::parse("x").unwrap_err(),
            OrderStatus::parse("x").unwrap_err(),
            OrderAction::parse("x").unwrap_err(),
            PaymentStatus::parse("x").unwrap_err(),
            proto::device::Weight::parse_kg("x").unwrap_err(),
            proto::time::Timestamp::parse("x").unwrap_err(),
        ];
        for e in errors {
            let code = Code::parse(e.code);
            assert_eq!(code.map(Code::as_str), Some(e.code), "{}", e.code);
            let err = Error::from(e);
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
}
