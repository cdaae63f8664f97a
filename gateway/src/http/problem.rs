//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Code, Error};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        problem(self.status, self.code, &self.message)
    }
}

pub fn problem(status: StatusCode, code: Code, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:smart-terminal:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = what, "handler panicked");
    problem(Code::Internal.status(), Code::Internal, "internal error")
}
