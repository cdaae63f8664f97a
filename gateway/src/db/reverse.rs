//! Reverting migrations: down to a version, and what that would lose.
//!
//! A down script that drops a table (and does not create it again in the
//! same script, as SQLite's table rebuilds do) or drops a column loses the
//! rows or values in it. [`Db::down_losses`] reads the down scripts that
//! reverting to a version would run and counts what each of those would
//! drop in this database, so the CLI can refuse without `--yes`.

use anyhow::Context;

use super::Db;

/// What one down script would drop that holds data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub version: i64,
    pub description: String,
    /// `table counter_sales (312 rows)`, `column refunds.reason (4 values)`.
    pub what: String,
}

/// A table or a column a down script drops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Drop {
    Table(String),
    Column(String, String),
}

/// The tables and columns `sql` drops for good: a table it drops and creates
/// again (a rebuild that copies its rows) is not among them.
fn drops(sql: &str) -> Vec<Drop> {
    let mut dropped = Vec::new();
    let mut created = Vec::new();
    let text: String = sql
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in text.split(';') {
        let words: Vec<String> = stmt
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c| c == '"' || c == '(')
                    .to_ascii_lowercase()
            })
            .collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let skip_if = |rest: &[&str], n: usize| -> Option<String> {
            let rest = match rest {
                ["if", "exists", tail @ ..] | ["if", "not", "exists", tail @ ..] => tail,
                tail => tail,
            };
            rest.get(n).map(|s| (*s).to_owned())
        };
        match w.as_slice() {
            ["drop", "table", rest @ ..] => {
                if let Some(t) = skip_if(rest, 0) {
                    dropped.push(Drop::Table(t));
                }
            }
            ["create", "table", rest @ ..] => {
                if let Some(t) = skip_if(rest, 0) {
                    created.push(t);
                }
            }
            ["alter", "table", table, "drop", "column", rest @ ..] => {
                if let Some(c) = skip_if(rest, 0) {
                    dropped.push(Drop::Column((*table).to_owned(), c));
                }
            }
            _ => {}
        }
    }
    dropped.retain(|d| !matches!(d, Drop::Table(t) if created.contains(t)));
    dropped
}

/// Tables whose rows the gateway rebuilds as it runs, so dropping them
/// loses nothing anyone needs: the scheduler's leases and run history.
const DISPOSABLE: &[&str] = &["job_leases", "job_runs"];

/// A name from our own migration scripts, safe to put in a query.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Db {
    /// The applied migrations newer than `to`, newest first: what reverting
    /// to `to` runs. `to` must be 0 or one of this binary's versions.
    pub async fn applied_after(&self, to: i64) -> anyhow::Result<Vec<(i64, String)>> {
        let states = self.migration_status().await?;
        if to != 0 && !states.iter().any(|m| m.version == to) {
            anyhow::bail!(
                "there is no migration {to}; `gateway migrate status` lists them (0 reverts all)"
            );
        }
        let mut out: Vec<(i64, String)> = states
            .into_iter()
            .filter(|m| m.applied && m.version > to)
            .map(|m| (m.version, m.description))
            .collect();
        out.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
        Ok(out)
    }

    /// What reverting to `to` would drop that holds data here.
    pub async fn down_losses(&self, to: i64) -> anyhow::Result<Vec<Loss>> {
        let mut out = Vec::new();
        for (version, description) in self.applied_after(to).await? {
            let Some(down) = self
                .migrator()
                .iter()
                .find(|m| m.version == version && m.migration_type.is_down_migration())
            else {
                continue;
            };
            for d in drops(down.sql.as_str()) {
                let (sql, what) = match &d {
                    Drop::Table(t) | Drop::Column(t, _) if DISPOSABLE.contains(&t.as_str()) => {
                        continue;
                    }
                    Drop::Table(t) if plain(t) => {
                        (format!("SELECT COUNT(*) FROM {t}"), format!("table {t}"))
                    }
                    Drop::Column(t, c) if plain(t) && plain(c) => (
                        format!("SELECT COUNT(*) FROM {t} WHERE {c} IS NOT NULL"),
                        format!("column {t}.{c}"),
                    ),
                    _ => continue,
                };
                // A table the script itself made on the way is not there yet.
                // Safe: names from our own scripts, checked by `plain`.
                let Ok(n) = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await
                else {
                    continue;
                };
                if n > 0 {
                    let unit = if matches!(d, Drop::Table(_)) {
                        "rows"
                    } else {
                        "values"
                    };
                    out.push(Loss {
                        version,
                        description: description.clone(),
                        what: format!("{what} ({n} {unit})"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reverts every applied migration newer than `to`, newest first;
    /// returns the versions reverted.
    pub async fn migrate_down_to(&self, to: i64) -> anyhow::Result<Vec<i64>> {
        let versions: Vec<i64> = self
            .applied_after(to)
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        if versions.is_empty() {
            return Ok(versions);
        }
        self.migrator()
            .undo(&self.pool, to)
            .await
            .with_context(|| format!("reverting migrations down to {to}"))?;
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_read_from_a_script_ignore_rebuilds_and_comments() {
        let sql = "-- DROP TABLE not_this;\n\
                   CREATE TABLE refunds_0011 AS SELECT * FROM refunds;\n\
                   DROP TABLE refunds;\n\
                   CREATE TABLE refunds (id TEXT);\n\
                   DROP TABLE refunds_0011;\n\
                   DROP TABLE IF EXISTS counter_sales;\n\
                   ALTER TABLE refunds DROP COLUMN reason; drop index x;";
        assert_eq!(
            drops(sql),
            vec![
                Drop::Table("counter_sales".into()),
                Drop::Column("refunds".into(), "reason".into()),
            ]
        );
    }

    #[test]
    fn only_plain_names_reach_a_query() {
        assert!(plain("order_lines"));
        assert!(!plain("x; DROP TABLE y"));
        assert!(!plain(""));
    }
}
