//! Tenants and their API keys. A key is `hms_` + 32 random bytes in hex; only its SHA-256 is
//! stored. Keys carry 256 bits of entropy, so a fast hash is enough (no password stretching).
//! Operators list keys by id and prefix (never the key), issue named ones and revoke them; a
//! revoked key is refused by every process within [`crate::http::AUTH_CACHE_TTL`].

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

pub const KEY_PREFIX: &str = "hms_";

pub struct CreatedTenant {
    pub tenant_id: Uuid,
    /// Shown once; not recoverable later.
    pub api_key: String,
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub async fn create_tenant(pool: &PgPool, name: &str) -> Result<CreatedTenant, sqlx::Error> {
    let tenant_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(tenant_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let api_key = insert_key(&mut tx, tenant_id, None).await?.api_key;
    tx.commit().await?;
    Ok(CreatedTenant { tenant_id, api_key })
}

/// Characters of a key kept (in the clear) to tell keys apart: `hms_` and 8 hex digits.
const STORED_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

async fn insert_key(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    name: Option<&str>,
) -> Result<IssuedKey, sqlx::Error> {
    let api_key = new_key();
    let id = Uuid::now_v7();
    let prefix = api_key[..STORED_PREFIX_LEN].to_owned();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(hash_key(&api_key))
    .bind(&prefix)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(IssuedKey {
        id,
        prefix,
        api_key,
    })
}

/// A key just issued.
pub struct IssuedKey {
    pub id: Uuid,
    pub prefix: String,
    /// Shown once; not recoverable later.
    pub api_key: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no tenant {0}")]
    NoTenant(Uuid),
    #[error("a key name has 1 to 200 characters")]
    BadName,
    #[error(
        "no API key matches {0:?} (give a key id, a prefix such as `hms_1a2b3c4d`, or the key)"
    )]
    NotFound(String),
    #[error("{count} API keys match {given:?}: give more of the prefix, or the key id")]
    Ambiguous { given: String, count: usize },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Issues a key for an existing tenant (the old ones stay valid), with an optional name.
pub async fn create_key(
    pool: &PgPool,
    tenant_id: Uuid,
    name: Option<&str>,
) -> Result<IssuedKey, KeyError> {
    if name.is_some_and(|n| n.is_empty() || n.chars().count() > 200) {
        return Err(KeyError::BadName);
    }
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Err(KeyError::NoTenant(tenant_id));
    }
    let issued = insert_key(&mut tx, tenant_id, name).await?;
    tx.commit().await?;
    Ok(issued)
}

/// A tenant's keys, oldest first, revoked ones included.
pub async fn list_keys(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<ApiKeyInfo>, KeyError> {
    let keys: Vec<ApiKeyInfo> = sqlx::query_as(
        "SELECT id, tenant_id, prefix, name, created_at, revoked_at FROM api_keys
          WHERE tenant_id = $1 ORDER BY created_at, id",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    if keys.is_empty() {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
                .bind(tenant_id)
                .fetch_one(pool)
                .await?;
        if !exists {
            return Err(KeyError::NoTenant(tenant_id));
        }
    }
    Ok(keys)
}

/// Revokes the one key that `given` names: its id, the start of its prefix (`hms_1a2b`), or the
/// whole key. Revoking a revoked key changes nothing (its first revocation time stays).
pub async fn revoke_key(pool: &PgPool, given: &str) -> Result<ApiKeyInfo, KeyError> {
    let given = given.trim();
    let select = "SELECT id, tenant_id, prefix, name, created_at, revoked_at FROM api_keys";
    let matches: Vec<ApiKeyInfo> = if let Ok(id) = given.parse::<Uuid>() {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{select} WHERE id = $1")))
            .bind(id)
            .fetch_all(pool)
            .await?
    } else if given.len() > STORED_PREFIX_LEN {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{select} WHERE key_hash = $1")))
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
            "{select} WHERE left(prefix, length($1)) = $1 LIMIT 10"
        )))
        .bind(given.to_ascii_lowercase())
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    let key = match <[ApiKeyInfo; 1]>::try_from(matches) {
        Ok([key]) => key,
        Err(v) if v.is_empty() => return Err(KeyError::NotFound(given.to_owned())),
        Err(v) => {
            return Err(KeyError::Ambiguous {
                given: given.to_owned(),
                count: v.len(),
            });
        }
    };
    let revoked_at: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
         RETURNING revoked_at",
    )
    .bind(key.id)
    .fetch_one(pool)
    .await?;
    Ok(ApiKeyInfo {
        revoked_at: Some(revoked_at),
        ..key
    })
}

/// The tenant an API key belongs to, if the key exists and is not revoked.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(hash_key(key))
        .fetch_optional(pool)
        .await
}

/// Issues another key for an existing tenant (the old ones stay valid).
pub async fn issue_key(pool: &PgPool, tenant_id: Uuid) -> Result<String, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    Ok(insert_key(&mut conn, tenant_id, None).await?.api_key)
}

/// The oldest tenant with this name, if any.
pub async fn find_by_name(pool: &PgPool, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1")
        .bind(name)
        .fetch_optional(pool)
        .await
}
