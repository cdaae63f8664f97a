//! The simulated platform's memory: the orders it pushed and their status,
//! stock and sell status per item, every outbound call it received, and the
//! faults it was told to play. No I/O; every call takes the current time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proto::meituan::{self as mt, Call, Push};
use serde::{Deserialize, Serialize};

/// Order status numbers, as the platform reports them.
pub mod status {
    pub const PUSHED: u8 = 2;
    pub const CONFIRMED: u8 = 4;
    pub const DELIVERING: u8 = 6;
    pub const DELIVERED: u8 = 7;
    pub const COMPLETED: u8 = 8;
    pub const CANCELLED: u8 = 9;
}

/// What `PUT /faults` takes: how outbound calls fail for a while.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Answer this HTTP status (with an `ng` body) instead of handling the call.
    #[serde(default)]
    pub status: Option<u16>,
    /// Answer this much later. Alone, the call is handled (and logged) first,
    /// then answered late.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Accept the call and never answer (the client times out). The call is
    /// logged as a fault and not handled.
    #[serde(default)]
    pub drop: bool,
    /// For this many seconds; absent (and no `for_ms`): until cleared.
    #[serde(default)]
    pub for_s: Option<u64>,
    /// The same in milliseconds, for fast tests; wins over `for_s`.
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// For at most this many calls.
    #[serde(default)]
    pub count: Option<u32>,
}

impl Faults {
    /// Why these faults make no sense, if they don't.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = self.status
            && !(100..=599).contains(&s)
        {
            return Err(format!("status {s} is not an HTTP status"));
        }
        if self.status.is_none() && self.delay_ms.is_none() && !self.drop {
            return Err("give at least one of status, delay_ms, drop".into());
        }
        Ok(())
    }

    fn window(&self) -> Option<Duration> {
        match (self.for_ms, self.for_s) {
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, Some(s)) => Some(Duration::from_secs(s)),
            (None, None) => None,
        }
    }
}

/// The faults in force, as `GET /faults` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFaults {
    pub faults: Faults,
    /// Milliseconds left, when limited in time.
    pub remaining_ms: Option<u64>,
    /// Calls left, when limited in count.
    pub remaining_calls: Option<u32>,
}

/// What to do with one outbound call, fault-wise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fault {
    pub status: Option<u16>,
    pub delay: Option<Duration>,
    pub drop: bool,
}

impl Fault {
    /// True when the call is not handled (answered with a status or dropped).
    #[cfg(test)]
    pub fn refuses(&self) -> bool {
        self.drop || self.status.is_some()
    }
}

/// One outbound call the platform received, as `GET /received` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// 1, 2, … in arrival order.
    pub seq: u64,
    /// Below `/api/v1/`, e.g. `order/confirm`.
    pub path: String,
    /// The form parameters except `sig`.
    pub params: BTreeMap<String, String>,
    pub order_id: Option<String>,
    /// Arrival, unix milliseconds.
    pub at_ms: i64,
    pub sig_ok: bool,
    /// Refused or dropped because of `PUT /faults`.
    pub fault: bool,
    /// The HTTP status answered; `None` when dropped.
    pub answered: Option<u16>,
    /// Answered 200 `{"data":"ok"}`: the call took effect.
    pub ok: bool,
    /// Why it was refused, when it was.
    pub error: Option<String>,
}

/// A refund request on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    /// `None`: the whole order.
    pub money_fen: Option<i64>,
    /// `applied`, `agreed`, `rejected` or `cancelled`.
    pub state: String,
}

/// The platform's view of one order, as `GET /orders` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformOrder {
    pub order_id: String,
    /// Empty when the platform only heard of the order from a call or a
    /// cancel pushed before it.
    pub store: String,
    pub day_seq: u32,
    /// 2 pushed, 4 confirmed, 6 delivering, 7 delivered, 8 completed, 9 cancelled.
    pub status: u8,
    pub meal_ready: bool,
    pub total_fen: i64,
    pub cancel_reason_code: Option<i32>,
    pub refunds: Vec<Refund>,
}

/// Stock and sell status of one platform item, as `GET /orders` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Food {
    pub store: String,
    pub app_food_code: String,
    /// 0 on sale, 1 sold out; `None` until a sell-status call.
    pub sell_status: Option<u8>,
    /// Stock per sku id, from stock calls.
    pub stock: BTreeMap<String, u32>,
}

#[derive(Default)]
pub struct State {
    orders: Vec<PlatformOrder>,
    by_id: HashMap<String, usize>,
    foods: BTreeMap<(String, String), Food>,
    day_seqs: HashMap<(String, i64), u32>,
    received: Vec<Received>,
    faults: Option<(Faults, Option<Instant>, Option<u32>)>,
    next_id: u64,
}

/// A call's answer: `Ok` or the platform's error code and message.
pub type Answer = Result<(), (i64, String)>;

impl State {
    // ------------------------------------------------------------ ids

    /// A fresh number, for platform order and refund ids.
    pub fn next_number(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The next `day_seq` of `store` on `day`.
    pub fn next_day_seq(&mut self, store: &str, day: i64) -> u32 {
        let n = self.day_seqs.entry((store.to_owned(), day)).or_insert(0);
        *n += 1;
        *n
    }

    pub fn order(&self, order_id: &str) -> Option<&PlatformOrder> {
        self.by_id.get(order_id).map(|&i| &self.orders[i])
    }

    fn order_mut(&mut self, order_id: &str) -> &mut PlatformOrder {
        let i = match self.by_id.get(order_id) {
            Some(&i) => i,
            None => {
                self.orders.push(PlatformOrder {
                    order_id: order_id.to_owned(),
                    store: String::new(),
                    day_seq: 0,
                    status: status::PUSHED,
                    meal_ready: false,
                    total_fen: 0,
                    cancel_reason_code: None,
                    refunds: Vec::new(),
                });
                self.by_id
                    .insert(order_id.to_owned(), self.orders.len() - 1);
                self.orders.len() - 1
            }
        };
        &mut self.orders[i]
    }

    // ------------------------------------------------------------ pushes

    /// Takes note of a push the platform sent (genuinely: not a forged one).
    pub fn pushed(&mut self, push: &Push) {
        match push {
            Push::NewOrder(n) => {
                let o = self.order_mut(&n.order_id);
                if o.store.is_empty() {
                    o.store = n.app_poi_code.clone();
                    o.day_seq = n.day_seq;
                    o.total_fen = n.total_fen;
                }
            }
            Push::Cancel(c) => {
                let o = self.order_mut(&c.order_id);
                o.status = status::CANCELLED;
                o.cancel_reason_code = Some(c.reason_code);
            }
            Push::RefundApply(r) => {
                let o = self.order_mut(&r.order_id);
                match o.refunds.iter_mut().find(|x| x.refund_id == r.refund_id) {
                    Some(x) => x.state = "applied".into(),
                    None => o.refunds.push(Refund {
                        refund_id: r.refund_id.clone(),
                        money_fen: r.money_fen,
                        state: "applied".into(),
                    }),
                }
            }
            Push::RefundCancel(r) => {
                let o = self.order_mut(&r.order_id);
                if let Some(x) = o.refunds.iter_mut().find(|x| x.refund_id == r.refund_id) {
                    x.state = "cancelled".into();
                }
            }
            Push::DeliveryStatus(d) => {
                let o = self.order_mut(&d.order_id);
                if o.status != status::CANCELLED {
                    match d.logistics_status {
                        20 => o.status = o.status.max(status::DELIVERING),
                        40 => o.status = o.status.max(status::DELIVERED),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The refund id of the latest refund of `order_id`, if any.
    pub fn last_refund(&self, order_id: &str) -> Option<String> {
        self.order(order_id)
            .and_then(|o| o.refunds.last())
            .map(|r| r.refund_id.clone())
    }

    // ------------------------------------------------------------ calls

    /// Handles a verified call; orders the platform never pushed are taken
    /// on trust (created as they are named).
    pub fn apply(&mut self, call: &Call) -> Answer {
        let conflict = |what: &str| Err((mt::ERR_STATE, format!("操作失败,订单状态不允许{what}")));
        match call {
            Call::Confirm { order_id } => {
                let o = self.order_mut(order_id);
                if o.status == status::CANCELLED {
                    return conflict("确认");
                }
                // As the platform does: a second confirm is refused (808).
                if o.status >= status::CONFIRMED {
                    return Err((mt::ERR_STATE, mt::MSG_ALREADY_CONFIRMED.into()));
                }
                o.status = status::CONFIRMED;
            }
            Call::Cancel {
                order_id,
                reason_code,
                ..
            } => {
                let o = self.order_mut(order_id);
                if o.status == status::COMPLETED {
                    return conflict("取消");
                }
                if o.status != status::CANCELLED {
                    o.status = status::CANCELLED;
                    o.cancel_reason_code = Some(*reason_code);
                }
            }
            Call::PreparationMealComplete { order_id } => {
                let o = self.order_mut(order_id);
                if o.status == status::CANCELLED {
                    return conflict("出餐");
                }
                o.meal_ready = true;
            }
            Call::Delivering { order_id } | Call::Arrived { order_id } => {
                let to = if matches!(call, Call::Delivering { .. }) {
                    status::DELIVERING
                } else {
                    status::DELIVERED
                };
                let o = self.order_mut(order_id);
                if o.status == status::CANCELLED {
                    return conflict("配送");
                }
                o.status = o.status.max(to);
            }
            Call::RefundAgree { order_id, .. } | Call::RefundReject { order_id, .. } => {
                let agree = matches!(call, Call::RefundAgree { .. });
                let o = self.order_mut(order_id);
                let state = if agree { "agreed" } else { "rejected" };
                let retried = o.refunds.last().is_some_and(|r| r.state == state);
                match o.refunds.iter_mut().rev().find(|r| r.state == "applied") {
                    Some(r) => r.state = state.into(),
                    None if retried => {}
                    None => return Err((mt::ERR_STATE, "操作失败,没有待处理的退款".into())),
                }
            }
            Call::SkuStock {
                app_poi_code,
                foods,
            } => {
                for f in foods {
                    let food = self.food(app_poi_code, &f.app_food_code);
                    for s in &f.skus {
                        food.stock.insert(s.sku_id.clone(), s.stock);
                    }
                }
            }
            Call::SellStatus {
                app_poi_code,
                sell_status,
                app_food_codes,
            } => {
                for code in app_food_codes {
                    self.food(app_poi_code, code).sell_status = Some(sell_status.code());
                }
            }
        }
        Ok(())
    }

    fn food(&mut self, store: &str, code: &str) -> &mut Food {
        self.foods
            .entry((store.to_owned(), code.to_owned()))
            .or_insert_with(|| Food {
                store: store.to_owned(),
                app_food_code: code.to_owned(),
                ..Food::default()
            })
    }

    pub fn record(&mut self, mut r: Received) -> u64 {
        r.seq = self.received.len() as u64 + 1;
        let seq = r.seq;
        self.received.push(r);
        seq
    }

    pub fn received(&self) -> &[Received] {
        &self.received
    }

    pub fn clear_received(&mut self) {
        self.received.clear();
    }

    pub fn orders(&self) -> &[PlatformOrder] {
        &self.orders
    }

    pub fn foods(&self) -> Vec<Food> {
        self.foods.values().cloned().collect()
    }

    // ------------------------------------------------------------ faults

    pub fn set_faults(&mut self, f: Faults, now: Instant) {
        let until = f.window().map(|w| now + w);
        let count = f.count;
        self.faults = Some((f, until, count));
    }

    pub fn clear_faults(&mut self) {
        self.faults = None;
    }

    pub fn faults(&mut self, now: Instant) -> Option<ActiveFaults> {
        self.expire(now);
        self.faults.as_ref().map(|(f, until, count)| ActiveFaults {
            faults: f.clone(),
            remaining_ms: until.map(|u| {
                u64::try_from(u.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
            }),
            remaining_calls: *count,
        })
    }

    fn expire(&mut self, now: Instant) {
        if let Some((_, until, count)) = &self.faults
            && (until.is_some_and(|u| now >= u) || *count == Some(0))
        {
            self.faults = None;
        }
    }

    /// The fault for one call arriving `now` (counts it against `count`).
    pub fn take_fault(&mut self, now: Instant) -> Fault {
        self.expire(now);
        let Some((f, _, count)) = self.faults.as_mut() else {
            return Fault::default();
        };
        if let Some(c) = count {
            *c = c.saturating_sub(1);
        }
        Fault {
            status: f.status,
            delay: f.delay_ms.map(Duration::from_millis),
            drop: f.drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(id: &str) -> Call {
        Call::Confirm {
            order_id: id.into(),
        }
    }

    #[test]
    fn day_seq_counts_per_store_per_day() {
        let mut s = State::default();
        assert_eq!(s.next_day_seq("a", 1), 1);
        assert_eq!(s.next_day_seq("a", 1), 2);
        assert_eq!(s.next_day_seq("b", 1), 1);
        assert_eq!(s.next_day_seq("a", 2), 1);
    }

    #[test]
    fn faults_expire_by_time_and_by_count() {
        let mut s = State::default();
        let t0 = Instant::now();
        s.set_faults(
            Faults {
                status: Some(503),
                for_ms: Some(1000),
                ..Faults::default()
            },
            t0,
        );
        assert_eq!(s.take_fault(t0).status, Some(503));
        assert_eq!(
            s.take_fault(t0 + Duration::from_millis(999)).status,
            Some(503)
        );
        assert_eq!(
            s.take_fault(t0 + Duration::from_millis(1000)),
            Fault::default()
        );
        assert!(s.faults(t0).is_none());

        s.set_faults(
            Faults {
                status: Some(500),
                count: Some(2),
                ..Faults::default()
            },
            t0,
        );
        assert!(s.take_fault(t0).refuses());
        assert_eq!(s.faults(t0).and_then(|f| f.remaining_calls), Some(1));
        assert!(s.take_fault(t0).refuses());
        assert!(!s.take_fault(t0).refuses());

        s.set_faults(
            Faults {
                drop: true,
                ..Faults::default()
            },
            t0,
        );
        assert!(s.take_fault(t0 + Duration::from_secs(3600)).drop);
        s.clear_faults();
        assert!(!s.take_fault(t0).refuses());
    }

    #[test]
    fn fault_checks() {
        assert!(Faults::default().check().is_err());
        assert!(
            Faults {
                status: Some(42),
                ..Faults::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Faults {
                delay_ms: Some(1),
                ..Faults::default()
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn calls_move_the_order_and_refuse_what_a_cancelled_order_cannot_do() {
        let mut s = State::default();
        assert_eq!(s.apply(&confirm("1")), Ok(()));
        assert_eq!(s.order("1").map(|o| o.status), Some(status::CONFIRMED));
        // A second confirm is refused as the platform refuses it.
        assert_eq!(
            s.apply(&confirm("1")),
            Err((mt::ERR_STATE, mt::MSG_ALREADY_CONFIRMED.to_owned()))
        );
        assert_eq!(
            s.apply(&Call::Delivering {
                order_id: "1".into()
            }),
            Ok(())
        );
        assert_eq!(s.apply(&confirm("1")).map_err(|e| e.0), Err(mt::ERR_STATE));
        assert_eq!(s.order("1").map(|o| o.status), Some(status::DELIVERING));
        s.pushed(&Push::Cancel(mt::CancelPush {
            order_id: "2".into(),
            reason_code: 1,
            reason: String::new(),
        }));
        assert_eq!(s.apply(&confirm("2")).map_err(|e| e.0), Err(mt::ERR_STATE));
        assert_eq!(
            s.apply(&Call::RefundAgree {
                order_id: "1".into(),
                reason: String::new()
            })
            .map_err(|e| e.0),
            Err(mt::ERR_STATE)
        );
        s.pushed(&Push::RefundApply(mt::RefundApplyPush {
            order_id: "1".into(),
            refund_id: "r".into(),
            reason: String::new(),
            money_fen: None,
        }));
        let agree = Call::RefundAgree {
            order_id: "1".into(),
            reason: String::new(),
        };
        assert_eq!(s.apply(&agree), Ok(()));
        // A retried agree is fine.
        assert_eq!(s.apply(&agree), Ok(()));
        assert_eq!(
            s.order("1").map(|o| o.refunds[0].state.as_str()),
            Some("agreed")
        );
    }

    #[test]
    fn stock_and_sell_status_are_kept_per_item() {
        let mut s = State::default();
        s.apply(&Call::SkuStock {
            app_poi_code: "s".into(),
            foods: vec![mt::FoodStock {
                app_food_code: "A".into(),
                skus: vec![mt::SkuStock {
                    sku_id: "A".into(),
                    stock: 3,
                }],
            }],
        })
        .unwrap();
        s.apply(&Call::SellStatus {
            app_poi_code: "s".into(),
            sell_status: mt::SellStatus::SoldOut,
            app_food_codes: vec!["A".into()],
        })
        .unwrap();
        let f = s.foods();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].sell_status, Some(1));
        assert_eq!(f[0].stock.get("A"), Some(&3));
    }
}
