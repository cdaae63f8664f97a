//! The Meituan-style platform: signed form pushes to
//! `POST /channels/meituan/{event}`, answered `{"data":"ok"}`; and the
//! platform's API, called by the outbox (`POST {base}/api/v1/{path}`).
//! The wire format (signatures, forms, typed pushes and calls) is
//! `proto::meituan`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use proto::meituan::{self as mt, FormError, Push, PushError, SigError, TimestampError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{
    Channels, Discount, EventKind, Inbound, MEITUAN, MeituanConfig, OrderEvent, PlatformItem,
    PlatformOrder, RawPush, Refusal,
};
use crate::clock::Clock;
use crate::db::Db;
use crate::error::Code;
use crate::events::Hub;
use crate::outbox::{Delivery, Params, Sender};

/// Largest push body read.
pub const MAX_PUSH_BYTES: usize = 256 * 1024;

/// Verifies and decodes the platform's pushes.
pub struct Adapter {
    pub app_id: String,
    pub secret: SecretString,
    pub public_url: Option<String>,
    pub window_s: i64,
}

fn refuse(code: Code, msg: impl Into<String>) -> Refusal {
    Refusal::new(code, msg)
}

impl super::Adapter for Adapter {
    fn platform(&self) -> &str {
        MEITUAN
    }

    fn decode(&self, push: &RawPush<'_>) -> Result<Inbound, Refusal> {
        let params = mt::parse_form(push.body).map_err(|e| match e {
            FormError::TooLarge => refuse(Code::PayloadTooLarge, e.to_string()),
            _ => refuse(Code::MalformedPush, e.to_string()),
        })?;
        match mt::param(&params, "app_id") {
            Some(a) if a == self.app_id => {}
            Some(_) => {
                return Err(refuse(Code::UnknownAppId, "app_id is not ours"));
            }
            None => {
                return Err(refuse(Code::MissingAppId, "no app_id"));
            }
        }
        let secret = self.secret.expose_secret();
        let mut verdict = Err(SigError::Missing);
        for url in &push.urls {
            verdict = mt::verify(url, &params, secret);
            if verdict != Err(SigError::Mismatch) {
                break;
            }
        }
        match verdict {
            Ok(()) => {}
            Err(SigError::Missing) => {
                return Err(refuse(Code::MissingSignature, "no sig"));
            }
            Err(SigError::Mismatch) => {
                return Err(refuse(Code::BadSignature, "sig does not match"));
            }
        }
        let ts = mt::param(&params, "timestamp").unwrap_or_default();
        mt::check_timestamp(ts, push.now_s, self.window_s).map_err(|e| match e {
            TimestampError::Malformed => refuse(Code::BadTimestamp, e.to_string()),
            _ => refuse(Code::StaleTimestamp, e.to_string()),
        })?;
        let p = Push::parse(push.segment, &params).map_err(|e| match e {
            PushError::UnknownEvent(_) => refuse(Code::UnknownEvent, e.to_string()),
            _ => refuse(Code::MalformedPush, e.to_string()),
        })?;
        Ok(inbound(p))
    }
}

fn event(push: &Push, kind: EventKind, detail: serde_json::Value) -> Inbound {
    Inbound::Event(OrderEvent {
        platform: MEITUAN.to_owned(),
        platform_order_id: push.order_id().to_owned(),
        kind,
        dedupe_ref: push.dedup_key(),
        detail,
    })
}

fn inbound(push: Push) -> Inbound {
    match &push {
        Push::NewOrder(o) => Inbound::NewOrder(PlatformOrder {
            platform: MEITUAN.to_owned(),
            platform_order_id: o.order_id.clone(),
            platform_store_id: o.app_poi_code.clone(),
            dedupe_ref: push.dedup_key(),
            day_seq: Some(i64::from(o.day_seq)),
            note: o.caution.clone(),
            recipient_name: o.recipient_name.clone(),
            recipient_phone: o.recipient_phone.clone(),
            recipient_address: o.recipient_address.clone(),
            shipping_fee_fen: o.shipping_fee_fen,
            paid_fen: o.total_fen,
            original_fen: o.original_price_fen,
            store_receives_fen: o.poi_receive_amount_fen,
            items: o
                .items
                .iter()
                .map(|i| PlatformItem {
                    platform_sku: i.app_food_code.clone(),
                    name: i.food_name.clone(),
                    quantity: i64::from(i.quantity),
                    price_fen: i.price_fen,
                })
                .collect(),
            discounts: o
                .discounts
                .iter()
                .map(|d| Discount {
                    name: d.remark.clone(),
                    amount_fen: d.reduce_fee_fen,
                })
                .collect(),
        }),
        Push::Cancel(c) => event(
            &push,
            EventKind::Cancel,
            json!({"reason": c.reason, "reason_code": c.reason_code}),
        ),
        Push::RefundApply(r) => event(
            &push,
            EventKind::RefundApply,
            json!({"refund_id": r.refund_id, "reason": r.reason,
                   "amount": r.money_fen.map(|f| proto::order::Money::from_fen(f).to_string())}),
        ),
        Push::RefundCancel(r) => event(
            &push,
            EventKind::RefundCancel,
            json!({"refund_id": r.refund_id, "reason": r.reason}),
        ),
        Push::DeliveryStatus(d) => event(
            &push,
            EventKind::DeliveryStatus,
            json!({"logistics_status": d.logistics_status, "courier_name": d.courier_name,
                   "courier_phone": d.courier_phone}),
        ),
    }
}

fn answer(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn ng(r: &Refusal) -> Response {
    let code = match r.code {
        Code::BadSignature | Code::MissingSignature => mt::ERR_SIG,
        Code::StaleTimestamp | Code::BadTimestamp => mt::ERR_TIMESTAMP,
        Code::UnknownAppId | Code::MissingAppId => mt::ERR_APP_ID,
        _ => mt::ERR_PARAM,
    };
    answer(r.status(), mt::answer_ng(code, &r.message))
}

/// The URLs a push to `path` may have been signed for: the configured
/// public URL (the channel's own, else the gateway's), then what a trusted
/// proxy says the platform called (`forwarded`). Never the request's own
/// Host or X-Forwarded-* from an untrusted peer: anyone could name the
/// host a captured push was signed for.
pub fn candidate_urls(public: Option<&str>, forwarded: Option<&str>, path: &str) -> Vec<String> {
    let mut urls: Vec<String> = public
        .into_iter()
        .chain(forwarded)
        .map(|base| format!("{}{path}", base.trim_end_matches('/')))
        .collect();
    urls.dedup();
    urls
}

/// `POST /channels/meituan/{event}` (routed in `http/channels.rs`): `gateway_url`
/// is the gateway's configured public URL, `forwarded` the base a trusted
/// proxy says the platform called.
pub async fn push(
    channels: Option<&Channels>,
    db: &Db,
    hub: &Hub,
    gateway_url: Option<&str>,
    forwarded: Option<String>,
    event: String,
    req: Request,
) -> Response {
    let Some(channels) = channels else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            mt::answer_ng(
                mt::ERR_PARAM,
                "this gateway has no Meituan channel configured",
            ),
        );
    };
    let Some(adapter) = channels.meituan() else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            mt::answer_ng(
                mt::ERR_PARAM,
                "this gateway has no Meituan channel configured",
            ),
        );
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_PUSH_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            tracing::warn!(event, "meituan push refused: body too large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                mt::answer_ng(
                    mt::ERR_PARAM,
                    &format!("body larger than {MAX_PUSH_BYTES} bytes"),
                ),
            );
        }
    };
    let path = parts.uri.path().to_owned();
    let raw = RawPush {
        segment: &event,
        headers: &parts.headers,
        urls: candidate_urls(
            adapter.public_url.as_deref().or(gateway_url),
            forwarded.as_deref(),
            &path,
        ),
        body: &body,
        now_s: db.now_micros() / 1_000_000,
    };
    let inbound = match super::Adapter::decode(adapter, &raw) {
        Ok(i) => i,
        Err(r) => {
            tracing::warn!(
                event,
                code = r.code.as_str(),
                status = r.status().as_u16(),
                "meituan push refused: {}",
                r.message
            );
            return ng(&r);
        }
    };
    match super::ingest::apply(db, hub, inbound).await {
        Ok(outcome) => {
            tracing::debug!(event, ?outcome, "meituan push");
            answer(StatusCode::OK, mt::ANSWER_OK.to_owned())
        }
        Err(e) if e.is_server_error() => {
            e.log();
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                mt::answer_ng(mt::ERR_PARAM, "temporarily unavailable, retry"),
            )
        }
        Err(e) => {
            tracing::warn!(
                event,
                code = e.code.as_str(),
                "meituan push not applied: {}",
                e.message
            );
            answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                mt::answer_ng(mt::ERR_PARAM, &format!("{}: {}", e.code, e.message)),
            )
        }
    }
}

// ------------------------------------------------------------ the API client

/// Calls the platform's API for the outbox.
pub struct ApiClient {
    base_url: String,
    app_id: String,
    secret: SecretString,
    http: reqwest::Client,
    /// What a call's `timestamp` is read from.
    clock: Clock,
}

impl ApiClient {
    /// HTTPS with the public roots and `extra_ca_pem`'s certificates.
    pub fn with_extra_ca(
        config: &MeituanConfig,
        timeout: Duration,
        extra_ca_pem: Option<&str>,
    ) -> anyhow::Result<Self> {
        Ok(ApiClient {
            base_url: config.base_url.clone(),
            app_id: config.app_id.clone(),
            secret: config.secret.clone(),
            http: crate::outbound::client(
                timeout,
                timeout.min(Duration::from_secs(5)),
                extra_ca_pem,
                None,
            )?,
            clock: Clock::system(),
        })
    }

    /// The same client, stamping its calls with `clock`'s time.
    pub fn with_clock(self, clock: Clock) -> Self {
        ApiClient { clock, ..self }
    }

    async fn call(&self, path: &str, params: &Params) -> Delivery {
        let url = mt::api_url(&self.base_url, path);
        let mut form: Vec<(String, String)> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        form.push(("app_id".into(), self.app_id.clone()));
        form.push((
            "timestamp".into(),
            (self.clock.now_micros() / 1_000_000).to_string(),
        ));
        let sig = mt::sign(&url, &form, self.secret.expose_secret());
        form.push(("sig".into(), sig));
        let resp = self
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(mt::encode_form(&form))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Delivery::Retry(format!("{path}: {}", crate::outbound::describe(&e))),
        };
        let status = resp.status();
        let body = match crate::outbound::read_capped(resp, crate::outbound::MAX_ANSWER_BYTES).await
        {
            Ok(b) => b,
            Err(e) => return Delivery::Retry(format!("{path}: {e}")),
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Delivery::Retry(format!("{path}: HTTP {status}"));
        }
        match mt::parse_answer(&body) {
            Ok(()) => Delivery::Delivered,
            // A confirm sent again (its first answer lost) is refused by the
            // platform as already done: it has taken effect.
            Err(mt::CallError::Rejected { code, msg })
                if path == "order/confirm" && code == mt::ERR_STATE && msg.contains("已经确认") =>
            {
                Delivery::Delivered
            }
            // Signature, clock or app id trouble may be ours and pass: retry.
            Err(mt::CallError::Rejected { code, msg })
                if matches!(code, mt::ERR_SIG | mt::ERR_TIMESTAMP | mt::ERR_APP_ID) =>
            {
                Delivery::Retry(format!("{path}: platform refused {code} {msg}"))
            }
            Err(mt::CallError::Rejected { code, msg }) => {
                Delivery::Refused(format!("{path}: platform refused {code} {msg}"))
            }
            Err(e) => Delivery::Retry(format!("{path}: HTTP {status}: {e}")),
        }
    }
}

impl Sender for ApiClient {
    fn send<'a>(&'a self, path: &'a str, params: &'a Params) -> BoxFuture<'a, Delivery> {
        Box::pin(self.call(path, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Adapter as _;
    use axum::http::HeaderMap;
    use proto::meituan::{CancelPush, PushItem};

    const SECRET: &str = "s3cret";
    const NOW: i64 = 1_800_000_000;

    fn adapter(public_url: Option<&str>) -> Adapter {
        Adapter {
            app_id: "7".into(),
            secret: SecretString::from(SECRET.to_owned()),
            public_url: public_url.map(str::to_owned),
            window_s: 300,
        }
    }

    fn new_order() -> Push {
        Push::NewOrder(mt::NewOrderPush {
            order_id: "123".into(),
            app_poi_code: "S001".into(),
            day_seq: 4,
            ctime: NOW,
            caution: "少辣".into(),
            recipient_name: "王".into(),
            recipient_phone: "138".into(),
            recipient_address: "路".into(),
            shipping_fee_fen: 500,
            total_fen: 1200,
            original_price_fen: 1300,
            poi_receive_amount_fen: 900,
            items: vec![PushItem {
                app_food_code: "COLA".into(),
                food_name: "可乐".into(),
                quantity: 2,
                price_fen: 350,
                unit: "份".into(),
            }],
            discounts: Vec::new(),
        })
    }

    fn decode(
        a: &Adapter,
        host: &str,
        path: &str,
        body: &str,
        now: i64,
    ) -> Result<Inbound, Refusal> {
        // `host` stands for the gateway's own address (what it listens on).
        let headers = HeaderMap::new();
        let own = format!("http://{host}");
        let segment = path.rsplit('/').next().unwrap();
        let push = RawPush {
            segment,
            headers: &headers,
            urls: candidate_urls(Some(a.public_url.as_deref().unwrap_or(&own)), None, path),
            body: body.as_bytes(),
            now_s: now,
        };
        a.decode(&push)
    }

    #[test]
    fn signed_pushes_decode_and_bad_ones_are_refused_with_their_code() {
        let path = "/channels/meituan/new_order";
        let signed = |url: &str, app: &str, ts: i64| {
            mt::encode_form(&new_order().signed_params(url, app, SECRET, ts))
        };
        let good = signed("http://gw:8080/channels/meituan/new_order", "7", NOW);
        let a = adapter(None);
        let Ok(Inbound::NewOrder(o)) = decode(&a, "gw:8080", path, &good, NOW) else {
            panic!("a good push decodes");
        };
        assert_eq!(
            (
                o.platform_order_id.as_str(),
                o.day_seq,
                o.paid_fen,
                o.items[0].quantity
            ),
            ("123", Some(4), 1200, 2)
        );
        assert_eq!(o.dedupe_ref, "new_order:123");
        // Signed for the public URL behind a proxy.
        let public = signed(
            "https://gw.example.com/channels/meituan/new_order",
            "7",
            NOW,
        );
        let a_pub = adapter(Some("https://gw.example.com/"));
        assert!(decode(&a_pub, "10.0.0.5:8080", path, &public, NOW).is_ok());

        let cases: Vec<(String, &str, i64, StatusCode, &str)> = vec![
            (
                public.clone(),
                "10.0.0.5:8080",
                NOW,
                StatusCode::UNAUTHORIZED,
                "bad_signature",
            ),
            (
                good.replace("sig=", "sig=0"),
                "gw:8080",
                NOW,
                StatusCode::UNAUTHORIZED,
                "bad_signature",
            ),
            (
                good.replace("order_id=123", "order_id=124"),
                "gw:8080",
                NOW,
                StatusCode::UNAUTHORIZED,
                "bad_signature",
            ),
            (
                good.clone(),
                "gw:8080",
                NOW + 301,
                StatusCode::UNAUTHORIZED,
                "stale_timestamp",
            ),
            (
                good.clone(),
                "gw:8080",
                NOW - 301,
                StatusCode::UNAUTHORIZED,
                "stale_timestamp",
            ),
            (
                signed("http://gw:8080/channels/meituan/new_order", "8", NOW),
                "gw:8080",
                NOW,
                StatusCode::FORBIDDEN,
                "unknown_app_id",
            ),
            (
                "order_id=1".into(),
                "gw:8080",
                NOW,
                StatusCode::UNAUTHORIZED,
                "missing_app_id",
            ),
            (
                "app_id=7&order_id=1".into(),
                "gw:8080",
                NOW,
                StatusCode::UNAUTHORIZED,
                "missing_signature",
            ),
            (
                "a=%zz".into(),
                "gw:8080",
                NOW,
                StatusCode::BAD_REQUEST,
                "malformed_push",
            ),
            (
                "a=1&a=2".into(),
                "gw:8080",
                NOW,
                StatusCode::BAD_REQUEST,
                "malformed_push",
            ),
        ];
        for (body, host, now, status, code) in cases {
            let r = decode(&a, host, path, &body, now).expect_err(&body);
            assert_eq!((r.status(), r.code.as_str()), (status, code), "{body}");
        }
        // Well signed, but not an order the codec accepts.
        let mut p = new_order().params();
        p.retain(|(k, _)| k != "total");
        p.push(("app_id".into(), "7".into()));
        p.push(("timestamp".into(), NOW.to_string()));
        let url = "http://gw:8080/channels/meituan/new_order";
        let sig = mt::sign(url, &p, SECRET);
        p.push(("sig".into(), sig));
        let r = decode(&a, "gw:8080", path, &mt::encode_form(&p), NOW).unwrap_err();
        assert_eq!(
            (r.status(), r.code.as_str()),
            (StatusCode::BAD_REQUEST, "malformed_push")
        );
        // An event the platform does not have.
        let cancel = Push::Cancel(CancelPush {
            order_id: "123".into(),
            reason_code: 1002,
            reason: "用户取消".into(),
        });
        let url = "http://gw:8080/channels/meituan/nope";
        let body = mt::encode_form(&cancel.signed_params(url, "7", SECRET, NOW));
        let r = decode(&a, "gw:8080", "/channels/meituan/nope", &body, NOW).unwrap_err();
        assert_eq!(r.code.as_str(), "unknown_event");
        let url = "http://gw:8080/channels/meituan/cancel";
        let body = mt::encode_form(&cancel.signed_params(url, "7", SECRET, NOW));
        let Ok(Inbound::Event(e)) = decode(&a, "gw:8080", "/channels/meituan/cancel", &body, NOW)
        else {
            panic!("cancel decodes");
        };
        assert_eq!(
            (e.kind, e.detail["reason_code"].as_i64()),
            (EventKind::Cancel, Some(1002))
        );
    }
}
