//! ESC/POS, the receipt printers' command set: a [`Receipt`] builder for the
//! host, a [`decode`] of the same commands for the simulator, the real-time
//! status (`DLE EOT n`) bytes and the process-id response used to learn that a
//! job has been printed to the end.
//!
//! Chinese text is sent as GBK inside `FS &` … `FS .`; a character outside GBK
//! is printed as `?` (the builder counts them) — UTF-8 never reaches the wire.

use encoding_rs::{EncoderResult, GBK};

use super::Decode;

pub const ESC: u8 = 0x1B;
pub const GS: u8 = 0x1D;
pub const FS: u8 = 0x1C;
pub const DLE: u8 = 0x10;
pub const EOT: u8 = 0x04;
pub const ENQ: u8 = 0x05;
pub const DC4: u8 = 0x14;
pub const LF: u8 = 0x0A;
pub const CR: u8 = 0x0D;
pub const HT: u8 = 0x09;

/// Longest QR payload the builder accepts (model 2, level L holds 7089 digits;
/// printers' buffers are smaller).
pub const MAX_QR_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// QR error-correction level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrLevel {
    L,
    M,
    Q,
    H,
}

/// A receipt (or any print job) as ESC/POS bytes. Starts with `ESC @`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    bytes: Vec<u8>,
    unmappable: usize,
}

impl Default for Receipt {
    fn default() -> Self {
        Self::new()
    }
}

impl Receipt {
    pub fn new() -> Self {
        Receipt {
            bytes: vec![ESC, b'@'],
            unmappable: 0,
        }
    }

    pub fn align(mut self, align: Align) -> Self {
        let n = match align {
            Align::Left => 0,
            Align::Center => 1,
            Align::Right => 2,
        };
        self.bytes.extend([ESC, b'a', n]);
        self
    }

    pub fn bold(mut self, on: bool) -> Self {
        self.bytes.extend([ESC, b'E', u8::from(on)]);
        self
    }

    /// Character size as width and height multipliers, each clamped to 1..=8.
    pub fn size(mut self, width: u8, height: u8) -> Self {
        let w = width.clamp(1, 8) - 1;
        let h = height.clamp(1, 8) - 1;
        self.bytes.extend([GS, b'!', (w << 4) | h]);
        self
    }

    /// Text without a line feed. `\n` becomes a line feed, other control
    /// characters are dropped. Non-ASCII text is sent as GBK in Chinese mode.
    pub fn text(mut self, s: &str) -> Self {
        let chinese = !s.is_ascii();
        if chinese {
            self.bytes.extend([FS, b'&']);
        }
        let mut encoder = GBK.new_encoder();
        for c in s.chars() {
            match c {
                '\n' => self.bytes.push(LF),
                c if c.is_control() => {}
                c if c.is_ascii() => self.bytes.push(c as u8),
                c => {
                    let mut utf8 = [0u8; 4];
                    let mut out = [0u8; 8];
                    let (result, _, written) = encoder.encode_from_utf8_without_replacement(
                        c.encode_utf8(&mut utf8),
                        &mut out,
                        false,
                    );
                    match result {
                        EncoderResult::InputEmpty => self.bytes.extend(&out[..written]),
                        _ => {
                            self.unmappable += 1;
                            self.bytes.push(b'?');
                        }
                    }
                }
            }
        }
        if chinese {
            self.bytes.extend([FS, b'.']);
        }
        self
    }

    /// Text followed by a line feed.
    pub fn line(self, s: &str) -> Self {
        let mut r = self.text(s);
        r.bytes.push(LF);
        r
    }

    /// Feeds `n` lines.
    pub fn feed(mut self, n: u8) -> Self {
        self.bytes.extend([ESC, b'd', n]);
        self
    }

    /// A QR code (model 2) holding `data`, module size 1..=16. Payloads longer
    /// than [`MAX_QR_BYTES`] are not printed and count as unmappable.
    pub fn qr(mut self, data: &[u8], module_size: u8, level: QrLevel) -> Self {
        if data.len() > MAX_QR_BYTES {
            self.unmappable += 1;
            return self;
        }
        let level = match level {
            QrLevel::L => 48,
            QrLevel::M => 49,
            QrLevel::Q => 50,
            QrLevel::H => 51,
        };
        let store_len = data.len() + 3;
        self.bytes.extend([GS, b'(', b'k', 4, 0, 49, 65, 50, 0]);
        self.bytes
            .extend([GS, b'(', b'k', 3, 0, 49, 67, module_size.clamp(1, 16)]);
        self.bytes.extend([GS, b'(', b'k', 3, 0, 49, 69, level]);
        self.bytes.extend([
            GS,
            b'(',
            b'k',
            (store_len & 0xFF) as u8,
            (store_len >> 8) as u8,
            49,
            80,
            48,
        ]);
        self.bytes.extend(data);
        self.bytes.extend([GS, b'(', b'k', 3, 0, 49, 81, 48]);
        self
    }

    /// Feeds to the cutter and cuts (partial cut, the usual receipt tear).
    pub fn cut(mut self) -> Self {
        self.bytes.extend([GS, b'V', 66, 0]);
        self
    }

    /// Opens the cash drawer on connector pin 2 with a 100 ms pulse.
    pub fn drawer_kick(mut self) -> Self {
        self.bytes.extend(drawer_kick());
        self
    }

    /// Asks the printer to answer [`ProcessId`] `id` once everything before it
    /// has been processed (`GS ( H`, function 48).
    pub fn process_id(mut self, id: ProcessId) -> Self {
        self.bytes.extend(process_id_request(id));
        self
    }

    /// How many characters or codes could not be encoded and were replaced.
    pub fn unmappable(&self) -> usize {
        self.unmappable
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `ESC p 0 50 250`: pulse pin 2 for 100 ms, then 500 ms off.
pub fn drawer_kick() -> [u8; 5] {
    [ESC, b'p', 0, 50, 250]
}

/// `DLE EOT n`.
pub fn status_request(kind: StatusKind) -> [u8; 3] {
    [DLE, EOT, kind as u8]
}

/// Four printable bytes that the printer echoes back in its process-id
/// response; the drivers use them as job ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId(pub [u8; 4]);

impl ProcessId {
    /// The id for a job number: four decimal digits, wrapping at 10,000.
    pub fn for_job(n: u64) -> Self {
        let n = n % 10_000;
        let d = |p: u64| b'0' + ((n / p) % 10) as u8;
        ProcessId([d(1000), d(100), d(10), d(1)])
    }
}

/// `GS ( H 6 0 48 48 d1 d2 d3 d4`.
pub fn process_id_request(id: ProcessId) -> [u8; 11] {
    let [a, b, c, d] = id.0;
    [GS, b'(', b'H', 6, 0, 48, 48, a, b, c, d]
}

/// The printer's answer to [`process_id_request`]: `0x37 0x22 d1 d2 d3 d4 NUL`.
pub fn process_id_response(id: ProcessId) -> [u8; 7] {
    let [a, b, c, d] = id.0;
    [0x37, 0x22, a, b, c, d, 0]
}

// ------------------------------------------------------------------ status

/// Which real-time status `DLE EOT n` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Printer = 1,
    OfflineCause = 2,
    ErrorCause = 3,
    PaperSensor = 4,
}

impl StatusKind {
    pub fn from_n(n: u8) -> Option<Self> {
        match n {
            1 => Some(StatusKind::Printer),
            2 => Some(StatusKind::OfflineCause),
            3 => Some(StatusKind::ErrorCause),
            4 => Some(StatusKind::PaperSensor),
            _ => None,
        }
    }
}

/// A real-time status byte: bits 1 and 4 are always set, bits 0 and 7 never.
pub fn is_status_byte(b: u8) -> bool {
    b & 0x93 == 0x12
}

const fn bit(b: u8, n: u8) -> bool {
    b & (1 << n) != 0
}

/// `DLE EOT 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrinterStatus {
    /// Bit 2: drawer kick-out connector pin 3 is high (the drawer is open).
    pub drawer_open: bool,
    /// Bit 3.
    pub offline: bool,
}

/// `DLE EOT 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfflineCause {
    /// Bit 2.
    pub cover_open: bool,
    /// Bit 3: paper is being fed by the feed button.
    pub feed_button: bool,
    /// Bit 5: printing stopped because the paper ran out.
    pub paper_end_stop: bool,
    /// Bit 6.
    pub error: bool,
}

/// `DLE EOT 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorCause {
    /// Bit 3: the auto-cutter jammed.
    pub cutter_error: bool,
    /// Bit 5.
    pub unrecoverable: bool,
    /// Bit 6: e.g. the head overheated; clears by itself.
    pub auto_recoverable: bool,
}

/// `DLE EOT 4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaperSensor {
    /// Bits 2 and 3 (`0x0C`).
    pub near_end: bool,
    /// Bits 5 and 6 (`0x60`).
    pub paper_end: bool,
}

/// The reply to one `DLE EOT n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Printer(PrinterStatus),
    OfflineCause(OfflineCause),
    ErrorCause(ErrorCause),
    PaperSensor(PaperSensor),
}

impl Status {
    /// Reads the reply byte to a request of `kind`; `None` if it is not a
    /// status byte at all.
    pub fn parse(kind: StatusKind, b: u8) -> Option<Self> {
        if !is_status_byte(b) {
            return None;
        }
        Some(match kind {
            StatusKind::Printer => Status::Printer(PrinterStatus {
                drawer_open: bit(b, 2),
                offline: bit(b, 3),
            }),
            StatusKind::OfflineCause => Status::OfflineCause(OfflineCause {
                cover_open: bit(b, 2),
                feed_button: bit(b, 3),
                paper_end_stop: bit(b, 5),
                error: bit(b, 6),
            }),
            StatusKind::ErrorCause => Status::ErrorCause(ErrorCause {
                cutter_error: bit(b, 3),
                unrecoverable: bit(b, 5),
                auto_recoverable: bit(b, 6),
            }),
            StatusKind::PaperSensor => Status::PaperSensor(PaperSensor {
                near_end: b & 0x0C != 0,
                paper_end: b & 0x60 != 0,
            }),
        })
    }

    /// The byte a printer sends for this status.
    pub fn to_byte(self) -> u8 {
        let set = |on: bool, n: u8| if on { 1u8 << n } else { 0 };
        0x12 | match self {
            Status::Printer(s) => set(s.drawer_open, 2) | set(s.offline, 3),
            Status::OfflineCause(s) => {
                set(s.cover_open, 2)
                    | set(s.feed_button, 3)
                    | set(s.paper_end_stop, 5)
                    | set(s.error, 6)
            }
            Status::ErrorCause(s) => {
                set(s.cutter_error, 3) | set(s.unrecoverable, 5) | set(s.auto_recoverable, 6)
            }
            Status::PaperSensor(s) => {
                (if s.near_end { 0x0C } else { 0 }) | (if s.paper_end { 0x60 } else { 0 })
            }
        }
    }
}

/// Something a printer sends to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A real-time status byte; which kind depends on the request it answers.
    Status(u8),
    ProcessId(ProcessId),
}

/// Decodes the printer-to-host byte stream.
pub fn decode_reply(buf: &[u8]) -> Decode<Reply> {
    match buf {
        [] => Decode::NeedMore,
        [b, ..] if is_status_byte(*b) => Decode::Done(Reply::Status(*b), 1),
        [0x37, rest @ ..] => match rest {
            [] => Decode::NeedMore,
            [0x22, id @ ..] if id.len() < 5 => {
                if id.iter().all(|b| (0x30..=0x7E).contains(b)) {
                    Decode::NeedMore
                } else {
                    Decode::Invalid {
                        skip: 1,
                        reason: "bad process id",
                    }
                }
            }
            [0x22, a, b, c, d, 0, ..] => {
                Decode::Done(Reply::ProcessId(ProcessId([*a, *b, *c, *d])), 7)
            }
            _ => Decode::Invalid {
                skip: 1,
                reason: "bad process id response",
            },
        },
        _ => Decode::Invalid {
            skip: 1,
            reason: "not a printer reply",
        },
    }
}

// ------------------------------------------------------------------ decoder

/// One command as a printer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Printable bytes; ASCII, or GB18030 while in Chinese mode.
    Text(Vec<u8>),
    LineFeed,
    Init,
    Align(Align),
    Bold(bool),
    Size {
        width: u8,
        height: u8,
    },
    FeedLines(u8),
    Cut,
    ChineseOn,
    ChineseOff,
    QrModel(u8),
    QrModuleSize(u8),
    QrLevel(u8),
    QrStore(Vec<u8>),
    QrPrint,
    DrawerKick {
        pin: u8,
        on: u8,
        off: u8,
    },
    /// `DLE EOT n`: answered at once, even while offline.
    StatusRequest(StatusKind),
    /// `DLE ENQ n`: recover from an error (1: resume, 2: clear buffers).
    Recover(u8),
    ProcessId(ProcessId),
    /// A known command the simulator does not act on, skipped by its length.
    Ignored,
}

fn done(c: Command, n: usize) -> Decode<Command> {
    Decode::Done(c, n)
}

fn invalid(skip: usize, reason: &'static str) -> Decode<Command> {
    Decode::Invalid { skip, reason }
}

/// Lengths of the parameterless-but-fixed ESC commands we skip: total bytes.
fn esc_fixed_len(c: u8) -> Option<usize> {
    Some(match c {
        b'2' | b'<' | b'i' | b'm' => 2,
        b'!' | b'-' | b'3' | b'J' | b'M' | b't' | b'R' | b'{' | b'V' | b'G' | b' ' | b'U'
        | b'r' | b'=' | b'S' | b'T' | b'L' | b'e' | b'K' | b'%' | b'?' => 3,
        b'$' | b'\\' | b'c' => 4,
        _ => return None,
    })
}

fn gs_fixed_len(c: u8) -> Option<usize> {
    Some(match c {
        b'B' | b'H' | b'f' | b'h' | b'w' | b'a' | b'r' | b'I' | b'/' | b'b' | b'E' | b'j'
        | b'T' => 3,
        b'L' | b'W' | b'P' | b'$' | b'\\' => 4,
        _ => return None,
    })
}

fn fs_fixed_len(c: u8) -> Option<usize> {
    Some(match c {
        b'!' | b'C' | b'-' | b'W' => 3,
        b'S' | b'p' => 4,
        b'2' => 76,
        _ => return None,
    })
}

/// Decodes one command from the front of `buf`.
pub fn decode(buf: &[u8]) -> Decode<Command> {
    let Some(&first) = buf.first() else {
        return Decode::NeedMore;
    };
    match first {
        LF => done(Command::LineFeed, 1),
        CR => done(Command::Ignored, 1),
        ESC => decode_esc(buf),
        GS => decode_gs(buf),
        FS => decode_fs(buf),
        DLE => decode_dle(buf),
        b if b >= 0x20 || b == HT => {
            let len = buf
                .iter()
                .position(|&b| b < 0x20 && b != HT)
                .unwrap_or(buf.len());
            done(Command::Text(buf[..len].to_vec()), len)
        }
        _ => invalid(1, "stray control byte"),
    }
}

fn need(buf: &[u8], n: usize) -> Option<&[u8]> {
    buf.get(..n)
}

fn decode_esc(buf: &[u8]) -> Decode<Command> {
    let Some(&c) = buf.get(1) else {
        return Decode::NeedMore;
    };
    let arg = |i: usize| buf.get(i).copied();
    match c {
        b'@' => done(Command::Init, 2),
        b'a' => match arg(2) {
            None => Decode::NeedMore,
            Some(0 | 48) => done(Command::Align(Align::Left), 3),
            Some(1 | 49) => done(Command::Align(Align::Center), 3),
            Some(2 | 50) => done(Command::Align(Align::Right), 3),
            Some(_) => done(Command::Ignored, 3),
        },
        b'E' => match arg(2) {
            None => Decode::NeedMore,
            Some(n) => done(Command::Bold(n & 1 == 1), 3),
        },
        b'd' => match arg(2) {
            None => Decode::NeedMore,
            Some(n) => done(Command::FeedLines(n), 3),
        },
        b'p' => match need(buf, 5) {
            None => Decode::NeedMore,
            Some(b) => done(
                Command::DrawerKick {
                    pin: if b[2] & 1 == 0 { 2 } else { 5 },
                    on: b[3],
                    off: b[4],
                },
                5,
            ),
        },
        b'D' => {
            // Tab positions: up to 32 bytes, NUL-terminated.
            match buf[2..].iter().take(33).position(|&b| b == 0) {
                Some(i) => done(Command::Ignored, 2 + i + 1),
                None if buf.len() < 2 + 33 => Decode::NeedMore,
                None => invalid(2, "ESC D without terminator"),
            }
        }
        b'*' => match need(buf, 5) {
            None => Decode::NeedMore,
            Some(b) => {
                let dots = usize::from(b[3]) + 256 * usize::from(b[4]);
                let per = match b[2] {
                    0 | 1 => 1,
                    32 | 33 => 3,
                    _ => return invalid(2, "bad bit-image mode"),
                };
                skip_len(buf, 5 + dots * per)
            }
        },
        c => match esc_fixed_len(c) {
            Some(n) => skip_len(buf, n),
            None => invalid(2, "unknown ESC command"),
        },
    }
}

fn skip_len(buf: &[u8], n: usize) -> Decode<Command> {
    if buf.len() >= n {
        done(Command::Ignored, n)
    } else {
        Decode::NeedMore
    }
}

fn decode_gs(buf: &[u8]) -> Decode<Command> {
    let Some(&c) = buf.get(1) else {
        return Decode::NeedMore;
    };
    match c {
        b'!' => match buf.get(2) {
            None => Decode::NeedMore,
            Some(n) => done(
                Command::Size {
                    width: (n >> 4) + 1,
                    height: (n & 0x0F) + 1,
                },
                3,
            ),
        },
        b'V' => match buf.get(2) {
            None => Decode::NeedMore,
            Some(0 | 1 | 48 | 49) => done(Command::Cut, 3),
            Some(65 | 66 | 97 | 98 | 103 | 104) => match buf.get(3) {
                None => Decode::NeedMore,
                Some(_) => done(Command::Cut, 4),
            },
            Some(_) => invalid(2, "bad cut mode"),
        },
        b'(' => decode_gs_paren(buf),
        b'k' => {
            // Barcode: m 0..6 NUL-terminated data, or m 65..73 with a length.
            match buf.get(2) {
                None => Decode::NeedMore,
                Some(0..=6) => match buf[3..].iter().take(256).position(|&b| b == 0) {
                    Some(i) => done(Command::Ignored, 3 + i + 1),
                    None if buf.len() < 3 + 256 => Decode::NeedMore,
                    None => invalid(2, "barcode without terminator"),
                },
                Some(65..=79) => match buf.get(3) {
                    None => Decode::NeedMore,
                    Some(&n) => skip_len(buf, 4 + usize::from(n)),
                },
                Some(_) => invalid(2, "bad barcode type"),
            }
        }
        b'v' => match need(buf, 8) {
            None => Decode::NeedMore,
            Some(b) if b[2] == b'0' => {
                let x = usize::from(b[4]) + 256 * usize::from(b[5]);
                let y = usize::from(b[6]) + 256 * usize::from(b[7]);
                skip_len(buf, 8 + x * y)
            }
            Some(_) => invalid(2, "bad raster command"),
        },
        b'*' => match need(buf, 4) {
            None => Decode::NeedMore,
            Some(b) => skip_len(buf, 4 + usize::from(b[2]) * usize::from(b[3]) * 8),
        },
        c => match gs_fixed_len(c) {
            Some(n) => skip_len(buf, n),
            None => invalid(2, "unknown GS command"),
        },
    }
}

fn decode_gs_paren(buf: &[u8]) -> Decode<Command> {
    let Some(b) = need(buf, 5) else {
        return Decode::NeedMore;
    };
    let (letter, len) = (b[2], usize::from(b[3]) + 256 * usize::from(b[4]));
    if !letter.is_ascii_alphabetic() {
        return invalid(2, "bad GS ( function");
    }
    let Some(frame) = need(buf, 5 + len) else {
        return Decode::NeedMore;
    };
    let total = 5 + len;
    let body = &frame[5..];
    let cmd = match (letter, body) {
        (b'k', [49, 65, n1, _]) => Command::QrModel(n1.saturating_sub(48)),
        (b'k', [49, 67, n]) => Command::QrModuleSize(*n),
        (b'k', [49, 69, n]) => Command::QrLevel(*n),
        (b'k', [49, 80, 48, data @ ..]) => Command::QrStore(data.to_vec()),
        (b'k', [49, 81, 48]) => Command::QrPrint,
        (b'H', [48, 48, a, b, c, d]) => Command::ProcessId(ProcessId([*a, *b, *c, *d])),
        _ => Command::Ignored,
    };
    done(cmd, total)
}

fn decode_fs(buf: &[u8]) -> Decode<Command> {
    match buf.get(1) {
        None => Decode::NeedMore,
        Some(b'&') => done(Command::ChineseOn, 2),
        Some(b'.') => done(Command::ChineseOff, 2),
        Some(&c) => match fs_fixed_len(c) {
            Some(n) => skip_len(buf, n),
            None => invalid(2, "unknown FS command"),
        },
    }
}

fn decode_dle(buf: &[u8]) -> Decode<Command> {
    let Some(&c) = buf.get(1) else {
        return Decode::NeedMore;
    };
    match c {
        EOT => match buf.get(2) {
            None => Decode::NeedMore,
            Some(&n) => match StatusKind::from_n(n) {
                Some(k) => done(Command::StatusRequest(k), 3),
                None => done(Command::Ignored, 3),
            },
        },
        ENQ => match buf.get(2) {
            None => Decode::NeedMore,
            Some(&n) => done(Command::Recover(n), 3),
        },
        DC4 => match buf.get(2) {
            None => Decode::NeedMore,
            Some(1 | 2) => skip_len(buf, 5),
            Some(7) => skip_len(buf, 6),
            Some(8) => skip_len(buf, 10),
            Some(_) => invalid(2, "unknown DLE DC4 function"),
        },
        _ => invalid(1, "stray DLE"),
    }
}

/// Decodes GB18030 (a superset of GBK) to UTF-8, replacing what is invalid.
pub fn decode_gb18030(bytes: &[u8]) -> String {
    encoding_rs::GB18030
        .decode_without_bom_handling(bytes)
        .0
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(mut buf: &[u8]) -> (Vec<Command>, usize) {
        let mut out = vec![];
        let mut invalid = 0;
        loop {
            match decode(buf) {
                Decode::Done(c, n) => {
                    assert!(n > 0 && n <= buf.len());
                    out.push(c);
                    buf = &buf[n..];
                }
                Decode::Invalid { skip, .. } => {
                    assert!(skip > 0 && skip <= buf.len());
                    invalid += 1;
                    buf = &buf[skip..];
                }
                Decode::NeedMore => return (out, invalid),
            }
        }
    }

    #[test]
    fn chinese_text_is_gbk_inside_fs_and_never_utf8() {
        let r = Receipt::new().line("小票 ok");
        let bytes = r.as_bytes();
        assert_eq!(
            bytes,
            &[
                ESC, b'@', FS, b'&', 0xD0, 0xA1, 0xC6, 0xB1, b' ', b'o', b'k', FS, b'.', LF
            ]
        );
        assert_eq!(r.unmappable(), 0);
        // An emoji is outside GBK: replaced, counted, never sent as UTF-8.
        let r = Receipt::new().text("a😀");
        assert_eq!(r.unmappable(), 1);
        assert!(!r.as_bytes().windows(4).any(|w| w == "😀".as_bytes()));
    }

    #[test]
    fn builder_output_decodes_back() {
        let r = Receipt::new()
            .align(Align::Center)
            .bold(true)
            .size(2, 2)
            .line("门店 #12")
            .bold(false)
            .qr(b"https://e.example/r/1", 6, QrLevel::M)
            .feed(3)
            .cut()
            .drawer_kick()
            .process_id(ProcessId::for_job(42));
        let (cmds, invalid) = decode_all(r.as_bytes());
        assert_eq!(invalid, 0);
        assert_eq!(
            cmds,
            vec![
                Command::Init,
                Command::Align(Align::Center),
                Command::Bold(true),
                Command::Size {
                    width: 2,
                    height: 2
                },
                Command::ChineseOn,
                Command::Text(vec![0xC3, 0xC5, 0xB5, 0xEA, b' ', b'#', b'1', b'2']),
                Command::ChineseOff,
                Command::LineFeed,
                Command::Bold(false),
                Command::QrModel(2),
                Command::QrModuleSize(6),
                Command::QrLevel(49),
                Command::QrStore(b"https://e.example/r/1".to_vec()),
                Command::QrPrint,
                Command::FeedLines(3),
                Command::Cut,
                Command::DrawerKick {
                    pin: 2,
                    on: 50,
                    off: 250
                },
                Command::ProcessId(ProcessId(*b"0042")),
            ]
        );
        assert_eq!(decode_gb18030(&[0xC3, 0xC5, 0xB5, 0xEA]), "门店");
    }

    #[test]
    fn table_of_partial_and_invalid_inputs() {
        let cases: &[(&[u8], Decode<Command>)] = &[
            (&[], Decode::NeedMore),
            (&[ESC], Decode::NeedMore),
            (&[ESC, b'a'], Decode::NeedMore),
            (&[GS, b'(', b'k', 4, 0, 49], Decode::NeedMore),
            (&[DLE, EOT], Decode::NeedMore),
            (
                &[DLE, EOT, 4],
                Decode::Done(Command::StatusRequest(StatusKind::PaperSensor), 3),
            ),
            (
                &[0x00],
                Decode::Invalid {
                    skip: 1,
                    reason: "stray control byte",
                },
            ),
            (
                &[ESC, 0x01],
                Decode::Invalid {
                    skip: 2,
                    reason: "unknown ESC command",
                },
            ),
            (&[ESC, b'!', 8, b'x'], Decode::Done(Command::Ignored, 3)),
            (
                &[GS, b'V', 7],
                Decode::Invalid {
                    skip: 2,
                    reason: "bad cut mode",
                },
            ),
            (
                &[GS, b'(', b'L', 2, 0, 48, 69],
                Decode::Done(Command::Ignored, 7),
            ),
            (b"abc\x1b", Decode::Done(Command::Text(b"abc".to_vec()), 3)),
        ];
        for (input, want) in cases {
            assert_eq!(&decode(input), want, "{input:?}");
        }
    }

    #[test]
    fn status_bytes_round_trip_and_meanings() {
        assert!(is_status_byte(0x12));
        assert!(!is_status_byte(0x13));
        let paper_end = Status::PaperSensor(PaperSensor {
            near_end: true,
            paper_end: true,
        });
        assert_eq!(paper_end.to_byte(), 0x7E);
        assert_eq!(
            Status::parse(StatusKind::PaperSensor, 0x7E),
            Some(paper_end)
        );
        assert_eq!(
            Status::parse(StatusKind::OfflineCause, 0x16),
            Some(Status::OfflineCause(OfflineCause {
                cover_open: true,
                ..Default::default()
            }))
        );
        assert_eq!(Status::parse(StatusKind::Printer, 0xFF), None);
        assert_eq!(
            decode_reply(&[0x37, 0x22, b'0', b'0', b'4', b'2', 0]),
            Decode::Done(Reply::ProcessId(ProcessId(*b"0042")), 7)
        );
        assert_eq!(decode_reply(&[0x37, 0x22, b'0']), Decode::NeedMore);
        assert_eq!(decode_reply(&[0x16]), Decode::Done(Reply::Status(0x16), 1));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&bytes);
            let mut buf = &bytes[..];
            while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode_reply(buf) {
                prop_assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
        }

        #[test]
        fn any_text_encodes_without_utf8(s in "\\PC{0,40}") {
            let r = Receipt::new().line(&s);
            let (cmds, invalid) = decode_all(r.as_bytes());
            prop_assert_eq!(invalid, 0);
            let mut text = vec![];
            for c in cmds { if let Command::Text(t) = c { text.extend(t) } }
            let back = decode_gb18030(&text);
            let kept: String = s.chars().filter(|c| !c.is_control()).collect();
            prop_assert_eq!(back.chars().count(), kept.chars().count());
        }
    }
}
