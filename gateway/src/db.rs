//! The database: one pool over SQLite or PostgreSQL, migrations, and the
//! write transaction every use case runs in.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::clock::Clock;

mod backup;
mod reverse;
pub use reverse::Loss;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which engine a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!("database URL must start with sqlite: or postgres:, got {url:?}")
        }
    }
}

/// A write transaction. On SQLite it also holds the process's write gate, so
/// writers queue in memory instead of failing with SQLITE_BUSY.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Transaction<'static, Any>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// A handle on the database, cloned by every request: one `Arc`, so a clone
/// is one reference count (not a copy of the SQLite URL and five more).
#[derive(Clone)]
pub struct Db(Arc<DbParts>);

impl std::ops::Deref for Db {
    type Target = DbParts;
    fn deref(&self) -> &DbParts {
        &self.0
    }
}

/// The parts of [`Db`].
pub struct DbParts {
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite only: the file and its in-process write gate.
    sqlite: Option<SqliteFile>,
    /// The supervised background tasks of this gateway (see `supervise`).
    health: crate::supervise::Health,
    /// The scheduled jobs of this gateway as this process sees them.
    jobs: crate::job_registry::Registry,
    /// Where every use case reads "now" (system, or manual in tests).
    clock: Clock,
}

impl Db {
    /// Connects, creating the SQLite file (and its folder) on first use;
    /// the gateway's time is the system clock.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_clock(url, Clock::system()).await
    }

    /// Connects with the clock every use case on this handle reads "now"
    /// from.
    pub async fn connect_with_clock(url: &str, clock: Clock) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                                 PRAGMA wal_autocheckpoint = 4000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
            Backend::Postgres => {
                let port = sqlx::postgres::PgConnectOptions::from_str(&url)
                    .map(|o| o.get_port())
                    .unwrap_or(5432);
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(move |_, _| {
                        Box::pin(async move {
                            nodelay_to(port);
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
        }
        .with_context(|| format!("connecting to the {backend:?} database"))?;
        let sqlite = (backend == Backend::Sqlite).then(|| SqliteFile {
            url: url.clone(),
            gate: Arc::new(Mutex::new(())),
        });
        Ok(Db(Arc::new(DbParts {
            pool,
            backend,
            sqlite,
            health: crate::supervise::Health::default(),
            jobs: crate::job_registry::Registry::default(),
            clock,
        })))
    }

    /// The clock this gateway reads the time from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// µs since the epoch, by [`Db::clock`].
    pub fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate_up(&self) -> anyhow::Result<()> {
        self.migrator()
            .run(&self.pool)
            .await
            .context("applying migrations")
    }

    /// Reverts the newest applied migration.
    pub async fn migrate_down(&self) -> anyhow::Result<Option<i64>> {
        let applied = self.applied_after(0).await?;
        let Some(&(newest, _)) = applied.first() else {
            return Ok(None);
        };
        self.migrate_down_to(applied.get(1).map_or(0, |(v, _)| *v))
            .await?;
        Ok(Some(newest))
    }

    pub async fn migration_status(&self) -> anyhow::Result<Vec<MigrationState>> {
        use sqlx::migrate::Migrate;
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table("_sqlx_migrations").await?;
        let applied = conn.list_applied_migrations("_sqlx_migrations").await?;
        Ok(self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| {
                let found = applied.iter().find(|a| a.version == m.version);
                MigrationState {
                    version: m.version,
                    description: m.description.to_string(),
                    applied: found.is_some(),
                    checksum: hex_prefix(&m.checksum),
                    unchanged: found.map(|a| a.checksum.as_ref() == m.checksum.as_ref()),
                }
            })
            .collect())
    }

    /// What `gateway check` reports of the schema: the migrations this
    /// binary has that the database lacks, the applied ones without a down
    /// script (or with an empty one), the applied ones this binary does not
    /// know, and the applied ones whose script changed since.
    pub async fn migration_check(&self) -> anyhow::Result<MigrationCheck> {
        use sqlx::migrate::Migrate;
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table("_sqlx_migrations").await?;
        let applied = conn.list_applied_migrations("_sqlx_migrations").await?;
        let ups: Vec<_> = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .collect();
        let mut out = MigrationCheck::default();
        for m in &ups {
            match applied.iter().find(|a| a.version == m.version) {
                None => out.pending.push((m.version, m.description.to_string())),
                Some(a) => {
                    if a.checksum.as_ref() != m.checksum.as_ref() {
                        out.changed.push(m.version);
                    }
                    let down = self.migrator().iter().any(|d| {
                        d.version == m.version
                            && d.migration_type.is_down_migration()
                            && !d.sql.as_str().trim().is_empty()
                    });
                    if !down {
                        out.irreversible.push(m.version);
                    }
                }
            }
        }
        out.unknown = applied
            .iter()
            .map(|a| a.version)
            .filter(|v| !ups.iter().any(|m| m.version == *v))
            .collect();
        out.applied = applied.len();
        Ok(out)
    }

    /// The database server's own time, µs since the epoch (SQLite reads the
    /// clock of this machine, PostgreSQL its server's).
    pub async fn server_time_micros(&self) -> Result<i64, sqlx::Error> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT CAST(strftime('%s','now') AS INTEGER) * 1000000 \
                 + CAST(substr(strftime('%f','now'), 4) AS INTEGER) * 1000"
            }
            Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
        };
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
    }

    /// Begins a write transaction; see [`WriteTx`].
    pub async fn write(&self) -> Result<WriteTx, sqlx::Error> {
        let gate = match &self.sqlite {
            Some(f) => Some(f.gate.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _gate: gate })
    }

    /// SQLite only: the file, for a writer that keeps a connection of its
    /// own and queues on the same gate as [`Db::write`].
    pub fn sqlite_file(&self) -> Option<&SqliteFile> {
        self.sqlite.as_ref()
    }

    /// The supervised background tasks, for readiness and metrics.
    pub fn jobs(&self) -> &crate::job_registry::Registry {
        &self.jobs
    }

    pub fn health(&self) -> &crate::supervise::Health {
        &self.health
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Turns Nagle's algorithm off on this process's TCP connections to the
/// database server's `port`. sqlx leaves it on, and a statement larger than
/// a few kilobytes (the order batch's multi-row INSERTs) then waits for the
/// server's delayed ACK, some 40 ms, before its last bytes leave. sqlx does
/// not hand out its socket, so the new connection is found among the
/// process's descriptors; setting the option again on an older one (or on
/// another socket to the same port) is harmless.
#[cfg(target_os = "linux")]
fn nodelay_to(port: u16) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if !std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        // SAFETY: `addr` and `len` are valid for writes of a sockaddr_storage;
        // a descriptor closed meanwhile makes the calls fail with EBADF.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let peer =
            unsafe { libc::getpeername(fd, (&raw mut addr).cast::<libc::sockaddr>(), &mut len) };
        if peer != 0 {
            continue;
        }
        let peer_port = match i32::from(addr.ss_family) {
            // SAFETY: the family says which sockaddr the storage holds.
            libc::AF_INET => {
                u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port })
            }
            libc::AF_INET6 => {
                u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port })
            }
            _ => continue,
        };
        if peer_port != port {
            continue;
        }
        let one: libc::c_int = 1;
        // SAFETY: a c_int option value of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const one).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn nodelay_to(_port: u16) {}

/// A SQLite database as this process writes it: one writer at a time.
#[derive(Clone)]
pub struct SqliteFile {
    /// The connection URL (file created on first use).
    pub url: String,
    /// Held by every write transaction of this process.
    pub gate: Arc<Mutex<()>>,
}

#[derive(Debug, Clone)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
    /// The start of this binary's script's SHA-384, in hex.
    pub checksum: String,
    /// Applied: whether the script applied is this binary's (`None` when pending).
    pub unchanged: Option<bool>,
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// See [`Db::migration_check`].
#[derive(Debug, Clone, Default)]
pub struct MigrationCheck {
    /// How many migrations the database has applied.
    pub applied: usize,
    /// Not applied yet: version and name.
    pub pending: Vec<(i64, String)>,
    /// Applied, with no (or an empty) down script.
    pub irreversible: Vec<i64>,
    /// Applied, but not among this binary's migrations (a newer binary ran).
    pub unknown: Vec<i64>,
    /// Applied, but the script differs from this binary's.
    pub changed: Vec<i64>,
}

/// The file of a SQLite database URL (`sqlite://path?…`); `None` for an
/// in-memory database.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Makes sure the folder of a SQLite file exists (made mode 0700) and asks for the file to be
/// created when missing.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let dir = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|_| path != ":memory:" && !path.is_empty()) {
        // Only this user may read it: it holds keys' hashes and payments.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}
