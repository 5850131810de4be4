//! Parked events: what a subscriber could not handle, kept with the error so that its stream goes
//! on (one bad event must not stop every message behind it). Listed and retried by `hermes parked`.

use crate::event_store::StoredEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ParkedEvent {
    pub subscriber: String,
    pub event_id: Uuid,
    pub position: i64,
    pub stream_id: Uuid,
    pub event_type: String,
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
    pub retry_requested: bool,
}

/// Parks `event` for `subscriber` with `error`; parking it again counts another attempt. On the
/// subscriber's own connection, so a projector parks in the transaction that moves its checkpoint.
pub async fn park(
    conn: &mut PgConnection,
    subscriber: &str,
    event: &StoredEvent,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO parked_events (subscriber, event_id, position, stream_id, event_type, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (subscriber, event_id) DO UPDATE
             SET error = EXCLUDED.error, attempts = parked_events.attempts + 1,
                 retry_requested = false",
    )
    .bind(subscriber)
    .bind(event.event_id)
    .bind(event.position)
    .bind(event.stream_id)
    .bind(&event.event_type)
    .bind(error)
    .execute(conn)
    .await?;
    metrics::counter!("hermes_parked_events_total", "subscriber" => subscriber.to_owned())
        .increment(1);
    Ok(())
}

/// Every parked event, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT subscriber, event_id, position, stream_id, event_type, error, attempts, parked_at,
                retry_requested
           FROM parked_events ORDER BY position",
    )
    .fetch_all(pool)
    .await
}

/// Asks `subscriber` to try these of its parked events again (all of them when `event_ids` is
/// empty). Returns how many were marked.
pub async fn request_retry(
    pool: &PgPool,
    subscriber: &str,
    event_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE parked_events SET retry_requested = true
          WHERE subscriber = $1 AND (cardinality($2::uuid[]) = 0 OR event_id = ANY($2))",
    )
    .bind(subscriber)
    .bind(event_ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The events `subscriber` was asked to try again, with their stored form.
pub async fn retries_requested(
    conn: &mut PgConnection,
    subscriber: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM parked_events WHERE subscriber = $1 AND retry_requested
          ORDER BY position LIMIT 100",
    )
    .bind(subscriber)
    .fetch_all(&mut *conn)
    .await?;
    crate::event_store::load_events(conn, &ids).await
}

/// A retried event went through: it is no longer parked.
pub async fn unpark(pool: &PgPool, subscriber: &str, event_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM parked_events WHERE subscriber = $1 AND event_id = $2")
        .bind(subscriber)
        .bind(event_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Events parked now, per subscriber (the `hermes_parked_events` gauge).
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT subscriber, count(*) FROM parked_events GROUP BY subscriber")
        .fetch_all(pool)
        .await
}
