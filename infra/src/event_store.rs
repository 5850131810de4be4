//! The Postgres event store: append with optimistic concurrency, load a stream, and the
//! tail-safe read that subscribers use.
//!
//! Appends take a `&mut PgConnection` so callers can write their own rows (idempotency keys,
//! timers) in the same transaction as the events they belong to.

use crate::event_chain::{self, Hash, Sealed};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::LazyLock;
use tokio::sync::watch;
use uuid::Uuid;

/// Where an event came from, carried on every event for tracing and audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together everything done for one request (the message id for cascade work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event (or request) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the request or job that wrote the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Who acted: `tenant:<id>`, `saga`, `timer`, `provider:<name>`, `operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What made it happen: which request, timer, receipt or event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// What caused an event, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cause {
    /// An API request; its id was the response's `X-Request-Id`.
    Request { request_id: Uuid },
    /// A timer that fired: its kind (`{"kind": "step_timeout", "step_index": 0}`) and row.
    Timer {
        timer: serde_json::Value,
        timer_id: i64,
    },
    /// A delivery receipt the provider posted.
    Receipt {
        provider: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_message_id: Option<String>,
        status: String,
    },
    /// The provider's answer when Hermes asked it for an attempt's status (reconciliation).
    StatusLookup { provider: String, status: String },
    /// An earlier event, which the cascade saga acted on.
    Event { event_id: Uuid, event_type: String },
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub position: i64,
    /// The writing transaction's id (xid8 as a number).
    pub tx_id: i64,
    pub tenant_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: sqlx::types::Json<EventMetadata>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream first: reload and decide again.
    #[error("the stream was changed concurrently")]
    Conflict,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const STREAM_VERSION_KEY: &str = "events_stream_version_key";

/// Counts commits that appended events in this process; subscribers here wait on it.
///
/// Not Postgres NOTIFY: a transaction that notifies takes a global lock at commit, held
/// through the WAL flush, which serialized every write of the whole server (measured with
/// `hermes bench`: most sampled COMMITs waited on it). Subscribers in other processes find new
/// events by a short poll instead.
static APPENDS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// Call after committing a transaction that appended events.
pub fn announce_appended() {
    APPENDS.send_modify(|n| *n = n.wrapping_add(1));
}

/// A receiver that changes whenever this process commits appended events.
pub fn appended() -> watch::Receiver<u64> {
    APPENDS.subscribe()
}

/// New events for one stream, expected to be at `expected_version` (0 for a new stream).
#[derive(Debug, Clone)]
pub struct StreamAppend<'a> {
    pub tenant_id: Uuid,
    pub stream_type: &'a str,
    pub stream_id: Uuid,
    pub expected_version: i64,
    pub events: &'a [NewEvent],
    /// The hash of the stream's event at `expected_version`, when the caller read it with the
    /// stream ([`load_streams_with_heads`]); `None`: [`append_many`] looks it up.
    pub head: Option<Hash>,
}

/// Appends `events` to a stream whose current version is `expected_version` (0 for a new
/// stream). A concurrent append to the same stream makes the unique (stream_id,
/// stream_version) constraint fail, reported as [`AppendError::Conflict`].
pub async fn append(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    stream_type: &str,
    stream_id: Uuid,
    expected_version: i64,
    events: &[NewEvent],
) -> Result<(), AppendError> {
    append_many(
        conn,
        &[StreamAppend {
            tenant_id,
            stream_type,
            stream_id,
            expected_version,
            events,
            head: None,
        }],
    )
    .await
}

/// Appends to several streams with one statement (group commit). A conflict on any stream
/// fails them all: callers batch only appends that cannot conflict (new streams) or retry singly.
pub async fn append_many(
    conn: &mut PgConnection,
    appends: &[StreamAppend<'_>],
) -> Result<(), AppendError> {
    let n: usize = appends.iter().map(|a| a.events.len()).sum();
    if n == 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let previous = stream_heads(conn, appends).await?;
    // One time for the whole append, as the column's old default (the transaction's start) gave;
    // in microseconds, what the column keeps, so the hash matches the row read back.
    let recorded_at = event_chain::to_micros(Utc::now());
    let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut stream_types = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut schemas = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut metas = Vec::with_capacity(n);
    for (a, previous) in appends.iter().zip(previous) {
        let mut link = previous;
        for (i, e) in a.events.iter().enumerate() {
            let metadata = serde_json::to_value(&e.metadata).unwrap_or_default();
            link = event_chain::link(
                &link,
                &Sealed {
                    tenant_id: a.tenant_id,
                    stream_type: a.stream_type,
                    stream_id: a.stream_id,
                    stream_version: a.expected_version + 1 + i as i64,
                    event_id: e.event_id,
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    payload: &e.payload,
                    metadata: &metadata,
                    recorded_at,
                },
            );
            hashes.push(link.to_vec());
            tenants.push(a.tenant_id);
            stream_types.push(a.stream_type);
            streams.push(a.stream_id);
            versions.push(a.expected_version + 1 + i as i64);
            ids.push(e.event_id);
            types.push(e.event_type.as_str());
            schemas.push(e.schema_version);
            payloads.push(&e.payload);
            metas.push(metadata);
        }
    }
    let result = sqlx::query(
        "INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, hash, recorded_at)
         SELECT *, $11 FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::int[], $8::jsonb[], $9::jsonb[], $10::bytea[])",
    )
    .bind(&tenants)
    .bind(&stream_types)
    .bind(&streams)
    .bind(&versions)
    .bind(&ids)
    .bind(&types)
    .bind(&schemas)
    .bind(&payloads)
    .bind(&metas)
    .bind(&hashes)
    .bind(recorded_at)
    .execute(&mut *conn)
    .await;
    // The statement's time, heads included; the transaction's commit is the caller's.
    metrics::histogram!("hermes_event_store_append_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e, STREAM_VERSION_KEY) => Err(AppendError::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// The hash each append links its first event to: its stream's current last event's
/// ([`event_chain::GENESIS`] for a new stream, or when that event was recorded before the chain).
/// One query for every append that extends a stream. A version the stream does not have is
/// [`AppendError::Conflict`]: the caller decided on a state the log does not hold.
async fn stream_heads(
    conn: &mut PgConnection,
    appends: &[StreamAppend<'_>],
) -> Result<Vec<Hash>, AppendError> {
    let (streams, versions): (Vec<Uuid>, Vec<i64>) = appends
        .iter()
        .filter(|a| a.expected_version > 0 && a.head.is_none())
        .map(|a| (a.stream_id, a.expected_version))
        .unzip();
    let mut heads: HashMap<(Uuid, i64), Option<Vec<u8>>> = HashMap::new();
    if !streams.is_empty() {
        // A lateral lookup with LIMIT 1 is always one index probe per stream: as a plain join,
        // a plan made while the table was small (stale statistics) could scan all of it.
        let rows: Vec<(Uuid, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT h.stream_id, h.stream_version, e.hash
               FROM UNNEST($1::uuid[], $2::bigint[]) AS h(stream_id, stream_version)
               CROSS JOIN LATERAL (
                   SELECT hash FROM events
                    WHERE stream_id = h.stream_id AND stream_version = h.stream_version
                    LIMIT 1) e",
        )
        .bind(&streams)
        .bind(&versions)
        .fetch_all(&mut *conn)
        .await?;
        heads.extend(rows.into_iter().map(|(s, v, h)| ((s, v), h)));
    }
    appends
        .iter()
        .map(|a| {
            if a.expected_version == 0 {
                return Ok(event_chain::GENESIS);
            }
            if let Some(head) = a.head {
                return Ok(head);
            }
            match heads.get(&(a.stream_id, a.expected_version)) {
                None => Err(AppendError::Conflict),
                Some(None) => Ok(event_chain::GENESIS),
                Some(Some(h)) => Ok(h.as_slice().try_into().unwrap_or(event_chain::GENESIS)),
            }
        })
        .collect()
}

pub fn is_constraint(e: &sqlx::Error, name: &str) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == name)
}

const COLUMNS: &str =
    "position, tx_id::text::bigint AS tx_id, tenant_id, stream_type, stream_id, stream_version,
     event_id, event_type, schema_version, payload, metadata, recorded_at";

/// The trace context of the stream's latest event that has one: where work on the stream (a
/// receipt, a timer) continues its trace. One index probe; asked only while traces are exported.
pub async fn latest_traceparent(
    pool: &PgPool,
    stream_type: &str,
    stream_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM events
          WHERE stream_type = $1 AND stream_id = $2 AND metadata ? 'traceparent'
          ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(stream_type)
    .bind(stream_id)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Every event of a stream of `stream_type` (`message`, `tenant`), in version order. The type
/// is asked for so that an id of one kind never reads a stream of another.
pub async fn load_stream(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_id: Uuid,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_type = $2
         ORDER BY stream_version"
    )))
    .bind(stream_id)
    .bind(stream_type)
    .fetch_all(conn)
    .await
}

/// The events with these ids, in log order.
pub async fn load_events(
    conn: &mut PgConnection,
    event_ids: &[Uuid],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE event_id = ANY($1) ORDER BY position"
    )))
    .bind(event_ids)
    .fetch_all(conn)
    .await
}

/// Every event of several streams of `stream_type`, each stream in version order.
pub async fn load_streams(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_ids: &[Uuid],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = ANY($1) AND stream_type = $2
         ORDER BY stream_id, stream_version"
    )))
    .bind(stream_ids)
    .bind(stream_type)
    .fetch_all(conn)
    .await
}

/// [`load_streams`], and each stream's head hash: what [`StreamAppend::head`] takes, so an
/// append after this read needs no lookup of its own. A head recorded before the chain (no hash)
/// is [`event_chain::GENESIS`], as [`append_many`] links it.
pub async fn load_streams_with_heads(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_ids: &[Uuid],
) -> Result<(Vec<StoredEvent>, HashMap<Uuid, Hash>), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        event: StoredEvent,
        hash: Option<Vec<u8>>,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, hash FROM events WHERE stream_id = ANY($1) AND stream_type = $2
         ORDER BY stream_id, stream_version"
    )))
    .bind(stream_ids)
    .bind(stream_type)
    .fetch_all(conn)
    .await?;
    let mut heads = HashMap::with_capacity(stream_ids.len());
    let events = rows
        .into_iter()
        .map(|row| {
            let head = row
                .hash
                .as_deref()
                .and_then(|h| h.try_into().ok())
                .unwrap_or(event_chain::GENESIS);
            heads.insert(row.event.stream_id, head);
            row.event
        })
        .collect();
    Ok((events, heads))
}

/// A subscriber's place in the log: the last (tx_id, position) it has processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    pub tx_id: i64,
    pub position: i64,
}

impl StoredEvent {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx_id: self.tx_id,
            position: self.position,
        }
    }
}

/// The next events after `after`, in (tx_id, position) order, never past a transaction that
/// could still commit: only transactions older than the oldest one running are read. Positions
/// are handed out before commit, so reading by position alone would skip an event whose
/// transaction commits after a later one.
pub async fn read_after(
    conn: &mut PgConnection,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events
         WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY tx_id, position
         LIMIT $3"
    )))
    .bind(after.tx_id)
    .bind(after.position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The last readable event's place, if the log has moved past `after` (the horizon is
/// [`read_after`]'s): lets a reader with nothing to do move its checkpoint without reading rows.
pub async fn tail_after(
    conn: &mut PgConnection,
    after: Checkpoint,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, position FROM events
          WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY tx_id DESC, position DESC
          LIMIT 1",
    )
    .bind(after.tx_id)
    .bind(after.position)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(tx_id, position)| Checkpoint { tx_id, position }))
}

/// The message receipts and rejections after `after`, at most `limit`, in log order (what the
/// suppressions subscriber reads), then, while fewer than `limit` were found, the log's last
/// readable event as the place to resume from: the caller keeps what it wants by type and
/// checkpoints at the last row. Served by the partial index `events_suppression_evidence_idx`
/// (migration 0015), so the rest of the log is never read; the horizon is the same as
/// [`read_after`]'s (no transaction still writing can fall behind the checkpoint).
pub async fn read_suppression_evidence(
    conn: &mut PgConnection,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
         wanted AS MATERIALIZED (
             SELECT tx_id, position FROM events
              WHERE stream_type = 'message' AND event_type IN ('ReceiptRecorded', 'AttemptRejected')
                AND (tx_id, position) > ($1::bigint::text::xid8, $2)
                AND tx_id < (SELECT xmin FROM horizon)
              ORDER BY tx_id, position
              LIMIT $3),
         head AS (
             SELECT tx_id, position FROM events
              WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
                AND tx_id < (SELECT xmin FROM horizon)
              ORDER BY tx_id DESC, position DESC
              LIMIT 1)
         SELECT {COLUMNS} FROM events
          WHERE position IN (SELECT position FROM wanted
                             UNION SELECT position FROM head WHERE (SELECT count(*) FROM wanted) < $3)
          ORDER BY tx_id, position"
    )))
    .bind(after.tx_id)
    .bind(after.position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A message's events for the audit trail, scoped to the tenant that owns them (a tenant's own
/// stream, whose id is its tenant id, is not a message and is never answered here).
pub async fn load_message_stream_for_tenant(
    pool: &PgPool,
    tenant_id: Uuid,
    stream_id: Uuid,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events
          WHERE stream_id = $1 AND tenant_id = $2 AND stream_type = 'message'
          ORDER BY stream_version"
    )))
    .bind(stream_id)
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}
