//! Scale driver (Toledo 8217-style).
//!
//! A sale may only use a stable weight: [`Scale::read_stable`] polls until
//! the scale reports the same valid weight several times in a row. The
//! protocol has no checksum, so agreement between consecutive replies is also
//! what keeps line noise from turning into a wrong weight: a corrupted reply
//! breaks the run instead of ending it.

use std::time::Duration;

use proto::device::Weight;
use proto::device::scale::{self, Command, Reply};
use tokio::time::Instant;

use super::{Connect, ErrorKind, Event, Port, Result, lifecycle};

pub struct Scale<C: Connect> {
    port: Port<C>,
    /// How many identical replies in a row make a reading.
    pub confirmations: usize,
    /// Wait for one reply before asking again.
    pub reply_timeout: Duration,
    /// Pause between polls while the load is moving.
    pub poll_interval: Duration,
    /// Give up if no stable weight comes within this.
    pub stable_timeout: Duration,
}

impl<C: Connect> Scale<C> {
    pub fn new(connect: C) -> Self {
        Scale {
            port: Port::new("scale", connect),
            confirmations: 3,
            reply_timeout: Duration::from_millis(250),
            poll_interval: Duration::from_millis(50),
            stable_timeout: Duration::from_secs(5),
        }
    }

    lifecycle!();

    pub async fn enable(&mut self) -> Result<()> {
        self.port.enable()?;
        self.port.ensure_connected().await?;
        self.port.flush_input(Duration::from_millis(20)).await
    }

    async fn ask(&mut self) -> Result<Reply> {
        self.port.ensure_connected().await?;
        self.port.clear_input();
        self.port.write_all(&[Command::Weigh.byte()]).await?;
        let deadline = Instant::now() + self.reply_timeout;
        self.port
            .read_item(scale::decode_reply, Some(deadline))
            .await
    }

    /// The next stable weight; `OverCapacity`, `UnderZero`, or `Timeout` when
    /// the load does not settle (or the line is too noisy) in time.
    pub async fn read_stable(&mut self) -> Result<Weight> {
        let deadline = Instant::now() + self.stable_timeout;
        let mut last: Option<Reply> = None;
        let mut run = 0;
        loop {
            if Instant::now() >= deadline {
                return Err(self.port.error(ErrorKind::Timeout, "no stable weight"));
            }
            let reply = match self.ask().await {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::Timeout => {
                    last = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if last == Some(reply) {
                run += 1;
            } else {
                last = Some(reply);
                run = 1;
            }
            let moving = matches!(reply, Reply::Status(s) if s.motion());
            if run >= self.confirmations && !moving {
                return match reply {
                    Reply::Weight(w) => {
                        self.port.emit(Event::StableWeight(w));
                        Ok(w)
                    }
                    Reply::Status(s) if s.over_capacity() => {
                        Err(self.port.error(ErrorKind::OverCapacity, "over capacity"))
                    }
                    Reply::Status(s) if s.under_zero() => {
                        Err(self.port.error(ErrorKind::UnderZero, "under zero"))
                    }
                    Reply::Status(_) => Err(self
                        .port
                        .error(ErrorKind::Failure, "scale reports an error")),
                };
            }
            if moving {
                tokio::time::sleep(self.poll_interval).await;
            }
        }
    }

    async fn command_then_zero(&mut self, cmd: Command, what: &str) -> Result<()> {
        self.read_stable().await?;
        self.port.write_all(&[cmd.byte()]).await?;
        let w = self.read_stable().await?;
        if w != Weight::ZERO {
            return Err(self.port.error(
                ErrorKind::Failure,
                format!("the scale refused to {what} (it shows {w})"),
            ));
        }
        Ok(())
    }

    /// Tares the container on the platter; the scale then shows net weight.
    pub async fn tare(&mut self) -> Result<()> {
        self.command_then_zero(Command::Tare, "tare").await
    }

    /// Sets zero (only close to zero: ±2 % of capacity).
    pub async fn zero(&mut self) -> Result<()> {
        self.command_then_zero(Command::Zero, "zero").await
    }

    pub async fn clear_tare(&mut self) -> Result<()> {
        self.port.ensure_connected().await?;
        self.port.write_all(&[Command::ClearTare.byte()]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Once;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A scripted scale answering each `W` with the next reply.
    async fn scripted(replies: Vec<&'static [u8]>) -> Scale<Once<tokio::io::DuplexStream>> {
        let (host, mut dev) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            for r in replies {
                let mut b = [0u8; 1];
                if dev.read_exact(&mut b).await.is_err() {
                    return;
                }
                assert_eq!(&b, b"W");
                dev.write_all(r).await.unwrap();
            }
            let mut sink = vec![];
            let _ = dev.read_to_end(&mut sink).await;
        });
        let mut s = Scale::new(Once::new(host));
        s.open();
        s.claim(Duration::from_secs(1)).await.unwrap();
        s.port.enable().unwrap();
        s
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_motion_to_stop_and_for_agreement() {
        let mut s = scripted(vec![
            b"\x02?A\r",
            b"\x02?A\r",
            b"\x0200.350\r",
            b"\x0200.355\r",
            b"\x0200.355\r",
            b"junk\x0200.355\r",
        ])
        .await;
        assert_eq!(s.read_stable().await.unwrap().grams(), 355);
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupt_reply_breaks_the_run() {
        let mut s = scripted(vec![
            b"\x0201.234\r",
            b"\x0201.634\r", // one flipped bit
            b"\x0201.234\r",
            b"\x0201.234\r",
            b"\x0201.234\r",
        ])
        .await;
        assert_eq!(s.read_stable().await.unwrap().grams(), 1234);
    }

    #[tokio::test(start_paused = true)]
    async fn over_capacity_and_under_zero_are_refused() {
        let mut s = scripted(vec![b"\x02?B\r"; 3]).await;
        assert_eq!(
            s.read_stable().await.unwrap_err().kind(),
            ErrorKind::OverCapacity
        );
        let mut s = scripted(vec![b"\x02?D\r"; 3]).await;
        assert_eq!(
            s.read_stable().await.unwrap_err().kind(),
            ErrorKind::UnderZero
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let mut s = scripted(vec![]).await;
        s.stable_timeout = Duration::from_secs(2);
        assert_eq!(
            s.read_stable().await.unwrap_err().kind(),
            ErrorKind::Timeout
        );
    }
}
