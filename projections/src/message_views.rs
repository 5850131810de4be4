//! The `message_views` read model: one row per message with its folded state, for status
//! queries. The fold is the domain's own `Message::apply`, so the read side can never disagree
//! with the write side about what a message's state is.

use crate::message_row::MessageRow;
use futures::future::BoxFuture;
use hermes_domain::MessageId;
use hermes_domain::message::{Message, MessageEvent};
use hermes_infra::event_store::{self, Checkpoint, StoredEvent};
use hermes_infra::parked;
use hermes_infra::subscription::{self, Subscriber};
use sqlx::{Acquire, PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

pub const NAME: &str = "message-views";
const BATCH: i64 = 1000;

pub struct MessageViews;

impl Subscriber for MessageViews {
    fn name(&self) -> &str {
        NAME
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(project_next(pool))
    }
}

/// Projects the next batch. Looking costs no transaction; writing locks the checkpoint row, so
/// a concurrent replay (or a second projector) waits instead of interleaving, and a checkpoint
/// moved meanwhile (by a replay) sends us back to look again.
pub async fn project_next(pool: &PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    let seen = subscription::load_checkpoint(&mut conn, NAME, false).await?;
    let batch = event_store::read_after(&mut conn, seen, BATCH).await?;
    let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
        return Ok(0);
    };
    let mut tx = conn.begin().await?;
    if subscription::load_checkpoint(&mut tx, NAME, true).await? != seen {
        tx.rollback().await?;
        return Ok(batch.len());
    }
    apply_batch(&mut tx, &batch, Table::Live).await?;
    subscription::save_checkpoint(&mut tx, NAME, last).await?;
    tx.commit().await?;
    Ok(batch.len())
}

/// Projects events into the live table (the Kafka projector's way in; it keeps its own offsets).
pub(crate) async fn apply_live(
    conn: &mut PgConnection,
    batch: &[StoredEvent],
) -> anyhow::Result<()> {
    apply_batch(conn, batch, Table::Live).await
}

/// The table a batch is projected into.
#[derive(Clone, Copy)]
enum Table {
    Live,
    /// Where a replay rebuilds, out of the live projector's way.
    Shadow,
}

/// The statements of [`apply_batch`] for one table (static strings: the SQL is never built from
/// input).
macro_rules! statements {
    ($table:literal) => {
        (
            concat!("SELECT message_id, state FROM ", $table, " WHERE message_id = ANY($1)"),
            concat!(
                "INSERT INTO ", $table,
                " (message_id, tenant_id, status, reference, version, created_at, updated_at, state)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                                      $6::timestamptz[], $7::timestamptz[], $8::jsonb[])
                 ON CONFLICT (message_id) DO UPDATE SET
                     status = EXCLUDED.status, version = EXCLUDED.version,
                     updated_at = EXCLUDED.updated_at, state = EXCLUDED.state"
            ),
        )
    };
}

impl Table {
    /// (select the current states, upsert the new ones)
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            Table::Live => statements!("message_views"),
            Table::Shadow => statements!("message_views_shadow"),
        }
    }
}

/// Rebuilds the read model from the first event, without a long transaction: a long one would
/// hold back `pg_snapshot_xmin`, and every subscriber tails the log behind it, so the saga and
/// the projector would stop seeing events for as long as the replay ran.
///
/// The rows are rebuilt into `message_views_shadow`, one short transaction per batch, while the
/// live projector goes on serving. Then one short transaction locks the live projector's
/// checkpoint, projects what came meanwhile, and swaps the shadow in: readers see the old rows
/// until the new ones are complete. Returns how many events were projected.
pub async fn replay(pool: &PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS message_views_shadow;
         CREATE TABLE message_views_shadow (LIKE message_views INCLUDING DEFAULTS);
         ALTER TABLE message_views_shadow
             ADD CONSTRAINT message_views_shadow_pkey PRIMARY KEY (message_id);",
    )
    .execute(&mut *conn)
    .await?;
    let mut checkpoint = Checkpoint::default();
    let mut total = 0;
    // Each batch commits on its own (no transaction spans two statements here).
    loop {
        let batch = event_store::read_after(&mut conn, checkpoint, BATCH).await?;
        let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
            break;
        };
        let mut tx = conn.begin().await?;
        apply_batch(&mut tx, &batch, Table::Shadow).await?;
        tx.commit().await?;
        checkpoint = last;
        total += batch.len();
    }
    // The indexes are built once, on the full table: cheaper than keeping them up while filling.
    sqlx::raw_sql(
        "CREATE INDEX message_views_shadow_tenant_created_idx
             ON message_views_shadow (tenant_id, created_at DESC, message_id DESC);
         CREATE INDEX message_views_shadow_tenant_status_idx
             ON message_views_shadow (tenant_id, status, created_at DESC, message_id DESC);",
    )
    .execute(&mut *conn)
    .await?;

    let mut tx = conn.begin().await?;
    // The live projector waits here (it locks this row to write), and resumes from our checkpoint.
    subscription::load_checkpoint(&mut tx, NAME, true).await?;
    loop {
        let batch = event_store::read_after(&mut tx, checkpoint, BATCH).await?;
        let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
            break;
        };
        apply_batch(&mut tx, &batch, Table::Shadow).await?;
        checkpoint = last;
        total += batch.len();
    }
    sqlx::raw_sql(
        "DROP TABLE message_views;
         ALTER TABLE message_views_shadow RENAME TO message_views;
         ALTER TABLE message_views RENAME CONSTRAINT message_views_shadow_pkey TO message_views_pkey;
         ALTER INDEX message_views_shadow_tenant_created_idx RENAME TO message_views_tenant_created_idx;
         ALTER INDEX message_views_shadow_tenant_status_idx RENAME TO message_views_tenant_status_idx;",
    )
    .execute(&mut *tx)
    .await?;
    subscription::save_checkpoint(&mut tx, NAME, checkpoint).await?;
    tx.commit().await?;
    Ok(total)
}

async fn apply_batch(
    conn: &mut PgConnection,
    batch: &[StoredEvent],
    table: Table,
) -> anyhow::Result<()> {
    let events: Vec<&StoredEvent> = batch
        .iter()
        .filter(|e| e.stream_type == "message")
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    let (select, upsert) = table.statements();
    let rows: Vec<(Uuid, sqlx::types::Json<MessageRow>)> = sqlx::query_as(select)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut states: HashMap<Uuid, Message> = rows
        .into_iter()
        .map(|(id, row)| (id, Message::from(row.0)))
        .collect();
    let mut changed: Vec<Uuid> = Vec::new();
    for e in events {
        let current = states.remove(&e.stream_id);
        // Already projected (a redelivered batch): skip, so projecting is idempotent.
        if current
            .as_ref()
            .is_some_and(|m| e.stream_version as u64 <= m.version)
        {
            states.insert(e.stream_id, current.expect("checked"));
            continue;
        }
        let event =
            match MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload.clone()) {
                Ok(event) => event,
                // One event the projector cannot read must not stop every view behind it.
                Err(err) => {
                    tracing::error!(event_id = %e.event_id, event_type = %e.event_type,
                    error = %err, "message views parked an event they cannot decode");
                    parked::park(&mut *conn, NAME, e, &err.to_string()).await?;
                    if let Some(current) = current {
                        states.insert(e.stream_id, current);
                    }
                    continue;
                }
            };
        if let Some(next) = Message::apply(current, MessageId(e.stream_id), &event) {
            states.insert(e.stream_id, next);
            if !changed.contains(&e.stream_id) {
                changed.push(e.stream_id);
            }
        }
    }
    let mut message_ids = Vec::new();
    let mut tenant_ids = Vec::new();
    let mut statuses = Vec::new();
    let mut references = Vec::new();
    let mut versions = Vec::new();
    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut docs = Vec::new();
    for id in changed {
        let m = &states[&id];
        message_ids.push(id);
        tenant_ids.push(m.tenant_id.0);
        statuses.push(m.status.as_str());
        references.push(m.spec.reference.clone());
        versions.push(m.version as i64);
        created.push(m.accepted_at);
        updated.push(m.updated_at);
        docs.push(serde_json::to_value(MessageRow::from(m))?);
    }
    sqlx::query(upsert)
        .bind(&message_ids)
        .bind(&tenant_ids)
        .bind(&statuses)
        .bind(&references)
        .bind(&versions)
        .bind(&created)
        .bind(&updated)
        .bind(&docs)
        .execute(conn)
        .await?;
    Ok(())
}
