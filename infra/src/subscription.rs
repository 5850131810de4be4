//! Subscriptions over the Postgres log: a checkpoint per subscriber name, one active consumer
//! per name (the others stand by), woken at once by commits in this process and otherwise by a
//! short poll (see `event_store::appended` for why not NOTIFY).

use crate::event_store::{self, Checkpoint};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};

/// How long an idle subscriber waits for a local commit before it looks at the log anyway
/// (events written by other processes are seen within this).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often a leader checks that the connection holding its lock is alive.
const LEADERSHIP_CHECK: Duration = Duration::from_secs(1);
/// How often a standby tries to become the leader.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

pub trait Subscriber: Send {
    /// The checkpoint and leadership name.
    fn name(&self) -> &str;
    /// Processes the next batch after the stored checkpoint and saves the new checkpoint (in the
    /// same transaction as its own writes, when it has any). Returns how many events it handled.
    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>>;
    /// Called each time this process becomes the active consumer, before its first poll: one
    /// that keeps state between polls (events read ahead) starts again from the stored
    /// checkpoint, which another process may have moved meanwhile.
    fn resume(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// The least time between two polls. Zero (the default) polls again at once while events
    /// come, for the lowest latency; a subscriber that can lag a little sets more, and costs the
    /// database a few large reads a second instead of one small read per commit.
    fn pace(&self) -> Duration {
        Duration::ZERO
    }
}

/// Reads a checkpoint, creating it at the start of the log. `for_update` locks the row until the
/// transaction ends, which is how a replay keeps the live projector out while it rebuilds.
pub async fn load_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    for_update: bool,
) -> Result<Checkpoint, sqlx::Error> {
    let sql = if for_update {
        "SELECT tx_id::text::bigint, position FROM subscription_checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT tx_id::text::bigint, position FROM subscription_checkpoints WHERE name = $1"
    };
    loop {
        let found: Option<(i64, i64)> = sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some((tx_id, position)) = found {
            return Ok(Checkpoint { tx_id, position });
        }
        // First run of this subscriber: start at the beginning of the log. Inserting only when
        // missing keeps polls read-only (a conflicting insert would still take a transaction id).
        sqlx::query(
            "INSERT INTO subscription_checkpoints (name, tx_id, position) VALUES ($1, '0', 0)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await?;
    }
}

pub async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    cp: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_checkpoints SET tx_id = $2::bigint::text::xid8, position = $3, updated_at = now()
         WHERE name = $1",
    )
    .bind(name)
    .bind(cp.tx_id)
    .bind(cp.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs a subscriber forever: waits to become the leader for its name, then polls, sleeping
/// on NOTIFY when caught up. Errors are logged and retried; the subscriber never skips a batch.
pub async fn run(pool: PgPool, mut subscriber: impl Subscriber) {
    loop {
        if let Err(e) = lead(&pool, &mut subscriber).await {
            tracing::warn!(subscriber = subscriber.name(), error = %e, "subscriber lost its run; retrying");
        }
        tokio::time::sleep(STANDBY_RETRY).await;
    }
}

async fn lead(pool: &PgPool, subscriber: &mut impl Subscriber) -> anyhow::Result<()> {
    let name = subscriber.name().to_owned();
    // The lock lives as long as this connection: taken out of the pool so nobody else uses it,
    // and if the process dies the server drops the connection and the lock with it.
    let mut lock_conn = pool.acquire().await?.detach();
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&name)
            .fetch_one(&mut lock_conn)
            .await?;
        if got {
            break;
        }
        tokio::time::sleep(STANDBY_RETRY).await;
    }
    tracing::info!(subscriber = %name, "became the active consumer");
    subscriber.resume().await;
    let mut appended = event_store::appended();
    let mut last_check = Instant::now();
    loop {
        if last_check.elapsed() >= LEADERSHIP_CHECK {
            // Also proves the connection holding the lock is alive.
            let lag: Option<i64> = sqlx::query_scalar(
                "SELECT (SELECT coalesce(max(position), 0) FROM events) - position
                 FROM subscription_checkpoints WHERE name = $1",
            )
            .bind(&name)
            .fetch_optional(&mut lock_conn)
            .await?;
            metrics::gauge!("hermes_subscriber_lag_events", "subscriber" => name.clone())
                .set(lag.unwrap_or(0) as f64);
            last_check = Instant::now();
        }
        // Marked seen before polling: a commit during the poll makes the wait below return at once.
        appended.borrow_and_update();
        let polled_at = Instant::now();
        let handled = subscriber.poll(pool).await?;
        metrics::counter!("hermes_subscriber_events_total", "subscriber" => name.clone())
            .increment(handled as u64);
        if let Some(rest) = subscriber.pace().checked_sub(polled_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        if handled == 0 {
            let _ = tokio::time::timeout(IDLE_POLL, appended.changed()).await;
        }
    }
}
