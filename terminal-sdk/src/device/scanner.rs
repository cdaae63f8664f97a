//! Barcode scanner driver: a stream of classified codes.
//!
//! Input that was waiting before the scanner was enabled is stale (a code
//! scanned for the previous customer) and is dropped; the same code read
//! twice within the debounce window is one scan.

use std::time::Duration;

use proto::device::scanner::{self, Code};
use tokio::time::Instant;

use super::{Connect, Event, Port, Result, lifecycle};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub code: Code,
    /// The code as read, without AIM prefix or terminator.
    pub raw: String,
    pub aim: Option<String>,
}

pub struct Scanner<C: Connect> {
    port: Port<C>,
    pub debounce: Duration,
    last: Option<(String, Instant)>,
}

impl<C: Connect> Scanner<C> {
    pub fn new(connect: C) -> Self {
        Scanner {
            port: Port::new("scanner", connect),
            debounce: Duration::from_millis(500),
            last: None,
        }
    }

    lifecycle!();

    /// Enables the scanner, dropping whatever it sent before.
    pub async fn enable(&mut self) -> Result<()> {
        self.port.enable()?;
        self.port.ensure_connected().await?;
        self.port.flush_input(Duration::from_millis(50)).await?;
        self.last = None;
        Ok(())
    }

    /// The next scan, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<Scanned> {
        self.next_until(None).await
    }

    /// The next scan, or a `Timeout` error after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Scanned> {
        self.next_until(Some(Instant::now() + timeout)).await
    }

    async fn next_until(&mut self, deadline: Option<Instant>) -> Result<Scanned> {
        loop {
            if self.port.ensure_connected().await? {
                self.port.flush_input(Duration::from_millis(50)).await?;
            }
            let scan = self.port.read_item(scanner::decode, deadline).await?;
            let now = Instant::now();
            let repeat = self.last.as_ref().is_some_and(|(code, at)| {
                *code == scan.code && now.duration_since(*at) < self.debounce
            });
            self.last = Some((scan.code.clone(), now));
            if repeat {
                tracing::debug!("double scan ignored");
                continue;
            }
            let scanned = Scanned {
                code: scanner::classify(&scan.code),
                raw: scan.code,
                aim: scan.aim,
            };
            self.port.emit(Event::Scan(scanned.clone()));
            return Ok(scanned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{ErrorKind, Once};
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn stale_input_is_flushed_and_double_scans_debounced() {
        let (host, mut dev) = tokio::io::duplex(1024);
        dev.write_all(b"6901234567892\r").await.unwrap(); // stale
        let mut s = Scanner::new(Once::new(host));
        s.open();
        s.claim(Duration::from_secs(1)).await.unwrap();
        s.enable().await.unwrap();
        dev.write_all(b"134567890123456789\r\n134567890123456789\r\n")
            .await
            .unwrap();
        dev.write_all(b"]E06901234567892\t").await.unwrap();
        let a = s.next().await.unwrap();
        assert!(matches!(a.code, Code::WeChatPay(_)));
        let b = s.next().await.unwrap();
        assert_eq!(b.code, Code::Product("6901234567892".into()));
        assert_eq!(b.aim.as_deref(), Some("E0"));
        // The same code again after the window is a new scan.
        tokio::time::sleep(Duration::from_secs(1)).await;
        dev.write_all(b"6901234567892\r").await.unwrap();
        assert_eq!(s.next().await.unwrap().raw, "6901234567892");
        assert_eq!(
            s.next_within(Duration::from_secs(1))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Timeout
        );
    }
}
