//! Extractors: who is calling (`Auth`; `Admin` for admin-only routes), and JSON bodies that fail with a
//! problem document instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::{Code, Error};
use crate::keys::Principal;

/// The authenticated caller. A handler taking `Auth` can only be reached
/// with a valid `Authorization: Bearer <key>`.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Error> {
        let refuse = |message: &str| {
            st.keys.count_failure();
            Error::unauthorized(message.to_owned())
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| refuse("missing Authorization: Bearer <API key>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| refuse("Authorization must be Bearer <API key>"))?;
        st.keys.authenticate(&st.db, token).await.map(Auth)
    }
}

/// The authenticated caller, who must hold an admin key: a handler taking
/// `Admin` is refused (`403 forbidden`) for any other key before its body is
/// read.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Error> {
        let Auth(who) = Auth::from_request_parts(parts, st).await?;
        who.require_admin()?;
        Ok(Admin(who))
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
        let bytes = Bytes::from_request(req, st).await.map_err(body_error)?;
        parse_json(&bytes)
    }
}

/// Why a body could not be read: too large (413), not sent in time (408,
/// see `Limits::body`), or broken (400).
pub fn body_error(e: axum::extract::rejection::BytesRejection) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return Error::new(
            Code::PayloadTooLarge,
            format!("the body is larger than {} bytes", super::BODY_LIMIT),
        );
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return Error::new(Code::RequestTimeout, "the body did not arrive in time");
        }
        source = s.source();
    }
    Error::new(Code::InvalidBody, e.body_text())
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
            Code::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, Error> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            Code::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let digest = hex::encode(Sha256::digest(raw.to_string().as_bytes()));
    let value = serde_json::from_value(raw)
        .map_err(|e| Error::new(Code::InvalidRequest, format!("the body does not fit: {e}")))?;
    Ok(JsonBody { value, digest })
}

/// The base URL (`scheme://host[:port]`) a trusted proxy says the client
/// used, from `X-Forwarded-Proto` and `X-Forwarded-Host`. `None` unless the
/// peer is one of the configured `trusted_proxies` and names a plain host:
/// anyone else could name any host.
pub fn forwarded_base(
    inner: &crate::app::Inner,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<String> {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(peer),
        v4 => v4,
    };
    if !inner.trusted_proxies.iter().any(|net| net.contains(&peer)) {
        return None;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = first("x-forwarded-host").filter(|h| plain_host(h))?;
    let scheme = match first("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{host}"))
}

/// `host[:port]` of letters, digits and `.-:[]_`, at most 255 bytes.
fn plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// Where this gateway is reached: what a trusted proxy says, else the
/// configured (or listening-address) public URL, without a trailing `/`.
pub fn public_base(
    inner: &crate::app::Inner,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> String {
    forwarded_base(inner, headers, extensions).unwrap_or_else(|| {
        inner
            .public_url
            .as_deref()
            .unwrap_or("http://localhost")
            .trim_end_matches('/')
            .to_owned()
    })
}

/// `axum::extract::Path`, refused as a problem document (a segment that is
/// not UTF-8 once percent-decoded is `400 invalid_request`) rather than
/// axum's plain-text rejection.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Error> {
        match axum::extract::Path::<T>::from_request_parts(parts, st).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => {
                let status = e.status();
                Err(Error::new(Code::InvalidRequest, e.body_text()).with_status(status))
            }
        }
    }
}

/// `axum::extract::Query`, refused as `400 invalid_query` (e.g. a parameter
/// given twice) rather than axum's plain-text rejection.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, st)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| Error::new(Code::InvalidQuery, e.body_text()))
    }
}
