//! The two engines' migrations stay in step: a fresh SQLite file and a fresh
//! PostgreSQL database, both migrated by the gateway's own migrator, have the
//! same tables, the same columns (name, order, type family, nullability), the
//! same primary, unique and foreign keys and the same named indexes. Every down
//! migration is then run, one at a time on both engines, the two compared at
//! every version on the way to 0, and the schema migrated up again must be
//! the one the fresh migration made.
//!
//! What is compared and how (where the engines can be compared honestly):
//! - types by family, as SQLite's affinity rules read a declared type
//!   (`BIGINT` and `INTEGER` are both `integer`), against PostgreSQL's
//!   `data_type` mapped to the same families;
//! - NOT NULL as declared; a primary-key column counts as NOT NULL on both
//!   (PostgreSQL implies it; SQLite would take a NULL in a non-INTEGER key,
//!   its documented legacy quirk, which the gateway never writes);
//! - indexes made by `CREATE [UNIQUE] INDEX` by name, with table, columns,
//!   uniqueness and whether partial (the WHERE text is not compared: the
//!   engines print it differently); keys from PRIMARY KEY / UNIQUE in the
//!   table by their columns (their names are the engine's own).
//!
//! - foreign keys by their columns and the table and columns they refer to.
//!
//! Not compared: CHECK constraints, defaults, ON DELETE/UPDATE actions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use gateway::db::Db;
use sqlx::{AnyPool, Row};
use tests::{Backend, TestDb};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    family: &'static str,
    not_null: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    unique_keys: BTreeSet<Vec<String>>,
    /// `(columns) -> table (columns)`, one per FOREIGN KEY / REFERENCES.
    foreign_keys: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    table: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Schema {
    tables: BTreeMap<String, Table>,
    indexes: BTreeMap<String, Index>,
}

/// SQLite's affinity rules (datatype3.html, 3.1) on a declared type.
fn sqlite_family(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "integer"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "text"
    } else if t.contains("BLOB") || t.is_empty() {
        "blob"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "real"
    } else {
        "numeric"
    }
}

/// PostgreSQL's `information_schema.columns.data_type`, in the same families.
fn postgres_family(data_type: &str) -> &'static str {
    match data_type {
        "smallint" | "integer" | "bigint" => "integer",
        "text" | "character varying" | "character" => "text",
        "bytea" => "blob",
        "real" | "double precision" => "real",
        // boolean, numeric, json, timestamps …: SQLite has no such storage
        // class, so a column of these can only ever differ — name it.
        "numeric" => "numeric",
        _ => "other (PostgreSQL only)",
    }
}

async fn sqlite_schema(pool: &AnyPool) -> Schema {
    let mut schema = Schema::default();
    let names: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get(0))
    .collect();
    for name in names {
        let rows = sqlx::query(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(name.clone())
        .fetch_all(pool)
        .await
        .expect("columns");
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        for r in rows {
            let col: String = r.get(0);
            let declared: String = r.get(1);
            let not_null: i64 = r.get(2);
            let pk_pos: i64 = r.get(3);
            if pk_pos > 0 {
                pk.push((pk_pos, col.clone()));
            }
            columns.push(Column {
                name: col,
                family: sqlite_family(&declared),
                not_null: not_null != 0 || pk_pos > 0,
            });
        }
        pk.sort();
        let mut unique_keys = BTreeSet::new();
        let indexes = sqlx::query(
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name",
        )
        .bind(name.clone())
        .fetch_all(pool)
        .await
        .expect("indexes");
        for ix in indexes {
            let ix_name: String = ix.get(0);
            let unique: i64 = ix.get(1);
            let origin: String = ix.get(2);
            let partial: i64 = ix.get(3);
            let cols: Vec<String> = sqlx::query(
                "SELECT name FROM pragma_index_info($1) WHERE name IS NOT NULL ORDER BY seqno",
            )
            .bind(ix_name.clone())
            .fetch_all(pool)
            .await
            .expect("index columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
            match origin.as_str() {
                "c" => {
                    schema.indexes.insert(
                        ix_name,
                        Index {
                            table: name.clone(),
                            columns: cols,
                            unique: unique != 0,
                            partial: partial != 0,
                        },
                    );
                }
                "u" => {
                    unique_keys.insert(cols);
                }
                _ => {} // "pk": the primary key, read above from the table
            }
        }
        let mut fks: BTreeMap<i64, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list($1) \
             ORDER BY id, seq",
        )
        .bind(name.clone())
        .fetch_all(pool)
        .await
        .expect("foreign keys");
        for r in rows {
            let fk = fks.entry(r.get(0)).or_default();
            fk.0 = r.get(1);
            fk.1.push(r.get(2));
            // NULL would mean the referred table's primary key; the
            // migrations always name the column.
            fk.2.push(r.get::<Option<String>, _>(3).unwrap_or_default());
        }
        schema.tables.insert(
            name,
            Table {
                columns,
                primary_key: pk.into_iter().map(|(_, c)| c).collect(),
                unique_keys,
                foreign_keys: fks
                    .into_values()
                    .map(|(t, from, to)| {
                        format!("({}) -> {t} ({})", from.join(", "), to.join(", "))
                    })
                    .collect(),
            },
        );
    }
    schema
}

async fn postgres_schema(pool: &AnyPool) -> Schema {
    let mut schema = Schema::default();
    let names: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get(0))
    .collect();
    for name in names {
        let columns = sqlx::query(
            "SELECT column_name::text, data_type::text, is_nullable::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(name.clone())
        .fetch_all(pool)
        .await
        .expect("columns")
        .iter()
        .map(|r| {
            let data_type: String = r.get(1);
            let nullable: String = r.get(2);
            Column {
                name: r.get(0),
                family: postgres_family(&data_type),
                not_null: nullable == "NO",
            }
        })
        .collect();
        // Keys: the columns of each PRIMARY KEY / UNIQUE / FOREIGN KEY
        // constraint in order, and for a foreign key what it refers to.
        let keys = sqlx::query(
            "SELECT c.contype::text, \
               (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
                FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) \
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), \
               COALESCE(f.relname::text, ''), \
               COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
                FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n) \
                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum), '') \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace s ON s.oid = t.relnamespace \
             LEFT JOIN pg_class f ON f.oid = c.confrelid \
             WHERE s.nspname = current_schema() AND t.relname = $1 \
             AND c.contype IN ('p', 'u', 'f')",
        )
        .bind(name.clone())
        .fetch_all(pool)
        .await
        .expect("keys");
        let mut primary_key = Vec::new();
        let mut unique_keys = BTreeSet::new();
        let mut foreign_keys = BTreeSet::new();
        for k in keys {
            let kind: String = k.get(0);
            let cols: String = k.get(1);
            let cols: Vec<String> = cols.split(',').map(str::to_owned).collect();
            match kind.as_str() {
                "p" => primary_key = cols,
                "u" => {
                    unique_keys.insert(cols);
                }
                _ => {
                    let to_table: String = k.get(2);
                    let to: String = k.get(3);
                    foreign_keys.insert(format!(
                        "({}) -> {to_table} ({})",
                        cols.join(", "),
                        to.replace(',', ", ")
                    ));
                }
            }
        }
        schema.tables.insert(
            name,
            Table {
                columns,
                primary_key,
                unique_keys,
                foreign_keys,
            },
        );
    }
    // Indexes of their own (not the ones backing a PRIMARY KEY or UNIQUE).
    let indexes = sqlx::query(
        "SELECT i.relname::text, t.relname::text, \
           CASE WHEN x.indisunique THEN 1::bigint ELSE 0::bigint END, \
           CASE WHEN x.indpred IS NULL THEN 0::bigint ELSE 1::bigint END, \
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
            FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = current_schema() AND t.relname <> '_sqlx_migrations' \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid \
                         AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u', 'x'))",
    )
    .fetch_all(pool)
    .await
    .expect("indexes");
    for ix in indexes {
        let cols: Option<String> = ix.get(4);
        schema.indexes.insert(
            ix.get(0),
            Index {
                table: ix.get(1),
                columns: cols
                    .unwrap_or_default()
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                unique: ix.get::<i64, _>(2) != 0,
                partial: ix.get::<i64, _>(3) != 0,
            },
        );
    }
    schema
}

async fn schema_of(db: &Db) -> Schema {
    match db.backend {
        Backend::Sqlite => sqlite_schema(&db.pool).await,
        Backend::Postgres => postgres_schema(&db.pool).await,
    }
}

fn show_cols(cols: &[Column]) -> String {
    cols.iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.name,
                c.family,
                if c.not_null { " not null" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every difference between `a` (named `an`) and `b`, one line each; empty
/// when they agree.
fn differences(an: &str, a: &Schema, bn: &str, b: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for (name, ta) in &a.tables {
        let Some(tb) = b.tables.get(name) else {
            out.push(format!("table {name}: only on {an}"));
            continue;
        };
        for ca in &ta.columns {
            match tb.columns.iter().find(|c| c.name == ca.name) {
                None => out.push(format!("{name}.{}: column only on {an}", ca.name)),
                Some(cb) if cb != ca => out.push(format!(
                    "{name}.{}: {an} {} {} / {bn} {} {}",
                    ca.name,
                    ca.family,
                    if ca.not_null { "not null" } else { "null" },
                    cb.family,
                    if cb.not_null { "not null" } else { "null" },
                )),
                Some(_) => {}
            }
        }
        for cb in &tb.columns {
            if !ta.columns.iter().any(|c| c.name == cb.name) {
                out.push(format!("{name}.{}: column only on {bn}", cb.name));
            }
        }
        let order = |t: &Table| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if order(ta) != order(tb) {
            let (oa, ob) = (order(ta), order(tb));
            let same: BTreeSet<_> = oa.iter().collect::<BTreeSet<_>>();
            if same == ob.iter().collect::<BTreeSet<_>>() {
                out.push(format!(
                    "table {name}: column order differs: {an} ({}) / {bn} ({})",
                    oa.join(", "),
                    ob.join(", ")
                ));
            }
        }
        if ta.primary_key != tb.primary_key {
            out.push(format!(
                "table {name}: primary key {an} ({}) / {bn} ({})",
                ta.primary_key.join(", "),
                tb.primary_key.join(", ")
            ));
        }
        for k in ta.unique_keys.difference(&tb.unique_keys) {
            out.push(format!(
                "table {name}: UNIQUE ({}) only on {an}",
                k.join(", ")
            ));
        }
        for k in tb.unique_keys.difference(&ta.unique_keys) {
            out.push(format!(
                "table {name}: UNIQUE ({}) only on {bn}",
                k.join(", ")
            ));
        }
        for k in ta.foreign_keys.difference(&tb.foreign_keys) {
            out.push(format!("table {name}: FOREIGN KEY {k} only on {an}"));
        }
        for k in tb.foreign_keys.difference(&ta.foreign_keys) {
            out.push(format!("table {name}: FOREIGN KEY {k} only on {bn}"));
        }
    }
    for (name, tb) in &b.tables {
        if !a.tables.contains_key(name) {
            out.push(format!(
                "table {name}: only on {bn} ({})",
                show_cols(&tb.columns)
            ));
        }
    }
    for (name, ia) in &a.indexes {
        match b.indexes.get(name) {
            None => out.push(format!("index {name} on {}: only on {an}", ia.table)),
            Some(ib) if ib != ia => out.push(format!("index {name}: {an} {ia:?} / {bn} {ib:?}")),
            Some(_) => {}
        }
    }
    for (name, ib) in &b.indexes {
        if !a.indexes.contains_key(name) {
            out.push(format!("index {name} on {}: only on {bn}", ib.table));
        }
    }
    out
}

fn assert_same(what: &str, an: &str, a: &Schema, bn: &str, b: &Schema) {
    let diff = differences(an, a, bn, b);
    if !diff.is_empty() {
        let mut msg = format!("{what}: {} difference(s):\n", diff.len());
        for d in &diff {
            let _ = writeln!(msg, "  - {d}");
        }
        panic!("{msg}");
    }
}

async fn fresh(backend: Backend) -> Option<(TestDb, Db)> {
    let store = TestDb::new(backend).await?;
    let db = Db::connect(store.url()).await.expect("connect");
    db.migrate_up().await.expect("migrate up");
    Some((store, db))
}

/// The applied versions, newest last.
async fn applied(db: &Db) -> Vec<i64> {
    db.migration_status()
        .await
        .expect("status")
        .into_iter()
        .filter(|m| m.applied)
        .map(|m| m.version)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_sqlite_file_and_a_fresh_postgres_database_have_the_same_schema() {
    let (_sqlite_store, sqlite) = fresh(Backend::Sqlite).await.expect("sqlite");
    let Some((_pg_store, pg)) = fresh(Backend::Postgres).await else {
        return;
    };
    let s = schema_of(&sqlite).await;
    let p = schema_of(&pg).await;
    // The readers read something on both engines (a reader broken into
    // reading nothing would make the two agree).
    for (name, schema) in [("sqlite", &s), ("postgres", &p)] {
        let columns: usize = schema.tables.values().map(|t| t.columns.len()).sum();
        let keys: usize = schema.tables.values().map(|t| t.unique_keys.len()).sum();
        let fks: usize = schema.tables.values().map(|t| t.foreign_keys.len()).sum();
        let partial = schema.indexes.values().filter(|i| i.partial).count();
        println!(
            "{name}: {} tables, {columns} columns, {keys} UNIQUE keys, {fks} foreign keys, {} indexes ({partial} partial)",
            schema.tables.len(),
            schema.indexes.len()
        );
        assert!(
            columns > 0 && keys > 0 && fks > 0 && partial > 0,
            "{name}: the schema reader found too little"
        );
        assert!(
            schema.tables.values().all(|t| !t.primary_key.is_empty()),
            "{name}: a table without a primary key read"
        );
    }
    assert_eq!(
        applied(&sqlite).await,
        applied(&pg).await,
        "applied versions"
    );
    assert_same(
        "fresh migration, SQLite vs PostgreSQL",
        "sqlite",
        &s,
        "postgres",
        &p,
    );
    // And drift is seen: a column on one engine, an index on the other.
    sqlx::query("ALTER TABLE orders ADD COLUMN drift_note TEXT")
        .execute(&sqlite.pool)
        .await
        .expect("alter");
    sqlx::query("CREATE INDEX orders_drift ON orders (created_at)")
        .execute(&pg.pool)
        .await
        .expect("index");
    let diff = differences(
        "sqlite",
        &schema_of(&sqlite).await,
        "postgres",
        &schema_of(&pg).await,
    );
    assert_eq!(
        diff,
        vec![
            "orders.drift_note: column only on sqlite",
            "index orders_drift on orders: only on postgres",
        ],
        "{diff:#?}"
    );
}

/// Every down migration, in lockstep on both engines (the two compared at each
/// version), to 0 where no table is left; then up again to the schema a fresh
/// migration makes. Without PostgreSQL here (and skipping asked for), SQLite
/// alone goes down and up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_down_migration_reverts_to_the_same_schema_on_both_engines_and_up_again_restores_it()
{
    let (_sqlite_store, sqlite) = fresh(Backend::Sqlite).await.expect("sqlite");
    let pg = fresh(Backend::Postgres).await;
    let mut engines: Vec<(&str, &Db)> = vec![("sqlite", &sqlite)];
    if let Some((_, db)) = &pg {
        engines.push(("postgres", db));
    }
    let mut first = Vec::new();
    for (_, db) in &engines {
        first.push(schema_of(db).await);
    }
    loop {
        let mut reverted = Vec::new();
        for (name, db) in &engines {
            let v = db
                .migrate_down()
                .await
                .unwrap_or_else(|e| panic!("{name}: down migration failed: {e:#}"));
            reverted.push(v);
        }
        assert!(
            reverted.windows(2).all(|w| w[0] == w[1]),
            "engines reverted different versions: {reverted:?}"
        );
        let Some(version) = reverted[0] else { break };
        let mut now = Vec::new();
        for (_, db) in &engines {
            now.push(schema_of(db).await);
        }
        if let [s, p] = &now[..] {
            assert_same(
                &format!("after reverting {version}, SQLite vs PostgreSQL"),
                "sqlite",
                s,
                "postgres",
                p,
            );
        }
    }
    for (i, (name, db)) in engines.iter().enumerate() {
        let empty = schema_of(db).await;
        assert!(
            empty.tables.is_empty() && empty.indexes.is_empty(),
            "{name}: after every down migration, left: tables {:?}, indexes {:?}",
            empty.tables.keys().collect::<Vec<_>>(),
            empty.indexes.keys().collect::<Vec<_>>()
        );
        assert!(
            applied(db).await.is_empty(),
            "{name}: versions left applied"
        );
        db.migrate_up()
            .await
            .unwrap_or_else(|e| panic!("{name}: migrating up again failed: {e:#}"));
        let again = schema_of(db).await;
        assert_same(
            &format!("{name}: fresh vs down to 0 and up again"),
            "fresh",
            &first[i],
            "re-up",
            &again,
        );
    }
}

/// The comparison itself sees what it must: a missing column, a changed type
/// or nullability, an index only on one side.
#[test]
fn the_comparison_names_each_kind_of_difference() {
    let col = |name: &str, family, not_null| Column {
        name: name.to_owned(),
        family,
        not_null,
    };
    let table = |columns| Table {
        columns,
        primary_key: vec!["id".to_owned()],
        unique_keys: BTreeSet::new(),
        foreign_keys: BTreeSet::new(),
    };
    let mut a = Schema::default();
    a.tables.insert(
        "orders".into(),
        table(vec![
            col("id", "text", true),
            col("total_fen", "integer", true),
            col("note", "text", false),
        ]),
    );
    a.indexes.insert(
        "orders_note".into(),
        Index {
            table: "orders".into(),
            columns: vec!["note".into()],
            unique: false,
            partial: false,
        },
    );
    let mut b = Schema::default();
    b.tables.insert(
        "orders".into(),
        table(vec![
            col("id", "text", true),
            col("total_fen", "text", false),
        ]),
    );
    assert!(differences("a", &a, "a", &a).is_empty());
    let diff = differences("a", &a, "b", &b);
    assert_eq!(
        diff,
        vec![
            "orders.total_fen: a integer not null / b text null",
            "orders.note: column only on a",
            "index orders_note on orders: only on a",
        ],
        "{diff:#?}"
    );
}
