//! The agent's background tasks (uploader, catalog, heartbeat) run under
//! [`spawn`]: a task that panics or returns before shutdown is logged with
//! its cause, shown as down in [`Tasks`] (the status API reports it), and
//! started again after a backoff (100 ms doubling to 5 s) until shutdown;
//! at shutdown a task gets 5 s to stop by itself, then it is cut.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a task may take to stop after shutdown is asked.
const GRACE: Duration = Duration::from_secs(5);

/// One task as the status shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskState {
    pub up: bool,
    /// Times it was started again after a failure.
    pub restarts: u64,
    /// Why it last went down.
    pub last_failure: Option<String>,
}

/// Every supervised task by name.
#[derive(Debug, Default, Clone)]
pub struct Tasks(Arc<Mutex<BTreeMap<&'static str, TaskState>>>);

impl Tasks {
    pub fn snapshot(&self) -> BTreeMap<&'static str, TaskState> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// All tasks up.
    pub fn all_up(&self) -> bool {
        self.snapshot().values().all(|t| t.up)
    }

    fn set(&self, name: &'static str, f: impl FnOnce(&mut TaskState)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(name).or_insert(TaskState {
                up: false,
                restarts: 0,
                last_failure: None,
            }));
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// Runs `make()` as task `name` until `closing` turns true, starting it
/// again whenever it panics or ends early. The returned handle ends after
/// shutdown (it never waits on a task that is gone).
pub fn spawn<F, Fut>(
    name: &'static str,
    tasks: &Tasks,
    mut closing: watch::Receiver<bool>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = tasks.clone();
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            tasks.set(name, |t| t.up = true);
            let mut run = tokio::spawn(make());
            let outcome = tokio::select! {
                r = &mut run => r,
                _ = closing.changed() => {
                    // The tasks stop by themselves on `closing`; one that
                    // does not is stopped after a grace period (everything
                    // they do is safe to cut: uploads are idempotent).
                    if tokio::time::timeout(GRACE, &mut run).await.is_err() {
                        run.abort();
                    }
                    return;
                }
            };
            if *closing.borrow() {
                return;
            }
            let why = match outcome {
                Ok(()) => "ended before shutdown".to_owned(),
                Err(e) => panic_text(e),
            };
            tracing::error!(task = name, cause = %why, "agent task failed; restarting in {backoff:?}");
            tasks.set(name, |t| {
                t.up = false;
                t.restarts += 1;
                t.last_failure = Some(why);
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = closing.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_down_and_restarted_until_shutdown() {
        let tasks = Tasks::default();
        let (close, closing) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = spawn("flaky", &tasks, closing, move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("disk on fire");
                }
                std::future::pending::<()>().await;
            }
        });
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = tasks.snapshot()["flaky"].clone();
        assert!(t.up, "restarted: {t:?}");
        assert_eq!(t.restarts, 1);
        assert_eq!(t.last_failure.as_deref(), Some("disk on fire"));
        assert!(tasks.all_up());
        close.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the supervisor ends at shutdown")
            .unwrap();
    }
}
