//! How far dispatch is behind: the age of the oldest event the cascade saga has not handled yet.
//! A step waits for its dispatch about that long at most (the saga reads the log in order), so
//! this is the age of the oldest undispatched step, give or take the batch in hand.
//!
//! On the Postgres tail the log says it all: the oldest event past the saga's started mark. On
//! Kafka the log only knows what the relay has not streamed yet; what waits in the workers is
//! reported by them ([`report_waiting`]), and a worker that stops reporting is counted as stuck
//! while its partitions may still be its own ([`kafka_workers_age`]).
//!
//! Every API process measures it once a second (indexed queries) and exports it as
//! `hermes_dispatch_backlog_age_seconds`. With `HERMES_MAX_BACKLOG_AGE_MS` set, `POST
//! /v1/messages` answers 503 `overloaded` (with `Retry-After`) while the backlog is older than
//! that: overload is refused at the door instead of queued without bound. Messages already
//! accepted are never affected; their steps' clocks start at their dispatch.

use chrono::{DateTime, Utc};
use hermes_infra::event_store::Checkpoint;
use hermes_infra::subscription;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the backlog is measured.
const EVERY: Duration = Duration::from_secs(1);
/// The longest `Retry-After` given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How often a Kafka saga worker reports what it holds waiting.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A worker whose last report is older than this has stopped reporting (crashed, hung, cut off).
const REPORT_STALE: Duration = Duration::from_secs(3);
/// Reports of workers gone this long are deleted.
const REPORT_FORGOTTEN: Duration = Duration::from_secs(24 * 3600);

/// Where the backlog is measured from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The Postgres tail: the log past the saga's started mark.
    PostgresTail { mark: &'static str },
    /// Kafka: the log past the relay's checkpoint, and what the saga workers report waiting.
    /// A worker that stopped reporting counts as stuck for `silent_grace` (its partitions move
    /// to another worker by then: the consumer session's timeout, with room), or for as long as
    /// no worker reports at all.
    Kafka {
        relay_mark: &'static str,
        silent_grace: Duration,
    },
}

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
    /// Starts measuring on `pool` from `source`; `max` is the backlog age above which new
    /// messages are refused.
    pub fn start(
        pool: PgPool,
        source: Source,
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
                match measure(&pool, source).await {
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

async fn measure(pool: &PgPool, source: Source) -> Result<Duration, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    match source {
        Source::PostgresTail { mark } => Ok(oldest_past(&mut conn, mark).await?.0),
        Source::Kafka {
            relay_mark,
            silent_grace,
        } => {
            let (relay, relayed) = oldest_past(&mut conn, relay_mark).await?;
            let workers = workers_age(&mut conn, relayed, silent_grace).await?;
            Ok(relay.max(workers))
        }
    }
}

/// The age, by the database's clock, of the oldest event past the mark named `from` (zero when
/// it is up to date).
///
/// On the Postgres tail the mark is the saga's started mark, not its checkpoint: an event being
/// handled (a slow provider call) or waiting behind its own message's is not waiting for a
/// worker. On Kafka it is the relay's checkpoint: what the workers have not been handed yet.
pub async fn oldest_unhandled_age(pool: &PgPool, from: &str) -> Result<Duration, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    Ok(oldest_past(&mut conn, from).await?.0)
}

/// The age of the oldest event past the mark named `mark`, and that mark.
async fn oldest_past(
    conn: &mut PgConnection,
    mark: &str,
) -> Result<(Duration, Checkpoint), sqlx::Error> {
    // Made at the start of the log when the saga never ran: everything is ahead of it then.
    let from = subscription::load_checkpoint(conn, mark, false).await?;
    Ok((oldest_after(conn, from).await?, from))
}

/// The age of the oldest event after `from`, read in the log's own order on its tail index.
async fn oldest_after(conn: &mut PgConnection, from: Checkpoint) -> Result<Duration, sqlx::Error> {
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

/// A Kafka saga worker says when the oldest event it holds and has not started was recorded
/// (`None`: nothing waits). Also forgets workers gone for a day.
pub async fn report_waiting(
    pool: &PgPool,
    worker_id: uuid::Uuid,
    oldest_waiting_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH gone AS (DELETE FROM saga_worker_backlog
                        WHERE reported_at < now() - make_interval(secs => $3))
         INSERT INTO saga_worker_backlog (worker_id, oldest_waiting_at, reported_at)
         VALUES ($1, $2, now())
         ON CONFLICT (worker_id) DO UPDATE
            SET oldest_waiting_at = EXCLUDED.oldest_waiting_at, reported_at = EXCLUDED.reported_at",
    )
    .bind(worker_id)
    .bind(oldest_waiting_at)
    .bind(REPORT_FORGOTTEN.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// What one worker last reported, read back with the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkerReport {
    pub oldest_waiting_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
}

/// The Kafka workers' part of the backlog, from their reports; `relayed` is the relay's
/// checkpoint.
async fn workers_age(
    conn: &mut PgConnection,
    relayed: Checkpoint,
    silent_grace: Duration,
) -> Result<Duration, sqlx::Error> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *conn)
        .await?;
    let reports: Vec<WorkerReport> =
        sqlx::query_as("SELECT oldest_waiting_at, reported_at FROM saga_worker_backlog")
            .fetch_all(&mut *conn)
            .await?;
    // When the newest event the relay streamed was recorded: whether anything reached the topic
    // after a silent worker's last word.
    let newest_relayed_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT recorded_at FROM events
          WHERE (tx_id, position) <= ($1::bigint::text::xid8, $2)
          ORDER BY tx_id DESC, position DESC LIMIT 1",
    )
    .bind(relayed.tx_id)
    .bind(relayed.position)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(kafka_workers_age(
        now,
        &reports,
        newest_relayed_at,
        silent_grace,
    ))
}

/// The age of the oldest event waiting in (or for) the Kafka saga workers, at `now`:
/// - a worker reporting (within [`REPORT_STALE`]) counts its oldest waiting event;
/// - a silent worker counts as stuck: since its oldest waiting event, or, if it held none but
///   events reached the topic after its last word, since then (some may be on its partitions).
///   It counts for `silent_grace` (its partitions move on by then) while other workers report,
///   and without end when none does: nothing is being dispatched then.
///
/// Before any worker has ever reported there is nothing to go by; only the relay's lag counts.
pub fn kafka_workers_age(
    now: DateTime<Utc>,
    reports: &[WorkerReport],
    newest_relayed_at: Option<DateTime<Utc>>,
    silent_grace: Duration,
) -> Duration {
    let age = |since: DateTime<Utc>| (now - since).to_std().unwrap_or_default();
    let stale = |r: &WorkerReport| age(r.reported_at) > REPORT_STALE;
    let anyone_reporting = reports.iter().any(|r| !stale(r));
    reports
        .iter()
        .filter_map(|r| {
            if !stale(r) {
                return r.oldest_waiting_at.map(age);
            }
            if anyone_reporting && age(r.reported_at) > silent_grace {
                return None;
            }
            match r.oldest_waiting_at {
                Some(at) => Some(age(at)),
                None if newest_relayed_at.is_some_and(|at| at > r.reported_at) => {
                    Some(age(r.reported_at))
                }
                None => None,
            }
        })
        .max()
        .unwrap_or_default()
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

    mod kafka_workers {
        use super::super::*;

        const GRACE: Duration = Duration::from_secs(15);

        fn at(seconds_ago: i64) -> DateTime<Utc> {
            now() - chrono::Duration::seconds(seconds_ago)
        }

        fn now() -> DateTime<Utc> {
            DateTime::from_timestamp(1_800_000_000, 0).unwrap()
        }

        fn report(waiting_since: Option<i64>, reported_ago: i64) -> WorkerReport {
            WorkerReport {
                oldest_waiting_at: waiting_since.map(at),
                reported_at: at(reported_ago),
            }
        }

        fn age(reports: &[WorkerReport], newest_relayed_ago: Option<i64>) -> u64 {
            kafka_workers_age(now(), reports, newest_relayed_ago.map(at), GRACE).as_secs()
        }

        #[test]
        fn reporting_workers_count_their_oldest_waiting_event() {
            assert_eq!(age(&[report(None, 0), report(Some(7), 1)], Some(0)), 7);
            assert_eq!(age(&[report(None, 0), report(None, 1)], Some(0)), 0);
            assert_eq!(age(&[], Some(0)), 0, "no worker ever reported");
        }

        #[test]
        fn a_silent_worker_counts_as_stuck_within_the_grace_while_others_report() {
            // It held events: stuck since the oldest of them.
            assert_eq!(age(&[report(None, 0), report(Some(9), 5)], Some(0)), 9);
            // It held none, and events reached the topic since its last word.
            assert_eq!(age(&[report(None, 0), report(None, 5)], Some(1)), 5);
            // It held none, and nothing came since: nothing of it waits.
            assert_eq!(age(&[report(None, 0), report(None, 5)], Some(6)), 0);
            // Past the grace its partitions are someone else's.
            assert_eq!(age(&[report(None, 0), report(Some(30), 20)], Some(0)), 0);
        }

        #[test]
        fn with_no_worker_reporting_the_silent_ones_count_without_end() {
            assert_eq!(age(&[report(None, 600)], Some(1)), 600);
            assert_eq!(age(&[report(Some(700), 600)], None), 700);
            assert_eq!(age(&[report(None, 600)], Some(601)), 0);
        }
    }
}
