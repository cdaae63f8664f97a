//! The store feed: every order change is a numbered row in `order_events`,
//! written in the change's own transaction. Readers (SSE, terminal polling)
//! read rows after a cursor; the hub only wakes them up early. On
//! PostgreSQL the appending transaction also sends `NOTIFY store_feed` with
//! the store's id (delivered at commit), and every instance's listener
//! ([`listen`]) wakes its own hub with it, so a change made on one instance
//! reaches readers on the others at once; the readers' poll stays as the
//! fallback, should the listener be down.

use proto::order::StoreId;
use sqlx::{AnyConnection, Row};
use tokio::sync::broadcast;

use crate::db::Db;

/// The channel of the cross-instance wake-ups.
pub const CHANNEL: &str = "store_feed";
/// The supervised listener's name in `/readyz`.
pub const FEED_LISTENER: &str = "feed_listener";
use crate::error::Result;

/// Wakes feed readers in this process when a store's feed grows. Readers
/// also re-read on a timer, which covers writes by other gateway instances.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<StoreId>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Hub { tx }
    }
}

impl Hub {
    pub fn notify(&self, store: &StoreId) {
        let _ = self.tx.send(store.clone());
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoreId> {
        self.tx.subscribe()
    }
}

#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub seq: i64,
    pub kind: String,
    pub payload: String,
}

/// Takes the store's next feed number. The row lock this takes is held to
/// commit, so a store's changes commit in feed order, without gaps. On
/// PostgreSQL it also queues the `store_feed` notification.
pub async fn next_seq(conn: &mut AnyConnection, store: &StoreId) -> Result<Option<i64>> {
    let row = sqlx::query(
        "UPDATE stores SET event_seq = event_seq + 1, catalog_rev = catalog_rev + 1
         WHERE id = $1 RETURNING event_seq",
    )
    .bind(store.as_str().to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() && conn.backend_name() == "PostgreSQL" {
        // Every feed append takes its number here first. Delivered at
        // commit (not at all on a rollback), once per store and transaction.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(store.as_str().to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(row.map(|r| r.get(0)))
}

pub async fn append(
    conn: &mut AnyConnection,
    store: &StoreId,
    seq: i64,
    order_id: &str,
    kind: &str,
    at: i64,
    payload: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_events (store_id, seq, order_id, kind, at, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(store.as_str().to_owned())
    .bind(seq)
    .bind(order_id.to_owned())
    .bind(kind.to_owned())
    .bind(at)
    .bind(payload.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// The listener's `application_name` in `pg_stat_activity`.
pub const LISTENER_APPLICATION: &str = "gateway_feed_listener";

/// A listener on a connection of its own (a pool of one, which it
/// reconnects through), named [`LISTENER_APPLICATION`]. It does not
/// reconnect by itself: a lost connection ends the run, so the supervisor
/// shows it down until the next run has listened again.
async fn connect_listener(url: &str) -> anyhow::Result<sqlx::postgres::PgListener> {
    use std::str::FromStr;
    let options =
        sqlx::postgres::PgConnectOptions::from_str(url)?.application_name(LISTENER_APPLICATION);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    Ok(listener)
}

/// Holds a listening connection to PostgreSQL (`url`) that wakes `hub` for
/// each store another instance (or this one) changed. Supervised: a lost
/// connection marks it down in `/readyz` and it connects again, the
/// readers' poll covering the gap.
pub fn listen(url: &str, db: &Db, hub: &Hub, closing: &tokio::sync::watch::Receiver<bool>) {
    let (url, hub, closing) = (url.to_owned(), hub.clone(), closing.clone());
    crate::supervise::spawn(
        db.health(),
        FEED_LISTENER,
        Some(closing.clone()),
        move |up| {
            let (url, hub, mut closing) = (url.clone(), hub.clone(), closing.clone());
            async move {
                let mut listener = connect_listener(&url).await?;
                listener.listen(CHANNEL).await?;
                up.ready();
                tracing::info!("listening for feed changes of other instances");
                loop {
                    let got = tokio::select! {
                        got = listener.try_recv() => got?,
                        _ = closing.wait_for(|c| *c) => return Ok(()),
                    };
                    match got {
                        Some(n) => match StoreId::parse(n.payload()) {
                            Ok(store) => hub.notify(&store),
                            Err(_) => tracing::warn!(
                                payload = n.payload(),
                                "a feed notification without a store id"
                            ),
                        },
                        None => anyhow::bail!("the feed listener's connection was lost"),
                    }
                }
            }
        },
    );
}

pub async fn after(db: &Db, store: &StoreId, after: i64, limit: i64) -> Result<Vec<FeedEvent>> {
    let rows = sqlx::query(
        "SELECT seq, kind, payload FROM order_events
         WHERE store_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(store.as_str().to_owned())
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| FeedEvent {
            seq: r.get("seq"),
            kind: r.get("kind"),
            payload: r.get("payload"),
        })
        .collect())
}

pub async fn head(db: &Db, store: &StoreId) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT event_seq FROM stores WHERE id = $1")
        .bind(store.as_str().to_owned())
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The oldest feed number still kept for a store (retention prunes a prefix).
pub async fn oldest(db: &Db, store: &StoreId) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT MIN(seq) FROM order_events WHERE store_id = $1")
        .bind(store.as_str().to_owned())
        .fetch_one(&db.pool)
        .await?;
    Ok(row.get::<Option<i64>, _>(0))
}
