//! The one write plan of a new order, whatever its channel and engine.
//!
//! Given what the database holds ([`Facts`], read under the write lock), the
//! [`Planner`] decides each new order in memory — idempotency key, duplicate
//! channel order id, store, lines (priced from the catalog by `check_line`,
//! or as a platform sold them), stock, prepayment reference, numbering — and
//! builds every row the order writes ([`Planned::rows`], one [`Table`] each).
//! Two executors write what it decided: [`write_one`], one order in the
//! caller's transaction on either engine, and the SQLite batch (`batch.rs`),
//! many orders in one transaction. A new column on `orders`, `order_lines` or
//! `idempotency_keys` is one edit here.

use std::collections::{HashMap, HashSet};

use proto::order::{Money, Order, OrderLine, OrderStatus, Quantity, Sku, StoreId, Unit};
use sqlx::{AnyConnection, Row};

use super::{
    Fresh, IdemKey, ItemFacts, NewOrder, PRICE_DIFFERS, SHORT_STOCK, UNAVAILABLE_ITEMS,
    check_happened_line, check_line, find_by_channel_ref, find_prepaid, fresh_order, out_of_stock,
    prepaid_reference_used,
};
use crate::clock;
use crate::error::{Code, Error, Result};
use crate::events;

/// A value bound into a row.
pub(crate) enum Val {
    I(i64),
    S(String),
    OS(Option<String>),
    /// A nullable integer (a NULL bound as text would not fit a BIGINT
    /// column on PostgreSQL).
    OI(Option<i64>),
}

/// A table a new order writes, with its columns in the order of a row's values.
pub(crate) struct Table {
    pub name: &'static str,
    pub cols: &'static [&'static str],
}

impl Table {
    /// `INSERT INTO name (cols…)`, before its `VALUES`.
    pub fn insert_head(&self) -> String {
        format!("INSERT INTO {} ({})", self.name, self.cols.join(", "))
    }

    /// What follows the `VALUES` of an insert into this table: the claimed
    /// idempotency key takes the answer; other tables add nothing.
    pub fn upsert_tail(&self) -> String {
        if self.name != IDEMPOTENCY_KEYS.name {
            return String::new();
        }
        format!(
            " ON CONFLICT (key_id, idem_key) DO UPDATE SET {}",
            self.cols[2..]
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

pub(crate) const ORDERS: Table = Table {
    name: "orders",
    cols: &[
        "id",
        "store_id",
        "channel",
        "platform",
        "channel_order_id",
        "display_no",
        "business_day",
        "status",
        "payment_status",
        "total_fen",
        "note",
        "created_by",
        "created_at",
        "updated_at",
        "seq",
    ],
};
pub(crate) const ORDER_LINES: Table = Table {
    name: "order_lines",
    cols: &[
        "order_id",
        "line_no",
        "sku",
        "name",
        "unit",
        "qty_milli",
        "unit_price_fen",
        "line_total_fen",
    ],
};
pub(crate) const ORDER_HISTORY: Table = Table {
    name: "order_history",
    cols: &[
        "order_id",
        "at",
        "by_whom",
        "from_status",
        "to_status",
        "reason",
    ],
};
pub(crate) const ORDER_EVENTS: Table = Table {
    name: "order_events",
    cols: &["store_id", "seq", "order_id", "kind", "at", "payload"],
};
/// A counter sale that already happened: when it was sold, from which
/// catalog, and its attention flags.
pub(crate) const COUNTER_SALES: Table = Table {
    name: "counter_sales",
    cols: &[
        "order_id",
        "sold_at",
        "catalog_version",
        "attention",
        "created_at",
    ],
};
pub(crate) const PREPAYMENTS: Table = Table {
    name: "prepayments",
    cols: &[
        "order_id",
        "provider",
        "reference",
        "amount_fen",
        "created_at",
    ],
};
pub(crate) const IDEMPOTENCY_KEYS: Table = Table {
    name: "idempotency_keys",
    cols: &[
        "key_id",
        "idem_key",
        "request_hash",
        "status_code",
        "response",
        "created_at",
    ],
};

/// Every table of a new order, in the order rows go in (foreign keys).
pub(crate) const TABLES: [&Table; 7] = [
    &ORDERS,
    &ORDER_LINES,
    &ORDER_HISTORY,
    &ORDER_EVENTS,
    &COUNTER_SALES,
    &PREPAYMENTS,
    &IDEMPOTENCY_KEYS,
];

/// A store's feed head and today's last display number.
pub(crate) struct Head {
    pub seq: i64,
    pub display: i64,
    /// An order was planned for this store.
    pub written: bool,
}

/// One product in one store: its facts and what can still be sold.
pub(crate) struct Stock {
    pub facts: ItemFacts,
    pub sellable: i64,
    /// What the planned orders reserve, in total.
    pub reserve: i64,
}

/// What the database holds that the plan reads.
#[derive(Default)]
pub(crate) struct Facts {
    /// The stores that exist, among those asked about.
    pub heads: HashMap<StoreId, Head>,
    pub stock: HashMap<(StoreId, Sku), Stock>,
    pub products: HashMap<Sku, ItemFacts>,
    /// (key owner, key) → (request hash, status, body) of answered keys.
    pub answered: HashMap<(String, String), (String, u16, String)>,
    /// (store, channel, platform, channel order id) → order id.
    pub refs: HashMap<(String, String, String, String), String>,
    /// (provider, reference) of prepayments.
    pub prepaid: HashSet<(String, String)>,
}

/// The product columns a plan reads, after a tag column: `sku, name, unit,
/// list price, store, override, available, snoozed_until, on_hand, reserved`
/// (the store columns null when the store has no record of the product).
pub(crate) const PRODUCT_COLS: &str = "p.sku, p.name, p.unit, p.price_fen, i.store_id, i.price_fen, \
     i.available, i.snoozed_until, i.on_hand, i.reserved";

impl Facts {
    /// Adds a row of [`PRODUCT_COLS`] (column 0 is the tag).
    pub fn add_product(&mut self, r: &sqlx::any::AnyRow) -> Result<()> {
        let sku = Sku::parse(&r.get::<String, _>(1)).map_err(Error::internal)?;
        let base = ItemFacts {
            name: r.get(2),
            unit: Unit::parse(&r.get::<String, _>(3)).map_err(Error::internal)?,
            list_fen: r.get(4),
            override_fen: None,
            listed: None,
            snoozed_until: None,
        };
        self.products
            .entry(sku.clone())
            .or_insert_with(|| base.clone());
        if let Some(store) = r.get::<Option<String>, _>(5) {
            let store = StoreId::parse(&store).map_err(Error::internal)?;
            let on_hand: i64 = r.get(9);
            let reserved: i64 = r.get(10);
            let facts = ItemFacts {
                override_fen: r.get(6),
                listed: Some(r.get::<i64, _>(7) != 0),
                snoozed_until: r.get(8),
                ..base
            };
            self.stock.insert(
                (store, sku),
                Stock {
                    facts,
                    sellable: on_hand - reserved,
                    reserve: 0,
                },
            );
        }
        Ok(())
    }
}

/// A line a platform already sold: priced and mapped by channel ingest.
pub(crate) struct SoldLine {
    pub line: OrderLine,
    /// Stock of `line.sku` to reserve, even when short; `None`: unmapped.
    pub reserve: Option<i64>,
}

/// The order's note and attention flags, given the index of its first line
/// short of stock.
pub(crate) type Finish<'a> = &'a (dyn Fn(Option<usize>) -> (Option<String>, Vec<String>) + Sync);

/// A platform's order: never refused for stock, flagged instead.
pub(crate) struct Sold<'a> {
    pub lines: &'a [SoldLine],
    pub finish: Finish<'a>,
}

/// One new order as the plan takes it.
pub(crate) struct Input<'a> {
    pub new: &'a NewOrder,
    pub idem: Option<&'a IdemKey>,
    /// `None`: `new.lines` are priced from the catalog.
    pub sold: Option<Sold<'a>>,
}

/// Stock one planned order reserves.
pub(crate) struct Take {
    pub sku: Sku,
    pub quantity: Quantity,
    /// Only if on hand less reserved covers it (else: reserve anyway).
    pub guarded: bool,
}

/// A new order, decided: its view, its answer body and its rows.
pub(crate) struct Planned {
    pub order: Order,
    /// The order as JSON: the idempotent answer, inside the feed event.
    pub body: String,
    /// Every row it writes, in [`TABLES`] order.
    pub rows: Vec<(&'static Table, Vec<Val>)>,
    pub takes: Vec<Take>,
}

/// What an order comes to.
pub(crate) enum Outcome {
    Refused(Error),
    Replay {
        status: u16,
        body: String,
    },
    /// The same idempotency key as an order planned earlier (batch index).
    SameKeyAs(usize),
    /// The same channel order id as an order planned earlier (batch index).
    SameRefAs(usize),
    /// An order already in the database with this channel order id.
    Existing(String),
    Written(Box<Planned>),
}

/// Plans orders one after the other against the running state: stock,
/// feed numbers and display numbers taken by one order are gone for the next.
pub(crate) struct Planner {
    pub facts: Facts,
    now: i64,
    day: String,
    keys: HashMap<(String, String), (usize, String)>,
    refs: HashMap<(StoreId, &'static str, String, String), usize>,
    prepaid: HashSet<(String, String)>,
}

impl Planner {
    pub fn new(facts: Facts, now: i64) -> Planner {
        Planner {
            facts,
            now,
            day: clock::business_day(now),
            keys: HashMap::new(),
            refs: HashMap::new(),
            prepaid: HashSet::new(),
        }
    }

    /// Decides order `idx` (its place in the batch).
    pub fn plan(&mut self, idx: usize, input: &Input<'_>) -> Result<Outcome> {
        let (new, now) = (input.new, self.now);
        if let Some(k) = input.idem {
            let key = (k.owner.clone(), k.key.clone());
            if let Some((hash, status, body)) = self.facts.answered.get(&key) {
                return Ok(if *hash == k.request_hash {
                    Outcome::Replay {
                        status: *status,
                        body: body.clone(),
                    }
                } else {
                    Outcome::Refused(idem_conflict())
                });
            }
            if let Some((first, hash)) = self.keys.get(&key) {
                return Ok(if *hash == k.request_hash {
                    Outcome::SameKeyAs(*first)
                } else {
                    Outcome::Refused(idem_conflict())
                });
            }
        }
        if !self.facts.heads.contains_key(&new.store) {
            return Ok(Outcome::Refused(
                Error::new(Code::UnknownStore, format!("no store {}", new.store)).in_body(),
            ));
        }
        let platform = new.platform.clone().unwrap_or_default();
        if let Some(r) = &new.channel_order_id {
            let key = (
                new.store.clone(),
                new.channel.as_str(),
                platform.clone(),
                r.clone(),
            );
            if let Some(first) = self.refs.get(&key) {
                return Ok(Outcome::SameRefAs(*first));
            }
            let db_key = (
                new.store.to_string(),
                new.channel.as_str().to_owned(),
                platform.clone(),
                r.clone(),
            );
            if let Some(id) = self.facts.refs.get(&db_key) {
                return Ok(Outcome::Existing(id.clone()));
            }
        }

        // Price and check every line, taking stock from a scratch list first.
        let mut lines = Vec::with_capacity(new.lines.len());
        let mut takes: Vec<Take> = Vec::new();
        let mut total = Money::ZERO;
        let mut first_short = None;
        // A counter sale that already happened: its flags and price notes.
        let mut happened_flags: Vec<&'static str> = Vec::new();
        let mut price_notes: Vec<String> = Vec::new();
        match &input.sold {
            None if new.happened.is_some() => {
                for line in &new.lines {
                    let key = (new.store.clone(), line.sku.clone());
                    let facts = self
                        .facts
                        .stock
                        .get(&key)
                        .map(|s| &s.facts)
                        .or_else(|| self.facts.products.get(&line.sku));
                    let h = match check_happened_line(facts, &new.store, line, now) {
                        Ok(h) => h,
                        Err(e) => return Ok(Outcome::Refused(e)),
                    };
                    let mut flag = |f: &'static str| {
                        if !happened_flags.contains(&f) {
                            happened_flags.push(f);
                        }
                    };
                    // Sold already: taken even when short, and flagged.
                    if self.sellable(&new.store, &line.sku, &takes) < h.line.quantity.milli() {
                        flag(SHORT_STOCK);
                    }
                    if h.unavailable {
                        flag(UNAVAILABLE_ITEMS);
                    }
                    if let Some(current) = h.price_now {
                        flag(PRICE_DIFFERS);
                        price_notes.push(format!(
                            "{} {} (now {current})",
                            line.sku, h.line.unit_price
                        ));
                    }
                    takes.push(Take {
                        sku: line.sku.clone(),
                        quantity: h.line.quantity,
                        guarded: false,
                    });
                    total = match total.checked_add(h.line.line_total) {
                        Some(t) => t,
                        None => {
                            return Ok(Outcome::Refused(Error::new(
                                Code::InvalidQuantity,
                                "order total is too large",
                            )));
                        }
                    };
                    lines.push(h.line);
                }
            }
            None => {
                for line in &new.lines {
                    let key = (new.store.clone(), line.sku.clone());
                    let facts = self
                        .facts
                        .stock
                        .get(&key)
                        .map(|s| &s.facts)
                        .or_else(|| self.facts.products.get(&line.sku));
                    let priced = match check_line(facts, &new.store, line, now) {
                        Ok(l) => l,
                        Err(e) => return Ok(Outcome::Refused(e)),
                    };
                    if self.sellable(&new.store, &line.sku, &takes) < priced.quantity.milli() {
                        return Ok(Outcome::Refused(out_of_stock(
                            &new.store,
                            &line.sku,
                            priced.quantity,
                        )));
                    }
                    takes.push(Take {
                        sku: line.sku.clone(),
                        quantity: priced.quantity,
                        guarded: true,
                    });
                    total = match total.checked_add(priced.line_total) {
                        Some(t) => t,
                        None => {
                            return Ok(Outcome::Refused(Error::new(
                                Code::InvalidQuantity,
                                "order total is too large",
                            )));
                        }
                    };
                    lines.push(priced);
                }
            }
            Some(sold) => {
                for (i, s) in sold.lines.iter().enumerate() {
                    if let Some(milli) = s.reserve {
                        if self.sellable(&new.store, &s.line.sku, &takes) < milli
                            && first_short.is_none()
                        {
                            first_short = Some(i);
                        }
                        takes.push(Take {
                            sku: s.line.sku.clone(),
                            quantity: Quantity::from_milli(s.line.unit, milli),
                            guarded: false,
                        });
                    }
                    total = match total.checked_add(s.line.line_total) {
                        Some(t) => t,
                        None => {
                            return Ok(Outcome::Refused(Error::new(
                                Code::InvalidItem,
                                "order total is too large",
                            )));
                        }
                    };
                    lines.push(s.line.clone());
                }
            }
        }
        if let Some(p) = &new.prepaid {
            if let Err(e) = p.check_total(total) {
                return Ok(Outcome::Refused(e));
            }
            let key = (p.provider.clone(), p.reference.clone());
            if self.prepaid.contains(&key) || self.facts.prepaid.contains(&key) {
                return Ok(Outcome::Refused(prepaid_reference_used(p)));
            }
            self.prepaid.insert(key);
        }

        // Accepted: take its stock and its numbers.
        for t in &takes {
            if let Some(s) = self
                .facts
                .stock
                .get_mut(&(new.store.clone(), t.sku.clone()))
            {
                s.sellable -= t.quantity.milli();
                s.reserve += t.quantity.milli();
            }
        }
        let head = self
            .facts
            .heads
            .get_mut(&new.store)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("store state")))?;
        head.seq += 1;
        head.display += 1;
        head.written = true;
        let (note, attention) = match &input.sold {
            Some(sold) => (sold.finish)(first_short),
            None if new.happened.is_some() => (
                happened_note(&happened_flags, &price_notes, new.note.as_deref()),
                happened_flags.iter().map(|f| (*f).to_owned()).collect(),
            ),
            None => (new.note.clone(), Vec::new()),
        };
        let mut order = fresh_order(
            new,
            Fresh {
                id: uuid::Uuid::now_v7().to_string(),
                seq: head.seq,
                display_no: head.display,
                day: self.day.clone(),
                lines,
                total,
                note,
                now,
            },
        );
        order.attention = attention;
        let body = serde_json::to_string(&order).map_err(Error::internal)?;
        let rows = rows(input, &order, &body, now);
        if let Some(k) = input.idem {
            self.keys.insert(
                (k.owner.clone(), k.key.clone()),
                (idx, k.request_hash.clone()),
            );
        }
        if let Some(r) = &new.channel_order_id {
            self.refs.insert(
                (new.store.clone(), new.channel.as_str(), platform, r.clone()),
                idx,
            );
        }
        Ok(Outcome::Written(Box::new(Planned {
            order,
            body,
            rows,
            takes,
        })))
    }

    /// What is left of a product in a store, less `takes` of the order
    /// being planned (nothing when the store has no record of it).
    fn sellable(&self, store: &StoreId, sku: &Sku, takes: &[Take]) -> i64 {
        // Each quantity is at most MAX_MILLI; saturating keeps even absurd sums refusable.
        let already = takes
            .iter()
            .filter(|t| t.sku == *sku)
            .fold(0_i64, |a, t| a.saturating_add(t.quantity.milli()));
        self.facts
            .stock
            .get(&(store.clone(), sku.clone()))
            .map(|s| s.sellable)
            .unwrap_or(0)
            .saturating_sub(already)
    }
}

/// A happened sale's note: its flags first (with the counter's and the
/// catalog's prices where they differ), then the counter's own note, as a
/// platform order's note leads with its flags.
fn happened_note(flags: &[&str], prices: &[String], own: Option<&str>) -> Option<String> {
    let mut parts = Vec::new();
    if !flags.is_empty() {
        let mut s = format!("⚠ {}", flags.join(", "));
        if !prices.is_empty() {
            s.push_str(&format!(": {}", prices.join("; ")));
        }
        parts.push(s);
    }
    parts.extend(own.map(str::to_owned));
    let note: String = parts
        .join(" | ")
        .chars()
        .take(super::MAX_NOTE_CHARS)
        .collect();
    (!note.is_empty()).then_some(note)
}

/// The rows of a new order: the order, its lines, the first history row,
/// the `order.created` feed event, a happened sale's record, the prepayment
/// and the idempotent answer.
fn rows(input: &Input<'_>, order: &Order, body: &str, now: i64) -> Vec<(&'static Table, Vec<Val>)> {
    let new = input.new;
    let mut rows = Vec::with_capacity(order.lines.len() + 5);
    rows.push((
        &ORDERS,
        vec![
            Val::S(order.id.clone()),
            Val::S(order.store_id.to_string()),
            Val::S(order.channel.as_str().to_owned()),
            Val::S(order.platform.clone().unwrap_or_default()),
            Val::OS(order.channel_order_id.clone()),
            Val::I(order.display_no),
            Val::S(order.business_day.clone()),
            Val::S(order.status.as_str().to_owned()),
            Val::S(order.payment_status.as_str().to_owned()),
            Val::I(order.total.fen()),
            Val::OS(order.note.clone()),
            Val::S(new.actor.clone()),
            Val::I(now),
            Val::I(now),
            Val::I(order.seq),
        ],
    ));
    for (i, l) in order.lines.iter().enumerate() {
        rows.push((
            &ORDER_LINES,
            vec![
                Val::S(order.id.clone()),
                Val::I(i as i64 + 1),
                Val::S(l.sku.to_string()),
                Val::S(l.name.clone()),
                Val::S(l.unit.as_str().to_owned()),
                Val::I(l.quantity.milli()),
                Val::I(l.unit_price.fen()),
                Val::I(l.line_total.fen()),
            ],
        ));
    }
    rows.push((
        &ORDER_HISTORY,
        vec![
            Val::S(order.id.clone()),
            Val::I(now),
            Val::S(new.actor.clone()),
            Val::OS(None),
            Val::S(OrderStatus::Created.as_str().to_owned()),
            Val::OS(None),
        ],
    ));
    rows.push((
        &ORDER_EVENTS,
        vec![
            Val::S(order.store_id.to_string()),
            Val::I(order.seq),
            Val::S(order.id.clone()),
            Val::S("order.created".to_owned()),
            Val::I(now),
            Val::S(format!(
                "{{\"type\":\"order.created\",\"seq\":{},\"order\":{body}}}",
                order.seq
            )),
        ],
    ));
    if let Some(h) = &new.happened {
        rows.push((
            &COUNTER_SALES,
            vec![
                Val::S(order.id.clone()),
                Val::I(h.sold_at),
                Val::OS(h.catalog_version.clone()),
                Val::S(order.attention.join(",")),
                Val::I(now),
            ],
        ));
    }
    if let Some(p) = &new.prepaid {
        rows.push((
            &PREPAYMENTS,
            vec![
                Val::S(order.id.clone()),
                Val::S(p.provider.clone()),
                Val::S(p.reference.clone()),
                Val::I(p.amount.fen()),
                Val::I(now),
            ],
        ));
    }
    if let Some(k) = input.idem {
        rows.push((
            &IDEMPOTENCY_KEYS,
            vec![
                Val::S(k.owner.clone()),
                Val::S(k.key.clone()),
                Val::S(k.request_hash.clone()),
                Val::I(201),
                Val::S(body.to_owned()),
                Val::I(now),
            ],
        ));
    }
    rows
}

fn idem_conflict() -> Error {
    Error::new(
        Code::IdempotencyConflict,
        "this Idempotency-Key was already used with a different request",
    )
}

/// Plans one order and writes it in the caller's transaction (either
/// engine), statement by statement; the caller commits a `Written` order
/// and drops the transaction otherwise. A refusal is the error.
///
/// The idempotency key is claimed first (a concurrent request with the same
/// key waits for this one's commit on PostgreSQL), then the store row is
/// taken (its next feed number) before anything of the store is read.
pub(crate) async fn write_one(
    conn: &mut AnyConnection,
    input: &Input<'_>,
    now: i64,
) -> Result<Outcome> {
    let new = input.new;
    let mut facts = Facts::default();
    if let Some(k) = input.idem {
        let fresh = sqlx::query(
            "INSERT INTO idempotency_keys (key_id, idem_key, request_hash, status_code, response, created_at)
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (key_id, idem_key) DO NOTHING",
        )
        .bind(k.owner.clone())
        .bind(k.key.clone())
        .bind(k.request_hash.clone())
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            let row = sqlx::query(
                "SELECT request_hash, status_code, response FROM idempotency_keys
                 WHERE key_id = $1 AND idem_key = $2",
            )
            .bind(k.owner.clone())
            .bind(k.key.clone())
            .fetch_one(&mut *conn)
            .await?;
            let status = u16::try_from(row.get::<i64, _>("status_code")).unwrap_or(200);
            facts.answered.insert(
                (k.owner.clone(), k.key.clone()),
                (row.get("request_hash"), status, row.get("response")),
            );
            return finish_one(Planner::new(facts, now).plan(0, input)?);
        }
    }
    // The store row lock, taken first by every order write of this store
    // (no row: no such store, which the plan refuses).
    if let Some(seq) = events::next_seq(conn, &new.store).await? {
        let display: Option<i64> = sqlx::query(
            "SELECT last_no FROM display_counters WHERE store_id = $1 AND business_day = $2",
        )
        .bind(new.store.as_str().to_owned())
        .bind(clock::business_day(now))
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get(0));
        facts.heads.insert(
            new.store.clone(),
            Head {
                seq: seq - 1,
                display: display.unwrap_or(0),
                written: false,
            },
        );
    } else {
        return finish_one(Planner::new(facts, now).plan(0, input)?);
    }
    if let Some(ref_id) = &new.channel_order_id
        && let Some(id) = find_by_channel_ref(
            conn,
            &new.store,
            new.channel,
            new.platform.as_deref(),
            ref_id,
        )
        .await?
    {
        return Ok(Outcome::Existing(id));
    }
    let mut skus: Vec<&Sku> = match &input.sold {
        None => new.lines.iter().map(|l| &l.sku).collect(),
        Some(sold) => sold
            .lines
            .iter()
            .filter(|l| l.reserve.is_some())
            .map(|l| &l.line.sku)
            .collect(),
    };
    skus.sort();
    skus.dedup();
    if !skus.is_empty() {
        let sql = format!(
            "SELECT 'P', {PRODUCT_COLS}
             FROM products p LEFT JOIN store_items i ON i.sku = p.sku AND i.store_id = $1
             WHERE p.sku IN ({})",
            (2..skus.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(new.store.as_str().to_owned());
        for s in &skus {
            q = q.bind(s.as_str().to_owned());
        }
        for r in q.fetch_all(&mut *conn).await? {
            facts.add_product(&r)?;
        }
    }
    if let Some(p) = &new.prepaid
        && find_prepaid(conn, p).await?.is_some()
    {
        facts
            .prepaid
            .insert((p.provider.clone(), p.reference.clone()));
    }

    let outcome = Planner::new(facts, now).plan(0, input)?;
    let Outcome::Written(planned) = &outcome else {
        return finish_one(outcome);
    };
    for t in &planned.takes {
        reserve(conn, &new.store, t).await?;
    }
    sqlx::query(
        "INSERT INTO display_counters (store_id, business_day, last_no) VALUES ($1, $2, $3)
         ON CONFLICT (store_id, business_day) DO UPDATE SET last_no = excluded.last_no",
    )
    .bind(new.store.as_str().to_owned())
    .bind(planned.order.business_day.clone())
    .bind(planned.order.display_no)
    .execute(&mut *conn)
    .await?;
    for (table, vals) in &planned.rows {
        let upsert = table.upsert_tail();
        let sql = format!(
            "{} VALUES ({}){upsert}",
            table.insert_head(),
            (1..=vals.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in vals {
            q = match v {
                Val::I(i) => q.bind(*i),
                Val::S(s) => q.bind(s.clone()),
                Val::OS(s) => q.bind(s.clone()),
                Val::OI(i) => q.bind(*i),
            };
        }
        match q.execute(&mut *conn).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(d))
                if d.is_unique_violation() && table.name == PREPAYMENTS.name =>
            {
                if let Some(p) = &new.prepaid {
                    return Err(prepaid_reference_used(p));
                }
                return Err(Error::internal(sqlx::Error::Database(d)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}

/// One order's outcome: a refusal is the error.
fn finish_one(outcome: Outcome) -> Result<Outcome> {
    match outcome {
        Outcome::Refused(e) => Err(e),
        other => Ok(other),
    }
}

/// Reserves what a planned order takes. Guarded: never more than on hand
/// less reserved (the plan checked it under the store row; this holds it
/// even so).
async fn reserve(conn: &mut AnyConnection, store: &StoreId, t: &Take) -> Result<()> {
    let sql = if t.guarded {
        "UPDATE store_items SET reserved = reserved + $1
         WHERE store_id = $2 AND sku = $3 AND on_hand - reserved >= $1"
    } else {
        "UPDATE store_items SET reserved = reserved + $1 WHERE store_id = $2 AND sku = $3"
    };
    let n = sqlx::query(sql)
        .bind(t.quantity.milli())
        .bind(store.as_str().to_owned())
        .bind(t.sku.as_str().to_owned())
        .execute(conn)
        .await?
        .rows_affected();
    if t.guarded && n != 1 {
        return Err(out_of_stock(store, &t.sku, t.quantity));
    }
    Ok(())
}
