//! What the benchmark binaries (loadgen, paybench, chanbench) share: the
//! runtime they run on, the `--db` choice of backends, and percentiles.

use std::time::Duration;

use crate::Backend;

/// The benchmarks' runtime: multi-threaded, two workers, IO and timers on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The backends of `--db`: `sqlite`, `postgres`, or anything else for both.
pub fn backends(db: &str) -> Vec<Backend> {
    match db {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    }
}

/// The cores this machine offers (1 when it cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A backend's name in the tables: `sqlite` or `postgres`.
pub fn name(b: Backend) -> String {
    format!("{b:?}").to_lowercase()
}

/// The `q` quantile (0.5, 0.99) of sorted latencies, in milliseconds:
/// the sample at index `len × q` (the last one at most); 0 when empty.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}
