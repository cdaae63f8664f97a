//! The simulator's Alipay face: `POST /gateway.do`, dispatched on `method`
//! (`alipay.trade.pay`, `.query`, `.cancel`, `.refund`). Requests must carry
//! our `app_id` and an RSA2 signature by the app's key; answers are signed
//! with the simulator's own key (or, for tests, with whatever key
//! `PUT /alipay/signing_key` gave). The books and scenarios are the ones the
//! WeChat face uses.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::alipay::{self as ali, Answer, Params, PayBiz, PrivateKey, PublicKey, RefundBiz};
use proto::alipay::{TradeBiz, TradeStatus, code, method, sub};
use proto::wechatpay::{CodeKind, TradeState, err};
use serde::de::DeserializeOwned;

use super::ledger::{Charge, MicropayAnswer, RefundAnswer, ReverseAnswer};
use super::{Provider, SILENCE};

/// Who the simulated Alipay is: the app it serves and the keys.
#[derive(Clone)]
pub struct AlipayCredentials {
    pub app_id: String,
    /// The app's public key: requests must verify with it.
    pub app_public_key: PublicKey,
    /// The simulator's own private key: answers are signed with it.
    pub private_key: PrivateKey,
}

impl std::fmt::Debug for AlipayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayCredentials")
            .field("app_id", &self.app_id)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

pub(super) struct AlipayFace {
    pub(super) creds: AlipayCredentials,
    /// A test hook: sign answers with this key instead of our own.
    pub(super) sign_with: Mutex<Option<PrivateKey>>,
}

impl AlipayFace {
    fn signing_key(&self) -> PrivateKey {
        self.sign_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| self.creds.private_key.clone())
    }

    fn respond(&self, method: &str, answer: &Answer) -> Response {
        match ali::signed_answer(method, answer, &self.signing_key()) {
            Ok(body) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
                body,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.0).into_response(),
        }
    }
}

/// The envelope every call shares: form, app_id, method, charset,
/// sign_type, timestamp, version, signature, then `biz_content`. `Err` is
/// the (signed) refusal.
fn open<B: DeserializeOwned>(
    face: &AlipayFace,
    p: &Params,
    method: &str,
) -> Result<B, Box<Answer>> {
    let bad =
        |sub_code: &str, msg: &str| Box::new(Answer::failed(code::INVALID_PARAM, sub_code, msg));
    if p.get("app_id") != Some(&face.creds.app_id) {
        return Err(bad(sub::INVALID_APP_ID, "无效的AppID参数"));
    }
    let fixed = [
        ("charset", ali::CHARSET),
        ("sign_type", ali::SIGN_TYPE),
        ("version", ali::VERSION),
    ];
    for (k, v) in fixed {
        if p.get(k).is_none_or(|got| !got.eq_ignore_ascii_case(v)) {
            return Err(bad(&format!("isv.invalid-{k}"), k));
        }
    }
    if !p.get("timestamp").is_some_and(|t| ali::valid_timestamp(t)) {
        return Err(bad("isv.invalid-timestamp", "时间戳参数无效"));
    }
    if !ali::verify_params(p, &face.creds.app_public_key) {
        tracing::warn!(method, "Alipay request with a bad signature");
        return Err(bad(sub::INVALID_SIGNATURE, "验签出错"));
    }
    let biz = p.get("biz_content").map(String::as_str).unwrap_or("");
    serde_json::from_str(biz).map_err(|_| {
        Box::new(Answer::failed(
            code::FAILED,
            sub::INVALID_PARAMETER,
            "biz_content 参数无效",
        ))
    })
}

/// A required business field: non-empty, not absurdly long.
fn field(v: &str) -> Result<&str, Box<Answer>> {
    if v.is_empty() || v.len() > 128 {
        return Err(Box::new(Answer::failed(
            code::FAILED,
            sub::INVALID_PARAMETER,
            "参数无效",
        )));
    }
    Ok(v)
}

/// A positive yuan amount as fen.
fn amount(v: &str) -> Result<i64, Box<Answer>> {
    ali::fen(v).filter(|f| *f > 0).ok_or_else(|| {
        Box::new(Answer::failed(
            code::FAILED,
            sub::INVALID_PARAMETER,
            "金额无效",
        ))
    })
}

fn trade_fields(c: &Charge) -> Answer {
    Answer {
        trade_no: Some(c.transaction_id.clone()),
        out_trade_no: Some(c.out_trade_no.clone()),
        total_amount: Some(ali::yuan(c.total_fee)),
        ..Answer::new(code::SUCCESS, ali::msg_of(code::SUCCESS))
    }
}

/// A WeChat-shaped refusal of the books in Alipay's words.
fn refusal(wx_code: &str) -> Answer {
    let (c, s, m) = match wx_code {
        err::USERPAYING => (code::WAITING, "", ""),
        err::SYSTEMERROR => (code::UNKNOWN, sub::SYSTEM_ERROR, "系统异常"),
        err::NOTENOUGH => (code::FAILED, sub::BALANCE_NOT_ENOUGH, "买家余额不足"),
        err::AUTH_CODE_INVALID => (
            code::FAILED,
            sub::AUTH_CODE_INVALID,
            "支付失败，获取顾客账户信息失败",
        ),
        err::ORDERPAID => (code::FAILED, sub::TRADE_HAS_SUCCESS, "交易已被支付"),
        err::ORDERREVERSED | err::ORDERCLOSED => {
            (code::FAILED, sub::TRADE_HAS_CLOSE, "交易已经关闭")
        }
        err::ORDERNOTEXIST => (code::FAILED, sub::TRADE_NOT_EXIST, "交易不存在"),
        // A reused out_request_no with another amount is a bad parameter here.
        err::PARAM_ERROR | err::REFUND_FEE_MISMATCH => {
            (code::FAILED, sub::INVALID_PARAMETER, "参数无效")
        }
        _ => (code::FAILED, sub::TRADE_STATUS_ERROR, "交易状态不合法"),
    };
    if s.is_empty() {
        Answer::new(c, ali::msg_of(c))
    } else {
        Answer::failed(c, s, m)
    }
}

fn status_of(c: &Charge) -> TradeStatus {
    match c.state {
        TradeState::Success => TradeStatus::TradeSuccess,
        TradeState::Refund if c.refunded_fee >= c.total_fee => TradeStatus::TradeClosed,
        TradeState::Refund => TradeStatus::TradeSuccess,
        TradeState::UserPaying | TradeState::NotPay => TradeStatus::WaitBuyerPay,
        TradeState::Closed | TradeState::Revoked | TradeState::PayError => TradeStatus::TradeClosed,
    }
}

/// `POST /gateway.do`.
pub(super) async fn gateway(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    let Some(face) = sim.alipay.as_ref() else {
        return (StatusCode::NOT_FOUND, "Alipay is off in this simulator").into_response();
    };
    let params = match ali::decode_form(&body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.0).into_response(),
    };
    let m = params.get("method").map(String::as_str).unwrap_or("");
    let Some(m) = method::ALL.into_iter().find(|x| *x == m) else {
        let a = Answer::failed(code::INVALID_PARAM, "isv.invalid-method", "不存在的方法名");
        return face.respond("error", &a);
    };
    let answer = match m {
        method::PAY => {
            match open::<PayBiz>(face, &params, m).and_then(|b| {
                if b.scene != ali::SCENE_BAR_CODE {
                    return Err(Box::new(Answer::failed(
                        code::FAILED,
                        sub::INVALID_PARAMETER,
                        "scene",
                    )));
                }
                Ok((
                    field(&b.out_trade_no)?.to_owned(),
                    field(&b.auth_code)?.to_owned(),
                    amount(&b.total_amount)?,
                    field(&b.subject).map(|_| ())?,
                ))
            }) {
                Err(a) => *a,
                Ok((out_trade_no, auth_code, total, ())) => {
                    let answer = sim.books().charge(
                        CodeKind::Alipay,
                        &out_trade_no,
                        &auth_code,
                        total,
                        Instant::now(),
                    );
                    tracing::info!(out_trade_no, code = %proto::wechatpay::mask(&auth_code), total, ?answer, "alipay.trade.pay");
                    match answer {
                        MicropayAnswer::Paid(c) => Answer {
                            trade_status: None,
                            ..trade_fields(&c)
                        },
                        MicropayAnswer::Fail(wx_code) => {
                            let mut a = refusal(wx_code);
                            a.out_trade_no = Some(out_trade_no);
                            a
                        }
                        MicropayAnswer::Silence => {
                            let mut closing = sim.closing.subscribe();
                            tokio::select! {
                                _ = tokio::time::sleep(SILENCE) => {}
                                _ = closing.wait_for(|c| *c) => {}
                            }
                            return (StatusCode::GATEWAY_TIMEOUT, "").into_response();
                        }
                    }
                }
            }
        }
        method::QUERY => match open::<TradeBiz>(face, &params, m)
            .and_then(|b| Ok(field(&b.out_trade_no)?.to_owned()))
        {
            Err(a) => *a,
            Ok(out_trade_no) => match sim.books().query(&out_trade_no, Instant::now()) {
                None => refusal(err::ORDERNOTEXIST),
                Some(c) => Answer {
                    trade_status: Some(status_of(&c).as_str().to_owned()),
                    ..trade_fields(&c)
                },
            },
        },
        method::CANCEL => match open::<TradeBiz>(face, &params, m)
            .and_then(|b| Ok(field(&b.out_trade_no)?.to_owned()))
        {
            Err(a) => *a,
            Ok(out_trade_no) => {
                let now = Instant::now();
                let mut books = sim.books();
                let was_paid = books
                    .peek(&out_trade_no, now)
                    .is_some_and(|c| c.state == TradeState::Success);
                let answer = books.reverse_for(CodeKind::Alipay, &out_trade_no, now);
                drop(books);
                tracing::info!(out_trade_no, ?answer, "alipay.trade.cancel");
                match answer {
                    ReverseAnswer::Done => Answer {
                        out_trade_no: Some(out_trade_no),
                        retry_flag: Some("N".into()),
                        action: Some(if was_paid { "refund" } else { "close" }.into()),
                        ..Answer::new(code::SUCCESS, ali::msg_of(code::SUCCESS))
                    },
                    ReverseAnswer::Fail {
                        code: wx_code,
                        recall,
                    } => {
                        let mut a = if wx_code == err::SYSTEMERROR {
                            Answer::failed(code::FAILED, sub::SYSTEM_ERROR, "系统错误")
                        } else {
                            refusal(wx_code)
                        };
                        a.out_trade_no = Some(out_trade_no);
                        a.retry_flag = Some(if recall { "Y" } else { "N" }.into());
                        a
                    }
                }
            }
        },
        method::REFUND => match open::<RefundBiz>(face, &params, m).and_then(|b| {
            Ok((
                field(&b.out_trade_no)?.to_owned(),
                field(&b.out_request_no)?.to_owned(),
                amount(&b.refund_amount)?,
            ))
        }) {
            Err(a) => *a,
            Ok((out_trade_no, out_request_no, refund)) => {
                let now = Instant::now();
                let mut books = sim.books();
                let total = books.peek(&out_trade_no, now).map(|c| c.total_fee);
                let answer = match total {
                    None => RefundAnswer::Fail(err::ORDERNOTEXIST),
                    Some(total) => books.refund(&out_trade_no, &out_request_no, total, refund, now),
                };
                let after = books.peek(&out_trade_no, now);
                drop(books);
                tracing::info!(
                    out_trade_no,
                    out_request_no,
                    refund,
                    ?answer,
                    "alipay.trade.refund"
                );
                match (answer, after) {
                    (RefundAnswer::Done { .. }, Some(c)) => Answer {
                        refund_fee: Some(ali::yuan(c.refunded_fee)),
                        fund_change: Some("Y".into()),
                        out_request_no: Some(out_request_no),
                        ..trade_fields(&c)
                    },
                    (RefundAnswer::Fail(err::INVALID_REQUEST | err::ERROR), _) => Answer::failed(
                        code::FAILED,
                        sub::REFUND_AMT_NOT_EQUAL_TOTAL,
                        "退款金额超限",
                    ),
                    (RefundAnswer::Fail(wx_code), _) => refusal(wx_code),
                    (RefundAnswer::Done { .. }, None) => refusal(err::ORDERNOTEXIST),
                }
            }
        },
        _ => refusal(err::PARAM_ERROR),
    };
    face.respond(m, &answer)
}

/// `PUT /alipay/signing_key`: a PEM private key to sign answers with from
/// now on (a test of forged answers); an empty body goes back to our own.
pub(super) async fn put_signing_key(State(sim): State<Arc<Provider>>, body: Bytes) -> Response {
    let Some(face) = sim.alipay.as_ref() else {
        return (StatusCode::NOT_FOUND, "Alipay is off in this simulator").into_response();
    };
    let text = String::from_utf8_lossy(&body);
    let key = if text.trim().is_empty() {
        None
    } else {
        match PrivateKey::from_pem(&text) {
            Ok(k) => Some(k),
            Err(e) => return (StatusCode::BAD_REQUEST, e.0).into_response(),
        }
    };
    *face.sign_with.lock().unwrap_or_else(|p| p.into_inner()) = key;
    StatusCode::NO_CONTENT.into_response()
}
