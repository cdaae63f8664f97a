//! Payment providers behind one trait, and the WeChat-Pay-v2 client.
//!
//! A provider call never fails in the Rust sense: every answer, including
//! "no answer", is an outcome the flow must act on. `Unknown` means the money
//! may or may not have moved, so the caller must query, never retry blindly.

use std::time::Duration;

use futures::future::BoxFuture;
use proto::wechatpay::{self as wx, CodeKind, Params, SignType, TradeState, err};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Code;
use crate::outbound::{self, ClientIdentity};

pub struct MicropayRequest<'a> {
    pub out_trade_no: &'a str,
    /// The full payment code: only ever sent to the provider.
    pub auth_code: &'a str,
    pub total_fen: i64,
    pub body: &'a str,
}

pub struct RefundRequest<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub total_fen: i64,
    pub refund_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Micropay {
    Paid {
        transaction_id: String,
    },
    /// A definite no: no money moved. `code` is ours, `provider_code` theirs.
    Declined {
        code: Code,
        provider_code: String,
    },
    /// "User paying", a system error, a timeout: query.
    Unknown {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Paid {
        transaction_id: String,
    },
    /// The customer has not confirmed yet.
    Waiting,
    Declined {
        code: Code,
        provider_code: String,
    },
    /// Revoked or closed: no money moved, or it went back.
    Reversed,
    /// The provider has not seen this number (yet).
    NotFound,
    Unknown {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverse {
    Done,
    /// Call again (`recall=Y`, or no answer).
    Retry {
        why: String,
    },
    Refused {
        provider_code: String,
    },
}

/// What the provider answers to a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    Done { refund_ref: String },
    Refused { code: Code, provider_code: String },
    Unknown { why: String },
}

/// What the provider says became of a refund it accepted. A refund answer
/// of SUCCESS only means *accepted*; this is its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStatus {
    /// The money is back with the customer.
    Succeeded { refund_ref: String },
    /// Accepted and still on its way: ask again later.
    Processing,
    /// It will not arrive the original way: closed by the provider
    /// (`refund_closed`), or the customer's account cannot take it back
    /// (`refund_change`, WeChat CHANGE: the merchant must pay out by hand).
    Failed { code: Code, provider_code: String },
    /// The provider knows no such refund: it was never accepted.
    NotFound,
    /// No answer, or one we cannot read: ask again later.
    Unknown { why: String },
}

/// One payment provider. Calls with the same `out_trade_no` (or
/// `out_refund_no`) are the same charge (or refund) at the provider.
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Which payment codes it takes.
    fn kind(&self) -> CodeKind;
    fn micropay<'a>(&'a self, req: MicropayRequest<'a>) -> BoxFuture<'a, Micropay>;
    fn query<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Query>;
    fn reverse<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Reverse>;
    fn refund<'a>(&'a self, req: RefundRequest<'a>) -> BoxFuture<'a, Refund>;
    /// What became of the refund `out_refund_no` of charge `out_trade_no`.
    fn refund_query<'a>(
        &'a self,
        out_trade_no: &'a str,
        out_refund_no: &'a str,
    ) -> BoxFuture<'a, RefundStatus>;
}

/// Our stable code for a provider's definite refusal of a charge.
fn decline_code(provider_code: &str) -> Code {
    match provider_code {
        err::NOTENOUGH => Code::InsufficientBalance,
        err::AUTHCODEEXPIRE | err::AUTH_CODE_INVALID | err::AUTH_CODE_ERROR => {
            Code::InvalidPaymentCode
        }
        _ => Code::PaymentDeclined,
    }
}

/// What a verified refund answer says: SUCCESS is *accepted* (its outcome
/// comes from refundquery).
fn refund_outcome(a: &Params) -> Refund {
    if succeeded(a) {
        return Refund::Done {
            refund_ref: get(a, "refund_id"),
        };
    }
    let code = get(a, "err_code");
    match code.as_str() {
        // The merchant's own balance is short: not the customer's
        // fault, and it works once the account is topped up. The
        // refund stays pending under its out_refund_no; the sweeper
        // asks again.
        err::SYSTEMERROR
        | err::BANKERROR
        | err::NOTENOUGH
        // "Send it again unchanged": busy, rate-limited, not ready yet.
        | err::BIZERR_NEED_RETRY
        | err::FREQUENCY_LIMITED
        | err::INVALID_REQ_TOO_MUCH
        | err::ORDER_NOT_READY => Refund::Unknown { why: code },
        // More than is still refundable, or already refunded in full.
        err::INVALID_REQUEST | err::ERROR => Refund::Refused {
            code: Code::RefundExceedsPaid,
            provider_code: code,
        },
        // Our out_refund_no was used with another amount: our books
        // and the provider's disagree.
        err::REFUND_FEE_MISMATCH => Refund::Refused {
            code: Code::RefundConflict,
            provider_code: code,
        },
        _ => Refund::Refused {
            code: Code::RefundRefused,
            provider_code: code,
        },
    }
}

/// What a verified refundquery answer says of refund `out_refund_no`.
fn refund_status(a: &Params, out_refund_no: &str) -> RefundStatus {
    if !succeeded(a) {
        let code = get(a, "err_code");
        return if code == err::REFUNDNOTEXIST {
            RefundStatus::NotFound
        } else {
            RefundStatus::Unknown { why: code }
        };
    }
    match wx::refund_status_of(a, out_refund_no) {
        Ok(Some((wx::RefundStatus::Success, refund_id))) => RefundStatus::Succeeded {
            refund_ref: refund_id,
        },
        Ok(Some((wx::RefundStatus::Processing, _))) => RefundStatus::Processing,
        Ok(Some((s @ wx::RefundStatus::RefundClose, _))) => RefundStatus::Failed {
            code: Code::RefundClosed,
            provider_code: s.as_str().into(),
        },
        Ok(Some((s @ wx::RefundStatus::Change, _))) => RefundStatus::Failed {
            code: Code::RefundChange,
            provider_code: s.as_str().into(),
        },
        Ok(None) => RefundStatus::Unknown {
            why: format!("the answer does not list refund {out_refund_no}"),
        },
        Err(e) => RefundStatus::Unknown { why: e.0 },
    }
}

/// A provider's HTTPS client: `timeout` bounds connecting and every call;
/// servers are checked against the public roots and `extra_ca_pem`.
pub(super) fn http_client(
    timeout: Duration,
    extra_ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> anyhow::Result<reqwest::Client> {
    outbound::client(timeout, timeout, extra_ca_pem, identity)
}

/// POSTs `body` to a provider and reads a 2xx answer's body, at most
/// [`outbound::MAX_ANSWER_BYTES`]. `Err` is a reason the outcome is unknown
/// (no answer, a timeout, a refused certificate, a non-2xx status, an
/// answer too large), so the charge is then resolved by querying.
pub(super) async fn post(
    target: &'static str,
    http: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    body: String,
) -> Result<Vec<u8>, String> {
    let started = std::time::Instant::now();
    let answer = post_timed(http, url, content_type, body).await;
    let outcome = if answer.is_ok() { "ok" } else { "unknown" };
    crate::meter::outbound(target, outcome, started);
    answer
}

async fn post_timed(
    http: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    body: String,
) -> Result<Vec<u8>, String> {
    let resp = http
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| outbound::describe(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    outbound::read_capped(resp, outbound::MAX_ANSWER_BYTES)
        .await
        .map_err(|e| e.to_string())
}

/// The WeChat Pay v2 client. `/secapi/` calls (reverse, refund) go through
/// a second client that presents the merchant's API certificate.
pub struct WeChatPay {
    http: reqwest::Client,
    /// With the client certificate when one is configured.
    secapi: reqwest::Client,
    has_client_cert: bool,
    base_url: String,
    appid: String,
    mch_id: String,
    key: SecretString,
    /// Signs requests and checks answers: answers carry no `sign_type`.
    sign_type: SignType,
}

/// How [`WeChatPay`] reaches the provider.
#[derive(Clone, Debug, Default)]
pub struct WeChatTls {
    /// PEM certificates trusted beside the public roots.
    pub extra_ca_pem: Option<String>,
    /// The merchant's API client certificate, for `/secapi/`.
    pub client_cert: Option<ClientIdentity>,
}

impl WeChatPay {
    pub fn new(
        base_url: &str,
        appid: String,
        mch_id: String,
        key: SecretString,
        sign_type: SignType,
        timeout: Duration,
        tls: &WeChatTls,
    ) -> anyhow::Result<Self> {
        let ca = tls.extra_ca_pem.as_deref();
        let http = http_client(timeout, ca, None)?;
        let secapi = match &tls.client_cert {
            Some(id) => http_client(timeout, ca, Some(id))?,
            None => {
                tracing::warn!(
                    "no WeChat Pay client certificate configured: the real service refuses \
                     reverse and refund (/secapi/) without one"
                );
                http.clone()
            }
        };
        Ok(WeChatPay {
            http,
            secapi,
            has_client_cert: tls.client_cert.is_some(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            appid,
            mch_id,
            key,
            sign_type,
        })
    }

    /// Signs and sends `params` to `path`; the answer's envelope is checked
    /// (`return_code`, signature). `Err` is a reason the outcome is unknown.
    async fn call(&self, path: &str, params: Params) -> Result<Params, String> {
        let secapi = path.starts_with("/secapi/");
        let result = self.exchange(path, params, secapi).await;
        match result {
            Err(why) if secapi && !self.has_client_cert => Err(format!(
                "{why} (no WeChat Pay client certificate is configured for /secapi/)"
            )),
            other => other,
        }
    }

    async fn exchange(
        &self,
        path: &str,
        mut params: Params,
        secapi: bool,
    ) -> Result<Params, String> {
        params.insert("appid".into(), self.appid.clone());
        params.insert("mch_id".into(), self.mch_id.clone());
        params.insert("nonce_str".into(), nonce());
        wx::sign_in_place(&mut params, self.key.expose_secret(), self.sign_type);
        let body = post(
            "wechatpay",
            if secapi { &self.secapi } else { &self.http },
            &format!("{}{path}", self.base_url),
            "text/xml; charset=utf-8",
            wx::encode(&params),
        )
        .await?;
        let answer = wx::decode(&body).map_err(|e| format!("unreadable answer: {e}"))?;
        if answer.get("return_code").map(String::as_str) != Some(wx::SUCCESS) {
            return Err(format!(
                "return_code FAIL: {}",
                answer.get("return_msg").map(String::as_str).unwrap_or("")
            ));
        }
        // The configured type, never the answer's own `sign_type`.
        if !wx::verify_as(&answer, self.key.expose_secret(), self.sign_type) {
            return Err(format!(
                "the answer's signature does not verify ({})",
                self.sign_type.as_str()
            ));
        }
        Ok(answer)
    }
}

fn nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn get(p: &Params, k: &str) -> String {
    p.get(k).cloned().unwrap_or_default()
}

fn succeeded(p: &Params) -> bool {
    p.get("result_code").map(String::as_str) == Some(wx::SUCCESS)
}

impl Provider for WeChatPay {
    fn name(&self) -> &'static str {
        "wechatpay"
    }

    fn kind(&self) -> CodeKind {
        CodeKind::WeChatPay
    }

    fn micropay<'a>(&'a self, req: MicropayRequest<'a>) -> BoxFuture<'a, Micropay> {
        Box::pin(async move {
            let mut p = Params::new();
            p.insert("out_trade_no".into(), req.out_trade_no.into());
            p.insert("auth_code".into(), req.auth_code.into());
            p.insert("total_fee".into(), req.total_fen.to_string());
            p.insert("body".into(), req.body.into());
            p.insert("spbill_create_ip".into(), "127.0.0.1".into());
            let a = match self.call(wx::PATH_MICROPAY, p).await {
                Ok(a) => a,
                Err(why) => return Micropay::Unknown { why },
            };
            if succeeded(&a) {
                return Micropay::Paid {
                    transaction_id: get(&a, "transaction_id"),
                };
            }
            let code = get(&a, "err_code");
            match code.as_str() {
                err::USERPAYING
                | err::SYSTEMERROR
                | err::BANKERROR
                | err::ORDERPAID
                | err::TRADE_ERROR => Micropay::Unknown { why: code },
                _ => Micropay::Declined {
                    code: decline_code(&code),
                    provider_code: code,
                },
            }
        })
    }

    fn query<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Query> {
        Box::pin(async move {
            let mut p = Params::new();
            p.insert("out_trade_no".into(), out_trade_no.into());
            let a = match self.call(wx::PATH_ORDERQUERY, p).await {
                Ok(a) => a,
                Err(why) => return Query::Unknown { why },
            };
            if !succeeded(&a) {
                let code = get(&a, "err_code");
                return if code == err::ORDERNOTEXIST {
                    Query::NotFound
                } else {
                    Query::Unknown { why: code }
                };
            }
            let state = get(&a, "trade_state");
            match TradeState::parse(&state) {
                Some(TradeState::Success | TradeState::Refund) => Query::Paid {
                    transaction_id: get(&a, "transaction_id"),
                },
                Some(TradeState::UserPaying | TradeState::NotPay) => Query::Waiting,
                Some(TradeState::Revoked | TradeState::Closed) => Query::Reversed,
                Some(TradeState::PayError) => Query::Declined {
                    code: Code::PaymentDeclined,
                    provider_code: state,
                },
                None => Query::Unknown {
                    why: format!("unknown trade_state {state:?}"),
                },
            }
        })
    }

    fn reverse<'a>(&'a self, out_trade_no: &'a str) -> BoxFuture<'a, Reverse> {
        Box::pin(async move {
            let mut p = Params::new();
            p.insert("out_trade_no".into(), out_trade_no.into());
            let a = match self.call(wx::PATH_REVERSE, p).await {
                Ok(a) => a,
                Err(why) => return Reverse::Retry { why },
            };
            if succeeded(&a) {
                return Reverse::Done;
            }
            let code = get(&a, "err_code");
            if code == err::ORDERREVERSED {
                Reverse::Done
            } else if get(&a, "recall") == "Y" || code == err::SYSTEMERROR {
                Reverse::Retry { why: code }
            } else {
                Reverse::Refused {
                    provider_code: code,
                }
            }
        })
    }

    fn refund<'a>(&'a self, req: RefundRequest<'a>) -> BoxFuture<'a, Refund> {
        Box::pin(async move {
            let mut p = Params::new();
            p.insert("out_trade_no".into(), req.out_trade_no.into());
            p.insert("out_refund_no".into(), req.out_refund_no.into());
            p.insert("total_fee".into(), req.total_fen.to_string());
            p.insert("refund_fee".into(), req.refund_fen.to_string());
            match self.call(wx::PATH_REFUND, p).await {
                Ok(a) => refund_outcome(&a),
                Err(why) => Refund::Unknown { why },
            }
        })
    }

    fn refund_query<'a>(
        &'a self,
        _out_trade_no: &'a str,
        out_refund_no: &'a str,
    ) -> BoxFuture<'a, RefundStatus> {
        Box::pin(async move {
            // out_refund_no alone names the refund (it ranks above the
            // order's numbers at the provider); no client certificate needed.
            let mut p = Params::new();
            p.insert("out_refund_no".into(), out_refund_no.into());
            match self.call(wx::PATH_REFUNDQUERY, p).await {
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
    fn provider_refusals_map_to_stable_codes() {
        assert_eq!(decline_code("NOTENOUGH").as_str(), "insufficient_balance");
        assert_eq!(
            decline_code("AUTHCODEEXPIRE").as_str(),
            "invalid_payment_code"
        );
        assert_eq!(
            decline_code("AUTH_CODE_INVALID").as_str(),
            "invalid_payment_code"
        );
        assert_eq!(decline_code("SOMETHING_NEW").as_str(), "payment_declined");
    }

    fn answer(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn one_refund(status: &str) -> Params {
        answer(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("refund_count", "1"),
            ("out_refund_no_0", "R1"),
            ("refund_id_0", "50000001"),
            ("refund_status_0", status),
        ])
    }

    fn refused(code: &str) -> Params {
        answer(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", code),
        ])
    }

    #[test]
    fn refund_answers_map_to_what_they_mean() {
        let accepted = answer(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("refund_id", "50000001"),
        ]);
        assert_eq!(
            refund_outcome(&accepted),
            Refund::Done {
                refund_ref: "50000001".into()
            }
        );
        // Retryable under the same out_refund_no: the merchant's balance,
        // the provider busy or rate-limiting.
        for code in [
            "SYSTEMERROR",
            "BANKERROR",
            "NOTENOUGH",
            "BIZERR_NEED_RETRY",
            "FREQUENCY_LIMITED",
            "INVALID_REQ_TOO_MUCH",
            "ORDER_NOT_READY",
        ] {
            assert!(
                matches!(refund_outcome(&refused(code)), Refund::Unknown { .. }),
                "{code}"
            );
        }
        let code_of = |c: &str| match refund_outcome(&refused(c)) {
            Refund::Refused { code, .. } => code.as_str(),
            other => panic!("{c}: {other:?}"),
        };
        assert_eq!(code_of("INVALID_REQUEST"), "refund_exceeds_paid");
        assert_eq!(code_of("ERROR"), "refund_exceeds_paid");
        assert_eq!(code_of("REFUND_FEE_MISMATCH"), "refund_conflict");
        assert_eq!(code_of("TRADE_OVERDUE"), "refund_refused");
    }

    #[test]
    fn refund_query_answers_map_to_refund_outcomes() {
        assert_eq!(
            refund_status(&one_refund("SUCCESS"), "R1"),
            RefundStatus::Succeeded {
                refund_ref: "50000001".into()
            }
        );
        assert_eq!(
            refund_status(&one_refund("PROCESSING"), "R1"),
            RefundStatus::Processing
        );
        assert_eq!(
            refund_status(&one_refund("REFUNDCLOSE"), "R1"),
            RefundStatus::Failed {
                code: Code::RefundClosed,
                provider_code: "REFUNDCLOSE".into()
            }
        );
        assert_eq!(
            refund_status(&one_refund("CHANGE"), "R1"),
            RefundStatus::Failed {
                code: Code::RefundChange,
                provider_code: "CHANGE".into()
            }
        );
        let missing = answer(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "REFUNDNOTEXIST"),
        ]);
        assert_eq!(refund_status(&missing, "R1"), RefundStatus::NotFound);
    }

    #[test]
    fn unreadable_or_failed_refund_queries_are_unknown() {
        let busy = answer(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "SYSTEMERROR"),
        ]);
        assert!(matches!(
            refund_status(&busy, "R1"),
            RefundStatus::Unknown { .. }
        ));
        // Another refund of the order, not ours: not a success of ours.
        assert!(matches!(
            refund_status(&one_refund("SUCCESS"), "R2"),
            RefundStatus::Unknown { .. }
        ));
        for bad in ["", "REFUND_SUCCESS", "success"] {
            assert!(
                matches!(
                    refund_status(&one_refund(bad), "R1"),
                    RefundStatus::Unknown { .. }
                ),
                "{bad:?}"
            );
        }
        let mut no_count = one_refund("SUCCESS");
        no_count.remove("refund_count");
        assert!(matches!(
            refund_status(&no_count, "R1"),
            RefundStatus::Unknown { .. }
        ));
    }
}
