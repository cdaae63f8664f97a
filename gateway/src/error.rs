//! The one error type of the service. Every surface maps it: REST to
//! `application/problem+json`, SOAP to a Fault, both carrying `code`.

use axum::http::StatusCode;
use proto::order::{IllegalTransition, ParseError};

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `out_of_stock`.
    pub code: &'static str,
    /// Human explanation, safe to show the caller (never set for 5xx).
    pub message: String,
    /// What really happened, for the log only.
    pub source: Option<anyhow::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            status,
            code,
            message: message.into(),
            source: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".into(),
            source: Some(source.into()),
        }
    }

    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "the service is temporarily unavailable, retry shortly".into(),
            source: Some(source.into()),
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status.is_server_error()
    }

    /// Logs a 5xx with its detail; client errors are the caller's business.
    pub fn log(&self) {
        if self.is_server_error() {
            match &self.source {
                Some(src) => tracing::error!(code = self.code, error = ?src, "request failed"),
                None => tracing::error!(code = self.code, "request failed: {}", self.message),
            }
        } else {
            tracing::debug!(code = self.code, "request refused: {}", self.message);
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
    fn from(e: ParseError) -> Self {
        Error::unprocessable(e.code, e.message)
    }
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        Error::conflict("illegal_transition", e.to_string())
    }
}
