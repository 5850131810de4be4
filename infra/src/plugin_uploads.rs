//! Plugin versions uploaded through the admin API: an append-only history per plugin name, whose
//! newest row serves. Validation (that the bytes are a plugin that calls itself `name`) is the
//! caller's; this stores and authenticates.
//!
//! Each row carries a MAC of its name, version and digest under `HERMES_SECRET_KEY`, and the
//! bytes are checked against the digest when read: someone who can write this table but does not
//! hold the key cannot make Hermes run other code with the accounts' credentials.

use crate::provider_accounts::SealingKey;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;

/// What an upload's MAC is for (a key derived for this purpose only).
const MAC_PURPOSE: &str = "hermes-plugin-upload/1";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "uploaded plugin {name} {version} is not authentic (its bytes, digest or MAC do not match, or it predates MACs): not served; upload it again"
    )]
    Unauthentic { name: String, version: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The message an upload's MAC covers.
fn mac_message(name: &str, version: &str, sha256: &str) -> Vec<u8> {
    serde_json::to_vec(&(MAC_PURPOSE, name, version, sha256)).expect("strings serialize")
}

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

/// Stores `wasm` as the newest version of `name`, with its MAC under `key`.
pub async fn insert(
    pool: &PgPool,
    key: &SealingKey,
    name: &str,
    version: &str,
    wasm: &[u8],
) -> Result<Upload, sqlx::Error> {
    let sha256 = digest(wasm);
    let mac = key.mac(MAC_PURPOSE, &mac_message(name, version, &sha256));
    sqlx::query_as(
        "INSERT INTO plugin_uploads (name, version, sha256, wasm, mac) VALUES ($1, $2, $3, $4, $5)
         RETURNING name, version, sha256, uploaded_at",
    )
    .bind(name)
    .bind(version)
    .bind(&sha256)
    .bind(wasm)
    .bind(mac)
    .fetch_one(pool)
    .await
}

/// A rotation's second step: signs again, under the current key, every upload the previous key
/// signed; answers how many. An upload neither key verifies stays as it is (refused when served).
pub async fn rekey(pool: &PgPool, key: &SealingKey) -> Result<usize, sqlx::Error> {
    /// id, name, version, digest, MAC.
    type Row = (i64, String, String, String, Option<Vec<u8>>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, name, version, sha256, mac FROM plugin_uploads ORDER BY id")
            .fetch_all(pool)
            .await?;
    let mut resigned = 0;
    for (id, name, version, sha256, mac) in rows {
        let message = mac_message(&name, &version, &sha256);
        let Some(tag) = mac else { continue };
        if key.verify_mac_current(MAC_PURPOSE, &message, &tag)
            || !key.verify_mac(MAC_PURPOSE, &message, &tag)
        {
            continue;
        }
        sqlx::query("UPDATE plugin_uploads SET mac = $2 WHERE id = $1")
            .bind(id)
            .bind(key.mac(MAC_PURPOSE, &message))
            .execute(pool)
            .await?;
        resigned += 1;
    }
    Ok(resigned)
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

/// The bytes of the newest upload of `name` with this digest, once they are shown authentic:
/// they hash to the digest, and the row's MAC under `key` covers its name, version and digest.
pub async fn wasm(
    pool: &PgPool,
    key: &SealingKey,
    name: &str,
    sha256: &str,
) -> Result<Option<Vec<u8>>, UploadError> {
    let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT version, wasm, mac FROM plugin_uploads WHERE name = $1 AND sha256 = $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(name)
    .bind(sha256)
    .fetch_optional(pool)
    .await?;
    let Some((version, wasm, mac)) = row else {
        return Ok(None);
    };
    let authentic = digest(&wasm) == sha256
        && mac.is_some_and(|tag| {
            key.verify_mac(MAC_PURPOSE, &mac_message(name, &version, sha256), &tag)
        });
    if !authentic {
        return Err(UploadError::Unauthentic {
            name: name.to_owned(),
            version,
        });
    }
    Ok(Some(wasm))
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
