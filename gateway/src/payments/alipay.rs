//! The Alipay-shaped client: the open API's barcode pay (`alipay.trade.pay`,
//! `.query`, `.cancel`, `.refund`) as RSA2-signed form POSTs to
//! `{base}/gateway.do`, answers trusted only when Alipay's signature over
//! the raw `…_response` text verifies. The same outcomes as WeChat's, so the
//! same flow drives both.

use std::time::Duration;

use futures::future::BoxFuture;
use proto::alipay::{
    self as ali, Answer, PayBiz, PrivateKey, PublicKey, RefundBiz, RefundQueryBiz, TradeBiz,
};
use proto::alipay::{TradeStatus, code, method, sub};
use proto::wechatpay::CodeKind;
use serde::Serialize;

use crate::error::Code;

use super::provider::{
    self, Micropay, MicropayRequest, Provider, Query, Refund, RefundRequest, RefundStatus, Reverse,
};

/// Our stable code for Alipay's definite refusal of a charge.
fn decline_code(sub_code: &str) -> Code {
    match sub_code {
        sub::BALANCE_NOT_ENOUGH | sub::BANKCARD_BALANCE_NOT_ENOUGH => Code::InsufficientBalance,
        sub::AUTH_CODE_INVALID => Code::InvalidPaymentCode,
        _ => Code::PaymentDeclined,
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
            "alipay",
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

/// Alipay has no id of its own per refund: the trade's, and ours.
fn refund_ref(a: &Answer, out_request_no: &str) -> String {
    format!("{}/{out_request_no}", a.trade_no.as_deref().unwrap_or(""))
}

/// What a verified `alipay.trade.cancel` answer says.
fn cancel_outcome(a: &Answer) -> Reverse {
    if a.is_success() {
        return Reverse::Done;
    }
    // Cancelling a paid trade refunds it: a merchant balance short is
    // retryable once the account is topped up.
    if a.retry_flag.as_deref() == Some("Y")
        || a.code == code::UNKNOWN
        || matches!(
            a.sub_code(),
            sub::SYSTEM_ERROR | sub::SELLER_BALANCE_NOT_ENOUGH
        )
    {
        Reverse::Retry { why: why(a) }
    } else {
        Reverse::Refused {
            provider_code: why(a),
        }
    }
}

/// What a verified `alipay.trade.refund` answer says of refund
/// `out_request_no`.
fn refund_outcome(a: &Answer, out_request_no: &str) -> Refund {
    if a.is_success() {
        // Accepted (fund_change Y or N alike): its outcome comes
        // from the refund query.
        return Refund::Done {
            refund_ref: refund_ref(a, out_request_no),
        };
    }
    match (a.code.as_str(), a.sub_code()) {
        // The merchant's own balance is short: not the customer's
        // fault, and it works once the account is topped up; the
        // refund stays pending under its out_request_no.
        (code::UNKNOWN, _) | (_, sub::SYSTEM_ERROR | sub::SELLER_BALANCE_NOT_ENOUGH) => {
            Refund::Unknown { why: why(a) }
        }
        // More than is still refundable (REFUND_AMT_NOT_EQUAL_TOTAL
        // is what a refund without out_request_no gets instead).
        (_, sub::REASON_TRADE_REFUND_FEE_ERR | sub::REFUND_AMT_NOT_EQUAL_TOTAL) => {
            Refund::Refused {
                code: Code::RefundExceedsPaid,
                provider_code: why(a),
            }
        }
        _ => Refund::Refused {
            code: Code::RefundRefused,
            provider_code: why(a),
        },
    }
}

/// What a verified `alipay.trade.fastpay.refund.query` answer says of the
/// refund `out_request_no`. Code 10000 only means the query worked: refund
/// data (`refund_amount`) with `refund_status` `REFUND_SUCCESS` is a refund
/// done; refund data without a status is one not done yet (the current
/// documentation: "not received or failed", and it may still succeed later,
/// so ask again); no refund data is a refund Alipay never took, which may
/// be sent again under the same `out_request_no`.
fn refund_status(a: &Answer, out_request_no: &str) -> RefundStatus {
    if !a.is_success() {
        return if a.code == code::FAILED && a.sub_code() == sub::TRADE_NOT_EXIST {
            RefundStatus::NotFound
        } else {
            RefundStatus::Unknown { why: why(a) }
        };
    }
    let amount = match a.refund_amount.as_deref() {
        None | Some("") => return RefundStatus::NotFound,
        Some(amount) => amount,
    };
    if ali::fen(amount).is_none() {
        return RefundStatus::Unknown {
            why: format!("unreadable refund_amount {amount:?}"),
        };
    }
    if let Some(theirs) = a.out_request_no.as_deref().filter(|s| !s.is_empty())
        && theirs != out_request_no
    {
        return RefundStatus::Unknown {
            why: format!("the answer is for refund {theirs:?}"),
        };
    }
    match a.refund_status.as_deref() {
        Some(ali::REFUND_SUCCESS) => RefundStatus::Succeeded {
            refund_ref: refund_ref(a, out_request_no),
        },
        None | Some("") => RefundStatus::Processing,
        Some(other) => RefundStatus::Unknown {
            why: format!("unknown refund_status {other:?}"),
        },
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
            match self.call(method::CANCEL, &biz).await {
                Ok(a) => cancel_outcome(&a),
                Err(why) => Reverse::Retry { why },
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
            match self.call(method::REFUND, &biz).await {
                Ok(a) => refund_outcome(&a, req.out_refund_no),
                Err(why) => Refund::Unknown { why },
            }
        })
    }

    fn refund_query<'a>(
        &'a self,
        out_trade_no: &'a str,
        out_refund_no: &'a str,
    ) -> BoxFuture<'a, RefundStatus> {
        Box::pin(async move {
            let biz = RefundQueryBiz {
                out_trade_no: out_trade_no.into(),
                out_request_no: out_refund_no.into(),
            };
            match self.call(method::REFUND_QUERY, &biz).await {
                Ok(a) => refund_status(&a, out_refund_no),
                Err(why) => RefundStatus::Unknown { why },
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
            decline_code("ACQ.BUYER_BALANCE_NOT_ENOUGH").as_str(),
            "insufficient_balance"
        );
        assert_eq!(
            decline_code("ACQ.PAYMENT_AUTH_CODE_INVALID").as_str(),
            "invalid_payment_code"
        );
        assert_eq!(
            decline_code("ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH").as_str(),
            "insufficient_balance"
        );
        assert_eq!(
            decline_code("ACQ.SOMETHING_NEW").as_str(),
            "payment_declined"
        );
    }

    fn refund_data(status: Option<&str>) -> Answer {
        Answer {
            trade_no: Some("2024050122001".into()),
            out_trade_no: Some("T1".into()),
            out_request_no: Some("R1".into()),
            total_amount: Some("21.16".into()),
            refund_amount: Some("5.00".into()),
            refund_status: status.map(Into::into),
            ..Answer::new(code::SUCCESS, "Success")
        }
    }

    #[test]
    fn refund_query_answers_map_to_refund_outcomes() {
        assert_eq!(
            refund_status(&refund_data(Some("REFUND_SUCCESS")), "R1"),
            RefundStatus::Succeeded {
                refund_ref: "2024050122001/R1".into()
            }
        );
        assert_eq!(
            refund_status(&refund_data(None), "R1"),
            RefundStatus::Processing
        );
        assert_eq!(
            refund_status(&refund_data(Some("")), "R1"),
            RefundStatus::Processing
        );
        // 10000 without refund data: Alipay never took this refund.
        assert_eq!(
            refund_status(&Answer::new(code::SUCCESS, "Success"), "R1"),
            RefundStatus::NotFound
        );
        let no_trade = Answer::failed(code::FAILED, sub::TRADE_NOT_EXIST, "交易不存在");
        assert_eq!(refund_status(&no_trade, "R1"), RefundStatus::NotFound);
    }

    #[test]
    fn unclear_refund_queries_are_unknown() {
        for a in [
            Answer::failed(code::UNKNOWN, sub::SYSTEM_ERROR, "系统错误"),
            Answer::failed(code::FAILED, sub::INVALID_PARAMETER, "参数无效"),
            Answer::new(code::INVALID_PARAM, "Invalid Arguments"),
            refund_data(Some("REFUND_PROCESSING")),
            Answer {
                refund_amount: Some("five".into()),
                ..refund_data(Some("REFUND_SUCCESS"))
            },
            // The answer is about another refund of the trade.
            Answer {
                out_request_no: Some("R2".into()),
                ..refund_data(Some("REFUND_SUCCESS"))
            },
        ] {
            assert!(
                matches!(refund_status(&a, "R1"), RefundStatus::Unknown { .. }),
                "{a:?}"
            );
        }
    }

    #[test]
    fn cancel_answers_map_to_done_retry_or_refused() {
        assert_eq!(
            cancel_outcome(&Answer::new(code::SUCCESS, "Success")),
            Reverse::Done
        );
        let again = Answer {
            retry_flag: Some("Y".into()),
            ..Answer::failed(code::FAILED, "ACQ.TRADE_STATUS_ERROR", "")
        };
        for a in [
            again,
            Answer::failed(code::UNKNOWN, sub::SYSTEM_ERROR, ""),
            Answer::failed(code::FAILED, sub::SELLER_BALANCE_NOT_ENOUGH, "卖家余额不足"),
        ] {
            assert!(matches!(cancel_outcome(&a), Reverse::Retry { .. }), "{a:?}");
        }
        assert!(matches!(
            cancel_outcome(&Answer::failed(
                code::FAILED,
                "ACQ.TRADE_CANCEL_TIME_OUT",
                ""
            )),
            Reverse::Refused { .. }
        ));
    }

    #[test]
    fn refund_answers_map_to_what_they_mean() {
        let accepted = Answer {
            trade_no: Some("2024050122001".into()),
            fund_change: Some("Y".into()),
            ..Answer::new(code::SUCCESS, "Success")
        };
        assert_eq!(
            refund_outcome(&accepted, "R1"),
            Refund::Done {
                refund_ref: "2024050122001/R1".into()
            }
        );
        // The merchant's balance is short: retryable, not the customer's fault.
        let short = Answer::failed(code::FAILED, sub::SELLER_BALANCE_NOT_ENOUGH, "卖家余额不足");
        assert!(matches!(
            refund_outcome(&short, "R1"),
            Refund::Unknown { .. }
        ));
        for s in [
            sub::REASON_TRADE_REFUND_FEE_ERR,
            sub::REFUND_AMT_NOT_EQUAL_TOTAL,
        ] {
            assert!(matches!(
                refund_outcome(&Answer::failed(code::FAILED, s, ""), "R1"),
                Refund::Refused {
                    code: Code::RefundExceedsPaid,
                    ..
                }
            ));
        }
        assert!(matches!(
            refund_outcome(&Answer::failed(code::UNKNOWN, sub::SYSTEM_ERROR, ""), "R1"),
            Refund::Unknown { .. }
        ));
        assert!(matches!(
            refund_outcome(
                &Answer::failed(code::FAILED, "ACQ.TRADE_NOT_ALLOW_REFUND", ""),
                "R1"
            ),
            Refund::Refused {
                code: Code::RefundRefused,
                ..
            }
        ));
    }

    #[test]
    fn timestamps_have_alipays_shape() {
        assert!(ali::valid_timestamp(&timestamp()));
    }
}
