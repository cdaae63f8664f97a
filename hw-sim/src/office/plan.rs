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
    /// the gateway's calls with 503 and the payment provider not answering
    /// micropay (the money moves; a query finds it paid).
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
        }
    }
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
    /// Platform order `n` accepted at the counter.
    Accept {
        n: usize,
    },
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

impl Plan {
    pub fn make(seed: u64, minutes: u32, faults: Faults) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let day_ms = u64::from(minutes) * 60_000;
        // Leave the last 5 % for the day to settle before the drain.
        let busy = day_ms * 95 / 100;
        let mut events = Vec::new();
        let sales = u64::from(minutes) * 20;
        for _ in 0..sales {
            let at_ms = rng.random_range(1_000..busy);
            events.push(Timed {
                at_ms,
                event: sale(&mut rng),
            });
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
            events.push(Timed {
                at_ms,
                event: Event::Push { n, items, repeat },
            });
            let accept_at = at_ms + rng.random_range(1_000..4_000);
            if rng.random_bool(0.9) {
                events.push(Timed {
                    at_ms: accept_at,
                    event: Event::Accept { n },
                });
            }
            if rng.random_bool(0.15) {
                events.push(Timed {
                    at_ms: at_ms + rng.random_range(500..6_000),
                    event: Event::Cancel { n },
                });
            }
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
            ],
        };
        for &(kind, from, to, (lo, hi)) in faults_planned {
            let at_ms = rng.random_range(day_ms * from / 100..day_ms * to / 100);
            let secs = rng.random_range(lo..=hi);
            events.push(Timed {
                at_ms,
                event: Event::Fault { kind, secs },
            });
            events.push(Timed {
                at_ms: at_ms + secs * 1000,
                event: Event::FaultEnd { kind },
            });
            // Sales while the gateway is out of reach: the store sells on,
            // the queue uploads them later.
            if matches!(kind, FaultKind::NetworkCut | FaultKind::GatewayRestart) {
                for k in 1..=2 {
                    events.push(Timed {
                        at_ms: at_ms + k * 300,
                        event: sale(&mut rng),
                    });
                }
            }
            // A code sale while the provider is silent; an accept while the
            // platform answers 503.
            if kind == FaultKind::ProviderNoAnswer {
                events.push(Timed {
                    at_ms: at_ms + 300,
                    event: Event::Sale {
                        lines: basket(&mut rng),
                        tender: Tender::Code("success"),
                    },
                });
            }
        }
        // Stable: events at the same moment keep the order they were made in.
        events.sort_by_key(|e| e.at_ms);
        Plan { day_ms, events }
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
        assert_eq!(faults, 7);
        assert!(
            Plan::make(7, 2, Faults::None)
                .events
                .iter()
                .all(|e| !matches!(e.event, Event::Fault { .. } | Event::FaultEnd { .. }))
        );
    }
}
