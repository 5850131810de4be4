//! Subscriptions over the Postgres log: a checkpoint per subscriber name, one active consumer
//! per name (the others stand by), woken by NOTIFY and by a short poll.
//!
//! The poll matters: an event whose transaction committed while an older transaction was still
//! open is held back by the tail-safe read, and no second NOTIFY comes when that older one ends.

use crate::event_store::{Checkpoint, NOTIFY_CHANNEL};
use futures::future::BoxFuture;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};

/// How long an idle subscriber waits for a NOTIFY before it looks at the log anyway.
const IDLE_POLL: Duration = Duration::from_millis(100);
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
}

/// Reads a checkpoint, creating it at the start of the log. `for_update` locks the row until the
/// transaction ends, which is how a replay keeps the live projector out while it rebuilds.
pub async fn load_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    for_update: bool,
) -> Result<Checkpoint, sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, tx_id, position) VALUES ($1, '0', 0)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    let sql = if for_update {
        "SELECT tx_id::text::bigint, position FROM subscription_checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT tx_id::text::bigint, position FROM subscription_checkpoints WHERE name = $1"
    };
    let (tx_id, position): (i64, i64) = sqlx::query_as(sql).bind(name).fetch_one(conn).await?;
    Ok(Checkpoint { tx_id, position })
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
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let mut last_check = Instant::now();
    loop {
        if last_check.elapsed() >= LEADERSHIP_CHECK {
            sqlx::query("SELECT 1").execute(&mut lock_conn).await?;
            last_check = Instant::now();
        }
        let handled = subscriber.poll(pool).await?;
        if handled == 0 {
            // A NOTIFY that came while we were busy is buffered and returns at once.
            let _ = tokio::time::timeout(IDLE_POLL, listener.try_recv()).await;
        }
    }
}
