//! `gateway backup FILE`: a consistent copy of a live SQLite database.

use std::path::Path;

use anyhow::Context;

use super::{Backend, Db};

impl Db {
    /// Writes a consistent snapshot of the SQLite database to `to` while the
    /// gateway keeps serving (`VACUUM INTO`: one read transaction, so the
    /// copy is the database as of one moment, compacted). Refuses a file that
    /// exists, and PostgreSQL (back that up with `pg_dump`).
    pub async fn backup_to(&self, to: &Path) -> anyhow::Result<u64> {
        anyhow::ensure!(
            self.backend == Backend::Sqlite,
            "`gateway backup` copies a SQLite database; back PostgreSQL up with pg_dump (docs/deploy.md)"
        );
        anyhow::ensure!(
            !to.exists(),
            "{} exists already; choose a new file",
            to.display()
        );
        let target = to
            .to_str()
            .context("the backup file's name must be UTF-8")?
            .to_owned();
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await
            .with_context(|| format!("writing the backup to {}", to.display()))?;
        Ok(std::fs::metadata(to)?.len())
    }
}
