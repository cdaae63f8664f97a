//! The unconfirmed-order alert: a third-party order still `created` after
//! the limit gets one `order.unconfirmed_alert` event on its store's feed
//! (and a count), because platforms cancel orders a store does not confirm.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::order::StoreId;
use serde_json::json;
use sqlx::Row;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::events::{self, Hub};
use crate::outbox::Stats;

/// The scheduler's alert job: [`check`] every `every`, counted in `stats`.
pub fn job(
    db: Db,
    hub: Hub,
    limit: Duration,
    every: Duration,
    stats: Arc<Stats>,
) -> crate::jobs::Job {
    crate::jobs::Job::new(crate::jobs::UNCONFIRMED_ALERTS, every, move || {
        let (db, hub, stats) = (db.clone(), hub.clone(), Arc::clone(&stats));
        async move {
            let n = check(&db, &hub, limit).await;
            stats.alert_rounds.fetch_add(1, Ordering::Relaxed);
            stats
                .unconfirmed_alerts
                .fetch_add(n.map_err(|e| e.into_anyhow())?, Ordering::Relaxed);
            Ok(crate::jobs::Ran::Done)
        }
    })
    .first_after(every)
}

/// One pass; returns how many alerts it raised.
pub async fn check(db: &Db, hub: &Hub, limit: Duration) -> Result<u64> {
    let now = db.now_micros();
    let cutoff = now - i64::try_from(limit.as_micros()).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT t.order_id, t.created_at, o.store_id, o.status FROM third_party_orders t
         JOIN orders o ON o.id = t.order_id
         WHERE t.alerted_at IS NULL AND t.created_at <= $1 ORDER BY t.created_at LIMIT 100",
    )
    .bind(cutoff)
    .fetch_all(&db.pool)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut settled = Vec::new();
    let mut raised = 0;
    for r in rows {
        let order_id: String = r.get("order_id");
        if r.get::<String, _>("status") != "created" {
            settled.push(order_id);
            continue;
        }
        let store = StoreId::parse(&r.get::<String, _>("store_id")).map_err(Error::internal)?;
        let waited_s = (now - r.get::<i64, _>("created_at")) / 1_000_000;
        let mut tx = db.write().await?;
        let seq = events::next_seq(&mut tx, &store)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("store vanished")))?;
        let still = sqlx::query(
            "UPDATE third_party_orders SET alerted_at = $1
             WHERE order_id = $2 AND alerted_at IS NULL
               AND EXISTS (SELECT 1 FROM orders o WHERE o.id = $2 AND o.status = 'created')",
        )
        .bind(now)
        .bind(order_id.clone())
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if !still {
            continue;
        }
        crate::orders::append_order_event(
            &mut tx,
            &store,
            seq,
            &order_id,
            "order.unconfirmed_alert",
            json!({"waiting_s": waited_s, "limit_s": limit.as_secs()}),
            now,
        )
        .await?;
        tx.commit().await?;
        hub.notify(&store);
        tracing::warn!(order = %order_id, store = %store, waited_s, "third-party order still unconfirmed");
        raised += 1;
    }
    if !settled.is_empty() {
        // Confirmed (or gone) in time: never due again. 0 is "no alert".
        let mut tx = db.write().await?;
        for id in settled {
            sqlx::query("UPDATE third_party_orders SET alerted_at = 0 WHERE order_id = $1 AND alerted_at IS NULL")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(raised)
}

/// How many third-party orders have raised an unconfirmed-order alert, ever
/// (`GET /api/v1/outbox/stats`).
pub async fn raised_total(db: &Db) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM third_party_orders WHERE alerted_at > 0")
            .fetch_one(&db.pool)
            .await?
            .get(0),
    )
}
