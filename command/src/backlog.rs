//! How far dispatch is behind: the age of the oldest event the cascade saga has not handled yet.
//! A step waits for its dispatch about that long at most (the saga reads the log in order), so
//! this is the age of the oldest undispatched step, give or take the batch in hand.
//!
//! Every API process measures it once a second (one indexed query) and exports it as
//! `hermes_dispatch_backlog_age_seconds`. With `HERMES_MAX_BACKLOG_AGE_MS` set, `POST
//! /v1/messages` answers 503 `overloaded` (with `Retry-After`) while the backlog is older than
//! that: overload is refused at the door instead of queued without bound. Messages already
//! accepted are never affected; their steps' clocks start at their dispatch.

use hermes_infra::subscription;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the backlog is measured.
const EVERY: Duration = Duration::from_secs(1);
/// The longest `Retry-After` given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Backlog {
    age_ms: Arc<AtomicU64>,
    max: Option<Duration>,
}

/// Refused at the door: the backlog is older than the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    pub backlog_age: Duration,
    /// When a retry may find room: the time the backlog is over the maximum, 1 to 30 s.
    pub retry_after: Duration,
}

impl Backlog {
    /// Starts measuring on `pool`, behind the mark named `from` ([`crate::saga::STARTED_NAME`] on the
    /// Postgres tail); `max` is the backlog age above which new messages are refused.
    pub fn start(
        pool: PgPool,
        from: &'static str,
        max: Option<Duration>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let backlog = Backlog {
            age_ms: Arc::default(),
            max,
        };
        let measured = backlog.age_ms.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match oldest_unhandled_age(&pool, from).await {
                    Ok(age) => {
                        measured.store(age.as_millis() as u64, Ordering::Relaxed);
                        metrics::gauge!("hermes_dispatch_backlog_age_seconds")
                            .set(age.as_secs_f64());
                    }
                    // Keep the last value: a database hiccup must not open the door wide.
                    Err(err) => {
                        tracing::warn!(error = %err, "measuring the dispatch backlog failed")
                    }
                }
            }
        });
        (backlog, task)
    }

    /// Not measured, never refusing (a process without the API role).
    pub fn off() -> Self {
        Backlog {
            age_ms: Arc::default(),
            max: None,
        }
    }

    pub fn age(&self) -> Duration {
        Duration::from_millis(self.age_ms.load(Ordering::Relaxed))
    }

    /// `Err` when a new message should be refused now.
    pub fn admit(&self) -> Result<(), Overloaded> {
        let Some(max) = self.max else {
            return Ok(());
        };
        let age = self.age();
        if age <= max {
            return Ok(());
        }
        let over = (age - max).as_secs().max(1);
        Err(Overloaded {
            backlog_age: age,
            retry_after: Duration::from_secs(over).min(MAX_RETRY_AFTER),
        })
    }
}

/// The age, by the database's clock, of the oldest event past the mark named `from` (zero when
/// it is up to date). Reads in the log's own order, on the log's tail index.
///
/// On the Postgres tail the mark is the saga's started mark, not its checkpoint: an event being
/// handled (a slow provider call) or waiting behind its own message's is not waiting for a
/// worker. On Kafka it is the relay's checkpoint: what the workers have not been handed yet.
pub async fn oldest_unhandled_age(pool: &PgPool, from: &str) -> Result<Duration, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // Made at the start of the log when the saga never ran: everything is ahead of it then.
    let from = subscription::load_checkpoint(&mut conn, from, false).await?;
    let age: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - recorded_at)::float8 FROM events
          WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
          ORDER BY tx_id, position LIMIT 1",
    )
    .bind(from.tx_id)
    .bind(from.position)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(Duration::from_secs_f64(age.unwrap_or(0.0).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(age: Duration, max: Option<Duration>) -> Backlog {
        Backlog {
            age_ms: Arc::new(AtomicU64::new(age.as_millis() as u64)),
            max,
        }
    }

    #[test]
    fn without_a_maximum_nothing_is_refused() {
        assert_eq!(backlog(Duration::from_secs(3600), None).admit(), Ok(()));
        assert_eq!(Backlog::off().admit(), Ok(()));
    }

    #[test]
    fn a_backlog_up_to_the_maximum_is_admitted_and_an_older_one_refused() {
        let max = Some(Duration::from_secs(5));
        assert_eq!(backlog(Duration::from_secs(5), max).admit(), Ok(()));
        assert_eq!(
            backlog(Duration::from_millis(5_400), max).admit(),
            Err(Overloaded {
                backlog_age: Duration::from_millis(5_400),
                retry_after: Duration::from_secs(1),
            })
        );
    }

    #[test]
    fn retry_after_is_the_time_over_the_maximum_within_1_to_30_s() {
        let max = Some(Duration::from_secs(5));
        let retry = |age: u64| {
            backlog(Duration::from_secs(age), max)
                .admit()
                .unwrap_err()
                .retry_after
        };
        assert_eq!(retry(12), Duration::from_secs(7));
        assert_eq!(retry(600), Duration::from_secs(30));
    }
}
