//! The agent's durable state: one SQLite file in the state directory.
//!
//! It holds the last catalog the agent saw (with its version: the prices
//! used while the gateway is away), the open basket, and the sales queue.
//! A sale is written with its `clientOrderId`, its local number, lines and
//! tender in one transaction, and only then is the customer told it is
//! done; the uploader later moves it `queued → uploaded` with the gateway's
//! order id, or marks it `held` with the gateway's refusal (kept, shown,
//! tried again; never dropped).
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a committed sale
//! survives a power cut, not only a crash of the agent.

use std::path::Path;
use std::time::Duration;

use proto::order::{self as po, Money, Quantity, Sku, Unit};
use proto::soap::GetCatalogResponse;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

/// The file inside the state directory.
pub const DB_FILE: &str = "terminal.db";

/// 1: the first release; 2: the catalog keeps barcodes (a version-1
/// catalog is forgotten so the next fetch brings them); 3: payment-code
/// sales (`tender` wechatpay / alipay, the charge's id and masked code) and
/// the gateway's flags on an uploaded sale.
const SCHEMA_VERSION: i64 = 3;

/// The `sales` table's columns (schema 3), shared by the schema and the
/// rebuild of an older state directory's table.
macro_rules! sales_columns {
    () => {
        "(
    local_no          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id   TEXT NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    catalog_version   TEXT,
    total_fen         INTEGER NOT NULL,
    tender            TEXT NOT NULL CHECK (tender IN ('cash', 'wechatpay', 'alipay')),
    tendered_fen      INTEGER NOT NULL,
    change_fen        INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('queued', 'uploaded', 'held')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL DEFAULT 0,
    last_error_code   TEXT,
    last_error        TEXT,
    order_id          TEXT,
    display_no        INTEGER,
    gateway_total_fen INTEGER,
    uploaded_at       INTEGER,
    payment_id        TEXT,
    paid_code         TEXT,
    gateway_flags     TEXT
)"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS catalog (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    store_id    TEXT NOT NULL,
    store_name  TEXT NOT NULL,
    version     TEXT NOT NULL,
    fetched_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_items (
    sku        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    unit       TEXT NOT NULL,
    price_fen  INTEGER NOT NULL,
    available  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_barcodes (
    barcode    TEXT PRIMARY KEY,
    sku        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS basket_lines (
    line_no         INTEGER PRIMARY KEY AUTOINCREMENT,
    sku             TEXT NOT NULL,
    name            TEXT NOT NULL,
    unit            TEXT NOT NULL,
    quantity_milli  INTEGER NOT NULL,
    unit_price_fen  INTEGER NOT NULL,
    line_total_fen  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sales ",
    sales_columns!(),
    ";
CREATE INDEX IF NOT EXISTS sales_pending ON sales (state, local_no) WHERE state <> 'uploaded';
CREATE TABLE IF NOT EXISTS sale_lines (
    local_no        INTEGER NOT NULL REFERENCES sales (local_no),
    line_no         INTEGER NOT NULL,
    sku             TEXT NOT NULL,
    name            TEXT NOT NULL,
    unit            TEXT NOT NULL,
    quantity_milli  INTEGER NOT NULL,
    unit_price_fen  INTEGER NOT NULL,
    line_total_fen  INTEGER NOT NULL,
    PRIMARY KEY (local_no, line_no)
);
CREATE TABLE IF NOT EXISTS code_payment (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    client_order_id  TEXT NOT NULL,
    basket_sig       TEXT NOT NULL,
    order_id         TEXT,
    display_no       INTEGER,
    gateway_total_fen INTEGER,
    charging         INTEGER NOT NULL DEFAULT 0,
    paid_code        TEXT,
    started_at       INTEGER NOT NULL
);
"
);

/// Version 3's `sales`, for a state directory written by versions 1-2: the
/// tender check changes, so the table is rebuilt (SQLite cannot alter a
/// CHECK). Runs with foreign keys off, in one transaction.
const REBUILD_SALES_V3: &str = concat!(
    "CREATE TABLE sales_v3 ",
    sales_columns!(),
    ";
INSERT INTO sales_v3 (local_no, client_order_id, created_at, catalog_version, total_fen, tender,
    tendered_fen, change_fen, state, attempts, next_attempt_at, last_error_code, last_error,
    order_id, display_no, gateway_total_fen, uploaded_at)
SELECT local_no, client_order_id, created_at, catalog_version, total_fen, tender,
    tendered_fen, change_fen, state, attempts, next_attempt_at, last_error_code, last_error,
    order_id, display_no, gateway_total_fen, uploaded_at FROM sales;
DROP TABLE sales;
ALTER TABLE sales_v3 RENAME TO sales;
CREATE INDEX IF NOT EXISTS sales_pending ON sales (state, local_no) WHERE state <> 'uploaded';
"
);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local database: {0}")]
    Db(#[from] sqlx::Error),
    /// A row this program wrote no longer reads back (edited by hand?).
    #[error("local database holds an unreadable {0}")]
    Corrupt(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a checkout was refused; nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the basket is empty")]
    EmptyBasket,
    #[error("{tendered} tendered is less than the total {total}")]
    TenderShort { total: Money, tendered: Money },
    #[error("the basket's total is too large")]
    TooLarge,
    #[error("the basket changed while the customer paid")]
    BasketChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a sale is paid.
enum Tender<'a> {
    /// What the customer handed over.
    Cash(Money),
    Code(&'a CodePaid),
}

/// A payment-code charge the gateway reported succeeded, and its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePaid {
    /// `wechatpay` or `alipay`.
    pub kind: String,
    pub order_id: String,
    pub display_no: i64,
    pub payment_id: String,
    pub paid_code: String,
    pub amount: Money,
}

/// A payment-code payment under way (at most one): the order made for the
/// basket and whether a charge was started. Kept on disk so a restart, or
/// a lost answer, resumes it instead of charging or ordering twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodePayment {
    pub client_order_id: String,
    /// The basket it was made for (`basket_sig`): lines and total.
    pub basket_sig: String,
    pub order_id: Option<String>,
    pub display_no: Option<i64>,
    pub total: Option<Money>,
    /// A charge was asked for: its outcome must be known before the basket
    /// may be paid otherwise.
    pub charging: bool,
    pub paid_code: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub started_at: i64,
}

/// A product as the last catalog showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedItem {
    pub sku: Sku,
    pub name: String,
    pub unit: Unit,
    pub price: Money,
    /// The gateway's view when the catalog was fetched (listed, not
    /// snoozed, something sellable). Offline it may be out of date.
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogInfo {
    pub store_id: String,
    pub store_name: String,
    pub version: String,
    /// Microseconds since the epoch.
    #[serde(serialize_with = "ser_time")]
    pub fetched_at: i64,
    pub items: i64,
}

/// A line of the basket or of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub line_no: i64,
    pub sku: Sku,
    pub name: String,
    pub unit: Unit,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Basket {
    pub lines: Vec<Line>,
    pub total: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    /// Committed here, not yet acknowledged by the gateway.
    Queued,
    /// The gateway answered with its order.
    Uploaded,
    /// The gateway refused it (e.g. `out_of_stock`): kept with the error,
    /// shown, and tried again later.
    Held,
}

impl SaleState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(SaleState::Queued),
            "uploaded" => Some(SaleState::Uploaded),
            "held" => Some(SaleState::Held),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleError {
    pub code: String,
    pub message: String,
}

/// A sale as recorded at the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sale {
    /// The counter's own number, 1, 2, 3… for this state directory.
    pub local_no: i64,
    /// The idempotency key of its upload, made before anything is sent.
    pub client_order_id: String,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    /// The catalog version the prices came from.
    pub catalog_version: Option<String>,
    pub lines: Vec<Line>,
    pub total: Money,
    /// `cash`, `wechatpay` or `alipay`.
    pub tender: String,
    pub tendered: Money,
    pub change: Money,
    pub state: SaleState,
    pub attempts: i64,
    pub last_error: Option<SaleError>,
    /// The gateway's order, once uploaded.
    pub order_id: Option<String>,
    pub display_no: Option<i64>,
    /// What the gateway charged for it. It prices at its current prices, so
    /// this differs from `total` if a price changed while offline.
    pub gateway_total: Option<Money>,
    #[serde(serialize_with = "ser_opt_time")]
    pub uploaded_at: Option<i64>,
    /// A payment-code sale's charge on the gateway.
    pub payment_id: Option<String>,
    /// The customer's payment code, masked as the gateway shows it.
    pub paid_code: Option<String>,
    /// What the gateway flagged on the uploaded order (`stock_short`,
    /// `price_differs`, …).
    pub flags: Vec<String>,
}

/// How many sales are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct QueueCounts {
    pub queued: i64,
    pub held: i64,
    pub uploaded: i64,
    /// Uploaded sales the gateway priced otherwise than the counter (a
    /// price changed while offline).
    pub price_differs: i64,
}

/// The gateway's order for an uploaded sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub order_id: String,
    pub display_no: i64,
    pub total: Money,
    /// What the gateway flagged (`short_stock`, `price_differs`, …).
    pub flags: Vec<String>,
}

fn ser_time<S: serde::Serializer>(us: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&rfc3339(*us))
}

fn ser_opt_time<S: serde::Serializer>(
    us: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match us {
        Some(us) => s.collect_str(&rfc3339(*us)),
        None => s.serialize_none(),
    }
}

/// RFC 3339 (UTC) of microseconds since the epoch.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| us.to_string())
}

/// Now, in microseconds since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn dur_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub async fn open(dir: &Path) -> Result<Store> {
        let opts = SqliteConnectOptions::new()
            .filename(dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: the agent's writes are few and small, and one
        // connection means no SQLITE_BUSY between its own tasks.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(outside_a_transaction(conn)))
            .connect_with(opts)
            .await?;
        let version: i64 = sqlx::query("PRAGMA user_version")
            .fetch_one(&pool)
            .await?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "schema (version {version}, this program knows {SCHEMA_VERSION}): written by a newer agent"
            )));
        }
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        sqlx::raw_sql(super::tickets::SCHEMA).execute(&pool).await?;
        sqlx::raw_sql(super::queue::SCHEMA).execute(&pool).await?;
        sqlx::raw_sql(super::day::SCHEMA).execute(&pool).await?;
        if (1..SCHEMA_VERSION).contains(&version) {
            upgrade(&pool, version).await?;
        }
        // Written only when it changes: an agent restarted on a full disk
        // still opens its state (to show it; checkouts answer disk_full).
        if version != SCHEMA_VERSION {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {SCHEMA_VERSION}"
            )))
            .execute(&pool)
            .await?;
        }
        Ok(Store { pool })
    }

    /// The connection pool, for the ledger modules that keep their own tables.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ------------------------------------------------------------ catalog

    /// Replaces the cached catalog with `c` (ignored when `c.unchanged`).
    pub async fn save_catalog(&self, c: &GetCatalogResponse, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !c.unchanged {
            sqlx::query("DELETE FROM catalog_items")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM catalog_barcodes")
                .execute(&mut *tx)
                .await?;
            for i in &c.items {
                for b in &i.barcodes {
                    // The gateway keeps a barcode on one product; should two
                    // items still name it, the first one kept wins.
                    sqlx::query(
                        "INSERT INTO catalog_barcodes (barcode, sku) VALUES ($1, $2)
                         ON CONFLICT (barcode) DO NOTHING",
                    )
                    .bind(b.as_str().to_owned())
                    .bind(i.sku.as_str().to_owned())
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO catalog_items (sku, name, unit, price_fen, available)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(i.sku.as_str().to_owned())
                .bind(i.name.clone())
                .bind(i.unit.as_str())
                .bind(i.price.fen())
                .bind(i.available)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO catalog (id, store_id, store_name, version, fetched_at)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id,
                 store_name = excluded.store_name, version = excluded.version,
                 fetched_at = excluded.fetched_at",
        )
        .bind(c.store_id.as_str().to_owned())
        .bind(c.store_name.clone())
        .bind(c.version.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn catalog_info(&self) -> Result<Option<CatalogInfo>> {
        let row = sqlx::query(
            "SELECT store_id, store_name, version, fetched_at,
                    (SELECT COUNT(*) FROM catalog_items) AS items
             FROM catalog WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CatalogInfo {
            store_id: r.get("store_id"),
            store_name: r.get("store_name"),
            version: r.get("version"),
            fetched_at: r.get("fetched_at"),
            items: r.get("items"),
        }))
    }

    /// The SKU the cached catalog gives `barcode`, if any.
    pub async fn sku_of_barcode(&self, barcode: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT sku FROM catalog_barcodes WHERE barcode = $1")
                .bind(barcode.to_owned())
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get("sku")),
        )
    }

    pub async fn item(&self, sku: &Sku) -> Result<Option<CachedItem>> {
        let row = sqlx::query(
            "SELECT sku, name, unit, price_fen, available FROM catalog_items WHERE sku = $1",
        )
        .bind(sku.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CachedItem {
                sku: read_sku(&r)?,
                name: r.get("name"),
                unit: read_unit(&r)?,
                price: Money::from_fen(r.get("price_fen")),
                available: r.get("available"),
            })
        })
        .transpose()
    }

    // ------------------------------------------------------------- basket

    pub async fn basket(&self) -> Result<Basket> {
        let rows = sqlx::query(
            "SELECT line_no, sku, name, unit, quantity_milli, unit_price_fen, line_total_fen
             FROM basket_lines ORDER BY line_no",
        )
        .fetch_all(&self.pool)
        .await?;
        let lines = rows.iter().map(read_line).collect::<Result<Vec<_>>>()?;
        let total = sum(&lines).ok_or_else(|| StoreError::Corrupt("basket total".into()))?;
        Ok(Basket { lines, total })
    }

    /// Adds `quantity` of `item` at its cached price. `None` when the line
    /// or the basket's total would be too large to sell.
    pub async fn add_line(&self, item: &CachedItem, quantity: Quantity) -> Result<Option<Line>> {
        let Some(line_total) = po::line_total(item.price, quantity) else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await?;
        let total: i64 = sqlx::query("SELECT COALESCE(SUM(line_total_fen), 0) FROM basket_lines")
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if Money::from_fen(total).checked_add(line_total).is_none() {
            return Ok(None);
        }
        let line_no: i64 = sqlx::query(
            "INSERT INTO basket_lines (sku, name, unit, quantity_milli, unit_price_fen, line_total_fen)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING line_no",
        )
        .bind(item.sku.as_str().to_owned())
        .bind(item.name.clone())
        .bind(item.unit.as_str())
        .bind(quantity.milli())
        .bind(item.price.fen())
        .bind(line_total.fen())
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(Some(Line {
            line_no,
            sku: item.sku.clone(),
            name: item.name.clone(),
            unit: item.unit,
            quantity,
            unit_price: item.price,
            line_total,
        }))
    }

    /// Removes a line; false when there was none with that number.
    pub async fn remove_line(&self, line_no: i64) -> Result<bool> {
        let n = sqlx::query("DELETE FROM basket_lines WHERE line_no = $1")
            .bind(line_no)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn clear_basket(&self) -> Result<()> {
        sqlx::query("DELETE FROM basket_lines")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // -------------------------------------------------------------- sales

    /// Turns the basket into a cash sale: the sale, its lines and the
    /// emptied basket are one transaction. When this returns the sale is on
    /// disk and may be shown to the customer as paid.
    pub async fn checkout_cash(
        &self,
        tendered: Money,
        client_order_id: &str,
        now: i64,
    ) -> Result<Sale, CheckoutError> {
        self.checkout(Tender::Cash(tendered), client_order_id, now)
            .await
    }

    /// Turns the basket into a sale already paid by payment code on the
    /// gateway's order `paid.order`: recorded `uploaded` (the gateway has
    /// it), with its receipt owed. Refused (nothing written) if the basket's
    /// total is not the charged amount.
    pub async fn checkout_paid(
        &self,
        paid: &CodePaid,
        client_order_id: &str,
        now: i64,
    ) -> Result<Sale, CheckoutError> {
        self.checkout(Tender::Code(paid), client_order_id, now)
            .await
    }

    async fn checkout(
        &self,
        tender: Tender<'_>,
        client_order_id: &str,
        now: i64,
    ) -> Result<Sale, CheckoutError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let rows = sqlx::query(
            "SELECT line_no, sku, name, unit, quantity_milli, unit_price_fen, line_total_fen
             FROM basket_lines ORDER BY line_no",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if rows.is_empty() {
            return Err(CheckoutError::EmptyBasket);
        }
        let basket = rows.iter().map(read_line).collect::<Result<Vec<_>>>()?;
        let total = sum(&basket).ok_or(CheckoutError::TooLarge)?;
        let (kind, tendered) = match tender {
            Tender::Cash(t) => ("cash", t),
            Tender::Code(p) => {
                if p.amount != total {
                    return Err(CheckoutError::BasketChanged);
                }
                (p.kind.as_str(), total)
            }
        };
        if tendered < total {
            return Err(CheckoutError::TenderShort { total, tendered });
        }
        let change = Money::from_fen(tendered.fen() - total.fen());
        let version: Option<String> = sqlx::query("SELECT version FROM catalog WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .map(|r| r.get(0));
        let paid = match tender {
            Tender::Code(p) => Some(p),
            Tender::Cash(_) => None,
        };
        let local_no: i64 = sqlx::query(
            "INSERT INTO sales (client_order_id, created_at, catalog_version, total_fen, tender,
                                tendered_fen, change_fen, state, order_id, display_no,
                                gateway_total_fen, uploaded_at, payment_id, paid_code, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             RETURNING local_no",
        )
        .bind(client_order_id.to_owned())
        .bind(now)
        .bind(version.clone())
        .bind(total.fen())
        .bind(kind)
        .bind(tendered.fen())
        .bind(change.fen())
        .bind(if paid.is_some() { "uploaded" } else { "queued" })
        .bind(paid.map(|p| p.order_id.clone()))
        .bind(paid.map(|p| p.display_no))
        .bind(paid.map(|p| p.amount.fen()))
        .bind(paid.map(|_| now))
        .bind(paid.map(|p| p.payment_id.clone()))
        .bind(paid.map(|p| p.paid_code.clone()))
        .bind(i64::from(paid.is_some()))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?
        .get(0);
        let mut lines = Vec::with_capacity(basket.len());
        for (i, l) in basket.into_iter().enumerate() {
            let line_no = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
            sqlx::query(
                "INSERT INTO sale_lines (local_no, line_no, sku, name, unit, quantity_milli,
                                         unit_price_fen, line_total_fen)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(local_no)
            .bind(line_no)
            .bind(l.sku.as_str().to_owned())
            .bind(l.name.clone())
            .bind(l.unit.as_str())
            .bind(l.quantity.milli())
            .bind(l.unit_price.fen())
            .bind(l.line_total.fen())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            lines.push(Line { line_no, ..l });
        }
        sqlx::query("DELETE FROM basket_lines")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        // The receipt is owed in the same transaction: a committed sale
        // always has its ticket.
        let key = local_no.to_string();
        super::tickets::enqueue_on(&mut tx, super::tickets::Kind::Receipt, &key, &key, now).await?;
        // A payment-code attempt for this basket ends with its sale (cash
        // after a refused code reuses the attempt's order id).
        sqlx::query("DELETE FROM code_payment WHERE client_order_id = $1")
            .bind(client_order_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Sale {
            local_no,
            client_order_id: client_order_id.to_owned(),
            created_at: now,
            catalog_version: version,
            lines,
            total,
            tender: kind.to_owned(),
            tendered,
            change,
            state: if paid.is_some() {
                SaleState::Uploaded
            } else {
                SaleState::Queued
            },
            attempts: i64::from(paid.is_some()),
            last_error: None,
            order_id: paid.map(|p| p.order_id.clone()),
            display_no: paid.map(|p| p.display_no),
            gateway_total: paid.map(|p| p.amount),
            uploaded_at: paid.map(|_| now),
            payment_id: paid.map(|p| p.payment_id.clone()),
            paid_code: paid.map(|p| p.paid_code.clone()),
            flags: Vec::new(),
        })
    }

    // ------------------------------------------------ payment-code payment

    /// The basket's signature: its lines and total, so a payment attempt
    /// made for one basket is never used for another.
    pub async fn basket_sig(&self) -> Result<String> {
        let b = self.basket().await?;
        let mut sig = String::new();
        for l in &b.lines {
            sig.push_str(&format!(
                "{}:{}:{}:{};",
                l.line_no,
                l.sku,
                l.quantity.milli(),
                l.line_total.fen()
            ));
        }
        sig.push_str(&b.total.fen().to_string());
        Ok(sig)
    }

    pub async fn code_payment(&self) -> Result<Option<CodePayment>> {
        let row = sqlx::query(
            "SELECT client_order_id, basket_sig, order_id, display_no, gateway_total_fen,
                    charging, paid_code, started_at
             FROM code_payment WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CodePayment {
            client_order_id: r.get("client_order_id"),
            basket_sig: r.get("basket_sig"),
            order_id: r.get("order_id"),
            display_no: r.get("display_no"),
            total: r
                .get::<Option<i64>, _>("gateway_total_fen")
                .map(Money::from_fen),
            charging: r.get::<i64, _>("charging") != 0,
            paid_code: r.get("paid_code"),
            started_at: r.get("started_at"),
        }))
    }

    /// Starts (or replaces) the attempt with a new order id.
    pub async fn begin_code_payment(
        &self,
        client_order_id: &str,
        basket_sig: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO code_payment (id, client_order_id, basket_sig, started_at)
             VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET client_order_id = excluded.client_order_id,
                 basket_sig = excluded.basket_sig, started_at = excluded.started_at,
                 order_id = NULL, display_no = NULL, gateway_total_fen = NULL,
                 charging = 0, paid_code = NULL",
        )
        .bind(client_order_id.to_owned())
        .bind(basket_sig.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The gateway made the attempt's order.
    pub async fn code_order(&self, order_id: &str, display_no: i64, total: Money) -> Result<()> {
        sqlx::query(
            "UPDATE code_payment SET order_id = $1, display_no = $2, gateway_total_fen = $3
             WHERE id = 1",
        )
        .bind(order_id.to_owned())
        .bind(display_no)
        .bind(total.fen())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A charge is about to be asked for (`charging` true) or is known to
    /// have taken no money (false).
    pub async fn code_charging(&self, charging: bool, paid_code: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE code_payment SET charging = $1, paid_code = $2 WHERE id = 1")
            .bind(i64::from(charging))
            .bind(paid_code.map(str::to_owned))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the attempt (its order was cancelled or never made).
    pub async fn clear_code_payment(&self) -> Result<()> {
        sqlx::query("DELETE FROM code_payment")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The oldest sale due for upload: queued ones in local order, and
    /// held ones whose retry time has come. A held sale due more than one
    /// `held_retry` from `now` was scheduled by a clock that has since gone
    /// back (an NTP step, the time set by hand): it is due now, not once
    /// the clock catches up again hours later.
    pub async fn next_to_upload(&self, now: i64, held_retry: Duration) -> Result<Option<Sale>> {
        let row = sqlx::query(
            "SELECT local_no FROM sales
             WHERE state = 'queued'
                OR (state = 'held' AND (next_attempt_at <= $1 OR next_attempt_at > $2))
             ORDER BY local_no LIMIT 1",
        )
        .bind(now)
        .bind(now.saturating_add(dur_us(held_retry)))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => self.sale(r.get(0)).await,
            None => Ok(None),
        }
    }

    /// When the next held sale is due, if any is.
    pub async fn next_held_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(next_attempt_at) FROM sales WHERE state = 'held'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    /// The gateway answered with its order: the sale is done.
    pub async fn mark_uploaded(&self, local_no: i64, up: &Uploaded, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sales SET state = 'uploaded', attempts = attempts + 1, order_id = $1,
                 display_no = $2, gateway_total_fen = $3, uploaded_at = $4,
                 last_error_code = NULL, last_error = NULL, gateway_flags = $6
             WHERE local_no = $5",
        )
        .bind(up.order_id.clone())
        .bind(up.display_no)
        .bind(up.total.fen())
        .bind(now)
        .bind(local_no)
        .bind(up.flags.join(","))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// No answer (or a retryable one): stays queued, the error is shown.
    pub async fn note_attempt(&self, local_no: i64, err: &SaleError) -> Result<()> {
        sqlx::query(
            "UPDATE sales SET attempts = attempts + 1, last_error_code = $1, last_error = $2
             WHERE local_no = $3 AND state <> 'uploaded'",
        )
        .bind(err.code.clone())
        .bind(err.message.clone())
        .bind(local_no)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The gateway refused the sale: kept as `held` with the refusal, tried
    /// again after `retry`.
    pub async fn hold(
        &self,
        local_no: i64,
        err: &SaleError,
        now: i64,
        retry: Duration,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sales SET state = 'held', attempts = attempts + 1, last_error_code = $1,
                 last_error = $2, next_attempt_at = $3
             WHERE local_no = $4 AND state <> 'uploaded'",
        )
        .bind(err.code.clone())
        .bind(err.message.clone())
        .bind(now.saturating_add(dur_us(retry)))
        .bind(local_no)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn counts(&self) -> Result<QueueCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM sales GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = QueueCounts {
            price_differs: sqlx::query(
                "SELECT COUNT(*) FROM sales WHERE state = 'uploaded' AND gateway_total_fen <> total_fen",
            )
            .fetch_one(&self.pool)
            .await?
            .get(0),
            ..QueueCounts::default()
        };
        for r in rows {
            let n: i64 = r.get(1);
            match SaleState::parse(r.get::<&str, _>(0)) {
                Some(SaleState::Queued) => c.queued = n,
                Some(SaleState::Held) => c.held = n,
                Some(SaleState::Uploaded) => c.uploaded = n,
                None => return Err(StoreError::Corrupt("sale state".into())),
            }
        }
        Ok(c)
    }

    pub async fn sale(&self, local_no: i64) -> Result<Option<Sale>> {
        let row = sqlx::query(format_sale_query("WHERE local_no = $1"))
            .bind(local_no)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(self.with_lines(&r).await?)),
            None => Ok(None),
        }
    }

    /// The newest sales first.
    pub async fn recent_sales(&self, limit: i64) -> Result<Vec<Sale>> {
        let rows = sqlx::query(format_sale_query("ORDER BY local_no DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.with_lines(r).await?);
        }
        Ok(out)
    }

    async fn with_lines(&self, r: &SqliteRow) -> Result<Sale> {
        let local_no: i64 = r.get("local_no");
        let rows = sqlx::query(
            "SELECT line_no, sku, name, unit, quantity_milli, unit_price_fen, line_total_fen
             FROM sale_lines WHERE local_no = $1 ORDER BY line_no",
        )
        .bind(local_no)
        .fetch_all(&self.pool)
        .await?;
        let lines = rows.iter().map(read_line).collect::<Result<Vec<_>>>()?;
        let state = SaleState::parse(r.get::<&str, _>("state"))
            .ok_or_else(|| StoreError::Corrupt("sale state".into()))?;
        let code: Option<String> = r.get("last_error_code");
        let message: Option<String> = r.get("last_error");
        Ok(Sale {
            local_no,
            client_order_id: r.get("client_order_id"),
            created_at: r.get("created_at"),
            catalog_version: r.get("catalog_version"),
            lines,
            total: Money::from_fen(r.get("total_fen")),
            tender: r.get("tender"),
            tendered: Money::from_fen(r.get("tendered_fen")),
            change: Money::from_fen(r.get("change_fen")),
            state,
            attempts: r.get("attempts"),
            last_error: code.map(|code| SaleError {
                code,
                message: message.unwrap_or_default(),
            }),
            order_id: r.get("order_id"),
            display_no: r.get("display_no"),
            gateway_total: r
                .get::<Option<i64>, _>("gateway_total_fen")
                .map(Money::from_fen),
            uploaded_at: r.get("uploaded_at"),
            payment_id: r.get("payment_id"),
            paid_code: r.get("paid_code"),
            flags: r
                .get::<Option<String>, _>("gateway_flags")
                .map(|f| {
                    f.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Whether a connection given back to the pool may be used again: only if
/// sqlx holds no transaction open on it (one round trip: the ping runs the
/// rollback a dropped transaction queued, on every release). A COMMIT that
/// fails on a full disk makes SQLite roll the transaction back itself; the
/// ROLLBACK that follows then fails and sqlx still counts a transaction, so
/// its next "transaction" on that connection is a SAVEPOINT, and after one
/// more failure every later sale would be written inside a transaction that
/// is never committed: acknowledged at the counter, lost at the next
/// restart. Such a connection is closed (SQLite rolls back what it held) and
/// the pool opens a fresh one.
async fn outside_a_transaction(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // Runs the rollback a dropped transaction queued.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "local database: a failed transaction left the connection inside one; reopening it"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Brings a state directory written by an older agent up to this schema.
async fn upgrade(pool: &SqlitePool, from: i64) -> Result<()> {
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        "upgrading the state directory's schema"
    );
    if from < 2 {
        // The next GetCatalog brings the whole catalog, with barcodes.
        sqlx::query("DELETE FROM catalog").execute(pool).await?;
    }
    if from < 3 {
        let mut c = pool.acquire().await?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *c)
            .await?;
        let done = async {
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            sqlx::raw_sql(REBUILD_SALES_V3).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *c)
            .await?;
        done?;
    }
    Ok(())
}

/// The columns of a sale, with a fixed tail (`WHERE …` / `ORDER BY …`).
fn format_sale_query(tail: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT local_no, client_order_id, created_at, catalog_version, total_fen, tendered_fen,
                change_fen, state, attempts, last_error_code, last_error, order_id, display_no,
                gateway_total_fen, uploaded_at, tender, payment_id, paid_code, gateway_flags
         FROM sales {tail}"
    ))
}

fn sum(lines: &[Line]) -> Option<Money> {
    lines
        .iter()
        .try_fold(Money::ZERO, |t, l| t.checked_add(l.line_total))
}

fn read_sku(r: &SqliteRow) -> Result<Sku> {
    Sku::parse(r.get::<&str, _>("sku")).map_err(|_| StoreError::Corrupt("sku".into()))
}

fn read_unit(r: &SqliteRow) -> Result<Unit> {
    Unit::parse(r.get::<&str, _>("unit")).map_err(|_| StoreError::Corrupt("unit".into()))
}

fn read_line(r: &SqliteRow) -> Result<Line> {
    let unit = read_unit(r)?;
    Ok(Line {
        line_no: r.get("line_no"),
        sku: read_sku(r)?,
        name: r.get("name"),
        unit,
        quantity: Quantity::from_milli(unit, r.get("quantity_milli")),
        unit_price: Money::from_fen(r.get("unit_price_fen")),
        line_total: Money::from_fen(r.get("line_total_fen")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::order::{CatalogItem, StoreId};

    /// The held-sale retry of these tests.
    const RETRY: Duration = Duration::from_secs(60);

    fn item(sku: &str, unit: Unit, price: &str) -> CatalogItem {
        let zero = Quantity::from_milli(unit, 0);
        CatalogItem {
            sku: Sku::parse(sku).expect("sku"),
            name: sku.to_lowercase(),
            unit,
            price: Money::parse(price).expect("price"),
            list_price: Money::parse(price).expect("price"),
            on_hand: zero,
            reserved: zero,
            sellable: zero,
            available: true,
            listed: true,
            snoozed_until: None,
            barcodes: Vec::new(),
        }
    }

    async fn with_catalog(dir: &Path) -> Store {
        let s = Store::open(dir).await.expect("open");
        let cat = GetCatalogResponse {
            store_id: StoreId::parse("S001").expect("store"),
            store_name: "门店".into(),
            version: "v1".into(),
            unchanged: false,
            items: vec![
                item("COLA", Unit::Piece, "3.50"),
                item("DUCK-NECK", Unit::Kg, "39.90"),
            ],
        };
        s.save_catalog(&cat, 1).await.expect("catalog");
        s
    }

    async fn add(s: &Store, sku: &str, q: &str) {
        let it = s
            .item(&Sku::parse(sku).expect("sku"))
            .await
            .expect("item")
            .expect("known");
        let q = Quantity::parse(it.unit, q).expect("quantity");
        s.add_line(&it, q).await.expect("add").expect("fits");
    }

    fn money(s: &str) -> Money {
        Money::parse(s).expect("money")
    }

    #[tokio::test]
    async fn a_cash_sale_is_priced_from_the_cached_catalog_and_gives_change() {
        let dir = tempfile::tempdir().expect("dir");
        let s = with_catalog(dir.path()).await;
        add(&s, "COLA", "2").await;
        add(&s, "DUCK-NECK", "0.355").await;
        let b = s.basket().await.expect("basket");
        assert_eq!(b.total, money("21.16")); // 7.00 + 14.16 (14.1645 half-up)

        assert!(matches!(
            s.checkout_cash(money("20.00"), "c1", 10).await,
            Err(CheckoutError::TenderShort { .. })
        ));
        let sale = s
            .checkout_cash(money("50.00"), "c1", 10)
            .await
            .expect("sale");
        assert_eq!(
            (sale.local_no, sale.total, sale.change),
            (1, money("21.16"), money("28.84"))
        );
        assert_eq!(sale.catalog_version.as_deref(), Some("v1"));
        assert_eq!(sale.state, SaleState::Queued);
        assert!(s.basket().await.expect("basket").lines.is_empty());
        assert!(matches!(
            s.checkout_cash(money("50.00"), "c2", 11).await,
            Err(CheckoutError::EmptyBasket)
        ));
        assert_eq!(s.sale(1).await.expect("read").expect("sale"), sale);
    }

    #[tokio::test]
    async fn the_queue_uploads_in_order_holds_refusals_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let s = with_catalog(dir.path()).await;
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            add(&s, "COLA", &(i + 1).to_string()).await;
            s.checkout_cash(money("100"), id, 10).await.expect("sale");
        }
        let next = s
            .next_to_upload(20, RETRY)
            .await
            .expect("next")
            .expect("due");
        assert_eq!(next.client_order_id, "a");
        // No answer: still first, the error is visible.
        let lost = SaleError {
            code: "timeout".into(),
            message: "no answer".into(),
        };
        s.note_attempt(1, &lost).await.expect("note");
        let again = s
            .next_to_upload(20, RETRY)
            .await
            .expect("next")
            .expect("due");
        assert_eq!((again.local_no, again.attempts), (1, 1));
        assert_eq!(again.last_error, Some(lost));

        let up = Uploaded {
            order_id: "o1".into(),
            display_no: 7,
            total: money("3.50"),
            flags: Vec::new(),
        };
        s.mark_uploaded(1, &up, 30).await.expect("uploaded");
        // A refusal holds sale 2 and lets sale 3 go first; 2 comes back later.
        let refused = SaleError {
            code: "out_of_stock".into(),
            message: "not enough COLA".into(),
        };
        s.hold(2, &refused, 40, Duration::from_secs(60))
            .await
            .expect("hold");
        assert_eq!(
            s.next_to_upload(41, RETRY)
                .await
                .expect("next")
                .expect("due")
                .local_no,
            3
        );
        s.mark_uploaded(
            3,
            &Uploaded {
                order_id: "o3".into(),
                ..up.clone()
            },
            42,
        )
        .await
        .expect("uploaded");
        assert!(s.next_to_upload(43, RETRY).await.expect("next").is_none());
        assert_eq!(s.next_held_due().await.expect("due"), Some(40 + 60_000_000));
        assert_eq!(
            s.counts().await.expect("counts"),
            QueueCounts {
                queued: 0,
                held: 1,
                uploaded: 2,
                price_differs: 1,
            }
        );
        s.close().await;

        let s = Store::open(dir.path()).await.expect("reopen");
        let held = s.sale(2).await.expect("read").expect("kept");
        assert_eq!(
            (held.state, held.last_error),
            (SaleState::Held, Some(refused))
        );
        assert_eq!(
            s.next_to_upload(40 + 60_000_000, RETRY)
                .await
                .expect("next")
                .expect("due")
                .local_no,
            2
        );
        let first = s.sale(1).await.expect("read").expect("sale");
        assert_eq!(
            (first.order_id.as_deref(), first.display_no),
            (Some("o1"), Some(7))
        );
        // Mark-uploaded never goes back.
        s.note_attempt(
            1,
            &SaleError {
                code: "x".into(),
                message: "y".into(),
            },
        )
        .await
        .expect("note");
        assert_eq!(
            s.sale(1).await.expect("read").expect("sale").state,
            SaleState::Uploaded
        );
        let recent: Vec<i64> = s
            .recent_sales(2)
            .await
            .expect("recent")
            .iter()
            .map(|s| s.local_no)
            .collect();
        assert_eq!(recent, [3, 2]);
    }

    #[tokio::test]
    async fn a_held_sale_is_due_again_when_the_wall_clock_went_back() {
        let dir = tempfile::tempdir().expect("dir");
        let s = with_catalog(dir.path()).await;
        add(&s, "COLA", "1").await;
        let hour = 3_600_000_000;
        let t = 10 * hour;
        s.checkout_cash(money("100"), "a", t).await.expect("sale");
        let refused = SaleError {
            code: "item_unavailable".into(),
            message: "COLA is not kept in store S001".into(),
        };
        s.hold(1, &refused, t, RETRY).await.expect("hold");
        // The clock as it was: not due before one retry period.
        assert!(
            s.next_to_upload(t + 1, RETRY)
                .await
                .expect("next")
                .is_none()
        );
        assert_eq!(
            s.next_to_upload(t + 60_000_000, RETRY)
                .await
                .expect("next")
                .map(|s| s.local_no),
            Some(1)
        );
        // Three hours back: its due time is three hours and a minute ahead,
        // which no hold made now would set. Due now, not in three hours.
        assert_eq!(
            s.next_to_upload(t - 3 * hour, RETRY)
                .await
                .expect("next")
                .map(|s| s.local_no),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_state_directory_of_an_older_agent_keeps_its_sales_and_takes_code_payments() {
        let dir = tempfile::tempdir().expect("dir");
        {
            // The first release's sales table (cash only), one sale queued.
            let opts = SqliteConnectOptions::new()
                .filename(dir.path().join(DB_FILE))
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(opts).await.expect("old db");
            sqlx::raw_sql(
                "CREATE TABLE sales (
                    local_no INTEGER PRIMARY KEY AUTOINCREMENT,
                    client_order_id TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL,
                    catalog_version TEXT, total_fen INTEGER NOT NULL,
                    tender TEXT NOT NULL CHECK (tender IN ('cash')),
                    tendered_fen INTEGER NOT NULL, change_fen INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('queued', 'uploaded', 'held')),
                    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0,
                    last_error_code TEXT, last_error TEXT, order_id TEXT, display_no INTEGER,
                    gateway_total_fen INTEGER, uploaded_at INTEGER);
                 CREATE TABLE sale_lines (
                    local_no INTEGER NOT NULL REFERENCES sales (local_no), line_no INTEGER NOT NULL,
                    sku TEXT NOT NULL, name TEXT NOT NULL, unit TEXT NOT NULL,
                    quantity_milli INTEGER NOT NULL, unit_price_fen INTEGER NOT NULL,
                    line_total_fen INTEGER NOT NULL, PRIMARY KEY (local_no, line_no));
                 INSERT INTO sales (client_order_id, created_at, total_fen, tender, tendered_fen,
                                    change_fen, state)
                 VALUES ('old-1', 5, 350, 'cash', 500, 150, 'queued');
                 INSERT INTO sale_lines VALUES (1, 1, 'COLA', 'cola', 'piece', 1000, 350, 350);
                 PRAGMA user_version = 1;",
            )
            .execute(&pool)
            .await
            .expect("old schema");
            pool.close().await;
        }
        let s = with_catalog(dir.path()).await;
        let old = s.sale(1).await.expect("read").expect("kept");
        assert_eq!(
            (
                old.client_order_id.as_str(),
                old.total,
                old.state,
                old.lines.len()
            ),
            ("old-1", money("3.50"), SaleState::Queued, 1)
        );
        add(&s, "COLA", "2").await;
        let paid = CodePaid {
            kind: "wechatpay".into(),
            order_id: "o9".into(),
            display_no: 9,
            payment_id: "c9".into(),
            paid_code: "13**********6789".into(),
            amount: money("7.00"),
        };
        let sale = s.checkout_paid(&paid, "new-2", 6).await.expect("code sale");
        assert_eq!((sale.local_no, sale.tender.as_str()), (2, "wechatpay"));
        assert_eq!(sale.state, SaleState::Uploaded);
        assert_eq!(s.sale(2).await.expect("read").expect("sale"), sale);
        // The old sale is still the next to upload.
        let next = s
            .next_to_upload(10, RETRY)
            .await
            .expect("next")
            .expect("due");
        assert_eq!(next.client_order_id, "old-1");
        let v: i64 = sqlx::query("PRAGMA user_version")
            .fetch_one(&s.pool)
            .await
            .expect("version")
            .get(0);
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn an_unchanged_catalog_keeps_the_items_and_a_new_one_replaces_them() {
        let dir = tempfile::tempdir().expect("dir");
        let s = with_catalog(dir.path()).await;
        let mut c = GetCatalogResponse {
            store_id: StoreId::parse("S001").expect("store"),
            store_name: "门店".into(),
            version: "v1".into(),
            unchanged: true,
            items: vec![],
        };
        s.save_catalog(&c, 2).await.expect("unchanged");
        assert_eq!(
            s.catalog_info().await.expect("info").expect("some").items,
            2
        );
        c.unchanged = false;
        c.version = "v2".into();
        c.items = vec![item("COLA", Unit::Piece, "4.00")];
        s.save_catalog(&c, 3).await.expect("new");
        let info = s.catalog_info().await.expect("info").expect("some");
        assert_eq!((info.version.as_str(), info.items), ("v2", 1));
        let cola = s
            .item(&Sku::parse("COLA").expect("sku"))
            .await
            .expect("item")
            .expect("known");
        assert_eq!(cola.price, money("4.00"));
        assert!(
            s.item(&Sku::parse("DUCK-NECK").expect("sku"))
                .await
                .expect("item")
                .is_none()
        );
    }
}
