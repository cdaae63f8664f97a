//! The simulator's Alipay face: the open gateway's `/gateway.do`, dispatched
//! on `method` (`alipay.trade.pay`, `.query`, `.cancel`, `.refund`,
//! `alipay.trade.fastpay.refund.query`). As the real gateway, it takes the
//! parameters from the query string, the form body or both (a GET carries
//! them all in the query string), in the `charset` the request names
//! (UTF-8, GBK or GB2312), and answers in that charset. Requests must carry
//! our `app_id` and an RSA2 signature by the app's key over every non-empty
//! parameter but `sign`; answers are signed with the simulator's own key
//! (or, for tests, with whatever key `PUT /alipay/signing_key` gave). The
//! books and scenarios are the ones the WeChat face uses; see
//! docs/simulators.md for what it follows and what it leaves out.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::alipay::{self as ali, Answer, Charset, FundBill, Params, PayIn, PrivateKey, PublicKey};
use proto::alipay::{RefundIn, RefundQueryIn, TradeRef, TradeStatus, code, method, sub};
use proto::wechatpay::{CodeKind, RefundStatus, TradeState, err};
use serde::de::DeserializeOwned;

use super::ledger::{Charge, Ledger, MicropayAnswer, RefundAnswer, ReverseAnswer};
use super::{Provider, SILENCE};

/// The longest trade, refund or code number taken.
const MAX_NO: usize = 64;

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

    /// The signed answer, written (and signed) in the request's charset.
    fn respond(&self, method: &str, answer: &Answer, charset: Charset) -> Response {
        match ali::signed_answer_in(method, answer, &self.signing_key(), charset) {
            Ok(body) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    format!("application/json;charset={}", charset.label()),
                )],
                body,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.0).into_response(),
        }
    }
}

/// A refusal, answered signed instead of the method's result.
type Refusal = Box<Answer>;

fn refused(c: &str, sub_code: &str, msg: &str) -> Refusal {
    Box::new(Answer::failed(c, sub_code, msg))
}

/// The envelope every call shares: app_id, charset, sign_type, version,
/// format, timestamp, signature, then `biz_content` read as `B`.
fn open<B: DeserializeOwned>(
    face: &AlipayFace,
    p: &Params,
    charset: Charset,
    method: &str,
) -> Result<B, Refusal> {
    let bad = |sub_code: &str, msg: &str| refused(code::INVALID_PARAM, sub_code, msg);
    if p.get("app_id") != Some(&face.creds.app_id) {
        return Err(bad(sub::INVALID_APP_ID, "无效的AppID参数"));
    }
    if p.get("charset")
        .and_then(|c| Charset::from_label(c))
        .is_none()
    {
        return Err(bad("isv.invalid-charset", "字符集错误"));
    }
    let fixed = [("sign_type", ali::SIGN_TYPE), ("version", ali::VERSION)];
    for (k, v) in fixed {
        if p.get(k).is_none_or(|got| !got.eq_ignore_ascii_case(v)) {
            return Err(bad(&format!("isv.invalid-{k}"), k));
        }
    }
    if p.get("format")
        .is_some_and(|f| !f.eq_ignore_ascii_case("json"))
    {
        return Err(bad("isv.invalid-format", "format"));
    }
    if !p.get("timestamp").is_some_and(|t| ali::valid_timestamp(t)) {
        return Err(bad("isv.invalid-timestamp", "时间戳参数无效"));
    }
    if !ali::verify_params_in(p, charset, &face.creds.app_public_key) {
        tracing::warn!(method, "Alipay request with a bad signature");
        return Err(bad(sub::INVALID_SIGNATURE, "验签出错"));
    }
    let biz = p.get("biz_content").map(String::as_str).unwrap_or("");
    serde_json::from_str(biz)
        .map_err(|_| refused(code::FAILED, sub::INVALID_PARAMETER, "biz_content 参数无效"))
}

/// A required number: non-empty, not absurdly long.
fn field(v: &str) -> Result<&str, Refusal> {
    if v.is_empty() || v.len() > MAX_NO {
        return Err(refused(code::FAILED, sub::INVALID_PARAMETER, "参数无效"));
    }
    Ok(v)
}

/// A positive yuan amount as fen.
fn amount(v: &str) -> Result<i64, Refusal> {
    ali::fen(v)
        .filter(|f| *f > 0)
        .ok_or_else(|| refused(code::FAILED, sub::INVALID_PARAMETER, "金额无效"))
}

/// The trade a call names: by `trade_no` (which wins, as at Alipay) or
/// `out_trade_no`. An unknown `trade_no` is TRADE_NOT_EXIST.
fn trade_of(books: &Ledger, t: &TradeRef) -> Result<String, Refusal> {
    if !t.trade_no.is_empty() {
        return books
            .out_trade_no_of(field(&t.trade_no)?)
            .ok_or_else(|| Box::new(refusal(err::ORDERNOTEXIST)));
    }
    Ok(field(&t.out_trade_no)?.to_owned())
}

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8) of `at`.
fn china_time(at: Instant) -> String {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let then = wall
        .checked_sub(now.saturating_duration_since(at))
        .unwrap_or(wall);
    let secs = then
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_add(8 * 3600);
    format_unix(secs)
}

/// `yyyy-MM-dd HH:mm:ss` of a count of seconds since 1970-01-01 00:00:00.
fn format_unix(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn trade_fields(c: &Charge) -> Answer {
    Answer {
        trade_no: Some(c.transaction_id.clone()),
        out_trade_no: Some(c.out_trade_no.clone()),
        total_amount: Some(ali::yuan(c.total_fee)),
        ..Answer::new(code::SUCCESS, ali::msg_of(code::SUCCESS))
    }
}

/// The simulated buyer of a charge: a user id of 16 digits starting 2088
/// and a masked phone login, both made from the trade number.
fn add_buyer(a: &mut Answer, c: &Charge) {
    let digits: String = c
        .transaction_id
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let tail = |n: usize| format!("{:0>n$}", &digits[digits.len().saturating_sub(n)..]);
    a.buyer_user_id = Some(format!("2088{}", tail(12)));
    a.buyer_logon_id = Some(format!("159****{}", tail(4)));
}

/// What a paid charge's pay and query answers tell of the money: all of it
/// from the buyer's balance (`ALIPAYACCOUNT`), no points, no discount.
fn add_paid(a: &mut Answer, c: &Charge) {
    let total = ali::yuan(c.total_fee);
    a.receipt_amount = Some(total.clone());
    a.buyer_pay_amount = Some(total.clone());
    a.invoice_amount = Some(total.clone());
    a.point_amount = Some(ali::yuan(0));
    a.gmt_payment = Some(china_time(c.paid_at.unwrap_or(c.created)));
    a.fund_bill_list = vec![FundBill {
        fund_channel: "ALIPAYACCOUNT".into(),
        amount: total,
    }];
}

/// A pay answer that moved no money says so in its amounts.
fn add_unpaid(a: &mut Answer) {
    for f in [
        &mut a.receipt_amount,
        &mut a.buyer_pay_amount,
        &mut a.invoice_amount,
        &mut a.point_amount,
    ] {
        *f = Some(ali::yuan(0));
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

/// Money that went back: Alipay has no CHANGE (what it cannot put back the
/// original way goes to the buyer's balance), so that counts as refunded.
fn money_back(s: RefundStatus) -> bool {
    matches!(s, RefundStatus::Success | RefundStatus::Change)
}

/// `GET` or `POST /gateway.do`.
pub(super) async fn gateway(
    State(sim): State<Arc<Provider>>,
    RawQuery(raw_query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(face) = sim.alipay.as_ref() else {
        return (StatusCode::NOT_FOUND, "Alipay is off in this simulator").into_response();
    };
    let raw_query = raw_query.unwrap_or_default();
    let (params, charset) = match ali::decode_request(raw_query.as_bytes(), &body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.0).into_response(),
    };
    let m = params.get("method").map(String::as_str).unwrap_or("");
    let Some(m) = method::ALL.into_iter().find(|x| *x == m) else {
        let a = if m.is_empty() {
            Answer::failed(code::MISSING_PARAM, sub::MISSING_PARAM, "缺少方法名参数")
        } else {
            Answer::failed(code::INVALID_PARAM, "isv.invalid-method", "不存在的方法名")
        };
        return face.respond("error", &a, charset);
    };
    let answer = match m {
        method::PAY => match open::<PayIn>(face, &params, charset, m) {
            Err(a) => *a,
            Ok(b) => pay(&sim, &b).unwrap_or_else(|a| *a),
        },
        method::QUERY => match open::<TradeRef>(face, &params, charset, m) {
            Err(a) => *a,
            Ok(b) => query(&sim, &b).unwrap_or_else(|a| *a),
        },
        method::CANCEL => match open::<TradeRef>(face, &params, charset, m) {
            Err(a) => *a,
            Ok(b) => cancel(&sim, &b).unwrap_or_else(|a| *a),
        },
        method::REFUND => match open::<RefundIn>(face, &params, charset, m) {
            Err(a) => *a,
            Ok(b) => refund(&sim, &b).unwrap_or_else(|a| *a),
        },
        method::REFUND_QUERY => match open::<RefundQueryIn>(face, &params, charset, m) {
            Err(a) => *a,
            Ok(b) => refund_query(&sim, &b).unwrap_or_else(|a| *a),
        },
        _ => refusal(err::PARAM_ERROR),
    };
    if answer.code == SILENT {
        let mut closing = sim.closing.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(SILENCE) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
        return (StatusCode::GATEWAY_TIMEOUT, "").into_response();
    }
    face.respond(m, &answer, charset)
}

/// The `code` of an answer never sent: the call is held, then dropped.
const SILENT: &str = "silent";

/// `alipay.trade.pay`: `Err` is a refusal of the request itself.
fn pay(sim: &Provider, b: &PayIn) -> Result<Answer, Refusal> {
    let checked = (|| {
        if b.scene != ali::SCENE_BAR_CODE {
            return Err(refused(code::FAILED, sub::INVALID_PARAMETER, "scene"));
        }
        field(&b.subject)?;
        Ok((
            field(&b.out_trade_no)?,
            field(&b.auth_code)?,
            amount(&b.total_amount)?,
        ))
    })();
    let (out_trade_no, auth_code, total) = checked?;
    let now = Instant::now();
    let mut books = sim.books();
    let answer = books.charge(CodeKind::Alipay, out_trade_no, auth_code, total, now);
    let after = books.peek(out_trade_no, now);
    drop(books);
    tracing::info!(out_trade_no, code = %proto::wechatpay::mask(auth_code), total, ?answer, "alipay.trade.pay");
    Ok(match answer {
        MicropayAnswer::Paid(c) => {
            let mut a = trade_fields(&c);
            add_buyer(&mut a, &c);
            add_paid(&mut a, &c);
            a
        }
        MicropayAnswer::Fail(wx_code) => {
            let mut a = refusal(wx_code);
            a.out_trade_no = Some(out_trade_no.to_owned());
            // Waiting for the buyer: the trade exists, nothing is paid yet.
            if wx_code == err::USERPAYING
                && let Some(c) = after
            {
                a.trade_no = Some(c.transaction_id.clone());
                a.total_amount = Some(ali::yuan(c.total_fee));
                add_buyer(&mut a, &c);
            }
            add_unpaid(&mut a);
            a
        }
        MicropayAnswer::Silence => Answer::new(SILENT, ""),
    })
}

/// `alipay.trade.query`, by `trade_no` or `out_trade_no`.
fn query(sim: &Provider, b: &TradeRef) -> Result<Answer, Refusal> {
    let mut books = sim.books();
    let out_trade_no = trade_of(&books, b)?;
    let Some(c) = books.query(&out_trade_no, Instant::now()) else {
        return Ok(refusal(err::ORDERNOTEXIST));
    };
    drop(books);
    let mut a = Answer {
        trade_status: Some(status_of(&c).as_str().to_owned()),
        ..trade_fields(&c)
    };
    if c.micropay_calls > 0 {
        add_buyer(&mut a, &c);
    }
    if matches!(c.state, TradeState::Success | TradeState::Refund) {
        add_paid(&mut a, &c);
    }
    Ok(a)
}

/// `alipay.trade.cancel`, by `trade_no` or `out_trade_no`.
fn cancel(sim: &Provider, b: &TradeRef) -> Result<Answer, Refusal> {
    let now = Instant::now();
    let mut books = sim.books();
    let out_trade_no = trade_of(&books, b)?;
    let was_paid = books
        .peek(&out_trade_no, now)
        .is_some_and(|c| c.state == TradeState::Success);
    let answer = books.reverse_for(CodeKind::Alipay, &out_trade_no, now);
    let after = books.peek(&out_trade_no, now);
    drop(books);
    tracing::info!(out_trade_no, ?answer, "alipay.trade.cancel");
    let mut a = match answer {
        ReverseAnswer::Done => Answer {
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
            a.retry_flag = Some(if recall { "Y" } else { "N" }.into());
            a
        }
    };
    a.out_trade_no = Some(out_trade_no);
    // A number never paid through has no Alipay trade to name.
    if let Some(c) = after.filter(|c| c.micropay_calls > 0) {
        a.trade_no = Some(c.transaction_id);
    }
    Ok(a)
}

/// `alipay.trade.refund`, by `trade_no` or `out_trade_no`; without an
/// `out_request_no` the refund is numbered by the trade's `out_trade_no`
/// and must be of the whole amount.
fn refund(sim: &Provider, b: &RefundIn) -> Result<Answer, Refusal> {
    let refund = amount(&b.refund_amount)?;
    let named = !b.out_request_no.is_empty();
    if named {
        field(&b.out_request_no)?;
    }
    let now = Instant::now();
    let mut books = sim.books();
    let out_trade_no = trade_of(
        &books,
        &TradeRef {
            trade_no: b.trade_no.clone(),
            out_trade_no: b.out_trade_no.clone(),
        },
    )?;
    let out_request_no = if named {
        b.out_request_no.clone()
    } else {
        out_trade_no.clone()
    };
    let Some(before) = books.peek(&out_trade_no, now) else {
        return Ok(refusal(err::ORDERNOTEXIST));
    };
    let paid = matches!(before.state, TradeState::Success | TradeState::Refund);
    if paid && !named && refund != before.total_fee {
        let mut a = Answer::failed(
            code::FAILED,
            sub::REFUND_AMT_NOT_EQUAL_TOTAL,
            "撤销或退款金额与订单金额不一致",
        );
        a.out_trade_no = Some(out_trade_no);
        return Ok(a);
    }
    // The same number again is the same refund: no money moves twice.
    let again = before
        .refunds
        .iter()
        .any(|r| r.out_refund_no == out_request_no && r.status != RefundStatus::RefundClose);
    let answer = books.refund(
        &out_trade_no,
        &out_request_no,
        before.total_fee,
        refund,
        now,
    );
    let after = books.peek(&out_trade_no, now);
    drop(books);
    tracing::info!(
        out_trade_no,
        out_request_no,
        refund,
        ?answer,
        "alipay.trade.refund"
    );
    let mut a = match (answer, after) {
        (RefundAnswer::Done { .. }, Some(c)) => {
            let mine = c.refunds.iter().find(|r| r.out_refund_no == out_request_no);
            let moved = mine.is_some_and(|r| money_back(r.status));
            let back: i64 = c
                .refunds
                .iter()
                .filter(|r| money_back(r.status))
                .map(|r| r.refund_fee)
                .sum();
            let mut a = Answer {
                // Y only when this call moved money: a repeat, or a refund
                // still processing, says N (ask the refund query).
                fund_change: Some(if moved && !again { "Y" } else { "N" }.into()),
                refund_fee: Some(ali::yuan(back)),
                gmt_refund_pay: mine
                    .filter(|r| money_back(r.status))
                    .map(|r| china_time(r.settled_at.unwrap_or(r.created))),
                ..trade_fields(&c)
            };
            a.total_amount = None;
            add_buyer(&mut a, &c);
            a
        }
        (RefundAnswer::Done { .. }, None) => refusal(err::ORDERNOTEXIST),
        (RefundAnswer::Fail(err::INVALID_REQUEST | err::ERROR), _) => {
            if named {
                Answer::failed(
                    code::FAILED,
                    sub::REASON_TRADE_REFUND_FEE_ERR,
                    "退款金额无效",
                )
            } else {
                Answer::failed(
                    code::FAILED,
                    sub::REFUND_AMT_NOT_EQUAL_TOTAL,
                    "撤销或退款金额与订单金额不一致",
                )
            }
        }
        (RefundAnswer::Fail(err::NOTENOUGH), _) => {
            Answer::failed(code::FAILED, sub::SELLER_BALANCE_NOT_ENOUGH, "卖家余额不足")
        }
        (RefundAnswer::Fail(wx_code), _) => refusal(wx_code),
    };
    if a.out_trade_no.is_none() {
        a.out_trade_no = Some(out_trade_no);
    }
    Ok(a)
}

/// `alipay.trade.fastpay.refund.query`: code 10000 only says the query
/// worked. With the refund's data and `refund_status=REFUND_SUCCESS` it is
/// done; with its data and no status it is still under way; with no data
/// (none was made, or Alipay closed it) it did not happen, and may be
/// asked for again under the same `out_request_no`.
fn refund_query(sim: &Provider, b: &RefundQueryIn) -> Result<Answer, Refusal> {
    let out_request_no = field(&b.out_request_no)?;
    let mut books = sim.books();
    let out_trade_no = trade_of(
        &books,
        &TradeRef {
            trade_no: b.trade_no.clone(),
            out_trade_no: b.out_trade_no.clone(),
        },
    )?;
    let found = books.refund_query(&out_trade_no, Some(out_request_no), Instant::now());
    drop(books);
    let none = Answer::new(code::SUCCESS, ali::msg_of(code::SUCCESS));
    let (c, refunds) = match found {
        Err(err::ORDERNOTEXIST) => return Ok(refusal(err::ORDERNOTEXIST)),
        Err(_) => return Ok(none),
        Ok(v) => v,
    };
    let Some(r) = refunds
        .into_iter()
        .find(|r| r.out_refund_no == out_request_no)
    else {
        return Ok(none);
    };
    tracing::info!(out_trade_no, out_request_no, status = ?r.status, "alipay.trade.fastpay.refund.query");
    if r.status == RefundStatus::RefundClose {
        return Ok(none);
    }
    Ok(Answer {
        out_request_no: Some(r.out_refund_no.clone()),
        refund_amount: Some(ali::yuan(r.refund_fee)),
        refund_status: money_back(r.status).then(|| ali::REFUND_SUCCESS.to_owned()),
        ..trade_fields(&c)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::{Credentials, RefundOutcome, Scenario};
    use serde::Serialize;
    use serde_json::json;

    const APP_PRIVATE: &str =
        include_str!("../../../proto/tests/fixtures/alipay_test_app_private.pem");
    const APP_PUBLIC: &str =
        include_str!("../../../proto/tests/fixtures/alipay_test_app_public.pem");
    const ALIPAY_PRIVATE: &str =
        include_str!("../../../proto/tests/fixtures/alipay_test_alipay_private.pem");
    const APP_ID: &str = "2021000000000001";
    /// An Alipay payment code (18 digits starting 28).
    const CODE: &str = "284567890123456789";

    fn sim() -> Arc<Provider> {
        Provider::with_alipay(
            Credentials {
                appid: "wx2421b1c4370ec43b".into(),
                mch_id: "10000100".into(),
                key: "192006250b4c09247ec02edce69f6a2d".into(),
            },
            Some(AlipayCredentials {
                app_id: APP_ID.into(),
                app_public_key: PublicKey::from_pem(APP_PUBLIC).expect("key"),
                private_key: PrivateKey::from_pem(ALIPAY_PRIVATE).expect("key"),
            }),
        )
    }

    fn alipay_public() -> PublicKey {
        PrivateKey::from_pem(ALIPAY_PRIVATE)
            .expect("key")
            .public_key()
    }

    /// Where a client puts the parameters.
    #[derive(Clone, Copy)]
    enum Shape {
        /// A GET with everything in the query string (python-alipay-sdk).
        Get,
        /// The common parameters in the query string, biz_content in the
        /// form (Alipay's own SDK).
        Split,
        /// Everything in the form.
        Form,
    }

    fn signed(method: &str, biz: &impl Serialize) -> Params {
        let key = PrivateKey::from_pem(APP_PRIVATE).expect("key");
        ali::signed_request(APP_ID, method, "2024-05-01 12:00:00", biz, &key).expect("sign")
    }

    async fn send_params(sim: &Arc<Provider>, shape: Shape, p: &Params) -> (StatusCode, Vec<u8>) {
        let (query, body) = match shape {
            Shape::Get => (ali::encode_form(p), String::new()),
            Shape::Form => (String::new(), ali::encode_form(p)),
            Shape::Split => {
                let mut common = p.clone();
                let mut form = Params::new();
                if let Some(biz) = common.remove("biz_content") {
                    form.insert("biz_content".into(), biz);
                }
                (ali::encode_form(&common), ali::encode_form(&form))
            }
        };
        send_raw(sim, query, body.into_bytes()).await
    }

    async fn send_raw(sim: &Arc<Provider>, query: String, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let r = gateway(
            State(Arc::clone(sim)),
            RawQuery(Some(query)),
            Bytes::from(body),
        )
        .await;
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, bytes.to_vec())
    }

    /// A call in `shape`, its answer opened with Alipay's public key.
    async fn call(
        sim: &Arc<Provider>,
        shape: Shape,
        method: &str,
        biz: serde_json::Value,
    ) -> Answer {
        let (status, body) = send_params(sim, shape, &signed(method, &biz)).await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).expect("utf-8");
        ali::open_answer(&text, method, &alipay_public()).expect("a signed answer")
    }

    async fn pay(sim: &Arc<Provider>, out_trade_no: &str) -> Answer {
        call(
            sim,
            Shape::Split,
            method::PAY,
            json!({"out_trade_no": out_trade_no, "scene": "bar_code", "auth_code": CODE,
                   "total_amount": "21.16", "subject": "门店消费"}),
        )
        .await
    }

    fn sub_of(a: &Answer) -> (&str, &str) {
        (a.code.as_str(), a.sub_code())
    }

    #[tokio::test]
    async fn get_split_and_form_requests_all_pay() {
        let sim = sim();
        for (i, shape) in [Shape::Get, Shape::Split, Shape::Form]
            .into_iter()
            .enumerate()
        {
            let out = format!("o{i}");
            let a = call(
                &sim,
                shape,
                method::PAY,
                // A bare number for the amount, as python-alipay-sdk's
                // examples send it.
                json!({"out_trade_no": out, "scene": "bar_code", "auth_code": CODE,
                       "total_amount": 21.16, "subject": "门店消费"}),
            )
            .await;
            assert_eq!(a.code, "10000", "{a:?}");
            assert_eq!(a.out_trade_no.as_deref(), Some(out.as_str()));
            assert_eq!(a.total_amount.as_deref(), Some("21.16"));
            assert_eq!(a.receipt_amount.as_deref(), Some("21.16"));
            assert_eq!(a.buyer_pay_amount.as_deref(), Some("21.16"));
            assert_eq!(a.invoice_amount.as_deref(), Some("21.16"));
            assert_eq!(a.point_amount.as_deref(), Some("0.00"));
            assert!(a.gmt_payment.as_deref().is_some_and(ali::valid_timestamp));
            assert_eq!(
                a.fund_bill_list,
                [FundBill {
                    fund_channel: "ALIPAYACCOUNT".into(),
                    amount: "21.16".into()
                }]
            );
            let user = a.buyer_user_id.clone().unwrap_or_default();
            assert!(user.len() == 16 && user.starts_with("2088"), "{user}");
            assert!(user.bytes().all(|b| b.is_ascii_digit()));
            let login = a.buyer_logon_id.clone().unwrap_or_default();
            assert!(login.starts_with("159****") && login.len() == 11, "{login}");
            assert_eq!(a.trade_status, None, "pay answers carry no trade_status");
        }
        assert_eq!(sim.ledger().len(), 3);
    }

    #[tokio::test]
    async fn a_bad_signature_anywhere_is_refused() {
        let sim = sim();
        let mut p = signed(method::PAY, &json!({"out_trade_no": "o1"}));
        p.insert("timestamp".into(), "2024-05-01 12:00:01".into());
        let (_, body) = send_params(&sim, Shape::Split, &p).await;
        let a = ali::open_answer(
            &String::from_utf8(body).expect("utf-8"),
            method::PAY,
            &alipay_public(),
        )
        .expect("signed");
        assert_eq!(sub_of(&a), ("40002", "isv.invalid-signature"));
        // Signed by another key.
        let other = PrivateKey::from_pem(ALIPAY_PRIVATE).expect("key");
        let p = ali::signed_request(
            APP_ID,
            method::QUERY,
            "2024-05-01 12:00:00",
            &json!({"out_trade_no": "o1"}),
            &other,
        )
        .expect("sign");
        let (_, body) = send_params(&sim, Shape::Get, &p).await;
        let text = String::from_utf8(body).expect("utf-8");
        let a = ali::open_answer(&text, method::QUERY, &alipay_public()).expect("signed");
        assert_eq!(sub_of(&a), ("40002", "isv.invalid-signature"));
        // No method: a missing argument, in error_response.
        let (_, body) = send_raw(&sim, "charset=utf-8".into(), Vec::new()).await;
        let text = String::from_utf8(body).expect("utf-8");
        let a = ali::open_answer(&text, "error", &alipay_public()).expect("signed");
        assert_eq!(sub_of(&a), ("40001", "isv.missing-method"));
        // A name twice with two values is not guessed at.
        let p = signed(method::QUERY, &json!({"out_trade_no": "o1"}));
        let (status, _) = send_raw(
            &sim,
            ali::encode_form(&p),
            b"biz_content=%7B%22out_trade_no%22%3A%22o2%22%7D".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(sim.ledger().is_empty());
    }

    #[tokio::test]
    async fn a_gbk_request_is_answered_in_gbk() {
        let sim = sim();
        let key = PrivateKey::from_pem(APP_PRIVATE).expect("key");
        let biz = json!({"out_trade_no": "g1", "scene": "bar_code", "auth_code": CODE,
                         "total_amount": "1.00", "subject": "门店消费"});
        let mut p = ali::request(APP_ID, method::PAY, "2024-05-01 12:00:00", biz.to_string());
        p.insert("charset".into(), "GBK".into());
        let gbk = |s: &str| Charset::Gbk.encode(s).expect("gbk");
        p.insert(
            "sign".into(),
            key.sign_bytes(&gbk(&ali::signing_string(&p)))
                .expect("sign"),
        );
        let query: Vec<String> = p
            .iter()
            .map(|(k, v)| {
                let escaped: String = gbk(v).iter().map(|b| format!("%{b:02X}")).collect();
                format!("{k}={escaped}")
            })
            .collect();
        let (status, body) = send_raw(&sim, query.join("&"), Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        let a = ali::open_answer_in(&body, method::PAY, &alipay_public(), Charset::Gbk)
            .expect("a GBK answer signed over its GBK bytes");
        assert_eq!(a.code, "10000");
        // An unknown charset is refused, signed.
        let mut p = signed(method::QUERY, &json!({"out_trade_no": "g1"}));
        p.insert("charset".into(), "latin1".into());
        let (_, body) = send_params(&sim, Shape::Form, &p).await;
        let text = String::from_utf8(body).expect("utf-8");
        let a = ali::open_answer(&text, method::QUERY, &alipay_public()).expect("signed");
        assert_eq!(sub_of(&a), ("40002", "isv.invalid-charset"));
    }

    #[tokio::test]
    async fn query_cancel_and_refund_by_trade_no_alone() {
        let sim = sim();
        let paid = pay(&sim, "t1").await;
        let trade_no = paid.trade_no.clone().expect("trade_no");
        let q = call(
            &sim,
            Shape::Get,
            method::QUERY,
            json!({"trade_no": trade_no}),
        )
        .await;
        assert_eq!(q.code, "10000");
        assert_eq!(q.out_trade_no.as_deref(), Some("t1"));
        assert_eq!(q.trade_status.as_deref(), Some("TRADE_SUCCESS"));
        assert_eq!(q.gmt_payment, paid.gmt_payment);
        assert_eq!(q.buyer_user_id, paid.buyer_user_id);
        assert_eq!(q.fund_bill_list, paid.fund_bill_list);
        let unknown = call(&sim, Shape::Get, method::QUERY, json!({"trade_no": "999"})).await;
        assert_eq!(sub_of(&unknown), ("40004", "ACQ.TRADE_NOT_EXIST"));
        let neither = call(&sim, Shape::Get, method::QUERY, json!({})).await;
        assert_eq!(sub_of(&neither), ("40004", "ACQ.INVALID_PARAMETER"));

        // A whole refund by trade_no, without out_request_no: numbered by
        // the out_trade_no.
        let r = call(
            &sim,
            Shape::Split,
            method::REFUND,
            json!({"trade_no": trade_no, "refund_amount": "21.16"}),
        )
        .await;
        assert_eq!(r.code, "10000", "{r:?}");
        assert_eq!(
            (r.fund_change.as_deref(), r.refund_fee.as_deref()),
            (Some("Y"), Some("21.16"))
        );
        assert_eq!(r.out_trade_no.as_deref(), Some("t1"));
        assert_eq!(r.trade_no.as_deref(), Some(trade_no.as_str()));
        assert_eq!(r.buyer_user_id, paid.buyer_user_id);
        assert_eq!(r.buyer_logon_id, paid.buyer_logon_id);
        assert!(
            r.gmt_refund_pay
                .as_deref()
                .is_some_and(ali::valid_timestamp)
        );
        let rq = call(
            &sim,
            Shape::Split,
            method::REFUND_QUERY,
            json!({"trade_no": trade_no, "out_request_no": "t1"}),
        )
        .await;
        assert_eq!(rq.refund_status.as_deref(), Some("REFUND_SUCCESS"));
        assert_eq!(rq.refund_amount.as_deref(), Some("21.16"));
        // The same call again moves nothing.
        let again = call(
            &sim,
            Shape::Split,
            method::REFUND,
            json!({"out_trade_no": "t1", "refund_amount": "21.16"}),
        )
        .await;
        assert_eq!(
            (again.code.as_str(), again.fund_change.as_deref()),
            ("10000", Some("N"))
        );
        assert_eq!(sim.ledger()[0].refunded_fen, 2116);

        // A partial refund needs its own out_request_no.
        pay(&sim, "t2").await;
        let partial = call(
            &sim,
            Shape::Form,
            method::REFUND,
            json!({"out_trade_no": "t2", "refund_amount": "1.00"}),
        )
        .await;
        assert_eq!(
            sub_of(&partial),
            ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
        );

        // Cancel by trade_no.
        let p3 = pay(&sim, "t3").await;
        let c = call(
            &sim,
            Shape::Get,
            method::CANCEL,
            json!({"trade_no": p3.trade_no}),
        )
        .await;
        assert_eq!(c.code, "10000");
        assert_eq!(
            (
                c.out_trade_no.as_deref(),
                c.action.as_deref(),
                c.retry_flag.as_deref()
            ),
            (Some("t3"), Some("refund"), Some("N"))
        );
        assert_eq!(c.trade_no, p3.trade_no);
    }

    #[tokio::test]
    async fn refunds_over_what_is_left_or_short_of_balance() {
        let sim = sim();
        sim.set_scenario(Scenario {
            refund_notenough_calls: 1,
            ..Scenario::default()
        });
        pay(&sim, "o1").await;
        let refund = |amount: &str, no: &str| json!({"out_trade_no": "o1", "refund_amount": amount, "out_request_no": no});
        let short = call(&sim, Shape::Split, method::REFUND, refund("5.00", "r1")).await;
        assert_eq!(sub_of(&short), ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH"));
        // Topped up: the same number goes through.
        let r1 = call(&sim, Shape::Split, method::REFUND, refund("5.00", "r1")).await;
        assert_eq!(
            (r1.code.as_str(), r1.fund_change.as_deref()),
            ("10000", Some("Y"))
        );
        let over = call(&sim, Shape::Split, method::REFUND, refund("16.17", "r2")).await;
        assert_eq!(sub_of(&over), ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR"));
        let other_amount = call(&sim, Shape::Split, method::REFUND, refund("4.00", "r1")).await;
        assert_eq!(sub_of(&other_amount), ("40004", "ACQ.INVALID_PARAMETER"));
        let rest = call(&sim, Shape::Split, method::REFUND, refund("16.16", "r2")).await;
        assert_eq!(rest.refund_fee.as_deref(), Some("21.16"));
        let more = call(&sim, Shape::Split, method::REFUND, refund("0.01", "r3")).await;
        assert_eq!(sub_of(&more), ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR"));
        let q = call(
            &sim,
            Shape::Get,
            method::QUERY,
            json!({"out_trade_no": "o1"}),
        )
        .await;
        assert_eq!(q.trade_status.as_deref(), Some("TRADE_CLOSED"));
        let none = call(
            &sim,
            Shape::Get,
            method::REFUND,
            json!({"out_trade_no": "nope", "refund_amount": "1.00", "out_request_no": "x"}),
        )
        .await;
        assert_eq!(sub_of(&none), ("40004", "ACQ.TRADE_NOT_EXIST"));
    }

    #[tokio::test]
    async fn refund_query_reports_each_outcome() {
        let sim = sim();
        let query = |no: &str| json!({"out_trade_no": "o1", "out_request_no": no});
        for (outcome, status, data) in [
            (RefundOutcome::Success, Some("REFUND_SUCCESS"), true),
            (RefundOutcome::ProcessingForever, None, true),
            (RefundOutcome::Closed, None, false),
            (RefundOutcome::Change, Some("REFUND_SUCCESS"), true),
        ] {
            let sim = self::sim();
            sim.set_scenario(Scenario {
                refund: outcome,
                refund_after_ms: Some(0),
                ..Scenario::default()
            });
            pay(&sim, "o1").await;
            let r = call(
                &sim,
                Shape::Split,
                method::REFUND,
                json!({"out_trade_no": "o1", "refund_amount": "5.00", "out_request_no": "r1"}),
            )
            .await;
            assert_eq!(r.code, "10000", "{outcome:?}");
            // With no delay, CHANGE (money back, to the balance) is reached
            // within the call; a refund still processing or closed moved
            // nothing.
            let expect_y = matches!(outcome, RefundOutcome::Success | RefundOutcome::Change);
            assert_eq!(
                r.fund_change.as_deref(),
                Some(if expect_y { "Y" } else { "N" }),
                "{outcome:?}"
            );
            let a = call(&sim, Shape::Split, method::REFUND_QUERY, query("r1")).await;
            assert_eq!(a.code, "10000", "{outcome:?}");
            assert_eq!(a.refund_status.as_deref(), status, "{outcome:?}");
            if data {
                assert_eq!(a.refund_amount.as_deref(), Some("5.00"));
                assert_eq!(a.total_amount.as_deref(), Some("21.16"));
                assert_eq!(a.out_request_no.as_deref(), Some("r1"));
                assert_eq!(a.out_trade_no.as_deref(), Some("o1"));
                assert!(a.trade_no.is_some());
            } else {
                assert_eq!(a, Answer::new("10000", "Success"), "{outcome:?}");
            }
        }
        // No such refund: 10000 without data; no such trade: TRADE_NOT_EXIST;
        // out_request_no is required.
        pay(&sim, "o1").await;
        let a = call(&sim, Shape::Get, method::REFUND_QUERY, query("never")).await;
        assert_eq!(a, Answer::new("10000", "Success"));
        let a = call(
            &sim,
            Shape::Get,
            method::REFUND_QUERY,
            json!({"out_trade_no": "nope", "out_request_no": "r1"}),
        )
        .await;
        assert_eq!(sub_of(&a), ("40004", "ACQ.TRADE_NOT_EXIST"));
        let a = call(
            &sim,
            Shape::Get,
            method::REFUND_QUERY,
            json!({"out_trade_no": "o1"}),
        )
        .await;
        assert_eq!(sub_of(&a), ("40004", "ACQ.INVALID_PARAMETER"));
    }

    #[tokio::test]
    async fn waiting_for_the_buyer_then_paid() {
        let sim = sim();
        sim.set_scenario(Scenario {
            outcome: crate::payments::Outcome::UserpayingThenSuccess,
            after_ms: Some(0),
            ..Scenario::default()
        });
        let a = pay(&sim, "w1").await;
        assert_eq!(a.code, "10003");
        assert!(a.trade_no.is_some());
        assert_eq!(a.buyer_pay_amount.as_deref(), Some("0.00"));
        assert!(a.fund_bill_list.is_empty());
        let q = call(
            &sim,
            Shape::Get,
            method::QUERY,
            json!({"out_trade_no": "w1"}),
        )
        .await;
        assert_eq!(q.trade_status.as_deref(), Some("TRADE_SUCCESS"));
        assert_eq!(q.receipt_amount.as_deref(), Some("21.16"));
    }

    #[test]
    fn china_time_shape() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_unix(1_714_564_800 + 8 * 3600), "2024-05-01 20:00:00");
        assert_eq!(format_unix(4_102_444_799), "2099-12-31 23:59:59");
        assert!(ali::valid_timestamp(&china_time(Instant::now())));
    }
}
