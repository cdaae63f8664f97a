//! What this process knows of its scheduled jobs (`jobs.rs` runs them):
//! kept on the [`crate::db::Db`] handle like the health, read by `gateway
//! jobs`, `/readyz` and `/metrics`. Imports nothing of the gateway, so the
//! database handle can hold it without a cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// A job as this process last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobState {
    pub every_ms: u64,
    /// Shared through a lease (false: this process's own job).
    pub shared: bool,
    /// This process holds its lease (or the job is its own).
    pub holding: bool,
    pub runs_ok: u64,
    pub runs_failed: u64,
    /// Failed runs since the last good one.
    pub failing: u32,
    /// µs since the epoch.
    pub last_started_at: Option<i64>,
    pub last_ended_at: Option<i64>,
    pub last_outcome: Option<&'static str>,
    pub last_error: Option<String>,
    pub next_at: Option<i64>,
}

/// A metric family of [`Registry::render_metrics`]: name, help, type, and
/// the samples of one job (an `outcome` label, or none when empty).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Box<dyn Fn(&JobState) -> Vec<(String, i64)>>,
);

/// The jobs of this process (kept on its [`Db`] handle, like the health).
#[derive(Clone, Default)]
pub struct Registry {
    jobs: Arc<Mutex<BTreeMap<&'static str, JobState>>>,
}

impl Registry {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, JobState>) -> R) -> R {
        f(&mut self.jobs.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, JobState> {
        self.with(|m| m.clone())
    }

    pub(crate) fn update(&self, name: &'static str, f: impl FnOnce(&mut JobState)) {
        self.with(|m| f(m.entry(name).or_default()));
    }

    /// This process's jobs in the Prometheus text format, appended to `out`
    /// (`/metrics`).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let jobs = self.snapshot();
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let secs = |us: Option<i64>| us.unwrap_or(0) / 1_000_000;
        let families: [Family; 6] = [
            (
                "gateway_job_runs_total",
                "Runs of each scheduled job by this process, by outcome.",
                "counter",
                Box::new(move |s| {
                    vec![
                        ("ok".to_owned(), n(s.runs_ok)),
                        ("failed".to_owned(), n(s.runs_failed)),
                    ]
                }),
            ),
            (
                "gateway_job_failing",
                "Failed runs of each job since its last good one (this process).",
                "gauge",
                Box::new(|s| vec![(String::new(), i64::from(s.failing))]),
            ),
            (
                "gateway_job_holding",
                "1 when this process holds the job's lease (or the job is its own).",
                "gauge",
                Box::new(|s| vec![(String::new(), i64::from(s.holding))]),
            ),
            (
                "gateway_job_last_run_timestamp_seconds",
                "When this process last finished a run of the job (0: not yet).",
                "gauge",
                Box::new(move |s| vec![(String::new(), secs(s.last_ended_at))]),
            ),
            (
                "gateway_job_last_run_duration_milliseconds",
                "How long this process's last run of the job took.",
                "gauge",
                Box::new(|s| {
                    let d = match (s.last_started_at, s.last_ended_at) {
                        (Some(a), Some(b)) => b.saturating_sub(a) / 1000,
                        _ => 0,
                    };
                    vec![(String::new(), d)]
                }),
            ),
            (
                "gateway_job_next_run_timestamp_seconds",
                "When this process will next run the job, or try to take it over.",
                "gauge",
                Box::new(move |s| vec![(String::new(), secs(s.next_at))]),
            ),
        ];
        for (name, help, kind, samples) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (job, state) in &jobs {
                for (outcome, v) in samples(state) {
                    if outcome.is_empty() {
                        let _ = writeln!(out, "{name}{{job=\"{job}\"}} {v}");
                    } else {
                        let _ = writeln!(out, "{name}{{job=\"{job}\",outcome=\"{outcome}\"}} {v}");
                    }
                }
            }
        }
    }
}
