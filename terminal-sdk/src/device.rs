//! Peripheral drivers with a UnifiedPOS-like device model.
//!
//! Every driver owns a [`Port`] built from a [`Connect`]: something that
//! yields a fresh byte stream (a serial port, a pseudo-terminal, a scripted
//! mock) whenever the driver needs one — at claim time and again after the
//! device was unplugged. A device goes `open` → `claim` → `enable`; its state
//! is closed, idle, busy or error; failures are one [`Error`] type whose
//! [`ErrorKind`] is portable across drivers; input and status changes are
//! also published as [`Event`]s.

use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use proto::device::Decode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

pub mod display;
pub mod printer;
pub mod scale;
pub mod scanner;
pub mod serial;

pub use display::Display;
pub use printer::{JobId, Printer, PrinterHealth};
pub use scale::Scale;
pub use scanner::{Scanned, Scanner};
pub use serial::{LineSettings, PortInfo, PortSpec, SerialConnect, list_ports};

/// UnifiedPOS device states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Idle,
    Busy,
    Error,
}

/// What went wrong, the same for every driver (UnifiedPOS result codes plus
/// the extended ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The device is not open, claimed or enabled.
    NotReady,
    /// The device stopped answering or its line went away.
    Offline,
    /// No such port (unplugged, wrong path, no device with that USB id).
    NoHardware,
    /// The port exists but this user may not open it.
    PermissionDenied,
    Timeout,
    /// Another job is in the way (e.g. a failed receipt awaits resume).
    Busy,
    Failure,
    CoverOpen,
    PaperEmpty,
    CutterError,
    OverCapacity,
    UnderZero,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{device}: {kind:?}: {detail}")]
pub struct Error {
    pub device: &'static str,
    pub kind: ErrorKind,
    pub detail: String,
}

impl Error {
    pub fn new(device: &'static str, kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            device,
            kind,
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Something that happened on a device, for whoever listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    State {
        device: &'static str,
        state: State,
    },
    /// The line came back after being lost.
    Reconnected {
        device: &'static str,
    },
    StableWeight(proto::device::Weight),
    Scan(Scanned),
    JobPrinted(JobId),
    JobFailed {
        job: JobId,
        kind: ErrorKind,
    },
}

/// A source of fresh connections to one device.
pub trait Connect: Send + Sync {
    type Io: AsyncRead + AsyncWrite + Unpin + Send;
    fn connect(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
    /// Where the device is, for messages.
    fn describe(&self) -> String;
}

/// A [`Connect`] that hands out one ready-made stream, then reports no
/// hardware — for scripted tests.
pub struct Once<T>(Mutex<Option<T>>);

impl<T> Once<T> {
    pub fn new(io: T) -> Self {
        Once(Mutex::new(Some(io)))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connect for Once<T> {
    type Io = T;
    async fn connect(&self) -> io::Result<T> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "already used"))
    }
    fn describe(&self) -> String {
        "scripted stream".into()
    }
}

/// Classifies an I/O error on opening a device.
pub fn open_error(device: &'static str, e: &io::Error, place: &str) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => {
            Error::new(device, ErrorKind::NoHardware, format!("{place}: {e}"))
        }
        io::ErrorKind::PermissionDenied => Error::new(
            device,
            ErrorKind::PermissionDenied,
            format!(
                "{place}: {e}. Serial ports belong to the `dialout` group: run \
                 `sudo usermod -aG dialout $USER`, then log out and in again"
            ),
        ),
        _ => Error::new(device, ErrorKind::Offline, format!("{place}: {e}")),
    }
}

/// The connection, lifecycle and receive buffer shared by all drivers.
pub struct Port<C: Connect> {
    device: &'static str,
    connect: C,
    io: Option<C::Io>,
    state: State,
    claimed: bool,
    enabled: bool,
    rx: Vec<u8>,
    events: broadcast::Sender<Event>,
    /// How long to keep trying to reconnect a lost device.
    pub reconnect_for: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl<C: Connect> Port<C> {
    pub fn new(device: &'static str, connect: C) -> Self {
        Port {
            device,
            connect,
            io: None,
            state: State::Closed,
            claimed: false,
            enabled: false,
            rx: vec![],
            events: broadcast::channel(256).0,
            reconnect_for: Duration::from_secs(10),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub fn error(&self, kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error::new(self.device, kind, detail)
    }

    pub fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.emit(Event::State {
                device: self.device,
                state,
            });
        }
    }

    pub fn open(&mut self) {
        if self.state == State::Closed {
            self.set_state(State::Idle);
        }
    }

    /// Opens the line, trying for `timeout` if the device is not there yet.
    pub async fn claim(&mut self, timeout: Duration) -> Result<()> {
        if self.state == State::Closed {
            return Err(self.error(ErrorKind::NotReady, "open the device first"));
        }
        if self.io.is_none() {
            self.connect_with_backoff(timeout).await?;
        }
        self.claimed = true;
        Ok(())
    }

    pub fn enable(&mut self) -> Result<()> {
        if !self.claimed {
            return Err(self.error(ErrorKind::NotReady, "claim the device first"));
        }
        self.enabled = true;
        Ok(())
    }

    pub fn disable(&mut self) {
        self.enabled = false;
    }

    pub fn release(&mut self) {
        self.io = None;
        self.claimed = false;
        self.enabled = false;
        self.rx.clear();
    }

    pub fn close(&mut self) {
        self.release();
        self.set_state(State::Closed);
    }

    pub fn is_connected(&self) -> bool {
        self.io.is_some()
    }

    fn check_enabled(&self) -> Result<()> {
        if !self.enabled {
            return Err(self.error(ErrorKind::NotReady, "device is not enabled"));
        }
        Ok(())
    }

    async fn connect_with_backoff(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(25);
        loop {
            match self.connect.connect().await {
                Ok(io) => {
                    self.io = Some(io);
                    self.rx.clear();
                    if self.state == State::Error {
                        self.set_state(State::Idle);
                    }
                    return Ok(());
                }
                Err(e) => {
                    let err = open_error(self.device, &e, &self.connect.describe());
                    // Permission problems do not fix themselves.
                    if err.kind == ErrorKind::PermissionDenied || Instant::now() + wait > deadline {
                        return Err(err);
                    }
                    tracing::debug!(device = self.device, error = %e, "not there yet");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// Makes sure the line is up, reconnecting with backoff if it was lost.
    /// Returns whether it had to reconnect (the caller then resynchronises).
    pub async fn ensure_connected(&mut self) -> Result<bool> {
        self.check_enabled()?;
        if self.io.is_some() {
            return Ok(false);
        }
        self.connect_with_backoff(self.reconnect_for).await?;
        tracing::info!(device = self.device, "reconnected");
        self.emit(Event::Reconnected {
            device: self.device,
        });
        Ok(true)
    }

    /// Gives up on the open line without an I/O error having said so (the
    /// device went silent): the next [`Port::ensure_connected`] opens the
    /// port again by its spec. A device switched off and on, or one that
    /// came back under a new node, is found that way even when the old line
    /// never reported a hang-up.
    pub fn drop_line(&mut self, why: &str) {
        if self.io.take().is_some() {
            tracing::warn!(
                device = self.device,
                why,
                "line dropped, reopening next time"
            );
            self.rx.clear();
            self.set_state(State::Error);
        }
    }

    fn lost(&mut self, e: &io::Error) -> Error {
        tracing::warn!(device = self.device, error = %e, "line lost");
        self.io = None;
        self.rx.clear();
        self.set_state(State::Error);
        self.error(ErrorKind::Offline, format!("line lost: {e}"))
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_enabled()?;
        let Some(io) = self.io.as_mut() else {
            return Err(self.error(ErrorKind::Offline, "not connected"));
        };
        let r = async {
            io.write_all(bytes).await?;
            io.flush().await
        }
        .await;
        r.map_err(|e| self.lost(&e))
    }

    /// Reads what is there (waiting until `deadline`); false on timeout.
    async fn fill(&mut self, deadline: Instant) -> Result<bool> {
        let Some(io) = self.io.as_mut() else {
            return Err(self.error(ErrorKind::Offline, "not connected"));
        };
        let mut buf = [0u8; 512];
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "end of stream");
                Err(self.lost(&e))
            }
            Ok(Ok(n)) => {
                self.rx.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Ok(Err(e)) => Err(self.lost(&e)),
        }
    }

    /// Decodes the next item from the receive buffer, skipping garbage.
    pub fn take<T>(&mut self, decode: impl Fn(&[u8]) -> Decode<T>) -> Option<T> {
        loop {
            match decode(&self.rx) {
                Decode::Done(item, n) => {
                    self.rx.drain(..n.min(self.rx.len()));
                    return Some(item);
                }
                Decode::Invalid { skip, reason } => {
                    tracing::debug!(device = self.device, reason, skip, "skipped bytes");
                    self.rx.drain(..skip.min(self.rx.len()));
                }
                Decode::NeedMore => return None,
            }
        }
    }

    /// Reads until `decode` yields an item, or times out at `deadline`.
    pub async fn read_item<T>(
        &mut self,
        decode: impl Fn(&[u8]) -> Decode<T>,
        deadline: Option<Instant>,
    ) -> Result<T> {
        self.check_enabled()?;
        loop {
            if let Some(item) = self.take(&decode) {
                return Ok(item);
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            if !self.fill(until).await? && deadline.is_some() {
                return Err(self.error(ErrorKind::Timeout, "no answer"));
            }
        }
    }

    /// Drops everything received so far and whatever arrives until the line
    /// has been quiet for `quiet`.
    pub async fn flush_input(&mut self, quiet: Duration) -> Result<()> {
        self.rx.clear();
        while self.fill(Instant::now() + quiet).await? {
            self.rx.clear();
        }
        Ok(())
    }

    /// Forgets bytes received but not decoded yet.
    pub fn clear_input(&mut self) {
        self.rx.clear();
    }
}

/// The UnifiedPOS lifecycle on a driver: `open`, `claim`, `enable`,
/// `release`, `close`, `state`, `subscribe`.
macro_rules! lifecycle {
    () => {
        pub fn open(&mut self) {
            self.port.open();
        }
        /// Opens the line, waiting up to `timeout` for the device to appear.
        pub async fn claim(&mut self, timeout: std::time::Duration) -> $crate::device::Result<()> {
            self.port.claim(timeout).await
        }
        pub fn release(&mut self) {
            self.port.release();
        }
        pub fn close(&mut self) {
            self.port.close();
        }
        pub fn state(&self) -> $crate::device::State {
            self.port.state()
        }
        pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<$crate::device::Event> {
            self.port.subscribe()
        }
        /// How long to keep trying when the device was unplugged.
        pub fn set_reconnect_for(&mut self, d: std::time::Duration) {
            self.port.reconnect_for = d;
        }
    };
}
pub(crate) use lifecycle;
