//! The `webhook-outbox` subscriber: follows the Postgres log (on either transport: the log is
//! always there) and queues, for each tenant's enabled endpoints, the notices its messages' events
//! give (`hermes_domain::webhook::notices`), filtered by each endpoint's event types. The
//! deliveries and the checkpoint are written in one transaction, so a notice is queued exactly
//! once; the sender (`hermes_command::webhooks`) takes them from there.
//!
//! While no endpoint is enabled anywhere, it reads no event: it moves its checkpoint to the log's
//! tail, so webhooks cost nothing until a tenant adds one. An endpoint gets the notices of events
//! recorded after it was created (give or take one poll).

use futures::future::BoxFuture;
use hermes_domain::MessageId;
use hermes_domain::message::{Message, MessageEvent};
use hermes_domain::webhook::notices;
use hermes_infra::event_store::{self, StoredEvent};
use hermes_infra::subscription::{self, Subscriber};
use hermes_infra::webhooks::{self, NewDelivery, Subscription};
use sqlx::{Acquire, PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use uuid::Uuid;

pub const NAME: &str = "webhook-outbox";
/// Events read per poll.
const BATCH: i64 = 1000;
/// Polls at most every 50 ms: a notice is queued within about that of its event.
const PACE: Duration = Duration::from_millis(50);

pub struct WebhookOutbox;

impl Subscriber for WebhookOutbox {
    fn name(&self) -> &str {
        NAME
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(queue_next(pool))
    }

    fn pace(&self) -> Duration {
        PACE
    }
}

async fn queue_next(pool: &PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    let seen = subscription::load_checkpoint(&mut conn, NAME, false).await?;
    if !webhooks::any_enabled(&mut conn).await? {
        let Some(tail) = event_store::tail_after(&mut conn, seen).await? else {
            return Ok(0);
        };
        let mut tx = conn.begin().await?;
        if subscription::load_checkpoint(&mut tx, NAME, true).await? == seen {
            subscription::save_checkpoint(&mut tx, NAME, tail).await?;
        }
        tx.commit().await?;
        return Ok(0);
    }
    let batch = event_store::read_after(&mut conn, seen, BATCH).await?;
    let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
        return Ok(0);
    };
    let mut tx = conn.begin().await?;
    if subscription::load_checkpoint(&mut tx, NAME, true).await? != seen {
        tx.rollback().await?;
        return Ok(batch.len());
    }
    let deliveries = deliveries_for(&mut tx, &batch).await?;
    webhooks::enqueue(&mut tx, &deliveries).await?;
    subscription::save_checkpoint(&mut tx, NAME, last).await?;
    tx.commit().await?;
    metrics::counter!("hermes_webhook_notices_queued_total").increment(deliveries.len() as u64);
    Ok(batch.len())
}

/// The deliveries a batch of events gives: for each message event of a tenant with enabled
/// endpoints, its notices, to each endpoint that wants their type.
async fn deliveries_for(
    conn: &mut PgConnection,
    batch: &[StoredEvent],
) -> anyhow::Result<Vec<NewDelivery>> {
    let mut tenants: Vec<Uuid> = batch
        .iter()
        .filter(|e| e.stream_type == "message")
        .map(|e| e.tenant_id)
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut endpoints: HashMap<Uuid, Vec<Subscription>> = HashMap::new();
    for s in webhooks::subscriptions(conn, &tenants).await? {
        endpoints.entry(s.tenant_id).or_default().push(s);
    }
    // The batch's events of each message with listeners, by stream version.
    let mut by_message: BTreeMap<Uuid, Vec<&StoredEvent>> = BTreeMap::new();
    for e in batch {
        if e.stream_type == "message" && endpoints.contains_key(&e.tenant_id) {
            by_message.entry(e.stream_id).or_default().push(e);
        }
    }
    // Every stream at once (ordered by stream, then version).
    let ids: Vec<Uuid> = by_message.keys().copied().collect();
    let mut streams: BTreeMap<Uuid, Vec<StoredEvent>> = BTreeMap::new();
    for e in event_store::load_streams(conn, "message", &ids).await? {
        streams.entry(e.stream_id).or_default().push(e);
    }
    let mut out = Vec::new();
    for (message_id, wanted) in by_message {
        let listeners = &endpoints[&wanted[0].tenant_id];
        let id = MessageId(message_id);
        let mut state: Option<Message> = None;
        let mut wanted = wanted.into_iter().peekable();
        for stored in streams.remove(&message_id).unwrap_or_default() {
            let Some(next) = wanted.peek() else { break };
            let event = match MessageEvent::from_stored(
                &stored.event_type,
                stored.schema_version,
                stored.payload,
            ) {
                Ok(event) => event,
                Err(e) => {
                    // The saga parks what it cannot read; the tenant misses this notice.
                    tracing::warn!(event_id = %stored.event_id, error = %e, "webhook outbox: unreadable event skipped");
                    continue;
                }
            };
            let Some(after) = Message::apply(state.clone(), id, &event) else {
                continue;
            };
            if stored.stream_version == next.stream_version {
                wanted.next();
                for (n, notice) in notices(state.as_ref(), &after, &event)
                    .into_iter()
                    .enumerate()
                {
                    let event_type = notice.notice_type.as_str();
                    let body = serde_json::to_string(&notice)?;
                    for endpoint in listeners.iter().filter(|l| l.wants(event_type)) {
                        out.push(NewDelivery {
                            endpoint_id: endpoint.id,
                            tenant_id: stored.tenant_id,
                            message_id,
                            event_id: stored.event_id,
                            notice_no: n as i32,
                            event_type: event_type.to_owned(),
                            body: body.clone(),
                            traceparent: stored.metadata.traceparent.clone(),
                        });
                    }
                }
            }
            state = Some(after);
        }
    }
    Ok(out)
}
