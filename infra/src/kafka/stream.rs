//! A consumer of the topic, run on its own thread and handed to async code as a channel of
//! [`Delivery`]s.
//!
//! Why a thread: librdkafka calls the rebalance callback from `poll`, and when partitions are
//! taken away the callback must wait until this worker has stopped acting on their messages, or
//! two workers would act on one message at once. Waiting inside an async task would block the
//! runtime; here the poll thread sends [`Delivery::Revoked`] (after every record already handed
//! out) and waits for the answer: the commit points of those partitions once nothing of them is
//! in flight. It commits them and lets the rebalance go on.

use super::{KafkaConfig, record};
use crate::event_store::StoredEvent;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records handed to the consumer's task and not yet taken, at most; then the poll thread waits.
const QUEUE: usize = 1024;
/// How long a poll waits for a record (also how soon the thread sees it should stop).
const POLL: Duration = Duration::from_millis(100);
/// How long a revocation waits for the worker to finish the partitions' messages in flight: past
/// the longest provider call, with room.
const REVOKE_WAIT: Duration = Duration::from_secs(60);
/// How often the lag of each assigned partition is measured, and how long each partition's query
/// may take (the poll thread waits for it: short, so an outage does not hold up a rebalance).
const LAG_EVERY: Duration = Duration::from_secs(5);
const LAG_QUERY_TIMEOUT: Duration = Duration::from_millis(250);

/// One event of the topic.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub event: StoredEvent,
}

#[derive(Debug)]
pub enum Delivery {
    Record(Box<Record>),
    /// A record whose value could not be decoded (logged and counted): nothing to do but count it
    /// finished, so the partition moves on.
    Skipped {
        partition: i32,
        offset: i64,
    },
    /// These partitions are going to another worker. Every record of theirs was handed out before
    /// this. Answer on `reply` once nothing of them is in flight, with their commit points.
    Revoked {
        partitions: Vec<i32>,
        reply: std::sync::mpsc::SyncSender<Vec<(i32, i64)>>,
    },
}

/// The async side of a consumer. Dropping it stops the thread, which leaves the group.
pub struct KafkaStream {
    rx: mpsc::Receiver<Delivery>,
    shared: Arc<Shared>,
}

struct Shared {
    stop: AtomicBool,
    /// Commit points to commit at the thread's next turn.
    commits: Mutex<Vec<(i32, i64)>>,
}

impl KafkaStream {
    /// Joins the group `config.group(subscriber)` and starts consuming the topic.
    pub fn start(config: &KafkaConfig, subscriber: &str) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            commits: Mutex::default(),
        });
        let context = Context {
            tx: tx.clone(),
            shared: shared.clone(),
            topic: config.topic.clone(),
            name: subscriber.to_owned(),
        };
        let consumer: BaseConsumer<Context> = config
            .consumer(&config.group(subscriber))
            .create_with_context(context)?;
        consumer.subscribe(&[&config.topic])?;
        let thread_shared = shared.clone();
        let topic = config.topic.clone();
        let name = subscriber.to_owned();
        std::thread::Builder::new()
            .name(format!("kafka-{subscriber}"))
            .spawn(move || poll_loop(consumer, tx, thread_shared, &topic, &name))?;
        Ok(Self { rx, shared })
    }

    /// The next delivery; `None` once the consumer thread has stopped.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The next delivery if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }

    /// Commits these points (partition, next offset) at the consumer thread's next turn.
    pub fn commit(&self, points: Vec<(i32, i64)>) {
        if points.is_empty() {
            return;
        }
        self.shared
            .commits
            .lock()
            .expect("commit queue poisoned")
            .extend(points);
    }
}

impl Drop for KafkaStream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn poll_loop(
    consumer: BaseConsumer<Context>,
    tx: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
    topic: &str,
    name: &str,
) {
    let mut lag_at = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let points = std::mem::take(&mut *shared.commits.lock().expect("commit queue poisoned"));
        if !points.is_empty() {
            commit(&consumer, topic, &points, CommitMode::Async);
        }
        if lag_at.elapsed() >= LAG_EVERY {
            measure_lag(&consumer, topic, name);
            lag_at = Instant::now();
        }
        let delivery = match consumer.poll(POLL) {
            None => continue,
            // Broker outages come here (transport failures, all brokers down); librdkafka
            // reconnects by itself, so the loop goes on.
            Some(Err(e)) => {
                tracing::warn!(consumer = name, error = %e, "kafka consumer error");
                continue;
            }
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                match record::decode(m.payload().unwrap_or_default()) {
                    Ok(event) => Delivery::Record(Box::new(Record {
                        partition,
                        offset,
                        event,
                    })),
                    Err(e) => {
                        tracing::error!(consumer = name, partition, offset, error = %e,
                            "a record on the topic is not an event; skipped");
                        metrics::counter!("hermes_kafka_undecodable_records_total", "consumer" => name.to_owned())
                            .increment(1);
                        Delivery::Skipped { partition, offset }
                    }
                }
            }
        };
        if tx.blocking_send(delivery).is_err() {
            break; // the consumer's task is gone
        }
    }
    // Dropping the consumer closes it: it leaves the group (the revocation finds the task gone
    // and commits nothing more), so its partitions move at once.
}

fn commit(consumer: &BaseConsumer<Context>, topic: &str, points: &[(i32, i64)], mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in points {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(partition, offset, error = %e, "cannot commit an offset");
        }
    }
    // A commit refused during a rebalance is made again with the next points, or by the
    // partition's next owner from its own progress.
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::debug!(error = %e, "kafka commit not made");
    }
}

/// Per assigned partition: how many records wait behind this consumer's position.
fn measure_lag(consumer: &BaseConsumer<Context>, topic: &str, name: &str) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    metrics::gauge!("hermes_kafka_assigned_partitions", "consumer" => name.to_owned())
        .set(positions.count() as f64);
    for element in positions.elements_for_topic(topic) {
        let partition = element.partition();
        let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, LAG_QUERY_TIMEOUT) else {
            continue;
        };
        let position = match element.offset() {
            Offset::Offset(at) => at,
            _ => continue, // nothing consumed yet
        };
        metrics::gauge!("hermes_kafka_consumer_lag_records", "consumer" => name.to_owned(),
            "partition" => partition.to_string())
        .set((high - position).max(0) as f64);
    }
}

struct Context {
    tx: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
    topic: String,
    name: String,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions: Vec<i32> = list
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if partitions.is_empty() {
            return;
        }
        tracing::info!(consumer = %self.name, ?partitions, "partitions revoked; finishing their work");
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if self
            .tx
            .blocking_send(Delivery::Revoked {
                partitions: partitions.clone(),
                reply,
            })
            .is_err()
        {
            return; // stopping: nothing is in flight any more
        }
        match answer.recv_timeout(REVOKE_WAIT) {
            Ok(points) if !points.is_empty() => {
                commit(consumer, &self.topic, &points, CommitMode::Sync)
            }
            Ok(_) => {}
            Err(_) => tracing::error!(consumer = %self.name, ?partitions,
                "work on revoked partitions did not finish in time; letting them go"),
        }
        // Commits asked for earlier are older than the one just made: made later, they would move
        // the next owner's offsets back.
        self.shared
            .commits
            .lock()
            .expect("commit queue poisoned")
            .retain(|(p, _)| !partitions.contains(p));
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions: Vec<i32> = list
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(consumer = %self.name, ?partitions, "partitions assigned");
            metrics::gauge!("hermes_kafka_assigned_partitions", "consumer" => self.name.clone())
                .set(partitions.len() as f64);
        }
    }
}
