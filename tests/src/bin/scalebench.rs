//! Reads at scale: one store with N completed orders plus 50 open ones, for
//! each N given (10k and 1M by default), on SQLite and on PostgreSQL. The
//! completed orders are copies, made by SQL in a few statements, of one
//! template order placed and completed through the API (its lines, history
//! and feed events copied with it, the order id inside the feed payload
//! replaced), so rows and indexes look like real ones; the open ones are
//! placed through the API afterwards. Measures p50/p99 of the open-orders
//! queue, one order, the queue's first page and a `/metrics` scrape, one
//! request at a time; prints the ratio of the largest N to the smallest,
//! the database's bytes per order, and the query plan of the open queue.
//!
//! cargo run --release -p tests --bin scalebench -- --db sqlite --sizes 10000,1000000

use std::time::Instant;

use clap::Parser;
use proto::order::Unit;
use sqlx::Row;
use tests::bench::{self, percentile_ms};
use tests::{Backend, TestApp};

#[derive(Parser)]
#[command(about = "queue, order and metrics reads at 10k and 1M orders")]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    db: String,
    /// Completed orders to seed, one run each (comma-separated).
    #[arg(long, default_value = "10000,1000000", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Requests measured per read (after 10 of warm-up).
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const OPEN: usize = 50;
/// Completed orders copied per INSERT statement.
const CHUNK: u64 = 200_000;

const QUEUE: &str = "/api/v1/stores/S001/orders?status=created,accepted";
const PAGE: &str = "/api/v1/stores/S001/orders";

/// The open queue's SQL as `orders::list` builds it for
/// `status=created,accepted` (placeholders numbered for both engines).
const QUEUE_SQL: &str = "SELECT * FROM orders WHERE store_id = $1 AND seq > $2 \
     AND status IN ($3, $4) AND status IN ('created', 'accepted', 'ready') ORDER BY seq LIMIT $5";

/// How `orders::fill_details` orders the history rows it reads.
const HISTORY_ORDER: &str = "ORDER BY id";

struct Read {
    name: &'static str,
    p50: f64,
    p99: f64,
}

struct Run {
    n: u64,
    reads: Vec<Read>,
    bytes_per_order: f64,
    payload_per_order: f64,
    orders: i64,
    seed_secs: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::telemetry::init(Some("warn"), gateway::telemetry::LogFormat::Text);
    bench::runtime()?.block_on(async {
        println!(
            "scalebench: one store, N completed orders + {OPEN} open, {} sequential requests per read, {} cores",
            args.samples,
            bench::cores()
        );
        for b in bench::backends(&args.db) {
            let name = bench::name(b);
            let mut runs = Vec::new();
            for &n in &args.sizes {
                match run(b, n, args.samples).await? {
                    Some(r) => runs.push(r),
                    None => {
                        println!("{name}: skipped (database unavailable)");
                        break;
                    }
                }
            }
            if runs.is_empty() {
                continue;
            }
            println!(
                "{:<9} {:>9} {:<28} {:>9} {:>9}",
                "database", "N", "read", "p50 ms", "p99 ms"
            );
            for r in &runs {
                for read in &r.reads {
                    println!(
                        "{name:<9} {:>9} {:<28} {:>9.2} {:>9.2}",
                        r.n, read.name, read.p50, read.p99
                    );
                }
                println!(
                    "{name:<9} {:>9} database bytes per order: {:.0}, of which feed payload {:.0} ({} orders; seeded in {:.1} s)",
                    r.n, r.bytes_per_order, r.payload_per_order, r.orders, r.seed_secs
                );
            }
            if let (Some(small), Some(big)) = (runs.first(), runs.last())
                && runs.len() > 1
            {
                for (a, z) in small.reads.iter().zip(&big.reads) {
                    println!(
                        "{name:<9} ratio {}/{}: {:<28} p50 {:.2}×  p99 {:.2}×  (target p99 ≤ 1.5×)",
                        big.n,
                        small.n,
                        a.name,
                        z.p50 / a.p50.max(1e-9),
                        z.p99 / a.p99.max(1e-9)
                    );
                }
            }
        }
        Ok(())
    })
}

async fn run(b: Backend, n: u64, samples: usize) -> anyhow::Result<Option<Run>> {
    let Some(app) = TestApp::spawn(b).await else {
        return Ok(None);
    };
    app.product("DUCK-NECK", "鸭脖", Unit::Kg, "39.90", "100000")
        .await;
    app.product("COLA", "可口可乐", Unit::Piece, "3.50", "100000")
        .await;
    let lines = [("DUCK-NECK", "0.355"), ("COLA", "2")];
    // The template: placed, accepted, ready, completed through the API.
    let (status, order) = app.order("S001", &lines).await;
    anyhow::ensure!(status == 201, "template order: {status} {order}");
    let template = order["id"].as_str().unwrap_or_default().to_owned();
    let terminal = app.terminal("S001").to_owned();
    for action in ["accept", "ready", "complete"] {
        let (status, body) = app.act(&template, action, &terminal).await;
        anyhow::ensure!(status == 200, "{action}: {status} {body}");
    }
    let started = Instant::now();
    seed(&app, &template, n).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    // The open ones, after the copies in the feed: half created, half accepted.
    let mut open_ids = Vec::new();
    for i in 0..OPEN {
        let (status, order) = app.order("S001", &lines).await;
        anyhow::ensure!(status == 201, "open order: {status} {order}");
        let id = order["id"].as_str().unwrap_or_default().to_owned();
        if i % 2 == 1 {
            let (status, body) = app.act(&id, "accept", &terminal).await;
            anyhow::ensure!(status == 200, "accept: {status} {body}");
        }
        open_ids.push(id);
    }
    let (status, queue) = app.get_json(QUEUE, &app.admin).await;
    let listed = queue["orders"].as_array().map_or(0, |o| o.len());
    anyhow::ensure!(
        status == 200 && listed == OPEN,
        "the open queue lists {listed} orders (status {status}), not {OPEN}"
    );

    let orders: i64 = sqlx::query("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db.pool)
        .await?
        .get(0);
    let bytes = db_bytes(&app, b).await?;
    // The feed payloads alone (each a whole order's JSON).
    let payload_sql = match b {
        Backend::Sqlite => "SELECT SUM(LENGTH(CAST(payload AS BLOB))) FROM order_events",
        Backend::Postgres => "SELECT SUM(OCTET_LENGTH(payload))::BIGINT FROM order_events",
    };
    let payload: i64 = sqlx::query(payload_sql)
        .fetch_one(&app.db.pool)
        .await?
        .get(0);
    print_plan(&app, b, n, &open_ids).await?;

    let mut reads = Vec::new();
    let ids: Vec<String> = (0..samples as u64)
        .map(|i| format!("{template}-{}", 1 + i * n / samples.max(1) as u64))
        .collect();
    for (name, path) in [
        ("open queue (created,accepted)", Some(QUEUE)),
        ("one order", None),
        ("queue first page", Some(PAGE)),
        ("/metrics scrape", Some("/metrics")),
    ] {
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples + 10 {
            let url = match path {
                Some(p) => app.url(p),
                None => app.url(&format!("/api/v1/orders/{}", ids[i % ids.len()])),
            };
            let t = Instant::now();
            let r = app.http.get(url).bearer_auth(&app.admin).send().await?;
            let status = r.status();
            let _ = r.bytes().await?;
            let took = t.elapsed();
            anyhow::ensure!(status.is_success(), "{name}: HTTP {status}");
            if i >= 10 {
                lat.push(took);
            }
        }
        lat.sort();
        reads.push(Read {
            name,
            p50: percentile_ms(&lat, 0.50),
            p99: percentile_ms(&lat, 0.99),
        });
    }
    app.stop().await;
    Ok(Some(Run {
        n,
        reads,
        bytes_per_order: bytes as f64 / orders.max(1) as f64,
        payload_per_order: payload as f64 / orders.max(1) as f64,
        orders,
        seed_secs,
    }))
}

/// Copies the completed `template` order `n` times (ids `template-1` …),
/// feed numbers after the template's, older creation times, then moves the
/// store's feed head past them.
async fn seed(app: &TestApp, template: &str, n: u64) -> anyhow::Result<()> {
    let pool = &app.db.pool;
    // The template's feed numbers: copy k takes them shifted by k × span.
    let row = sqlx::query(
        "SELECT MIN(seq), MAX(seq) FROM order_events WHERE store_id = 'S001' AND order_id = $1",
    )
    .bind(template)
    .fetch_one(pool)
    .await?;
    let (lo, hi): (i64, i64) = (row.get(0), row.get(1));
    let head: i64 = sqlx::query("SELECT event_seq FROM stores WHERE id = 'S001'")
        .fetch_one(pool)
        .await?
        .get(0);
    let span = head - lo + 1;
    anyhow::ensure!(hi <= head, "template events past the store's head");
    let copies = "WITH RECURSIVE c(k) AS (SELECT $2 UNION ALL SELECT k + 1 FROM c WHERE k < $3)";
    let statements = [
        format!(
            "{copies} INSERT INTO orders (id, store_id, channel, platform, channel_order_id, display_no,
                 business_day, status, payment_status, total_fen, note, created_by, created_at,
                 updated_at, seq)
             SELECT o.id || '-' || c.k, o.store_id, o.channel, o.platform,
                 CASE WHEN o.channel_order_id IS NULL THEN NULL ELSE o.channel_order_id || '-' || c.k END,
                 o.display_no, o.business_day, o.status, o.payment_status, o.total_fen, o.note,
                 o.created_by, o.created_at - ($3 - c.k) * 1000, o.updated_at - ($3 - c.k) * 1000,
                 o.seq + c.k * {span}
             FROM orders o, c WHERE o.id = $1"
        ),
        format!(
            "{copies} INSERT INTO order_lines (order_id, line_no, sku, name, unit, qty_milli,
                 unit_price_fen, line_total_fen)
             SELECT l.order_id || '-' || c.k, l.line_no, l.sku, l.name, l.unit, l.qty_milli,
                 l.unit_price_fen, l.line_total_fen
             FROM order_lines l, c WHERE l.order_id = $1"
        ),
        format!(
            "{copies} INSERT INTO order_history (order_id, at, by_whom, from_status, to_status, reason)
             SELECT h.order_id || '-' || c.k, h.at - ($3 - c.k) * 1000, h.by_whom, h.from_status,
                 h.to_status, h.reason
             FROM order_history h, c WHERE h.order_id = $1"
        ),
        format!(
            "{copies} INSERT INTO order_events (store_id, seq, order_id, kind, at, payload)
             SELECT e.store_id, e.seq + c.k * {span}, e.order_id || '-' || c.k, e.kind,
                 e.at - ($3 - c.k) * 1000, REPLACE(e.payload, e.order_id, e.order_id || '-' || c.k)
             FROM order_events e, c
             WHERE e.store_id = 'S001' AND e.seq BETWEEN {lo} AND {hi} AND e.order_id = $1"
        ),
    ];
    let mut from = 1u64;
    while from <= n {
        let to = (from + CHUNK - 1).min(n);
        let mut tx = pool.begin().await?;
        for sql in &statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(template)
                .bind(from as i64)
                .bind(to as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        from = to + 1;
    }
    sqlx::query("UPDATE stores SET event_seq = $1 WHERE id = 'S001'")
        .bind(head + n as i64 * span)
        .execute(pool)
        .await?;
    // Statistics as autovacuum keeps them for a table that grew by itself:
    // a bulk copy is measured only after it is analysed, as it would be.
    if app.db.backend == gateway::db::Backend::Postgres {
        sqlx::raw_sql("ANALYZE orders, order_lines, order_history, order_events")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The database's bytes: SQLite's used pages, PostgreSQL's order tables
/// with their indexes and TOAST.
async fn db_bytes(app: &TestApp, b: Backend) -> anyhow::Result<i64> {
    let pool = &app.db.pool;
    Ok(match b {
        Backend::Sqlite => {
            // Fold the WAL into the file first so the pages are counted once.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
            let pages: i64 = sqlx::query("PRAGMA page_count").fetch_one(pool).await?.get(0);
            let free: i64 = sqlx::query("PRAGMA freelist_count").fetch_one(pool).await?.get(0);
            let size: i64 = sqlx::query("PRAGMA page_size").fetch_one(pool).await?.get(0);
            (pages - free) * size
        }
        Backend::Postgres => sqlx::query(
            "SELECT (pg_total_relation_size('orders') + pg_total_relation_size('order_lines')
                 + pg_total_relation_size('order_history') + pg_total_relation_size('order_events'))::BIGINT",
        )
        .fetch_one(pool)
        .await?
        .get(0),
    })
}

async fn print_plan(app: &TestApp, b: Backend, n: u64, open: &[String]) -> anyhow::Result<()> {
    let pool = &app.db.pool;
    let (sql, col) = match b {
        Backend::Sqlite => (format!("EXPLAIN QUERY PLAN {QUEUE_SQL}"), 3),
        Backend::Postgres => (format!("EXPLAIN {QUEUE_SQL}"), 0),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind("S001")
        .bind(0i64)
        .bind("created")
        .bind("accepted")
        .bind(501i64)
        .fetch_all(pool)
        .await?;
    println!("{} N={n}: plan of the open queue:", bench::name(b));
    for r in rows {
        let line: String = r.try_get(col).unwrap_or_default();
        println!("    {line}");
    }
    if b == Backend::Postgres {
        // What the gateway really runs: a prepared statement, whose plan
        // PostgreSQL may make generic after five executions.
        let mut conn = pool.acquire().await?;
        let params = "('S001', 0, 'created', 'accepted', 501)";
        let prepared = QUEUE_SQL.replace("SELECT *", "SELECT id");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE open_queue (text, bigint, text, text, bigint) AS {prepared}"
        )))
        .execute(&mut *conn)
        .await?;
        for _ in 0..6 {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXECUTE open_queue {params}")))
                .execute(&mut *conn)
                .await?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE open_queue {params}"
        )))
        .fetch_all(&mut *conn)
        .await?;
        println!("postgres N={n}: the prepared open queue after six runs:");
        for r in rows {
            let line: String = r.try_get(0).unwrap_or_default();
            println!("    {line}");
        }
        sqlx::raw_sql("DEALLOCATE open_queue")
            .execute(&mut *conn)
            .await?;
        // The history of the open orders, as `orders::fill_details` reads it.
        let types = vec!["text"; open.len()].join(", ");
        let marks = (1..=open.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let values = open
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE history ({types}) AS SELECT order_id, at, by_whom, from_status, to_status, reason \
             FROM order_history WHERE order_id IN ({marks}) {HISTORY_ORDER}"
        )))
        .execute(&mut *conn)
        .await?;
        for _ in 0..6 {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXECUTE history ({values})")))
                .execute(&mut *conn)
                .await?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE history ({values})"
        )))
        .fetch_all(&mut *conn)
        .await?;
        println!("postgres N={n}: the prepared history of the open orders after six runs:");
        for r in rows {
            let line: String = r.try_get(0).unwrap_or_default();
            println!("    {line}");
        }
        sqlx::raw_sql("DEALLOCATE history")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
