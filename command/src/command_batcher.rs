//! Group commit for commands on existing messages (dispatches, send outcomes, receipts, timers,
//! cancels): jobs are queued to a few writer tasks; each writer takes everything queued (up to
//! a batch), loads all the streams with one query, lets each message decide its commands in
//! order, and appends everything in one transaction. Every commit waits for a WAL flush, so one
//! commit per batch instead of one per command is what lets the cascade keep up under load.
//!
//! Jobs are sharded by message id, so two writers never race on one message; a conflict can
//! only come from another process, and then the whole batch is reloaded and decided again.

use crate::handler::{
    CommandError, Executed, STREAM_TYPE, count_events, count_tenant_message, timers_for,
    to_new_events,
};
use chrono::Utc;
use hermes_domain::message::observe::{Observation, observe};
use hermes_domain::message::{Message, MessageCommand, MessageEvent};
use hermes_domain::{MessageId, TenantId};
use hermes_infra::event_store::{self, AppendError, EventMetadata, NewEvent, StreamAppend};
use hermes_infra::{event_chain, timers};
use sqlx::{Acquire, PgPool};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Builds the command from the message's current state; `None`: nothing to do.
pub type Build =
    Box<dyn Fn(&Message) -> Result<Option<MessageCommand>, CommandError> + Send + Sync>;

pub struct Job {
    pub message_id: MessageId,
    /// When given, a message of another tenant is treated as missing.
    pub tenant: Option<TenantId>,
    pub metadata: EventMetadata,
    /// The timer row that fired this command, deleted in the same transaction.
    pub delete_timer: Option<i64>,
    pub build: Build,
    pub reply: oneshot::Sender<Result<Option<Executed>, CommandError>>,
}

type Answer = Result<Option<Executed>, CommandError>;

const MAX_CONFLICT_RETRIES: usize = 8;

#[derive(Clone)]
pub struct CommandBatcher {
    shards: Vec<mpsc::Sender<Job>>,
}

impl CommandBatcher {
    pub fn start(pool: PgPool, writers: usize, max_batch: usize) -> Self {
        let shards = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(max_batch * 2);
                tokio::spawn(write_batches(pool.clone(), rx, max_batch));
                tx
            })
            .collect();
        Self { shards }
    }

    pub async fn submit(&self, job: Job) -> Result<(), CommandError> {
        let shard = job.message_id.0.as_u128() as usize % self.shards.len();
        self.shards[shard]
            .send(job)
            .await
            .map_err(|_| CommandError::Unavailable)
    }
}

async fn write_batches(pool: PgPool, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let jobs: Vec<Job> = std::mem::take(&mut batch);
        metrics::histogram!("hermes_command_batch_size").record(jobs.len() as f64);
        let answers = run_batch(&pool, &jobs).await;
        for (job, answer) in jobs.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
    }
}

/// Answers every job, retrying the batch on conflicts and isolating jobs when the batch fails.
async fn run_batch(pool: &PgPool, jobs: &[Job]) -> Vec<Answer> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        match try_batch(pool, jobs).await {
            Ok(answers) => return answers,
            Err(BatchError::Conflict) => continue,
            Err(BatchError::Failed(e)) if jobs.len() == 1 => return vec![Err(e)],
            Err(BatchError::Failed(e)) => {
                tracing::warn!(error = %e, batch = jobs.len(), "command batch failed; running its jobs one by one");
                let mut answers = Vec::with_capacity(jobs.len());
                for job in jobs {
                    answers.push(
                        Box::pin(run_batch(pool, std::slice::from_ref(job)))
                            .await
                            .pop()
                            .expect("one answer"),
                    );
                }
                return answers;
            }
        }
    }
    jobs.iter().map(|_| Err(CommandError::Contended)).collect()
}

enum BatchError {
    Conflict,
    Failed(CommandError),
}

impl<E: Into<CommandError>> From<E> for BatchError {
    fn from(e: E) -> Self {
        BatchError::Failed(e.into())
    }
}

/// What a batch will append to one message.
struct Pending {
    tenant_id: Uuid,
    base_version: i64,
    events: Vec<MessageEvent>,
    stored: Vec<NewEvent>,
}

async fn try_batch(pool: &PgPool, jobs: &[Job]) -> Result<Vec<Answer>, BatchError> {
    let mut conn = pool.acquire().await?;
    let mut ids: Vec<Uuid> = jobs.iter().map(|j| j.message_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let Loaded {
        mut states,
        traces,
        heads,
    } = load_states(&mut conn, &ids).await?;
    let now = Utc::now();

    let mut answers = Vec::with_capacity(jobs.len());
    let mut pending: Vec<(Uuid, Pending)> = Vec::new();
    let mut delete_timers = Vec::new();
    // Counted once the batch is committed.
    let mut observed = Vec::new();
    for job in jobs {
        delete_timers.extend(job.delete_timer);
        let id = job.message_id.0;
        let Some(state) = states
            .get(&id)
            .filter(|m| job.tenant.is_none_or(|t| t == m.tenant_id))
        else {
            answers.push(Err(CommandError::NotFound));
            continue;
        };
        let command = match (job.build)(state) {
            Ok(Some(c)) => c,
            Ok(None) => {
                answers.push(Ok(None));
                continue;
            }
            Err(e) => {
                answers.push(Err(e));
                continue;
            }
        };
        let events = match state.decide(&command, now) {
            Ok(events) => events,
            Err(e) => {
                answers.push(Err(e.into()));
                continue;
            }
        };
        if !events.is_empty() {
            let metadata = EventMetadata {
                correlation_id: job.metadata.correlation_id.or(Some(id)),
                // Work that is not traced itself continues the message's trace context, so
                // every event of a message carries it (and its Kafka record's header).
                traceparent: job
                    .metadata
                    .traceparent
                    .clone()
                    .or_else(|| traces.get(&id).cloned()),
                ..job.metadata.clone()
            };
            let stored = to_new_events(&events, &metadata);
            let next = events
                .iter()
                .try_fold(state.clone(), |s, e| {
                    Message::apply(Some(s), job.message_id, e)
                })
                .expect("applying to an existing message keeps it");
            let slot = match pending.iter().position(|(p, _)| *p == id) {
                Some(i) => i,
                None => {
                    pending.push((
                        id,
                        Pending {
                            tenant_id: state.tenant_id.0,
                            base_version: state.version as i64,
                            events: Vec::new(),
                            stored: Vec::new(),
                        },
                    ));
                    pending.len() - 1
                }
            };
            observed.extend(observe(state, &events));
            pending[slot].1.events.extend(events.iter().cloned());
            pending[slot].1.stored.extend(stored);
            states.insert(id, next);
        }
        answers.push(Ok(Some(Executed {
            events,
            state: states[&id].clone(),
        })));
    }

    if pending.is_empty() && delete_timers.is_empty() {
        return Ok(answers);
    }
    let mut tx = conn.begin().await?;
    let appends: Vec<StreamAppend> = pending
        .iter()
        .map(|(id, p)| StreamAppend {
            tenant_id: p.tenant_id,
            stream_type: STREAM_TYPE,
            stream_id: *id,
            expected_version: p.base_version,
            events: &p.stored,
            // Read with the state this batch decided on (the same version).
            head: heads.get(id).copied(),
        })
        .collect();
    match event_store::append_many(&mut tx, &appends).await {
        Ok(()) => {}
        Err(AppendError::Conflict) => return Err(BatchError::Conflict),
        Err(AppendError::Db(e)) => return Err(e.into()),
    }
    let mut arm = Vec::new();
    let mut ended = Vec::new();
    for (id, p) in &pending {
        arm.extend(timers_for(TenantId(p.tenant_id), MessageId(*id), &p.events));
        if p.events.iter().any(MessageEvent::is_terminal) {
            ended.push(*id);
        }
    }
    timers::arm_many(&mut tx, &arm).await?;
    timers::disarm_streams(&mut tx, &ended).await?;
    timers::delete_many(&mut tx, &delete_timers).await?;
    tx.commit().await?;
    if !pending.is_empty() {
        event_store::announce_appended();
    }
    observed.iter().for_each(record_observation);
    for (id, p) in &pending {
        count_events(&p.events);
        if p.events.iter().any(MessageEvent::is_terminal)
            && let Some(state) = states.get(id)
        {
            record_end_to_end(state);
            count_tenant_message(state.tenant_id, state.status.as_str());
        }
    }
    Ok(answers)
}

/// `hermes_cascade_fallbacks_total{channel,reason}` (the channel fallen back to),
/// `hermes_dispatch_wait_seconds{channel}` (step start, or accept, to dispatch) and
/// `hermes_receipt_seconds{provider,status}` (send to receipt).
fn record_observation(o: &Observation) {
    match o {
        Observation::Fallback { to, reason } => metrics::counter!(
            "hermes_cascade_fallbacks_total",
            "channel" => to.as_str(),
            "reason" => reason.as_str()
        )
        .increment(1),
        Observation::Dispatched {
            channel, waited, ..
        } => metrics::histogram!("hermes_dispatch_wait_seconds", "channel" => channel.as_str())
            .record(waited.as_secs_f64()),
        Observation::Receipt {
            provider,
            status,
            after,
        } => metrics::histogram!(
            "hermes_receipt_seconds",
            "provider" => provider.clone(),
            "status" => status.as_str()
        )
        .record(after.as_secs_f64()),
    }
}

/// `hermes_message_end_to_end_seconds{channel,status}`: from accept to the message's end, by the
/// channel of its last attempt (`none` without one). Cancelled messages are not counted: their
/// end is the tenant's choice.
fn record_end_to_end(message: &Message) {
    use hermes_domain::message::MessageStatus;
    if message.status == MessageStatus::Cancelled {
        return;
    }
    let last = message
        .completed_by
        .and_then(|id| message.attempts.iter().find(|a| a.id == id))
        .or(message.attempts.last());
    let channel = last.map_or("none", |a| a.channel.as_str());
    let seconds = (message.updated_at - message.accepted_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    metrics::histogram!(
        "hermes_message_end_to_end_seconds",
        "channel" => channel,
        "status" => message.status.as_str()
    )
    .record(seconds);
}

/// What a batch reads of its messages: their states, the trace context of each one's latest
/// event that has one, and each stream's head hash (for the append's chain link).
struct Loaded {
    states: HashMap<Uuid, Message>,
    traces: HashMap<Uuid, String>,
    heads: HashMap<Uuid, event_chain::Hash>,
}

async fn load_states(conn: &mut sqlx::PgConnection, ids: &[Uuid]) -> Result<Loaded, CommandError> {
    let mut states: HashMap<Uuid, Option<Message>> = HashMap::with_capacity(ids.len());
    let mut traces = HashMap::new();
    let (events, heads) = event_store::load_streams_with_heads(conn, STREAM_TYPE, ids).await?;
    for e in events {
        let event = MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload)?;
        let slot = states.entry(e.stream_id).or_default();
        *slot = Message::apply(slot.take(), MessageId(e.stream_id), &event);
        if let Some(traceparent) = e.metadata.0.traceparent {
            traces.insert(e.stream_id, traceparent);
        }
    }
    let states = states
        .into_iter()
        .filter_map(|(id, m)| Some((id, m?)))
        .collect();
    Ok(Loaded {
        states,
        traces,
        heads,
    })
}
