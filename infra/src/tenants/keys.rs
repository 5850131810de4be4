//! API keys: made, found and checked. A key is `hms_` + 32 random bytes in hex; only its SHA-256
//! is stored. Keys carry 256 bits of entropy, so a fast hash is enough (no password stretching).
//! Operators list keys by id and prefix (never the key); a revoked key, a rotated key past its
//! overlap and the keys of a tenant that is not active are refused by every process within
//! [`crate::http::AUTH_CACHE_TTL`].

use super::TenantCommandError;
use chrono::{DateTime, Utc};
use hermes_domain::tenant::{NewKey, TenantSettings, TenantStatus};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::types::Json;
use std::sync::Arc;
use uuid::Uuid;

pub const KEY_PREFIX: &str = "hms_";

/// Characters of a key kept (in the clear) to tell keys apart: `hms_` and 8 hex digits.
const STORED_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random key, and what the tenant's history records of it.
pub(super) fn generate() -> (String, NewKey) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let new = NewKey {
        key_id: Uuid::now_v7(),
        prefix: key[..STORED_PREFIX_LEN].to_owned(),
        key_hash: hex::encode(hash_key(&key)),
    };
    (key, new)
}

/// A key as operators see it: never the key itself.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub prefix: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A rotated key works until then.
    pub expires_at: Option<DateTime<Utc>>,
}

const SELECT_KEY: &str =
    "SELECT id, tenant_id, prefix, name, created_at, revoked_at, expires_at FROM api_keys";

/// A tenant's keys, oldest first, revoked ones included.
pub async fn list_keys(
    pool: &PgPool,
    tenant_id: Uuid,
) -> Result<Vec<ApiKeyInfo>, TenantCommandError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
        .bind(tenant_id)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(TenantCommandError::NoTenant(tenant_id));
    }
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_KEY} WHERE tenant_id = $1 ORDER BY created_at, id"
    )))
    .bind(tenant_id)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn get(
    pool: &PgPool,
    tenant_id: Uuid,
    key_id: Uuid,
) -> Result<Option<ApiKeyInfo>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_KEY} WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(key_id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum KeyLookupError {
    #[error(
        "no API key matches {0:?} (give a key id, a prefix such as `hms_1a2b3c4d`, or the key)"
    )]
    NotFound(String),
    #[error("{count} API keys match {given:?}: give more of the prefix, or the key id")]
    Ambiguous { given: String, count: usize },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The one key that `given` names: its id, the start of its prefix (`hms_1a2b`), or the whole
/// key. For the CLI, where operators paste what they have.
pub async fn find_key(pool: &PgPool, given: &str) -> Result<ApiKeyInfo, KeyLookupError> {
    let given = given.trim();
    let matches: Vec<ApiKeyInfo> = if let Ok(id) = given.parse::<Uuid>() {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_KEY} WHERE id = $1")))
            .bind(id)
            .fetch_all(pool)
            .await?
    } else if given.len() > STORED_PREFIX_LEN {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_KEY} WHERE key_hash = $1"
        )))
        .bind(hash_key(given))
        .fetch_all(pool)
        .await?
    } else if given.len() > KEY_PREFIX.len()
        && given.starts_with(KEY_PREFIX)
        && given[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_KEY} WHERE left(prefix, length($1)) = $1 LIMIT 10"
        )))
        .bind(given.to_ascii_lowercase())
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    match <[ApiKeyInfo; 1]>::try_from(matches) {
        Ok([key]) => Ok(key),
        Err(v) if v.is_empty() => Err(KeyLookupError::NotFound(given.to_owned())),
        Err(v) => Err(KeyLookupError::Ambiguous {
            given: given.to_owned(),
            count: v.len(),
        }),
    }
}

/// Whose a presented key is, as the read model says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub tenant_id: Uuid,
    pub status: TenantStatus,
    /// Read with the key, so the accept path needs no second query for them.
    pub settings: Arc<TenantSettings>,
    /// Whether the tenant's suppression list has ever held an address (else accepts skip the
    /// lookup).
    pub has_suppressions: bool,
    /// A rotated key stops working then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// tenant id, status, settings, has suppressions, key expiry.
type OwnerRow = (
    Uuid,
    String,
    Json<TenantSettings>,
    bool,
    Option<DateTime<Utc>>,
);

/// The owner of an API key that exists, is not revoked and has not expired; `None` otherwise.
/// The tenant's status is for the caller to judge (a suspended tenant's key is still its key).
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<KeyOwner>, sqlx::Error> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let row: Option<OwnerRow> = sqlx::query_as(
        "SELECT k.tenant_id, t.status, t.settings, t.has_suppressions, k.expires_at
           FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
          WHERE k.key_hash = $1 AND k.revoked_at IS NULL
            AND (k.expires_at IS NULL OR k.expires_at > now())",
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(tenant_id, status, settings, has_suppressions, expires_at)| KeyOwner {
            tenant_id,
            // The column's CHECK allows only the three.
            status: TenantStatus::parse(&status).unwrap_or(TenantStatus::Suspended),
            settings: Arc::new(settings.0),
            has_suppressions,
            expires_at,
        },
    ))
}
