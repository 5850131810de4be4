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

/// One key to claim.
#[derive(Debug, Clone)]
pub struct KeyClaim<'a> {
    pub tenant_id: Uuid,
    pub key: &'a str,
    pub request_hash: &'a [u8],
    pub message_id: Uuid,
}

/// Claims keys for their messages, answering in the same order. A concurrent claim of the same
/// key waits on the primary key until the first transaction ends, then sees its row. An expired
/// row is taken over. The `(tenant_id, key)` pairs must be distinct within one call.
pub async fn claim_many(
    conn: &mut PgConnection,
    claims: &[KeyClaim<'_>],
) -> Result<Vec<Claim>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(vec![]);
    }
    let tenants: Vec<Uuid> = claims.iter().map(|c| c.tenant_id).collect();
    let keys: Vec<&str> = claims.iter().map(|c| c.key).collect();
    let hashes: Vec<&[u8]> = claims.iter().map(|c| c.request_hash).collect();
    let messages: Vec<Uuid> = claims.iter().map(|c| c.message_id).collect();
    let claimed: Vec<(Uuid, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, message_id)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::uuid[])
         ON CONFLICT (tenant_id, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id, created_at = now()
             WHERE idempotency_keys.created_at < now() - make_interval(hours => $5)
         RETURNING tenant_id, key",
    )
    .bind(&tenants)
    .bind(&keys)
    .bind(&hashes)
    .bind(&messages)
    .bind(RETENTION_HOURS)
    .fetch_all(&mut *conn)
    .await?;
    let is_claimed = |c: &KeyClaim| claimed.iter().any(|(t, k)| *t == c.tenant_id && k == c.key);
    let taken: Vec<&KeyClaim> = claims.iter().filter(|c| !is_claimed(c)).collect();
    let existing: Vec<(Uuid, String, Vec<u8>, Uuid)> = if taken.is_empty() {
        vec![]
    } else {
        let tenants: Vec<Uuid> = taken.iter().map(|c| c.tenant_id).collect();
        let keys: Vec<&str> = taken.iter().map(|c| c.key).collect();
        sqlx::query_as(
            "SELECT i.tenant_id, i.key, i.request_hash, i.message_id
             FROM idempotency_keys i JOIN UNNEST($1::uuid[], $2::text[]) AS x(tenant_id, key)
               ON i.tenant_id = x.tenant_id AND i.key = x.key",
        )
        .bind(&tenants)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?
    };
    claims
        .iter()
        .map(|c| {
            if is_claimed(c) {
                return Ok(Claim::Claimed);
            }
            existing
                .iter()
                .find(|(t, k, _, _)| *t == c.tenant_id && k == c.key)
                .map(|(_, _, hash, id)| Claim::Existing {
                    request_hash: hash.clone(),
                    message_id: *id,
                })
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
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
