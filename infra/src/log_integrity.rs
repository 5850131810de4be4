//! Checks the event log against its own hashes ([`crate::event_chain`]): `hermes verify`, and the
//! periodic checkpoints of the log's head that it checks too.

use crate::event_chain::{self, GENESIS, Hash, Sealed};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Most events one checkpoint covers; a longer backlog is covered by the next ones.
pub const CHECKPOINT_MAX_EVENTS: i64 = 100_000;

/// A checkpoint written by [`checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheckpoint {
    pub id: i64,
    pub events: i64,
}

/// Folds the sealed events recorded since the last checkpoint (those no running transaction can
/// still add to: the tail readers' horizon) into a new one. `None`: nothing new, or another node
/// is writing one now.
pub async fn checkpoint(pool: &PgPool) -> Result<Option<LogCheckpoint>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('hermes:log-checkpoint'))")
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        return Ok(None);
    }
    let last: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, position, head FROM log_checkpoints ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (after_tx, after_position, head) = match last {
        Some((t, p, head)) => (t, p, to_hash(&head)),
        None => (0, 0, GENESIS),
    };
    let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, position, hash FROM events
          WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
            AND hash IS NOT NULL
          ORDER BY tx_id, position
          LIMIT $3",
    )
    .bind(after_tx)
    .bind(after_position)
    .bind(CHECKPOINT_MAX_EVENTS)
    .fetch_all(&mut *tx)
    .await?;
    let Some(&(last_tx, last_position, _)) = rows.last() else {
        return Ok(None);
    };
    let head = event_chain::fold_checkpoint(&head, rows.iter().map(|(_, _, h)| h.as_slice()));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO log_checkpoints (tx_id, position, events, head)
         VALUES ($1::bigint::text::xid8, $2, $3, $4) RETURNING id",
    )
    .bind(last_tx)
    .bind(last_position)
    .bind(rows.len() as i64)
    .bind(head.as_slice())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(LogCheckpoint {
        id,
        events: rows.len() as i64,
    }))
}

/// Checkpoints the log every `every`, for as long as the process runs (the `timers` role).
pub async fn run_checkpoints(pool: PgPool, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        // A backlog longer than one checkpoint takes several, one after the other.
        loop {
            match checkpoint(&pool).await {
                Ok(Some(c)) if c.events == CHECKPOINT_MAX_EVENTS => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpointing the event log failed; trying again later");
                    break;
                }
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    /// Events recorded before the chain existed (migration 0017): nothing to check them against.
    pub before_chain: u64,
    pub checkpoints: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The event's hash is not what its columns and its predecessor's hash give: this event was
    /// edited, or moved to another version, or the one before it was.
    Altered {
        stream_id: Uuid,
        stream_version: i64,
        event_id: Uuid,
    },
    /// Versions `from..=to` of the stream are not in the log: removed.
    Missing { stream_id: Uuid, from: i64, to: i64 },
    /// An event with no hash after one that has one: its hash was removed.
    Unsealed {
        stream_id: Uuid,
        stream_version: i64,
        event_id: Uuid,
    },
    /// The sealed events up to this checkpoint are not the ones it was written over: some were
    /// removed, added or reordered before it (a whole stream, or a stream's last events).
    CheckpointMismatch {
        checkpoint: i64,
        recorded_at: DateTime<Utc>,
        events_expected: i64,
        events_found: i64,
    },
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: Uuid,
    stream_type: String,
    stream_id: Uuid,
    stream_version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
    hash: Option<Vec<u8>>,
}

/// Walks the whole log twice: every stream in version order against its chain, then the log in
/// tail order against the checkpoints. Reads row by row; memory stays flat.
pub async fn verify(pool: &PgPool) -> Result<Report, sqlx::Error> {
    let mut report = Report::default();
    verify_streams(pool, &mut report).await?;
    verify_checkpoints(pool, &mut report).await?;
    Ok(report)
}

async fn verify_streams(pool: &PgPool, report: &mut Report) -> Result<(), sqlx::Error> {
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT tenant_id, stream_type, stream_id, stream_version, event_id, event_type,
                schema_version, payload, metadata, recorded_at, hash
           FROM events ORDER BY stream_id, stream_version",
    )
    .fetch(pool);
    // The stream being walked: its id, the version expected next, the last hash, and whether
    // its chain has started.
    let mut stream: Option<(Uuid, i64, Hash, bool)> = None;
    while let Some(row) = rows.try_next().await? {
        report.events += 1;
        let (expected, previous, sealed) = match stream {
            Some((id, expected, previous, sealed)) if id == row.stream_id => {
                (expected, previous, sealed)
            }
            _ => {
                report.streams += 1;
                (1, GENESIS, false)
            }
        };
        let after_gap = row.stream_version > expected;
        if after_gap {
            report.problems.push(Problem::Missing {
                stream_id: row.stream_id,
                from: expected,
                to: row.stream_version - 1,
            });
        }
        let Some(hash) = row.hash.as_deref() else {
            if sealed {
                report.problems.push(Problem::Unsealed {
                    stream_id: row.stream_id,
                    stream_version: row.stream_version,
                    event_id: row.event_id,
                });
            } else {
                report.before_chain += 1;
            }
            stream = Some((row.stream_id, row.stream_version + 1, GENESIS, sealed));
            continue;
        };
        let computed = event_chain::link(
            &previous,
            &Sealed {
                tenant_id: row.tenant_id,
                stream_type: &row.stream_type,
                stream_id: row.stream_id,
                stream_version: row.stream_version,
                event_id: row.event_id,
                event_type: &row.event_type,
                schema_version: row.schema_version,
                payload: &row.payload,
                metadata: &row.metadata,
                recorded_at: row.recorded_at,
            },
        );
        // After a gap the link cannot match (its predecessor is gone): reported as missing.
        if computed.as_slice() != hash && !after_gap {
            report.problems.push(Problem::Altered {
                stream_id: row.stream_id,
                stream_version: row.stream_version,
                event_id: row.event_id,
            });
        }
        // The next link is checked against the hash as stored: one edit is reported once.
        stream = Some((row.stream_id, row.stream_version + 1, to_hash(hash), true));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct StoredCheckpoint {
    id: i64,
    tx_id: i64,
    position: i64,
    events: i64,
    head: Vec<u8>,
    recorded_at: DateTime<Utc>,
}

async fn verify_checkpoints(pool: &PgPool, report: &mut Report) -> Result<(), sqlx::Error> {
    let checkpoints: Vec<StoredCheckpoint> = sqlx::query_as(
        "SELECT id, tx_id::text::bigint AS tx_id, position, events, head, recorded_at
           FROM log_checkpoints ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    report.checkpoints = checkpoints.len() as u64;
    let Some(last) = checkpoints.last() else {
        return Ok(());
    };
    let mut rows = sqlx::query_as::<_, (i64, i64, Vec<u8>)>(
        "SELECT tx_id::text::bigint, position, hash FROM events
          WHERE hash IS NOT NULL AND (tx_id, position) <= ($1::bigint::text::xid8, $2)
          ORDER BY tx_id, position",
    )
    .bind(last.tx_id)
    .bind(last.position)
    .fetch(pool);
    let mut head = GENESIS;
    let mut pending: Option<(i64, i64, Vec<u8>)> = None;
    for StoredCheckpoint {
        id,
        tx_id,
        position,
        events: expected,
        head: stored_head,
        recorded_at,
    } in checkpoints
    {
        // Each checkpoint folds on the head it was written after, as stored: one discrepancy is
        // reported at the checkpoint that covers it, not at every later one.
        let mut hashes: Vec<Vec<u8>> = Vec::new();
        loop {
            let row = match pending.take() {
                Some(row) => Some(row),
                None => rows.try_next().await?,
            };
            match row {
                Some(row) if (row.0, row.1) <= (tx_id, position) => hashes.push(row.2),
                Some(row) => {
                    pending = Some(row);
                    break;
                }
                None => break,
            }
        }
        let folded = event_chain::fold_checkpoint(&head, hashes.iter().map(Vec::as_slice));
        if folded.as_slice() != stored_head.as_slice() || hashes.len() as i64 != expected {
            report.problems.push(Problem::CheckpointMismatch {
                checkpoint: id,
                recorded_at,
                events_expected: expected,
                events_found: hashes.len() as i64,
            });
        }
        head = to_hash(&stored_head);
    }
    Ok(())
}

fn to_hash(bytes: &[u8]) -> Hash {
    // The columns' CHECK constraints keep them 32 bytes long.
    bytes.try_into().unwrap_or(GENESIS)
}
