//! The Alipay-shaped client: the open API's barcode pay (`alipay.trade.pay`,
//! `.query`, `.cancel`, `.refund`) as RSA2-signed form POSTs to
//! `{base}/gateway.do`, answers trusted only when Alipay's signature over
//! the raw `…_response` text verifies. The same outcomes as WeChat's, so the
//! same flow drives both.

use std::time::Duration;

use futures::future::BoxFuture;
use proto::alipay::{self as ali, Answer, PayBiz, PrivateKey, PublicKey, RefundBiz, TradeBiz};
use proto::alipay::{TradeStatus, code, method, sub};
use proto::wechatpay::CodeKind;
use serde::Serialize;

use super::provider::{
    self, Micropay, MicropayRequest, Provider, Query, Refund, RefundRequest, RefundStatus, Reverse,
};

/// Our stable code for Alipay's definite refusal of a charge.
fn decline_code(sub_code: &str) -> &'static str {
    match sub_code {
        sub::BALANCE_NOT_ENOUGH => "insufficient_balance",
        sub::AUTH_CODE_INVALID => "invalid_payment_code",
        _ => "payment_declined",
    }
}

pub struct Alipay {
    http: reqwest::Client,
    url: String,
    app_id: String,
    /// Ours: signs requests. Its `Debug` is redacted.
    key: PrivateKey,
    /// Alipay's: checks answers.
    alipay_key: PublicKey,
}

impl Alipay {
    pub fn new(
        base_url: &str,
        app_id: String,
        key: PrivateKey,
        alipay_key: PublicKey,
        timeout: Duration,
        extra_ca_pem: Option<&str>,
    ) -> anyhow::Result<Self> {
        let http = provider::http_client(timeout, extra_ca_pem, None)?;
        Ok(Alipay {
            http,
            url: format!("{}{}", base_url.trim_end_matches('/'), ali::PATH_GATEWAY),
            app_id,
            key,
            alipay_key,
        })
    }

    /// Signs and sends one call; the answer must verify. `Err` is a reason
    /// the outcome is unknown.
    async fn call<B: Serialize>(&self, method: &str, biz: &B) -> Result<Answer, String> {
        let params = ali::signed_request(&self.app_id, method, &timestamp(), biz, &self.key)
            .map_err(|e| format!("signing: {e}"))?;
        let body = provider::post(
            &self.http,
            &self.url,
            "application/x-www-form-urlencoded;charset=utf-8",
            ali::encode_form(&params),
        )
        .await?;
        let text = std::str::from_utf8(&body).map_err(|_| "the answer is not UTF-8".to_owned())?;
        ali::open_answer(text, method, &self.alipay_key).map_err(|e| e.0)
    }
}

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8), as Alipay expects.
fn timestamp() -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let now = time::OffsetDateTime::now_utc().to_offset(offset);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    now.format(&format).unwrap_or_default()
}

/// `code` and `sub_code` for the exchange log.
fn why(a: &Answer) -> String {
    match a.sub_code() {
        "" => a.code.clone(),
        s => format!("{} {s}", a.code),
    }
}

impl Provider for Alipay {
    fn name(&self) -> &'static str {
        "alipay"
    }

    fn kind(&self) -> CodeKind {
        CodeKind::Alipay
    }

    fn micropay<'a>(&'a self, req: MicropayRequest<'a>) -> BoxFuture<'a, Micropay> {
        Box::pin(async move {
            let biz = PayBiz {
                out_trade_no: req.out_trade_no.into(),
                scene: ali::SCENE_BAR_CODE.into(),
                auth_code: req.auth_code.into(),
                total_amount: ali::yuan(req.total_fen),
                subject: req.body.into(),
            };
            let a = match self.call(method::PAY, &biz).await {
                Ok(a) => a,
                Err(why) => return Micropay::Unknown { why },
            };
            if a.is_success() {
                return Micropay::Paid {
                    transaction_id: a.trade_no.unwrap_or_default(),
                };
            }
            match (a.code.as_str(), a.sub_code()) {
                (code::WAITING | code::UNKNOWN, _)
                | (_, sub::SYSTEM_ERROR | sub::TRADE_HAS_SUCCESS) => {
                    Micropay::Unknown { why: why(&a) }
                }
                (_, s) => Micropay::Declined {
                    code: decline_code(s),
                    provider_code: why(&a),
                },
            }
        })
    }

    fn query<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Query> {
        Box::pin(async move {
            let biz = TradeBiz {
                out_trade_no: out_trade_no.into(),
            };
            let a = match self.call(method::QUERY, &biz).await {
                Ok(a) => a,
                Err(why) => return Query::Unknown { why },
            };
            if !a.is_success() {
                return if a.sub_code() == sub::TRADE_NOT_EXIST {
                    Query::NotFound
                } else {
                    Query::Unknown { why: why(&a) }
                };
            }
            let status = a.trade_status.clone().unwrap_or_default();
            match TradeStatus::parse(&status) {
                Some(TradeStatus::TradeSuccess | TradeStatus::TradeFinished) => Query::Paid {
                    transaction_id: a.trade_no.unwrap_or_default(),
                },
                Some(TradeStatus::WaitBuyerPay) => Query::Waiting,
                Some(TradeStatus::TradeClosed) => Query::Reversed,
                None => Query::Unknown {
                    why: format!("unknown trade_status {status:?}"),
                },
            }
        })
    }

    fn reverse<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Reverse> {
        Box::pin(async move {
            let biz = TradeBiz {
                out_trade_no: out_trade_no.into(),
            };
            let a = match self.call(method::CANCEL, &biz).await {
                Ok(a) => a,
                Err(why) => return Reverse::Retry { why },
            };
            if a.is_success() {
                return Reverse::Done;
            }
            if a.retry_flag.as_deref() == Some("Y")
                || a.code == code::UNKNOWN
                || a.sub_code() == sub::SYSTEM_ERROR
            {
                Reverse::Retry { why: why(&a) }
            } else {
                Reverse::Refused {
                    provider_code: why(&a),
                }
            }
        })
    }

    fn refund<'a>(&'a self, req: RefundRequest<'a>) -> BoxFuture<'a, Refund> {
        Box::pin(async move {
            let biz = RefundBiz {
                out_trade_no: req.out_trade_no.into(),
                refund_amount: ali::yuan(req.refund_fen),
                out_request_no: req.out_refund_no.into(),
            };
            let a = match self.call(method::REFUND, &biz).await {
                Ok(a) => a,
                Err(why) => return Refund::Unknown { why },
            };
            if a.is_success() {
                // Alipay has no id of its own per refund: the trade's, and ours.
                return Refund::Done {
                    refund_ref: format!("{}/{}", a.trade_no.unwrap_or_default(), req.out_refund_no),
                };
            }
            match (a.code.as_str(), a.sub_code()) {
                (code::UNKNOWN, _) | (_, sub::SYSTEM_ERROR) => Refund::Unknown { why: why(&a) },
                (_, sub::REFUND_AMT_NOT_EQUAL_TOTAL) => Refund::Refused {
                    code: "refund_exceeds_paid",
                    provider_code: why(&a),
                },
                _ => Refund::Refused {
                    code: "refund_refused",
                    provider_code: why(&a),
                },
            }
        })
    }

    // PLACEHOLDER until the refund query client lands (issue 11).
    fn refund_query<'a>(
        &'a self,
        _out_trade_no: &'a str,
        _out_refund_no: &'a str,
    ) -> BoxFuture<'a, RefundStatus> {
        Box::pin(async move {
            RefundStatus::Unknown {
                why: "refund query not built yet".into(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_same_codes_as_wechat() {
        assert_eq!(
            decline_code("ACQ.BUYER_BALANCE_NOT_ENOUGH"),
            "insufficient_balance"
        );
        assert_eq!(
            decline_code("ACQ.PAYMENT_AUTH_CODE_INVALID"),
            "invalid_payment_code"
        );
        assert_eq!(decline_code("ACQ.SOMETHING_NEW"), "payment_declined");
    }

    #[test]
    fn timestamps_have_alipays_shape() {
        assert!(ali::valid_timestamp(&timestamp()));
    }
}
