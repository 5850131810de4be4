//! The cascade saga: follows the log and, when a step starts (or a rejected attempt fails over, or
//! its retry is due), records `AttemptDispatched`, calls the provider, and records what the
//! provider said.
//!
//! Messages are handled independently: the saga keeps a window of events read and not yet
//! handled ([`window`]), hands each message's events out in order, one at a time, and runs up to
//! [`CONCURRENCY`] of them at once as tasks. A slow provider call holds up its own message only; a
//! transient failure (the database, contention) is retried for that event alone; an event that
//! cannot be handled is parked. The checkpoint moves only past handled events (the window's low
//! watermark).
//!
//! Crash safety comes from the order: the dispatch is committed before the call, and the
//! checkpoint never passes an event still being handled. After a crash those events are read
//! again, the aggregate sees the attempt already dispatched and marks it in doubt instead of
//! sending it twice (see `Message::decide_dispatch`).

mod bulkhead;
mod kafka;
mod tenant_rules;
mod window;
mod workers;

use crate::handler::{CommandError, CommandHandler, Executed};
use bulkhead::Bulkheads;
use futures::future::BoxFuture;
use hermes_adapters::{Provider, ProviderRegistry, SendError, SendRequest, tenant_error};
use hermes_domain::message::{AttemptError, Message, MessageCommand, MessageEvent, SendOutcome};
use hermes_domain::routing::{RouteDecision, RouteRequest, route};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use hermes_infra::event_store::Checkpoint;
use hermes_infra::event_store::{self, Cause, EventMetadata, StoredEvent};
use hermes_infra::parked;
use hermes_infra::rate_limit::{Check, RateLimiter};
use hermes_infra::subscription::{self, Subscriber};
use hermes_infra::trace_context;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenant_rules::TenantRules;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use window::Window;
use workers::Workers;

pub use kafka::KafkaSaga;

pub const NAME: &str = "cascade-saga";
/// A second mark the saga keeps: everything up to it is handled, being handled, or waiting behind
/// an earlier event of its own message; what follows waits for a worker. The dispatch backlog is
/// measured from it (`crate::backlog`), so one slow provider call is not counted as overload.
pub const STARTED_NAME: &str = "cascade-saga:started";
/// Events read from the log at a time.
const BATCH: i64 = 500;
/// Events read and not yet handled, at most: bounds memory, and how far the saga reads ahead of a
/// message it is still handling.
const WINDOW: usize = 8192;
/// Events handled at once (each of a different message). Not above the plugin pool's send slots
/// (`PluginLimits::send_slots`, 240 of the default 320), so that a send never waits for a slot,
/// let alone is refused `plugin_busy`, because of the saga's own load.
const CONCURRENCY: usize = 240;
/// How long the saga waits for a handled event or a new commit before it looks at the log anyway.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// The log is read at most this often while events come one commit at a time: each read is a
/// query, and reading on every commit (hundreds a second) would cost more than it saves.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(5);
/// How often the checkpoint is written while events keep finishing (and at once when the window
/// empties): a crash redoes at most this much, which is safe.
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// How long a message whose account's bulkhead is full waits before it looks again.
const DEFER_FOR: Duration = Duration::from_millis(100);
/// Backoff for an event whose handling failed transiently: it alone is tried again.
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

pub struct CascadeSaga {
    /// The window of events read and the tasks handling them.
    workers: Workers,
    /// Where the window has read the log to; `None` until it starts from the stored checkpoint.
    read_to: Option<Checkpoint>,
    /// When the log was last read, and whether that read was full (more is waiting).
    read_at: Instant,
    read_full: bool,
    /// The watermark not yet written, and when it last was.
    unsaved: Option<Checkpoint>,
    /// The started mark last written.
    saved_started: Option<Checkpoint>,
    saved_at: Instant,
    /// Commits in this process, to wake when new events may be there.
    appended: tokio::sync::watch::Receiver<u64>,
    /// When the saga last looked for parked events an operator asked to retry: at most once per
    /// [`RETRY_CHECK_EVERY`], not on every poll of the log.
    retries_checked: Option<Instant>,
}

/// What handling one event needs, shared by the tasks.
pub(crate) struct Dispatcher {
    handler: CommandHandler,
    providers: ProviderRegistry,
    /// Public base URL of this Hermes, for the per-attempt receipt URL given to providers.
    callback_base: String,
    bulkheads: Arc<Bulkheads>,
    tenant_rules: TenantRules,
    /// Where the accounts' send rates (`--mps`) are kept: Redis when configured, so the rate
    /// holds across processes.
    send_rates: RateLimiter,
}

/// What became of an event.
enum Handled {
    Done,
    /// Its account's bulkhead is full: nothing was recorded; it is handed out again later.
    Deferred,
}

/// How often the saga looks for `hermes parked retry` requests.
const RETRY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why the saga dispatches.
#[derive(Clone, Copy)]
enum Trigger {
    StepStarted {
        step_index: usize,
        channel: Channel,
    },
    /// A step deferred for the recipient's quiet hours, whose wait is over: as if it started.
    StepResumed {
        step_index: usize,
        channel: Channel,
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

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::StepStarted { .. } => "step_started",
            Trigger::StepResumed { .. } => "step_resumed",
            Trigger::Failover { .. } => "failover",
            Trigger::Retry { .. } => "retry",
        }
    }
}

impl Dispatcher {
    pub(crate) fn new(
        handler: CommandHandler,
        providers: ProviderRegistry,
        callback_base: &str,
        send_rates: RateLimiter,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            send_rates,
            tenant_rules: TenantRules::new(handler.pool().clone()),
            handler,
            providers,
            callback_base: callback_base.trim_end_matches('/').to_owned(),
            bulkheads: Arc::default(),
        })
    }
}

impl CascadeSaga {
    pub fn new(
        handler: CommandHandler,
        providers: ProviderRegistry,
        callback_base: String,
        send_rates: RateLimiter,
    ) -> Self {
        Self {
            workers: Workers::new(Dispatcher::new(
                handler,
                providers,
                &callback_base,
                send_rates,
            )),
            read_to: None,
            read_at: Instant::now(),
            read_full: false,
            unsaved: None,
            saved_started: None,
            saved_at: Instant::now(),
            appended: event_store::appended(),
            retries_checked: None,
        }
    }
}

impl Dispatcher {
    async fn on_event(&self, stored: &StoredEvent) -> Result<Handled, CommandError> {
        if stored.stream_type != crate::handler::STREAM_TYPE {
            return Ok(Handled::Done);
        }
        let trigger = match MessageEvent::from_stored(
            &stored.event_type,
            stored.schema_version,
            stored.payload.clone(),
        )? {
            MessageEvent::StepStarted {
                step_index,
                channel,
                ..
            } => Trigger::StepStarted {
                step_index,
                channel,
            },
            MessageEvent::StepResumed {
                step_index,
                channel,
                ..
            } => Trigger::StepResumed {
                step_index,
                channel,
            },
            MessageEvent::AttemptRejected {
                attempt_id,
                failover: true,
                ..
            } => Trigger::Failover { after: attempt_id },
            MessageEvent::RetryDue { after, .. } => Trigger::Retry { after },
            _ => return Ok(Handled::Done),
        };
        self.dispatch(
            MessageId(stored.stream_id),
            TenantId(stored.tenant_id),
            trigger,
            stored,
        )
        .await
    }

    async fn dispatch(
        &self,
        message_id: MessageId,
        tenant: TenantId,
        trigger: Trigger,
        cause: &StoredEvent,
    ) -> Result<Handled, CommandError> {
        let mut metadata = EventMetadata {
            causation_id: Some(cause.event_id),
            actor: Some("saga".into()),
            cause: Some(Cause::Event {
                event_id: cause.event_id,
                event_type: cause.event_type.clone(),
            }),
            ..Default::default()
        };
        let rules = self.tenant_rules.get(tenant).await?;
        let candidates = self.providers.candidates();
        // A step's first attempt usually goes to the channel's first usable account: when that
        // one's bulkhead is full, wait without loading the message. (A tenant's rule may route
        // elsewhere, by country or price: those steps go on to decide.)
        if let Trigger::StepStarted { channel, .. } | Trigger::StepResumed { channel, .. } = trigger
            && !rules.routing.contains_key(&channel)
            && route(&RouteRequest::any(channel), &candidates)
                .is_some_and(|d| self.bulkheads.is_full(&d.account))
        {
            return Ok(Handled::Deferred);
        }
        // The dispatch's span, under the event's trace context; the events it appends carry
        // the span's context (or the event's, when traces are not exported).
        let span = trace_context::span_under(cause.metadata.traceparent.as_deref(), || {
            tracing::info_span!(
                "dispatch",
                otel.name = "cascade.dispatch",
                trace_id = tracing::field::Empty,
                hermes.message_id = %message_id,
                hermes.tenant_id = %tenant,
                hermes.trigger = trigger.name(),
            )
        });
        metadata.traceparent = trace_context::carried(&span, cause.metadata.traceparent.as_deref());
        self.decide_and_send(message_id, trigger, &metadata, rules, candidates)
            .instrument(span)
            .await
    }

    /// The dispatch itself, once the trigger is known to need one: decide the attempt (the
    /// route, the account's place), record it, call the provider, record the outcome.
    async fn decide_and_send(
        &self,
        message_id: MessageId,
        trigger: Trigger,
        metadata: &EventMetadata,
        rules: tenant_rules::Rules,
        candidates: Vec<hermes_domain::routing::ProviderCandidate>,
    ) -> Result<Handled, CommandError> {
        // The account's place, taken while the dispatch is decided (the pick is made there), held
        // through the call; `None` in it after the decision means the account was full.
        let place: Arc<Mutex<Option<(String, OwnedSemaphorePermit)>>> = Arc::default();
        let deferred = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (place_in, deferred_in) = (place.clone(), deferred.clone());
        // The half-open account whose probe this dispatch claimed, if any.
        let probing: Arc<Mutex<Option<String>>> = Arc::default();
        let probing_in = probing.clone();
        let bulkheads = self.bulkheads.clone();
        let registry = self.providers.clone();
        // One version of each account for this dispatch: the one recorded is the one that sends.
        let snapshot = self.providers.snapshot();
        let providers = snapshot.clone();
        let attempt_id = AttemptId::new();
        let executed = self
            .handler
            .execute_with(message_id, None, metadata, None, move |m| {
                deferred_in.store(false, std::sync::atomic::Ordering::Relaxed);
                let (step_index, attempt_seq) = match trigger {
                    Trigger::StepStarted { step_index, .. }
                    | Trigger::StepResumed { step_index, .. } => (step_index, 0),
                    Trigger::Failover { after } | Trigger::Retry { after } => {
                        let Some(a) = m.attempt(after) else { return Ok(None) };
                        let seq = m.step_attempts(a.step_index).position(|x| x.id == after).unwrap_or(0);
                        (a.step_index, seq + 1)
                    }
                };
                // A failover goes to an account not tried yet; a retry may go back to one (the
                // router prefers usable accounts, and an open one only when nothing else is left).
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
                        route: None,
                        cost: None,
                    }));
                }
                // A deferred step is dispatched by its resume, not by an event read before it.
                if m.step_deferred() {
                    return Ok(None);
                }
                // The step's first attempt waits out the recipient's quiet hours, if the tenant
                // has them (the rule is the domain's; the saga only asks).
                if let Some(quiet) = &rules.quiet_hours
                    && let Some(until) = m.quiet_hours_end(step_index, quiet, chrono::Utc::now())
                {
                    return Ok(Some(MessageCommand::DeferStep { step_index, until }));
                }
                let rule = rules.routing.get(&step.channel);
                let country = rule.and_then(|_| m.spec.destination_country(step.channel));
                let ask = RouteRequest {
                    tenant: Some(m.tenant_id),
                    channel: step.channel,
                    country: country.as_deref(),
                    tried: &tried,
                    rule,
                    seed: route_seed(message_id, step_index, attempt_seq),
                };
                let Some(decision) = decide_route(&ask, &candidates, &registry, &probing_in) else {
                    // Nothing can serve the step now. Its clock starts (unless an attempt started
                    // it already), so its timeout moves the cascade on.
                    tracing::warn!(%message_id, channel = %step.channel, "no provider left for the step");
                    return Ok(Some(MessageCommand::NoProvider { step_index }));
                };
                let provider = decision.account.as_str();
                let mut held = place_in.lock().expect("place lock poisoned");
                if held.as_ref().is_none_or(|(account, _)| account != provider) {
                    match bulkheads.try_enter(provider) {
                        Some(permit) => *held = Some((provider.to_owned(), permit)),
                        None => {
                            *held = None;
                            deferred_in.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(MessageCommand::DispatchAttempt {
                    step_index,
                    attempt_seq,
                    attempt_id,
                    provider: provider.to_owned(),
                    served_by: providers.iter().find(|p| p.name() == provider).map(|p| p.served_by()),
                    route: Some(decision.record),
                    // Priced by the account the dispatch goes to, as its table reads now.
                    cost: candidates
                        .iter()
                        .find(|c| c.name == provider)
                        .and_then(|c| hermes_domain::billing::attempt_cost(&m.spec, step.channel, &c.prices)),
                }))
            })
            .await?;
        let Some(Executed { events, state }) = executed else {
            if deferred.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Handled::Deferred);
            }
            return Ok(Handled::Done);
        };
        if !events
            .iter()
            .any(|e| matches!(e, MessageEvent::AttemptDispatched { attempt_id: id, .. } if *id == attempt_id))
        {
            return Ok(Handled::Done); // already dispatched earlier (now in doubt) or no longer needed
        }
        // Held until the provider answered.
        let _place = place.lock().expect("place lock poisoned").take();
        if let Some(attempt) = state.attempt(attempt_id) {
            self.wait_for_send_slot(&attempt.provider).await;
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
                metadata,
                None,
            )
            .await?;
        Ok(Handled::Done)
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
        // The provider call's span, inside the dispatch's (none when that is not traced); the
        // plugin's HTTP requests are client spans within it (`hermes_adapters::plugin::fetch`).
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "send",
                otel.name = %format_args!("provider.send {}", attempt.provider),
                hermes.provider = %attempt.provider,
                hermes.channel = %attempt.channel,
                hermes.attempt_id = %attempt_id,
                hermes.outcome = tracing::field::Empty,
            )
        };
        let started = std::time::Instant::now();
        let result = provider.send(&request).instrument(span.clone()).await;
        let retry_later = result
            .as_ref()
            .err()
            .is_some_and(SendError::worth_retrying_later);
        self.providers
            .record_send(&attempt.provider, &result, started.elapsed());
        let outcome = match &result {
            Ok(_) => "sent",
            Err(SendError::Rejected {
                retryable: true, ..
            }) => "retryable_error",
            Err(SendError::Rejected { .. }) => "rejected",
            Err(SendError::InDoubt(_)) => "in_doubt",
        };
        span.record("hermes.outcome", outcome);
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
                    reason = %error.message, retryable, "provider rejected the attempt");
                let error = tenant_error::for_tenant(&error, retryable);
                // `m` already holds this attempt, so its provider counts as tried.
                let tried = m.providers_tried(attempt.step_index);
                let failover = retryable && self.can_fail_over(m, attempt.channel, &tried).await;
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
}

impl Dispatcher {
    /// Waits until the account's send rate (`--mps`) has room for one more send. The dispatch is
    /// recorded already; the wait is part of the send (a crash during it leaves the attempt in
    /// doubt, like a crash during the call).
    async fn wait_for_send_slot(&self, account: &str) {
        let Some(per_second) = self.providers.max_per_second(account) else {
            return;
        };
        let check = [Check {
            key: format!("hermes:mps:{{{account}}}"),
            limit: hermes_domain::rate_limit::RateLimit {
                per_second,
                burst: None,
            },
        }];
        let mut waited = false;
        while let Err(limited) = self.send_rates.acquire(&check).await {
            if !waited {
                metrics::counter!("hermes_provider_rate_waits_total", "account" => account.to_owned())
                    .increment(1);
                waited = true;
            }
            tokio::time::sleep(limited.retry_after.max(Duration::from_millis(1))).await;
        }
    }

    /// Whether another account may take the step after `tried` refused it, under the tenant's
    /// rule for the channel.
    async fn can_fail_over(&self, m: &Message, channel: Channel, tried: &[&str]) -> bool {
        let rules = match self.tenant_rules.get(m.tenant_id).await {
            Ok(rules) => rules,
            // Unknown rules: say yes; the failover's dispatch reads them again and records
            // `NoProvider` if none is left.
            Err(_) => return true,
        };
        let rule = rules.routing.get(&channel);
        let country = rule.and_then(|_| m.spec.destination_country(channel));
        let ask = RouteRequest {
            tenant: Some(m.tenant_id),
            channel,
            country: country.as_deref(),
            tried,
            rule,
            seed: 0,
        };
        route(&ask, &self.providers.candidates()).is_some()
    }
}

/// The weighted strategy's draw for one attempt: the same on every run of the dispatch.
fn route_seed(message_id: MessageId, step_index: usize, attempt_seq: usize) -> u64 {
    let (high, low) = message_id.0.as_u64_pair();
    high ^ low ^ ((step_index as u64) << 32) ^ attempt_seq as u64
}

/// Routes the attempt. A half-open account is taken only with its probe claimed (this dispatch
/// keeps its claim in `probing` across runs of its decision); when another dispatch holds the
/// probe, the account is passed over.
fn decide_route(
    ask: &RouteRequest<'_>,
    candidates: &[hermes_domain::routing::ProviderCandidate],
    registry: &ProviderRegistry,
    probing: &Mutex<Option<String>>,
) -> Option<RouteDecision> {
    let mut passed_over: Vec<String> = Vec::new();
    loop {
        let mut tried: Vec<&str> = ask.tried.to_vec();
        tried.extend(passed_over.iter().map(String::as_str));
        let decision = route(
            &RouteRequest {
                tried: &tried,
                ..*ask
            },
            candidates,
        )?;
        if !decision.probe {
            return Some(decision);
        }
        let mut probing = probing.lock().unwrap_or_else(|e| e.into_inner());
        if probing.as_deref() == Some(decision.account.as_str())
            || registry.claim_probe(&decision.account)
        {
            *probing = Some(decision.account.clone());
            return Some(decision);
        }
        passed_over.push(decision.account);
    }
}

impl CascadeSaga {
    /// One round: reads what the window has room for (at most every [`MIN_READ_INTERVAL`], unless
    /// the last read was full), starts what is ready, waits a little for something to finish or
    /// for new events, and moves the checkpoint past what is done.
    async fn poll_once(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let retried = self.retry_parked(pool).await?;
        let mut read = 0;
        if self.read_full || self.read_at.elapsed() >= MIN_READ_INTERVAL {
            // Marked seen before reading: a commit after this is a reason to read again.
            self.appended.borrow_and_update();
            read = self.read(pool).await?;
            self.read_at = Instant::now();
        }
        self.workers.start_ready(pool);
        let mut finished = self.workers.drain_finished();
        let committed = self.appended.has_changed().unwrap_or(false);
        let busy = self.workers.busy();
        if read == 0 && finished == 0 && (busy || committed) {
            // Until a task finishes or the next read is due: soon when events were committed
            // since the last read, at the idle poll otherwise (or sooner, on a commit).
            let next_read = self.read_at
                + if committed {
                    MIN_READ_INTERVAL
                } else {
                    IDLE_POLL
                };
            tokio::select! {
                true = self.workers.join_one(), if self.workers.has_tasks() => finished += 1,
                _ = self.appended.changed(), if !committed => {}
                _ = tokio::time::sleep_until(next_read.into()) => {}
            }
            finished += self.workers.drain_finished();
            self.workers.start_ready(pool);
        }
        // The Postgres tail's progress is the window's watermark, not single events.
        self.workers.take_finished();
        self.save(pool).await?;
        gauges(&self.workers.window);
        // Busy while anything is in the window or committed: the subscription loop then comes
        // straight back (this poll did its own waiting) instead of idling.
        Ok(retried + read + finished + usize::from(busy || committed))
    }

    /// Reads the next events into the window, as many as it has room for.
    async fn read(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        let room = WINDOW.saturating_sub(self.workers.window.len());
        if room == 0 {
            return Ok(0);
        }
        let mut conn = pool.acquire().await?;
        let from = match self.read_to {
            Some(at) => at,
            None => {
                let at = subscription::load_checkpoint(&mut conn, NAME, false).await?;
                // The started mark's row is made here, once, so saving it is one update.
                subscription::load_checkpoint(&mut conn, STARTED_NAME, false).await?;
                self.workers.window = Window::starting_after(at);
                self.read_to = Some(at);
                at
            }
        };
        let limit = BATCH.min(room as i64);
        let batch = event_store::read_after(&mut conn, from, limit).await?;
        drop(conn);
        let read = batch.len();
        self.read_full = read as i64 == limit;
        if let Some(last) = batch.last() {
            self.read_to = Some(last.checkpoint());
        }
        for event in batch {
            self.workers.window.push(event);
        }
        Ok(read)
    }

    /// Writes the watermark and the started mark when they moved, at most every [`SAVE_EVERY`]
    /// while events keep finishing.
    async fn save(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        if let Some(at) = self.workers.window.advance() {
            self.unsaved = Some(at);
        }
        let started = self.workers.window.started_through();
        let started_moved = self.saved_started != Some(started);
        if self.unsaved.is_none() && !started_moved {
            return Ok(());
        }
        if !self.workers.window.is_empty() && self.saved_at.elapsed() < SAVE_EVERY {
            return Ok(());
        }
        let mut conn = pool.acquire().await?;
        if let Some(at) = self.unsaved {
            subscription::save_checkpoint(&mut conn, NAME, at).await?;
        }
        if started_moved {
            subscription::save_checkpoint(&mut conn, STARTED_NAME, started).await?;
        }
        self.unsaved = None;
        self.saved_started = Some(started);
        self.saved_at = Instant::now();
        Ok(())
    }

    async fn retry_parked(&mut self, pool: &PgPool) -> anyhow::Result<usize> {
        if self
            .retries_checked
            .is_some_and(|at| at.elapsed() < RETRY_CHECK_EVERY)
        {
            return Ok(0);
        }
        self.retries_checked = Some(Instant::now());
        retry_parked(self.workers.dispatcher(), pool).await
    }

    /// Lets the events in flight finish and forgets the window: after leadership moved, another
    /// process may have moved the checkpoint, so reading starts again from the stored one.
    async fn restart(&mut self) {
        self.workers.join_all().await;
        self.workers.take_finished();
        self.workers.window = Window::default();
        self.read_to = None;
        self.unsaved = None;
        self.saved_started = None;
    }
}

impl Dispatcher {
    /// Handles one event to the end: done, or parked when it cannot be handled; a transient
    /// failure is retried with backoff, for this event alone. The event comes back when it must
    /// wait for its account's bulkhead.
    async fn handle(&self, pool: &PgPool, event: StoredEvent) -> Option<StoredEvent> {
        use futures::FutureExt;
        let mut backoff = RETRY_START;
        loop {
            let outcome = std::panic::AssertUnwindSafe(self.on_event(&event))
                .catch_unwind()
                .await;
            let reason = match outcome {
                Ok(Ok(Handled::Done)) => return None,
                Ok(Ok(Handled::Deferred)) => return Some(event),
                Ok(Err(err)) if is_poison(&err) => err.to_string(),
                Ok(Err(err)) => {
                    tracing::warn!(event_id = %event.event_id, stream_id = %event.stream_id,
                        error = %err, retry_in = ?backoff, "cascade saga will try an event again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_CAP);
                    continue;
                }
                Err(_) => "handling the event panicked (a bug: see the log)".to_owned(),
            };
            match park(pool, &event, &reason).await {
                Ok(()) => return None,
                Err(db) => {
                    tracing::warn!(event_id = %event.event_id, error = %db,
                        retry_in = ?backoff, "cascade saga could not park an event; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_CAP);
                }
            }
        }
    }
}

/// Tries again the parked events an operator asked for (`hermes parked retry`): one that goes
/// through is unparked, one that fails again stays parked with its new error. One saga process
/// at a time does it (an advisory lock), so that two Kafka workers never retry one event at once.
async fn retry_parked(dispatcher: &Dispatcher, pool: &PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(PARKED_RETRY_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(0);
    }
    let result = retry_parked_locked(dispatcher, pool, &mut conn).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(PARKED_RETRY_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

const PARKED_RETRY_LOCK: &str = "cascade-saga:parked-retry";

async fn retry_parked_locked(
    dispatcher: &Dispatcher,
    pool: &PgPool,
    conn: &mut sqlx::PgConnection,
) -> anyhow::Result<usize> {
    let events = parked::retries_requested(conn, NAME).await?;
    for e in &events {
        match dispatcher.on_event(e).await {
            Ok(Handled::Done) => parked::unpark(pool, NAME, e.event_id).await?,
            // Its account is full: still asked for, tried again at the next look.
            Ok(Handled::Deferred) => {}
            Err(err) if is_poison(&err) => park(pool, e, &err).await?,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(events.len())
}

fn gauges(window: &Window) {
    metrics::gauge!("hermes_saga_in_flight").set(window.in_flight() as f64);
    metrics::gauge!("hermes_saga_window_events").set(window.len() as f64);
}

async fn park(
    pool: &PgPool,
    e: &StoredEvent,
    reason: &(impl std::fmt::Display + ?Sized),
) -> Result<(), sqlx::Error> {
    let reason = reason.to_string();
    tracing::error!(event_id = %e.event_id, event_type = %e.event_type, stream_id = %e.stream_id,
        error = %reason, "cascade saga parked an event it cannot handle");
    let mut conn = pool.acquire().await?;
    parked::park(&mut conn, NAME, e, &reason).await
}

/// Whether the saga may dispatch on this event: a message's step started (or resumed after its
/// quiet hours), a retry came due, or an attempt was rejected (its payload says whether to fail over). Told from the type alone.
fn may_dispatch(event: &StoredEvent) -> bool {
    event.stream_type == crate::handler::STREAM_TYPE
        && matches!(
            event.event_type.as_str(),
            "StepStarted" | "StepResumed" | "AttemptRejected" | "RetryDue"
        )
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

    fn resume(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.restart())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_domain::Until;
    use uuid::Uuid;

    /// The pre-filter lets through the events `on_event` dispatches on, and only those.
    #[test]
    fn the_types_that_may_dispatch_are_the_triggers() {
        let at = chrono::Utc::now();
        let attempt_id = AttemptId::new();
        let triggers = [
            MessageEvent::StepStarted {
                step_index: 0,
                channel: Channel::Sms,
                until: Until::Delivered,
                timeout_at: None,
                at,
            },
            MessageEvent::AttemptRejected {
                attempt_id,
                error: AttemptError::new("x", "y"),
                retryable: true,
                failover: true,
                retry_at: None,
                at,
            },
            MessageEvent::RetryDue {
                step_index: 0,
                after: attempt_id,
                at,
            },
            MessageEvent::StepResumed {
                step_index: 0,
                channel: Channel::Sms,
                at,
            },
        ];
        let stored = |event_type: &str| StoredEvent {
            position: 1,
            tx_id: 1,
            tenant_id: Uuid::nil(),
            stream_type: crate::handler::STREAM_TYPE.into(),
            stream_id: Uuid::nil(),
            stream_version: 1,
            event_id: Uuid::nil(),
            event_type: event_type.into(),
            schema_version: 1,
            payload: serde_json::Value::Null,
            metadata: sqlx::types::Json(EventMetadata::default()),
            recorded_at: at,
        };
        for trigger in &triggers {
            assert!(may_dispatch(&stored(trigger.event_type())));
        }
        for other in [
            "MessageAccepted",
            "AttemptDispatched",
            "StepUnserved",
            "StepDeferred",
            "AttemptInDoubt",
            "AttemptSent",
            "ReceiptRecorded",
            "StepTimedOut",
            "MessageCompleted",
            "MessageFailed",
            "MessageExpired",
            "MessageCancelled",
        ] {
            assert!(!may_dispatch(&stored(other)), "{other}");
        }
    }
}
