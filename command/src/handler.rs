//! Command handling: load a message's stream, let the aggregate decide, append what it decided
//! together with the timers it arms, retrying from a fresh load when another writer got there first.

use chrono::Utc;
use hermes_domain::message::decide::accept;
use hermes_domain::message::events::SCHEMA_VERSION;
use hermes_domain::message::{DomainError, Message, MessageCommand, MessageEvent, MessageSpec};
use hermes_domain::timers::{TimerEffect, timer_effect};
use hermes_domain::{MessageId, TenantId};
use hermes_infra::event_store::{self, AppendError, EventMetadata, NewEvent};
use hermes_infra::idempotency::{self, Claim};
use hermes_infra::timers;
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

pub const STREAM_TYPE: &str = "message";
/// Concurrent writers to one message (a receipt racing the saga) rarely collide twice in a row.
const MAX_CONFLICT_RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("message not found")]
    NotFound,
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("gave up after repeated concurrent changes to the message")]
    Contended,
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

#[derive(Clone)]
pub struct CommandHandler {
    pool: PgPool,
}

impl CommandHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores a new message (and its idempotency key) in one transaction.
    pub async fn accept(
        &self,
        tenant_id: TenantId,
        spec: MessageSpec,
        idempotency: Option<&IdempotencyKey>,
        metadata: EventMetadata,
    ) -> Result<Accepted, CommandError> {
        let message_id = MessageId::new();
        let events = accept(tenant_id, spec, Utc::now());
        let mut tx = self.pool.begin().await?;
        if let Some(k) = idempotency {
            match idempotency::claim(&mut tx, tenant_id.0, &k.key, &k.request_hash, message_id.0)
                .await?
            {
                Claim::Claimed => {}
                Claim::Existing {
                    request_hash,
                    message_id,
                } => {
                    tx.rollback().await?;
                    return if request_hash == k.request_hash {
                        Ok(Accepted {
                            message_id: MessageId(message_id),
                            replayed: true,
                        })
                    } else {
                        Err(CommandError::IdempotencyKeyReused)
                    };
                }
            }
        }
        let metadata = EventMetadata {
            correlation_id: Some(message_id.0),
            ..metadata
        };
        write(&mut tx, tenant_id, message_id, 0, &events, &metadata, None).await?;
        tx.commit().await?;
        Ok(Accepted {
            message_id,
            replayed: false,
        })
    }

    /// Loads a message; `None` if it does not exist (or belongs to another tenant, when `tenant`
    /// is given: a tenant can never tell another tenant's message from a missing one).
    pub async fn load(
        &self,
        message_id: MessageId,
        tenant: Option<TenantId>,
    ) -> Result<Option<Message>, CommandError> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, message_id, tenant).await
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
        self.execute_with(message_id, tenant, metadata, delete_timer, |_| {
            Ok(Some(command.clone()))
        })
        .await
        .map(|e| e.expect("a command was given"))
    }

    /// Like [`Self::execute`], but the command is built from the freshly loaded state (the saga
    /// needs the state to pick a provider). `build` returning `None` means nothing to do.
    pub async fn execute_with<F>(
        &self,
        message_id: MessageId,
        tenant: Option<TenantId>,
        metadata: &EventMetadata,
        delete_timer: Option<i64>,
        build: F,
    ) -> Result<Option<Executed>, CommandError>
    where
        F: Fn(&Message) -> Result<Option<MessageCommand>, CommandError>,
    {
        let metadata = EventMetadata {
            correlation_id: metadata.correlation_id.or(Some(message_id.0)),
            ..metadata.clone()
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut conn = self.pool.acquire().await?;
            let Some(state) = load(&mut conn, message_id, tenant).await? else {
                return Err(CommandError::NotFound);
            };
            let Some(command) = build(&state)? else {
                return Ok(None);
            };
            let events = state.decide(&command, Utc::now())?;
            if events.is_empty() {
                if let Some(id) = delete_timer {
                    timers::delete(&mut conn, id).await?;
                }
                return Ok(Some(Executed { events, state }));
            }
            let mut tx = conn.begin().await?;
            let version = state.version as i64;
            match write(
                &mut tx,
                state.tenant_id,
                message_id,
                version,
                &events,
                &metadata,
                delete_timer,
            )
            .await
            {
                Ok(()) => {
                    tx.commit().await?;
                    let state = events
                        .iter()
                        .fold(Some(state), |s, e| Message::apply(s, message_id, e))
                        .expect("applying to an existing message keeps it");
                    return Ok(Some(Executed { events, state }));
                }
                Err(AppendError::Conflict) => continue,
                Err(AppendError::Db(e)) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended)
    }
}

async fn load(
    conn: &mut PgConnection,
    message_id: MessageId,
    tenant: Option<TenantId>,
) -> Result<Option<Message>, CommandError> {
    let stored = event_store::load_stream(conn, message_id.0).await?;
    if stored
        .first()
        .is_none_or(|e| tenant.is_some_and(|t| t.0 != e.tenant_id))
    {
        return Ok(None);
    }
    let mut state = None;
    for e in stored {
        let event = MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload)?;
        state = Message::apply(state, message_id, &event);
    }
    Ok(state)
}

/// Appends events and applies their timer effects in the caller's transaction.
async fn write(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    message_id: MessageId,
    expected_version: i64,
    events: &[MessageEvent],
    metadata: &EventMetadata,
    delete_timer: Option<i64>,
) -> Result<(), AppendError> {
    let new: Vec<NewEvent> = events
        .iter()
        .map(|e| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: e.event_type().to_owned(),
            schema_version: SCHEMA_VERSION,
            payload: serde_json::to_value(e).expect("events serialize"),
            metadata: metadata.clone(),
        })
        .collect();
    event_store::append(
        conn,
        tenant_id.0,
        STREAM_TYPE,
        message_id.0,
        expected_version,
        &new,
    )
    .await?;
    for e in events {
        match timer_effect(e) {
            Some(TimerEffect::Arm { kind, due_at }) => {
                let kind = serde_json::to_value(kind).expect("timer kinds serialize");
                timers::arm(conn, tenant_id.0, message_id.0, &kind, due_at).await?;
            }
            Some(TimerEffect::DisarmAll) => timers::disarm_all(conn, message_id.0).await?,
            None => {}
        }
    }
    if let Some(id) = delete_timer {
        timers::delete(conn, id).await?;
    }
    Ok(())
}
