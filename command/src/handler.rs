//! Command handling: load a message's stream, let the aggregate decide, append what it decided
//! together with the timers it arms, retrying from a fresh load when another writer got there first.

use crate::command_batcher::{CommandBatcher, Job};
use chrono::Utc;
use hermes_domain::message::decide::accept;
use hermes_domain::message::events::SCHEMA_VERSION;
use hermes_domain::message::{DomainError, Message, MessageCommand, MessageEvent, MessageSpec};
use hermes_domain::timers::{TimerEffect, timer_effect};
use hermes_domain::{MessageId, TenantId};
use hermes_infra::content_dedup::{self, ContentClaim};
use hermes_infra::event_store::{self, AppendError, EventMetadata, NewEvent, StreamAppend};
use hermes_infra::idempotency::{self, Claim, KeyClaim};
use hermes_infra::timers::{self, NewTimer};
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const STREAM_TYPE: &str = "message";

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("message not found")]
    NotFound,
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(
        "message {0} went to this recipient with this content within the tenant's duplicate window"
    )]
    DuplicateContent(MessageId),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("gave up after repeated concurrent changes to the message")]
    Contended,
    #[error("the command pipeline is shutting down")]
    Unavailable,
    #[error("a stored event could not be decoded: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<AppendError> for CommandError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict => CommandError::Contended,
            AppendError::Db(e) => CommandError::Db(e),
        }
    }
}

/// A request's idempotency key and the hash of its body.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// A message's fingerprint for its tenant's duplicate window, and the window.
#[derive(Debug, Clone)]
pub struct ContentDedup {
    pub fingerprint: Vec<u8>,
    pub window_seconds: u32,
}

/// One message to accept.
#[derive(Debug, Clone)]
pub struct AcceptRequest {
    pub tenant_id: TenantId,
    pub spec: MessageSpec,
    pub idempotency: Option<IdempotencyKey>,
    /// Set when the tenant has a duplicate window.
    pub dedup: Option<ContentDedup>,
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: MessageId,
    /// An earlier request with the same idempotency key stored this message.
    pub replayed: bool,
}

/// What a command did: the events it appended (none when it was stale or a duplicate) and the
/// message's state after them.
#[derive(Debug, Clone)]
pub struct Executed {
    pub events: Vec<MessageEvent>,
    pub state: Message,
}

/// Writer tasks of the command group commit, and the most commands one transaction takes.
const COMMAND_WRITERS: usize = 2;
const COMMAND_BATCH: usize = 256;

#[derive(Clone)]
pub struct CommandHandler {
    pool: PgPool,
    commands: CommandBatcher,
}

impl CommandHandler {
    /// Starts the command writers; call within a Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        let commands = CommandBatcher::start(pool.clone(), COMMAND_WRITERS, COMMAND_BATCH);
        Self { pool, commands }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The message's current state, read from its stream (no command, nothing written).
    pub async fn load(&self, message_id: MessageId) -> Result<Option<Message>, CommandError> {
        let mut conn = self.pool.acquire().await?;
        let mut state = None;
        for e in event_store::load_stream(&mut conn, STREAM_TYPE, message_id.0).await? {
            let event = MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload)?;
            state = Message::apply(state, message_id, &event);
        }
        Ok(state)
    }

    /// Stores new messages in one transaction (group commit), answering each in order. If the
    /// transaction fails, it is split until the bad request stands alone (see below).
    pub async fn accept_many(
        &self,
        requests: Vec<AcceptRequest>,
    ) -> Vec<Result<Accepted, CommandError>> {
        let now = Utc::now();
        let prepared: Vec<(MessageId, &AcceptRequest)> =
            requests.iter().map(|r| (MessageId::new(), r)).collect();
        let mut answers: Vec<Option<Result<Accepted, CommandError>>> =
            prepared.iter().map(|_| None).collect();
        // A range that fails is split in halves and each half retried, so one request the
        // database refuses fails only its own caller and costs about 2·log2(n) extra
        // transactions, not one per request. The first half goes first: an idempotency key
        // used twice in a batch is claimed by its earlier request, as in one transaction.
        let mut pending = Vec::new();
        pending.push(0..prepared.len());
        while let Some(range) = pending.pop() {
            match self.try_accept(&prepared[range.clone()], now).await {
                Ok(written) => {
                    for (slot, answer) in answers[range].iter_mut().zip(written) {
                        *slot = Some(answer);
                    }
                }
                Err(e) if range.len() == 1 => answers[range.start] = Some(Err(e)),
                Err(e) => {
                    tracing::warn!(error = %e, batch = range.len(), "batched accept failed; splitting the batch");
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.expect("every range ends written or failed alone"))
            .collect()
    }

    async fn try_accept(
        &self,
        requests: &[(MessageId, &AcceptRequest)],
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<Result<Accepted, CommandError>>, CommandError> {
        let mut tx = self.pool.begin().await?;

        // Idempotency keys: the first request of a batch with a given key claims it; later ones
        // with the same key are answered like a retry of the first.
        let mut first_with_key: HashMap<(TenantId, &str), usize> = HashMap::new();
        let mut claims = Vec::new();
        let mut claim_of = Vec::new();
        for (i, (id, r)) in requests.iter().enumerate() {
            if let Some(k) = &r.idempotency
                && let std::collections::hash_map::Entry::Vacant(v) =
                    first_with_key.entry((r.tenant_id, k.key.as_str()))
            {
                v.insert(i);
                claim_of.push(i);
                claims.push(KeyClaim {
                    tenant_id: r.tenant_id.0,
                    key: &k.key,
                    request_hash: &k.request_hash,
                    message_id: id.0,
                });
            }
        }
        let claimed = idempotency::claim_many(&mut tx, &claims).await?;
        // For each request holding a key: what that key already names, if anything.
        let mut existing: HashMap<usize, (Vec<u8>, MessageId)> = HashMap::new();
        for (i, claim) in claim_of.into_iter().zip(claimed) {
            if let Claim::Existing {
                request_hash,
                message_id,
            } = claim
            {
                existing.insert(i, (request_hash, MessageId(message_id)));
            }
        }

        let mut answers: Vec<Option<Result<Accepted, CommandError>>> =
            Vec::with_capacity(requests.len());
        for (i, (_, r)) in requests.iter().enumerate() {
            let Some(k) = &r.idempotency else {
                answers.push(None);
                continue;
            };
            let first = first_with_key[&(r.tenant_id, k.key.as_str())];
            // What the key already names: a stored message, or an earlier request of this batch.
            let named = existing.get(&first).cloned().or_else(|| {
                (first != i).then(|| {
                    let (first_id, first_request) = requests[first];
                    let hash = &first_request
                        .idempotency
                        .as_ref()
                        .expect("has the key")
                        .request_hash;
                    (hash.clone(), first_id)
                })
            });
            answers.push(named.map(|(hash, message_id)| {
                if hash == k.request_hash {
                    Ok(Accepted {
                        message_id,
                        replayed: true,
                    })
                } else {
                    Err(CommandError::IdempotencyKeyReused)
                }
            }));
        }
        // Duplicate windows, for the messages the keys did not answer: the first of a batch with
        // a fingerprint claims it; later ones are its duplicates.
        let mut first_with_print: HashMap<(TenantId, &[u8]), usize> = HashMap::new();
        let mut content_claims = Vec::new();
        let mut content_claim_of = Vec::new();
        for (i, (id, r)) in requests.iter().enumerate() {
            let (None, Some(d)) = (&answers[i], &r.dedup) else {
                continue;
            };
            match first_with_print.entry((r.tenant_id, d.fingerprint.as_slice())) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    answers[i] = Some(Err(CommandError::DuplicateContent(
                        requests[*first.get()].0,
                    )));
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                    content_claim_of.push(i);
                    content_claims.push(ContentClaim {
                        tenant_id: r.tenant_id.0,
                        fingerprint: &d.fingerprint,
                        message_id: id.0,
                        window_seconds: d.window_seconds,
                    });
                }
            }
        }
        let holders = content_dedup::claim_many(&mut tx, &content_claims).await?;
        for (i, holder) in content_claim_of.into_iter().zip(holders) {
            if let Some(holder) = holder {
                answers[i] = Some(Err(CommandError::DuplicateContent(MessageId(holder))));
            }
        }

        let mut events_by_stream: Vec<(usize, Vec<NewEvent>)> = Vec::new();
        let mut new_timers = Vec::new();
        let mut accepted_events = Vec::new();
        for (i, (id, r)) in requests.iter().enumerate() {
            if answers[i].is_some() {
                continue;
            }
            let events = accept(r.tenant_id, r.spec.clone(), now);
            accepted_events.extend(events.iter().cloned());
            let metadata = EventMetadata {
                correlation_id: Some(id.0),
                ..r.metadata.clone()
            };
            new_timers.extend(timers_for(r.tenant_id, *id, &events));
            events_by_stream.push((i, to_new_events(&events, &metadata)));
        }
        let appends: Vec<StreamAppend> = events_by_stream
            .iter()
            .map(|(i, events)| StreamAppend {
                tenant_id: requests[*i].1.tenant_id.0,
                stream_type: STREAM_TYPE,
                stream_id: requests[*i].0.0,
                expected_version: 0,
                events,
                head: None,
            })
            .collect();
        event_store::append_many(&mut tx, &appends).await?;
        timers::arm_many(&mut tx, &new_timers).await?;
        tx.commit().await?;
        event_store::announce_appended();
        count_events(&accepted_events);
        for (i, _) in &events_by_stream {
            count_tenant_message(requests[*i].1.tenant_id, "accepted");
        }
        Ok(answers
            .into_iter()
            .zip(requests)
            .map(|(answer, (id, _))| {
                answer.unwrap_or(Ok(Accepted {
                    message_id: *id,
                    replayed: false,
                }))
            })
            .collect())
    }

    /// Runs one command against a message. `delete_timer`: the timer row that fired it, deleted
    /// in the same transaction as the events so that it fires exactly until it has been handled.
    pub async fn execute(
        &self,
        message_id: MessageId,
        tenant: Option<TenantId>,
        command: &MessageCommand,
        metadata: &EventMetadata,
        delete_timer: Option<i64>,
    ) -> Result<Executed, CommandError> {
        let command = command.clone();
        self.execute_with(message_id, tenant, metadata, delete_timer, move |_| {
            Ok(Some(command.clone()))
        })
        .await
        .map(|e| e.expect("a command was given"))
    }

    /// Like [`Self::execute`], but the command is built from the message's current state (the
    /// saga needs the state to pick a provider). `build` returning `None` means nothing to do.
    /// Commands are group-committed (see [`crate::command_batcher`]).
    pub async fn execute_with<F>(
        &self,
        message_id: MessageId,
        tenant: Option<TenantId>,
        metadata: &EventMetadata,
        delete_timer: Option<i64>,
        build: F,
    ) -> Result<Option<Executed>, CommandError>
    where
        F: Fn(&Message) -> Result<Option<MessageCommand>, CommandError> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.commands
            .submit(Job {
                message_id,
                tenant,
                metadata: metadata.clone(),
                delete_timer,
                build: Box::new(build),
                reply,
            })
            .await?;
        answer.await.map_err(|_| CommandError::Unavailable)?
    }
}

/// Counts appended events by type (`hermes_events_total`) and late receipts, for `/metrics`.
/// `hermes_tenant_messages_total{tenant,outcome}`: messages per tenant, accepted and as they end
/// (`delivered`, `read`, `failed`, `expired`, `cancelled`). The label set grows with the tenants,
/// not with the messages.
pub(crate) fn count_tenant_message(tenant: TenantId, outcome: &'static str) {
    metrics::counter!(
        "hermes_tenant_messages_total",
        "tenant" => tenant.0.to_string(),
        "outcome" => outcome
    )
    .increment(1);
}

pub(crate) fn count_events(events: &[MessageEvent]) {
    for e in events {
        metrics::counter!("hermes_events_total", "type" => e.event_type()).increment(1);
        if let MessageEvent::ReceiptRecorded { late: true, .. } = e {
            metrics::counter!("hermes_late_receipts_total").increment(1);
        }
    }
}

pub(crate) fn to_new_events(events: &[MessageEvent], metadata: &EventMetadata) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: e.event_type().to_owned(),
            schema_version: SCHEMA_VERSION,
            payload: e.to_payload(),
            metadata: metadata.clone(),
        })
        .collect()
}

/// The timers `events` arm. A batch that also ends the message arms nothing: the message's
/// timers are all disarmed in the same transaction.
pub(crate) fn timers_for(
    tenant_id: TenantId,
    message_id: MessageId,
    events: &[MessageEvent],
) -> Vec<NewTimer> {
    if events.iter().any(MessageEvent::is_terminal) {
        return vec![];
    }
    events
        .iter()
        .filter_map(|e| match timer_effect(e) {
            Some(TimerEffect::Arm { kind, due_at }) => Some(NewTimer {
                tenant_id: tenant_id.0,
                stream_id: message_id.0,
                kind: serde_json::to_value(kind).expect("timer kinds serialize"),
                due_at,
            }),
            _ => None,
        })
        .collect()
}
