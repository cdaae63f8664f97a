//! `gateway check`: the go-live preflight. Each row answers one question of
//! the release checklist with ✔ or ✘ and one line of why: the configuration
//! and each of its sections, demo mode, the data directory (owner and
//! permissions), the database (reachable, migrations current and
//! reversible, its clock), every configured outside service (DNS, TCP, TLS,
//! an HTTP answer), the secrets (present, not a published one) and the
//! listen address. It changes nothing but the migrations table, which it
//! makes when missing, as `migrate status` does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::{self, Config, Settings};
use crate::db::{Backend, Db};

/// How long one network step (DNS, TCP, the HTTP answer) may take.
pub const NET_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to the database may take.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);
/// How far the database's clock may be from this machine's.
pub const MAX_SKEW_MICROS: i64 = 5_000_000;

/// One answer: `check` names it, `detail` says why, in one line.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

fn row(check: &str, ok: bool, detail: impl Into<String>) -> Row {
    Row {
        check: check.to_owned(),
        ok,
        detail: detail.into(),
    }
}

/// Every row, in order. `settings` is what loading the configuration gave
/// (its error is the first row's reason); `file` the configuration file.
pub async fn run(settings: anyhow::Result<Settings>, file: Option<&Path>) -> Vec<Row> {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return vec![row("config", false, format!("{e:#}"))],
    };
    let mut rows = vec![row(
        "config",
        true,
        match file {
            Some(f) => format!("parsed {} (with environment and flags)", f.display()),
            None => "no file: defaults, environment and flags".to_owned(),
        },
    )];
    for (name, result) in settings.sections() {
        rows.push(match result {
            Ok(()) => row(&format!("config {name}"), true, "valid"),
            Err(e) => row(&format!("config {name}"), false, format!("{e:#}")),
        });
    }
    let config = settings.config();
    let url = settings
        .file
        .database
        .as_ref()
        .and_then(|d| d.url.clone())
        .unwrap_or_else(|| config::DEFAULT_DATABASE_URL.to_owned());
    let demo = settings.file.demo.unwrap_or(false);
    rows.push(if demo {
        row(
            "demo",
            false,
            "demo = true: serve seeds demo stores and prints demo keys",
        )
    } else {
        row("demo", true, "off")
    });
    rows.push(data_dir(&url));
    database_rows(&url, &mut rows).await;
    match &config {
        Ok(c) => {
            services(c, &mut rows).await;
            secrets(c, &settings, &mut rows);
        }
        Err(_) => rows.push(row(
            "services and secrets",
            false,
            "not checked: the configuration is invalid (above)",
        )),
    }
    let listen = settings
        .file
        .http
        .as_ref()
        .and_then(|h| h.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_owned());
    rows.push(listen_free(&listen).await);
    rows
}

/// The rows as a table: mark, name, reason; then a count.
pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.check.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in rows {
        let mark = if r.ok { '✔' } else { '✘' };
        out.push_str(&format!("{mark} {:<width$}  {}\n", r.check, r.detail));
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    out.push_str(&format!("{} checks, {failed} failed\n", rows.len()));
    out
}

/// This process's effective user id.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What is wrong with the owner or mode of `path` (a directory or a file
/// that holds the store's data), if anything.
fn guarded(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let me = euid();
    if meta.uid() != me {
        return Some(format!(
            "{} is owned by uid {}, the gateway runs as uid {me}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "{} is mode {mode:04o}: others may read or write it (chmod o-rwx)",
            path.display()
        )
    })
}

fn data_dir(url: &str) -> Row {
    const NAME: &str = "data directory";
    match Backend::of_url(url) {
        Ok(Backend::Postgres) => return row(NAME, true, "PostgreSQL: no local data directory"),
        Ok(Backend::Sqlite) => {}
        Err(e) => return row(NAME, false, format!("{e:#}")),
    }
    let Some(file) = crate::db::sqlite_path(url) else {
        return row(NAME, true, "in-memory SQLite: no data directory");
    };
    let dir = match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let meta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) => {
            return row(
                NAME,
                false,
                format!("{}: {e} (`gateway migrate up` makes it)", dir.display()),
            );
        }
    };
    if !meta.is_dir() {
        return row(NAME, false, format!("{} is not a directory", dir.display()));
    }
    if let Some(why) = guarded(&dir, &meta) {
        return row(NAME, false, why);
    }
    row(
        NAME,
        true,
        format!(
            "{}: owner uid {}, mode {:04o}",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o777
        ),
    )
}

async fn database_rows(url: &str, rows: &mut Vec<Row>) {
    let shown = config::redact_url(url);
    let skipped = |rows: &mut Vec<Row>| {
        for name in ["migrations", "migrations reversible", "clock"] {
            rows.push(row(name, false, "not checked: the database is unreachable"));
        }
    };
    // Connecting would create a missing SQLite file: say so instead.
    if Backend::of_url(url).ok() == Some(Backend::Sqlite)
        && let Some(file) = crate::db::sqlite_path(url)
        && !file.exists()
    {
        rows.push(row(
            "database",
            false,
            format!(
                "{} does not exist (run `gateway migrate up`)",
                file.display()
            ),
        ));
        return skipped(rows);
    }
    let db = match tokio::time::timeout(DB_TIMEOUT, Db::connect(url)).await {
        Err(_) => Err(anyhow::anyhow!(
            "timed out after {} s",
            DB_TIMEOUT.as_secs()
        )),
        Ok(r) => r,
    };
    let db = match db {
        Ok(db) => match db.ping().await {
            Ok(()) => db,
            Err(e) => {
                rows.push(row("database", false, format!("{shown}: {e}")));
                return skipped(rows);
            }
        },
        Err(e) => {
            rows.push(row("database", false, format!("{shown}: {e:#}")));
            return skipped(rows);
        }
    };
    rows.push(row("database", true, format!("{shown} answers")));
    match db.migration_check().await {
        Err(e) => {
            rows.push(row("migrations", false, format!("{e:#}")));
            rows.push(row("migrations reversible", false, "not checked"));
        }
        Ok(m) => {
            let mut wrong = Vec::new();
            if !m.pending.is_empty() {
                let list: Vec<String> = m
                    .pending
                    .iter()
                    .map(|(v, name)| format!("{v:04} {name}"))
                    .collect();
                wrong.push(format!(
                    "pending: {} (run `gateway migrate up`)",
                    list.join(", ")
                ));
            }
            if !m.unknown.is_empty() {
                wrong.push(format!(
                    "applied but unknown to this binary: {}",
                    versions(&m.unknown)
                ));
            }
            if !m.changed.is_empty() {
                wrong.push(format!(
                    "applied with a different script: {}",
                    versions(&m.changed)
                ));
            }
            rows.push(if wrong.is_empty() {
                row(
                    "migrations",
                    true,
                    format!("{} applied, none pending", m.applied),
                )
            } else {
                row("migrations", false, wrong.join("; "))
            });
            rows.push(if m.irreversible.is_empty() {
                row(
                    "migrations reversible",
                    true,
                    "every applied migration has a down script",
                )
            } else {
                row(
                    "migrations reversible",
                    false,
                    format!("no down script: {}", versions(&m.irreversible)),
                )
            });
        }
    }
    rows.push(match db.server_time_micros().await {
        Err(e) => row("clock", false, format!("reading the database's time: {e}")),
        Ok(theirs) => clock_row(theirs, db.now_micros()),
    });
}

/// The clock row: the database's time against this machine's, in µs.
fn clock_row(theirs: i64, ours: i64) -> Row {
    let skew = theirs.saturating_sub(ours).saturating_abs();
    let ms = skew / 1000;
    if skew > MAX_SKEW_MICROS {
        row(
            "clock",
            false,
            format!(
                "the database's clock is {ms} ms {} this machine's (more than {} s)",
                if theirs > ours { "ahead of" } else { "behind" },
                MAX_SKEW_MICROS / 1_000_000
            ),
        )
    } else {
        row(
            "clock",
            true,
            format!("the database's clock is within {ms} ms of this machine's"),
        )
    }
}

fn versions(v: &[i64]) -> String {
    v.iter()
        .map(|v| format!("{v:04}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every outside service the configuration names, one row each.
async fn services(c: &Config, rows: &mut Vec<Row>) {
    let wechat = c
        .payments
        .as_ref()
        .map(|p| p.wechatpay_base_url.clone())
        .filter(|u| !u.is_empty());
    let alipay = c
        .payments
        .as_ref()
        .and_then(|p| p.alipay.as_ref())
        .map(|a| a.base_url.clone());
    let meituan = c
        .channels
        .as_ref()
        .and_then(|ch| ch.meituan.as_ref())
        .map(|m| m.base_url.clone());
    let extra_ca = c
        .payments
        .as_ref()
        .and_then(|p| p.tls.extra_ca_pem.clone())
        .or_else(|| c.channels.as_ref().and_then(|ch| ch.extra_ca_pem.clone()));
    for (name, url) in [
        ("service wechatpay", wechat),
        ("service alipay", alipay),
        ("service meituan", meituan),
    ] {
        rows.push(match url {
            None => row(name, true, "not configured"),
            Some(url) => match reach(&url, extra_ca.as_deref()).await {
                Ok(how) => row(name, true, format!("{url}: {how}")),
                Err(why) => row(name, false, format!("{url}: {why}")),
            },
        });
    }
    if let Some(ch) = &c.channels
        && !ch.webhook_secrets.is_empty()
    {
        let mut names: Vec<&str> = ch.webhook_secrets.keys().map(String::as_str).collect();
        names.sort_unstable();
        rows.push(row(
            "service webhooks",
            true,
            format!("{}: push only, nothing to call", names.join(", ")),
        ));
    }
}

/// DNS, TCP, then (TLS and) an HTTP answer from `url`; any answer counts.
async fn reach(url: &str, extra_ca: Option<&str>) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(NET_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
        {
            Err(_) => return Err(format!("DNS: {host} timed out")),
            Ok(Err(e)) => return Err(format!("DNS: {host}: {e}")),
            Ok(Ok(a)) => a.collect(),
        };
    let first = *addrs.first().ok_or(format!("DNS: {host} has no address"))?;
    let mut last = String::new();
    let mut connected = None;
    for a in &addrs {
        match tokio::time::timeout(NET_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => {
                connected = Some(*a);
                break;
            }
            Ok(Err(e)) => last = format!("TCP {a}: {e}"),
            Err(_) => last = format!("TCP {a}: timed out after {} s", NET_TIMEOUT.as_secs()),
        }
    }
    let Some(addr) = connected else {
        return Err(if last.is_empty() {
            format!("TCP {first}: no connection")
        } else {
            last
        });
    };
    let tls = parsed.scheme() == "https";
    let client = crate::outbound::client(NET_TIMEOUT, NET_TIMEOUT, extra_ca, None)
        .map_err(|e| format!("{e:#}"))?;
    match client.head(parsed).send().await {
        Ok(resp) => Ok(format!(
            "resolves, connects to {addr}{}, answers HTTP {}",
            if tls { ", TLS ok" } else { "" },
            resp.status().as_u16()
        )),
        Err(e) => Err(format!(
            "connects to {addr}, then {}: {}",
            if tls { "TLS or HTTP" } else { "HTTP" },
            crate::outbound::describe(&e)
        )),
    }
}

fn published(secret: &str) -> bool {
    crate::demo::PUBLISHED_SECRETS.contains(&secret.trim())
}

/// What is wrong with a secret file's mode: open to others (its owner may
/// be another user, e.g. root with the gateway's group reading it).
fn secret_file(path: Option<&str>) -> Option<String> {
    let path = Path::new(path?);
    let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "{} is mode {mode:04o}: others may read it (chmod o-rwx)",
            path.display()
        )
    })
}

/// The secrets of every configured provider and platform.
fn secrets(c: &Config, settings: &Settings, rows: &mut Vec<Row>) {
    let file = settings.file.payments.clone().unwrap_or_default();
    let mut any = false;
    if let Some(p) = c
        .payments
        .as_ref()
        .filter(|p| !p.wechatpay_base_url.is_empty())
    {
        any = true;
        let key = p.wechatpay_key.expose_secret();
        let files = [
            file.wechatpay_client_key_file.as_deref(),
            file.wechatpay_client_p12_file.as_deref(),
        ];
        let bad_file = files.into_iter().find_map(secret_file);
        rows.push(if key.trim().is_empty() {
            row("secret wechatpay", false, "wechatpay_key is empty")
        } else if published(key) {
            row(
                "secret wechatpay",
                false,
                "wechatpay_key is a published demo/test key",
            )
        } else if key.chars().count() != 32 {
            row(
                "secret wechatpay",
                false,
                format!(
                    "wechatpay_key has {} characters; a WeChat Pay v2 key has 32",
                    key.chars().count()
                ),
            )
        } else if let Some(why) = bad_file {
            row("secret wechatpay", false, why)
        } else {
            row(
                "secret wechatpay",
                true,
                "wechatpay_key set, not a demo key",
            )
        });
    }
    if let Some(a) = c.payments.as_ref().and_then(|p| p.alipay.as_ref()) {
        use sha2::Digest;
        any = true;
        let pem = a.private_key_pem.expose_secret();
        let hash = hex::encode(sha2::Sha256::digest(pem.trim().as_bytes()));
        rows.push(
            if crate::demo::PUBLISHED_KEY_SHA256.contains(&hash.as_str()) {
                row(
                    "secret alipay",
                    false,
                    "alipay_private_key_file holds a published test key",
                )
            } else if let Some(why) = secret_file(file.alipay_private_key_file.as_deref()) {
                row("secret alipay", false, why)
            } else {
                row("secret alipay", true, "private key set, not a test key")
            },
        );
    }
    if let Some(ch) = &c.channels {
        if let Some(m) = &ch.meituan {
            any = true;
            let s = m.secret.expose_secret();
            rows.push(if s.trim().is_empty() {
                row("secret meituan", false, "meituan_secret is empty")
            } else if published(s) {
                row(
                    "secret meituan",
                    false,
                    "meituan_secret is a published demo/test secret",
                )
            } else {
                row("secret meituan", true, "meituan_secret set, not a demo one")
            });
        }
        if !ch.webhook_secrets.is_empty() {
            any = true;
            let mut bad: Vec<&str> = ch
                .webhook_secrets
                .iter()
                .filter(|(_, s)| {
                    s.expose_secret().trim().is_empty() || published(s.expose_secret())
                })
                .map(|(p, _)| p.as_str())
                .collect();
            bad.sort_unstable();
            rows.push(if bad.is_empty() {
                row(
                    "secret webhooks",
                    true,
                    "every webhook secret set, none a demo one",
                )
            } else {
                row(
                    "secret webhooks",
                    false,
                    format!("empty or demo secret for: {}", bad.join(", ")),
                )
            });
        }
    }
    if !any {
        rows.push(row(
            "secrets",
            true,
            "no provider or platform configured: none needed",
        ));
    }
}

async fn listen_free(listen: &str) -> Row {
    match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => {
            let at = l
                .local_addr()
                .map_or_else(|_| listen.to_owned(), |a| a.to_string());
            drop(l);
            row("listen", true, format!("{at} is free"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => row(
            "listen",
            false,
            format!("{listen} is in use (another gateway running?)"),
        ),
        Err(e) => row("listen", false, format!("{listen}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_may_be_off_by_five_seconds_either_way() {
        let now = 1_700_000_000_000_000;
        assert!(clock_row(now + 4_999_000, now).ok);
        assert!(clock_row(now - 5_000_000, now).ok);
        let ahead = clock_row(now + 5_001_000, now);
        assert!(!ahead.ok);
        assert!(
            ahead.detail.contains("5001 ms ahead of"),
            "{}",
            ahead.detail
        );
        let behind = clock_row(now - 60_000_000, now);
        assert!(!behind.ok && behind.detail.contains("60000 ms behind"));
        assert!(!clock_row(i64::MIN, i64::MAX).ok);
    }

    #[test]
    fn the_table_marks_each_row_and_counts_the_failures() {
        let t = table(&[row("a", true, "fine"), row("longer", false, "why")]);
        assert_eq!(t, "✔ a       fine\n✘ longer  why\n2 checks, 1 failed\n");
    }
}
