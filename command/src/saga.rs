//! The cascade saga: follows the log and, when a step starts (or a rejected attempt fails over, or
//! its retry is due),
//! records `AttemptDispatched`, calls the provider, and records what the provider said.
//!
//! Crash safety comes from the order: the dispatch is committed before the call, and the
//! checkpoint moves only after the whole batch is done. After a crash the batch is read again,
//! the aggregate sees the attempt already dispatched and marks it in doubt instead of sending
//! it twice (see `Message::decide_dispatch`).

use crate::handler::{CommandError, CommandHandler, Executed};
use futures::StreamExt;
use futures::future::BoxFuture;
use hermes_adapters::{Provider, ProviderRegistry, SendError, SendRequest, tenant_error};
use hermes_domain::message::{AttemptError, Message, MessageCommand, MessageEvent, SendOutcome};
use hermes_domain::routing::pick_provider;
use hermes_domain::{AttemptId, MessageId};
use hermes_infra::event_store::{self, EventMetadata, StoredEvent};
use hermes_infra::parked;
use hermes_infra::subscription::{self, Subscriber};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "cascade-saga";
const BATCH: i64 = 500;
/// Messages handled at once within a batch (events of one message stay in order). Not above the
/// plugin pool's send slots (`PluginLimits::send_slots`, 240 of the default 320), so that a send
/// never waits for a slot, let alone is refused `plugin_busy`, because of the saga's own load.
const CONCURRENCY: usize = 240;

pub struct CascadeSaga {
    handler: CommandHandler,
    providers: ProviderRegistry,
    /// Public base URL of this Hermes, for the per-attempt receipt URL given to providers.
    callback_base: String,
    /// When the saga last looked for parked events an operator asked to retry: at most once per
    /// [`RETRY_CHECK_EVERY`], not on every poll of the log.
    retries_checked: Option<std::time::Instant>,
}

/// How often the saga looks for `hermes parked retry` requests.
const RETRY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the saga dispatches.
#[derive(Clone, Copy)]
enum Trigger {
    StepStarted {
        step_index: usize,
    },
    /// Another account of the channel, after a retryable refusal.
    Failover {
        after: AttemptId,
    },
    /// The step again, on any account, once the backoff after a retryable refusal is over.
    Retry {
        after: AttemptId,
    },
}

impl CascadeSaga {
    pub fn new(
        handler: CommandHandler,
        providers: ProviderRegistry,
        callback_base: String,
    ) -> Self {
        Self {
            handler,
            providers,
            callback_base: callback_base.trim_end_matches('/').to_owned(),
            retries_checked: None,
        }
    }

    async fn on_event(&self, stored: &StoredEvent) -> Result<(), CommandError> {
        if stored.stream_type != crate::handler::STREAM_TYPE {
            return Ok(());
        }
        let trigger = match MessageEvent::from_stored(
            &stored.event_type,
            stored.schema_version,
            stored.payload.clone(),
        )? {
            MessageEvent::StepStarted { step_index, .. } => Trigger::StepStarted { step_index },
            MessageEvent::AttemptRejected {
                attempt_id,
                failover: true,
                ..
            } => Trigger::Failover { after: attempt_id },
            MessageEvent::RetryDue { after, .. } => Trigger::Retry { after },
            _ => return Ok(()),
        };
        self.dispatch(MessageId(stored.stream_id), trigger, stored.event_id)
            .await
    }

    async fn dispatch(
        &self,
        message_id: MessageId,
        trigger: Trigger,
        cause: Uuid,
    ) -> Result<(), CommandError> {
        let metadata = EventMetadata {
            causation_id: Some(cause),
            actor: Some("saga".into()),
            ..Default::default()
        };
        let candidates = self.providers.candidates();
        // One version of each account for this dispatch: the one recorded is the one that sends.
        let snapshot = self.providers.snapshot();
        let providers = snapshot.clone();
        let attempt_id = AttemptId::new();
        let executed = self
            .handler
            .execute_with(message_id, None, &metadata, None, move |m| {
                let (step_index, attempt_seq) = match trigger {
                    Trigger::StepStarted { step_index } => (step_index, 0),
                    Trigger::Failover { after } | Trigger::Retry { after } => {
                        let Some(a) = m.attempt(after) else { return Ok(None) };
                        let seq = m.step_attempts(a.step_index).position(|x| x.id == after).unwrap_or(0);
                        (a.step_index, seq + 1)
                    }
                };
                // A failover goes to an account not tried yet; a retry may go back to one (the
                // router prefers healthy accounts, and a resting one only when nothing else is left).
                let tried = match trigger {
                    Trigger::Retry { .. } => Vec::new(),
                    _ => m.providers_tried(step_index),
                };
                let Some(step) = m.step(step_index) else { return Ok(None) };
                // Read again after a restart: this dispatch was made already. The aggregate
                // decides (an attempt left unanswered goes in doubt); no provider is picked.
                if let Some(made) = m.step_attempts(step_index).nth(attempt_seq) {
                    return Ok(Some(MessageCommand::DispatchAttempt {
                        step_index,
                        attempt_seq,
                        attempt_id,
                        provider: made.provider.clone(),
                        served_by: None,
                    }));
                }
                let Some(provider) = pick_provider(step.channel, &candidates, &tried) else {
                    // Nothing can serve the step now. Its clock starts (unless an attempt started
                    // it already), so its timeout moves the cascade on.
                    tracing::warn!(%message_id, channel = %step.channel, "no provider left for the step");
                    return Ok(Some(MessageCommand::NoProvider { step_index }));
                };
                Ok(Some(MessageCommand::DispatchAttempt {
                    step_index,
                    attempt_seq,
                    attempt_id,
                    provider: provider.to_owned(),
                    served_by: providers.iter().find(|p| p.name() == provider).map(|p| p.served_by()),
                }))
            })
            .await?;
        let Some(Executed { events, state }) = executed else {
            return Ok(());
        };
        if !events
            .iter()
            .any(|e| matches!(e, MessageEvent::AttemptDispatched { attempt_id: id, .. } if *id == attempt_id))
        {
            return Ok(()); // already dispatched earlier (now in doubt) or no longer needed
        }
        let outcome = self.call_provider(&state, attempt_id, &snapshot).await;
        self.handler
            .execute(
                message_id,
                None,
                &MessageCommand::RecordSendOutcome {
                    attempt_id,
                    outcome,
                },
                &metadata,
                None,
            )
            .await?;
        Ok(())
    }

    /// Sends the attempt through `providers`, the snapshot its dispatch recorded `served_by` from,
    /// so the version on the event is the version that sent, even if a swap landed in between.
    async fn call_provider(
        &self,
        m: &Message,
        attempt_id: AttemptId,
        providers: &[Arc<dyn Provider>],
    ) -> SendOutcome {
        let attempt = m.attempt(attempt_id).expect("just dispatched");
        let rejected = |code: &str, message: &str| SendOutcome::Rejected {
            error: AttemptError::new(code, message),
            retryable: false,
            failover: false,
            retry_later: false,
        };
        let Some(provider) = providers.iter().find(|p| p.name() == attempt.provider) else {
            return rejected(
                "provider_unavailable",
                "the provider is no longer configured",
            );
        };

        let (Some(to), Some(content)) = (
            m.spec.to.address_for(attempt.channel),
            m.spec.content.render(attempt.channel),
        ) else {
            return rejected("no_content", "nothing to send on this channel");
        };
        let request = SendRequest {
            tenant_id: m.tenant_id,
            message_id: m.id,
            attempt_id,
            channel: attempt.channel,
            to: to.to_owned(),
            content,
            callback_url: format!(
                "{}/v1/webhooks/{}/{}/{}",
                self.callback_base, attempt.provider, m.id, attempt_id
            ),
        };
        let started = std::time::Instant::now();
        let result = provider.send(&request).await;
        let retry_later = result
            .as_ref()
            .err()
            .is_some_and(SendError::worth_retrying_later);
        self.providers.record_send(&attempt.provider, &result);
        let outcome = match &result {
            Ok(_) => "sent",
            Err(SendError::Rejected {
                retryable: true, ..
            }) => "retryable_error",
            Err(SendError::Rejected { .. }) => "rejected",
            Err(SendError::InDoubt(_)) => "in_doubt",
        };
        let provider_name = attempt.provider.clone();
        metrics::counter!("hermes_provider_sends_total", "provider" => provider_name.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("hermes_provider_send_seconds", "provider" => provider_name)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(accepted) => SendOutcome::Sent {
                provider_message_id: accepted.provider_message_id,
            },
            Err(SendError::Rejected {
                error, retryable, ..
            }) => {
                tracing::info!(provider = %attempt.provider, %attempt_id, code = %error.code,
                    message = %error.message, retryable, "provider rejected the attempt");
                let error = tenant_error::for_tenant(&error, retryable);
                // `m` already holds this attempt, so its provider counts as tried.
                let tried = m.providers_tried(attempt.step_index);
                let failover = retryable
                    && pick_provider(attempt.channel, &self.providers.candidates(), &tried)
                        .is_some();
                SendOutcome::Rejected {
                    error,
                    retryable,
                    failover,
                    retry_later,
                }
            }
            Err(SendError::InDoubt(reason)) => {
                tracing::warn!(provider = %attempt.provider, %attempt_id, %reason,
                    "provider call left the attempt in doubt");
                SendOutcome::InDoubt {
                    reason: tenant_error::IN_DOUBT_FOR_TENANT.to_owned(),
                }
            }
        }
    }

    async fn poll_once(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let retried = self.retry_parked(pool).await?;
        let mut conn = pool.acquire().await?;
        let checkpoint = subscription::load_checkpoint(&mut conn, NAME, false).await?;
        let batch = event_store::read_after(&mut conn, checkpoint, BATCH).await?;
        drop(conn);
        let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
            return Ok(retried);
        };
        // Events of one message in order, different messages concurrently.
        let handled = batch.len();
        let mut by_stream: HashMap<Uuid, Vec<StoredEvent>> = HashMap::new();
        for e in batch {
            by_stream.entry(e.stream_id).or_default().push(e);
        }
        let this = &*self;
        let failures: Vec<CommandError> = futures::stream::iter(by_stream.into_values())
            .map(|events: Vec<StoredEvent>| async move {
                for e in &events {
                    match this.on_event(e).await {
                        Ok(()) => {}
                        // The rest of this message's events go on; the event waits in
                        // `parked_events` for `hermes parked retry`.
                        Err(err) if is_poison(&err) => {
                            if let Err(db) = this.park(pool, e, &err).await {
                                return Some(CommandError::Db(db));
                            }
                        }
                        Err(err) => return Some(err),
                    }
                }
                None
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        if let Some(first) = failures.into_iter().next() {
            // A transient failure (the database, contention): the batch is read again; commands
            // are idempotent, so redoing the rest is safe.
            anyhow::bail!("cascade saga batch failed: {first}");
        }
        let mut conn = pool.acquire().await?;
        subscription::save_checkpoint(&mut conn, NAME, last).await?;
        Ok(handled + retried)
    }

    async fn park(
        &self,
        pool: &PgPool,
        e: &StoredEvent,
        err: &CommandError,
    ) -> Result<(), sqlx::Error> {
        tracing::error!(event_id = %e.event_id, event_type = %e.event_type, stream_id = %e.stream_id,
            error = %err, "cascade saga parked an event it cannot handle");
        let mut conn = pool.acquire().await?;
        parked::park(&mut conn, NAME, e, &err.to_string()).await
    }

    /// Tries again the parked events an operator asked for (`hermes parked retry`): one that goes
    /// through is unparked, one that fails again stays parked with its new error.
    async fn retry_parked(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        if self
            .retries_checked
            .is_some_and(|at| at.elapsed() < RETRY_CHECK_EVERY)
        {
            return Ok(0);
        }
        self.retries_checked = Some(std::time::Instant::now());
        let mut conn = pool.acquire().await?;
        let events = parked::retries_requested(&mut conn, NAME).await?;
        drop(conn);
        for e in &events {
            match self.on_event(e).await {
                Ok(()) => parked::unpark(pool, NAME, e.event_id).await?,
                Err(err) if is_poison(&err) => self.park(pool, e, &err).await?,
                Err(err) => return Err(err.into()),
            }
        }
        Ok(events.len())
    }
}

/// An error that handling the event again will not cure: it cannot be decoded, or the aggregate
/// refuses the command it leads to. Everything else (the database, contention) is transient.
fn is_poison(err: &CommandError) -> bool {
    matches!(
        err,
        CommandError::Corrupt(_) | CommandError::Domain(_) | CommandError::NotFound
    )
}

impl Subscriber for CascadeSaga {
    fn name(&self) -> &str {
        NAME
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(self.poll_once(pool))
    }
}
