//! The day's script, made from the seed alone: the same seed, minutes and
//! fault level give the same events at the same offsets.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many faults the day has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Faults {
    /// None.
    None,
    /// One of each: paper out, the network to the gateway cut, the gateway
    /// killed and restarted.
    Some,
    /// Those, a second cut, the printer cover opened, the platform answering
    /// the gateway's calls with 503, the payment provider not answering
    /// micropay (the money moves; a query finds it paid), scale noise, the
    /// scale's cable pulled and replugged, a lost acknowledgement, duplicated
    /// and reordered platform pushes, a printer power cycle mid-job, the
    /// WeChat sandbox's negative cases, the store PC's clock jumping ahead
    /// (and back) and a full disk under the agent's state (each skipped,
    /// with why, where libfaketime or root is missing).
    All,
}

impl Faults {
    pub fn as_str(self) -> &'static str {
        match self {
            Faults::None => "none",
            Faults::Some => "some",
            Faults::All => "all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    PaperOut,
    CoverOpen,
    NetworkCut,
    GatewayRestart,
    Platform503,
    ProviderNoAnswer,
    /// Bit errors on the scale's serial line.
    ScaleNoise,
    /// The scale's cable pulled, plugged in again at the fault's end.
    CablePulled,
    /// The gateway saves the next counter order, its answer never reaches
    /// the agent (the link drops it); the agent sends it again.
    LostAck,
    /// Two platform orders pushed out of order, each twice, one after the
    /// other.
    PushesReordered,
    /// The printer loses power part-way through a job, back after a while.
    PrinterPowerCycle,
    /// Payment codes with the WeChat sandbox's negative outcomes: the user
    /// still paying, paying never (the charge times out and is reversed), a
    /// pay error, a system error whose query finds it paid.
    WechatNegative,
    /// The store PC's wall clock jumps 3 h ahead, and back at the fault's
    /// end (libfaketime under the agent; monotonic time untouched).
    ClockJump,
    /// The disk under the agent's state directory fills, and is freed at
    /// the fault's end (a small tmpfs on it, mounted as root).
    DiskFull,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PaperOut => "printer_paper_out",
            FaultKind::CoverOpen => "printer_cover_open",
            FaultKind::NetworkCut => "network_cut",
            FaultKind::GatewayRestart => "gateway_killed_and_restarted",
            FaultKind::Platform503 => "platform_answers_503",
            FaultKind::ProviderNoAnswer => "payment_provider_no_answer",
            FaultKind::ScaleNoise => "scale_noise",
            FaultKind::CablePulled => "scale_cable_pulled_and_replugged",
            FaultKind::LostAck => "lost_acknowledgement",
            FaultKind::PushesReordered => "platform_pushes_duplicated_and_reordered",
            FaultKind::PrinterPowerCycle => "printer_power_cycle_mid_job",
            FaultKind::WechatNegative => "wechat_sandbox_negative_cases",
            FaultKind::ClockJump => "clock_jump_on_the_store_pc",
            FaultKind::DiskFull => "agent_state_disk_full",
        }
    }
}

/// What an order on the queue is moved on by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Accept,
    Reject,
    Ready,
    Complete,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Accept => "accept",
            Step::Reject => "reject",
            Step::Ready => "ready",
            Step::Complete => "complete",
        }
    }
}

/// An order of another channel the day moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Platform order `n`.
    Platform(usize),
    /// App order `n`.
    App(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A product's printed barcode.
    Barcode(&'static str),
    /// Pieces by SKU.
    Pieces(&'static str, u32),
    /// Weighed on the scale: SKU and grams.
    Weigh(&'static str, u32),
}

/// How the customer pays; a code falls back to cash when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tender {
    Cash,
    /// A payment code with the provider outcome the simulator gives it.
    Code(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sale {
        lines: Vec<Line>,
        tender: Tender,
    },
    /// Platform order `n` pushed (`repeat` times, concurrently, when > 1).
    Push {
        n: usize,
        items: Vec<crate::platform::ItemSpec>,
        repeat: u32,
    },
    /// An app order `n` (channel official): pieces by SKU, paid in the
    /// app when `prepaid`.
    App {
        n: usize,
        lines: Vec<(&'static str, u32)>,
        prepaid: bool,
    },
    /// An order moved on: accepted or rejected at the counter, ready,
    /// completed.
    Act {
        target: Target,
        step: Step,
    },
    /// The latest code-paid counter sale not refunded yet gets its first
    /// line refunded, goods back into stock (the order completed first).
    Refund,
    /// The platform cancels order `n`.
    Cancel {
        n: usize,
    },
    Fault {
        kind: FaultKind,
        secs: u64,
    },
    FaultEnd {
        kind: FaultKind,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub at_ms: u64,
    pub event: Event,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub day_ms: u64,
    pub events: Vec<Timed>,
}

/// The demo catalog's products with a barcode, and the weighed ones.
const BARCODES: [&str; 3] = ["6920000000012", "6920000000029", "6920000000036"];
const PIECES: [&str; 3] = ["EGG", "COLA", "WATER"];
const WEIGHED: [&str; 3] = ["DUCK-NECK", "DUCK-WING", "TOFU"];
/// (platform item code = SKU, name, price in fen)
const PLATFORM_ITEMS: [(&str, &str, i64); 3] = [
    ("COLA", "可口可乐 330ml", 350),
    ("EGG", "卤蛋", 250),
    ("WATER", "农夫山泉 550ml", 200),
];
const CODE_OUTCOMES: [&str; 4] = [
    "success",
    "success",
    "userpaying_then_success",
    "insufficient_balance",
];

/// The WeChat sandbox's negative cases, one code sale each.
pub const WECHAT_NEGATIVE: [&str; 4] = [
    "userpaying_then_success",
    "userpaying_forever",
    "invalid_code",
    "system_error_then_success",
];

impl Plan {
    pub fn make(seed: u64, minutes: u32, faults: Faults) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let day_ms = u64::from(minutes) * 60_000;
        // Leave the last 5 % for the day to settle before the drain.
        let busy = day_ms * 95 / 100;
        let mut events = Vec::new();
        let at = |at_ms: u64, event: Event| Timed { at_ms, event };
        let sales = u64::from(minutes) * 20;
        for _ in 0..sales {
            let at_ms = rng.random_range(1_000..busy);
            let ev = sale(&mut rng);
            events.push(at(at_ms, ev));
        }
        let platform = u64::from(minutes) * 8;
        for n in 0..platform as usize {
            let at_ms = rng.random_range(1_000..busy);
            let k = rng.random_range(1..=2);
            let items = (0..k)
                .map(|i| {
                    let (sku, name, fen) = PLATFORM_ITEMS[(n + i) % PLATFORM_ITEMS.len()];
                    crate::platform::ItemSpec::new(sku, name, rng.random_range(1..=3), fen)
                })
                .collect();
            let repeat = if rng.random_bool(0.25) { 3 } else { 1 };
            events.push(at(at_ms, Event::Push { n, items, repeat }));
            // One path per order, so the steps never race a cancel: accepted
            // and perhaps cancelled by the platform, rejected, or fulfilled.
            let accept_at = at_ms + rng.random_range(1_000..4_000);
            let path = rng.random_range(0..100);
            let target = Target::Platform(n);
            if path < 15 {
                if rng.random_bool(0.5) {
                    events.push(at(accept_at, act(target, Step::Accept)));
                }
                events.push(at(
                    at_ms + rng.random_range(500..6_000),
                    Event::Cancel { n },
                ));
            } else if path < 25 {
                events.push(at(accept_at, act(target, Step::Reject)));
            } else if path < 95 {
                fulfil(&mut rng, &mut events, target, accept_at);
            }
        }
        let app = u64::from(minutes) * 5;
        for n in 0..app as usize {
            let at_ms = rng.random_range(1_000..busy);
            let k = rng.random_range(1..=2);
            let lines = (0..k)
                .map(|i| (PIECES[(n + i) % PIECES.len()], rng.random_range(1..=3)))
                .collect();
            let prepaid = rng.random_bool(0.4);
            events.push(at(at_ms, Event::App { n, lines, prepaid }));
            let accept_at = at_ms + rng.random_range(1_000..4_000);
            let target = Target::App(n);
            let path = rng.random_range(0..100);
            if path < 15 && !prepaid {
                events.push(at(accept_at, act(target, Step::Reject)));
            } else if path < 90 {
                fulfil(&mut rng, &mut events, target, accept_at);
            }
        }
        // Refunds by line of code-paid counter sales, through the day.
        for _ in 0..u64::from(minutes) * 3 {
            let at_ms = rng.random_range(day_ms / 10..busy);
            events.push(at(at_ms, Event::Refund));
        }
        let faults_planned: &[(FaultKind, u64, u64, (u64, u64))] = match faults {
            Faults::None => &[],
            Faults::Some => &[
                (FaultKind::PaperOut, 10, 25, (3, 6)),
                (FaultKind::NetworkCut, 30, 45, (5, 8)),
                (FaultKind::GatewayRestart, 60, 70, (1, 2)),
            ],
            Faults::All => &[
                (FaultKind::PaperOut, 10, 25, (3, 6)),
                (FaultKind::NetworkCut, 30, 45, (5, 8)),
                (FaultKind::CoverOpen, 50, 55, (2, 4)),
                (FaultKind::GatewayRestart, 60, 70, (1, 2)),
                (FaultKind::NetworkCut, 78, 85, (3, 5)),
                (FaultKind::Platform503, 20, 28, (4, 6)),
                (FaultKind::ProviderNoAnswer, 72, 77, (4, 6)),
                (FaultKind::ScaleNoise, 5, 15, (3, 5)),
                (FaultKind::CablePulled, 15, 22, (2, 4)),
                (FaultKind::LostAck, 25, 30, (3, 4)),
                (FaultKind::PushesReordered, 40, 48, (1, 1)),
                (FaultKind::PrinterPowerCycle, 55, 60, (2, 3)),
                (FaultKind::WechatNegative, 86, 90, (1, 1)),
                (FaultKind::ClockJump, 47, 50, (2, 3)),
                (FaultKind::DiskFull, 66, 69, (2, 3)),
            ],
        };
        let mut extra = platform as usize;
        for &(kind, from, to, (lo, hi)) in faults_planned {
            let at_ms = rng.random_range(day_ms * from / 100..day_ms * to / 100);
            let secs = rng.random_range(lo..=hi);
            events.push(at(at_ms, Event::Fault { kind, secs }));
            events.push(at(at_ms + secs * 1000, Event::FaultEnd { kind }));
            match kind {
                // Sales while the gateway is out of reach: the store sells
                // on, the queue uploads them later.
                FaultKind::NetworkCut | FaultKind::GatewayRestart => {
                    for k in 1..=2 {
                        let ev = sale(&mut rng);
                        events.push(at(at_ms + k * 300, ev));
                    }
                }
                // A code sale while the provider is silent.
                FaultKind::ProviderNoAnswer => {
                    let lines = basket(&mut rng);
                    events.push(at(
                        at_ms + 300,
                        Event::Sale {
                            lines,
                            tender: Tender::Code("success"),
                        },
                    ));
                }
                // Weighed sales on a noisy or unplugged scale, a sale whose
                // answer is lost, sales printing through the power cycle.
                FaultKind::ScaleNoise | FaultKind::CablePulled => {
                    for k in 1..=2 {
                        let sku = WEIGHED[rng.random_range(0..WEIGHED.len())];
                        let g = rng.random_range(100..=600);
                        events.push(at(
                            at_ms + k * 400,
                            Event::Sale {
                                lines: vec![Line::Weigh(sku, g), Line::Pieces("EGG", 1)],
                                tender: Tender::Cash,
                            },
                        ));
                    }
                }
                FaultKind::LostAck | FaultKind::PrinterPowerCycle => {
                    let ev = sale(&mut rng);
                    events.push(at(at_ms + 200, ev));
                }
                // Sales on the jumped clock and on the full disk (refused
                // there, the basket cleared), and one each after.
                FaultKind::ClockJump | FaultKind::DiskFull => {
                    for t in [300, 900, secs * 1000 + 400] {
                        let ev = sale(&mut rng);
                        events.push(at(at_ms + t, ev));
                    }
                }
                // Two more platform orders, pushed b a b a.
                FaultKind::PushesReordered => {
                    for n in [extra, extra + 1] {
                        let (sku, name, fen) = PLATFORM_ITEMS[n % PLATFORM_ITEMS.len()];
                        let items = vec![crate::platform::ItemSpec::new(sku, name, 1, fen)];
                        // Held (repeat 0) until the fault pushes them, just after.
                        events.push(at(
                            at_ms - 1,
                            Event::Push {
                                n,
                                items,
                                repeat: 0,
                            },
                        ));
                        let t = at_ms + rng.random_range(1_500..3_000);
                        fulfil(&mut rng, &mut events, Target::Platform(n), t);
                    }
                    extra += 2;
                }
                FaultKind::WechatNegative => {
                    for (k, outcome) in WECHAT_NEGATIVE.into_iter().enumerate() {
                        let lines = basket(&mut rng);
                        events.push(at(
                            at_ms + 200 + k as u64 * 100,
                            Event::Sale {
                                lines,
                                tender: Tender::Code(outcome),
                            },
                        ));
                    }
                }
                _ => {}
            }
        }
        // Stable: events at the same moment keep the order they were made in.
        events.sort_by_key(|e| e.at_ms);
        Plan { day_ms, events }
    }
}

fn act(target: Target, step: Step) -> Event {
    Event::Act { target, step }
}

/// Accepted at `from`, most then ready and most of those completed.
fn fulfil(rng: &mut StdRng, events: &mut Vec<Timed>, target: Target, from: u64) {
    events.push(Timed {
        at_ms: from,
        event: act(target, Step::Accept),
    });
    if rng.random_bool(0.8) {
        let ready = from + rng.random_range(1_000..3_000);
        events.push(Timed {
            at_ms: ready,
            event: act(target, Step::Ready),
        });
        if rng.random_bool(0.8) {
            events.push(Timed {
                at_ms: ready + rng.random_range(1_000..3_000),
                event: act(target, Step::Complete),
            });
        }
    }
}

/// A counter sale, paid in cash or by code.
fn sale(rng: &mut StdRng) -> Event {
    let lines = basket(rng);
    let tender = if rng.random_bool(0.5) {
        Tender::Cash
    } else {
        Tender::Code(CODE_OUTCOMES[rng.random_range(0..CODE_OUTCOMES.len())])
    };
    Event::Sale { lines, tender }
}

/// One to three lines, by barcode, SKU or the scale.
fn basket(rng: &mut StdRng) -> Vec<Line> {
    let n = rng.random_range(1..=3);
    (0..n)
        .map(|_| match rng.random_range(0..3) {
            0 => Line::Barcode(BARCODES[rng.random_range(0..BARCODES.len())]),
            1 => Line::Pieces(
                PIECES[rng.random_range(0..PIECES.len())],
                rng.random_range(1..=3),
            ),
            _ => Line::Weigh(
                WEIGHED[rng.random_range(0..WEIGHED.len())],
                rng.random_range(100..=600),
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_day_and_another_seed_another() {
        let a = Plan::make(7, 2, Faults::All);
        let b = Plan::make(7, 2, Faults::All);
        assert_eq!(a.events, b.events);
        let c = Plan::make(8, 2, Faults::All);
        assert_ne!(a.events, c.events);
        let faults = a
            .events
            .iter()
            .filter(|e| matches!(e.event, Event::Fault { .. }))
            .count();
        assert_eq!(faults, 15);
        assert!(
            Plan::make(7, 2, Faults::None)
                .events
                .iter()
                .all(|e| !matches!(e.event, Event::Fault { .. } | Event::FaultEnd { .. }))
        );
        assert!(a.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn the_day_has_every_kind_of_order_and_steps_follow_their_order() {
        // Ten minutes: enough orders for every path to come up.
        let p = Plan::make(3, 10, Faults::All);
        let count = |f: &dyn Fn(&Event) -> bool| p.events.iter().filter(|e| f(&e.event)).count();
        assert_eq!(count(&|e| matches!(e, Event::App { .. })), 50);
        assert!(count(&|e| matches!(e, Event::App { prepaid: true, .. })) > 0);
        assert_eq!(count(&|e| matches!(e, Event::Refund)), 30);
        for step in [Step::Accept, Step::Reject, Step::Ready, Step::Complete] {
            assert!(
                count(&|e| matches!(e, Event::Act { step: s, .. } if *s == step)) > 0,
                "{step:?}"
            );
        }
        // Every step comes after its order arrived, and a ready after its
        // accept; a prepaid app order is never rejected.
        let mut seen: Vec<(Target, Option<Step>)> = Vec::new();
        for e in &p.events {
            match &e.event {
                Event::Push { n, .. } => seen.push((Target::Platform(*n), None)),
                Event::App { n, prepaid, .. } => {
                    seen.push((Target::App(*n), None));
                    if *prepaid {
                        assert!(!p.events.iter().any(|x| x.event
                            == Event::Act {
                                target: Target::App(*n),
                                step: Step::Reject
                            }));
                    }
                }
                Event::Act { target, step } => {
                    let s = seen
                        .iter_mut()
                        .find(|(t, _)| t == target)
                        .unwrap_or_else(|| panic!("{target:?} {step:?} before its order"));
                    match step {
                        Step::Ready => assert_eq!(s.1, Some(Step::Accept)),
                        Step::Complete => assert_eq!(s.1, Some(Step::Ready)),
                        _ => assert_eq!(s.1, None),
                    }
                    s.1 = Some(*step);
                }
                _ => {}
            }
        }
        // Every kind of fault is planned, the store PC's among them.
        for kind in [
            FaultKind::ClockJump,
            FaultKind::DiskFull,
            FaultKind::LostAck,
        ] {
            assert!(
                p.events
                    .iter()
                    .any(|e| matches!(e.event, Event::Fault { kind: k, .. } if k == kind)),
                "{kind:?}"
            );
        }
    }
}
