//! The relay: tails the event log (the tail-safe read, as every Postgres subscriber) and produces
//! each event to the topic, keyed by stream id. Its checkpoint moves only once the broker has
//! acknowledged every record of the batch; a failed batch is produced again (at least once: the
//! consumers are idempotent by event), and the idempotent producer keeps a retried send from
//! being a second record.

use super::{KafkaConfig, record};
use crate::event_store;
use crate::subscription::{self, Subscriber};
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use std::time::Duration;

pub const NAME: &str = "kafka-relay";
/// Events read from the log and produced at a time.
const BATCH: i64 = 1000;

pub struct Relay {
    producer: FutureProducer,
    topic: String,
}

impl Relay {
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Self> {
        Ok(Self {
            producer: config.producer().create()?,
            topic: config.topic.clone(),
        })
    }

    async fn relay_next(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let mut conn = pool.acquire().await?;
        let from = subscription::load_checkpoint(&mut conn, NAME, false).await?;
        let batch = event_store::read_after(&mut conn, from, BATCH).await?;
        drop(conn);
        let Some(last) = batch.last().map(event_store::StoredEvent::checkpoint) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(batch.len());
        for event in &batch {
            let key = record::key(event);
            let value = record::value(event);
            let mut next = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&value)
                .headers(record::headers(event));
            // The producer's queue is full: wait for some acks, then hand the record in again.
            loop {
                match self.producer.send_result(next) {
                    Ok(ack) => break acks.push(ack),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        next = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        for ack in acks {
            match ack.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("the broker did not take an event: {e}"),
                Err(_) => anyhow::bail!("the producer stopped before the broker answered"),
            }
        }
        let mut conn = pool.acquire().await?;
        subscription::save_checkpoint(&mut conn, NAME, last).await?;
        metrics::counter!("hermes_kafka_relayed_events_total").increment(batch.len() as u64);
        Ok(batch.len())
    }
}

impl Subscriber for Relay {
    fn name(&self) -> &str {
        NAME
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(self.relay_next(pool))
    }
}
