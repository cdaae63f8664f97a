//! API keys: who may call, in which role, for which store. Keys are random
//! 256-bit tokens; only their SHA-256 is stored.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use proto::order::{StoreId, TerminalId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::actor::Actor;
use crate::db::Db;
use crate::error::{Code, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the chain: catalog, stores, stock, every order.
    Admin,
    /// The brand's app backend: places and cancels official orders.
    App,
    /// A counter terminal, bound to one store.
    Terminal,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::App => "app",
            Role::Terminal => "terminal",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "app" => Some(Role::App),
            "terminal" => Some(Role::Terminal),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub role: Role,
    /// The one store a terminal key may see.
    pub store: Option<StoreId>,
    pub terminal: Option<TerminalId>,
}

impl Principal {
    /// How this caller is named in an order's history.
    pub fn actor(&self) -> Actor {
        let key = self.key_id.clone();
        match (&self.terminal, self.role) {
            (Some(t), _) => Actor::Terminal(t.as_str().to_owned()),
            (None, Role::Terminal) => Actor::Terminal(key),
            (None, Role::Admin) => Actor::Admin(key),
            (None, Role::App) => Actor::App(key),
        }
    }

    pub fn require_admin(&self) -> Result<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::forbidden("this needs an admin key"))
        }
    }

    /// Terminals only see their own store; admins see all; the app sees
    /// orders (by id) but not store queues.
    pub fn check_store(&self, store: &StoreId) -> Result<()> {
        match self.role {
            Role::Admin | Role::App => Ok(()),
            Role::Terminal if self.store.as_ref() == Some(store) => Ok(()),
            Role::Terminal => Err(Error::forbidden(format!(
                "this terminal key belongs to another store than {store}"
            ))),
        }
    }

    /// May this caller see an order of `store`? Another store's order is
    /// answered exactly like a missing one (404 `order_not_found`), so order
    /// ids cannot be probed across stores.
    pub fn check_order(&self, store: &StoreId, order_id: &str) -> Result<()> {
        match self.role {
            Role::Admin | Role::App => Ok(()),
            Role::Terminal if self.store.as_ref() == Some(store) => Ok(()),
            Role::Terminal => Err(Error::new(
                Code::OrderNotFound,
                format!("no order {order_id}"),
            )),
        }
    }

    pub fn check_store_queue(&self, store: &StoreId) -> Result<()> {
        if self.role == Role::App {
            return Err(Error::forbidden(
                "store queues are for terminals and admins",
            ));
        }
        self.check_store(store)
    }
}

pub fn hash_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new key as printed once to whoever made it.
pub struct NewKey {
    pub id: String,
    pub token: String,
}

pub struct KeySpec {
    pub role: Role,
    pub store: Option<StoreId>,
    pub terminal: Option<TerminalId>,
    pub label: Option<String>,
}

pub async fn create(db: &Db, spec: KeySpec) -> Result<NewKey> {
    if spec.role == Role::Terminal && spec.store.is_none() {
        return Err(Error::new(
            Code::StoreRequired,
            "a terminal key needs --store",
        ));
    }
    if spec.role != Role::Terminal && spec.terminal.is_some() {
        return Err(Error::new(
            Code::TerminalNotAllowed,
            "--terminal only applies to terminal keys",
        ));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("gk_{}", hex::encode(secret));
    let mut id_bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut id_bytes);
    let id = hex::encode(id_bytes);
    let terminal = spec.terminal.clone().or_else(|| {
        // Every terminal has an id; make one when none is given.
        (spec.role == Role::Terminal).then(|| {
            let store = spec.store.as_ref().map(|s| s.as_str()).unwrap_or("T");
            TerminalId::parse(&format!("{store}-{}", &id[..6])).ok()
        })?
    });
    let mut tx = db.write().await?;
    if let Some(t) = &terminal {
        let taken =
            sqlx::query("SELECT 1 FROM api_keys WHERE terminal_id = $1 AND revoked_at IS NULL")
                .bind(t.as_str().to_owned())
                .fetch_optional(&mut **tx)
                .await?;
        if taken.is_some() {
            return Err(Error::new(
                Code::TerminalExists,
                format!("terminal {t} already has a key; revoke it first"),
            ));
        }
    }
    sqlx::query(
        "INSERT INTO api_keys (id, key_hash, role, store_id, terminal_id, label, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.clone())
    .bind(hash_key(&token))
    .bind(spec.role.as_str())
    .bind(spec.store.map(|s| s.as_str().to_owned()))
    .bind(terminal.map(|t| t.as_str().to_owned()))
    .bind(spec.label)
    .bind(db.now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(NewKey { id, token })
}

pub async fn revoke(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.write().await?;
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(db.now_micros())
        .bind(id.to_owned())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

pub struct KeyInfo {
    pub id: String,
    pub role: String,
    pub store: Option<String>,
    pub terminal: Option<String>,
    pub label: Option<String>,
    pub revoked: bool,
}

pub async fn list(db: &Db) -> Result<Vec<KeyInfo>> {
    let rows = sqlx::query(
        "SELECT id, role, store_id, terminal_id, label, revoked_at FROM api_keys ORDER BY created_at",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| KeyInfo {
            id: r.get("id"),
            role: r.get("role"),
            store: r.get("store_id"),
            terminal: r.get("terminal_id"),
            label: r.get("label"),
            revoked: r.get::<Option<i64>, _>("revoked_at").is_some(),
        })
        .collect())
}

/// Looks keys up by hash, remembering found keys briefly so a busy terminal
/// does not cost a query per request. Revocation takes effect within `TTL`.
/// Both maps are bounded least-recently-used: random tokens can neither
/// grow them nor push the real keys out of `found` (unknown hashes go to
/// their own small map, which only spares the database a repeat).
#[derive(Clone)]
pub struct KeyCache {
    found: Arc<Mutex<LruCache<String, (Instant, Principal)>>>,
    unknown: Arc<Mutex<LruCache<String, Instant>>>,
    failures: Arc<AtomicU64>,
}

const TTL: Duration = Duration::from_secs(10);
/// Keys remembered at most (real keys: terminals, apps, admins).
pub const CACHE_KEYS: usize = 10_000;
/// Unknown tokens remembered at most.
pub const CACHE_UNKNOWN: usize = 1_000;

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::with_capacity(CACHE_KEYS, CACHE_UNKNOWN)
    }
}

fn bound(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl KeyCache {
    pub fn with_capacity(keys: usize, unknown: usize) -> Self {
        KeyCache {
            found: Arc::new(Mutex::new(LruCache::new(bound(keys)))),
            unknown: Arc::new(Mutex::new(LruCache::new(bound(unknown)))),
            failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Failed authentications since start (unknown, revoked or malformed
    /// keys; see `gateway_auth_failures_total`).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts a refused credential that never reached [`Self::authenticate`]
    /// (a missing or malformed header).
    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Keys remembered now (found, unknown).
    pub fn sizes(&self) -> (usize, usize) {
        (
            self.found.lock().map(|m| m.len()).unwrap_or(0),
            self.unknown.lock().map(|m| m.len()).unwrap_or(0),
        )
    }

    fn refuse(&self) -> Error {
        self.count_failure();
        Error::unauthorized("unknown or revoked API key")
    }

    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Principal> {
        let hash = hash_key(token);
        let cached = self
            .found
            .lock()
            .ok()
            .and_then(|mut m| m.get(&hash).cloned());
        if let Some((at, p)) = cached
            && at.elapsed() < TTL
        {
            return Ok(p);
        }
        let known_unknown = self
            .unknown
            .lock()
            .ok()
            .and_then(|mut m| m.get(&hash).copied())
            .is_some_and(|at| at.elapsed() < TTL);
        if known_unknown {
            return Err(self.refuse());
        }
        let row = sqlx::query(
            "SELECT id, role, store_id, terminal_id FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.clone())
        .fetch_optional(&db.pool)
        .await?;
        let Some(r) = row else {
            if let Ok(mut m) = self.found.lock() {
                m.pop(&hash);
            }
            if let Ok(mut m) = self.unknown.lock() {
                m.put(hash, Instant::now());
            }
            return Err(self.refuse());
        };
        let role: String = r.get("role");
        let store: Option<String> = r.get("store_id");
        let terminal: Option<String> = r.get("terminal_id");
        let principal = Principal {
            key_id: r.get("id"),
            role: Role::parse(&role).ok_or_else(|| {
                Error::internal(anyhow::anyhow!("stored key has unknown role {role}"))
            })?,
            store: store.and_then(|s| StoreId::parse(&s).ok()),
            terminal: terminal.and_then(|t| TerminalId::parse(&t).ok()),
        };
        if let Ok(mut m) = self.found.lock() {
            m.put(hash, (Instant::now(), principal.clone()));
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn random_tokens_neither_grow_the_cache_nor_push_real_keys_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/k.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate_up().await.unwrap();
        let spec = |role| KeySpec {
            role,
            store: None,
            terminal: None,
            label: None,
        };
        let real = create(&db, spec(Role::Admin)).await.unwrap();
        let other = create(&db, spec(Role::App)).await.unwrap();
        let cache = KeyCache::with_capacity(4, 8);
        assert_eq!(
            cache.authenticate(&db, &real.token).await.unwrap().key_id,
            real.id
        );
        for i in 0..100 {
            let e = cache
                .authenticate(&db, &format!("gk_random_{i}"))
                .await
                .unwrap_err();
            assert_eq!(e.code.as_str(), "unauthorized");
        }
        assert_eq!(
            cache.sizes(),
            (1, 8),
            "unknown tokens stay in their own bound"
        );
        assert_eq!(cache.failures(), 100);
        // Still remembered after the flood: revoked in the database, the
        // cached answer holds until its TTL.
        assert!(revoke(&db, &real.id).await.unwrap());
        assert!(cache.authenticate(&db, &real.token).await.is_ok());
        // Real keys beyond the bound evict the least recently used.
        let third = create(&db, spec(Role::App)).await.unwrap();
        let small = KeyCache::with_capacity(1, 1);
        small.authenticate(&db, &other.token).await.unwrap();
        small.authenticate(&db, &third.token).await.unwrap();
        assert_eq!(small.sizes(), (1, 0));
    }
}
