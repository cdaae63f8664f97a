//! The simulated provider's books: one entry per `out_trade_no`, the
//! scenario each entry was created under, and what each call does to it.
//! Both wallets share them: the answers are in WeChat Pay's terms, and the
//! Alipay face translates. No I/O; every call takes the current time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proto::wechatpay::{CodeKind, RefundStatus, TradeState, err};
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

/// What the provider does with an accepted refund of a charge. A refund
/// call's SUCCESS only means *accepted*; the outcome is what a refund query
/// reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundOutcome {
    /// SUCCESS at once.
    #[default]
    Success,
    /// PROCESSING until `refund_after`, then SUCCESS.
    ProcessingThenSuccess,
    /// PROCESSING for ever.
    ProcessingForever,
    /// PROCESSING until `refund_after`, then REFUNDCLOSE: no money moved,
    /// the amount is refundable again.
    Closed,
    /// PROCESSING until `refund_after`, then CHANGE: the money could not go
    /// back to the customer's original account. It stays counted as
    /// refunded here (the provider holds it for the merchant to pay out
    /// another way), so it is not refundable again.
    Change,
}

/// A scenario as the control API takes it. It applies to charges made
/// after it is set: a charge keeps the scenario it was made under, refunds
/// included.
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
    /// What happens to the charge's accepted refunds.
    #[serde(default)]
    pub refund: RefundOutcome,
    /// Seconds a PROCESSING refund takes to reach its outcome (default 2).
    #[serde(default)]
    pub refund_after_s: Option<u64>,
    /// The same in milliseconds; wins over `refund_after_s`.
    #[serde(default)]
    pub refund_after_ms: Option<u64>,
    /// How many refund calls (that would otherwise be accepted) answer
    /// NOTENOUGH, the merchant's balance being short, before one is accepted.
    #[serde(default)]
    pub refund_notenough_calls: u32,
}

impl Scenario {
    fn after(&self) -> Duration {
        match (self.after_ms, self.after_s) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(s)) => Duration::from_secs(s),
            (None, None) => Duration::from_secs(2),
        }
    }

    fn refund_after(&self) -> Duration {
        match (self.refund_after_ms, self.refund_after_s) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(s)) => Duration::from_secs(s),
            (None, None) => Duration::from_secs(2),
        }
    }
}

/// One refund of a charge, as the provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// The merchant's number for it (Alipay's `out_request_no`).
    pub out_refund_no: String,
    /// The provider's number for it.
    pub refund_id: String,
    pub refund_fee: i64,
    /// When it was accepted (again, for a closed one resubmitted).
    pub created: Instant,
    pub status: RefundStatus,
    /// When it reached the status it has, once it is no longer PROCESSING.
    pub settled_at: Option<Instant>,
}

impl RefundRecord {
    /// True once the refund has its outcome (not PROCESSING).
    pub fn is_done(&self) -> bool {
        self.status != RefundStatus::Processing
    }

    /// True when the money went back to the customer.
    pub fn is_success(&self) -> bool {
        self.status == RefundStatus::Success
    }
}

#[derive(Debug, Clone)]
pub struct Charge {
    pub out_trade_no: String,
    /// The payment code it was made with (empty for a reverse that came
    /// before its micropay).
    pub auth_code: String,
    /// Which wallet's API created it.
    pub provider: CodeKind,
    pub transaction_id: String,
    pub total_fee: i64,
    pub refunded_fee: i64,
    pub state: TradeState,
    /// When the provider first saw it.
    pub created: Instant,
    /// When it was paid, once it was.
    pub paid_at: Option<Instant>,
    scenario: Scenario,
    reverse_failures_left: u32,
    notenough_left: u32,
    /// Its refunds in the order they were made.
    pub refunds: Vec<RefundRecord>,
    pub micropay_calls: u32,
    pub query_calls: u32,
    pub reverse_calls: u32,
}

/// One row of `GET /ledger`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub out_trade_no: String,
    /// The payment code the customer showed (the simulator's own record:
    /// the real services do not answer it), so a ledger can be split by
    /// who scanned the code.
    #[serde(default)]
    pub auth_code: String,
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
#[allow(clippy::large_enum_variant)] // one per call: not worth a box
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
    next_refund: u64,
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

    /// Time moves a USERPAYING charge and its PROCESSING refunds on, as its
    /// scenario says.
    fn settle(c: &mut Charge, now: Instant) {
        if c.state == TradeState::UserPaying
            && c.scenario.outcome == Outcome::UserpayingThenSuccess
            && now.duration_since(c.created) >= c.scenario.after()
        {
            c.state = TradeState::Success;
            c.paid_at = Some(c.created + c.scenario.after());
        }
        let after = c.scenario.refund_after();
        let to = match c.scenario.refund {
            RefundOutcome::Success | RefundOutcome::ProcessingThenSuccess => RefundStatus::Success,
            RefundOutcome::ProcessingForever => return,
            RefundOutcome::Closed => RefundStatus::RefundClose,
            RefundOutcome::Change => RefundStatus::Change,
        };
        for r in &mut c.refunds {
            if r.status == RefundStatus::Processing && now.duration_since(r.created) >= after {
                r.status = to;
                r.settled_at = Some(r.created + after);
                if to == RefundStatus::RefundClose {
                    c.refunded_fee -= r.refund_fee;
                }
            }
        }
        if c.state == TradeState::Refund && c.refunded_fee == 0 {
            // Every refund closed: the order is simply paid again.
            c.state = TradeState::Success;
        }
    }

    fn refund_no(&mut self) -> String {
        self.next_refund += 1;
        format!("5030{:025}", self.next_refund)
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
            auth_code: auth_code.to_owned(),
            provider: wallet,
            transaction_id,
            total_fee,
            refunded_fee: 0,
            state,
            created: now,
            paid_at: (state == TradeState::Success).then_some(now),
            reverse_failures_left: scenario.reverse_retries,
            notenough_left: scenario.refund_notenough_calls,
            scenario,
            refunds: Vec::new(),
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
                    auth_code: String::new(),
                    provider: wallet,
                    transaction_id: txn,
                    total_fee: 0,
                    refunded_fee: 0,
                    state: TradeState::Revoked,
                    created: now,
                    paid_at: None,
                    scenario: Scenario::default(),
                    reverse_failures_left: 0,
                    notenough_left: 0,
                    refunds: Vec::new(),
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

    /// A refund of `refund_fee` of the charge `out_trade_no`, numbered
    /// `out_refund_no` by the merchant (unique per charge; Alipay's face
    /// passes the trade number when `out_request_no` is absent). `Done`
    /// means accepted: [`Ledger::refund_query`] tells the outcome.
    pub fn refund(
        &mut self,
        out_trade_no: &str,
        out_refund_no: &str,
        total_fee: i64,
        refund_fee: i64,
        now: Instant,
    ) -> RefundAnswer {
        let fresh_id = self.refund_no();
        let Some(c) = self.charges.get_mut(out_trade_no) else {
            return RefundAnswer::Fail(err::ORDERNOTEXIST);
        };
        Self::settle(c, now);
        let mut resubmit = None;
        if let Some((i, r)) = c
            .refunds
            .iter()
            .enumerate()
            .find(|(_, r)| r.out_refund_no == out_refund_no)
        {
            // The same refund number is the same refund.
            if r.refund_fee != refund_fee {
                // As the real service: the number is taken, with another amount.
                return RefundAnswer::Fail(err::REFUND_FEE_MISMATCH);
            }
            if r.status != RefundStatus::RefundClose {
                return RefundAnswer::Done {
                    refund_id: r.refund_id.clone(),
                    refund_fee,
                };
            }
            // A closed refund asked again under its number is made again.
            resubmit = Some(i);
        }
        if !matches!(c.state, TradeState::Success | TradeState::Refund) {
            return RefundAnswer::Fail(err::TRADE_ERROR);
        }
        if total_fee != c.total_fee || refund_fee <= 0 {
            return RefundAnswer::Fail(err::PARAM_ERROR);
        }
        // The real service: a fully refunded order answers ERROR ("订单已全额
        // 退款"), more than is still refundable INVALID_REQUEST.
        if c.refunded_fee >= c.total_fee {
            return RefundAnswer::Fail(err::ERROR);
        }
        if c.refunded_fee + refund_fee > c.total_fee {
            return RefundAnswer::Fail(err::INVALID_REQUEST);
        }
        // NOTENOUGH on a refund: the merchant's own balance is short.
        if c.notenough_left > 0 {
            c.notenough_left -= 1;
            return RefundAnswer::Fail(err::NOTENOUGH);
        }
        let (status, settled_at) = match c.scenario.refund {
            RefundOutcome::Success => (RefundStatus::Success, Some(now)),
            _ => (RefundStatus::Processing, None),
        };
        c.refunded_fee += refund_fee;
        c.state = TradeState::Refund;
        let refund_id = match resubmit {
            Some(i) => {
                let r = &mut c.refunds[i];
                r.created = now;
                r.status = status;
                r.settled_at = settled_at;
                r.refund_id.clone()
            }
            None => {
                c.refunds.push(RefundRecord {
                    out_refund_no: out_refund_no.to_owned(),
                    refund_id: fresh_id.clone(),
                    refund_fee,
                    created: now,
                    status,
                    settled_at,
                });
                fresh_id
            }
        };
        RefundAnswer::Done {
            refund_id,
            refund_fee,
        }
    }

    /// A refund query: the charge and its refunds (only the one numbered
    /// `out_refund_no` when given), settled by `now`. Errors: ORDERNOTEXIST
    /// (no such charge), REFUNDNOTEXIST (no such refund, or none at all).
    pub fn refund_query(
        &mut self,
        out_trade_no: &str,
        out_refund_no: Option<&str>,
        now: Instant,
    ) -> Result<(Charge, Vec<RefundRecord>), &'static str> {
        let c = self
            .charges
            .get_mut(out_trade_no)
            .ok_or(err::ORDERNOTEXIST)?;
        Self::settle(c, now);
        let refunds: Vec<RefundRecord> = c
            .refunds
            .iter()
            .filter(|r| out_refund_no.is_none_or(|n| r.out_refund_no == n))
            .cloned()
            .collect();
        if refunds.is_empty() {
            return Err(err::REFUNDNOTEXIST);
        }
        Ok((c.clone(), refunds))
    }

    /// The `out_trade_no` of the charge the provider numbered
    /// `transaction_id` (Alipay's `trade_no`).
    pub fn out_trade_no_of(&self, transaction_id: &str) -> Option<String> {
        self.charges
            .values()
            .find(|c| c.transaction_id == transaction_id && c.micropay_calls > 0)
            .map(|c| c.out_trade_no.clone())
    }

    /// The charge and `out_refund_no` of the refund the provider numbered
    /// `refund_id`.
    pub fn refund_by_id(&self, refund_id: &str) -> Option<(String, String)> {
        self.charges.values().find_map(|c| {
            c.refunds
                .iter()
                .find(|r| r.refund_id == refund_id)
                .map(|r| (c.out_trade_no.clone(), r.out_refund_no.clone()))
        })
    }

    /// The charge of the refund numbered `out_refund_no` by the merchant (the
    /// first one, should two charges use the same number).
    pub fn refund_owner(&self, out_refund_no: &str) -> Option<String> {
        self.charges
            .values()
            .find(|c| c.refunds.iter().any(|r| r.out_refund_no == out_refund_no))
            .map(|c| c.out_trade_no.clone())
    }

    pub fn entries(&mut self, now: Instant) -> Vec<LedgerEntry> {
        self.charges
            .values_mut()
            .map(|c| {
                Self::settle(c, now);
                LedgerEntry {
                    out_trade_no: c.out_trade_no.clone(),
                    auth_code: c.auth_code.clone(),
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

    fn refunding(refund: RefundOutcome, notenough: u32) -> Ledger {
        let mut l = Ledger::default();
        l.set_scenario(Scenario {
            refund,
            refund_after_ms: Some(1000),
            refund_notenough_calls: notenough,
            ..Scenario::default()
        });
        l
    }

    fn statuses(l: &mut Ledger, at: Instant) -> Vec<RefundStatus> {
        let (_, refunds) = l.refund_query("o1", None, at).unwrap();
        refunds.into_iter().map(|r| r.status).collect()
    }

    #[test]
    fn a_refund_succeeds_at_once_by_default() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        l.micropay("o1", CODE, 100, t0);
        let RefundAnswer::Done { refund_id, .. } = l.refund("o1", "r1", 100, 30, t0) else {
            panic!("refused")
        };
        let (c, refunds) = l.refund_query("o1", Some("r1"), t0).unwrap();
        assert_eq!(c.refunded_fee, 30);
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].refund_id, refund_id);
        assert_eq!(refunds[0].refund_fee, 30);
        assert!(refunds[0].is_done() && refunds[0].is_success());
        assert_eq!(refunds[0].settled_at, Some(t0));
    }

    #[test]
    fn processing_then_success_settles_by_time() {
        let t0 = Instant::now();
        let mut l = refunding(RefundOutcome::ProcessingThenSuccess, 0);
        l.micropay("o1", CODE, 100, t0);
        assert!(matches!(
            l.refund("o1", "r1", 100, 100, t0),
            RefundAnswer::Done { .. }
        ));
        assert_eq!(statuses(&mut l, t0), [RefundStatus::Processing]);
        // While processing it is counted: nothing more is refundable.
        assert_eq!(
            l.refund("o1", "r2", 100, 1, t0),
            RefundAnswer::Fail(err::ERROR)
        );
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(statuses(&mut l, later), [RefundStatus::Success]);
        let (_, r) = l.refund_query("o1", None, later).unwrap();
        assert_eq!(r[0].settled_at, Some(later));
    }

    #[test]
    fn processing_forever_never_settles() {
        let t0 = Instant::now();
        let mut l = refunding(RefundOutcome::ProcessingForever, 0);
        l.micropay("o1", CODE, 100, t0);
        l.refund("o1", "r1", 100, 10, t0);
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!(statuses(&mut l, much_later), [RefundStatus::Processing]);
        assert!(!l.refund_query("o1", None, much_later).unwrap().1[0].is_done());
    }

    #[test]
    fn a_closed_refund_gives_the_amount_back_and_its_number_can_retry() {
        let t0 = Instant::now();
        let mut l = refunding(RefundOutcome::Closed, 0);
        l.micropay("o1", CODE, 100, t0);
        l.refund("o1", "r1", 100, 100, t0);
        assert_eq!(l.peek("o1", t0).unwrap().state, TradeState::Refund);
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(statuses(&mut l, t1), [RefundStatus::RefundClose]);
        let c = l.peek("o1", t1).unwrap();
        assert_eq!((c.refunded_fee, c.state), (0, TradeState::Success));
        // The same number again is the same refund, made again.
        let (_, before) = l.refund_query("o1", None, t1).unwrap();
        let RefundAnswer::Done { refund_id, .. } = l.refund("o1", "r1", 100, 100, t1) else {
            panic!("refused")
        };
        assert_eq!(refund_id, before[0].refund_id);
        assert_eq!(statuses(&mut l, t1), [RefundStatus::Processing]);
        assert_eq!(l.peek("o1", t1).unwrap().refunded_fee, 100);
    }

    #[test]
    fn a_changed_refund_stays_counted() {
        let t0 = Instant::now();
        let mut l = refunding(RefundOutcome::Change, 0);
        l.micropay("o1", CODE, 100, t0);
        l.refund("o1", "r1", 100, 100, t0);
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(statuses(&mut l, t1), [RefundStatus::Change]);
        assert!(l.refund_query("o1", None, t1).unwrap().1[0].is_done());
        assert_eq!(l.peek("o1", t1).unwrap().refunded_fee, 100);
        assert_eq!(
            l.refund("o1", "r2", 100, 1, t1),
            RefundAnswer::Fail(err::ERROR)
        );
    }

    #[test]
    fn a_short_merchant_balance_refuses_the_first_refunds() {
        let t0 = Instant::now();
        let mut l = refunding(RefundOutcome::Success, 2);
        l.micropay("o1", CODE, 100, t0);
        // Refusals for other reasons do not use the count up.
        assert_eq!(
            l.refund("o1", "r1", 100, 101, t0),
            RefundAnswer::Fail(err::INVALID_REQUEST)
        );
        for _ in 0..2 {
            assert_eq!(
                l.refund("o1", "r1", 100, 50, t0),
                RefundAnswer::Fail(err::NOTENOUGH)
            );
        }
        assert_eq!(
            l.refund_query("o1", None, t0).map(|_| ()),
            Err(err::REFUNDNOTEXIST)
        );
        assert!(matches!(
            l.refund("o1", "r1", 100, 50, t0),
            RefundAnswer::Done { .. }
        ));
        assert_eq!(l.peek("o1", t0).unwrap().refunded_fee, 50);
    }

    #[test]
    fn refund_queries_know_what_does_not_exist() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        assert_eq!(
            l.refund_query("nope", None, t0).map(|_| ()),
            Err(err::ORDERNOTEXIST)
        );
        l.micropay("o1", CODE, 100, t0);
        assert_eq!(
            l.refund_query("o1", None, t0).map(|_| ()),
            Err(err::REFUNDNOTEXIST)
        );
        l.refund("o1", "r1", 100, 10, t0);
        l.refund("o1", "r2", 100, 20, t0);
        assert_eq!(
            l.refund_query("o1", Some("r3"), t0).map(|_| ()),
            Err(err::REFUNDNOTEXIST)
        );
        let (_, all) = l.refund_query("o1", None, t0).unwrap();
        let numbers: Vec<&str> = all.iter().map(|r| r.out_refund_no.as_str()).collect();
        assert_eq!(numbers, ["r1", "r2"]);
        let (_, one) = l.refund_query("o1", Some("r2"), t0).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].refund_fee, 20);
    }

    #[test]
    fn charges_and_refunds_are_found_by_the_providers_numbers() {
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        let MicropayAnswer::Paid(c) = l.micropay("o1", CODE, 100, t0) else {
            panic!("not paid")
        };
        assert_eq!(l.out_trade_no_of(&c.transaction_id).as_deref(), Some("o1"));
        assert_eq!(l.out_trade_no_of("4200000"), None);
        let RefundAnswer::Done { refund_id, .. } = l.refund("o1", "r1", 100, 10, t0) else {
            panic!("refused")
        };
        assert_eq!(
            l.refund_by_id(&refund_id),
            Some(("o1".to_owned(), "r1".to_owned()))
        );
        assert_eq!(l.refund_by_id("5030"), None);
        assert_eq!(l.refund_owner("r1").as_deref(), Some("o1"));
        assert_eq!(l.refund_owner("r9"), None);
    }

    #[test]
    fn the_trade_number_can_number_its_refund() {
        // Alipay's out_request_no defaults to the trade number.
        let t0 = Instant::now();
        let mut l = ledger(Outcome::Success, 0, 0);
        l.charge(CodeKind::Alipay, "a1", "2812345678901234", 100, t0);
        assert!(matches!(
            l.refund("a1", "a1", 100, 100, t0),
            RefundAnswer::Done { .. }
        ));
        assert!(matches!(
            l.refund("a1", "a1", 100, 100, t0),
            RefundAnswer::Done { .. }
        ));
        let (c, r) = l.refund_query("a1", Some("a1"), t0).unwrap();
        assert_eq!((c.refunded_fee, r.len()), (100, 1));
    }

    #[test]
    fn refund_scenarios_read_from_json() {
        let s: Scenario = serde_json::from_str(
            r#"{"auth_code":"134567890123456789","refund":"processing_then_success",
                "refund_after_ms":50,"refund_notenough_calls":1}"#,
        )
        .unwrap();
        assert_eq!(s.refund, RefundOutcome::ProcessingThenSuccess);
        assert_eq!(s.refund_after(), Duration::from_millis(50));
        assert_eq!(s.refund_notenough_calls, 1);
        for (name, o) in [
            ("success", RefundOutcome::Success),
            ("processing_forever", RefundOutcome::ProcessingForever),
            ("closed", RefundOutcome::Closed),
            ("change", RefundOutcome::Change),
        ] {
            let s: Scenario = serde_json::from_str(&format!(r#"{{"refund":"{name}"}}"#)).unwrap();
            assert_eq!(s.refund, o);
        }
        let s: Scenario = serde_json::from_str(r#"{"refund_after_s":3}"#).unwrap();
        assert_eq!(s.refund_after(), Duration::from_secs(3));
        assert_eq!(Scenario::default().refund_after(), Duration::from_secs(2));
        assert!(serde_json::from_str::<Scenario>(r#"{"refund":"later"}"#).is_err());
    }
}
