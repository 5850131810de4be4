//! Plugin versions uploaded through the admin API: an append-only history per plugin name, whose
//! newest row serves. Validation (that the bytes are a plugin that calls itself `name`) is the
//! caller's; this only stores.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;

/// One uploaded version, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Upload {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub uploaded_at: chrono::DateTime<chrono::Utc>,
}

pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Stores `wasm` as the newest version of `name`.
pub async fn insert(
    pool: &PgPool,
    name: &str,
    version: &str,
    wasm: &[u8],
) -> Result<Upload, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO plugin_uploads (name, version, sha256, wasm) VALUES ($1, $2, $3, $4)
         RETURNING name, version, sha256, uploaded_at",
    )
    .bind(name)
    .bind(version)
    .bind(digest(wasm))
    .bind(wasm)
    .fetch_one(pool)
    .await
}

/// The serving (newest) upload of every name.
pub async fn current(pool: &PgPool) -> Result<Vec<Upload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT ON (name) name, version, sha256, uploaded_at
         FROM plugin_uploads ORDER BY name, id DESC",
    )
    .fetch_all(pool)
    .await
}

/// The serving digest of every uploaded name: cheap enough to poll.
pub async fn current_digests(pool: &PgPool) -> Result<HashMap<String, String>, sqlx::Error> {
    Ok(current(pool)
        .await?
        .into_iter()
        .map(|u| (u.name, u.sha256))
        .collect())
}

/// The bytes of the newest upload of `name` with this digest.
pub async fn wasm(pool: &PgPool, name: &str, sha256: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT wasm FROM plugin_uploads WHERE name = $1 AND sha256 = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(name)
    .bind(sha256)
    .fetch_optional(pool)
    .await
}

/// Removes the newest upload of `name`: the one before it serves again (or, with none left, the
/// plugins directory's file or the built-in). Returns what was removed.
pub async fn rollback(pool: &PgPool, name: &str) -> Result<Option<Upload>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM plugin_uploads WHERE id = (
             SELECT id FROM plugin_uploads WHERE name = $1 ORDER BY id DESC LIMIT 1)
         RETURNING name, version, sha256, uploaded_at",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
}
