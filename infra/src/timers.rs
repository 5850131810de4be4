//! Durable timers: rows armed in the same transaction as the event that wants them, claimed by
//! pollers with `FOR UPDATE SKIP LOCKED` and a lease, deleted in the transaction that handles them.
//!
//! The table is a queue: thousands of rows armed and deleted a second, often empty when
//! autovacuum looks at it. A plan made then is a sequential scan, and a prepared statement keeps
//! its generic plan for the connection's life, scanning every live and dead row of the grown
//! table on each delete (measured: 190 sequential scans a second at 600 msg/s). So the queries
//! that look rows up are not kept prepared (`persistent(false)`): each is planned for the table
//! as it is, and the indexes are used.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueTimer {
    pub id: i64,
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
    pub kind: serde_json::Value,
    pub due_at: DateTime<Utc>,
}

/// One timer to arm.
#[derive(Debug, Clone)]
pub struct NewTimer {
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
    pub kind: serde_json::Value,
    pub due_at: DateTime<Utc>,
}

/// Arms many timers with one statement.
pub async fn arm_many(conn: &mut PgConnection, timers: &[NewTimer]) -> Result<(), sqlx::Error> {
    if timers.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = timers.iter().map(|t| t.tenant_id).collect();
    let streams: Vec<Uuid> = timers.iter().map(|t| t.stream_id).collect();
    let kinds: Vec<&serde_json::Value> = timers.iter().map(|t| &t.kind).collect();
    let due: Vec<DateTime<Utc>> = timers.iter().map(|t| t.due_at).collect();
    sqlx::query(
        "INSERT INTO timers (tenant_id, stream_id, kind, due_at)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::jsonb[], $4::timestamptz[])",
    )
    .bind(&tenants)
    .bind(&streams)
    .bind(&kinds)
    .bind(&due)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes every timer of these streams (their messages ended).
pub async fn disarm_streams(
    conn: &mut PgConnection,
    stream_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if stream_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM timers WHERE stream_id = ANY($1)")
        .persistent(false)
        .bind(stream_ids)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_many(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM timers WHERE id = ANY($1)")
        .persistent(false)
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims up to `limit` due timers for `lease`. A claimed timer that is not deleted before the
/// lease ends (its poller died) is claimed again by the next poll, here or on another node.
///
/// `now` is the caller's clock, the one `due_at` was computed with (the aggregate's, in the
/// command handler), not the database's: with two clocks, a skew between them would fire every
/// timer early or late by that skew, before the time its own event announced.
pub async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<DueTimer>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE timers SET locked_until = $1 + make_interval(secs => $3)
         WHERE id IN (
             SELECT id FROM timers
             WHERE due_at <= $1 AND (locked_until IS NULL OR locked_until < $1)
             ORDER BY due_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant_id, stream_id, kind, due_at",
    )
    .persistent(false)
    .bind(now)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// How long the oldest due timer has been due, in seconds (0 when none is): a timer poller that
/// stopped shows here (the `hermes_timers_overdue_seconds` gauge).
pub async fn overdue_seconds(pool: &sqlx::PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM now() - min(due_at))::float8, 0)
           FROM timers WHERE due_at <= now()",
    )
    .persistent(false)
    .fetch_one(pool)
    .await
}
