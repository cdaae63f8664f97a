//! A receipt printer that reads ESC/POS, keeps every receipt it printed, and
//! fails like a real one: out of paper, cover open, cutter jammed.
//!
//! When printing stops in the middle of a job, what was printed stays on the
//! paper as a torn-off fragment (`cut: false`) and the printer drops the rest
//! of that job — everything up to the next `ESC @` — so the host must print
//! the job again after recovery. Real-time commands (`DLE EOT`, `DLE ENQ`) are
//! answered even while offline.
//!
//! Besides the text it keeps how each receipt looked on the paper (rows with
//! their alignment, bold and character size, the QR codes in place), which
//! `render` draws as an image.

use std::time::Instant;

use proto::device::Decode;
use proto::device::escpos::{
    self, Align, Command, ErrorCause, OfflineCause, PaperSensor, PrinterStatus, Status, StatusKind,
};
use serde::{Deserialize, Serialize};

use super::line::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paper {
    #[default]
    Ok,
    NearEnd,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cover {
    #[default]
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cutter {
    #[default]
    Ok,
    Jammed,
}

/// `PUT /printer/state`; omitted fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateRequest {
    pub paper: Option<Paper>,
    pub cover: Option<Cover>,
    pub cutter: Option<Cutter>,
    /// The paper runs out after this many more printed lines.
    pub paper_left_lines: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrinterState {
    pub paper: Paper,
    pub cover: Cover,
    pub cutter: Cutter,
    pub paper_left_lines: Option<u32>,
    pub online: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrintedReceipt {
    /// The printed text, decoded from GB18030 to UTF-8, lines ended by `\n`.
    pub text: String,
    /// The payloads of the QR codes printed on it.
    pub qr: Vec<String>,
    /// Whether it was cut off cleanly; `false` for a fragment left when
    /// printing stopped.
    pub cut: bool,
    /// The same receipt as laid out on the paper, top to bottom (not part of
    /// the control API's JSON; `render` draws it).
    #[serde(skip)]
    pub rows: Vec<PaperRow>,
}

/// One row of a printed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaperRow {
    /// A printed line: the alignment in force when it began, and its text in
    /// runs of one style. No spans is a blank line.
    Text { align: Align, spans: Vec<Span> },
    /// `ESC d n`: `n` lines of blank paper.
    Feed(u8),
    /// A QR code holding `data` (decoded as UTF-8, lossily).
    Qr { align: Align, data: String },
}

/// A run of text printed in one style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub bold: bool,
    /// Character width and height multipliers (`GS !`), 1..=8.
    pub width: u8,
    pub height: u8,
}

/// The character style `ESC a`, `ESC E` and `GS !` set; `ESC @` resets it.
#[derive(Debug, Clone, Copy)]
struct Style {
    align: Align,
    bold: bool,
    width: u8,
    height: u8,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            align: Align::Left,
            bold: false,
            width: 1,
            height: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Drawer {
    pub open: bool,
    pub kicks: u32,
}

#[derive(Default)]
struct Page {
    text: String,
    qr: Vec<String>,
    pending: Vec<u8>,
    rows: Vec<PaperRow>,
    /// The line being built: decoded runs not yet fed, and its alignment.
    line: Vec<Span>,
    line_align: Option<Align>,
}

impl Page {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.qr.is_empty() && self.pending.is_empty()
    }

    /// Ends the line being built as a row (a blank one if nothing is on it).
    fn end_line(&mut self, style: Style) {
        let align = self.line_align.take().unwrap_or(style.align);
        let spans = std::mem::take(&mut self.line);
        self.rows.push(PaperRow::Text { align, spans });
    }

    /// The paper as it stands, taken off the printer.
    fn tear_off(&mut self, style: Style, cut: bool) -> PrintedReceipt {
        if !self.line.is_empty() {
            self.end_line(style);
        }
        let page = std::mem::take(self);
        PrintedReceipt {
            text: page.text,
            qr: page.qr,
            cut,
            rows: page.rows,
        }
    }
}

#[derive(Default)]
pub struct Printer {
    buf: Vec<u8>,
    chinese: bool,
    style: Style,
    page: Page,
    qr_stored: Option<Vec<u8>>,
    receipts: Vec<PrintedReceipt>,
    paper: Paper,
    paper_left_lines: Option<u32>,
    cover: Cover,
    cutter: Cutter,
    /// A job was cut short: drop data until the next `ESC @`.
    interrupted: bool,
    drawer: Drawer,
}

/// Bytes kept while waiting for the rest of a command; a printer's receive
/// buffer is a few KB.
const MAX_BUFFER: usize = 64 * 1024;

impl Printer {
    pub fn receipts(&self) -> Vec<PrintedReceipt> {
        self.receipts.clone()
    }

    pub fn receipt_count(&self) -> usize {
        self.receipts.len()
    }

    /// The `n`th receipt printed, from 1.
    pub fn receipt(&self, n: usize) -> Option<PrintedReceipt> {
        self.receipts.get(n.checked_sub(1)?).cloned()
    }

    pub fn clear_receipts(&mut self) {
        self.receipts.clear();
    }

    pub fn drawer(&self) -> Drawer {
        self.drawer
    }

    pub fn set_drawer_open(&mut self, open: bool) {
        self.drawer.open = open;
    }

    pub fn state(&self) -> PrinterState {
        PrinterState {
            paper: self.paper,
            cover: self.cover,
            cutter: self.cutter,
            paper_left_lines: self.paper_left_lines,
            online: self.online(),
        }
    }

    pub fn set_state(&mut self, req: StateRequest) {
        if let Some(p) = req.paper {
            self.paper = p;
        }
        if let Some(c) = req.cover {
            self.cover = c;
        }
        if let Some(c) = req.cutter {
            self.cutter = c;
        }
        if req.paper_left_lines.is_some() {
            self.paper_left_lines = req.paper_left_lines;
        }
        if !self.online() {
            self.stop_printing();
        }
    }

    fn online(&self) -> bool {
        self.paper != Paper::End && self.cover == Cover::Closed && self.cutter == Cutter::Ok
    }

    fn status(&self, kind: StatusKind) -> Status {
        match kind {
            StatusKind::Printer => Status::Printer(PrinterStatus {
                drawer_open: self.drawer.open,
                offline: !self.online(),
            }),
            StatusKind::OfflineCause => Status::OfflineCause(OfflineCause {
                cover_open: self.cover == Cover::Open,
                feed_button: false,
                paper_end_stop: self.paper == Paper::End,
                error: self.cutter == Cutter::Jammed,
            }),
            StatusKind::ErrorCause => Status::ErrorCause(ErrorCause {
                cutter_error: self.cutter == Cutter::Jammed,
                unrecoverable: false,
                auto_recoverable: false,
            }),
            StatusKind::PaperSensor => Status::PaperSensor(PaperSensor {
                near_end: self.paper != Paper::Ok,
                paper_end: self.paper == Paper::End,
            }),
        }
    }

    /// Printing stopped: what is on the paper becomes a fragment, the rest of
    /// the job is lost.
    fn stop_printing(&mut self) {
        self.flush_text();
        if !self.page.is_empty() {
            let receipt = self.page.tear_off(self.style, false);
            self.receipts.push(receipt);
        }
        self.interrupted = true;
    }

    fn flush_text(&mut self) {
        let bytes = std::mem::take(&mut self.page.pending);
        if bytes.is_empty() {
            return;
        }
        let text = if self.chinese {
            escpos::decode_gb18030(&bytes)
        } else {
            bytes
                .iter()
                .map(|&b| if b < 0x80 { b as char } else { '?' })
                .collect()
        };
        self.page.text.push_str(&text);
        let Style {
            align,
            bold,
            width,
            height,
        } = self.style;
        let page = &mut self.page;
        page.line_align.get_or_insert(align);
        match page.line.last_mut() {
            Some(s) if (s.bold, s.width, s.height) == (bold, width, height) => {
                s.text.push_str(&text);
            }
            _ => page.line.push(Span {
                text,
                bold,
                width,
                height,
            }),
        }
    }

    fn print_line(&mut self) {
        self.flush_text();
        self.page.text.push('\n');
        self.page.end_line(self.style);
        self.use_paper(1);
    }

    fn use_paper(&mut self, lines: u32) {
        if let Some(left) = self.paper_left_lines {
            let left = left.saturating_sub(lines);
            self.paper_left_lines = Some(left);
            if left == 0 {
                self.paper = Paper::End;
                self.paper_left_lines = None;
                self.stop_printing();
            }
        }
    }

    fn execute(&mut self, cmd: Command, out: &mut Vec<u8>) {
        // Real-time commands first: they work even while offline.
        match cmd {
            Command::StatusRequest(kind) => {
                out.push(self.status(kind).to_byte());
                return;
            }
            Command::Recover(_) => return,
            _ => {}
        }
        if !self.online() {
            self.interrupted = true;
            return;
        }
        if self.interrupted {
            if cmd != Command::Init {
                return;
            }
            self.interrupted = false;
        }
        match cmd {
            Command::Init => {
                // ESC @ clears the print buffer: a line not yet fed is lost.
                self.page.pending.clear();
                self.chinese = false;
                self.style = Style::default();
                self.qr_stored = None;
            }
            Command::Text(t) => self.page.pending.extend(t),
            Command::LineFeed => self.print_line(),
            Command::FeedLines(n) => {
                if n > 0 {
                    self.page.rows.push(PaperRow::Feed(n));
                }
                self.use_paper(u32::from(n));
            }
            Command::Align(a) => {
                self.flush_text();
                self.style.align = a;
            }
            Command::Bold(on) => {
                self.flush_text();
                self.style.bold = on;
            }
            Command::Size { width, height } => {
                self.flush_text();
                self.style.width = width.clamp(1, 8);
                self.style.height = height.clamp(1, 8);
            }
            Command::ChineseOn | Command::ChineseOff => {
                self.flush_text();
                self.chinese = cmd == Command::ChineseOn;
            }
            Command::QrStore(data) => self.qr_stored = Some(data),
            Command::QrPrint => {
                if let Some(data) = &self.qr_stored {
                    let payload = String::from_utf8_lossy(data).into_owned();
                    // The symbol prints below whatever the line holds.
                    self.flush_text();
                    if !self.page.line.is_empty() {
                        self.page.end_line(self.style);
                    }
                    self.page.rows.push(PaperRow::Qr {
                        align: self.style.align,
                        data: payload.clone(),
                    });
                    self.page.qr.push(payload);
                    self.use_paper(8);
                }
            }
            Command::Cut => {
                self.flush_text();
                if self.cutter == Cutter::Jammed {
                    self.stop_printing();
                    return;
                }
                // Cutting blank paper leaves nothing worth keeping.
                if self.page.is_empty() {
                    self.page = Page::default();
                } else {
                    let receipt = self.page.tear_off(self.style, true);
                    self.receipts.push(receipt);
                }
            }
            Command::DrawerKick { .. } => {
                self.drawer.open = true;
                self.drawer.kicks += 1;
            }
            Command::ProcessId(id) => out.extend(escpos::process_id_response(id)),
            Command::QrModel(_)
            | Command::QrModuleSize(_)
            | Command::QrLevel(_)
            | Command::Ignored
            | Command::StatusRequest(_)
            | Command::Recover(_) => {}
        }
    }
}

impl Model for Printer {
    /// Power gone mid-job: the bytes not yet printed and every mode set
    /// (Chinese mode, style, a stored QR code) are lost, and it comes back
    /// as a printer just switched on, not waiting for `ESC @`. What it
    /// printed stays on the paper (no cut), so the next receipt torn off
    /// carries that fragment above it, as on a real printer.
    fn power_off(&mut self) {
        self.buf.clear();
        self.page.pending.clear();
        self.chinese = false;
        self.style = Style::default();
        self.qr_stored = None;
        self.interrupted = false;
    }

    fn on_bytes(&mut self, input: &[u8], _now: Instant) -> Vec<u8> {
        self.buf.extend_from_slice(input);
        let mut out = vec![];
        let mut used = 0;
        loop {
            match escpos::decode(&self.buf[used..]) {
                Decode::Done(cmd, n) => {
                    used += n;
                    self.execute(cmd, &mut out);
                }
                Decode::Invalid { skip, reason } => {
                    tracing::debug!(reason, "printer skipped bytes");
                    used += skip;
                }
                Decode::NeedMore => break,
            }
        }
        self.buf.drain(..used);
        if self.buf.len() > MAX_BUFFER {
            self.buf.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::device::escpos::{ProcessId, QrLevel, Receipt};

    fn feed(p: &mut Printer, bytes: &[u8]) -> Vec<u8> {
        // One byte at a time: splits must not matter.
        bytes
            .iter()
            .flat_map(|b| p.on_bytes(&[*b], Instant::now()))
            .collect()
    }

    #[test]
    fn a_power_loss_drops_the_unfed_line_and_the_modes_but_not_the_paper() {
        let mut p = Printer::default();
        // A line printed, Chinese mode on, half a line still in the buffer.
        feed(&mut p, b"\x1b@printed\n\x1c&half");
        p.power_off();
        assert!(!p.chinese);
        // Back on: no `ESC @` needed; the half line never comes out, the
        // printed line is still on the paper above the next job.
        let mut job = b"next\n".to_vec();
        job.extend_from_slice(b"\x1dV\x00");
        feed(&mut p, &job);
        let r = p.receipts();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].text, "printed\nnext\n");
        assert!(r[0].cut);
    }

    #[test]
    fn prints_and_answers() {
        let mut p = Printer::default();
        let r = Receipt::new()
            .line("欢迎光临 Welcome")
            .qr("支付 https://x".as_bytes(), 4, QrLevel::M)
            .cut()
            .process_id(ProcessId::for_job(7));
        let out = feed(&mut p, r.as_bytes());
        assert_eq!(out, escpos::process_id_response(ProcessId::for_job(7)));
        assert_eq!(
            p.receipts(),
            vec![PrintedReceipt {
                text: "欢迎光临 Welcome\n".into(),
                qr: vec!["支付 https://x".into()],
                cut: true,
                rows: vec![
                    PaperRow::Text {
                        align: Align::Left,
                        spans: vec![span("欢迎光临 Welcome", false, 1, 1)],
                    },
                    PaperRow::Qr {
                        align: Align::Left,
                        data: "支付 https://x".into(),
                    },
                ],
            }]
        );
    }

    fn span(text: &str, bold: bool, width: u8, height: u8) -> Span {
        Span {
            text: text.into(),
            bold,
            width,
            height,
        }
    }

    #[test]
    fn keeps_the_layout_of_each_row() {
        let mut p = Printer::default();
        let r = Receipt::new()
            .align(Align::Center)
            .bold(true)
            .size(2, 2)
            .line("小票")
            .size(1, 1)
            .bold(false)
            .align(Align::Right)
            .text("合计 ")
            .bold(true)
            .line("4.54")
            .feed(2)
            .line("")
            .cut();
        feed(&mut p, r.as_bytes());
        // ESC @ resets the style: the next job starts left, plain, 1x1.
        feed(&mut p, Receipt::new().line("next").cut().as_bytes());
        let receipts = p.receipts();
        assert_eq!(receipts[0].text, "小票\n合计 4.54\n\n");
        assert_eq!(
            receipts[0].rows,
            vec![
                PaperRow::Text {
                    align: Align::Center,
                    spans: vec![span("小票", true, 2, 2)],
                },
                PaperRow::Text {
                    align: Align::Right,
                    spans: vec![span("合计 ", false, 1, 1), span("4.54", true, 1, 1)],
                },
                PaperRow::Feed(2),
                PaperRow::Text {
                    align: Align::Right,
                    spans: vec![],
                },
            ]
        );
        assert_eq!(
            receipts[1].rows,
            vec![PaperRow::Text {
                align: Align::Left,
                spans: vec![span("next", false, 1, 1)],
            }]
        );
    }

    #[test]
    fn paper_end_leaves_a_fragment_and_drops_the_rest_of_the_job() {
        let mut p = Printer::default();
        p.set_state(StateRequest {
            paper_left_lines: Some(2),
            ..Default::default()
        });
        let r = Receipt::new()
            .line("a")
            .line("b")
            .line("c")
            .cut()
            .process_id(ProcessId::for_job(1));
        let out = feed(&mut p, r.as_bytes());
        assert!(out.is_empty());
        assert_eq!(feed(&mut p, &[0x10, 0x04, 4]), vec![0x7E]);
        assert_eq!(p.receipts().len(), 1);
        assert!(!p.receipts()[0].cut);
        p.set_state(StateRequest {
            paper: Some(Paper::Ok),
            ..Default::default()
        });
        let out = feed(&mut p, r.as_bytes());
        assert_eq!(out.len(), 7);
        assert_eq!(p.receipts()[1].text, "a\nb\nc\n");
    }
}
