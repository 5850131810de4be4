//! Tenants and their API keys. A key is `hms_` + 32 random bytes in hex; only its SHA-256 is
//! stored. Keys carry 256 bits of entropy, so a fast hash is enough (no password stretching).

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
    let api_key = insert_key(&mut tx, tenant_id).await?;
    tx.commit().await?;
    Ok(CreatedTenant { tenant_id, api_key })
}

async fn insert_key(conn: &mut sqlx::PgConnection, tenant_id: Uuid) -> Result<String, sqlx::Error> {
    let key = new_key();
    sqlx::query("INSERT INTO api_keys (id, tenant_id, key_hash, prefix) VALUES ($1, $2, $3, $4)")
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(hash_key(&key))
        .bind(&key[..KEY_PREFIX.len() + 8])
        .execute(conn)
        .await?;
    Ok(key)
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
    insert_key(&mut conn, tenant_id).await
}

/// The oldest tenant with this name, if any.
pub async fn find_by_name(pool: &PgPool, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1")
        .bind(name)
        .fetch_optional(pool)
        .await
}
