//! A platform's order as channel ingest hands it to the order writer: its
//! items already mapped (the plan's `Sold` input, reserved even when short),
//! the rows that, present, make it a duplicate, and the rows its channel
//! writes with it once the plan has given it an id and its flags. The group
//! commit (`batch.rs` on SQLite, `pgbatch.rs` on PostgreSQL) writes it with
//! the other new orders arriving together; [`create_direct`] writes it in a
//! transaction of its own (no group commit started, or a failed batch's
//! orders one by one). Either way the stock decision is the plan's, under
//! the write lock.

use proto::order::Order;
use sqlx::{AnyConnection, Row};

use super::NewOrder;
use super::plan::{self, SoldLine, Table, Val};
use crate::db::Db;
use crate::error::{Error, Result};

/// The order's note and attention flags, given the index of its first line
/// short of stock (the plan's `Finish`, owned).
pub(crate) type FinishFn = dyn Fn(Option<usize>) -> (Option<String>, Vec<String>) + Send + Sync;
/// The channel's rows of a planned order, written at `now` (µs).
pub(crate) type WithFn = dyn Fn(&Order, i64) -> Vec<Extra> + Send + Sync;

/// A platform's order, mapped, for the writer.
pub(crate) struct SoldOrder {
    pub new: NewOrder,
    pub lines: Vec<SoldLine>,
    pub finish: Box<FinishFn>,
    /// Checked in this order before the plan: the first found answers.
    pub seen: Vec<Seen>,
    /// Written after the order's own rows, in this order.
    pub with: Box<WithFn>,
}

/// A row that makes the order a duplicate: `table` holds `vals` in `cols`.
/// `answer` is the column naming the order it duplicates (`None`: not
/// known). The batch reads every order's rows of one kind in one SELECT, and
/// two orders of one batch with the same values are duplicates too.
pub(crate) struct Seen {
    pub table: &'static str,
    pub cols: &'static [&'static str],
    pub answer: Option<&'static str>,
    pub vals: Vec<String>,
    /// Also read by [`create_direct`] before the plan; `false` when the
    /// direct path learns it from inserting the row instead
    /// ([`Extra::or_duplicate`]), one round trip fewer.
    pub direct: bool,
}

/// One row a channel writes with its order.
pub(crate) struct Extra {
    pub table: &'static Table,
    pub vals: Vec<Val>,
    /// `ON CONFLICT (these columns) DO NOTHING`; `None`: a plain insert.
    pub unless: Option<&'static str>,
    /// Nothing inserted (the conflict) makes the order a duplicate: a
    /// concurrent writer got there first. Such a row must also be a
    /// [`Seen`], so the batch finds it before planning; PostgreSQL's batch,
    /// finding one inserted nothing all the same (another instance wrote it
    /// after the batch read), fails and writes its orders one by one here.
    pub or_duplicate: bool,
}

/// What follows the `VALUES` of an [`Extra`]'s insert: `ON CONFLICT (unless)
/// DO NOTHING`, or nothing.
pub(crate) fn conflict_tail(unless: Option<&str>) -> String {
    unless
        .map(|c| format!(" ON CONFLICT ({c}) DO NOTHING"))
        .unwrap_or_default()
}

/// What became of a platform's order.
pub(crate) enum SoldAnswer {
    Created(Box<Order>),
    /// Seen before: nothing written; the order it duplicates, when known.
    Duplicate(Option<String>),
}

impl Seen {
    /// The duplicate this row says there is (`Some(answer)`), if present.
    async fn find(&self, conn: &mut AnyConnection) -> Result<Option<Option<String>>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.answer.unwrap_or("1"),
            self.table,
            self.cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ${}", i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in &self.vals {
            q = q.bind(v.clone());
        }
        let row = q.fetch_optional(conn).await?;
        Ok(row.map(|r| self.answer.and_then(|_| r.get::<Option<String>, _>(0))))
    }
}

/// Writes one platform order in a transaction of its own (either engine).
pub(crate) async fn create_direct(db: &Db, sold: SoldOrder) -> Result<SoldAnswer> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    for s in sold.seen.iter().filter(|s| s.direct) {
        if let Some(found) = s.find(&mut tx).await? {
            return Ok(SoldAnswer::Duplicate(found));
        }
    }
    let input = plan::Input {
        new: &sold.new,
        idem: None,
        sold: Some(plan::Sold {
            lines: &sold.lines,
            finish: &*sold.finish,
        }),
    };
    let order = match plan::write_one(&mut tx, &input, now).await? {
        plan::Outcome::Written(planned) => planned.order,
        plan::Outcome::Existing(id) => return Ok(SoldAnswer::Duplicate(Some(id))),
        plan::Outcome::Refused(e) => return Err(e),
        plan::Outcome::Replay { .. }
        | plan::Outcome::SameKeyAs(_)
        | plan::Outcome::SameRefAs(_) => {
            return Err(Error::internal(anyhow::anyhow!(
                "a platform order planned as a replay"
            )));
        }
    };
    for e in (sold.with)(&order, now) {
        let sql = format!(
            "{} VALUES ({}){}",
            e.table.insert_head(),
            (1..=e.vals.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", "),
            conflict_tail(e.unless)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in &e.vals {
            q = match v {
                Val::I(i) => q.bind(*i),
                Val::S(s) => q.bind(s.clone()),
                Val::OS(s) => q.bind(s.clone()),
                Val::OI(i) => q.bind(*i),
            };
        }
        match q.execute(&mut **tx).await {
            Ok(r) if e.or_duplicate && r.rows_affected() == 0 => {
                return Ok(SoldAnswer::Duplicate(None));
            }
            Ok(_) => {}
            // Another instance wrote the same platform order meanwhile.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Ok(SoldAnswer::Duplicate(None));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(SoldAnswer::Created(Box::new(order))),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(SoldAnswer::Duplicate(None)),
        Err(e) => Err(e.into()),
    }
}
