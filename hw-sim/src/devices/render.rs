//! What the simulated printer printed, drawn as a picture of the paper: a
//! white strip 576 dots wide (80 mm paper at 203 dpi), black text in the
//! printer's character grid, so a person can look at a receipt or ticket.
//!
//! The grid is a real printer's Font A: a 12 × 24-dot cell for an ASCII
//! character and a 24 × 24 one for a Chinese character (anything sent as two
//! or four bytes of GB18030), 48 half-width cells a line, lines wrapping at
//! the paper's edge, 30 dots from line to line. `GS !` multiplies the cell,
//! `ESC E` double-strikes, `ESC a` aligns each line, and a QR code is drawn
//! as a labelled box holding its payload. A fragment left when printing
//! stopped ends in a torn edge.

use std::path::{Path, PathBuf};

use ab_glyph::{Font as _, FontVec, PxScale, ScaleFont as _, point};
use anyhow::{Context, anyhow, bail};
use proto::device::escpos::Align;

use super::printer::{PaperRow, PrintedReceipt, Span};

/// Where Debian's `fonts-wqy-microhei` puts its font.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";
/// The environment variable that names another font file.
pub const FONT_ENV: &str = "HW_SIM_FONT";

/// Printable width of 80 mm paper at 203 dpi, in dots (= pixels).
pub const PAPER_WIDTH: u32 = 576;
/// Width of a half-width character cell; a full-width one is twice that.
const CELL: u32 = 12;
/// Height of a character cell at size 1.
const CHAR_HEIGHT: u32 = 24;
/// Dots between two lines at size 1 (`ESC 2`, about 1/6 inch).
const LINE_GAP: u32 = 6;
/// Default tab stops: every 8 half-width characters.
const TAB: u32 = 8 * CELL;
/// Blank paper above the first line and below the last.
const MARGIN: u32 = 24;
/// Side of the square drawn for a QR code.
const QR_SIDE: u32 = 200;
/// Longest strip drawn (about 2 m of paper); the rest is left off, marked.
const MAX_HEIGHT: u32 = 16_384;

/// A TrueType face with Chinese glyphs, read once.
pub struct Font {
    face: FontVec,
}

impl Font {
    /// The font named by `HW_SIM_FONT`, or Debian's default.
    pub fn configured_path() -> PathBuf {
        std::env::var_os(FONT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT))
    }

    /// Reads the first face of a `.ttf`, `.otf` or `.ttc` file; fails if it
    /// has no Chinese glyphs.
    pub fn load(path: &Path) -> anyhow::Result<Font> {
        let data = std::fs::read(path).map_err(|e| {
            anyhow!(
                "cannot read the receipt font {}: {e}; install Debian's fonts-wqy-microhei, \
                 or name a CJK TrueType font with --font or {FONT_ENV}",
                path.display()
            )
        })?;
        // A collection (.ttc) holds several faces; the first is the regular one.
        let face = FontVec::try_from_vec_and_index(data, 0)
            .map_err(|e| anyhow!("{} is not a usable font: {e}", path.display()))?;
        if face.glyph_id('中').0 == 0 {
            bail!("{} has no Chinese glyphs", path.display());
        }
        Ok(Font { face })
    }
}

/// One character placed on a line.
struct Glyph {
    c: char,
    x: u32,
    cell: u32,
    width: u8,
    height: u8,
    bold: bool,
}

enum Block {
    Line { glyphs: Vec<Glyph>, height: u8 },
    Gap(u32),
    Qr { x: u32, data: String },
}

impl Block {
    fn height(&self) -> u32 {
        match self {
            Block::Line { height, .. } => CHAR_HEIGHT * u32::from(*height) + LINE_GAP,
            Block::Gap(h) => *h,
            Block::Qr { .. } => QR_SIDE + LINE_GAP,
        }
    }
}

fn offset(align: Align, used: u32) -> u32 {
    let free = PAPER_WIDTH.saturating_sub(used);
    match align {
        Align::Left => 0,
        Align::Center => free / 2,
        Align::Right => free,
    }
}

/// Lays a printed line's spans into the grid, wrapping at the paper's edge.
fn lay_line(align: Align, spans: &[Span], out: &mut Vec<Block>) {
    let mut glyphs = vec![];
    let mut x = 0u32;
    let finish = |glyphs: Vec<Glyph>, used: u32, out: &mut Vec<Block>| {
        let shift = offset(align, used);
        let height = glyphs.iter().map(|g| g.height).max().unwrap_or(1);
        let glyphs = glyphs
            .into_iter()
            .map(|g| Glyph {
                x: g.x + shift,
                ..g
            })
            .collect();
        out.push(Block::Line { glyphs, height });
    };
    for s in spans {
        let (width, height) = (s.width.clamp(1, 8), s.height.clamp(1, 8));
        for c in s.text.chars() {
            let cell = if c == '\t' {
                // To the next tab stop (tab stops scale with the width).
                let stop = TAB * u32::from(width);
                stop - x % stop
            } else if c.is_control() {
                continue;
            } else if c.is_ascii() {
                CELL * u32::from(width)
            } else {
                2 * CELL * u32::from(width)
            };
            if x + cell > PAPER_WIDTH && !glyphs.is_empty() {
                finish(std::mem::take(&mut glyphs), x, out);
                x = 0;
            }
            let cell = cell.min(PAPER_WIDTH);
            glyphs.push(Glyph {
                c,
                x,
                cell,
                width,
                height,
                bold: s.bold,
            });
            x += cell;
        }
    }
    finish(glyphs, x, out);
}

fn layout(rows: &[PaperRow]) -> Vec<Block> {
    let mut blocks = vec![Block::Gap(MARGIN)];
    for row in rows {
        match row {
            PaperRow::Text { align, spans } => lay_line(*align, spans, &mut blocks),
            PaperRow::Feed(n) => blocks.push(Block::Gap(u32::from(*n) * (CHAR_HEIGHT + LINE_GAP))),
            PaperRow::Qr { align, data } => blocks.push(Block::Qr {
                x: offset(*align, QR_SIDE),
                data: data.clone(),
            }),
        }
    }
    blocks.push(Block::Gap(MARGIN));
    blocks
}

/// A grayscale strip of paper, 0 = black, 255 = white.
struct Paper {
    px: Vec<u8>,
    height: u32,
}

impl Paper {
    fn new(height: u32) -> Paper {
        Paper {
            px: vec![255; PAPER_WIDTH as usize * height as usize],
            height,
        }
    }

    /// Darkens a pixel by `coverage` (0..=1); outside the paper is ignored.
    fn ink(&mut self, x: i64, y: i64, coverage: f32) {
        if x < 0 || y < 0 || x >= i64::from(PAPER_WIDTH) || y >= i64::from(self.height) {
            return;
        }
        let i = y as usize * PAPER_WIDTH as usize + x as usize;
        let shade = 255 - (coverage.clamp(0.0, 1.0) * 255.0) as u8;
        self.px[i] = self.px[i].min(shade);
    }

    fn rect(&mut self, x: u32, y: u32, w: u32, h: u32) {
        for yy in y..y.saturating_add(h) {
            for xx in x..x.saturating_add(w) {
                self.ink(i64::from(xx), i64::from(yy), 1.0);
            }
        }
    }

    /// One character of `cell` dots across, its baseline at `baseline`.
    fn glyph(&mut self, font: &Font, c: char, x: u32, cell: u32, baseline: f32, size: PxScale) {
        let id = font.face.glyph_id(c);
        let advance = font.face.as_scaled(size).h_advance(id);
        let cell_f = cell as f32;
        // A glyph wider than its cell is narrowed to fit, as a printer's
        // fixed-pitch font would be; a narrower one is centred.
        let (size, advance) = if advance > cell_f && advance > 0.0 {
            (
                PxScale {
                    x: size.x * cell_f / advance,
                    y: size.y,
                },
                cell_f,
            )
        } else {
            (size, advance)
        };
        let left = x as f32 + (cell_f - advance) / 2.0;
        let glyph = id.with_scale_and_position(size, point(left, baseline));
        if let Some(outline) = font.face.outline_glyph(glyph) {
            let b = outline.px_bounds();
            let (x0, y0) = (b.min.x as i64, b.min.y as i64);
            outline.draw(|gx, gy, cov| self.ink(x0 + i64::from(gx), y0 + i64::from(gy), cov));
        }
    }

    /// A line of glyphs whose cells start at `top`.
    fn line(&mut self, font: &Font, glyphs: &[Glyph], height: u8, top: u32) {
        let ascent = font.face.ascent_unscaled();
        let ratio = ascent / (ascent - font.face.descent_unscaled()).max(1.0);
        // Characters of different heights stand on one baseline.
        let baseline = top as f32 + (CHAR_HEIGHT * u32::from(height)) as f32 * ratio;
        for g in glyphs {
            let size = PxScale {
                x: (CHAR_HEIGHT * u32::from(g.width)) as f32,
                y: (CHAR_HEIGHT * u32::from(g.height)) as f32,
            };
            let cell = g.cell;
            self.glyph(font, g.c, g.x, cell, baseline, size);
            if g.bold {
                // Double-strike: the same dots again, one dot to the right.
                self.glyph(font, g.c, g.x + 1, cell, baseline, size);
            }
        }
    }

    /// A square with "QR" and the payload inside, in half-size characters.
    fn qr(&mut self, font: &Font, x: u32, top: u32, data: &str) {
        const BORDER: u32 = 3;
        const SMALL: u32 = 16;
        self.rect(x, top, QR_SIDE, BORDER);
        self.rect(x, top + QR_SIDE - BORDER, QR_SIDE, BORDER);
        self.rect(x, top, BORDER, QR_SIDE);
        self.rect(x + QR_SIDE - BORDER, top, BORDER, QR_SIDE);
        let size = PxScale {
            x: SMALL as f32,
            y: SMALL as f32,
        };
        let inner = x + BORDER + 6;
        let room = QR_SIDE - 2 * (BORDER + 6);
        let label_x = x + (QR_SIDE - 2 * (SMALL / 2)) / 2;
        let baseline = (top + BORDER + 6 + SMALL) as f32;
        for (i, c) in (0u32..).zip("QR".chars()) {
            self.glyph(font, c, label_x + i * SMALL / 2, SMALL / 2, baseline, size);
        }
        // The payload, wrapped in the box; what does not fit ends in "…".
        let rows = (QR_SIDE - 2 * BORDER - 12 - SMALL - 8) / (SMALL + 2);
        let mut lines: Vec<Vec<(char, u32)>> = vec![vec![]];
        let mut used = 0;
        for c in data.chars().filter(|c| !c.is_control()) {
            let w = if c.is_ascii() { SMALL / 2 } else { SMALL };
            if used + w > room {
                lines.push(vec![]);
                used = 0;
            }
            if let Some(l) = lines.last_mut() {
                l.push((c, w));
            }
            used += w;
        }
        if lines.len() > rows as usize {
            lines.truncate(rows as usize);
            if let Some(last) = lines.last_mut() {
                last.pop();
                last.push(('…', SMALL));
            }
        }
        for (i, l) in lines.iter().enumerate() {
            let baseline = (top + BORDER + 12 + SMALL + 8 + (i as u32 + 1) * (SMALL + 2)) as f32;
            let mut cx = inner;
            for &(c, w) in l {
                self.glyph(font, c, cx, w, baseline, size);
                cx += w;
            }
        }
    }

    /// A zigzag across the bottom: the paper was torn, not cut.
    fn torn_edge(&mut self) {
        let y0 = self.height.saturating_sub(MARGIN / 2);
        for x in 0..PAPER_WIDTH {
            let phase = x % 16;
            let dy = if phase < 8 { phase } else { 16 - phase };
            self.rect(x, y0 + dy, 1, 2);
        }
    }

    fn png(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = vec![];
        let mut encoder = png::Encoder::new(&mut out, PAPER_WIDTH, self.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.px)?;
        writer.finish()?;
        Ok(out)
    }
}

/// Draws one printed receipt as a PNG image 576 pixels wide. A receipt with
/// nothing on it is refused.
pub fn receipt_png(receipt: &PrintedReceipt, font: &Font) -> anyhow::Result<Vec<u8>> {
    if receipt.rows.is_empty() {
        bail!("nothing was printed on this receipt");
    }
    let mut blocks = layout(&receipt.rows);
    let mut height = 0u32;
    let mut kept = 0;
    for b in &blocks {
        let next = height.saturating_add(b.height());
        if next > MAX_HEIGHT {
            break;
        }
        height = next;
        kept += 1;
    }
    let left_off = blocks.len() - kept;
    blocks.truncate(kept);
    let mut paper = Paper::new(height);
    let mut top = 0;
    for b in &blocks {
        match b {
            Block::Line { glyphs, height } => paper.line(font, glyphs, *height, top),
            Block::Gap(_) => {}
            Block::Qr { x, data } => paper.qr(font, *x, top, data),
        }
        top += b.height();
    }
    if left_off > 0 {
        tracing::warn!(left_off, "receipt image cut short at {MAX_HEIGHT} px");
    }
    if !receipt.cut || left_off > 0 {
        paper.torn_edge();
    }
    paper.png()
}

/// Writes each receipt as `receipt-0001.png`, `receipt-0002.png`, … (in the
/// order printed, numbered from 1 as in `GET /printer/receipts/{n}.png`; a
/// fragment left when printing stopped is `receipt-NNNN-torn.png`) into
/// `dir`, made if missing. Returns how many were written.
pub fn write_pngs(receipts: &[PrintedReceipt], font: &Font, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut written = 0;
    for (i, r) in receipts.iter().enumerate() {
        let png = receipt_png(r, font).with_context(|| format!("receipt {}", i + 1))?;
        let name = format!(
            "receipt-{:04}{}.png",
            i + 1,
            if r.cut { "" } else { "-torn" }
        );
        let path = dir.join(name);
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::line::Model;
    use crate::devices::printer::Printer;
    use proto::device::escpos::{QrLevel, Receipt};

    /// The font, or `None` outside CI when it is not installed, the skip
    /// written straight to stderr (libtest hides what a passing test
    /// prints); under CI=true a missing font fails.
    fn font() -> Option<Font> {
        use std::io::Write;
        match Font::load(&Font::configured_path()) {
            Ok(f) => Some(f),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
                panic!("{e:#}")
            }
            Err(e) => {
                let test = std::thread::current().name().unwrap_or("?").to_owned();
                let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {e:#}");
                None
            }
        }
    }

    fn print(job: &Receipt) -> Vec<PrintedReceipt> {
        let mut p = Printer::default();
        p.on_bytes(job.as_bytes(), std::time::Instant::now());
        p.receipts()
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn dark_in_rows(px: &[u8], rows: std::ops::Range<u32>) -> usize {
        let w = PAPER_WIDTH as usize;
        px[rows.start as usize * w..rows.end as usize * w]
            .iter()
            .filter(|&&v| v < 128)
            .count()
    }

    /// Dark pixels in columns `cols` of rows `rows`.
    fn dark_in(px: &[u8], rows: std::ops::Range<u32>, cols: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| cols.clone().map(move |x| (y, x)))
            .filter(|&(y, x)| px[(y * PAPER_WIDTH + x) as usize] < 128)
            .count()
    }

    #[test]
    fn a_chinese_receipt_is_drawn_line_by_line() {
        let Some(font) = font() else { return };
        let job = Receipt::new()
            .align(Align::Center)
            .size(2, 2)
            .line("鲜果超市")
            .size(1, 1)
            .align(Align::Left)
            .line("苹果 0.355 kg")
            .feed(2)
            .align(Align::Right)
            .line("合计 4.54")
            .cut();
        let receipts = print(&job);
        let (w, h, px) = decode(&receipt_png(&receipts[0], &font).unwrap());
        assert_eq!(w, PAPER_WIDTH);
        // Margin, a double-height line, a line, two fed lines, a line, margin.
        let line = CHAR_HEIGHT + LINE_GAP;
        let title = 2 * CHAR_HEIGHT + LINE_GAP;
        assert_eq!(h, MARGIN + title + line + 2 * line + line + MARGIN);
        assert_eq!(dark_in_rows(&px, 0..MARGIN), 0, "the top margin is blank");
        let title_rows = MARGIN..MARGIN + 2 * CHAR_HEIGHT;
        let item_rows = MARGIN + title..MARGIN + title + CHAR_HEIGHT;
        let fed = MARGIN + title + line..MARGIN + title + 3 * line;
        let total_rows = fed.end..fed.end + CHAR_HEIGHT;
        assert!(dark_in_rows(&px, title_rows.clone()) > 200);
        assert!(dark_in_rows(&px, item_rows.clone()) > 100);
        assert_eq!(dark_in_rows(&px, fed), 0, "ESC d feeds blank paper");
        assert!(dark_in_rows(&px, total_rows.clone()) > 50);
        // The title is centred: 4 double-width characters = 192 dots.
        assert_eq!(dark_in(&px, title_rows.clone(), 0..190), 0);
        assert!(dark_in(&px, title_rows.clone(), 192..384) > 200);
        assert_eq!(dark_in(&px, title_rows, 386..PAPER_WIDTH), 0);
        // The item is on the left, the total on the right.
        assert_eq!(dark_in(&px, item_rows, 300..PAPER_WIDTH), 0);
        assert_eq!(dark_in(&px, total_rows, 0..300), 0);
    }

    #[test]
    fn bold_is_darker_and_qr_is_a_labelled_box() {
        let Some(font) = font() else { return };
        let plain = print(&Receipt::new().line("合计 4.54").cut());
        let bold = print(&Receipt::new().bold(true).line("合计 4.54").cut());
        let ink = |r: &PrintedReceipt| {
            let (_, _, px) = decode(&receipt_png(r, &font).unwrap());
            px.iter().filter(|&&v| v < 128).count()
        };
        assert!(ink(&bold[0]) > ink(&plain[0]) * 5 / 4);

        let qr = print(
            &Receipt::new()
                .align(Align::Center)
                .qr("https://example.com/r/订单-42".as_bytes(), 6, QrLevel::M)
                .cut(),
        );
        let (_, h, px) = decode(&receipt_png(&qr[0], &font).unwrap());
        assert_eq!(h, MARGIN + QR_SIDE + LINE_GAP + MARGIN);
        let left = (PAPER_WIDTH - QR_SIDE) / 2;
        // The box's left edge is solid, and something is written inside it.
        assert_eq!(
            dark_in(&px, MARGIN..MARGIN + QR_SIDE, left..left + 3),
            (QR_SIDE * 3) as usize
        );
        let inside = MARGIN + 10..MARGIN + QR_SIDE - 10;
        assert!(dark_in(&px, inside, left + 10..left + QR_SIDE - 10) > 100);
    }

    #[test]
    fn long_lines_wrap_and_nothing_printed_is_refused() {
        let Some(font) = font() else { return };
        // 30 Chinese characters: 24 fit on 576 dots, 6 wrap.
        let r = print(&Receipt::new().line(&"鲜".repeat(30)).cut());
        let (_, h, px) = decode(&receipt_png(&r[0], &font).unwrap());
        let line = CHAR_HEIGHT + LINE_GAP;
        assert_eq!(h, 2 * MARGIN + 2 * line);
        let second = MARGIN + line..MARGIN + line + CHAR_HEIGHT;
        assert!(dark_in(&px, second.clone(), 0..6 * 24) > 100);
        assert_eq!(dark_in(&px, second, 6 * 24 + 2..PAPER_WIDTH), 0);

        let empty = PrintedReceipt {
            text: String::new(),
            qr: vec![],
            cut: true,
            rows: vec![],
        };
        let err = receipt_png(&empty, &font).unwrap_err();
        assert!(err.to_string().contains("nothing was printed"), "{err}");
    }

    #[test]
    fn write_pngs_numbers_the_days_receipts() {
        let Some(font) = font() else { return };
        let mut receipts = print(&Receipt::new().line("第一张").cut());
        // The cover opens before the second is cut: a fragment.
        let mut p = Printer::default();
        p.on_bytes(
            Receipt::new().line("第二张").as_bytes(),
            std::time::Instant::now(),
        );
        p.set_state(crate::devices::StateRequest {
            cover: Some(crate::devices::Cover::Open),
            ..Default::default()
        });
        receipts.extend(p.receipts());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_pngs(&receipts, &font, dir.path()).unwrap(), 2);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["receipt-0001.png", "receipt-0002-torn.png"]);
        for n in names {
            let (w, _, _) = decode(&std::fs::read(dir.path().join(n)).unwrap());
            assert_eq!(w, PAPER_WIDTH);
        }
    }

    #[test]
    fn a_missing_font_says_what_to_install() {
        let err = Font::load(Path::new("/nonexistent/font.ttc"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("fonts-wqy-microhei") && err.contains(FONT_ENV),
            "{err}"
        );
    }
}
