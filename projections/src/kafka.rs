//! The message-views projector on Kafka: records come from the consumer group's partitions, and
//! each batch's rows are written in one transaction with the partitions' offsets
//! (`kafka_offsets`), so a record is projected exactly once: one the group re-delivers (after a
//! crash or a rebalance, its commit behind) is recognised by its offset and skipped.
//!
//! The transaction also takes a share lock on the Postgres projector's checkpoint row: a replay
//! (`hermes replay message-views`) locks it exclusively while it swaps the rebuilt table in, so no
//! row is written into a table about to be dropped.

use crate::message_views::{NAME, apply_live};
use hermes_infra::kafka::{Delivery, KafkaStream, Record};
use hermes_infra::subscription;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;

/// Records projected in one transaction, at most.
const BATCH: usize = 1000;
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Projects what the stream delivers, until it stops.
pub async fn run_message_views(pool: PgPool, mut stream: KafkaStream, topic: String) {
    let mut projector = Projector {
        pool,
        topic,
        stored: HashMap::new(),
    };
    let mut batch: Vec<Record> = Vec::new();
    while let Some(first) = stream.next().await {
        let mut next = Some(first);
        while let Some(delivery) = next {
            match delivery {
                Delivery::Record(record) => batch.push(*record),
                Delivery::Skipped { partition, offset } => {
                    // Nothing to project; its offset is stored with the next batch's rows.
                    projector.skipped(partition, offset);
                }
                Delivery::Revoked { partitions, reply } => {
                    // Everything delivered before it is projected before the partitions go.
                    let points = projector.project_retrying(std::mem::take(&mut batch)).await;
                    stream.commit(points);
                    let released = partitions
                        .iter()
                        .filter_map(|p| projector.stored.remove(p).map(|next| (*p, next)))
                        .collect();
                    let _ = reply.send(released);
                }
            }
            next = if batch.len() < BATCH {
                stream.try_next()
            } else {
                None
            };
        }
        let points = projector.project_retrying(std::mem::take(&mut batch)).await;
        stream.commit(points);
    }
}

struct Projector {
    pool: PgPool,
    topic: String,
    /// Per partition: the next offset to project, as stored (loaded at the partition's first
    /// batch; only this worker moves it while the partition is assigned here).
    stored: HashMap<i32, i64>,
}

impl Projector {
    fn skipped(&mut self, partition: i32, offset: i64) {
        if let Some(next) = self.stored.get_mut(&partition) {
            *next = (*next).max(offset + 1);
        }
    }

    /// Projects a batch, trying again (the same batch) while the database fails. Returns the
    /// partitions' new commit points.
    async fn project_retrying(&mut self, batch: Vec<Record>) -> Vec<(i32, i64)> {
        if batch.is_empty() {
            return Vec::new();
        }
        let mut backoff = RETRY_START;
        loop {
            match self.project(&batch).await {
                Ok(points) => return points,
                Err(e) => {
                    tracing::warn!(subscriber = NAME, error = %e, retry_in = ?backoff,
                        "projecting from Kafka failed; trying the batch again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_CAP);
                }
            }
        }
    }

    async fn project(&mut self, batch: &[Record]) -> anyhow::Result<Vec<(i32, i64)>> {
        let mut tx = self.pool.begin().await?;
        subscription::load_checkpoint(&mut tx, NAME, false).await?;
        sqlx::query("SELECT 1 FROM subscription_checkpoints WHERE name = $1 FOR SHARE")
            .bind(NAME)
            .execute(&mut *tx)
            .await?;
        let mut partitions: Vec<i32> = batch.iter().map(|r| r.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let unknown: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.stored.contains_key(p))
            .collect();
        let mut stored = self.stored.clone();
        if !unknown.is_empty() {
            let rows: Vec<(i32, i64)> = sqlx::query_as(
                "SELECT partition, next_offset FROM kafka_offsets
                 WHERE consumer = $1 AND topic = $2 AND partition = ANY($3)",
            )
            .bind(NAME)
            .bind(&self.topic)
            .bind(&unknown)
            .fetch_all(&mut *tx)
            .await?;
            for p in unknown {
                let next = rows.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n);
                stored.insert(p, next);
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for r in batch {
            let next = stored.get_mut(&r.partition).expect("loaded above");
            if r.offset < *next {
                continue; // projected already: the group delivered it again
            }
            *next = r.offset + 1;
            events.push(r.event.clone());
        }
        apply_live(&mut tx, &events).await?;
        let (parts, nexts): (Vec<i32>, Vec<i64>) =
            partitions.iter().map(|p| (*p, stored[p])).unzip();
        sqlx::query(
            "INSERT INTO kafka_offsets (consumer, topic, partition, next_offset)
             SELECT $1, $2, * FROM UNNEST($3::int[], $4::bigint[])
             ON CONFLICT (consumer, topic, partition)
             DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        )
        .bind(NAME)
        .bind(&self.topic)
        .bind(&parts)
        .bind(&nexts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("hermes_subscriber_events_total", "subscriber" => NAME)
            .increment(events.len() as u64);
        self.stored = stored;
        Ok(parts.into_iter().zip(nexts).collect())
    }
}
