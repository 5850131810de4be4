//! The `suppressions` subscriber: follows the Postgres log (on either transport: the log is
//! always there) and adds to a tenant's suppression list the addresses its messages' outcomes
//! condemn: hard bounces, complaints, unregistered push tokens
//! (`hermes_domain::suppression`). Its checkpoint moves in the transaction that writes the
//! entries, so a crash neither loses nor repeats one (adding twice changes nothing anyway).

use futures::future::BoxFuture;
use hermes_domain::MessageId;
use hermes_domain::message::{Message, MessageEvent};
use hermes_domain::suppression;
use hermes_infra::event_store::{self, StoredEvent};
use hermes_infra::subscription::{self, Subscriber};
use hermes_infra::suppressions;
use sqlx::{Acquire, PgPool};
use std::time::Duration;

pub const NAME: &str = "suppressions";
/// Receipts and rejections read per poll (the rest of the log is never read, see
/// `event_store::read_suppression_evidence`). With [`PACE`], up to 40,000 a second: several times
/// what a node records.
const BATCH: i64 = 10_000;
/// At most four polls a second: a bounced address is listed within a quarter second or so, and
/// the subscriber costs the database four reads a second, not one per commit.
const PACE: Duration = Duration::from_millis(250);

pub struct Suppressions;

impl Subscriber for Suppressions {
    fn name(&self) -> &str {
        NAME
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(suppress_next(pool))
    }

    fn pace(&self) -> Duration {
        PACE
    }
}

async fn suppress_next(pool: &PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    let seen = subscription::load_checkpoint(&mut conn, NAME, false).await?;
    let batch = event_store::read_suppression_evidence(&mut conn, seen, BATCH).await?;
    let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
        return Ok(0);
    };
    let mut tx = conn.begin().await?;
    if subscription::load_checkpoint(&mut tx, NAME, true).await? != seen {
        tx.rollback().await?;
        return Ok(batch.len());
    }
    for stored in &batch {
        if stored.stream_type != "message"
            || !matches!(
                stored.event_type.as_str(),
                "ReceiptRecorded" | "AttemptRejected"
            )
        {
            continue;
        }
        let event = match MessageEvent::from_stored(
            &stored.event_type,
            stored.schema_version,
            stored.payload.clone(),
        ) {
            Ok(event) if suppression::may_suppress(&event) => event,
            Ok(_) => continue,
            Err(e) => {
                // The saga parks what it cannot read; this list only misses one entry.
                tracing::warn!(event_id = %stored.event_id, error = %e, "suppressions: unreadable event skipped");
                continue;
            }
        };
        // The message as it was before this event: the attempt and its address.
        let mut message: Option<Message> = None;
        let id = MessageId(stored.stream_id);
        for e in event_store::load_stream(&mut tx, "message", stored.stream_id).await? {
            if e.stream_version >= stored.stream_version {
                break;
            }
            let earlier = MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload)?;
            message = Message::apply(message, id, &earlier);
        }
        let Some(found) = message
            .as_ref()
            .and_then(|m| suppression::from_event(m, &event))
        else {
            continue;
        };
        suppressions::add(
            &mut tx,
            stored.tenant_id,
            found.channel,
            &found.address,
            found.reason,
            &format!("message:{id}"),
        )
        .await?;
        metrics::counter!("hermes_suppressions_added_total", "reason" => found.reason).increment(1);
    }
    subscription::save_checkpoint(&mut tx, NAME, last).await?;
    tx.commit().await?;
    Ok(batch.len())
}
