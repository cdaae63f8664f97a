//! Extractors: who is calling (`Auth`), and JSON bodies that fail with a
//! problem document instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::error::Error;
use crate::keys::Principal;

/// The authenticated caller. A handler taking `Auth` can only be reached
/// with a valid `Authorization: Bearer <key>`.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Error> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Error::unauthorized("missing Authorization: Bearer <API key>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| Error::unauthorized("Authorization must be Bearer <API key>"))?;
        st.keys.authenticate(&st.db, token).await.map(Auth)
    }
}

/// A JSON body, plus a digest of its canonical form (keys sorted) so that
/// idempotent retries can be told from different requests.
pub struct JsonBody<T> {
    pub value: T,
    pub digest: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Error> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, st).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(
                    e.status(),
                    "payload_too_large",
                    format!("the body is larger than {} bytes", super::BODY_LIMIT),
                )
            } else {
                Error::bad_request("invalid_body", e.body_text())
            }
        })?;
        parse_json(&bytes)
    }
}

/// Refuses a body that is not declared as JSON.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(Error::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, Error> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let digest = hex::encode(Sha256::digest(raw.to_string().as_bytes()));
    let value = serde_json::from_value(raw).map_err(|e| {
        Error::unprocessable("invalid_request", format!("the body does not fit: {e}"))
    })?;
    Ok(JsonBody { value, digest })
}
