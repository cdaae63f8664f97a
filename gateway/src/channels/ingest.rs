//! What a decoded push does, the same for every platform.
//!
//! A new order has its items mapped to our SKUs here, then goes to the order
//! writer (`orders::sold`; on SQLite the group commit, many orders in one
//! transaction): de-duplicated by the platform's order id and by the inbox,
//! planned by the one order plan (`orders::plan`: stock reserved, numbered
//! for the day, `order.created` appended to the store's feed), its delivery
//! details written with it. The platform has already sold it and taken the money, so it is never
//! refused for stock or for an item we cannot map: it enters the queue
//! flagged (`attention`) for the store to resolve. Events about an order not
//! seen yet are held, and applied right after the order is written; both
//! sides write first and look for the other after committing, so one of them
//! always sees both.

use proto::order::{
    Channel, Money, Order, OrderAction, OrderLine, PaymentStatus, Quantity, Sku, StoreId, Unit,
};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use super::{EventKind, Inbound, OrderEvent, PlatformOrder};
use crate::actor::Actor;
use crate::clock;
use crate::db::Db;
use crate::error::{Code, Error, Result};
use crate::events::{self, Hub};
use crate::orders::plan::{SoldLine, Table, Val};
use crate::orders::sold::{Extra, Seen, SoldAnswer, SoldOrder};
use crate::orders::{self, NewOrder};

/// The largest quantity of one platform item line.
const MAX_ITEM_QUANTITY: i64 = 100_000;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        order_id: String,
    },
    /// Seen before: nothing written.
    Duplicate {
        order_id: Option<String>,
    },
    Applied {
        order_id: String,
    },
    /// Its order has not arrived yet: kept, applied when it does.
    Held,
    /// Recorded but not applied (e.g. a cancel of an order already ready).
    Refused {
        order_id: String,
        why: String,
    },
}

pub async fn apply(
    db: &Db,
    hub: &Hub,
    writer: &orders::Writer,
    inbound: Inbound,
) -> Result<Outcome> {
    match inbound {
        Inbound::NewOrder(o) => new_order(db, hub, writer, o).await,
        Inbound::Event(e) => event(db, hub, e).await,
    }
}

/// Attention flags of a third-party order (the last two shared with a
/// counter sale that already happened).
pub const UNMAPPED_ITEMS: &str = "unmapped_items";
pub use crate::orders::{SHORT_STOCK, UNAVAILABLE_ITEMS};

async fn resolve_store(conn: &mut AnyConnection, platform: &str, pstore: &str) -> Result<StoreId> {
    let mapped = sqlx::query(
        "SELECT store_id FROM channel_stores WHERE platform = $1 AND platform_store_id = $2",
    )
    .bind(platform.to_owned())
    .bind(pstore.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let unknown = || {
        Error::new(
            Code::UnknownPlatformStore,
            format!("{platform} store {pstore} is not mapped to any store"),
        )
    };
    let store = match mapped {
        Some(r) => StoreId::parse(&r.get::<String, _>(0)).map_err(Error::internal)?,
        None => StoreId::parse(pstore).map_err(|_| unknown())?,
    };
    if crate::catalog::store_exists(conn, &store).await? {
        Ok(store)
    } else {
        Err(unknown())
    }
}

async fn order_of(
    conn: &mut AnyConnection,
    platform: &str,
    poid: &str,
) -> Result<Option<(String, StoreId)>> {
    let row = sqlx::query(
        "SELECT t.order_id, o.store_id FROM third_party_orders t JOIN orders o ON o.id = t.order_id
         WHERE t.platform = $1 AND t.platform_order_id = $2",
    )
    .bind(platform.to_owned())
    .bind(poid.to_owned())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok((
            r.get::<String, _>(0),
            StoreId::parse(&r.get::<String, _>(1)).map_err(Error::internal)?,
        ))
    })
    .transpose()
}

/// One platform item line as written, and what it needs from the store.
struct MappedLine {
    line: OrderLine,
    /// Reserve this much of `line.sku`; `None` when unmapped.
    reserve: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Unmapped {
    platform_sku: String,
    name: String,
    quantity: i64,
    price: String,
    why: &'static str,
}

async fn map_item(
    conn: &mut AnyConnection,
    platform: &str,
    store: &StoreId,
    item: &super::PlatformItem,
    now: i64,
    flags: &mut Vec<&'static str>,
    unmapped: &mut Vec<Unmapped>,
) -> Result<MappedLine> {
    let count = item.quantity;
    if !(1..=MAX_ITEM_QUANTITY).contains(&count) || item.price_fen < 0 {
        return Err(Error::new(
            Code::InvalidItem,
            format!(
                "item {}: quantity must be 1-{MAX_ITEM_QUANTITY} and price not negative",
                item.platform_sku
            ),
        ));
    }
    // The platform's line: `count` items at its price, checked in proto.
    let line_total = count
        .checked_mul(1000)
        .and_then(|m| {
            proto::order::line_total(
                Money::from_fen(item.price_fen),
                Quantity::from_milli(Unit::Piece, m),
            )
        })
        .ok_or_else(|| Error::new(Code::InvalidItem, "item total is too large"))?;
    let mapping = sqlx::query(
        "SELECT sku, per_item_milli FROM sku_mappings
         WHERE platform = $1 AND platform_sku = $2 AND store_id IN ('', $3)
         ORDER BY store_id DESC LIMIT 1",
    )
    .bind(platform.to_owned())
    .bind(item.platform_sku.clone())
    .bind(store.as_str().to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let (sku, per_item) = match mapping {
        Some(r) => (Sku::parse(&r.get::<String, _>(0)).ok(), r.get::<i64, _>(1)),
        // Default mapping: the platform's code is our SKU.
        None => (Sku::parse(&item.platform_sku).ok(), 1000),
    };
    let facts = match &sku {
        Some(sku) => {
            sqlx::query(
                "SELECT p.name, p.unit, i.available, i.snoozed_until, i.on_hand
             FROM products p LEFT JOIN store_items i ON i.sku = p.sku AND i.store_id = $1
             WHERE p.sku = $2",
            )
            .bind(store.as_str().to_owned())
            .bind(sku.as_str().to_owned())
            .fetch_optional(&mut *conn)
            .await?
        }
        None => None,
    };
    let (Some(sku), Some(facts)) = (sku, facts) else {
        if !flags.contains(&UNMAPPED_ITEMS) {
            flags.push(UNMAPPED_ITEMS);
        }
        unmapped.push(Unmapped {
            platform_sku: item.platform_sku.clone(),
            name: item.name.clone(),
            quantity: count,
            price: Money::from_fen(item.price_fen).to_string(),
            why: "no product for this item code",
        });
        // Shown as the platform sold it, reserving nothing.
        let sku = Sku::parse(&item.platform_sku)
            .or_else(|_| Sku::parse("UNMAPPED"))
            .map_err(Error::internal)?;
        return Ok(MappedLine {
            line: OrderLine {
                sku,
                name: if item.name.is_empty() {
                    item.platform_sku.clone()
                } else {
                    item.name.clone()
                },
                unit: Unit::Piece,
                quantity: Quantity::from_milli(Unit::Piece, count.saturating_mul(1000)),
                unit_price: Money::from_fen(item.price_fen),
                line_total,
            },
            reserve: None,
        });
    };
    let unit = Unit::parse(&facts.get::<String, _>("unit")).map_err(Error::internal)?;
    let milli = count
        .checked_mul(per_item)
        .filter(|m| *m <= proto::order::MAX_MILLI)
        .ok_or_else(|| Error::new(Code::InvalidItem, "item quantity is too large"))?;
    let listed = facts.get::<Option<i64>, _>("available").map(|a| a != 0);
    let snoozed = facts
        .get::<Option<i64>, _>("snoozed_until")
        .is_some_and(|u| u > now);
    if (listed == Some(false) || snoozed) && !flags.contains(&UNAVAILABLE_ITEMS) {
        flags.push(UNAVAILABLE_ITEMS);
    }
    // Price per our unit, half-up; the line total is what the platform charged.
    let unit_price = proto::order::unit_price(
        Money::from_fen(item.price_fen),
        Quantity::from_milli(unit, per_item),
    )
    .ok_or_else(|| Error::new(Code::InvalidItem, "item price per unit is too large"))?;
    Ok(MappedLine {
        line: OrderLine {
            sku,
            name: facts.get("name"),
            unit,
            quantity: Quantity::from_milli(unit, milli),
            unit_price,
            line_total,
        },
        reserve: Some(milli),
    })
}

fn note_of(o: &PlatformOrder, flags: &[&str], unmapped: &[Unmapped]) -> Option<String> {
    let mut parts = Vec::new();
    if !flags.is_empty() {
        let mut s = format!("⚠ {}", flags.join(", "));
        if !unmapped.is_empty() {
            let names: Vec<String> = unmapped
                .iter()
                .map(|u| format!("{}×{} ({})", u.name, u.quantity, u.platform_sku))
                .collect();
            s.push_str(&format!(": {}", names.join("; ")));
        }
        parts.push(s);
    }
    if !o.note.trim().is_empty() {
        parts.push(o.note.trim().to_owned());
    }
    let note: String = parts
        .join(" | ")
        .chars()
        .take(orders::MAX_NOTE_CHARS)
        .collect();
    (!note.is_empty()).then_some(note)
}

/// One accepted push, as the inbox keeps it.
struct InboxRow<'a> {
    platform: &'a str,
    kind: &'a str,
    push_ref: &'a str,
    platform_order_id: &'a str,
    store: Option<&'a StoreId>,
    order_id: Option<&'a str>,
    outcome: &'a str,
}

impl<'a> InboxRow<'a> {
    /// The row of an event about an order we already have.
    fn of_event(
        e: &'a OrderEvent,
        store: &'a StoreId,
        order_id: &'a str,
        outcome: &'a str,
    ) -> Self {
        InboxRow {
            platform: &e.platform,
            kind: e.kind.as_str(),
            push_ref: &e.dedupe_ref,
            platform_order_id: &e.platform_order_id,
            store: Some(store),
            order_id: Some(order_id),
            outcome,
        }
    }
}

/// Records a push; `false` when it was recorded before (a duplicate).
async fn record_inbox(conn: &mut AnyConnection, row: InboxRow<'_>, now: i64) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO channel_inbox (platform, kind, push_ref, platform_order_id, store_id, order_id, outcome, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (platform, kind, push_ref) DO NOTHING",
    )
    .bind(row.platform.to_owned())
    .bind(row.kind.to_owned())
    .bind(row.push_ref.to_owned())
    .bind(row.platform_order_id.to_owned())
    .bind(row.store.map(|s| s.as_str().to_owned()))
    .bind(row.order_id.map(str::to_owned))
    .bind(row.outcome.chars().take(300).collect::<String>())
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The channel's tables a new platform order writes with it.
const CHANNEL_INBOX: Table = Table {
    name: "channel_inbox",
    cols: &[
        "platform",
        "kind",
        "push_ref",
        "platform_order_id",
        "store_id",
        "order_id",
        "outcome",
        "received_at",
    ],
};
const THIRD_PARTY_ORDERS: Table = Table {
    name: "third_party_orders",
    cols: &[
        "order_id",
        "platform",
        "platform_order_id",
        "platform_store_id",
        "day_seq",
        "recipient_name",
        "recipient_phone",
        "recipient_address",
        "shipping_fee_fen",
        "paid_fen",
        "original_fen",
        "store_receives_fen",
        "discounts",
        "attention",
        "unmapped",
        "created_at",
    ],
};
const CHANNEL_STORES: Table = Table {
    name: "channel_stores",
    cols: &["platform", "platform_store_id", "store_id", "created_at"],
};

/// A new platform order: its items mapped here (configuration tables read
/// without the write lock), then handed to the order writer — on SQLite the
/// group commit, with the orders arriving together — which de-duplicates it
/// (by platform order id, then by the push's inbox ref), plans it (stock
/// reserved even when short, flagged) and writes its inbox, delivery and
/// platform-store rows with it.
pub async fn new_order(
    db: &Db,
    hub: &Hub,
    writer: &orders::Writer,
    o: PlatformOrder,
) -> Result<Outcome> {
    if o.items.is_empty() || o.items.len() > orders::MAX_LINES {
        return Err(Error::new(
            Code::InvalidLines,
            format!("a platform order needs 1-{} items", orders::MAX_LINES),
        ));
    }
    let now = db.now_micros();
    let (store, flags_of, unmapped, lines) = {
        let mut conn = db.pool.acquire().await?;
        // Cheap answer to the common duplicate, without the write lock.
        if let Some((id, _)) = order_of(&mut conn, &o.platform, &o.platform_order_id).await? {
            return Ok(Outcome::Duplicate { order_id: Some(id) });
        }
        let store = resolve_store(&mut conn, &o.platform, &o.platform_store_id).await?;
        // Map every item; each line's own flags, in the order they arose.
        let mut flags_of: Vec<Vec<&'static str>> = Vec::with_capacity(o.items.len());
        let mut unmapped = Vec::new();
        let mut lines = Vec::with_capacity(o.items.len());
        for item in &o.items {
            let mut flags = Vec::new();
            let m = map_item(
                &mut conn,
                &o.platform,
                &store,
                item,
                now,
                &mut flags,
                &mut unmapped,
            )
            .await?;
            flags_of.push(flags);
            lines.push(SoldLine {
                line: m.line,
                reserve: m.reserve,
            });
        }
        (store, flags_of, unmapped, lines)
    };
    let unmapped_json = serde_json::to_string(&unmapped).map_err(Error::internal)?;
    let discounts = serde_json::to_string(&o.discounts).map_err(Error::internal)?;
    let o = std::sync::Arc::new(o);
    // The plan says which line first found too little stock: it is
    // reserved anyway and the order flagged.
    let finish = {
        let o = std::sync::Arc::clone(&o);
        move |first_short: Option<usize>| {
            let mut flags: Vec<&'static str> = Vec::new();
            for (i, own) in flags_of.iter().enumerate() {
                let short = (first_short == Some(i)).then_some(SHORT_STOCK);
                for f in own.iter().copied().chain(short) {
                    if !flags.contains(&f) {
                        flags.push(f);
                    }
                }
            }
            (
                note_of(&o, &flags, &unmapped),
                flags.iter().map(|f| (*f).to_owned()).collect(),
            )
        }
    };
    let with = {
        let (o, store) = (std::sync::Arc::clone(&o), store.clone());
        move |order: &Order, now: i64| {
            let s = |v: &str| Val::S(v.to_owned());
            vec![
                // The push, once: a repeat of its ref is a duplicate.
                Extra {
                    table: &CHANNEL_INBOX,
                    vals: vec![
                        s(&o.platform),
                        s("new_order"),
                        s(&o.dedupe_ref),
                        s(&o.platform_order_id),
                        s(store.as_str()),
                        s(&order.id),
                        s("created"),
                        Val::I(now),
                    ],
                    unless: Some("platform, kind, push_ref"),
                    or_duplicate: true,
                },
                Extra {
                    table: &THIRD_PARTY_ORDERS,
                    vals: vec![
                        s(&order.id),
                        s(&o.platform),
                        s(&o.platform_order_id),
                        s(&o.platform_store_id),
                        Val::OI(o.day_seq),
                        s(&o.recipient_name),
                        s(&o.recipient_phone),
                        s(&o.recipient_address),
                        Val::I(o.shipping_fee_fen),
                        Val::I(o.paid_fen),
                        Val::I(o.original_fen),
                        Val::I(o.store_receives_fen),
                        s(&discounts),
                        s(&order.attention.join(",")),
                        s(&unmapped_json),
                        Val::I(now),
                    ],
                    unless: None,
                    or_duplicate: false,
                },
                // The platform's store is this store from now on (stock goes
                // there too).
                Extra {
                    table: &CHANNEL_STORES,
                    vals: vec![
                        s(&o.platform),
                        s(&o.platform_store_id),
                        s(store.as_str()),
                        Val::I(now),
                    ],
                    unless: Some("platform, platform_store_id"),
                    or_duplicate: false,
                },
            ]
        }
    };
    let new = NewOrder {
        store: store.clone(),
        channel: Channel::ThirdParty,
        platform: Some(o.platform.clone()),
        channel_order_id: Some(o.platform_order_id.clone()),
        lines: Vec::new(),
        note: None,
        payment_status: PaymentStatus::Paid,
        prepaid: None,
        actor: Actor::Platform(o.platform.clone()).to_string(),
        happened: None,
    };
    let sold = SoldOrder {
        new,
        lines,
        finish: Box::new(finish),
        seen: vec![
            // The same platform order, whichever push brought it.
            Seen {
                table: THIRD_PARTY_ORDERS.name,
                cols: &["platform", "platform_order_id"],
                answer: Some("order_id"),
                vals: vec![o.platform.clone(), o.platform_order_id.clone()],
                direct: true,
            },
            // The same push.
            Seen {
                table: CHANNEL_INBOX.name,
                cols: &["platform", "kind", "push_ref"],
                answer: None,
                vals: vec![
                    o.platform.clone(),
                    "new_order".to_owned(),
                    o.dedupe_ref.clone(),
                ],
                // One at a time, its insert says so (`or_duplicate`).
                direct: false,
            },
        ],
        with: Box::new(with),
    };
    let order = match orders::create_sold(db, writer, sold).await? {
        SoldAnswer::Created(order) => order,
        SoldAnswer::Duplicate(order_id) => return Ok(Outcome::Duplicate { order_id }),
    };
    let id = order.id.clone();
    let flags = order.attention.join(",");
    hub.notify(&store);
    crate::meter::order_created(proto::order::Channel::ThirdParty.as_str());
    tracing::info!(order = %id, platform = %o.platform, platform_order = %o.platform_order_id, store = %store, attention = %flags, "third-party order in");
    if let Err(e) = apply_held(db, hub, &o.platform, &o.platform_order_id).await {
        e.log();
    }
    Ok(Outcome::Created { order_id: id })
}

/// An event about a platform order: applied, or held until the order comes.
pub async fn event(db: &Db, hub: &Hub, e: OrderEvent) -> Result<Outcome> {
    let found = {
        let mut conn = db.pool.acquire().await?;
        order_of(&mut conn, &e.platform, &e.platform_order_id).await?
    };
    if let Some((order_id, store)) = found {
        return apply_event(db, hub, &e, &order_id, &store).await;
    }
    let now = db.now_micros();
    {
        let mut tx = db.write().await?;
        sqlx::query(
            "INSERT INTO channel_held (platform, platform_order_id, kind, push_ref, params, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (platform, platform_order_id, kind, push_ref) DO NOTHING",
        )
        .bind(e.platform.clone())
        .bind(e.platform_order_id.clone())
        .bind(e.kind.as_str())
        .bind(e.dedupe_ref.clone())
        .bind(serde_json::to_string(&e).map_err(Error::internal)?)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
    }
    tracing::info!(platform = %e.platform, platform_order = %e.platform_order_id, kind = e.kind.as_str(), "event held until its order arrives");
    // The order may have been written meanwhile, without seeing this.
    apply_held(db, hub, &e.platform, &e.platform_order_id).await?;
    Ok(Outcome::Held)
}

/// Applies the held events of a platform order that exists now.
async fn apply_held(db: &Db, hub: &Hub, platform: &str, poid: &str) -> Result<()> {
    let (rows, found) = {
        let mut conn = db.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT kind, push_ref, params FROM channel_held
             WHERE platform = $1 AND platform_order_id = $2 AND applied_at IS NULL
             ORDER BY received_at",
        )
        .bind(platform.to_owned())
        .bind(poid.to_owned())
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        (rows, order_of(&mut conn, platform, poid).await?)
    };
    let Some((order_id, store)) = found else {
        return Ok(());
    };
    for r in rows {
        let kind: String = r.get("kind");
        let push_ref: String = r.get("push_ref");
        let params: String = r.get("params");
        let outcome = match serde_json::from_str::<OrderEvent>(&params) {
            Ok(e) => match apply_event(db, hub, &e, &order_id, &store).await? {
                Outcome::Refused { why, .. } => format!("refused: {why}"),
                Outcome::Duplicate { .. } => "duplicate".to_owned(),
                _ => "applied".to_owned(),
            },
            Err(err) => format!("unreadable: {err}"),
        };
        let mut tx = db.write().await?;
        sqlx::query(
            "UPDATE channel_held SET applied_at = $1, outcome = $2
             WHERE platform = $3 AND platform_order_id = $4 AND kind = $5 AND push_ref = $6 AND applied_at IS NULL",
        )
        .bind(db.now_micros())
        .bind(outcome)
        .bind(platform.to_owned())
        .bind(poid.to_owned())
        .bind(kind)
        .bind(push_ref)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn apply_event(
    db: &Db,
    hub: &Hub,
    e: &OrderEvent,
    order_id: &str,
    store: &StoreId,
) -> Result<Outcome> {
    let now = db.now_micros();
    if e.kind == EventKind::Cancel {
        return cancel(db, e, order_id, store, hub, now).await;
    }
    let mut tx = db.write().await?;
    let seq = events::next_seq(&mut tx, store)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
    let row = InboxRow::of_event(e, store, order_id, "applied");
    if !record_inbox(&mut tx, row, now).await? {
        return Ok(Outcome::Duplicate {
            order_id: Some(order_id.to_owned()),
        });
    }
    let refund_state = match e.kind {
        EventKind::RefundApply => Some("requested"),
        EventKind::RefundCancel => Some("cancelled"),
        _ => None,
    };
    if let Some(state) = refund_state {
        sqlx::query("UPDATE third_party_orders SET refund_state = $1 WHERE order_id = $2")
            .bind(state)
            .bind(order_id.to_owned())
            .execute(&mut **tx)
            .await?;
    }
    orders::append_order_event(
        &mut tx,
        store,
        seq,
        order_id,
        e.kind.feed_kind(),
        e.detail.clone(),
        now,
    )
    .await?;
    tx.commit().await?;
    hub.notify(store);
    Ok(Outcome::Applied {
        order_id: order_id.to_owned(),
    })
}

/// A platform's cancel goes through the one state machine, as the platform.
async fn cancel(
    db: &Db,
    e: &OrderEvent,
    order_id: &str,
    store: &StoreId,
    hub: &Hub,
    now: i64,
) -> Result<Outcome> {
    {
        let mut conn = db.pool.acquire().await?;
        let seen = sqlx::query(
            "SELECT 1 FROM channel_inbox WHERE platform = $1 AND kind = $2 AND push_ref = $3",
        )
        .bind(e.platform.clone())
        .bind(e.kind.as_str())
        .bind(e.dedupe_ref.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if seen.is_some() {
            return Ok(Outcome::Duplicate {
                order_id: Some(order_id.to_owned()),
            });
        }
    }
    let said = e.detail["reason"].as_str().unwrap_or_default().trim();
    let reason = if said.is_empty() {
        format!("cancelled on {}", e.platform)
    } else {
        format!("cancelled on {}: {said}", e.platform)
    };
    let reason: String = reason.chars().take(orders::MAX_REASON_CHARS).collect();
    let actor = Actor::Platform(e.platform.clone()).to_string();
    let result = orders::act(
        db,
        hub,
        order_id,
        OrderAction::Cancel,
        Some(reason),
        &actor,
        &|_| Ok(()),
    )
    .await;
    let (outcome, answer) = match result {
        Ok(_) => (
            "applied".to_owned(),
            Outcome::Applied {
                order_id: order_id.to_owned(),
            },
        ),
        Err(err) if matches!(err.code, Code::IllegalTransition | Code::ConcurrentUpdate) => {
            let why = err.message.clone();
            tracing::warn!(order = order_id, platform = %e.platform, "platform cancel not applied: {why}");
            (
                format!("refused: {why}"),
                Outcome::Refused {
                    order_id: order_id.to_owned(),
                    why,
                },
            )
        }
        Err(err) => return Err(err),
    };
    let mut tx = db.write().await?;
    let row = InboxRow::of_event(e, store, order_id, &outcome);
    record_inbox(&mut tx, row, now).await?;
    if matches!(answer, Outcome::Applied { .. }) {
        // The platform closed the order: the calls about it still owed to
        // that platform (a confirm held back by an outage, one that failed
        // for good) are moot, and would only be refused.
        let moot = crate::outbox::drop_moot(&mut tx, &e.platform, order_id).await?;
        if moot > 0 {
            tracing::info!(order = order_id, platform = %e.platform, calls = moot, "calls for an order the platform cancelled dropped as moot");
        }
    }
    tx.commit().await?;
    Ok(answer)
}

// ------------------------------------------------------------ the view

/// The delivery side of a third-party order, as the REST API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThirdParty {
    pub order_id: String,
    pub store_id: String,
    pub platform: String,
    pub platform_order_id: String,
    pub platform_store_id: String,
    pub day_seq: Option<i64>,
    pub recipient: Value,
    pub shipping_fee: Money,
    pub paid: Money,
    pub original_price: Money,
    pub store_receives: Money,
    pub discounts: Value,
    /// What the store must look at: `unmapped_items`, `short_stock`,
    /// `unavailable_items`.
    pub attention: Vec<String>,
    pub unmapped: Value,
    pub refund_state: Option<String>,
    pub unconfirmed_alert_at: Option<String>,
}

pub async fn third_party(db: &Db, order_id: &str) -> Result<Option<ThirdParty>> {
    let row = sqlx::query(
        "SELECT t.*, o.store_id FROM third_party_orders t JOIN orders o ON o.id = t.order_id
         WHERE t.order_id = $1",
    )
    .bind(order_id.to_owned())
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let discounts: String = r.get("discounts");
    let unmapped: String = r.get("unmapped");
    let attention: String = r.get("attention");
    let money = |c: &str| Money::from_fen(r.get::<i64, _>(c));
    let discounts: Vec<super::Discount> = serde_json::from_str(&discounts).unwrap_or_default();
    Ok(Some(ThirdParty {
        order_id: r.get("order_id"),
        store_id: r.get("store_id"),
        platform: r.get("platform"),
        platform_order_id: r.get("platform_order_id"),
        platform_store_id: r.get("platform_store_id"),
        day_seq: r.get("day_seq"),
        recipient: json!({
            "name": r.get::<Option<String>, _>("recipient_name"),
            "phone": r.get::<Option<String>, _>("recipient_phone"),
            "address": r.get::<Option<String>, _>("recipient_address"),
        }),
        shipping_fee: money("shipping_fee_fen"),
        paid: money("paid_fen"),
        original_price: money("original_fen"),
        store_receives: money("store_receives_fen"),
        discounts: discounts
            .iter()
            .map(|d| json!({"name": d.name, "amount": Money::from_fen(d.amount_fen)}))
            .collect(),
        attention: attention
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        unmapped: serde_json::from_str(&unmapped).unwrap_or(Value::Null),
        refund_state: r.get("refund_state"),
        unconfirmed_alert_at: r
            .get::<Option<i64>, _>("alerted_at")
            .filter(|a| *a > 0)
            .map(clock::rfc3339),
    }))
}
