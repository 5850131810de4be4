//! Commands and the decisions the Message aggregate takes on them.
//!
//! `decide` returns the events to append; an empty list means "nothing to do" (a stale timer, a
//! duplicate receipt, a dispatch already made). That is how commands stay idempotent under
//! redelivery: the saga and the timer poller may deliver the same command twice after a crash.

use crate::billing::AttemptCost;
use crate::channel::{Channel, Until};
use crate::ids::{AttemptId, TenantId};
use crate::message::events::{AttemptError, Completion, MessageEvent, ReceiptStatus};
use crate::message::spec::{CascadeStep, MessageSpec};
use crate::message::state::{AttemptStatus, Message, MessageStatus};
use crate::routing::RouteRecord;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// What a provider call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message.
    Sent { provider_message_id: Option<String> },
    /// The provider said no. `failover`: another provider of the channel will be tried.
    /// `retry_later`: the same may succeed later (a 5xx, 429, a refused connection), so with no
    /// account to fail over to the step tries again; false for a refusal that will not change by
    /// waiting (the account's own policy denied the request).
    Rejected {
        error: AttemptError,
        retryable: bool,
        failover: bool,
        retry_later: bool,
    },
    /// The request left but no answer came (timeout, connection reset): it may have been sent.
    InDoubt { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    StepTimeout {
        step_index: usize,
    },
    Ttl,
    /// The retry planned after a retryable refusal of attempt `after`.
    Retry {
        after: AttemptId,
    },
    /// The end of a deferred step's wait (the recipient's quiet hours).
    StepResume {
        step_index: usize,
    },
}

/// The first retry of a step comes this long after its refusal (before jitter), each next one
/// twice as long after, up to [`MAX_RETRY_BACKOFF_S`].
pub const FIRST_RETRY_BACKOFF_S: i64 = 1;
pub const MAX_RETRY_BACKOFF_S: i64 = 30;
/// A step makes at most this many attempts; then a retryable refusal moves the cascade on.
pub const MAX_ATTEMPTS_PER_STEP: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum MessageCommand {
    /// Start an attempt of `step_index`. `attempt_seq` is how many attempts the step had when the
    /// saga decided to dispatch: it makes the command idempotent when it is delivered again.
    DispatchAttempt {
        step_index: usize,
        attempt_seq: usize,
        attempt_id: AttemptId,
        provider: String,
        /// The plugin and version that will serve it (`twilio@0.1.0`), recorded on the event.
        served_by: Option<String>,
        /// Why the router chose the account, recorded on the event.
        route: Option<RouteRecord>,
        /// What the send costs by the chosen account's prices ([`crate::billing::attempt_cost`]).
        cost: Option<AttemptCost>,
    },
    RecordSendOutcome {
        attempt_id: AttemptId,
        outcome: SendOutcome,
    },
    RecordReceipt {
        attempt_id: AttemptId,
        status: ReceiptStatus,
        provider_message_id: Option<String>,
        error: Option<AttemptError>,
    },
    /// The tenant's app says it received the push (FCM sends no delivery receipts): a `delivered`
    /// or `read` receipt for the message's latest push attempt.
    AcknowledgePush {
        status: ReceiptStatus,
    },
    /// The saga found no provider account for the step's channel: the step's clock starts, so
    /// its timeout moves the cascade on.
    NoProvider {
        step_index: usize,
    },
    /// The step's turn came in the recipient's quiet hours ([`Message::quiet_hours_end`]): it
    /// waits until `until`.
    DeferStep {
        step_index: usize,
        until: DateTime<Utc>,
    },
    FireTimer(TimerKind),
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("attempt {0} does not belong to this message")]
    UnknownAttempt(AttemptId),
    #[error("the message is already {}", .0.as_str())]
    AlreadyTerminal(MessageStatus),
    #[error("the message has no push attempt to acknowledge")]
    NoPushAttempt,
    #[error("attempt {attempt_id} was not sent by provider account {account}")]
    ReceiptFromAnotherAccount {
        attempt_id: AttemptId,
        account: String,
    },
    #[error("the receipt is about provider message {receipt}, attempt {attempt_id} is {attempt}")]
    ReceiptForAnotherProviderMessage {
        attempt_id: AttemptId,
        receipt: String,
        attempt: String,
    },
}

/// Accepting a new message: its first events. The message starts on its first cascade step.
pub fn accept(tenant_id: TenantId, spec: MessageSpec, now: DateTime<Utc>) -> Vec<MessageEvent> {
    let expires_at = spec
        .ttl_seconds
        .map(|ttl| now + Duration::seconds(i64::from(ttl)));
    // The API refuses a message whose every step is suppressed; were one to come, it runs its
    // first step rather than none.
    let first_index = spec.next_step_from(0).unwrap_or(0);
    let first = spec.cascade[first_index];
    vec![
        MessageEvent::MessageAccepted {
            tenant_id,
            spec: Box::new(spec),
            expires_at,
            at: now,
        },
        MessageEvent::StepStarted {
            step_index: first_index,
            channel: first.channel,
            until: first.until,
            // The step's clock starts at its dispatch, not here (see `decide_dispatch`).
            timeout_at: None,
            at: now,
        },
    ]
}

impl Message {
    pub fn decide(
        &self,
        command: &MessageCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageEvent>, DomainError> {
        match command {
            MessageCommand::DispatchAttempt {
                step_index,
                attempt_seq,
                attempt_id,
                provider,
                served_by,
                route,
                cost,
            } => Ok(self.decide_dispatch(
                *step_index,
                *attempt_seq,
                *attempt_id,
                provider,
                (served_by.clone(), route.clone(), cost.clone()),
                now,
            )),
            MessageCommand::RecordSendOutcome {
                attempt_id,
                outcome,
            } => self.decide_send_outcome(*attempt_id, outcome, now),
            MessageCommand::RecordReceipt {
                attempt_id,
                status,
                provider_message_id,
                error,
            } => self.decide_receipt(*attempt_id, *status, provider_message_id, error, now),
            MessageCommand::AcknowledgePush { status } => {
                // The latest push attempt: an app can only have received a push that was sent,
                // and an earlier push attempt's ack would be late anyway.
                let attempt = self
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| a.channel == Channel::Push)
                    .ok_or(DomainError::NoPushAttempt)?;
                self.decide_receipt(attempt.id, *status, &None, &None, now)
            }
            MessageCommand::NoProvider { step_index } => Ok(self.decide_unserved(*step_index, now)),
            MessageCommand::DeferStep { step_index, until } => {
                Ok(self.decide_defer(*step_index, *until, now))
            }
            MessageCommand::FireTimer(kind) => Ok(self.decide_timer(*kind, now)),
            MessageCommand::Cancel => self.decide_cancel(now),
        }
    }

    fn decide_dispatch(
        &self,
        step_index: usize,
        attempt_seq: usize,
        attempt_id: AttemptId,
        provider: &str,
        (served_by, route, cost): (Option<String>, Option<RouteRecord>, Option<AttemptCost>),
        now: DateTime<Utc>,
    ) -> Vec<MessageEvent> {
        if self.is_terminal() || self.current_step_index() != Some(step_index) {
            return vec![];
        }
        // A deferred step waits for its resume: a dispatch decided before the deferral (read
        // again after a restart) must not send in the recipient's quiet hours.
        if self.step_deferred() {
            return vec![];
        }
        // The TTL passed but its timer has not fired yet: never send a message past its TTL.
        if self.expires_at.is_some_and(|e| e <= now) {
            return vec![MessageEvent::MessageExpired { at: now }];
        }
        let made: Vec<_> = self.step_attempts(step_index).collect();
        if let Some(existing) = made.get(attempt_seq) {
            // This dispatch was already made by an earlier run that died before recording what
            // the provider said. Sending again could deliver twice: the attempt is in doubt.
            return if existing.status == AttemptStatus::Dispatching {
                vec![MessageEvent::AttemptInDoubt {
                    attempt_id: existing.id,
                    reason: "the process stopped before the provider's answer was recorded".into(),
                    at: now,
                }]
            } else {
                vec![]
            };
        }
        if made.len() != attempt_seq {
            return vec![];
        }
        // A further attempt of the same step is a failover, allowed only once the step's last
        // attempt is no longer awaited. On the current step of a live message that happens only
        // after a retryable rejection with failover (a rejection without failover, a failed
        // receipt and a timeout all move the step on), even if a late receipt for the rejected
        // attempt has since given it a pending status again.
        if made.last().is_some_and(|last| last.is_awaited()) {
            return vec![];
        }
        let step = self.spec.cascade[step_index];
        vec![MessageEvent::AttemptDispatched {
            attempt_id,
            step_index,
            channel: step.channel,
            provider: provider.to_owned(),
            served_by,
            route,
            cost,
            // The step's first dispatch starts its clock: waiting for a worker took none of it.
            step_timeout_at: (!self.step_clock_started()).then(|| step_timeout(step, now)),
            at: now,
        }]
    }

    /// When a step retries after a retryable refusal of `attempt_id` at `now`: exponential
    /// backoff with jitter (the same for the same attempt, so a decision can be replayed), or
    /// `None` when the step has no time left for it, its attempts are used up, or the TTL comes
    /// first.
    fn retry_time(
        &self,
        step_index: usize,
        attempt_id: AttemptId,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let made = self.step_attempts(step_index).count();
        if made >= MAX_ATTEMPTS_PER_STEP {
            return None;
        }
        let exponent = u32::try_from(made.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(16);
        let backoff_ms = (FIRST_RETRY_BACKOFF_S * 1000)
            .saturating_mul(1 << exponent)
            .min(MAX_RETRY_BACKOFF_S * 1000);
        // Jitter: 50 to 100 % of the backoff, so refusals that came together do not retry together.
        let jitter = 500 + (attempt_id.0.as_u128() % 501) as i64;
        let retry_at = now + Duration::milliseconds(backoff_ms * jitter / 1000);
        let step_ends = self.current_step.as_ref().and_then(|s| s.timeout_at)?;
        let in_time = retry_at < step_ends && self.expires_at.is_none_or(|e| retry_at < e);
        in_time.then_some(retry_at)
    }

    fn decide_retry(&self, after: AttemptId, now: DateTime<Utc>) -> Vec<MessageEvent> {
        let Some(attempt) = self.attempt(after) else {
            return vec![];
        };
        let is_last_of_current_step = self.current_step_index() == Some(attempt.step_index)
            && self.step_attempts(attempt.step_index).last().map(|a| a.id) == Some(after);
        if self.is_terminal()
            || !is_last_of_current_step
            || attempt.retry_at.is_none()
            || attempt.retried
            || attempt.is_awaited()
        {
            return vec![];
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return vec![MessageEvent::MessageExpired { at: now }];
        }
        vec![MessageEvent::RetryDue {
            step_index: attempt.step_index,
            after,
            at: now,
        }]
    }

    fn decide_unserved(&self, step_index: usize, now: DateTime<Utc>) -> Vec<MessageEvent> {
        if self.is_terminal()
            || self.current_step_index() != Some(step_index)
            || self.step_clock_started()
        {
            return vec![];
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return vec![MessageEvent::MessageExpired { at: now }];
        }
        vec![MessageEvent::StepUnserved {
            step_index,
            timeout_at: step_timeout(self.spec.cascade[step_index], now),
            at: now,
        }]
    }

    fn decide_defer(
        &self,
        step_index: usize,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<MessageEvent> {
        // Only a step that has sent nothing yet waits, and a step deferred already keeps its wait.
        if self.is_terminal()
            || !self.step_yet_to_send(step_index)
            || self.step_deferred()
            || until <= now
        {
            return vec![];
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return vec![MessageEvent::MessageExpired { at: now }];
        }
        vec![MessageEvent::StepDeferred {
            step_index,
            until,
            reason: "quiet_hours".into(),
            at: now,
        }]
    }

    fn decide_send_outcome(
        &self,
        attempt_id: AttemptId,
        outcome: &SendOutcome,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageEvent>, DomainError> {
        let attempt = self
            .attempt(attempt_id)
            .ok_or(DomainError::UnknownAttempt(attempt_id))?;
        let awaiting_answer = matches!(
            attempt.status,
            AttemptStatus::Dispatching | AttemptStatus::InDoubt
        );
        let active = self.active_attempt().map(|a| a.id) == Some(attempt_id);
        let mut events = Vec::new();
        match outcome {
            SendOutcome::Sent {
                provider_message_id,
            } => {
                // Already recorded (a redelivered answer, or a receipt that overtook it) unless
                // this answer brings the provider's id the receipt did not carry.
                if attempt.sent_at.is_some()
                    && (attempt.provider_message_id.is_some() || provider_message_id.is_none())
                {
                    return Ok(vec![]);
                }
                events.push(MessageEvent::AttemptSent {
                    attempt_id,
                    provider_message_id: provider_message_id.clone(),
                    at: now,
                });
                if active && awaiting_answer && self.current_until() == Some(Until::Accepted) {
                    events.push(MessageEvent::MessageCompleted {
                        status: Completion::Delivered,
                        attempt_id,
                        at: now,
                    });
                }
            }
            SendOutcome::Rejected {
                error,
                retryable,
                failover,
                retry_later,
            } => {
                if !awaiting_answer {
                    return Ok(vec![]);
                }
                let failover = *failover && *retryable && active;
                // Nothing else to fail over to: a retryable refusal is tried again later, while
                // the step has time; only a permanent one (or no time left) moves the cascade on.
                let retry_at = (active && *retryable && *retry_later && !failover)
                    .then(|| self.retry_time(attempt.step_index, attempt_id, now))
                    .flatten();
                events.push(MessageEvent::AttemptRejected {
                    attempt_id,
                    error: error.clone(),
                    retryable: *retryable,
                    failover,
                    retry_at,
                    at: now,
                });
                if active && !failover && retry_at.is_none() {
                    events.extend(self.advance(now));
                }
            }
            SendOutcome::InDoubt { reason } => {
                if attempt.status != AttemptStatus::Dispatching {
                    return Ok(vec![]);
                }
                events.push(MessageEvent::AttemptInDoubt {
                    attempt_id,
                    reason: reason.clone(),
                    at: now,
                });
            }
        }
        Ok(events)
    }

    /// Whether a receipt that arrived at `account`'s webhook may be recorded for `attempt_id`:
    /// - the attempt was sent by that account (the account its `AttemptDispatched` names):
    ///   another account's plugin verified a signature that says nothing about this attempt;
    /// - when the provider named the attempt's message at send and the receipt names one too,
    ///   they are the same message. A provider that signs only its own ids (Messente signs the
    ///   report's body, which carries its message id but not Hermes's) is bound to the attempt
    ///   this way: a captured report replayed onto another attempt's URL names the wrong one.
    pub fn check_receipt_binding(
        &self,
        attempt_id: AttemptId,
        account: &str,
        provider_message_id: Option<&str>,
    ) -> Result<(), DomainError> {
        let attempt = self
            .attempt(attempt_id)
            .ok_or(DomainError::UnknownAttempt(attempt_id))?;
        if attempt.provider != account {
            return Err(DomainError::ReceiptFromAnotherAccount {
                attempt_id,
                account: account.to_owned(),
            });
        }
        match (attempt.provider_message_id.as_deref(), provider_message_id) {
            (Some(known), Some(named)) if known != named => {
                Err(DomainError::ReceiptForAnotherProviderMessage {
                    attempt_id,
                    receipt: named.to_owned(),
                    attempt: known.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn decide_receipt(
        &self,
        attempt_id: AttemptId,
        status: ReceiptStatus,
        provider_message_id: &Option<String>,
        error: &Option<AttemptError>,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageEvent>, DomainError> {
        let attempt = self
            .attempt(attempt_id)
            .ok_or(DomainError::UnknownAttempt(attempt_id))?;
        if !Message::receipt_moves_forward(attempt, status) {
            return Ok(vec![]); // a duplicate, or an older receipt overtaken by a newer one
        }
        let active = self.active_attempt().map(|a| a.id) == Some(attempt_id);
        let completed_by_this = self.completed_by == Some(attempt_id);
        let mut events = vec![MessageEvent::ReceiptRecorded {
            attempt_id,
            status,
            provider_message_id: provider_message_id.clone(),
            error: if status == ReceiptStatus::Failed {
                error.clone().or_else(|| {
                    Some(AttemptError::new(
                        "failed",
                        "the provider reported a failure",
                    ))
                })
            } else {
                None
            },
            late: !active && !completed_by_this,
            at: now,
        }];
        if active {
            let until = self.current_until().unwrap_or(Until::Delivered);
            if status == ReceiptStatus::Failed {
                events.extend(self.advance(now));
            } else if Message::meets_until(until, status.into()) {
                events.push(MessageEvent::MessageCompleted {
                    status: if status == ReceiptStatus::Read {
                        Completion::Read
                    } else {
                        Completion::Delivered
                    },
                    attempt_id,
                    at: now,
                });
            }
        }
        Ok(events)
    }

    fn decide_timer(&self, kind: TimerKind, now: DateTime<Utc>) -> Vec<MessageEvent> {
        if self.is_terminal() {
            return vec![];
        }
        match kind {
            TimerKind::Ttl => vec![MessageEvent::MessageExpired { at: now }],
            TimerKind::Retry { after } => self.decide_retry(after, now),
            TimerKind::StepResume { step_index } => {
                if self.current_step_index() != Some(step_index) || !self.step_deferred() {
                    return vec![];
                }
                vec![MessageEvent::StepResumed {
                    step_index,
                    channel: self.spec.cascade[step_index].channel,
                    at: now,
                }]
            }
            TimerKind::StepTimeout { step_index } => {
                // A step times out only once its clock runs (see `decide_dispatch`).
                if self.current_step_index() != Some(step_index) || !self.step_clock_started() {
                    return vec![];
                }
                let mut events = vec![MessageEvent::StepTimedOut {
                    step_index,
                    attempt_id: self.active_attempt().map(|a| a.id),
                    at: now,
                }];
                events.extend(self.advance(now));
                events
            }
        }
    }

    fn decide_cancel(&self, now: DateTime<Utc>) -> Result<Vec<MessageEvent>, DomainError> {
        match self.status {
            MessageStatus::Cancelled => Ok(vec![]),
            s if s.is_terminal() => Err(DomainError::AlreadyTerminal(s)),
            _ => Ok(vec![MessageEvent::MessageCancelled { at: now }]),
        }
    }

    fn current_until(&self) -> Option<Until> {
        self.current_step_index()
            .and_then(|i| self.step(i))
            .map(|s| s.until)
    }

    /// Leaves the current step: the next one starts, or the message fails (or expires when its
    /// TTL passed meanwhile: there is no point starting a step that cannot finish in time).
    fn advance(&self, now: DateTime<Utc>) -> Vec<MessageEvent> {
        if self.expires_at.is_some_and(|e| e <= now) {
            return vec![MessageEvent::MessageExpired { at: now }];
        }
        // Suppressed steps are skipped (their skip is in `MessageAccepted`).
        let next = self
            .spec
            .next_step_from(self.current_step_index().map_or(0, |i| i + 1));
        match next.and_then(|i| self.spec.cascade.get(i).map(|s| (i, s))) {
            Some((next, step)) => vec![MessageEvent::StepStarted {
                step_index: next,
                channel: step.channel,
                until: step.until,
                timeout_at: None,
                at: now,
            }],
            None => vec![MessageEvent::MessageFailed {
                reason: "exhausted".into(),
                at: now,
            }],
        }
    }
}

/// When a step whose clock starts at `now` times out.
fn step_timeout(step: CascadeStep, now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::seconds(i64::from(step.timeout_seconds))
}
