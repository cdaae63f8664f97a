//! CD5220 customer pole display: two lines of 20 characters.
//!
//! `ESC @` resets, `FF` (0x0C) clears, `ESC Q A text CR` writes the upper line
//! and `ESC Q B text CR` the lower one. The display shows ASCII only; other
//! characters are sent as `?`.

use super::Decode;

pub const WIDTH: usize = 20;
const ESC: u8 = 0x1B;
const FF: u8 = 0x0C;
const CR: u8 = 0x0D;

/// The bytes that show `upper` and `lower`, each cut or padded to 20 columns.
pub fn show(upper: &str, lower: &str) -> Vec<u8> {
    let mut v = vec![FF];
    for (which, text) in [(b'A', upper), (b'B', lower)] {
        v.extend([ESC, b'Q', which]);
        v.extend(fit(text));
        v.push(CR);
    }
    v
}

/// A line as the display will show it: printable ASCII, exactly 20 columns.
pub fn fit(text: &str) -> Vec<u8> {
    let mut line: Vec<u8> = text
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
        .take(WIDTH)
        .collect();
    line.resize(WIDTH, b' ');
    line
}

pub fn reset() -> [u8; 2] {
    [ESC, b'@']
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reset,
    Clear,
    /// Line 0 (upper) or 1 (lower) set to these bytes.
    SetLine(usize, Vec<u8>),
    /// Characters written at the cursor.
    Text(Vec<u8>),
    /// A cursor or mode control this model does not act on.
    Ignored,
}

/// Decodes one display command (the display's side).
pub fn decode(buf: &[u8]) -> Decode<Command> {
    let Some(&first) = buf.first() else {
        return Decode::NeedMore;
    };
    match first {
        FF => Decode::Done(Command::Clear, 1),
        ESC => match buf.get(1) {
            None => Decode::NeedMore,
            Some(b'@') => Decode::Done(Command::Reset, 2),
            Some(b'Q') => match buf.get(2) {
                None => Decode::NeedMore,
                Some(&w @ (b'A' | b'B' | b'D')) => {
                    let body = &buf[3..];
                    match body.iter().take(WIDTH * 2 + 1).position(|&b| b == CR) {
                        Some(i) if w == b'D' => Decode::Done(Command::Ignored, 3 + i + 1),
                        Some(i) => Decode::Done(
                            Command::SetLine(usize::from(w - b'A'), body[..i].to_vec()),
                            3 + i + 1,
                        ),
                        None if body.len() <= WIDTH * 2 => Decode::NeedMore,
                        None => Decode::Invalid {
                            skip: 3,
                            reason: "line without CR",
                        },
                    }
                }
                Some(_) => Decode::Invalid {
                    skip: 2,
                    reason: "unknown ESC Q command",
                },
            },
            Some(b'l') => match buf.get(3) {
                None => Decode::NeedMore,
                Some(_) => Decode::Done(Command::Ignored, 4),
            },
            Some(b'=' | b'*' | b'c' | b'R' | b'u' | b'W') => match buf.get(2) {
                None => Decode::NeedMore,
                Some(_) => Decode::Done(Command::Ignored, 3),
            },
            Some(_) => Decode::Invalid {
                skip: 2,
                reason: "unknown ESC command",
            },
        },
        b if b < 0x20 || b == 0x7F => Decode::Done(Command::Ignored, 1),
        _ => {
            let len = buf
                .iter()
                .position(|&b| b < 0x20 || b == 0x7F)
                .unwrap_or(buf.len());
            Decode::Done(Command::Text(buf[..len].to_vec()), len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn show_decodes_to_two_lines() {
        let bytes = show("Apple 1.2kg", "TOTAL  ¥ 12.50 and more text");
        let mut buf = &bytes[..];
        let mut got = vec![];
        while let Decode::Done(c, n) = decode(buf) {
            got.push(c);
            buf = &buf[n..];
        }
        assert_eq!(
            got,
            vec![
                Command::Clear,
                Command::SetLine(0, b"Apple 1.2kg         ".to_vec()),
                Command::SetLine(1, b"TOTAL  ? 12.50 and m".to_vec()),
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_and_invalid() {
        assert_eq!(decode(b"\x1bQA12"), Decode::NeedMore);
        assert_eq!(decode(b"\x1b"), Decode::NeedMore);
        assert_eq!(
            decode(b"\x1bZ"),
            Decode::Invalid {
                skip: 2,
                reason: "unknown ESC command"
            }
        );
        let long = [&b"\x1bQA"[..], &[b'x'; 50]].concat();
        assert!(matches!(decode(&long), Decode::Invalid { skip: 3, .. }));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = &bytes[..];
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode(buf) {
                prop_assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
        }
    }
}
