//! One serial line between the host and a simulated device: a pseudo-terminal
//! plus everything a pty does not do by itself — baud-rate pacing, noise,
//! dropped bytes, delay, wrong line settings, unplugging — and an optional
//! hex trace per direction.
//!
//! Two OS threads move the bytes (one per direction) so that pacing sleeps
//! are precise to tens of microseconds, which the benchmark relies on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::pty::Pty;

/// A device behind a line: bytes from the host in, bytes for the host out.
pub trait Model: Send {
    fn on_bytes(&mut self, input: &[u8], now: Instant) -> Vec<u8>;
    /// The device lost power: what it buffered and the modes it was set to
    /// are gone (what it already did, e.g. paper printed, stays).
    fn power_off(&mut self) {}
}

/// Which way a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Both,
    ToHost,
    ToDevice,
}

/// The faults on a line. Rates are probabilities (per bit, per byte).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub bit_error_rate: f64,
    pub drop_rate: f64,
    pub delay_ms: u64,
    /// Pace bytes as a real line at this baud rate would (10 bits a byte).
    pub baud: Option<u32>,
    /// The two ends disagree on baud rate or framing: every byte is garbage.
    pub wrong_settings: bool,
    pub direction: Direction,
    /// Seed of the noise generator, for reproducible runs.
    pub seed: Option<u64>,
}

/// `PUT /lines/{device}/faults`: the new faults, plus plug actions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FaultsRequest {
    #[serde(flatten)]
    pub faults: Faults,
    /// Unplug (`false`) or plug in again (`true`).
    pub plugged: Option<bool>,
    /// The link name to (re)appear under, e.g. `printer-2`.
    pub name: Option<String>,
    /// Unplug by itself after this many more bytes from the host.
    pub unplug_after_bytes: Option<u64>,
    /// After an unplug, plug in again by itself after this long.
    pub replug_after_ms: Option<u64>,
    /// That unplug is the device losing power (its buffer and modes
    /// reset), not only its cable coming out.
    pub power_loss: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineInfo {
    pub device: &'static str,
    pub link: PathBuf,
    pub path: Option<PathBuf>,
    pub plugged: bool,
    pub faults: Faults,
}

struct State {
    faults: Faults,
    name: String,
    plugged: bool,
    path: Option<PathBuf>,
    unplug_after_bytes: Option<u64>,
    replug_after: Option<Duration>,
    power_loss: bool,
}

struct Session {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

pub struct Line {
    pub device: &'static str,
    dir: PathBuf,
    model: Arc<Mutex<dyn Model>>,
    state: Mutex<State>,
    outbox: Mutex<VecDeque<u8>>,
    ready: Condvar,
    rng: Mutex<SmallRng>,
    recorder: Option<Recorder>,
    session: Mutex<Option<Session>>,
}

/// Locks, recovering from a poisoned lock: the simulator's state stays usable
/// even if a thread panicked while holding it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const POLL: Duration = Duration::from_millis(20);
const CHUNK: usize = 16;

impl Line {
    pub fn new(
        device: &'static str,
        dir: &Path,
        model: Arc<Mutex<dyn Model>>,
        record: Option<&Path>,
    ) -> io::Result<Arc<Line>> {
        let recorder = record.map(|d| Recorder::create(d, device)).transpose()?;
        Ok(Arc::new(Line {
            device,
            dir: dir.to_owned(),
            model,
            state: Mutex::new(State {
                faults: Faults::default(),
                name: device.to_owned(),
                plugged: false,
                path: None,
                unplug_after_bytes: None,
                replug_after: None,
                power_loss: false,
            }),
            outbox: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            rng: Mutex::new(SmallRng::seed_from_u64(0x5EED)),
            recorder,
            session: Mutex::new(None),
        }))
    }

    pub fn info(&self) -> LineInfo {
        let st = lock(&self.state);
        LineInfo {
            device: self.device,
            link: self.dir.join(&st.name),
            path: st.path.clone(),
            plugged: st.plugged,
            faults: st.faults.clone(),
        }
    }

    pub fn link(&self) -> PathBuf {
        self.dir.join(&lock(&self.state).name)
    }

    pub fn is_plugged(&self) -> bool {
        lock(&self.state).plugged
    }

    /// Queues bytes for the host (a scan, an unsolicited status).
    pub fn send(&self, bytes: &[u8]) {
        lock(&self.outbox).extend(bytes);
        self.ready.notify_all();
    }

    pub fn apply(self: &Arc<Self>, req: FaultsRequest) -> io::Result<()> {
        if let Some(name) = &req.name
            && (name.is_empty() || name.contains('/') || name.starts_with('.'))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "name must be a plain file name",
            ));
        }
        {
            let mut st = lock(&self.state);
            if let Some(seed) = req.faults.seed {
                *lock(&self.rng) = SmallRng::seed_from_u64(seed);
            }
            st.faults = req.faults;
            st.unplug_after_bytes = req.unplug_after_bytes;
            st.replug_after = req.replug_after_ms.map(Duration::from_millis);
            st.power_loss = req.power_loss;
        }
        match req.plugged {
            Some(false) => self.unplug(),
            Some(true) => self.plug(req.name),
            None if req.name.is_some() && self.is_plugged() => self.plug(req.name),
            None => {
                if let Some(name) = req.name {
                    lock(&self.state).name = name;
                }
                Ok(())
            }
        }
    }

    /// Plugs the device in: a new pty, and the link pointing at it. Plugging
    /// an already plugged device unplugs it first (a replug).
    pub fn plug(self: &Arc<Self>, name: Option<String>) -> io::Result<()> {
        let mut session = lock(&self.session);
        if let Some(old) = session.take() {
            self.end_session(old);
        }
        let pty = Arc::new(Pty::open()?);
        let link = {
            let mut st = lock(&self.state);
            let _ = std::fs::remove_file(self.dir.join(&st.name));
            if let Some(name) = name {
                st.name = name;
            }
            st.plugged = true;
            st.path = Some(pty.path.clone());
            self.dir.join(&st.name)
        };
        lock(&self.outbox).clear();
        replace_symlink(&pty.path, &link)?;
        tracing::info!(device = self.device, link = %link.display(), pty = %pty.path.display(), "plugged in");
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![];
        for to_host in [false, true] {
            let (line, pty, stop) = (Arc::clone(self), Arc::clone(&pty), Arc::clone(&stop));
            let name = format!("{}-{}", self.device, if to_host { "tx" } else { "rx" });
            threads.push(std::thread::Builder::new().name(name).spawn(move || {
                let r = if to_host {
                    line.pump_to_host(&pty, &stop)
                } else {
                    line.pump_to_device(&pty, &stop)
                };
                if let Err(e) = r {
                    tracing::warn!(device = line.device, error = %e, "line stopped");
                }
            })?);
        }
        *session = Some(Session { stop, threads });
        Ok(())
    }

    /// Unplugs the device: the pty goes away and so does its link.
    pub fn unplug(&self) -> io::Result<()> {
        if let Some(old) = lock(&self.session).take() {
            self.end_session(old);
        }
        self.mark_unplugged();
        Ok(())
    }

    fn mark_unplugged(&self) {
        let mut st = lock(&self.state);
        if st.plugged {
            tracing::info!(device = self.device, "unplugged");
        }
        st.plugged = false;
        st.path = None;
        let _ = std::fs::remove_file(self.dir.join(&st.name));
        lock(&self.outbox).clear();
    }

    fn end_session(&self, session: Session) {
        session.stop.store(true, Ordering::SeqCst);
        self.ready.notify_all();
        let me = std::thread::current().id();
        for t in session.threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }

    /// An unplug decided by the line itself (after N bytes), from a pump
    /// thread: stop both pumps, drop the pty, maybe come back later.
    fn unplug_from_inside(self: &Arc<Self>, stop: &AtomicBool) {
        stop.store(true, Ordering::SeqCst);
        self.ready.notify_all();
        self.mark_unplugged();
        if std::mem::take(&mut lock(&self.state).power_loss) {
            lock(&self.model).power_off();
        }
        if let Some(after) = lock(&self.state).replug_after.take() {
            let line = Arc::clone(self);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                if let Err(e) = line.plug(None) {
                    tracing::warn!(device = line.device, error = %e, "replug failed");
                }
            });
        }
    }

    fn faults(&self) -> Faults {
        lock(&self.state).faults.clone()
    }

    fn corrupt(&self, data: &[u8], faults: &Faults, to_host: bool) -> Vec<u8> {
        let applies = match faults.direction {
            Direction::Both => true,
            Direction::ToHost => to_host,
            Direction::ToDevice => !to_host,
        };
        if !applies
            || (faults.bit_error_rate <= 0.0 && faults.drop_rate <= 0.0 && !faults.wrong_settings)
        {
            return data.to_vec();
        }
        let mut rng = lock(&self.rng);
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if faults.drop_rate > 0.0 && rng.random_bool(faults.drop_rate.min(1.0)) {
                continue;
            }
            let mut b = if faults.wrong_settings {
                // A byte sampled at the wrong rate: bits smeared and shifted.
                (b.rotate_left(3) ^ rng.random::<u8>()) | 0x80
            } else {
                b
            };
            if faults.bit_error_rate > 0.0 {
                for bit in 0..8 {
                    if rng.random_bool(faults.bit_error_rate.min(1.0)) {
                        b ^= 1 << bit;
                    }
                }
            }
            out.push(b);
        }
        out
    }

    fn pump_to_device(self: &Arc<Self>, pty: &Pty, stop: &AtomicBool) -> io::Result<()> {
        let mut buf = [0u8; 256];
        let mut line_free = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let n = pty.read(&mut buf, POLL)?;
            if n == 0 {
                continue;
            }
            let arrived = Instant::now();
            let mut bytes = &buf[..n];
            if let Some(r) = &self.recorder {
                r.write(false, bytes);
            }
            let mut unplug_now = false;
            {
                let mut st = lock(&self.state);
                if let Some(left) = st.unplug_after_bytes {
                    let left_usize = usize::try_from(left).unwrap_or(usize::MAX);
                    if bytes.len() >= left_usize {
                        bytes = &bytes[..left_usize];
                        unplug_now = true;
                        st.unplug_after_bytes = None;
                    } else {
                        st.unplug_after_bytes = Some(left - bytes.len() as u64);
                    }
                }
            }
            let faults = self.faults();
            let delay = Duration::from_millis(faults.delay_ms);
            for chunk in bytes.chunks(CHUNK) {
                if let Some(baud) = faults.baud.filter(|b| *b > 0) {
                    let start = line_free.max(arrived);
                    line_free = start + byte_time(baud, chunk.len());
                    sleep_until(line_free.max(arrived + delay));
                } else if !delay.is_zero() {
                    sleep_until(arrived + delay);
                }
                let data = self.corrupt(chunk, &faults, false);
                let reply = lock(&self.model).on_bytes(&data, Instant::now());
                if !reply.is_empty() {
                    self.send(&reply);
                }
            }
            if unplug_now {
                self.unplug_from_inside(stop);
                break;
            }
        }
        Ok(())
    }

    fn pump_to_host(&self, pty: &Pty, stop: &AtomicBool) -> io::Result<()> {
        let mut line_free = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let chunk: Vec<u8> = {
                let mut q = lock(&self.outbox);
                if q.is_empty() {
                    q = self
                        .ready
                        .wait_timeout(q, POLL)
                        .map(|(q, _)| q)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                let n = q.len().min(CHUNK);
                q.drain(..n).collect()
            };
            if chunk.is_empty() {
                continue;
            }
            let queued = Instant::now();
            let faults = self.faults();
            let delay = Duration::from_millis(faults.delay_ms);
            if let Some(baud) = faults.baud.filter(|b| *b > 0) {
                let start = line_free.max(queued);
                line_free = start + byte_time(baud, chunk.len());
                sleep_until(line_free.max(queued + delay));
            } else if !delay.is_zero() {
                sleep_until(queued + delay);
            }
            let data = self.corrupt(&chunk, &faults, true);
            if let Some(r) = &self.recorder {
                r.write(true, &data);
            }
            let mut rest = &data[..];
            while !rest.is_empty() && !stop.load(Ordering::SeqCst) {
                let n = pty.write(rest, POLL)?;
                rest = &rest[n..];
            }
        }
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(&lock(&self.state).name));
    }
}

/// Ten bits a byte: start, 8 data (or 7 data + parity), stop.
pub fn byte_time(baud: u32, bytes: usize) -> Duration {
    Duration::from_nanos(bytes as u64 * 10 * 1_000_000_000 / u64::from(baud))
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = link.with_extension("new-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// `--record DIR`: `<device>.host-to-device.hex` and `<device>.device-to-host.hex`,
/// one line per chunk: seconds since start, Unix time in ms, the bytes in hex.
struct Recorder {
    start: Instant,
    files: [Mutex<File>; 2],
}

impl Recorder {
    fn create(dir: &Path, device: &str) -> io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let open = |dir_name: &str| File::create(dir.join(format!("{device}.{dir_name}.hex")));
        Ok(Recorder {
            start: Instant::now(),
            files: [
                Mutex::new(open("host-to-device")?),
                Mutex::new(open("device-to-host")?),
            ],
        })
    }

    fn write(&self, to_host: bool, bytes: &[u8]) {
        let t = self.start.elapsed();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = lock(&self.files[usize::from(to_host)]);
        let _ = writeln!(
            f,
            "{}.{:06} {unix_ms} {hex}",
            t.as_secs(),
            t.subsec_micros()
        );
    }
}
