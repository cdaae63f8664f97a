//! A CD5220 customer display: two lines of 20 characters.

use std::time::Instant;

use proto::device::Decode;
use proto::device::display::{self, Command, WIDTH};

use super::line::Model;

pub struct Display {
    buf: Vec<u8>,
    lines: [Vec<u8>; 2],
    cursor: (usize, usize),
}

impl Default for Display {
    fn default() -> Self {
        Display {
            buf: vec![],
            lines: [vec![b' '; WIDTH], vec![b' '; WIDTH]],
            cursor: (0, 0),
        }
    }
}

impl Display {
    /// The two lines as shown, trailing blanks removed.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
            .collect()
    }

    fn clear(&mut self) {
        *self = Display {
            buf: std::mem::take(&mut self.buf),
            ..Display::default()
        };
    }
}

impl Model for Display {
    fn on_bytes(&mut self, input: &[u8], _now: Instant) -> Vec<u8> {
        self.buf.extend_from_slice(input);
        let mut used = 0;
        loop {
            match display::decode(&self.buf[used..]) {
                Decode::Done(cmd, n) => {
                    used += n;
                    match cmd {
                        Command::Reset | Command::Clear => self.clear(),
                        Command::SetLine(i, text) => {
                            if let Some(line) = self.lines.get_mut(i) {
                                let mut t = text;
                                t.resize(WIDTH, b' ');
                                *line = t;
                            }
                        }
                        Command::Text(t) => {
                            for b in t {
                                let (row, col) = self.cursor;
                                if let Some(c) = self.lines[row].get_mut(col) {
                                    *c = b;
                                }
                                self.cursor = if col + 1 < WIDTH {
                                    (row, col + 1)
                                } else {
                                    ((row + 1) % 2, 0)
                                };
                            }
                        }
                        Command::Ignored => {}
                    }
                }
                Decode::Invalid { skip, .. } => used += skip,
                Decode::NeedMore => break,
            }
        }
        self.buf.drain(..used);
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_two_lines() {
        let mut d = Display::default();
        let bytes = display::show("Apple", "Total 12.50");
        for b in bytes {
            d.on_bytes(&[b], Instant::now());
        }
        assert_eq!(d.lines(), vec!["Apple", "Total 12.50"]);
    }
}
