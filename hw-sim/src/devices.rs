//! `hw-sim devices`: a receipt printer, a scale, a scanner and a customer
//! display, each behind its own pseudo-terminal, plus an HTTP control API to
//! drive them, read back what they did (the receipts also as PNG images) and
//! inject line faults.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

mod display;
mod line;
mod printer;
mod pty;
pub mod render;
mod scale;
mod scanner;

pub use line::{Direction, Faults, FaultsRequest, LineInfo, byte_time};
pub use printer::{
    Cover, Cutter, Drawer, Paper, PaperRow, PrintedReceipt, PrinterState, Span, StateRequest,
};

use line::{Line, lock};

/// The device names, which are also their link names in `--dir`.
pub const DEVICES: [&str; 4] = ["printer", "scale", "scanner", "display"];

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory for the per-device links (`printer`, `scale`, `scanner`, `display`).
    #[arg(long)]
    pub dir: PathBuf,
    /// Address of the HTTP control API.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Write a timestamped hex trace of each line and direction into this directory.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The CJK TrueType font (`.ttf`/`.otf`/`.ttc`, first face) the receipt
    /// images are drawn with.
    #[arg(long, env = render::FONT_ENV, default_value = render::DEFAULT_FONT)]
    pub font: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub record: Option<PathBuf>,
}

/// Runs the simulator until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let devices = Devices::start(&Config {
        dir: args.dir.clone(),
        record: args.record.clone(),
    })?;
    devices.set_font(args.font.clone());
    if let Err(e) = devices.font() {
        // Everything else works without it; only the images are missing.
        eprintln!("receipt images unavailable: {e:#}");
    }
    let listener = TcpListener::bind(args.control).await?;
    let addr = listener.local_addr()?;
    println!("control API: http://{addr}");
    for info in devices.lines() {
        println!(
            "{:<8} {} -> {}",
            info.device,
            info.link.display(),
            info.path.as_deref().unwrap_or(Path::new("?")).display()
        );
    }
    devices
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

pub struct Devices {
    printer: Arc<Mutex<printer::Printer>>,
    scale: Arc<Mutex<scale::Scale>>,
    display: Arc<Mutex<display::Display>>,
    lines: Vec<Arc<Line>>,
    font: Mutex<FontSlot>,
}

/// The receipt images' font: where to read it, then what was read.
enum FontSlot {
    Path(PathBuf),
    Loaded(Arc<render::Font>),
}

impl Devices {
    /// Creates the four devices, plugged in, with their links in `config.dir`.
    pub fn start(config: &Config) -> io::Result<Arc<Devices>> {
        std::fs::create_dir_all(&config.dir)?;
        let printer = Arc::new(Mutex::new(printer::Printer::default()));
        let scale = Arc::new(Mutex::new(scale::Scale::default()));
        let display = Arc::new(Mutex::new(display::Display::default()));
        let scanner = Arc::new(Mutex::new(scanner::Scanner));
        let record = config.record.as_deref();
        let lines = vec![
            Line::new("printer", &config.dir, printer.clone(), record)?,
            Line::new("scale", &config.dir, scale.clone(), record)?,
            Line::new("scanner", &config.dir, scanner, record)?,
            Line::new("display", &config.dir, display.clone(), record)?,
        ];
        for l in &lines {
            l.plug(None)?;
        }
        Ok(Arc::new(Devices {
            printer,
            scale,
            display,
            lines,
            font: Mutex::new(FontSlot::Path(render::Font::configured_path())),
        }))
    }

    /// Every receipt and ticket printed so far (and not cleared), in order.
    pub fn receipts(&self) -> Vec<PrintedReceipt> {
        lock(&self.printer).receipts()
    }

    /// Draws the receipt images with this font file instead of the one named
    /// by `HW_SIM_FONT` or Debian's default.
    pub fn set_font(&self, path: PathBuf) {
        *lock(&self.font) = FontSlot::Path(path);
    }

    /// The receipt images' font, read on first use; after a failure it is
    /// tried again next time, so installing it later is enough.
    pub fn font(&self) -> anyhow::Result<Arc<render::Font>> {
        let mut slot = lock(&self.font);
        match &*slot {
            FontSlot::Loaded(f) => Ok(Arc::clone(f)),
            FontSlot::Path(path) => {
                let font = Arc::new(render::Font::load(path)?);
                *slot = FontSlot::Loaded(Arc::clone(&font));
                Ok(font)
            }
        }
    }

    /// Writes every receipt printed so far into `dir` as numbered PNG images
    /// (`receipt-0001.png`, …; see [`render::write_pngs`]). Blocking: call it
    /// from `spawn_blocking` in async code.
    pub fn write_pngs(&self, dir: &Path) -> anyhow::Result<usize> {
        render::write_pngs(&self.receipts(), &*self.font()?, dir)
    }

    pub fn lines(&self) -> Vec<LineInfo> {
        self.lines.iter().map(|l| l.info()).collect()
    }

    /// Where the driver should open `device` (e.g. `DIR/printer`).
    pub fn link(&self, device: &str) -> Option<PathBuf> {
        self.line(device).map(|l| l.link())
    }

    fn line(&self, device: &str) -> Option<&Arc<Line>> {
        self.lines.iter().find(|l| l.device == device)
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/devices", get(list_devices))
            .route("/scale", put(put_scale).get(get_scale))
            .route("/scanner/scan", post(scan))
            .route(
                "/printer/receipts",
                get(get_receipts).delete(delete_receipts),
            )
            .route("/printer/receipts/{image}", get(get_receipt_png))
            .route(
                "/printer/state",
                put(put_printer_state).get(get_printer_state),
            )
            .route("/display", get(get_display))
            .route("/drawer", get(get_drawer).put(put_drawer))
            .route("/lines/{device}/faults", put(put_faults).get(get_faults))
            .with_state(self)
    }

    /// Serves the control API on `listener` until `shutdown` resolves, then
    /// unplugs every device (its link disappears).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let result = axum::serve(listener, Arc::clone(&self).router())
            .with_graceful_shutdown(shutdown)
            .await;
        let me = Arc::clone(&self);
        let _ = tokio::task::spawn_blocking(move || me.unplug_all()).await;
        result
    }

    pub fn unplug_all(&self) {
        for l in &self.lines {
            let _ = l.unplug();
        }
    }
}

// ---------------------------------------------------------------- errors

/// The control API's one error: `application/problem+json` with a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }
    fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, detail = %self.detail, "control API error");
        }
        let body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": if self.status.is_server_error() { "internal error".to_owned() } else { self.detail },
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

type Sim = State<Arc<Devices>>;

// ---------------------------------------------------------------- handlers

async fn list_devices(State(d): Sim) -> Json<Vec<LineInfo>> {
    Json(d.lines())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleRequest {
    /// Kilograms on the platter as a decimal string, e.g. `"0.355"`; may be
    /// negative (the platter lifted), at most three decimals.
    kg: String,
    #[serde(default)]
    settle_ms: u64,
}

async fn put_scale(
    State(d): Sim,
    Json(req): Json<ScaleRequest>,
) -> Result<Json<scale::ScaleState>, ApiError> {
    let grams = proto::device::parse_milli(&req.kg)
        .filter(|g| g.abs() <= 1_000_000)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_weight",
                "kg must be a decimal string with at most 3 decimals, e.g. \"0.355\"",
            )
        })?;
    let now = Instant::now();
    let mut s = lock(&d.scale);
    s.put(grams, Duration::from_millis(req.settle_ms.min(60_000)), now);
    Ok(Json(s.state(now)))
}

async fn get_scale(State(d): Sim) -> Json<scale::ScaleState> {
    Json(lock(&d.scale).state(Instant::now()))
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum Terminator {
    #[default]
    Cr,
    Crlf,
    Lf,
    Tab,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanRequest {
    code: String,
    /// An AIM symbology identifier without its `]`, e.g. `E0`.
    aim: Option<String>,
    #[serde(default)]
    terminator: Terminator,
}

async fn scan(State(d): Sim, Json(req): Json<ScanRequest>) -> Result<StatusCode, ApiError> {
    let printable = |s: &str| s.bytes().all(|b| (0x20..0x7F).contains(&b));
    if req.code.is_empty() || req.code.len() > 256 || !printable(&req.code) {
        return Err(ApiError::bad_request(
            "invalid_code",
            "code must be 1-256 printable ASCII characters",
        ));
    }
    if req
        .aim
        .as_deref()
        .is_some_and(|a| a.len() != 2 || !printable(a))
    {
        return Err(ApiError::bad_request(
            "invalid_aim",
            "aim must be two characters, e.g. \"E0\"",
        ));
    }
    let line = d
        .line("scanner")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_device", "no scanner"))?;
    if !line.is_plugged() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unplugged",
            "the scanner is unplugged",
        ));
    }
    let terminator: &[u8] = match req.terminator {
        Terminator::Cr => b"\r",
        Terminator::Crlf => b"\r\n",
        Terminator::Lf => b"\n",
        Terminator::Tab => b"\t",
    };
    line.send(&proto::device::scanner::encode(
        &req.code,
        req.aim.as_deref(),
        terminator,
    ));
    Ok(StatusCode::ACCEPTED)
}

#[derive(Serialize)]
struct Receipts {
    receipts: Vec<PrintedReceipt>,
}

async fn get_receipts(State(d): Sim) -> Json<Receipts> {
    Json(Receipts {
        receipts: lock(&d.printer).receipts(),
    })
}

async fn delete_receipts(State(d): Sim) -> StatusCode {
    lock(&d.printer).clear_receipts();
    StatusCode::NO_CONTENT
}

/// `GET /printer/receipts/last.png` (the latest receipt) or
/// `/printer/receipts/{n}.png` (the `n`th, from 1): the receipt drawn as the
/// paper would look.
async fn get_receipt_png(
    State(d): Sim,
    UrlPath(image): UrlPath<String>,
) -> Result<Response, ApiError> {
    let not_found = |detail: String| ApiError::new(StatusCode::NOT_FOUND, "no_receipt", detail);
    let which = image.strip_suffix(".png").ok_or_else(|| {
        not_found(
            "receipt images are /printer/receipts/last.png or /printer/receipts/{n}.png".into(),
        )
    })?;
    let receipt = {
        let p = lock(&d.printer);
        let count = p.receipt_count();
        let n = match which {
            "last" if count == 0 => {
                return Err(not_found("nothing has been printed yet".into()));
            }
            "last" => count,
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=count).contains(n))
                .ok_or_else(|| {
                    not_found(format!(
                        "no receipt {n:?}: {count} printed so far, numbered from 1"
                    ))
                })?,
        };
        p.receipt(n)
            .ok_or_else(|| not_found(format!("no receipt {n}")))?
    };
    let png = tokio::task::spawn_blocking(move || {
        let font = d.font().map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "font_missing",
                format!("{e:#}"),
            )
        })?;
        render::receipt_png(&receipt, &font).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render_failed",
                format!("{e:#}"),
            )
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

async fn put_printer_state(State(d): Sim, Json(req): Json<StateRequest>) -> Json<PrinterState> {
    let mut p = lock(&d.printer);
    p.set_state(req);
    Json(p.state())
}

async fn get_printer_state(State(d): Sim) -> Json<PrinterState> {
    Json(lock(&d.printer).state())
}

async fn get_display(State(d): Sim) -> Json<serde_json::Value> {
    Json(json!({ "lines": lock(&d.display).lines() }))
}

async fn get_drawer(State(d): Sim) -> Json<Drawer> {
    Json(lock(&d.printer).drawer())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrawerRequest {
    open: bool,
}

async fn put_drawer(State(d): Sim, Json(req): Json<DrawerRequest>) -> Json<Drawer> {
    let mut p = lock(&d.printer);
    p.set_drawer_open(req.open);
    Json(p.drawer())
}

fn find_line(d: &Devices, device: &str) -> Result<Arc<Line>, ApiError> {
    d.line(device).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_device",
            format!("no device {device:?}; devices are {DEVICES:?}"),
        )
    })
}

async fn put_faults(
    State(d): Sim,
    UrlPath(device): UrlPath<String>,
    Json(req): Json<FaultsRequest>,
) -> Result<Json<LineInfo>, ApiError> {
    let line = find_line(&d, &device)?;
    let rates_ok = [req.faults.bit_error_rate, req.faults.drop_rate]
        .iter()
        .all(|r| (0.0..=1.0).contains(r));
    if !rates_ok {
        return Err(ApiError::bad_request(
            "invalid_rate",
            "rates are probabilities between 0 and 1",
        ));
    }
    let result = tokio::task::spawn_blocking(move || line.apply(req).map(|()| line.info()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match result {
        Ok(info) => Ok(Json(info)),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            Err(ApiError::bad_request("invalid_name", e.to_string()))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "pty_failed",
            e.to_string(),
        )),
    }
}

async fn get_faults(
    State(d): Sim,
    UrlPath(device): UrlPath<String>,
) -> Result<Json<LineInfo>, ApiError> {
    Ok(Json(find_line(&d, &device)?.info()))
}
