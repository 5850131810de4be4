//! A tenant's duplicate window: fingerprints of the recipient and content of its recent
//! messages, claimed in the same transaction as the message they name (like idempotency keys),
//! kept until their window ends.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One fingerprint to claim for a new message.
#[derive(Debug, Clone)]
pub struct ContentClaim<'a> {
    pub tenant_id: Uuid,
    pub fingerprint: &'a [u8],
    pub message_id: Uuid,
    pub window_seconds: u32,
}

/// Claims fingerprints for their messages, answering in the same order: `None` when claimed,
/// else the message that holds it (accepted within its window). A concurrent claim of the same
/// fingerprint waits on the primary key until the first transaction ends. An expired row is
/// taken over. The `(tenant_id, fingerprint)` pairs must be distinct within one call.
pub async fn claim_many(
    conn: &mut PgConnection,
    claims: &[ContentClaim<'_>],
) -> Result<Vec<Option<Uuid>>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(vec![]);
    }
    let tenants: Vec<Uuid> = claims.iter().map(|c| c.tenant_id).collect();
    let prints: Vec<&[u8]> = claims.iter().map(|c| c.fingerprint).collect();
    let messages: Vec<Uuid> = claims.iter().map(|c| c.message_id).collect();
    let windows: Vec<i32> = claims.iter().map(|c| c.window_seconds as i32).collect();
    let claimed: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO content_fingerprints (tenant_id, fingerprint, message_id, expires_at)
         SELECT t, f, m, now() + make_interval(secs => w)
           FROM UNNEST($1::uuid[], $2::bytea[], $3::uuid[], $4::int[]) AS x(t, f, m, w)
         ON CONFLICT (tenant_id, fingerprint) DO UPDATE
             SET message_id = EXCLUDED.message_id, expires_at = EXCLUDED.expires_at
             WHERE content_fingerprints.expires_at <= now()
         RETURNING tenant_id, fingerprint",
    )
    .bind(&tenants)
    .bind(&prints)
    .bind(&messages)
    .bind(&windows)
    .fetch_all(&mut *conn)
    .await?;
    let is_claimed = |c: &ContentClaim| {
        claimed
            .iter()
            .any(|(t, f)| *t == c.tenant_id && f == c.fingerprint)
    };
    let taken: Vec<&ContentClaim> = claims.iter().filter(|c| !is_claimed(c)).collect();
    let holders: Vec<(Uuid, Vec<u8>, Uuid)> = if taken.is_empty() {
        vec![]
    } else {
        let tenants: Vec<Uuid> = taken.iter().map(|c| c.tenant_id).collect();
        let prints: Vec<&[u8]> = taken.iter().map(|c| c.fingerprint).collect();
        sqlx::query_as(
            "SELECT c.tenant_id, c.fingerprint, c.message_id
               FROM content_fingerprints c
               JOIN UNNEST($1::uuid[], $2::bytea[]) AS x(tenant_id, fingerprint)
                 ON c.tenant_id = x.tenant_id AND c.fingerprint = x.fingerprint",
        )
        .bind(&tenants)
        .bind(&prints)
        .fetch_all(&mut *conn)
        .await?
    };
    claims
        .iter()
        .map(|c| {
            if is_claimed(c) {
                return Ok(None);
            }
            holders
                .iter()
                .find(|(t, f, _)| *t == c.tenant_id && f == c.fingerprint)
                .map(|(_, _, id)| Some(*id))
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// The message holding `fingerprint` in its window, if any (the preview's answer).
pub async fn holder(
    pool: &PgPool,
    tenant_id: Uuid,
    fingerprint: &[u8],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT message_id FROM content_fingerprints
          WHERE tenant_id = $1 AND fingerprint = $2 AND expires_at > now()",
    )
    .bind(tenant_id)
    .bind(fingerprint)
    .fetch_optional(pool)
    .await
}

/// Deletes fingerprints whose window has ended; returns how many.
pub async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM content_fingerprints WHERE expires_at <= now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
