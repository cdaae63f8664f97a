//! Faults of the store PC's operating system, injected for real into a
//! process the harness starts: the wall clock jumping (libfaketime) and the
//! disk under a directory filling up (a size-limited tmpfs).
//!
//! Nothing here needs a hook in the program under test.
//!
//! - [`FakeClock`]: the child is started with [`FakeClock::env`]
//!   (`LD_PRELOAD` of Debian's libfaketime, `FAKETIME_TIMESTAMP_FILE`,
//!   `FAKETIME_NO_CACHE=1`, `DONT_FAKE_MONOTONIC=1`). libfaketime then reads
//!   the offset file on every `clock_gettime`/`time`/`gettimeofday`, so
//!   [`FakeClock::jump`] moves the running child's `CLOCK_REALTIME` (an NTP
//!   step, a cashier setting the clock) while `CLOCK_MONOTONIC` keeps
//!   running. It works for dynamically linked programs whose clock reads go
//!   through the C library (Rust's `std` and the `time` crate do); a static
//!   binary, or one reading the clock by raw syscall, is not affected.
//! - [`SmallDisk`]: as root, a tmpfs of a given size mounted on a directory
//!   (before the program that uses it starts); [`SmallDisk::fill`] writes a
//!   filler file until the filesystem is full, [`SmallDisk::free`] deletes
//!   it, and dropping it unmounts.
//!
//! Every failure is an `Err` with the reason (not root, mount refused, no
//! libfaketime), so the harness reports the fault as skipped. No panics.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where Debian and others put libfaketime (the thread-safe build first).
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The environment variable that names a libfaketime to use instead.
pub const LIBFAKETIME_ENV: &str = "HW_SIM_LIBFAKETIME";

/// The offset file's name inside the clock's directory.
const OFFSET_FILE: &str = "faketime.offset";

/// A wall clock the harness can move for the processes started with
/// [`FakeClock::env`]. The offset is relative to the real time: jumps add
/// up, [`FakeClock::reset`] goes back to the true time.
#[derive(Debug)]
pub struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
    offset: Mutex<i64>,
}

impl FakeClock {
    /// The libfaketime library to preload, or why there is none
    /// (`HW_SIM_LIBFAKETIME` first, then the usual install paths).
    pub fn available() -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os(LIBFAKETIME_ENV) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{LIBFAKETIME_ENV}={} is not a file", p.display()))
            };
        }
        LIBFAKETIME
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                "libfaketime is not installed (Debian: apt-get install faketime), or set \
                 HW_SIM_LIBFAKETIME to its path"
                    .to_owned()
            })
    }

    /// A clock at the true time whose offset file lives in `dir` (which
    /// must exist and outlive the processes using the clock).
    pub fn new(dir: &Path) -> Result<FakeClock, String> {
        let lib = Self::available()?;
        let c = FakeClock {
            lib,
            file: dir.join(OFFSET_FILE),
            offset: Mutex::new(0),
        };
        c.write(0)?;
        Ok(c)
    }

    /// The offset file libfaketime reads.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The environment to put on the child's `Command` (before it starts).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Read the file on every clock read, so a jump is seen at once.
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            // Only CLOCK_REALTIME moves: intervals stay true.
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// The current offset from the true time, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.lock().map(|o| *o).unwrap_or(0)
    }

    /// Moves the wall clock by `secs` (negative: back), on top of earlier
    /// jumps. Returns the new offset.
    pub fn jump(&self, secs: i64) -> Result<i64, String> {
        let mut o = self
            .offset
            .lock()
            .map_err(|_| "the clock's lock is poisoned".to_owned())?;
        let next = o
            .checked_add(secs)
            .ok_or_else(|| format!("offset {} + {secs} s overflows", *o))?;
        self.write(next)?;
        *o = next;
        Ok(next)
    }

    /// Back to the true time.
    pub fn reset(&self) -> Result<(), String> {
        let mut o = self
            .offset
            .lock()
            .map_err(|_| "the clock's lock is poisoned".to_owned())?;
        self.write(0)?;
        *o = 0;
        Ok(())
    }

    /// Sets the wall clock to `offset` seconds from the true time.
    pub fn set_offset(&self, offset: i64) -> Result<(), String> {
        let mut o = self
            .offset
            .lock()
            .map_err(|_| "the clock's lock is poisoned".to_owned())?;
        self.write(offset)?;
        *o = offset;
        Ok(())
    }

    /// Writes the offset atomically (a new file renamed over the old one),
    /// so a reader never sees half a line.
    fn write(&self, offset: i64) -> Result<(), String> {
        let tmp = self.file.with_extension("tmp");
        let text = offset_text(offset);
        std::fs::write(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &self.file))
            .map_err(|e| format!("writing {}: {e}", self.file.display()))
    }

    /// Runs `date +%s` under this clock and checks that it reads the true
    /// time plus the offset (within 5 s): the preload really works here.
    pub fn probe(&self) -> Result<(), String> {
        let out = std::process::Command::new("date")
            .arg("+%s")
            .envs(self.env())
            .output()
            .map_err(|e| format!("running date: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "date under libfaketime failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let seen: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("date printed no number: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .map_err(|e| e.to_string())?;
        let want = now.saturating_add(self.offset());
        if seen.abs_diff(want) > 5 {
            return Err(format!(
                "libfaketime {} has no effect: date says {seen}, expected {want}",
                self.lib.display()
            ));
        }
        Ok(())
    }
}

/// libfaketime's relative offset syntax: `+10800` / `-10800` (seconds).
fn offset_text(offset: i64) -> String {
    if offset < 0 {
        format!("{offset}\n")
    } else {
        format!("+{offset}\n")
    }
}

/// A size-limited tmpfs mounted on a directory, with a filler file to run
/// it out of space. Unmounted (lazily, so open files do not keep it busy)
/// when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
    filler: PathBuf,
    mounted: bool,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on `path` (an existing directory; what it
    /// held is hidden until the unmount). Needs root (`CAP_SYS_ADMIN`); Err
    /// with the reason otherwise, or when the kernel refuses.
    pub fn mount(path: &Path, bytes: u64) -> Result<SmallDisk, String> {
        if !path.is_dir() {
            return Err(format!("{} is not a directory", path.display()));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a small filesystem needs root".to_owned());
        }
        let c = |s: &[u8]| CString::new(s).map_err(|_| "a NUL in the path".to_owned());
        let source = c(b"hw-sim-smalldisk")?;
        let target = c(path.as_os_str().as_bytes())?;
        let fstype = c(b"tmpfs")?;
        let data = c(format!("size={bytes},mode=0700").as_bytes())?;
        // SAFETY: every pointer is a valid NUL-terminated string that lives
        // past the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mount -t tmpfs on {} refused: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(SmallDisk {
            path: path.to_owned(),
            filler: path.join(".hw-sim-filler"),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Free bytes on the filesystem now.
    pub fn free_bytes(&self) -> Result<u64, String> {
        let c = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|_| "a NUL in the path".to_owned())?;
        // SAFETY: a zeroed statvfs is a valid value to be written over.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path, `s` a writable statvfs.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return Err(format!(
                "statvfs {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            ));
        }
        #[allow(clippy::unnecessary_cast)]
        Ok((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
    }

    /// Fills the filesystem: appends to the filler file until the kernel
    /// answers "no space". Returns the bytes the filler now holds.
    pub fn fill(&self) -> Result<u64, String> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .map_err(|e| format!("opening the filler: {e}"))?;
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("writing the filler: {e}")),
            }
        }
        // The last pages, a byte at a time is not needed: tmpfs takes whole
        // pages, and a short write above already took what was left.
        let _ = f.sync_all();
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| format!("the filler's size: {e}"))
    }

    /// Gives the space back: deletes the filler.
    pub fn free(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.filler) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting the filler: {e}")),
        }
    }

    /// Unmounts now (also done on drop). Lazy (`MNT_DETACH`): a process
    /// still holding files there keeps them until it closes them.
    pub fn unmount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        let _ = self.free();
        let target = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|_| "a NUL in the path".to_owned())?;
        // SAFETY: `target` is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            return Err(format!(
                "umount {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            ));
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("hw-sim: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_in_libfaketimes_relative_syntax() {
        assert_eq!(offset_text(0), "+0\n");
        assert_eq!(offset_text(10_800), "+10800\n");
        assert_eq!(offset_text(-10_800), "-10800\n");
    }

    #[test]
    fn jumps_add_up_and_reset_goes_back_to_the_true_time() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = match FakeClock::new(dir.path()) {
            Ok(c) => c,
            Err(why) => {
                // Without libfaketime only the file handling is tested.
                eprintln!("SKIPPED libfaketime part: {why}");
                FakeClock {
                    lib: PathBuf::from("/nonexistent/libfaketime.so.1"),
                    file: dir.path().join(OFFSET_FILE),
                    offset: Mutex::new(0),
                }
            }
        };
        let read = || std::fs::read_to_string(clock.file()).unwrap_or_default();
        assert_eq!(clock.jump(3 * 3600), Ok(10_800));
        assert_eq!(read(), "+10800\n");
        assert_eq!(clock.jump(-6 * 3600), Ok(-10_800));
        assert_eq!((clock.offset(), read()), (-10_800, "-10800\n".to_owned()));
        assert!(clock.jump(i64::MIN).is_err(), "overflow is refused");
        assert_eq!(clock.offset(), -10_800, "a refused jump changes nothing");
        clock.reset().expect("reset");
        assert_eq!((clock.offset(), read()), (0, "+0\n".to_owned()));
        let env = clock.env();
        for k in [
            "LD_PRELOAD",
            "FAKETIME_TIMESTAMP_FILE",
            "FAKETIME_NO_CACHE",
            "DONT_FAKE_MONOTONIC",
        ] {
            assert!(env.iter().any(|(n, _)| n == k), "{k} in {env:?}");
        }
    }

    #[test]
    fn a_child_under_the_clock_sees_the_jump() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = match FakeClock::new(dir.path()) {
            Ok(c) => c,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        };
        clock.probe().expect("the true time");
        clock.jump(-3 * 3600).expect("jump");
        clock.probe().expect("three hours back");
        clock.jump(2 * 86_400).expect("jump");
        clock.probe().expect("two days on");
    }

    #[test]
    fn mounting_is_refused_with_a_reason_on_a_file_or_without_root() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("file");
        let e = SmallDisk::mount(&file, 1 << 20).expect_err("not a directory");
        assert!(e.contains("not a directory"), "{e}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let e = SmallDisk::mount(dir.path(), 1 << 20).expect_err("not root");
            assert!(e.contains("root"), "{e}");
        }
    }

    #[test]
    fn a_small_disk_fills_frees_and_unmounts() {
        let dir = tempfile::tempdir().expect("dir");
        let mut disk = match SmallDisk::mount(dir.path(), 1 << 20) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("SKIPPED SmallDisk: {why}");
                return;
            }
        };
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).expect("room at first");
        let filled = disk.fill().expect("fill");
        assert!(filled > 800_000, "the filler took the rest: {filled}");
        assert_eq!(disk.free_bytes(), Ok(0));
        let e = std::fs::write(dir.path().join("b"), vec![1u8; 8192]).expect_err("full");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        disk.free().expect("free");
        assert!(disk.free_bytes().expect("free bytes") > 800_000);
        std::fs::write(dir.path().join("b"), vec![1u8; 8192]).expect("room again");
        disk.unmount().expect("unmount");
        assert!(
            !dir.path().join("a").exists(),
            "the files were on the tmpfs, gone with it"
        );
    }
}
