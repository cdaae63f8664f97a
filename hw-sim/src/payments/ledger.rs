//! The simulated provider's books: one entry per `out_trade_no`, the
//! scenario each entry was created under, and what each call does to it.
//! Both wallets share them: the answers are in WeChat Pay's terms, and the
//! Alipay face translates. No I/O; every call takes the current time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proto::wechatpay::{CodeKind, TradeState, err};
use serde::{Deserialize, Serialize};

/// What the provider does with a payment code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Paid at once.
    #[default]
    Success,
    /// USERPAYING, then paid `after` the micropay.
    UserpayingThenSuccess,
    /// USERPAYING until reversed.
    UserpayingForever,
    /// NOTENOUGH: the customer's balance does not cover it.
    InsufficientBalance,
    /// AUTH_CODE_INVALID: the code is wrong or expired.
    InvalidCode,
    /// Money moves, but micropay answers SYSTEMERROR; a query finds it paid.
    SystemErrorThenSuccess,
    /// Money moves, but micropay never answers; a query finds it paid.
    NoAnswer,
}

/// A scenario as the control API takes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The code it applies to; absent: the default for every other code.
    #[serde(default)]
    pub auth_code: Option<String>,
    #[serde(default)]
    pub outcome: Outcome,
    /// Seconds before a USERPAYING charge turns paid (default 2).
    #[serde(default)]
    pub after_s: Option<u64>,
    /// The same in milliseconds, for fast tests; wins over `after_s`.
    #[serde(default)]
    pub after_ms: Option<u64>,
    /// How many reverse calls answer "SYSTEMERROR, recall=Y" before one works.
    #[serde(default)]
    pub reverse_retries: u32,
}

impl Scenario {
    fn after(&self) -> Duration {
        match (self.after_ms, self.after_s) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(s)) => Duration::from_secs(s),
            (None, None) => Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Charge {
    pub out_trade_no: String,
    /// Which wallet's API created it.
    pub provider: CodeKind,
    pub transaction_id: String,
    pub total_fee: i64,
    pub refunded_fee: i64,
    pub state: TradeState,
    created: Instant,
    scenario: Scenario,
    reverse_failures_left: u32,
    refunds: BTreeMap<String, i64>,
    pub micropay_calls: u32,
    pub query_calls: u32,
    pub reverse_calls: u32,
}

/// One row of `GET /ledger`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub out_trade_no: String,
    /// `wechatpay` or `alipay`: which API created it.
    #[serde(default)]
    pub provider: String,
    pub state: String,
    pub total_fen: i64,
    pub refunded_fen: i64,
    /// The same amounts under the provider's own names.
    pub total_fee: i64,
    pub refunded_fee: i64,
    pub micropay_calls: u32,
    pub query_calls: u32,
    pub reverse_calls: u32,
}

/// What micropay answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicropayAnswer {
    Paid(Charge),
    /// `result_code=FAIL` with this `err_code`.
    Fail(&'static str),
    /// Hold the connection and never answer.
    Silence,
}

/// What reverse answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseAnswer {
    Done,
    /// FAIL with this code; `recall` says whether to call again.
    Fail {
        code: &'static str,
        recall: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundAnswer {
    Done { refund_id: String, refund_fee: i64 },
    Fail(&'static str),
}

impl PartialEq for Charge {
    fn eq(&self, other: &Self) -> bool {
        self.out_trade_no == other.out_trade_no && self.state == other.state
    }
}
impl Eq for Charge {}

#[derive(Debug, Default)]
pub struct Ledger {
    default: Scenario,
    by_code: HashMap<String, Scenario>,
    charges: BTreeMap<String, Charge>,
    next_txn: u64,
}

impl Ledger {
    pub fn set_scenario(&mut self, s: Scenario) {
        match s.auth_code.clone() {
            Some(code) => {
                self.by_code.insert(code, s);
            }
            None => self.default = s,
        }
    }

    /// Time moves a USERPAYING charge on, as its scenario says.
    fn settle(c: &mut Charge, now: Instant) {
        if c.state == TradeState::UserPaying
            && c.scenario.outcome == Outcome::UserpayingThenSuccess
            && now.duration_since(c.created) >= c.scenario.after()
        {
            c.state = TradeState::Success;
        }
    }

    fn txn_id(&mut self) -> String {
        self.next_txn += 1;
        format!("4200{:016}", self.next_txn)
    }

    /// A WeChat Pay micropay.
    pub fn micropay(
        &mut self,
        out_trade_no: &str,
        auth_code: &str,
        total_fee: i64,
        now: Instant,
    ) -> MicropayAnswer {
        self.charge(CodeKind::WeChatPay, out_trade_no, auth_code, total_fee, now)
    }

    /// A charge through `wallet`'s API: only that wallet's codes are valid.
    pub fn charge(
        &mut self,
        wallet: CodeKind,
        out_trade_no: &str,
        auth_code: &str,
        total_fee: i64,
        now: Instant,
    ) -> MicropayAnswer {
        if let Some(c) = self.charges.get_mut(out_trade_no) {
            Self::settle(c, now);
            c.micropay_calls += 1;
            // A repeated out_trade_no never charges again.
            return match c.state {
                TradeState::Success | TradeState::Refund => MicropayAnswer::Fail(err::ORDERPAID),
                TradeState::Revoked => MicropayAnswer::Fail(err::ORDERREVERSED),
                TradeState::Closed => MicropayAnswer::Fail(err::ORDERCLOSED),
                TradeState::UserPaying | TradeState::NotPay => {
                    MicropayAnswer::Fail(err::USERPAYING)
                }
                TradeState::PayError => MicropayAnswer::Fail(err::TRADE_ERROR),
            };
        }
        let scenario = self.by_code.get(auth_code).unwrap_or(&self.default).clone();
        let own_code = proto::wechatpay::parse_code(auth_code).is_some_and(|c| c.kind == wallet);
        let outcome = if own_code {
            scenario.outcome
        } else {
            Outcome::InvalidCode
        };
        let (state, answer) = match outcome {
            Outcome::Success => (TradeState::Success, None),
            Outcome::UserpayingThenSuccess | Outcome::UserpayingForever => (
                TradeState::UserPaying,
                Some(MicropayAnswer::Fail(err::USERPAYING)),
            ),
            Outcome::InsufficientBalance => (
                TradeState::PayError,
                Some(MicropayAnswer::Fail(err::NOTENOUGH)),
            ),
            Outcome::InvalidCode => (
                TradeState::PayError,
                Some(MicropayAnswer::Fail(err::AUTH_CODE_INVALID)),
            ),
            Outcome::SystemErrorThenSuccess => (
                TradeState::Success,
                Some(MicropayAnswer::Fail(err::SYSTEMERROR)),
            ),
            Outcome::NoAnswer => (TradeState::Success, Some(MicropayAnswer::Silence)),
        };
        let transaction_id = self.txn_id();
        let charge = Charge {
            out_trade_no: out_trade_no.to_owned(),
            provider: wallet,
            transaction_id,
            total_fee,
            refunded_fee: 0,
            state,
            created: now,
            reverse_failures_left: scenario.reverse_retries,
            scenario,
            refunds: BTreeMap::new(),
            micropay_calls: 1,
            query_calls: 0,
            reverse_calls: 0,
        };
        self.charges.insert(out_trade_no.to_owned(), charge.clone());
        answer.unwrap_or(MicropayAnswer::Paid(charge))
    }

    /// `None`: ORDERNOTEXIST.
    pub fn query(&mut self, out_trade_no: &str, now: Instant) -> Option<Charge> {
        let c = self.charges.get_mut(out_trade_no)?;
        Self::settle(c, now);
        c.query_calls += 1;
        Some(c.clone())
    }

    /// A WeChat Pay reverse.
    pub fn reverse(&mut self, out_trade_no: &str, now: Instant) -> ReverseAnswer {
        self.reverse_for(CodeKind::WeChatPay, out_trade_no, now)
    }

    /// The state of a charge, touching no counter.
    pub fn peek(&mut self, out_trade_no: &str, now: Instant) -> Option<Charge> {
        let c = self.charges.get_mut(out_trade_no)?;
        Self::settle(c, now);
        Some(c.clone())
    }

    /// A reverse (WeChat) or cancel (Alipay) through `wallet`'s API.
    pub fn reverse_for(
        &mut self,
        wallet: CodeKind,
        out_trade_no: &str,
        now: Instant,
    ) -> ReverseAnswer {
        let Some(c) = self.charges.get_mut(out_trade_no) else {
            // Reversing an order the provider never saw closes the number,
            // so a micropay still on its way cannot charge any more.
            let txn = self.txn_id();
            self.charges.insert(
                out_trade_no.to_owned(),
                Charge {
                    out_trade_no: out_trade_no.to_owned(),
                    provider: wallet,
                    transaction_id: txn,
                    total_fee: 0,
                    refunded_fee: 0,
                    state: TradeState::Revoked,
                    created: now,
                    scenario: Scenario::default(),
                    reverse_failures_left: 0,
                    refunds: BTreeMap::new(),
                    micropay_calls: 0,
                    query_calls: 0,
                    reverse_calls: 1,
                },
            );
            return ReverseAnswer::Done;
        };
        Self::settle(c, now);
        c.reverse_calls += 1;
        if c.reverse_failures_left > 0 {
            c.reverse_failures_left -= 1;
            return ReverseAnswer::Fail {
                code: err::SYSTEMERROR,
                recall: true,
            };
        }
        match c.state {
            TradeState::Refund => ReverseAnswer::Fail {
                code: err::TRADE_ERROR,
                recall: false,
            },
            _ => {
                c.state = TradeState::Revoked;
                ReverseAnswer::Done
            }
        }
    }

    pub fn refund(
        &mut self,
        out_trade_no: &str,
        out_refund_no: &str,
        total_fee: i64,
        refund_fee: i64,
        now: Instant,
    ) -> RefundAnswer {
        let Some(c) = self.charges.get_mut(out_trade_no) else {
            return RefundAnswer::Fail(err::ORDERNOTEXIST);
        };
        Self::settle(c, now);
        if let Some(&fee) = c.refunds.get(out_refund_no) {
            // The same refund number is the same refund.
            return if fee == refund_fee {
                RefundAnswer::Done {
                    refund_id: format!("5030{out_refund_no}"),
                    refund_fee,
                }
            } else {
                // As the real service: the number is taken, with another amount.
                RefundAnswer::Fail(err::REFUND_FEE_MISMATCH)
            };
        }
        if !matches!(c.state, TradeState::Success | TradeState::Refund) {
            return RefundAnswer::Fail(err::TRADE_ERROR);
        }
        if total_fee != c.total_fee || refund_fee <= 0 {
            return RefundAnswer::Fail(err::PARAM_ERROR);
        }
        // The real service: a fully refunded order answers ERROR ("订单已全额
        // 退款"), more than is still refundable INVALID_REQUEST. NOTENOUGH on a
        // refund means the merchant's balance is short, which the books never are.
        if c.refunded_fee >= c.total_fee {
            return RefundAnswer::Fail(err::ERROR);
        }
        if c.refunded_fee + refund_fee > c.total_fee {
            return RefundAnswer::Fail(err::INVALID_REQUEST);
        }
        c.refunded_fee += refund_fee;
        c.refunds.insert(out_refund_no.to_owned(), refund_fee);
        c.state = TradeState::Refund;
        RefundAnswer::Done {
            refund_id: format!("5030{out_refund_no}"),
            refund_fee,
        }
    }

    pub fn entries(&mut self, now: Instant) -> Vec<LedgerEntry> {
        self.charges
            .values_mut()
            .map(|c| {
                Self::settle(c, now);
                LedgerEntry {
                    out_trade_no: c.out_trade_no.clone(),
                    provider: c.provider.as_str().to_owned(),
                    state: c.state.as_str().to_owned(),
                    total_fen: c.total_fee,
                    refunded_fen: c.refunded_fee,
                    total_fee: c.total_fee,
                    refunded_fee: c.refunded_fee,
                    micropay_calls: c.micropay_calls,
                    query_calls: c.query_calls,
                    reverse_calls: c.reverse_calls,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "134567890123456789";

    fn ledger(outcome: Outcome, after_ms: u64, reverse_retries: u32) -> Ledger {
        let mut l = Ledger::default();
        l.set_scenario(Scenario {
            outcome,
            after_ms: Some(after_ms),
            reverse_retries,
            ..Scenario::default()
        });
        l
    }

    #[test]
    fn userpaying_turns_paid_after_the_delay() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::UserpayingThenSuccess, 1000, 0);
        assert_eq!(
            l.micropay("o1", CODE, 100, t0),
            MicropayAnswer::Fail(err::USERPAYING)
        );
        assert_eq!(
            l.query("o1", t0).map(|c| c.state),
            Some(TradeState::UserPaying)
        );
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(
            l.query("o1", later).map(|c| c.state),
            Some(TradeState::Success)
        );
    }

    #[test]
    fn a_repeated_number_never_charges_twice() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        assert!(matches!(
            l.micropay("o1", CODE, 100, t0),
            MicropayAnswer::Paid(_)
        ));
        assert_eq!(
            l.micropay("o1", CODE, 100, t0),
            MicropayAnswer::Fail(err::ORDERPAID)
        );
        assert_eq!(l.entries(t0).len(), 1);
    }

    #[test]
    fn reverse_can_need_retries_and_closes_unknown_numbers() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::UserpayingForever, 0, 2);
        l.micropay("o1", CODE, 100, t0);
        for _ in 0..2 {
            assert_eq!(
                l.reverse("o1", t0),
                ReverseAnswer::Fail {
                    code: err::SYSTEMERROR,
                    recall: true
                }
            );
        }
        assert_eq!(l.reverse("o1", t0), ReverseAnswer::Done);
        assert_eq!(
            l.query("o1", t0).map(|c| c.state),
            Some(TradeState::Revoked)
        );
        assert_eq!(l.reverse("never-seen", t0), ReverseAnswer::Done);
        assert_eq!(
            l.micropay("never-seen", CODE, 100, t0),
            MicropayAnswer::Fail(err::ORDERREVERSED)
        );
    }

    #[test]
    fn refunds_are_idempotent_and_bounded() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        l.micropay("o1", CODE, 100, t0);
        assert!(matches!(
            l.refund("o1", "r1", 100, 60, t0),
            RefundAnswer::Done { .. }
        ));
        assert!(matches!(
            l.refund("o1", "r1", 100, 60, t0),
            RefundAnswer::Done { .. }
        ));
        assert_eq!(
            l.refund("o1", "r2", 100, 41, t0),
            RefundAnswer::Fail(err::INVALID_REQUEST)
        );
        assert_eq!(
            l.refund("o1", "r1", 100, 61, t0),
            RefundAnswer::Fail(err::REFUND_FEE_MISMATCH)
        );
        assert!(matches!(
            l.refund("o1", "r2", 100, 40, t0),
            RefundAnswer::Done { .. }
        ));
        assert_eq!(l.entries(t0)[0].refunded_fen, 100);
        assert_eq!(
            l.refund("o1", "r3", 100, 1, t0),
            RefundAnswer::Fail(err::ERROR)
        );
    }

    #[test]
    fn alipay_charges_share_the_books_and_scenarios() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        l.set_scenario(Scenario {
            auth_code: Some("284567890123456789".into()),
            outcome: Outcome::InsufficientBalance,
            ..Scenario::default()
        });
        assert!(matches!(
            l.charge(CodeKind::Alipay, "a1", "2812345678901234", 100, t0),
            MicropayAnswer::Paid(_)
        ));
        assert_eq!(
            l.charge(CodeKind::Alipay, "a2", "284567890123456789", 100, t0),
            MicropayAnswer::Fail(err::NOTENOUGH)
        );
        assert_eq!(
            l.charge(CodeKind::Alipay, "a3", CODE, 100, t0),
            MicropayAnswer::Fail(err::AUTH_CODE_INVALID)
        );
        l.micropay("w1", CODE, 100, t0);
        let providers: Vec<String> = l.entries(t0).into_iter().map(|e| e.provider).collect();
        assert_eq!(providers, ["alipay", "alipay", "alipay", "wechatpay"]);
    }

    #[test]
    fn codes_of_other_wallets_are_invalid_here() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        assert_eq!(
            l.micropay("o1", "2812345678901234", 100, t0),
            MicropayAnswer::Fail(err::AUTH_CODE_INVALID)
        );
    }
}
