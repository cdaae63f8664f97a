//! API keys: who may call, in which role, for which store. Keys are random
//! 256-bit tokens; only their SHA-256 is stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use proto::order::{StoreId, TerminalId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::now_micros;
use crate::db::Db;
use crate::error::{Error, Result};

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
    pub fn actor(&self) -> String {
        match &self.terminal {
            Some(t) => format!("terminal:{t}"),
            None => format!("{}:{}", self.role.as_str(), self.key_id),
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
        return Err(Error::unprocessable(
            "store_required",
            "a terminal key needs --store",
        ));
    }
    if spec.role != Role::Terminal && spec.terminal.is_some() {
        return Err(Error::unprocessable(
            "terminal_not_allowed",
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
            return Err(Error::conflict(
                "terminal_exists",
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
    .bind(now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(NewKey { id, token })
}

pub async fn revoke(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.write().await?;
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_micros())
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

/// Looks keys up by hash, remembering answers briefly so a busy terminal
/// does not cost a query per request. Revocation takes effect within `TTL`.
#[derive(Clone, Default)]
pub struct KeyCache {
    inner: Arc<RwLock<HashMap<String, CachedKey>>>,
}

/// When a key was looked up, and what was found (`None`: no such key).
type CachedKey = (Instant, Option<Principal>);

const TTL: Duration = Duration::from_secs(10);

impl KeyCache {
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Principal> {
        let hash = hash_key(token);
        let cached = self.inner.read().ok().and_then(|m| m.get(&hash).cloned());
        if let Some((_, p)) = cached.filter(|(at, _)| at.elapsed() < TTL) {
            return p.ok_or_else(|| Error::unauthorized("unknown or revoked API key"));
        }
        let row = sqlx::query(
            "SELECT id, role, store_id, terminal_id FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.clone())
        .fetch_optional(&db.pool)
        .await?;
        let principal = match row {
            Some(r) => {
                let role: String = r.get("role");
                let store: Option<String> = r.get("store_id");
                let terminal: Option<String> = r.get("terminal_id");
                Some(Principal {
                    key_id: r.get("id"),
                    role: Role::parse(&role).ok_or_else(|| {
                        Error::internal(anyhow::anyhow!("stored key has unknown role {role}"))
                    })?,
                    store: store.and_then(|s| StoreId::parse(&s).ok()),
                    terminal: terminal.and_then(|t| TerminalId::parse(&t).ok()),
                })
            }
            None => None,
        };
        if let Ok(mut m) = self.inner.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(hash, (Instant::now(), principal.clone()));
        }
        principal.ok_or_else(|| Error::unauthorized("unknown or revoked API key"))
    }
}
