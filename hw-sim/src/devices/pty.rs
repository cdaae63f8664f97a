//! Pseudo-terminal pairs: the simulator keeps the master, the driver under
//! test opens the slave path as if it were /dev/ttyUSB0.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

pub struct Pty {
    master: OwnedFd,
    // Held open so the master never sees a hang-up when the driver closes its
    // end: a real device does not vanish when the host closes the port.
    _slave: OwnedFd,
    pub path: PathBuf,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Pty {
    pub fn open() -> io::Result<Pty> {
        // Both ends are opened close-on-exec in the same call: a process the
        // simulator's host starts (the agent under test, a gateway) must not
        // inherit them. A child holding a copy of the master keeps the
        // pseudo-terminal alive after an unplug, so the driver on the other
        // end never sees its line go (no hang-up) and talks to a dead line.
        // SAFETY: a plain open of the multiplexer with constant flags.
        let master = check(unsafe {
            libc::open(
                c"/dev/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        })?;
        // SAFETY: the fd was just returned by open and is owned by us.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: master is a valid pty master; the buffer is valid and its
        // length is passed.
        unsafe {
            check(libc::grantpt(master.as_raw_fd()))?;
            check(libc::unlockpt(master.as_raw_fd()))?;
            let rc = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        // SAFETY: ptsname_r wrote a NUL-terminated string into the buffer.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) };
        // SAFETY: path is NUL-terminated; constant flags.
        let slave = check(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: the fd was just returned by open and is owned by us.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        // SAFETY: the fd is valid for the duration of these calls.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            check(libc::tcgetattr(slave.as_raw_fd(), &mut t))?;
            libc::cfmakeraw(&mut t);
            check(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t))?;
        }
        Ok(Pty {
            master,
            _slave: slave,
            path: PathBuf::from(path.to_string_lossy().into_owned()),
        })
    }

    /// Waits up to `timeout` for the master to become readable (or writable).
    fn wait(&self, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(n > 0 && pfd.revents & events != 0)
    }

    /// Reads what the host wrote; `Ok(0)` when nothing came within `timeout`.
    pub fn read(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if !self.wait(libc::POLLIN, timeout)? {
            return Ok(0);
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Writes some of `buf` towards the host; `Ok(0)` if the host is not
    /// reading and the pty buffer stayed full for `timeout`.
    pub fn write(&self, buf: &[u8], timeout: Duration) -> io::Result<usize> {
        if !self.wait(libc::POLLOUT, timeout)? {
            return Ok(0);
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(self.master.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }
}
