//! The Meituan-style platform, all of it: its signed form pushes (to
//! `POST /channels/meituan/{event}`, answered `{"data":"ok"}`), the calls a
//! store's actions and item changes become, and the client of its API (`POST
//! {base}/api/v1/{path}`, used by the outbox's dispatcher). The wire format
//! (signatures, forms, typed pushes and calls) is `proto::meituan`.

use std::time::Duration;

use ::http::{StatusCode, header};
use futures::future::BoxFuture;
use proto::meituan::{
    self as mt, FoodStock, FormError, Push, PushError, SellStatus, SigError, SkuStock,
    TimestampError,
};
use proto::order::{CatalogItem, OrderStatus};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{
    Answer, Call, Credentials, Delivery, Discount, EventKind, Inbound, ItemCall, ItemCode,
    ItemSync, OrderAction, OrderEvent, Params, Platform, PlatformItem, PlatformOrder, RawPush,
    Refusal, Sender,
};
use crate::clock::{self, Clock};
use crate::error::Code;

/// The platform's name, as orders and mappings show it.
pub const MEITUAN: &str = "meituan";

/// Largest push body read.
pub const MAX_PUSH_BYTES: usize = 256 * 1024;

/// Where the platform's API is and who we are to it.
#[derive(Clone)]
pub struct MeituanConfig {
    /// The platform's API base; calls go to `{base_url}/api/v1/{path}`.
    pub base_url: String,
    pub app_id: String,
    pub secret: SecretString,
    /// Platform store id → our store id, beyond the default (the same id).
    pub stores: Vec<(String, String)>,
}

impl std::fmt::Debug for MeituanConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeituanConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .field("stores", &self.stores)
            .finish()
    }
}

/// The Meituan-style platform (see the module).
pub struct Meituan;

fn refuse(code: Code, msg: impl Into<String>) -> Refusal {
    Refusal::new(code, msg)
}

impl Platform for Meituan {
    fn kind(&self) -> &'static str {
        MEITUAN
    }

    fn decode(
        &self,
        credentials: &Credentials<'_>,
        push: &RawPush<'_>,
    ) -> Result<Inbound, Refusal> {
        let params = mt::parse_form(push.body).map_err(|e| match e {
            FormError::TooLarge => refuse(Code::PayloadTooLarge, e.to_string()),
            _ => refuse(Code::MalformedPush, e.to_string()),
        })?;
        match mt::param(&params, "app_id") {
            Some(a) if Some(a) == credentials.app_id => {}
            Some(_) => {
                return Err(refuse(Code::UnknownAppId, "app_id is not ours"));
            }
            None => {
                return Err(refuse(Code::MissingAppId, "no app_id"));
            }
        }
        let mut verdict = Err(SigError::Missing);
        for url in &push.urls {
            verdict = mt::verify(url, &params, credentials.secret);
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
        mt::check_timestamp(ts, push.now_s, credentials.window_s).map_err(|e| match e {
            TimestampError::Malformed => refuse(Code::BadTimestamp, e.to_string()),
            _ => refuse(Code::StaleTimestamp, e.to_string()),
        })?;
        let p = Push::parse(push.segment, &params).map_err(|e| match e {
            PushError::UnknownEvent(_) => refuse(Code::UnknownEvent, e.to_string()),
            _ => refuse(Code::MalformedPush, e.to_string()),
        })?;
        Ok(inbound(p))
    }

    fn order_call(&self, platform_order_id: &str, action: &OrderAction<'_>) -> Option<Call> {
        let order_id = platform_order_id.to_owned();
        let call = match *action {
            OrderAction::Status { to, reason } => match to {
                OrderStatus::Accepted => mt::Call::Confirm { order_id },
                OrderStatus::Rejected | OrderStatus::Cancelled => {
                    let (reason_code, reason) = reason_code(reason.unwrap_or_default());
                    mt::Call::Cancel {
                        order_id,
                        reason_code,
                        reason,
                    }
                }
                OrderStatus::Ready => mt::Call::PreparationMealComplete { order_id },
                _ => return None,
            },
            OrderAction::Delivering => mt::Call::Delivering { order_id },
            OrderAction::Arrived => mt::Call::Arrived { order_id },
            OrderAction::RefundAgree { reason } => mt::Call::RefundAgree {
                order_id,
                reason: reason.to_owned(),
            },
            OrderAction::RefundReject { reason } => mt::Call::RefundReject {
                order_id,
                reason: reason.to_owned(),
            },
        };
        Some(call_of(&call))
    }

    fn item_calls(
        &self,
        code: &ItemCode,
        item: &CatalogItem,
        what: ItemSync,
        now: i64,
    ) -> Vec<ItemCall> {
        let (pstore, psku) = (&code.platform_store, &code.platform_sku);
        let mut calls = Vec::new();
        let mut push = |call: mt::Call, at_snooze_end: Option<i64>| {
            calls.push(ItemCall {
                call: call_of(&call),
                at_snooze_end,
            });
        };
        if what.stock {
            let count = item.sellable.milli() / code.per_item_milli.max(1);
            push(
                mt::Call::SkuStock {
                    app_poi_code: pstore.clone(),
                    foods: vec![FoodStock {
                        app_food_code: psku.clone(),
                        skus: vec![SkuStock {
                            sku_id: psku.clone(),
                            stock: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
                        }],
                    }],
                },
                None,
            );
        }
        if what.status {
            let on_sale = item.listed && item.snoozed_until.is_none();
            let status = |s| mt::Call::SellStatus {
                app_poi_code: pstore.clone(),
                sell_status: s,
                app_food_codes: vec![psku.clone()],
            };
            push(
                status(if on_sale {
                    SellStatus::OnSale
                } else {
                    SellStatus::SoldOut
                }),
                None,
            );
            let until = item
                .snoozed_until
                .as_deref()
                .and_then(clock::parse_rfc3339)
                .filter(|u| *u > now);
            if let (true, Some(until)) = (item.listed, until) {
                push(status(SellStatus::OnSale), Some(until));
            }
        }
        calls
    }
}

fn call_of(call: &mt::Call) -> Call {
    let (path, params) = call_parts(call);
    Call { path, params }
}

/// A typed call's path and business parameters.
pub fn call_parts(call: &mt::Call) -> (String, Params) {
    (call.path().to_owned(), call.params().into_iter().collect())
}

/// A reason may start with the platform's reason code (`"2008 售罄"`);
/// otherwise it is a store cancel.
fn reason_code(reason: &str) -> (i32, String) {
    let reason = reason.trim();
    let digits: String = reason.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<i32>() {
        Ok(code) if !digits.is_empty() && digits.len() <= 6 => {
            let rest = reason[digits.len()..]
                .trim_start_matches([' ', ':', '-'])
                .trim();
            (code, rest.to_owned())
        }
        _ => (mt::REASON_CODE_STORE_CANCEL, reason.to_owned()),
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

// ------------------------------------------------------------ answers

fn answer(status: StatusCode, body: String) -> Answer {
    Answer {
        status,
        content_type: "application/json; charset=utf-8",
        body,
    }
}

/// The push was taken: `{"data":"ok"}`.
pub fn answer_ok() -> Answer {
    answer(StatusCode::OK, mt::ANSWER_OK.to_owned())
}

/// The push was not taken (`{"data":"ng", …}`), with `status`.
pub fn answer_ng(status: StatusCode, msg: &str) -> Answer {
    answer(status, mt::answer_ng(mt::ERR_PARAM, msg))
}

/// A refused push, with the platform's error code for the reason.
pub fn answer_refused(r: &Refusal) -> Answer {
    let code = match r.code {
        Code::BadSignature | Code::MissingSignature => mt::ERR_SIG,
        Code::StaleTimestamp | Code::BadTimestamp => mt::ERR_TIMESTAMP,
        Code::UnknownAppId | Code::MissingAppId => mt::ERR_APP_ID,
        _ => mt::ERR_PARAM,
    };
    answer(r.status(), mt::answer_ng(code, &r.message))
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
        Box::pin(async move {
            let started = std::time::Instant::now();
            let delivery = self.call(path, params).await;
            let outcome = match &delivery {
                Delivery::Delivered => "delivered",
                Delivery::Retry(_) => "retry",
                Delivery::Refused(_) => "refused",
            };
            crate::meter::outbound("meituan", outcome, started);
            delivery
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderMap;
    use proto::meituan::{CancelPush, PushItem};

    const SECRET: &str = "s3cret";
    const NOW: i64 = 1_800_000_000;

    /// This gateway as the platform knows it (app id 7), behind
    /// `public_url` if any.
    struct Adapter {
        public_url: Option<String>,
    }

    fn adapter(public_url: Option<&str>) -> Adapter {
        Adapter {
            public_url: public_url.map(str::to_owned),
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
        let credentials = Credentials {
            app_id: Some("7"),
            secret: SECRET,
            window_s: 300,
        };
        Meituan.decode(&credentials, &push)
    }

    #[test]
    fn reason_codes_lead_the_reason_or_default_to_a_store_cancel() {
        assert_eq!(reason_code("2008 售罄"), (2008, "售罄".into()));
        assert_eq!(reason_code("2007: 太忙"), (2007, "太忙".into()));
        assert_eq!(
            reason_code("售罄"),
            (mt::REASON_CODE_STORE_CANCEL, "售罄".into())
        );
        assert_eq!(
            reason_code(""),
            (mt::REASON_CODE_STORE_CANCEL, String::new())
        );
        assert_eq!(
            reason_code("12345678901 big"),
            (mt::REASON_CODE_STORE_CANCEL, "12345678901 big".into())
        );
    }

    #[test]
    fn store_actions_map_to_platform_calls() {
        let status = |to, reason| OrderAction::Status { to, reason };
        let call = |a: OrderAction<'_>| Meituan.order_call("99", &a).map(|c| c.path);
        assert_eq!(
            call(status(OrderStatus::Accepted, None)).as_deref(),
            Some("order/confirm")
        );
        assert_eq!(
            call(status(OrderStatus::Rejected, Some("x"))).as_deref(),
            Some("order/cancel")
        );
        assert_eq!(
            call(status(OrderStatus::Cancelled, Some("x"))).as_deref(),
            Some("order/cancel")
        );
        assert_eq!(
            call(status(OrderStatus::Ready, None)).as_deref(),
            Some("order/preparationMealComplete")
        );
        assert_eq!(call(status(OrderStatus::Completed, None)), None);
        let c = Meituan
            .order_call("99", &status(OrderStatus::Rejected, Some("2008 售罄")))
            .unwrap();
        assert_eq!(c.params["reason_code"], "2008");
        assert_eq!(c.params["order_id"], "99");
        assert_eq!(
            call(OrderAction::RefundReject { reason: "no" }).as_deref(),
            Some(
                mt::Call::RefundReject {
                    order_id: "99".into(),
                    reason: "no".into()
                }
                .path()
            )
        );
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
