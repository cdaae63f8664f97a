//! Toledo 8217-style scale protocol (9600 baud, 7 data bits, even parity).
//!
//! The host sends one letter: `W` weigh, `Z` zero, `T` tare, `C` clear tare.
//! To `W` the scale answers `STX dd.ddd CR` (kilograms, e.g. `01.234`) when
//! the weight is valid, or `STX ? s CR` with a status byte `s` when it is in
//! motion, over capacity or under zero. `Z`, `T` and `C` get no answer: the
//! host weighs again to see their effect. There is no checksum, so a driver
//! must not trust a single reply on a noisy line.

use super::{Decode, Weight};

pub const STX: u8 = 0x02;
pub const CR: u8 = 0x0D;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Weigh,
    Zero,
    Tare,
    ClearTare,
}

impl Command {
    pub fn byte(self) -> u8 {
        match self {
            Command::Weigh => b'W',
            Command::Zero => b'Z',
            Command::Tare => b'T',
            Command::ClearTare => b'C',
        }
    }
}

/// Decodes a host command (the scale's side). CR and LF after a command are
/// tolerated and skipped.
pub fn decode_command(buf: &[u8]) -> Decode<Command> {
    match buf.first() {
        None => Decode::NeedMore,
        Some(b'W') => Decode::Done(Command::Weigh, 1),
        Some(b'Z') => Decode::Done(Command::Zero, 1),
        Some(b'T') => Decode::Done(Command::Tare, 1),
        Some(b'C') => Decode::Done(Command::ClearTare, 1),
        Some(b'\r' | b'\n') => Decode::Invalid {
            skip: 1,
            reason: "line end",
        },
        Some(_) => Decode::Invalid {
            skip: 1,
            reason: "unknown scale command",
        },
    }
}

/// The status byte of a `STX ? s CR` reply. Bit 6 is always set so the byte
/// stays printable; bits 0-5 carry the meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(u8);

impl Status {
    pub const MOTION: u8 = 1 << 0;
    pub const OVER_CAPACITY: u8 = 1 << 1;
    pub const UNDER_ZERO: u8 = 1 << 2;
    pub const OUTSIDE_ZERO_RANGE: u8 = 1 << 3;
    pub const CENTER_OF_ZERO: u8 = 1 << 4;
    pub const NET: u8 = 1 << 5;

    pub fn new(bits: u8) -> Self {
        Status(bits & 0x3F)
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn motion(self) -> bool {
        self.0 & Self::MOTION != 0
    }
    pub fn over_capacity(self) -> bool {
        self.0 & Self::OVER_CAPACITY != 0
    }
    pub fn under_zero(self) -> bool {
        self.0 & Self::UNDER_ZERO != 0
    }
    pub fn outside_zero_range(self) -> bool {
        self.0 & Self::OUTSIDE_ZERO_RANGE != 0
    }
    pub fn center_of_zero(self) -> bool {
        self.0 & Self::CENTER_OF_ZERO != 0
    }
    pub fn net(self) -> bool {
        self.0 & Self::NET != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    Weight(Weight),
    Status(Status),
}

impl Reply {
    pub fn encode(self) -> Vec<u8> {
        match self {
            Reply::Weight(w) => {
                let g = w.grams();
                let mut v = vec![STX];
                v.extend(format!("{:02}.{:03}", g / 1000, g % 1000).bytes());
                v.push(CR);
                v
            }
            Reply::Status(s) => vec![STX, b'?', 0x40 | s.bits(), CR],
        }
    }
}

/// Decodes a scale reply (the host's side), resynchronising on the next STX
/// after anything malformed.
pub fn decode_reply(buf: &[u8]) -> Decode<Reply> {
    let Some(&first) = buf.first() else {
        return Decode::NeedMore;
    };
    if first != STX {
        let skip = buf.iter().position(|&b| b == STX).unwrap_or(buf.len());
        return Decode::Invalid {
            skip,
            reason: "garbage before STX",
        };
    }
    let bad = |reason| Decode::Invalid { skip: 1, reason };
    let body = &buf[1..];
    if body.first() == Some(&b'?') {
        return match body[1..] {
            [] => Decode::NeedMore,
            [s, ..] if s & 0xC0 != 0x40 => bad("bad status byte"),
            [_] => Decode::NeedMore,
            [s, CR, ..] => Decode::Done(Reply::Status(Status::new(s)), 4),
            [_, _, ..] => bad("malformed status reply"),
        };
    }
    // dd.ddd CR
    const SHAPE: &[u8; 7] = b"00.000\r";
    for (i, &b) in body.iter().take(SHAPE.len()).enumerate() {
        let ok = match SHAPE[i] {
            b'0' => b.is_ascii_digit(),
            other => b == other,
        };
        if !ok {
            return bad("malformed weight reply");
        }
    }
    if body.len() < SHAPE.len() {
        return Decode::NeedMore;
    }
    let d = |i: usize| u32::from(body[i] - b'0');
    let grams = d(0) * 10_000 + d(1) * 1000 + d(3) * 100 + d(4) * 10 + d(5);
    match Weight::from_grams(grams) {
        Some(w) => Decode::Done(Reply::Weight(w), 1 + SHAPE.len()),
        None => bad("weight out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(g: u32) -> Reply {
        Reply::Weight(Weight::from_grams(g).unwrap())
    }

    #[test]
    fn replies_table() {
        let cases: &[(&[u8], Decode<Reply>)] = &[
            (b"", Decode::NeedMore),
            (b"\x0201.234\r", Decode::Done(w(1234), 8)),
            (b"\x0200.355\rrest", Decode::Done(w(355), 8)),
            (b"\x0201.2", Decode::NeedMore),
            (b"\x02?A\r", Decode::Done(Reply::Status(Status::new(1)), 4)),
            (b"\x02?", Decode::NeedMore),
            (
                b"junk\x0201",
                Decode::Invalid {
                    skip: 4,
                    reason: "garbage before STX",
                },
            ),
            (
                b"\x0201,234\r",
                Decode::Invalid {
                    skip: 1,
                    reason: "malformed weight reply",
                },
            ),
            (
                b"\x0201.23\x02",
                Decode::Invalid {
                    skip: 1,
                    reason: "malformed weight reply",
                },
            ),
            (
                b"\x02?\x01\r",
                Decode::Invalid {
                    skip: 1,
                    reason: "bad status byte",
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&decode_reply(input), want, "{input:?}");
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for r in [
            w(0),
            w(355),
            w(99_999),
            Reply::Status(Status::new(Status::OVER_CAPACITY)),
        ] {
            let bytes = r.encode();
            assert_eq!(decode_reply(&bytes), Decode::Done(r, bytes.len()));
        }
        let s = Status::new(Status::MOTION | Status::NET);
        assert!(s.motion() && s.net() && !s.over_capacity() && !s.under_zero());
        assert_eq!(decode_command(b"W"), Decode::Done(Command::Weigh, 1));
        assert_eq!(
            decode_command(b"Z").map(Command::byte),
            Decode::Done(b'Z', 1)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = &bytes[..];
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode_reply(buf) {
                prop_assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
            let mut buf = &bytes[..];
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode_command(buf) {
                prop_assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
        }

        #[test]
        fn garbage_then_reply_resynchronises(junk in proptest::collection::vec(any::<u8>(), 0..32), g in 0u32..=99_999) {
            let mut bytes = junk.clone();
            bytes.extend(w(g).encode());
            let mut buf = &bytes[..];
            let mut last = None;
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode_reply(buf) {
                if let Decode::Done(r, _) = decode_reply(buf) { last = Some(r) }
                buf = &buf[n..];
            }
            prop_assert_eq!(last, Some(w(g)));
        }
    }
}
