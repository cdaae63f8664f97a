//! Supervision of the gateway's background tasks. A task that panics or
//! fails is logged with its cause, marked down in the [`Health`] registry
//! (which `/readyz` and `/metrics` read), and started again after a short
//! backoff; it is marked up again once the new run says it is ready. A task
//! that returns `Ok` has finished on purpose (shutdown, or what it served is
//! gone) and leaves the registry.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::Serialize;
use tokio::sync::watch;

/// First wait before a restart; doubled after each quick failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A run that lasted this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// One supervised component as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentState {
    pub up: bool,
    /// Times it was started again after a failure.
    pub restarts: u64,
    /// Why it last went down (the panic message or the error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// The supervised components of one gateway, shared by its handles.
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<&'static str, ComponentState>>>,
}

impl Health {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, ComponentState>) -> R) -> R {
        // Nothing panics while holding this lock; recover anyway rather than
        // let readiness itself fail.
        let mut map = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut map)
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, ComponentState> {
        self.with(|m| m.clone())
    }

    /// Components that are down now.
    pub fn down(&self) -> Vec<&'static str> {
        self.with(|m| {
            m.iter()
                .filter(|(_, s)| !s.up)
                .map(|(name, _)| *name)
                .collect()
        })
    }

    pub fn is_up(&self, name: &str) -> Option<bool> {
        self.with(|m| m.get(name).map(|s| s.up))
    }

    /// Sets a component that is not a task of its own (a scheduled job):
    /// up or down, with why it went down; registered on first report.
    pub fn report(&self, name: &'static str, up: bool, why: Option<String>) {
        self.with(|m| {
            let s = m.entry(name).or_insert(ComponentState {
                up: true,
                restarts: 0,
                last_failure: None,
            });
            s.up = up;
            if why.is_some() {
                s.last_failure = why;
            }
        });
    }

    /// Drops a component reported with [`Health::report`].
    pub fn remove(&self, name: &'static str) {
        self.finished(name);
    }

    fn register(&self, name: &'static str) {
        self.with(|m| {
            m.insert(
                name,
                ComponentState {
                    up: true,
                    restarts: 0,
                    last_failure: None,
                },
            )
        });
    }

    fn set_up(&self, name: &'static str) {
        self.with(|m| {
            if let Some(s) = m.get_mut(name) {
                s.up = true;
            }
        });
    }

    fn set_down(&self, name: &'static str, why: String) {
        self.with(|m| {
            if let Some(s) = m.get_mut(name) {
                s.up = false;
                s.last_failure = Some(why);
            }
        });
    }

    fn restarted(&self, name: &'static str) {
        self.with(|m| {
            if let Some(s) = m.get_mut(name) {
                s.restarts += 1;
            }
        });
    }

    fn finished(&self, name: &'static str) {
        self.with(|m| m.remove(name));
    }
}

/// Handed to each run of a task: call [`Up::ready`] once it is running
/// (after its connection is open, say), so readiness turns green only then.
pub struct Up {
    health: Health,
    name: &'static str,
}

impl Up {
    pub fn ready(&self) {
        self.health.set_up(self.name);
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `make(up)` under supervision as component `name`: again after a
/// panic or an `Err` (backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]), never
/// once `closing` is true. The component counts as up from here until its
/// first failure. Must be called inside the tokio runtime.
pub fn spawn<F, Fut>(
    health: &Health,
    name: &'static str,
    closing: Option<watch::Receiver<bool>>,
    mut make: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Up) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let health = health.clone();
    health.register(name);
    tokio::spawn(async move {
        let mut closing = closing;
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let up = Up {
                health: health.clone(),
                name,
            };
            let why = match AssertUnwindSafe(make(up)).catch_unwind().await {
                Ok(Ok(())) => {
                    tracing::debug!(component = name, "background task finished");
                    health.finished(name);
                    return;
                }
                Ok(Err(e)) => format!("failed: {e:#}"),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            let stopping = closing.as_ref().is_some_and(|c| *c.borrow());
            if started.elapsed() >= HEALTHY_RUN {
                backoff = BACKOFF_MIN;
            }
            health.set_down(name, why.clone());
            if stopping {
                tracing::error!(component = name, cause = %why, "background task stopped while shutting down");
                health.finished(name);
                return;
            }
            tracing::error!(
                component = name,
                cause = %why,
                restart_in_ms = backoff.as_millis() as u64,
                "background task died; restarting it"
            );
            let wait = tokio::time::sleep(backoff);
            match closing.as_mut() {
                Some(c) => {
                    tokio::select! {
                        _ = wait => {}
                        _ = c.wait_for(|v| *v) => {
                            health.finished(name);
                            return;
                        }
                    }
                }
                None => wait.await,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            health.restarted(name);
            tracing::info!(component = name, "background task restarting");
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Captures log lines of the current thread's subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_that_panics_is_logged_marked_down_and_restarted() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let health = Health::default();
        let runs = Arc::new(AtomicU32::new(0));
        // The first run panics; the second waits for a go before it says it
        // is ready, so the down state can be seen; then it runs on.
        let (go_tx, go_rx) = watch::channel(false);
        let counted = Arc::clone(&runs);
        let task = spawn(&health, "flaky", None, move |up| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let mut go = go_rx.clone();
            async move {
                if n == 0 {
                    panic!("the first run breaks");
                }
                let _ = go.wait_for(|g| *g).await;
                up.ready();
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        wait_until("the second run", || runs.load(Ordering::SeqCst) == 2).await;
        assert_eq!(health.down(), vec!["flaky"]);
        let state = &health.snapshot()["flaky"];
        assert_eq!(state.restarts, 1);
        assert_eq!(
            state.last_failure.as_deref(),
            Some("panicked: the first run breaks")
        );
        let log = logs.text();
        assert!(
            log.contains("background task died") && log.contains("the first run breaks"),
            "{log}"
        );
        go_tx.send(true).unwrap();
        wait_until("up again", || health.is_up("flaky") == Some(true)).await;
        assert!(health.down().is_empty());
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn errors_restart_too_and_shutdown_stops_restarting() {
        let health = Health::default();
        let (close_tx, close_rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let task = spawn(&health, "failing", Some(close_rx), move |_up| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err(anyhow::anyhow!("cannot open its connection")) }
        });
        wait_until("two restarts", || runs.load(Ordering::SeqCst) >= 3).await;
        assert_eq!(health.down(), vec!["failing"]);
        close_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(health.snapshot().is_empty(), "a stopped task leaves");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_that_returns_ok_is_not_restarted() {
        let health = Health::default();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        spawn(&health, "done", None, move |_up| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await
        .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(health.snapshot().is_empty());
    }
}
