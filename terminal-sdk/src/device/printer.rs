//! Receipt printer driver (ESC/POS).
//!
//! Every receipt is a job with an id. The job ends with a process-id request
//! (`GS ( H`), which the printer answers only once it has really printed
//! everything before it; so "printed" means the printer said so, not that the
//! bytes left the port. Status (`DLE EOT`) is asked before a job and, if the
//! answer is late, after all of its bytes have been sent — never in the middle
//! of one. A job that fails (paper end, cover open, unplugged) stays pending:
//! [`Printer::resume`] prints it again once the printer is back, and no new
//! job starts before that, so a receipt is never printed twice in full.

use std::time::Duration;

use proto::device::escpos::{self, ProcessId, Receipt, Reply, Status, StatusKind};
use tokio::time::Instant;

use super::{Connect, ErrorKind, Event, Port, Result, State, lifecycle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub u64);

/// What the printer reported about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrinterHealth {
    pub offline: bool,
    pub cover_open: bool,
    pub paper_end: bool,
    pub paper_near_end: bool,
    pub cutter_error: bool,
    pub drawer_open: bool,
}

impl PrinterHealth {
    /// The error that keeps it from printing, if any.
    pub fn blocking_error(&self) -> Option<(ErrorKind, &'static str)> {
        if self.cover_open {
            Some((ErrorKind::CoverOpen, "the printer cover is open"))
        } else if self.paper_end {
            Some((ErrorKind::PaperEmpty, "the printer is out of paper"))
        } else if self.cutter_error {
            Some((ErrorKind::CutterError, "the cutter is jammed"))
        } else if self.offline {
            Some((ErrorKind::Offline, "the printer is offline"))
        } else {
            None
        }
    }
}

struct Job {
    id: JobId,
    bytes: Vec<u8>,
    /// Some of it may be on paper already.
    attempted: bool,
}

pub struct Printer<C: Connect> {
    port: Port<C>,
    next_job: u64,
    pending: Option<Job>,
    /// How long to wait for one status byte.
    pub status_timeout: Duration,
    /// How long a job may take to print before it counts as timed out.
    pub job_timeout: Duration,
}

impl<C: Connect> Printer<C> {
    pub fn new(connect: C) -> Self {
        Printer {
            port: Port::new("printer", connect),
            next_job: 1,
            pending: None,
            status_timeout: Duration::from_millis(500),
            job_timeout: Duration::from_secs(20),
        }
    }

    lifecycle!();

    /// Enables the printer: initialises it and checks it can print.
    pub async fn enable(&mut self) -> Result<PrinterHealth> {
        self.port.enable()?;
        self.port.write_all(&[escpos::ESC, b'@']).await?;
        self.health().await
    }

    /// The job that failed and waits for [`Printer::resume`].
    pub fn pending_job(&self) -> Option<JobId> {
        self.pending.as_ref().map(|j| j.id)
    }

    /// Whether any byte of the pending job was sent (then some of it may be
    /// on paper); `false` when it failed before that, or none is pending.
    pub fn pending_sent(&self) -> bool {
        self.pending.as_ref().is_some_and(|j| j.attempted)
    }

    /// Whether the line to the printer is open.
    pub fn is_connected(&self) -> bool {
        self.port.is_connected()
    }

    /// Gives up on the pending job (the cashier decided not to reprint).
    pub fn discard_pending(&mut self) -> Option<JobId> {
        self.pending.take().map(|j| j.id)
    }

    async fn status(&mut self, kind: StatusKind) -> Result<Status> {
        self.port.write_all(&escpos::status_request(kind)).await?;
        let deadline = Instant::now() + self.status_timeout;
        loop {
            match self
                .port
                .read_item(escpos::decode_reply, Some(deadline))
                .await
            {
                Ok(Reply::Status(b)) => {
                    if let Some(s) = Status::parse(kind, b) {
                        return Ok(s);
                    }
                }
                // A late answer to an earlier job: already accounted for.
                Ok(Reply::ProcessId(_)) => {}
                Err(e) if e.kind == ErrorKind::Timeout => {
                    // It may have lost power, or be back under a new node:
                    // the next request opens the port again.
                    self.port.drop_line("no answer to a status request");
                    return Err(self.port.error(
                        ErrorKind::Offline,
                        "the printer does not answer status requests",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the printer for its four real-time statuses.
    pub async fn health(&mut self) -> Result<PrinterHealth> {
        if self.port.ensure_connected().await? {
            // Back after a power cycle or a replug: whatever the printer
            // holds of a job cut short is cleared first.
            self.port.write_all(&[escpos::ESC, b'@']).await?;
        }
        let mut h = PrinterHealth::default();
        for kind in [
            StatusKind::Printer,
            StatusKind::OfflineCause,
            StatusKind::ErrorCause,
            StatusKind::PaperSensor,
        ] {
            match self.status(kind).await? {
                Status::Printer(s) => {
                    h.offline = s.offline;
                    h.drawer_open = s.drawer_open;
                }
                Status::OfflineCause(s) => {
                    h.cover_open = s.cover_open;
                    h.paper_end |= s.paper_end_stop;
                    h.cutter_error |= s.error && !s.cover_open && !s.paper_end_stop;
                }
                Status::ErrorCause(s) => h.cutter_error |= s.cutter_error,
                Status::PaperSensor(s) => {
                    h.paper_end |= s.paper_end;
                    h.paper_near_end = s.near_end;
                }
            }
        }
        Ok(h)
    }

    async fn check_ready(&mut self) -> Result<PrinterHealth> {
        let h = self.health().await?;
        if let Some((kind, why)) = h.blocking_error() {
            self.port.set_state(State::Error);
            return Err(self.port.error(kind, why));
        }
        Ok(h)
    }

    /// Prints a receipt as a new job. Refused with `Busy` while a failed job
    /// is pending; on failure the job becomes pending.
    pub async fn print(&mut self, receipt: &Receipt) -> Result<JobId> {
        if let Some(job) = &self.pending {
            return Err(self.port.error(
                ErrorKind::Busy,
                format!("job {} failed and awaits resume or discard", job.id.0),
            ));
        }
        self.port.ensure_connected().await?;
        let id = JobId(self.next_job);
        self.next_job += 1;
        let bytes = receipt
            .clone()
            .process_id(ProcessId::for_job(id.0))
            .into_bytes();
        self.pending = Some(Job {
            id,
            bytes,
            attempted: false,
        });
        self.run_pending().await
    }

    /// Prints the pending job again after the cause was fixed (paper loaded,
    /// cover closed, device plugged back in). `Ok(None)` if nothing was pending.
    pub async fn resume(&mut self) -> Result<Option<JobId>> {
        if self.pending.is_none() {
            return Ok(None);
        }
        self.run_pending().await.map(Some)
    }

    async fn run_pending(&mut self) -> Result<JobId> {
        let Some(job) = self.pending.as_ref() else {
            return Err(self.port.error(ErrorKind::Failure, "no job"));
        };
        let (id, attempted) = (job.id, job.attempted);
        let mut bytes = vec![];
        if attempted {
            // Whatever the failed attempt left on the paper is fed out and
            // cut off first, so the reprint is one clean receipt.
            bytes.extend([
                escpos::ESC,
                b'@',
                escpos::ESC,
                b'd',
                4,
                escpos::GS,
                b'V',
                66,
                0,
            ]);
        }
        bytes.extend(&job.bytes);
        self.port.set_state(State::Busy);
        let result = self.send_job(id, &bytes).await;
        match &result {
            Ok(()) => {
                self.pending = None;
                self.port.set_state(State::Idle);
                self.port.emit(Event::JobPrinted(id));
            }
            Err(e) => {
                self.port.set_state(State::Error);
                self.port.emit(Event::JobFailed {
                    job: id,
                    kind: e.kind,
                });
            }
        }
        result.map(|()| id)
    }

    async fn send_job(&mut self, id: JobId, bytes: &[u8]) -> Result<()> {
        self.check_ready().await?;
        if let Some(job) = self.pending.as_mut() {
            job.attempted = true;
        }
        self.port.write_all(bytes).await?;
        let want = ProcessId::for_job(id.0);
        let deadline = Instant::now() + self.job_timeout;
        // Short waits first; if the answer is late, ask why (all job bytes
        // are out, so status requests no longer land inside the job).
        let mut wait = Duration::from_millis(300);
        loop {
            let until = (Instant::now() + wait).min(deadline);
            match self.port.read_item(escpos::decode_reply, Some(until)).await {
                Ok(Reply::ProcessId(got)) if got == want => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::Timeout => {
                    if Instant::now() >= deadline {
                        return Err(self
                            .port
                            .error(ErrorKind::Timeout, format!("job {} did not finish", id.0)));
                    }
                    self.check_ready().await?;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Kicks the cash drawer open (through the printer's drawer port).
    pub async fn open_drawer(&mut self) -> Result<()> {
        self.port.ensure_connected().await?;
        self.port.write_all(&escpos::drawer_kick()).await
    }

    /// Whether the drawer is open, from the printer's drawer sensor.
    pub async fn drawer_open(&mut self) -> Result<bool> {
        Ok(self.health().await?.drawer_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Once;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    async fn expect(dev: &mut DuplexStream, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        dev.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want);
    }

    async fn answer_health(dev: &mut DuplexStream, replies: [u8; 4]) {
        for (n, reply) in (1..=4).zip(replies) {
            expect(dev, &[0x10, 0x04, n]).await;
            dev.write_all(&[reply]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_job_is_done_when_the_printer_says_so() {
        let (host, mut dev) = tokio::io::duplex(4096);
        let mut p = Printer::new(Once::new(host));
        p.open();
        p.claim(Duration::from_secs(1)).await.unwrap();
        let script = tokio::spawn(async move {
            expect(&mut dev, &[0x1B, b'@']).await;
            answer_health(&mut dev, [0x12; 4]).await;
            answer_health(&mut dev, [0x12; 4]).await;
            let job = Receipt::new()
                .line("hi")
                .cut()
                .process_id(ProcessId::for_job(1));
            expect(&mut dev, job.as_bytes()).await;
            dev.write_all(&escpos::process_id_response(ProcessId::for_job(1)))
                .await
                .unwrap();
            dev
        });
        p.enable().await.unwrap();
        let id = p.print(&Receipt::new().line("hi").cut()).await.unwrap();
        assert_eq!(id, JobId(1));
        assert_eq!(p.pending_job(), None);
        script.await.unwrap();
    }

    #[tokio::test]
    async fn paper_end_is_a_typed_error_and_the_job_stays_pending() {
        let (host, mut dev) = tokio::io::duplex(4096);
        let mut p = Printer::new(Once::new(host));
        p.open();
        p.claim(Duration::from_secs(1)).await.unwrap();
        let script = tokio::spawn(async move {
            expect(&mut dev, &[0x1B, b'@']).await;
            answer_health(&mut dev, [0x12; 4]).await;
            // Before the job: offline, paper-end stop, paper sensor empty.
            answer_health(&mut dev, [0x1A, 0x32, 0x12, 0x7E]).await;
            dev
        });
        p.enable().await.unwrap();
        let err = p.print(&Receipt::new().line("x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PaperEmpty);
        assert_eq!(p.pending_job(), Some(JobId(1)));
        assert_eq!(
            p.print(&Receipt::new()).await.unwrap_err().kind(),
            ErrorKind::Busy
        );
        let _dev = script.await.unwrap();
    }

    #[tokio::test]
    async fn not_enabled_is_refused() {
        let (host, _dev) = tokio::io::duplex(64);
        let mut p = Printer::new(Once::new(host));
        assert_eq!(
            p.print(&Receipt::new()).await.unwrap_err().kind(),
            ErrorKind::NotReady
        );
        assert_eq!(
            p.claim(Duration::ZERO).await.unwrap_err().kind(),
            ErrorKind::NotReady
        );
    }
}
