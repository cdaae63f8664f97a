//! A Toledo 8217-style scale: answers `W` with the weight, or with a status
//! while the load settles, is over capacity or under zero; `Z`, `T` and `C`
//! zero, tare and clear tare. Weights are whole grams.

use std::time::{Duration, Instant};

use proto::device::scale::{self, Command, Reply, Status};
use proto::device::{Decode, Weight};
use serde::Serialize;

use super::line::Model;

#[derive(Debug, Clone, Serialize)]
pub struct ScaleState {
    /// What lies on the platter, in grams (negative when lifted below zero).
    pub gross_g: i64,
    pub zero_g: i64,
    pub tare_g: i64,
    pub capacity_g: i64,
    pub settling: bool,
}

pub struct Scale {
    buf: Vec<u8>,
    gross_g: i64,
    zero_g: i64,
    tare_g: i64,
    capacity_g: i64,
    settle_until: Option<Instant>,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            buf: vec![],
            gross_g: 0,
            zero_g: 0,
            tare_g: 0,
            capacity_g: 15_000,
            settle_until: None,
        }
    }
}

impl Scale {
    /// Puts `grams` on the platter; the scale reports motion for `settle`.
    pub fn put(&mut self, grams: i64, settle: Duration, now: Instant) {
        self.gross_g = grams;
        self.settle_until = Some(now + settle);
    }

    pub fn state(&self, now: Instant) -> ScaleState {
        ScaleState {
            gross_g: self.gross_g,
            zero_g: self.zero_g,
            tare_g: self.tare_g,
            capacity_g: self.capacity_g,
            settling: self.moving(now),
        }
    }

    fn moving(&self, now: Instant) -> bool {
        self.settle_until.is_some_and(|t| now < t)
    }

    fn reply(&self, now: Instant) -> Reply {
        let net_bit = if self.tare_g != 0 { Status::NET } else { 0 };
        if self.moving(now) {
            return Reply::Status(Status::new(Status::MOTION | net_bit));
        }
        let above_zero = self.gross_g - self.zero_g;
        if above_zero > self.capacity_g {
            return Reply::Status(Status::new(Status::OVER_CAPACITY | net_bit));
        }
        let net = above_zero - self.tare_g;
        match u32::try_from(net).ok().and_then(Weight::from_grams) {
            Some(w) => Reply::Weight(w),
            None => Reply::Status(Status::new(Status::UNDER_ZERO | net_bit)),
        }
    }

    fn execute(&mut self, cmd: Command, now: Instant, out: &mut Vec<u8>) {
        let stable = !self.moving(now);
        match cmd {
            Command::Weigh => out.extend(self.reply(now).encode()),
            // Zeroing is allowed within ±2 % of capacity, as on real scales.
            Command::Zero if stable && self.gross_g.abs() * 50 <= self.capacity_g => {
                self.zero_g = self.gross_g;
                self.tare_g = 0;
            }
            Command::Tare if stable && self.gross_g - self.zero_g > 0 => {
                self.tare_g = self.gross_g - self.zero_g;
            }
            Command::ClearTare => self.tare_g = 0,
            Command::Zero | Command::Tare => {}
        }
    }
}

impl Model for Scale {
    fn on_bytes(&mut self, input: &[u8], now: Instant) -> Vec<u8> {
        self.buf.extend_from_slice(input);
        let mut out = vec![];
        let mut used = 0;
        while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } =
            scale::decode_command(&self.buf[used..])
        {
            if let Decode::Done(cmd, _) = scale::decode_command(&self.buf[used..]) {
                self.execute(cmd, now, &mut out);
            }
            used += n;
        }
        self.buf.drain(..used);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motion_then_weight_tare_zero() {
        let t0 = Instant::now();
        let mut s = Scale::default();
        s.put(355, Duration::from_millis(300), t0);
        assert_eq!(s.on_bytes(b"W", t0), b"\x02?A\r");
        let later = t0 + Duration::from_millis(301);
        assert_eq!(s.on_bytes(b"W", later), b"\x0200.355\r");
        s.on_bytes(b"T", later);
        assert_eq!(s.on_bytes(b"W", later), b"\x0200.000\r");
        s.put(100, Duration::ZERO, later);
        assert_eq!(s.on_bytes(b"W", later), b"\x02?d\r"); // under zero + net
        s.on_bytes(b"C", later);
        s.put(16_000, Duration::ZERO, later);
        assert_eq!(s.on_bytes(b"W", later), b"\x02?B\r");
        s.put(120, Duration::ZERO, later);
        s.on_bytes(b"Z", later);
        assert_eq!(s.on_bytes(b"W", later), b"\x0200.000\r");
    }
}
