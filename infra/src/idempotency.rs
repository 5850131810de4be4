//! Idempotency keys: per tenant, kept 24 hours, claimed in the same transaction as the events of
//! the message they name, so a key never points at a message that was not stored.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub const RETENTION_HOURS: i32 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: go on and store the message.
    Claimed,
    /// The key was used before, for this message and a request with this hash.
    Existing {
        request_hash: Vec<u8>,
        message_id: Uuid,
    },
}

/// Claims `key` for `message_id`. A concurrent claim of the same key waits on the primary key
/// until the first transaction ends, then sees its row. An expired row is taken over.
pub async fn claim(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
    request_hash: &[u8],
    message_id: Uuid,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, message_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id, created_at = now()
             WHERE idempotency_keys.created_at < now() - make_interval(hours => $5)",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(request_hash)
    .bind(message_id)
    .bind(RETENTION_HOURS)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let (request_hash, message_id): (Vec<u8>, Uuid) = sqlx::query_as(
        "SELECT request_hash, message_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_one(conn)
    .await?;
    Ok(Claim::Existing {
        request_hash,
        message_id,
    })
}

/// Deletes keys older than the retention; returns how many.
pub async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
    )
    .bind(RETENTION_HOURS)
    .execute(pool)
    .await?
    .rows_affected())
}
