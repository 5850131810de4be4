//! The cascade saga on Kafka: events come from the consumer group's partitions instead of the
//! Postgres log; the window, the workers, the bulkhead and parking are the same.
//!
//! What differs is progress. Records of a partition finish out of order, so each partition's
//! commit point is its oldest unfinished record ([`Progress`]); a crash re-delivers from there and
//! the aggregate recognises what was dispatched already. When partitions move to another worker,
//! their events not yet started are dropped from the window, the ones in flight are waited for,
//! and only then are their commit points handed back: the next owner starts where this one
//! stopped, and no message is acted on by two workers at once.
//!
//! What waits for dispatch is in the window and behind the consumer's position, where the API's
//! backlog measure cannot see it: the worker reports it ([`crate::backlog::report_waiting`]).

use super::window::Seq;
use super::workers::Workers;
use super::{Dispatcher, IDLE_POLL, RETRY_CHECK_EVERY, SAVE_EVERY, WINDOW, gauges, retry_parked};
use crate::backlog;
use crate::handler::CommandHandler;
use chrono::{DateTime, Utc};
use hermes_adapters::ProviderRegistry;
use hermes_infra::kafka::progress::Progress;
use hermes_infra::kafka::{Delivery, KafkaStream, Record};
use hermes_infra::rate_limit::RateLimiter;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use uuid::Uuid;

pub struct KafkaSaga {
    workers: Workers,
    stream: KafkaStream,
    pool: PgPool,
    /// Each event in the window: its partition, offset and message.
    at: HashMap<Seq, (i32, i64, Uuid)>,
    progress: Progress,
    committed_at: Instant,
    retries_checked: Instant,
    /// This worker, in its backlog reports.
    worker_id: Uuid,
    reported_at: Instant,
    /// When the newest event taken from the stream was recorded: the ones not read yet are
    /// younger.
    newest_taken_at: Option<DateTime<Utc>>,
}

impl KafkaSaga {
    pub fn new(
        handler: CommandHandler,
        providers: ProviderRegistry,
        callback_base: &str,
        send_rates: RateLimiter,
        pool: PgPool,
        stream: KafkaStream,
    ) -> Self {
        Self {
            workers: Workers::new(Dispatcher::new(
                handler,
                providers,
                callback_base,
                send_rates,
            )),
            stream,
            pool,
            at: HashMap::new(),
            progress: Progress::default(),
            committed_at: Instant::now(),
            retries_checked: Instant::now(),
            worker_id: Uuid::now_v7(),
            reported_at: Instant::now() - backlog::REPORT_EVERY,
            newest_taken_at: None,
        }
    }

    /// Runs until the consumer stops.
    pub async fn run(mut self) {
        loop {
            self.workers.start_ready(&self.pool);
            self.note_finished();
            if self.committed_at.elapsed() >= SAVE_EVERY {
                self.stream.commit(self.progress.moved());
                self.committed_at = Instant::now();
            }
            if self.retries_checked.elapsed() >= RETRY_CHECK_EVERY {
                self.retries_checked = Instant::now();
                if let Err(e) = retry_parked(self.workers.dispatcher(), &self.pool).await {
                    tracing::warn!(error = %e, "retrying parked events failed; trying again later");
                }
            }
            gauges(&self.workers.window);
            let room = self.workers.window.len() < WINDOW;
            if self.reported_at.elapsed() >= backlog::REPORT_EVERY {
                self.reported_at = Instant::now();
                self.report_waiting(room);
            }
            tokio::select! {
                delivery = self.stream.next(), if room => match delivery {
                    Some(delivery) => self.take(delivery).await,
                    None => return,
                },
                true = self.workers.join_one(), if self.workers.has_tasks() => {}
                // Deferred events come back, commit points are written.
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    async fn take(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Record(record) => {
                let Record {
                    partition,
                    offset,
                    event,
                } = *record;
                let stream_id = event.stream_id;
                self.newest_taken_at = Some(event.recorded_at);
                let seq = self.workers.window.push(event);
                self.progress.read(partition, offset);
                self.at.insert(seq, (partition, offset, stream_id));
            }
            Delivery::Skipped { partition, offset } => {
                self.progress.read(partition, offset);
                self.progress.finished(partition, offset);
            }
            Delivery::Revoked { partitions, reply } => {
                let points = self.release(&partitions).await;
                let _ = reply.send(points);
            }
        }
    }

    /// Says how long the oldest event waiting for this worker has waited: the oldest ready one in
    /// the window, or, when the window is full, the records not read yet (younger than the
    /// newest one taken). In its own task: a slow database does not hold up dispatch.
    fn report_waiting(&self, room: bool) {
        let unread = if room { None } else { self.newest_taken_at };
        let oldest = [self.workers.window.oldest_ready_recorded_at(), unread]
            .into_iter()
            .flatten()
            .min();
        let (pool, worker_id) = (self.pool.clone(), self.worker_id);
        tokio::spawn(async move {
            if let Err(e) = backlog::report_waiting(&pool, worker_id, oldest).await {
                tracing::warn!(error = %e, "reporting the saga worker's backlog failed");
            }
        });
    }

    /// Finished events move their partitions' commit points.
    fn note_finished(&mut self) {
        for seq in self.workers.take_finished() {
            if let Some((partition, offset, _)) = self.at.remove(&seq) {
                self.progress.finished(partition, offset);
            }
        }
        self.workers.window.advance();
    }

    /// Lets the partitions go: drops their events not started, waits for those in flight, and
    /// returns their commit points.
    async fn release(&mut self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let revoked = |p: &i32| partitions.contains(p);
        let streams: HashSet<Uuid> = self
            .at
            .values()
            .filter(|(p, _, _)| revoked(p))
            .map(|(_, _, stream)| *stream)
            .collect();
        loop {
            // Dropped events stay unfinished in the progress: the commit point stays before them.
            for seq in self.workers.window.drop_waiting(&streams) {
                self.at.remove(&seq);
            }
            self.note_finished();
            let in_flight = self.at.values().any(|(p, _, _)| revoked(p));
            if !in_flight || !self.workers.join_one().await {
                break;
            }
        }
        self.at.retain(|_, (p, _, _)| !revoked(p));
        let points: Vec<(i32, i64)> = partitions
            .iter()
            .filter_map(|p| self.progress.release(*p))
            .collect();
        tracing::info!(?points, "cascade saga let partitions go");
        points
    }
}
