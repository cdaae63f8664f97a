//! Serial lines: line settings, port discovery by USB id, and an async byte
//! stream over a serial port (or a pseudo-terminal standing in for one).
//!
//! The port is opened with `serialport` (which sets raw mode, baud rate and
//! framing) and then driven non-blocking through tokio's reactor, so no thread
//! is parked per device.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll, ready};

use serialport::{DataBits, Parity, SerialPortType, StopBits};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Connect;

/// Baud rate and framing of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
}

impl LineSettings {
    pub const fn n81(baud: u32) -> Self {
        LineSettings {
            baud,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
        }
    }
    /// Toledo 8217 scales: 9600 baud, 7 data bits, even parity.
    pub const fn scale() -> Self {
        LineSettings {
            baud: 9600,
            data_bits: DataBits::Seven,
            parity: Parity::Even,
            stop_bits: StopBits::One,
        }
    }
    pub const fn printer() -> Self {
        Self::n81(115_200)
    }
    pub const fn scanner() -> Self {
        Self::n81(9600)
    }
    pub const fn display() -> Self {
        Self::n81(9600)
    }
}

/// How a device is configured: by USB `VID:PID[:SERIAL]` (hex ids), which
/// survives replugging into another socket, or by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Path(PathBuf),
    Usb {
        vid: u16,
        pid: u16,
        serial: Option<String>,
    },
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty port".into());
        }
        if s.contains('/') {
            return Ok(PortSpec::Path(s.into()));
        }
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        let hex = |p: &str| {
            (p.len() == 4)
                .then(|| u16::from_str_radix(p, 16).ok())
                .flatten()
        };
        match parts.as_slice() {
            [v, p, rest @ ..] if hex(v).is_some() && hex(p).is_some() => Ok(PortSpec::Usb {
                vid: hex(v).unwrap_or_default(),
                pid: hex(p).unwrap_or_default(),
                serial: rest
                    .first()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string()),
            }),
            _ => Ok(PortSpec::Path(s.into())),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Path(p) => write!(f, "{}", p.display()),
            PortSpec::Usb { vid, pid, serial } => {
                write!(f, "{vid:04X}:{pid:04X}")?;
                if let Some(s) = serial {
                    write!(f, ":{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// A serial port as the system lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub path: PathBuf,
    pub vid: Option<u16>,
    pub pid: Option<u16>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
}

impl PortInfo {
    /// The spec that finds this port again after a replug: `VID:PID:SERIAL`
    /// when the adapter has a serial number, else the path (cheap CH340
    /// adapters have none).
    pub fn spec(&self) -> PortSpec {
        match (self.vid, self.pid, &self.serial) {
            (Some(vid), Some(pid), Some(serial)) => PortSpec::Usb {
                vid,
                pid,
                serial: Some(serial.clone()),
            },
            _ => PortSpec::Path(self.path.clone()),
        }
    }
}

pub fn list_ports() -> io::Result<Vec<PortInfo>> {
    let ports = serialport::available_ports().map_err(io::Error::other)?;
    Ok(ports
        .into_iter()
        .map(|p| {
            let mut info = PortInfo {
                path: p.port_name.into(),
                vid: None,
                pid: None,
                serial: None,
                manufacturer: None,
                product: None,
            };
            if let SerialPortType::UsbPort(u) = p.port_type {
                info.vid = Some(u.vid);
                info.pid = Some(u.pid);
                info.serial = u.serial_number;
                info.manufacturer = u.manufacturer;
                info.product = u.product;
            }
            info
        })
        .collect())
}

/// Finds the path of the port a spec names right now.
pub fn resolve(spec: &PortSpec) -> io::Result<PathBuf> {
    match spec {
        PortSpec::Path(p) => Ok(p.clone()),
        PortSpec::Usb { vid, pid, serial } => list_ports()?
            .into_iter()
            .find(|p| {
                p.vid == Some(*vid)
                    && p.pid == Some(*pid)
                    && (serial.is_none() || p.serial.as_ref() == serial.as_ref())
            })
            .map(|p| p.path)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no USB device {spec}"))
            }),
    }
}

/// Opens a serial port with these settings as an async stream (needs a
/// tokio runtime).
pub fn open(path: &Path, settings: LineSettings) -> io::Result<SerialStream> {
    Ok(SerialStream {
        fd: register(open_fd(path, settings)?)?,
    })
}

/// Opens a serial port with these settings, in raw non-blocking mode.
fn open_fd(path: &Path, settings: LineSettings) -> io::Result<OwnedFd> {
    let path_str = path.to_string_lossy().into_owned();
    let opened = serialport::new(&path_str, settings.baud)
        .data_bits(settings.data_bits)
        .parity(settings.parity)
        .stop_bits(settings.stop_bits)
        .flow_control(serialport::FlowControl::None)
        .open_native();
    let fd = match opened {
        // SAFETY: into_raw_fd hands over ownership of a valid descriptor.
        Ok(port) => unsafe { OwnedFd::from_raw_fd(port.into_raw_fd()) },
        Err(e) => {
            let io_err = serial_error(e);
            // A pseudo-terminal refuses modem-control ioctls with ENOTTY
            // ("Not a typewriter"); that is no reason to give up on it.
            if io_err.raw_os_error() != Some(libc::ENOTTY) {
                return Err(io_err);
            }
            tracing::debug!(path = %path.display(), "control lines unsupported, opening as plain tty");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?;
            let fd = OwnedFd::from(file);
            make_raw(&fd);
            fd
        }
    };
    // SAFETY: fd is a valid open descriptor for the calls below.
    unsafe {
        libc::tcflush(fd.as_raw_fd(), libc::TCIFLUSH);
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the descriptor is moved in and is neither closed nor replaced
    // while the AsyncFd owns it.
    Ok(unsafe { AsyncFd::register(fd)? })
}

fn make_raw(fd: &OwnedFd) {
    // SAFETY: fd is valid; failures (not a tty) are ignored on purpose.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
}

fn serial_error(e: serialport::Error) -> io::Error {
    match e.kind {
        serialport::ErrorKind::NoDevice => io::Error::new(io::ErrorKind::NotFound, e.description),
        serialport::ErrorKind::Io(kind) => {
            if e.description.contains("Not a typewriter") {
                io::Error::from_raw_os_error(libc::ENOTTY)
            } else {
                io::Error::new(kind, e.description)
            }
        }
        _ if e.description.contains("Not a typewriter") => {
            io::Error::from_raw_os_error(libc::ENOTTY)
        }
        _ => io::Error::other(e.description),
    }
}

/// A serial port as a tokio byte stream.
pub struct SerialStream {
    fd: AsyncFd<OwnedFd>,
}

fn sys(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for SerialStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // SAFETY: unfilled is valid for its length.
            let r = guard.try_io(|fd| {
                sys(unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                })
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for SerialStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            // SAFETY: buf is valid for its length.
            let r = guard.try_io(|fd| {
                sys(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
            });
            match r {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Connects to a device by spec with its line settings; resolves the spec
/// anew on every connect, so a device replugged under another name is found.
#[derive(Debug, Clone)]
pub struct SerialConnect {
    pub spec: PortSpec,
    pub settings: LineSettings,
}

impl SerialConnect {
    pub fn new(spec: PortSpec, settings: LineSettings) -> Self {
        SerialConnect { spec, settings }
    }
}

impl Connect for SerialConnect {
    type Io = SerialStream;
    async fn connect(&self) -> io::Result<SerialStream> {
        let (spec, settings) = (self.spec.clone(), self.settings);
        let fd = tokio::task::spawn_blocking(move || open_fd(&resolve(&spec)?, settings))
            .await
            .map_err(io::Error::other)??;
        Ok(SerialStream { fd: register(fd)? })
    }
    fn describe(&self) -> String {
        self.spec.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "1A86:7523".parse::<PortSpec>(),
            Ok(PortSpec::Usb {
                vid: 0x1A86,
                pid: 0x7523,
                serial: None
            })
        );
        assert_eq!(
            "0403:6001:A9XK2".parse::<PortSpec>(),
            Ok(PortSpec::Usb {
                vid: 0x0403,
                pid: 0x6001,
                serial: Some("A9XK2".into())
            })
        );
        assert_eq!(
            "/dev/ttyUSB0".parse::<PortSpec>(),
            Ok(PortSpec::Path("/dev/ttyUSB0".into()))
        );
        assert_eq!(
            "COM3".parse::<PortSpec>(),
            Ok(PortSpec::Path("COM3".into()))
        );
        assert!("".parse::<PortSpec>().is_err());
        assert_eq!(
            "0403:6001:A9XK2".parse::<PortSpec>().map(|s| s.to_string()),
            Ok("0403:6001:A9XK2".into())
        );
    }
}
