//! What a push does, from the bytes the HTTP layer read to the answer the
//! platform gets: the platform verifies and decodes it, `ingest` applies it.
//! The routes (reading the body with its cap, sending the answer) are in
//! `http/channels.rs`.

use ::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Channels;
use super::ingest::{self, Outcome};
use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::Hub;
use crate::orders::Writer;
use crate::platforms::meituan::{self, MAX_PUSH_BYTES, Meituan};
use crate::platforms::webhook::{MAX_BODY_BYTES, Webhook};
use crate::platforms::{Answer, Platform, RawPush};

/// A push as the HTTP layer read it.
pub struct Received<'a> {
    /// The last path segment (the Meituan event, the webhook platform).
    pub segment: &'a str,
    /// The request's path, as signed.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// `None`: the body was longer than the platform's cap.
    pub body: Option<&'a [u8]>,
}

/// `POST /channels/meituan/{event}`: `gateway_url` is the gateway's
/// configured public URL, `forwarded` the base a trusted proxy says the
/// platform called. Answered in Meituan's format, whatever happens.
pub async fn meituan(
    channels: Option<&Channels>,
    db: &Db,
    hub: &Hub,
    writer: &Writer,
    gateway_url: Option<&str>,
    forwarded: Option<&str>,
    req: Received<'_>,
) -> Answer {
    let event = req.segment;
    let Some((channels, credentials)) = channels.and_then(|c| Some((c, c.meituan_credentials()?)))
    else {
        return meituan::answer_ng(
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway has no Meituan channel configured",
        );
    };
    let Some(body) = req.body else {
        tracing::warn!(event, "meituan push refused: body too large");
        return meituan::answer_ng(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {MAX_PUSH_BYTES} bytes"),
        );
    };
    let raw = RawPush {
        segment: event,
        headers: req.headers,
        urls: meituan::candidate_urls(
            channels.config.public_url.as_deref().or(gateway_url),
            forwarded,
            req.path,
        ),
        body,
        now_s: db.now_micros() / 1_000_000,
    };
    let inbound = match Meituan.decode(&credentials, &raw) {
        Ok(i) => i,
        Err(r) => {
            tracing::warn!(
                event,
                code = r.code.as_str(),
                status = r.status().as_u16(),
                "meituan push refused: {}",
                r.message
            );
            return meituan::answer_refused(&r);
        }
    };
    match ingest::apply(db, hub, writer, inbound).await {
        Ok(outcome) => {
            tracing::debug!(event, ?outcome, "meituan push");
            meituan::answer_ok()
        }
        Err(e) if e.is_server_error() => {
            e.log();
            meituan::answer_ng(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry",
            )
        }
        Err(e) => {
            tracing::warn!(
                event,
                code = e.code.as_str(),
                "meituan push not applied: {}",
                e.message
            );
            meituan::answer_ng(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{}: {}", e.code, e.message),
            )
        }
    }
}

/// `POST /channels/webhook/{platform}`: what the push did (answered as
/// JSON), or why it was refused (a problem).
pub async fn webhook(
    channels: Option<&Channels>,
    db: &Db,
    hub: &Hub,
    writer: &Writer,
    req: Received<'_>,
) -> Result<Value> {
    let platform = req.segment;
    let Some(credentials) = channels.and_then(|c| c.webhook_credentials(platform)) else {
        return Err(Error::new(
            Code::UnknownPlatform,
            format!("no webhook platform {platform:?}"),
        ));
    };
    let Some(body) = req.body else {
        return Err(Error::new(
            Code::PayloadTooLarge,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    };
    let raw = RawPush {
        segment: platform,
        headers: req.headers,
        urls: Vec::new(),
        body,
        now_s: db.now_micros() / 1_000_000,
    };
    let inbound = Webhook.decode(&credentials, &raw).map_err(|r| {
        tracing::warn!(
            platform,
            code = r.code.as_str(),
            "webhook refused: {}",
            r.message
        );
        Error::new(r.code, r.message)
    })?;
    let body = match ingest::apply(db, hub, writer, inbound).await? {
        Outcome::Created { order_id } => {
            json!({"status": "accepted", "outcome": "created", "order_id": order_id})
        }
        Outcome::Duplicate { order_id } => {
            json!({"status": "duplicate", "order_id": order_id})
        }
        Outcome::Applied { order_id } => {
            json!({"status": "accepted", "outcome": "applied", "order_id": order_id})
        }
        Outcome::Held => json!({"status": "accepted", "outcome": "held"}),
        Outcome::Refused { order_id, why } => {
            json!({"status": "accepted", "outcome": "refused", "order_id": order_id, "detail": why})
        }
    };
    Ok(body)
}
