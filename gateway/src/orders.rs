//! Order use cases: create (reserving stock), act on an order (the state
//! machine), read one, list a store's queue. Each write is one transaction.
//! A new order is decided and its rows built by the one plan (`plan.rs`),
//! executed one order at a time or in groups (`batch.rs` on SQLite,
//! `pgbatch.rs` on PostgreSQL).

mod batch;
mod group;
pub mod held;
mod pgbatch;
pub(crate) mod plan;
pub(crate) mod sold;

pub use batch::Batcher;
pub use group::{Faults, GroupCommit};
pub use pgbatch::PgBatcher;

use proto::order::{
    self as po, Channel, Money, Order, OrderAction, OrderLine, OrderStatus, PaymentStatus,
    Quantity, Sku, StatusChange, StoreId, Unit,
};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock;
use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::{self, Hub};

pub const MAX_LINES: usize = 100;
pub const MAX_NOTE_CHARS: usize = 500;
pub const MAX_REASON_CHARS: usize = 200;

/// One requested line, before the catalog has priced it.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub sku: Sku,
    /// As sent; parsed once the product's unit is known.
    pub quantity: String,
    /// What the counter charged per unit, for a sale that already happened
    /// ([`NewOrder::happened`]) only.
    pub unit_price: Option<Money>,
}

/// A counter sale that already happened (sold while the gateway was away,
/// uploaded later): the goods are gone and the customer paid, so it is never
/// refused for stock or availability. It is priced as the counter charged,
/// and flagged where that or the stock differs from the gateway's records.
#[derive(Debug, Clone)]
pub struct Happened {
    /// When the counter sold it, in microseconds (the store PC's clock).
    pub sold_at: i64,
    /// The catalog version the counter priced it from, as it said.
    pub catalog_version: Option<String>,
}

/// Flags on an order the store must look at ([`Order::attention`]). The
/// first two are also a delivery platform's (`channels::ingest`).
pub const SHORT_STOCK: &str = "short_stock";
pub const UNAVAILABLE_ITEMS: &str = "unavailable_items";
/// A counter sale charged another unit price than the catalog's now.
pub const PRICE_DIFFERS: &str = "price_differs";

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub store: StoreId,
    pub channel: Channel,
    pub platform: Option<String>,
    /// The channel's own id of this order; a second order with the same id
    /// in the same store and channel returns the first.
    pub channel_order_id: Option<String>,
    pub lines: Vec<NewLine>,
    pub note: Option<String>,
    pub payment_status: PaymentStatus,
    /// Paid before it reached us (in the brand's app); the order is then
    /// created `paid` and the reference recorded with it.
    pub prepaid: Option<Prepaid>,
    /// Who placed it, for the history: an [`Actor`](crate::actor::Actor)'s text
    /// (`terminal:S001-T01`, `platform:meituan`, …).
    pub actor: String,
    /// A counter sale that already happened; `None`: a new order, refused
    /// when stock is short.
    pub happened: Option<Happened>,
}

/// A payment made outside the gateway, as the app reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prepaid {
    /// Who took the money, e.g. `wechat_miniprogram`.
    pub provider: String,
    /// The provider's transaction id: pays one order only.
    pub reference: String,
    /// What the customer paid; must equal the order's total.
    pub amount: Money,
}

pub const MAX_PREPAID_FIELD: usize = 64;

impl Prepaid {
    /// Checks the shape: short printable provider and reference.
    pub fn new(provider: &str, reference: &str, amount: Money) -> Result<Prepaid> {
        let ok = |v: &str| {
            !v.is_empty() && v.len() <= MAX_PREPAID_FIELD && v.chars().all(|c| c.is_ascii_graphic())
        };
        if !ok(provider) || !ok(reference) {
            return Err(Error::new(
                Code::InvalidPrepaid,
                format!(
                    "prepaid provider and transaction_id must be 1-{MAX_PREPAID_FIELD} visible ASCII characters"
                ),
            ));
        }
        if amount.fen() < 0 {
            return Err(Error::new(
                Code::InvalidPrepaid,
                "prepaid amount cannot be negative",
            ));
        }
        Ok(Prepaid {
            provider: provider.to_owned(),
            reference: reference.to_owned(),
            amount,
        })
    }

    /// The app's amount must be what our prices make the order.
    pub(crate) fn check_total(&self, total: Money) -> Result<()> {
        if self.amount != total {
            return Err(Error::new(
                Code::PrepaidAmountMismatch,
                format!(
                    "the app reports {} paid but the order comes to {total}",
                    self.amount
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) fn prepaid_reference_used(p: &Prepaid) -> Error {
    Error::new(
        Code::PrepaidReferenceUsed,
        format!(
            "{} transaction {} already paid another order",
            p.provider, p.reference
        ),
    )
}

/// The order paid by this prepayment reference, if any.
pub(crate) async fn find_prepaid(conn: &mut AnyConnection, p: &Prepaid) -> Result<Option<String>> {
    let row =
        sqlx::query("SELECT order_id FROM prepayments WHERE provider = $1 AND reference = $2")
            .bind(p.provider.clone())
            .bind(p.reference.clone())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|r| r.get(0)))
}

/// An `Idempotency-Key` as seen by the order store: scoped to the caller.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub owner: String,
    pub key: String,
    pub request_hash: String,
}

pub enum Created {
    /// A new order (or the existing one for a repeated channel order id,
    /// `replayed` set).
    Order { order: Box<Order>, replayed: bool },
    /// A repeated idempotency key: the stored original answer.
    Replay { status: u16, body: String },
}

pub fn check_note(note: Option<String>) -> Result<Option<String>> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE_CHARS => Err(Error::new(
            Code::InvalidNote,
            format!("note is longer than {MAX_NOTE_CHARS} characters"),
        )),
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

pub fn check_reason(action: OrderAction, reason: Option<String>) -> Result<Option<String>> {
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    match &reason {
        None if action.needs_reason() => Err(Error::new(
            Code::ReasonRequired,
            format!("{} needs a reason", action.as_str()),
        )),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(Error::new(
            Code::InvalidReason,
            format!("reason is longer than {MAX_REASON_CHARS} characters"),
        )),
        _ => Ok(reason),
    }
}

/// How new orders reach the database: group-committed, a supervised task
/// taking the orders that arrive together ([`Batcher`] on SQLite, on a
/// connection of its own; [`PgBatcher`] on PostgreSQL); or, when none was
/// started, each in a transaction of its own. Started by whoever opens the
/// store for serving (`app::build`), carried in the handlers' state.
#[derive(Clone, Default)]
pub struct Writer {
    group: Option<GroupCommit>,
}

impl Writer {
    /// Every order in a transaction of its own.
    pub fn direct() -> Writer {
        Writer::default()
    }

    /// The writer for this database: a group commit on either engine
    /// ([`Batcher`] on SQLite, [`PgBatcher`] on PostgreSQL).
    pub async fn start(db: &Db) -> anyhow::Result<Writer> {
        match db.sqlite_file() {
            Some(file) => Ok(Writer {
                group: Some(Batcher::start(file, db.clone()).await?),
            }),
            None => Ok(Writer::start_pg(db)),
        }
    }

    fn start_pg(db: &Db) -> Writer {
        Writer {
            group: (db.backend == crate::db::Backend::Postgres)
                .then(|| PgBatcher::start(db.clone())),
        }
    }

    /// The same, the SQLite WAL checkpoint returned as a job for the
    /// gateway's scheduler instead of started.
    pub async fn start_jobs(db: &Db) -> anyhow::Result<(Writer, Option<crate::jobs::Job>)> {
        match db.sqlite_file() {
            Some(file) => {
                let (group, job) = Batcher::start_jobs(file, db.clone()).await?;
                Ok((Writer { group: Some(group) }, Some(job)))
            }
            None => Ok((Writer::start_pg(db), None)),
        }
    }

    /// Its group commit, when it has one.
    pub fn group(&self) -> Option<&GroupCommit> {
        self.group.as_ref()
    }

    /// The test faults of its group commit (`None`: every order on the
    /// direct path).
    pub fn faults(&self) -> Option<&Faults> {
        self.group.as_ref().map(GroupCommit::faults)
    }

    /// Orders waiting in its group commit's queue, not yet taken by the
    /// writer.
    pub fn queued(&self) -> usize {
        self.group.as_ref().map_or(0, GroupCommit::queued)
    }
}

/// Creates an order: prices every line from the catalog, reserves its stock,
/// numbers it for the day, and records it in the store feed — all or nothing.
pub async fn create(
    db: &Db,
    hub: &Hub,
    writer: &Writer,
    mut new: NewOrder,
    idem: Option<IdemKey>,
) -> Result<Created> {
    check_shape(&mut new)?;
    let store = new.store.clone();
    let channel = new.channel;
    let created = match writer.group() {
        // Many orders share one transaction (group commit): on SQLite one
        // writer's, on PostgreSQL across instances under the store row locks.
        Some(group) => group.create(new, idem).await?,
        None => create_direct(db, new, idem).await?,
    };
    if matches!(
        created,
        Created::Order {
            replayed: false,
            ..
        }
    ) {
        hub.notify(&store);
        crate::meter::order_created(channel.as_str());
    }
    Ok(created)
}

/// Writes a platform's order, its items mapped by channel ingest: in the
/// group commit with the other new orders (either engine), else in a
/// transaction of its own. The caller notifies the store's feed readers.
pub(crate) async fn create_sold(
    db: &Db,
    writer: &Writer,
    sold: sold::SoldOrder,
) -> Result<sold::SoldAnswer> {
    match writer.group() {
        Some(group) => group.create_sold(sold).await,
        None => sold::create_direct(db, sold).await,
    }
}

/// Checks what needs no database, and normalises the note (blank → none).
fn check_shape(new: &mut NewOrder) -> Result<()> {
    if new.lines.is_empty() {
        return Err(Error::new(
            Code::InvalidLines,
            "an order needs at least one line",
        ));
    }
    if new.lines.len() > MAX_LINES {
        return Err(Error::new(
            Code::InvalidLines,
            format!("an order has at most {MAX_LINES} lines"),
        ));
    }
    new.note = check_note(new.note.take())?;
    if new.happened.is_none() && new.lines.iter().any(|l| l.unit_price.is_some()) {
        return Err(Error::new(
            Code::InvalidLines,
            "a line's unit price is only for a sale that already happened (give its sold_at)",
        ));
    }
    if new.happened.is_some() && new.prepaid.is_some() {
        return Err(Error::new(
            Code::InvalidPrepaid,
            "a counter sale that already happened is not prepaid in the app",
        ));
    }
    if new.prepaid.is_some() {
        new.payment_status = PaymentStatus::Paid;
    }
    Ok(())
}

/// What a new order gets when it is written.
pub(crate) struct Fresh {
    pub id: String,
    pub seq: i64,
    pub display_no: i64,
    pub day: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub note: Option<String>,
    pub now: i64,
}

/// The view of a just-created order, as every surface shows it.
pub(crate) fn fresh_order(new: &NewOrder, f: Fresh) -> Order {
    Order {
        id: f.id,
        store_id: new.store.clone(),
        channel: new.channel,
        platform: new.platform.clone(),
        channel_order_id: new.channel_order_id.clone(),
        display_no: f.display_no,
        business_day: f.day,
        status: OrderStatus::Created,
        payment_status: new.payment_status,
        lines: f.lines,
        total: f.total,
        currency: po::CURRENCY,
        note: f.note,
        created_at: clock::rfc3339(f.now),
        updated_at: clock::rfc3339(f.now),
        seq: f.seq,
        history: vec![StatusChange {
            at: clock::rfc3339(f.now),
            by: new.actor.clone(),
            from: None,
            to: OrderStatus::Created,
            reason: None,
        }],
        attention: Vec::new(),
        sold_at: new.happened.as_ref().map(|h| clock::rfc3339(h.sold_at)),
    }
}

/// Creates one order in a transaction of its own: the one plan
/// ([`plan::write_one`]), statement by statement.
pub(crate) async fn create_direct(
    db: &Db,
    new: NewOrder,
    idem: Option<IdemKey>,
) -> Result<Created> {
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let input = plan::Input {
        new: &new,
        idem: idem.as_ref(),
        sold: None,
    };
    let planned = match plan::write_one(&mut tx, &input, now).await? {
        plan::Outcome::Written(planned) => planned,
        plan::Outcome::Replay { status, body } => return Ok(Created::Replay { status, body }),
        plan::Outcome::Existing(id) => {
            let order = load(&mut tx, &id)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("order vanished")))?;
            // Nothing changed: the transaction (and the feed number) is dropped.
            drop(tx);
            return Ok(Created::Order {
                order: Box::new(order),
                replayed: true,
            });
        }
        plan::Outcome::Refused(e) => return Err(e),
        plan::Outcome::SameKeyAs(_) | plan::Outcome::SameRefAs(_) => {
            return Err(Error::internal(anyhow::anyhow!(
                "a batch outcome for a single order"
            )));
        }
    };
    match tx.commit().await {
        Ok(()) => {}
        Err(e) if is_unique_violation(&e) && new.channel_order_id.is_some() => {
            // Another instance created the same channel order meanwhile.
            let mut conn = db.pool.acquire().await?;
            let id = find_by_channel_ref(
                &mut conn,
                &new.store,
                new.channel,
                new.platform.as_deref(),
                new.channel_order_id.as_deref().unwrap_or_default(),
            )
            .await?
            .ok_or_else(|| Error::internal(e))?;
            let order = load(&mut conn, &id)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("order vanished")))?;
            return Ok(Created::Order {
                order: Box::new(order),
                replayed: true,
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Created::Order {
        order: Box::new(planned.order),
        replayed: false,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(crate) fn feed_payload(kind: &str, seq: i64, order: &Order) -> Result<String> {
    feed_payload_with(kind, seq, order, None)
}

/// The same, saying who owes the customer a refund (`"elsewhere"`: not the
/// gateway) when a paid order closes.
fn feed_payload_with(
    kind: &str,
    seq: i64,
    order: &Order,
    refund_due: Option<&str>,
) -> Result<String> {
    #[derive(Serialize)]
    struct Payload<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        seq: i64,
        order: &'a Order,
        #[serde(skip_serializing_if = "Option::is_none")]
        refund_due: Option<&'a str>,
    }
    serde_json::to_string(&Payload {
        kind,
        seq,
        order,
        refund_due,
    })
    .map_err(Error::internal)
}

pub(crate) async fn find_by_channel_ref(
    conn: &mut AnyConnection,
    store: &StoreId,
    channel: Channel,
    platform: Option<&str>,
    ref_id: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT id FROM orders WHERE store_id = $1 AND channel = $2 AND platform = $3 AND channel_order_id = $4",
    )
    .bind(store.as_str().to_owned())
    .bind(channel.as_str())
    .bind(platform.unwrap_or_default().to_owned())
    .bind(ref_id.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What the catalog says about one product in one store.
#[derive(Debug, Clone)]
pub(crate) struct ItemFacts {
    pub name: String,
    pub unit: Unit,
    pub list_fen: i64,
    pub override_fen: Option<i64>,
    /// `None`: the store has no record of the product (no stock).
    pub listed: Option<bool>,
    pub snoozed_until: Option<i64>,
}

impl ItemFacts {
    /// What this store charges per unit now: its override, else the list price.
    pub fn current_price(&self) -> Money {
        Money::from_fen(self.override_fen.unwrap_or(self.list_fen))
    }
}

/// The rules for one order line, in one place: the product exists, the
/// quantity fits its unit, the store sells it now; priced half-up to the fen.
pub(crate) fn check_line(
    item: Option<&ItemFacts>,
    store: &StoreId,
    line: &NewLine,
    now: i64,
) -> Result<OrderLine> {
    let item = known(item, line)?;
    let quantity = Quantity::parse(item.unit, &line.quantity)?;
    if let Some(why) = unavailable(item, store, line, now) {
        return Err(Error::new(Code::ItemUnavailable, why));
    }
    priced(item, line, quantity, item.current_price())
}

/// A line of a counter sale that already happened: the product must exist
/// and be one this store keeps; being unlisted or snoozed now does not
/// refuse it (`unavailable` says so), and it is priced at the counter's
/// unit price where the line gives one.
pub(crate) struct HappenedLine {
    pub line: OrderLine,
    pub unavailable: bool,
    /// The catalog's unit price now, when the counter charged another.
    pub price_now: Option<Money>,
}

pub(crate) fn check_happened_line(
    item: Option<&ItemFacts>,
    store: &StoreId,
    line: &NewLine,
    now: i64,
) -> Result<HappenedLine> {
    let item = known(item, line)?;
    let quantity = Quantity::parse(item.unit, &line.quantity)?;
    if item.listed.is_none() {
        return Err(Error::new(
            Code::ItemUnavailable,
            format!("{} is not kept in store {store}", line.sku),
        ));
    }
    let current = item.current_price();
    let charged = line.unit_price.unwrap_or(current);
    Ok(HappenedLine {
        line: priced(item, line, quantity, charged)?,
        unavailable: unavailable(item, store, line, now).is_some(),
        price_now: (charged != current).then_some(current),
    })
}

fn known<'a>(item: Option<&'a ItemFacts>, line: &NewLine) -> Result<&'a ItemFacts> {
    item.ok_or_else(|| Error::new(Code::UnknownSku, format!("no product {}", line.sku)).in_body())
}

/// Why the store does not sell the product now, if it does not.
fn unavailable(item: &ItemFacts, store: &StoreId, line: &NewLine, now: i64) -> Option<String> {
    if item.listed == Some(false) {
        return Some(format!("{} is not sold in store {store}", line.sku));
    }
    item.snoozed_until.filter(|u| *u > now).map(|until| {
        format!(
            "{} is unavailable until {}",
            line.sku,
            clock::rfc3339(until)
        )
    })
}

/// The line at `unit_price`, its total rounded half-up to the fen.
fn priced(
    item: &ItemFacts,
    line: &NewLine,
    quantity: Quantity,
    unit_price: Money,
) -> Result<OrderLine> {
    let line_total = po::line_total(unit_price, quantity)
        .ok_or_else(|| Error::new(Code::InvalidQuantity, "line total is too large"))?;
    Ok(OrderLine {
        sku: line.sku.clone(),
        name: item.name.clone(),
        unit: item.unit,
        quantity,
        unit_price,
        line_total,
    })
}

pub(crate) fn out_of_stock(store: &StoreId, sku: &Sku, q: Quantity) -> Error {
    Error::new(
        Code::OutOfStock,
        format!("not enough {sku} in store {store} for {q}"),
    )
}

#[derive(Clone, Copy)]
enum StockEffect {
    Release,
    Consume,
}

async fn apply_stock(
    conn: &mut AnyConnection,
    store: &StoreId,
    lines: &[OrderLine],
    effect: StockEffect,
) -> Result<()> {
    let sql = match effect {
        StockEffect::Release => {
            "UPDATE store_items SET reserved = CASE WHEN reserved >= $1 THEN reserved - $1 ELSE 0 END
             WHERE store_id = $2 AND sku = $3"
        }
        StockEffect::Consume => {
            "UPDATE store_items SET reserved = CASE WHEN reserved >= $1 THEN reserved - $1 ELSE 0 END,
                                    on_hand = CASE WHEN on_hand >= $1 THEN on_hand - $1 ELSE 0 END
             WHERE store_id = $2 AND sku = $3"
        }
    };
    for l in lines {
        sqlx::query(sql)
            .bind(l.quantity.milli())
            .bind(store.as_str().to_owned())
            .bind(l.sku.as_str().to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn record_history(
    conn: &mut AnyConnection,
    order_id: &str,
    at: i64,
    by: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_history (order_id, at, by_whom, from_status, to_status, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(order_id.to_owned())
    .bind(at)
    .bind(by.to_owned())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(reason.map(str::to_owned))
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends an event about an order to its store's feed and moves the order
/// to the feed's head, so cursor readers see it again. The caller holds the
/// store row (`seq` from `events::next_seq`).
pub async fn append_order_event(
    conn: &mut AnyConnection,
    store: &StoreId,
    seq: i64,
    order_id: &str,
    kind: &str,
    detail: serde_json::Value,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE orders SET seq = $1 WHERE id = $2")
        .bind(seq)
        .bind(order_id.to_owned())
        .execute(&mut *conn)
        .await?;
    let order = load(conn, order_id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("order vanished")))?;
    let payload =
        serde_json::json!({"type": kind, "seq": seq, "order": order, "event": detail}).to_string();
    events::append(conn, store, seq, order_id, kind, now, &payload).await
}

/// Who may do what to an order, beyond seeing its store.
pub type Guard<'a> = &'a (dyn Fn(&Order) -> Result<()> + Send + Sync);

/// Applies a store (or customer) action through the one state machine. A
/// cancel or reject never keeps money the gateway took: it is refused
/// while a charge or refund runs, or while our charge's money is not given
/// back (see `payments::act_refunding`).
pub async fn act(
    db: &Db,
    hub: &Hub,
    id: &str,
    action: OrderAction,
    reason: Option<String>,
    actor: &str,
    guard: Guard<'_>,
) -> Result<Order> {
    let reason = check_reason(action, reason)?;
    let now = db.now_micros();
    let mut tx = db.write().await?;
    let store = order_store(&mut tx, id).await?;
    let seq = events::next_seq(&mut tx, &store)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
    let current = load(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    guard(&current)?;
    let to = po::transition(current.status, action)?;
    let due = match to {
        OrderStatus::Rejected | OrderStatus::Cancelled => {
            held::refund_due(&mut tx, &current.id, current.payment_status).await?
        }
        _ => None,
    };
    let n = sqlx::query(
        "UPDATE orders SET status = $1, updated_at = $2, seq = $3 WHERE id = $4 AND status = $5",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(seq)
    .bind(id.to_owned())
    .bind(current.status.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n != 1 {
        return Err(Error::new(
            Code::ConcurrentUpdate,
            "the order changed meanwhile; reload and retry",
        ));
    }
    match to {
        OrderStatus::Rejected | OrderStatus::Cancelled => {
            apply_stock(&mut tx, &store, &current.lines, StockEffect::Release).await?
        }
        OrderStatus::Completed => {
            apply_stock(&mut tx, &store, &current.lines, StockEffect::Consume).await?
        }
        _ => {}
    }
    record_history(
        &mut tx,
        id,
        now,
        actor,
        Some(current.status),
        to,
        reason.as_deref(),
    )
    .await?;
    // A third-party order's platform hears of it through the outbox.
    crate::outbox::enqueue_for_action(&mut tx, &current, to, reason.as_deref(), actor, now).await?;
    // The order as just written: no need to read it back.
    let mut order = current;
    order.history.push(StatusChange {
        at: clock::rfc3339(now),
        by: actor.to_owned(),
        from: Some(order.status),
        to,
        reason,
    });
    order.status = to;
    order.updated_at = clock::rfc3339(now);
    order.seq = seq;
    let payload = feed_payload_with("order.status_changed", seq, &order, due)?;
    events::append(
        &mut tx,
        &store,
        seq,
        id,
        "order.status_changed",
        now,
        &payload,
    )
    .await?;
    tx.commit().await?;
    hub.notify(&store);
    crate::meter::status_changed(to.as_str());
    Ok(order)
}

fn not_found(id: &str) -> Error {
    Error::new(Code::OrderNotFound, format!("no order {id}"))
}

async fn order_store(conn: &mut AnyConnection, id: &str) -> Result<StoreId> {
    let row = sqlx::query("SELECT store_id FROM orders WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found(id))?;
    StoreId::parse(&row.get::<String, _>(0)).map_err(Error::internal)
}

pub async fn get(db: &Db, id: &str) -> Result<Order> {
    let mut conn = db.pool.acquire().await?;
    load(&mut conn, id).await?.ok_or_else(|| not_found(id))
}

const ORDER_COLS: &str =
    "id, store_id, channel, platform, channel_order_id, display_no, business_day, status,
     payment_status, total_fen, note, created_at, updated_at, seq";

fn order_from_row(r: &sqlx::any::AnyRow) -> Result<Order> {
    let platform: String = r.get("platform");
    Ok(Order {
        id: r.get("id"),
        store_id: StoreId::parse(&r.get::<String, _>("store_id")).map_err(Error::internal)?,
        channel: Channel::parse(&r.get::<String, _>("channel")).map_err(Error::internal)?,
        platform: (!platform.is_empty()).then_some(platform),
        channel_order_id: r.get("channel_order_id"),
        display_no: r.get("display_no"),
        business_day: r.get("business_day"),
        status: OrderStatus::parse(&r.get::<String, _>("status")).map_err(Error::internal)?,
        payment_status: PaymentStatus::parse(&r.get::<String, _>("payment_status"))
            .map_err(Error::internal)?,
        lines: Vec::new(),
        total: Money::from_fen(r.get("total_fen")),
        currency: po::CURRENCY,
        note: r.get("note"),
        created_at: clock::rfc3339(r.get("created_at")),
        updated_at: clock::rfc3339(r.get("updated_at")),
        seq: r.get("seq"),
        history: Vec::new(),
        attention: Vec::new(),
        sold_at: None,
    })
}

/// Loads one order with its lines and history.
pub async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut orders = vec![order_from_row(&row)?];
    fill_details(conn, &mut orders).await?;
    Ok(orders.pop())
}

/// Loads the lines and history of several orders in two queries.
async fn fill_details(conn: &mut AnyConnection, orders: &mut [Order]) -> Result<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let all = placeholders(orders.len());
    let lines_sql = format!(
        "SELECT order_id, sku, name, unit, qty_milli, unit_price_fen, line_total_fen FROM order_lines
         WHERE order_id IN ({all}) ORDER BY order_id, line_no"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(lines_sql));
    for o in orders.iter() {
        q = q.bind(o.id.clone());
    }
    let index: std::collections::HashMap<String, usize> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.clone(), i))
        .collect();
    for r in q.fetch_all(&mut *conn).await? {
        let oid: String = r.get("order_id");
        let Some(&i) = index.get(&oid) else { continue };
        let unit = Unit::parse(&r.get::<String, _>("unit")).map_err(Error::internal)?;
        orders[i].lines.push(OrderLine {
            sku: Sku::parse(&r.get::<String, _>("sku")).map_err(Error::internal)?,
            name: r.get("name"),
            unit,
            quantity: Quantity::from_milli(unit, r.get("qty_milli")),
            unit_price: Money::from_fen(r.get("unit_price_fen")),
            line_total: Money::from_fen(r.get("line_total_fen")),
        });
    }
    let hist_sql = format!(
        "SELECT order_id, at, by_whom, from_status, to_status, reason FROM order_history
         WHERE order_id IN ({all}) ORDER BY id"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(hist_sql));
    for o in orders.iter() {
        q = q.bind(o.id.clone());
    }
    for r in q.fetch_all(&mut *conn).await? {
        let oid: String = r.get("order_id");
        let Some(&i) = index.get(&oid) else { continue };
        let from: Option<String> = r.get("from_status");
        orders[i].history.push(StatusChange {
            at: clock::rfc3339(r.get("at")),
            by: r.get("by_whom"),
            from: from
                .map(|f| OrderStatus::parse(&f))
                .transpose()
                .map_err(Error::internal)?,
            to: OrderStatus::parse(&r.get::<String, _>("to_status")).map_err(Error::internal)?,
            reason: r.get("reason"),
        });
    }
    // Delivery platforms' orders: what the store must look at.
    let third: Vec<&Order> = orders
        .iter()
        .filter(|o| o.channel == Channel::ThirdParty)
        .collect();
    if !third.is_empty() {
        let sql = format!(
            "SELECT order_id, attention FROM third_party_orders WHERE order_id IN ({})",
            placeholders(third.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for o in &third {
            q = q.bind(o.id.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let oid: String = r.get("order_id");
            let Some(&i) = index.get(&oid) else { continue };
            orders[i].attention = flag_list(r.get("attention"));
        }
    }
    // Counter sales that already happened: when, and what to look at.
    let counter: Vec<&Order> = orders
        .iter()
        .filter(|o| o.channel == Channel::Terminal)
        .collect();
    if !counter.is_empty() {
        let sql = format!(
            "SELECT order_id, sold_at, attention FROM counter_sales WHERE order_id IN ({})",
            placeholders(counter.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for o in &counter {
            q = q.bind(o.id.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let oid: String = r.get("order_id");
            let Some(&i) = index.get(&oid) else { continue };
            orders[i].attention = flag_list(r.get("attention"));
            orders[i].sold_at = Some(clock::rfc3339(r.get("sold_at")));
        }
    }
    Ok(())
}

/// The statuses of the partial index `orders_open` (migration 0016).
const OPEN: [OrderStatus; 3] = [
    OrderStatus::Created,
    OrderStatus::Accepted,
    OrderStatus::Ready,
];

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub statuses: Vec<OrderStatus>,
    pub channel: Option<Channel>,
    /// Only orders changed after this feed position.
    pub since: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub orders: Vec<Order>,
    /// Pass as `since` to get only what changed after this page.
    pub cursor: i64,
    pub has_more: bool,
}

/// The aggregated queue: every order of a store, whatever its channel, in
/// the order of their last change.
pub async fn list(db: &Db, store: &StoreId, f: &Filter) -> Result<Page> {
    let mut conn = db.pool.acquire().await?;
    let head = sqlx::query("SELECT event_seq FROM stores WHERE id = $1")
        .bind(store.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::new(Code::UnknownStore, format!("no store {store}")))?
        .get::<i64, _>(0);
    let mut sql = format!("SELECT {ORDER_COLS} FROM orders WHERE store_id = $1 AND seq > $2");
    let mut n = 2;
    if !f.statuses.is_empty() {
        let ph: Vec<String> = f
            .statuses
            .iter()
            .map(|_| {
                n += 1;
                format!("${n}")
            })
            .collect();
        sql.push_str(&format!(" AND status IN ({})", ph.join(", ")));
        // Only open statuses asked for (what a terminal or board asks when it
        // starts): the same words as the partial index `orders_open`, so the
        // planners read that index instead of the store's whole history.
        if f.statuses.iter().all(|s| OPEN.contains(s)) {
            sql.push_str(" AND status IN ('created', 'accepted', 'ready')");
        }
    }
    if f.channel.is_some() {
        n += 1;
        sql.push_str(&format!(" AND channel = ${n}"));
    }
    n += 1;
    sql.push_str(&format!(" ORDER BY seq LIMIT ${n}"));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(store.as_str().to_owned())
        .bind(f.since.unwrap_or(0));
    for s in &f.statuses {
        q = q.bind(s.as_str());
    }
    if let Some(c) = f.channel {
        q = q.bind(c.as_str());
    }
    let rows = q.bind(f.limit + 1).fetch_all(&mut *conn).await?;
    let has_more = rows.len() as i64 > f.limit;
    let mut orders = rows
        .iter()
        .take(f.limit as usize)
        .map(order_from_row)
        .collect::<Result<Vec<_>>>()?;
    fill_details(&mut conn, &mut orders).await?;
    // `head` was read before the orders: changes committed in between may be
    // on this page with numbers above it, and must not come again.
    let cursor = if has_more {
        orders.last().map(|o| o.seq).unwrap_or(head)
    } else {
        let newest = orders.last().map_or(0, |o| o.seq);
        head.max(f.since.unwrap_or(0)).max(newest)
    };
    Ok(Page {
        orders,
        cursor,
        has_more,
    })
}

/// `$1, $2, …, $n` for an `IN (…)` list.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored comma-separated flag list.
fn flag_list(stored: String) -> Vec<String> {
    stored
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}
