//! The relay: tails the event log (the tail-safe read, as every Postgres subscriber) and produces
//! each event to the topic, keyed by stream id. Its checkpoint moves only once the broker has
//! acknowledged every record up to it; a failed record sends the relay back to its checkpoint, to
//! produce from there again (at least once: the consumers are idempotent by event), and the
//! idempotent producer keeps a retried send from being a second record.
//!
//! Batches are pipelined: the next batch is read and handed to the producer while the broker has
//! not yet acknowledged the previous ones (up to [`IN_FLIGHT`] of them), so an event waits for
//! the broker's acknowledgement of its own batch, not for every batch before it in turn. The
//! checkpoint moves over the acknowledged prefix, in log order.
//!
//! An idempotent producer can fail for good (librdkafka's "fatal error", e.g. after the broker
//! lost its producer state): every later send fails too. The relay then builds a new producer
//! before it starts again from its checkpoint, instead of failing forever.

use super::{KafkaConfig, record};
use crate::event_store::{self, Checkpoint};
use crate::subscription::{self, Subscriber};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sqlx::PgPool;
use std::collections::VecDeque;
use std::time::Duration;

pub const NAME: &str = "kafka-relay";
/// Events read from the log and produced at a time.
const BATCH: i64 = 1000;
/// Batches handed to the producer and not yet acknowledged in full, at most.
const IN_FLIGHT: usize = 4;

pub struct Relay {
    producer: FutureProducer,
    /// What a new producer is built from, after a fatal error.
    config: ClientConfig,
    topic: String,
    /// Where the next read starts: after the last batch handed to the producer (`None`: from the
    /// stored checkpoint).
    read_to: Option<Checkpoint>,
    /// Batches handed to the producer and not acknowledged in full, oldest first.
    in_flight: VecDeque<InFlight>,
}

struct InFlight {
    /// The checkpoint once every record of the batch is acknowledged.
    last: Checkpoint,
    events: usize,
    acks: FuturesUnordered<DeliveryFuture>,
}

impl InFlight {
    /// Takes in the acknowledgements that came; `true` once all have. `wait`: until they have.
    async fn settle(&mut self, wait: bool) -> anyhow::Result<bool> {
        loop {
            let next = if wait {
                Some(self.acks.next().await)
            } else {
                self.acks.next().now_or_never()
            };
            match next {
                None => return Ok(false),
                Some(None) => return Ok(true),
                Some(Some(Ok(Ok(_)))) => {}
                Some(Some(Ok(Err((e, _))))) => {
                    anyhow::bail!("the broker did not take an event: {e}")
                }
                Some(Some(Err(_))) => {
                    anyhow::bail!("the producer stopped before the broker answered")
                }
            }
        }
    }
}

impl Relay {
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Self> {
        let producer_config = config.producer();
        Ok(Self {
            producer: producer_config.create()?,
            config: producer_config,
            topic: config.topic.clone(),
            read_to: None,
            in_flight: VecDeque::new(),
        })
    }

    async fn relay_next(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let result = self.pipeline(pool).await;
        if result.is_err() {
            // Back to the checkpoint: what was handed in after it is produced again.
            self.read_to = None;
            self.in_flight.clear();
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                tracing::error!(?code, %reason, "the Kafka producer failed for good; building a new one");
                metrics::counter!("hermes_kafka_producer_restarts_total").increment(1);
                self.producer = self.config.create()?;
            }
        }
        result
    }

    /// Hands the next batch to the producer (first waiting for the oldest one when
    /// [`IN_FLIGHT`] are out), takes in the acknowledgements that came, and moves the checkpoint
    /// over the batches acknowledged in full. Returns how many events it handed in: when none,
    /// the subscription loop waits for the next append, and the acknowledgements still out are
    /// taken in at the next poll.
    async fn pipeline(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let full = self.in_flight.len() >= IN_FLIGHT;
        let mut acknowledged = self.take_acknowledged(full).await?;
        let read = self.produce_next(pool).await?;
        acknowledged = self.take_acknowledged(false).await?.or(acknowledged);
        if let Some(at) = acknowledged {
            let mut conn = pool.acquire().await?;
            subscription::save_checkpoint(&mut conn, NAME, at).await?;
        }
        Ok(read)
    }

    /// Pops the batches acknowledged in full, oldest first (`wait`: waits for the oldest one);
    /// the checkpoint after the last of them.
    async fn take_acknowledged(&mut self, wait: bool) -> anyhow::Result<Option<Checkpoint>> {
        let mut acknowledged = None;
        while let Some(front) = self.in_flight.front_mut() {
            if !front.settle(wait && acknowledged.is_none()).await? {
                break;
            }
            let done = self.in_flight.pop_front().expect("checked");
            metrics::counter!("hermes_kafka_relayed_events_total").increment(done.events as u64);
            acknowledged = Some(done.last);
        }
        Ok(acknowledged)
    }

    /// Reads the events after the last batch handed in and hands them to the producer; how many.
    async fn produce_next(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let mut conn = pool.acquire().await?;
        let from = match self.read_to {
            Some(at) => at,
            None => subscription::load_checkpoint(&mut conn, NAME, false).await?,
        };
        let batch = event_store::read_after(&mut conn, from, BATCH).await?;
        drop(conn);
        let Some(last) = batch.last().map(event_store::StoredEvent::checkpoint) else {
            self.read_to = Some(from);
            return Ok(0);
        };
        let acks = FuturesUnordered::new();
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
        self.read_to = Some(last);
        self.in_flight.push_back(InFlight {
            last,
            events: batch.len(),
            acks,
        });
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

    /// Another relay may have moved the checkpoint while this one stood by.
    fn resume(&mut self) -> BoxFuture<'_, ()> {
        self.read_to = None;
        self.in_flight.clear();
        Box::pin(async {})
    }
}
