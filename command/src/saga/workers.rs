//! The saga's workers over its window: hands out ready events as tasks, up to
//! [`super::CONCURRENCY`] at once, and takes back what they finished. Shared by the saga on the
//! Postgres tail and the saga on Kafka, which differ only in where events come from and how far
//! they may say they got.

use super::window::{Seq, Window};
use super::{DEFER_FOR, Dispatcher, may_dispatch};
use hermes_infra::event_store::StoredEvent;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

pub(super) struct Workers {
    dispatcher: Arc<Dispatcher>,
    /// Events read and not yet handled.
    pub window: Window,
    /// Events being handled, each yielding its window sequence number, and the event back when
    /// it must wait (its account's bulkhead is full).
    tasks: JoinSet<(Seq, Option<StoredEvent>)>,
    /// Events finished since [`Workers::take_finished`] was last called.
    finished: Vec<Seq>,
}

impl Workers {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self {
            dispatcher,
            window: Window::default(),
            tasks: JoinSet::new(),
            finished: Vec::new(),
        }
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Events in the window or being handled.
    pub fn busy(&self) -> bool {
        !self.tasks.is_empty() || !self.window.is_empty()
    }

    pub fn has_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Starts the ready events, up to [`super::CONCURRENCY`] at once.
    pub fn start_ready(&mut self, pool: &PgPool) {
        while self.tasks.len() < super::CONCURRENCY {
            let Some((seq, event)) = self.window.next_ready() else {
                break;
            };
            // Most events lead to nothing here (the saga's own results, receipts): done at once,
            // without a task.
            if !may_dispatch(&event) {
                self.window.finish(seq);
                self.finished.push(seq);
                continue;
            }
            let dispatcher = self.dispatcher.clone();
            let pool = pool.clone();
            self.tasks
                .spawn(async move { (seq, dispatcher.handle(&pool, event).await) });
        }
    }

    /// Takes in every task that has finished, without waiting. Returns how many.
    pub fn drain_finished(&mut self) -> usize {
        let mut finished = 0;
        while let Some(done) = self.tasks.try_join_next() {
            self.finish(done);
            finished += 1;
        }
        finished
    }

    /// Waits for one task to finish and takes it in; `false` when none is running.
    pub async fn join_one(&mut self) -> bool {
        match self.tasks.join_next().await {
            Some(done) => {
                self.finish(done);
                true
            }
            None => false,
        }
    }

    /// Lets every task finish.
    pub async fn join_all(&mut self) {
        while self.join_one().await {}
    }

    /// The events finished since the last call (handled, or nothing to do).
    pub fn take_finished(&mut self) -> Vec<Seq> {
        std::mem::take(&mut self.finished)
    }

    fn finish(&mut self, done: Result<(Seq, Option<StoredEvent>), tokio::task::JoinError>) {
        match done {
            Ok((seq, None)) => {
                self.window.finish(seq);
                self.finished.push(seq);
            }
            Ok((seq, Some(event))) => self.window.defer(seq, event, Instant::now() + DEFER_FOR),
            // Panics are caught in `handle`; a task only ends otherwise when the runtime stops.
            Err(err) => tracing::error!(error = %err, "a cascade saga task ended abnormally"),
        }
    }
}
