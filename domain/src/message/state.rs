//! The state of a message, folded from its events. `apply` never fails and never decides:
//! every decision was taken when the event was written (see [`super::decide`]).

use crate::channel::{Channel, Until};
use crate::ids::{AttemptId, MessageId, TenantId};
use crate::message::events::{AttemptError, Completion, MessageEvent, ReceiptStatus};
use crate::message::spec::{CascadeStep, MessageSpec};
use crate::quiet_hours::QuietHours;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessageStatus {
    Accepted,
    Sending,
    Delivered,
    Read,
    Failed,
    Expired,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Accepted,
        MessageStatus::Sending,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::Expired,
        MessageStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, MessageStatus::Accepted | MessageStatus::Sending)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Accepted => "accepted",
            MessageStatus::Sending => "sending",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Expired => "expired",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttemptStatus {
    Dispatching,
    Sent,
    Delivered,
    Read,
    Failed,
    Rejected,
    TimedOut,
    InDoubt,
}

impl AttemptStatus {
    /// As the API and the billing export spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Dispatching => "dispatching",
            AttemptStatus::Sent => "sent",
            AttemptStatus::Delivered => "delivered",
            AttemptStatus::Read => "read",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Rejected => "rejected",
            AttemptStatus::TimedOut => "timed_out",
            AttemptStatus::InDoubt => "in_doubt",
        }
    }

    /// Still waiting on the provider: the step can end by this attempt's receipt.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            AttemptStatus::Dispatching
                | AttemptStatus::Sent
                | AttemptStatus::InDoubt
                | AttemptStatus::Delivered
        )
    }

    /// Where a receipt status sits in the order sent < delivered < read, so that an older receipt
    /// arriving after a newer one never moves an attempt backwards.
    fn progress(self) -> u8 {
        match self {
            AttemptStatus::Dispatching | AttemptStatus::InDoubt => 0,
            AttemptStatus::Sent => 1,
            AttemptStatus::Delivered => 2,
            AttemptStatus::Read => 3,
            AttemptStatus::Failed | AttemptStatus::Rejected | AttemptStatus::TimedOut => 0,
        }
    }
}

impl AttemptStatus {
    /// The order receipts move an attempt along: nothing from the provider yet (dispatching, in
    /// doubt, or only Hermes's own verdict: rejected at send, timed out) < sent < delivered <
    /// read = failed. Read and failed are the provider's last word: no receipt moves an attempt
    /// out of them. Timed out and rejected rank lowest because a late receipt may still tell
    /// what happened (a provider that answered 503 delivers after all).
    pub fn rank(self) -> u8 {
        match self {
            AttemptStatus::Dispatching
            | AttemptStatus::InDoubt
            | AttemptStatus::Rejected
            | AttemptStatus::TimedOut => 0,
            AttemptStatus::Sent => 1,
            AttemptStatus::Delivered => 2,
            AttemptStatus::Read | AttemptStatus::Failed => 3,
        }
    }
}

impl From<ReceiptStatus> for AttemptStatus {
    fn from(r: ReceiptStatus) -> Self {
        match r {
            ReceiptStatus::Sent => AttemptStatus::Sent,
            ReceiptStatus::Delivered => AttemptStatus::Delivered,
            ReceiptStatus::Read => AttemptStatus::Read,
            ReceiptStatus::Failed => AttemptStatus::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: AttemptId,
    pub step_index: usize,
    pub channel: Channel,
    pub provider: String,
    pub status: AttemptStatus,
    pub provider_message_id: Option<String>,
    pub error: Option<AttemptError>,
    /// A receipt came after the cascade had moved past this attempt.
    pub late: bool,
    pub dispatched_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// When the attempt was put in doubt (Hermes could not know whether the provider got it).
    /// Kept once a receipt or the step's timeout settles it: an attempt that was in doubt may
    /// have been delivered, and the tenant must be able to see that.
    pub in_doubt_at: Option<DateTime<Utc>>,
    /// The retry planned after this attempt's refusal (`AttemptRejected.retry_at`), and whether
    /// it came due: a retry is made once.
    pub retry_at: Option<DateTime<Utc>>,
    pub retried: bool,
    pub updated_at: DateTime<Utc>,
}

impl Attempt {
    /// The step may still end by this attempt: it is pending and the cascade has not moved past
    /// it. A late receipt can give a finished attempt a pending status again (a provider that
    /// answered 503 delivers after all); such an attempt is recorded, not waited on.
    pub fn is_awaited(&self) -> bool {
        self.status.is_pending() && !self.late
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CurrentStep {
    pub index: usize,
    pub started_at: DateTime<Utc>,
    /// When the step times out: unknown until its first attempt is dispatched (or no provider
    /// could serve it), since the step's clock starts then.
    pub timeout_at: Option<DateTime<Utc>>,
    /// The step waits for the recipient's quiet hours to end, until then (`StepDeferred`).
    pub deferred_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub tenant_id: TenantId,
    /// Number of events applied; the stream version of the last one.
    pub version: u64,
    pub spec: MessageSpec,
    pub status: MessageStatus,
    pub current_step: Option<CurrentStep>,
    pub attempts: Vec<Attempt>,
    /// The attempt whose receipt (or acceptance) ended the cascade successfully.
    pub completed_by: Option<AttemptId>,
    /// Why the message failed, expired or was cancelled.
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Message {
    /// Folds a whole stream. `None` for an empty stream or one that does not start with
    /// `MessageAccepted` (which the event store never produces).
    pub fn from_events<'a>(
        id: MessageId,
        events: impl IntoIterator<Item = &'a MessageEvent>,
    ) -> Option<Self> {
        let mut state: Option<Message> = None;
        for e in events {
            state = Message::apply(state, id, e);
        }
        state
    }

    /// Applies one event to an optional state (a message does not exist before its first event).
    pub fn apply(state: Option<Message>, id: MessageId, event: &MessageEvent) -> Option<Message> {
        match (state, event) {
            (
                None,
                MessageEvent::MessageAccepted {
                    tenant_id,
                    spec,
                    expires_at,
                    at,
                },
            ) => Some(Message {
                id,
                tenant_id: *tenant_id,
                version: 1,
                spec: (**spec).clone(),
                status: MessageStatus::Accepted,
                current_step: None,
                attempts: Vec::new(),
                completed_by: None,
                reason: None,
                expires_at: *expires_at,
                accepted_at: *at,
                updated_at: *at,
            }),
            (None, _) => None,
            (Some(mut m), e) => {
                m.apply_mut(e);
                m.version += 1;
                m.updated_at = e.at();
                Some(m)
            }
        }
    }

    fn apply_mut(&mut self, event: &MessageEvent) {
        match event {
            MessageEvent::MessageAccepted { .. } => {}
            MessageEvent::StepStarted {
                step_index,
                timeout_at,
                at,
                ..
            } => {
                self.current_step = Some(CurrentStep {
                    index: *step_index,
                    started_at: *at,
                    timeout_at: *timeout_at,
                    deferred_until: None,
                });
            }
            MessageEvent::StepDeferred {
                step_index, until, ..
            } => {
                if let Some(step) = self
                    .current_step
                    .as_mut()
                    .filter(|s| s.index == *step_index)
                {
                    step.deferred_until = Some(*until);
                }
            }
            MessageEvent::StepResumed { step_index, .. } => {
                if let Some(step) = self
                    .current_step
                    .as_mut()
                    .filter(|s| s.index == *step_index)
                {
                    step.deferred_until = None;
                }
            }
            MessageEvent::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                step_timeout_at,
                at,
                ..
            } => {
                self.start_step_clock(*step_index, *step_timeout_at);
                self.status = MessageStatus::Sending;
                self.attempts.push(Attempt {
                    id: *attempt_id,
                    step_index: *step_index,
                    channel: *channel,
                    provider: provider.clone(),
                    status: AttemptStatus::Dispatching,
                    provider_message_id: None,
                    error: None,
                    late: false,
                    dispatched_at: *at,
                    sent_at: None,
                    delivered_at: None,
                    read_at: None,
                    failed_at: None,
                    in_doubt_at: None,
                    retry_at: None,
                    retried: false,
                    updated_at: *at,
                });
            }
            MessageEvent::StepUnserved {
                step_index,
                timeout_at,
                ..
            } => self.start_step_clock(*step_index, Some(*timeout_at)),
            MessageEvent::AttemptInDoubt { attempt_id, at, .. } => {
                if let Some(a) = self.attempt_mut(*attempt_id) {
                    a.status = AttemptStatus::InDoubt;
                    a.in_doubt_at.get_or_insert(*at);
                    a.updated_at = *at;
                }
            }
            MessageEvent::AttemptSent {
                attempt_id,
                provider_message_id,
                at,
            } => {
                if let Some(a) = self.attempt_mut(*attempt_id) {
                    if matches!(
                        a.status,
                        AttemptStatus::Dispatching | AttemptStatus::InDoubt
                    ) {
                        a.status = AttemptStatus::Sent;
                    }
                    if a.provider_message_id.is_none() {
                        a.provider_message_id = provider_message_id.clone();
                    }
                    a.sent_at.get_or_insert(*at);
                    a.updated_at = *at;
                }
            }
            MessageEvent::RetryDue { after, .. } => {
                if let Some(a) = self.attempt_mut(*after) {
                    a.retried = true;
                }
            }
            MessageEvent::AttemptRejected {
                attempt_id,
                error,
                retry_at,
                at,
                ..
            } => {
                if let Some(a) = self.attempt_mut(*attempt_id) {
                    a.retry_at = *retry_at;
                    a.status = AttemptStatus::Rejected;
                    a.error = Some(error.clone());
                    a.failed_at = Some(*at);
                    a.updated_at = *at;
                }
            }
            MessageEvent::ReceiptRecorded {
                attempt_id,
                status,
                provider_message_id,
                error,
                late,
                at,
            } => {
                let completed_by_this = self.completed_by == Some(*attempt_id);
                if let Some(a) = self.attempt_mut(*attempt_id) {
                    a.status = (*status).into();
                    if a.provider_message_id.is_none() {
                        a.provider_message_id = provider_message_id.clone();
                    }
                    match status {
                        ReceiptStatus::Sent => {
                            a.sent_at.get_or_insert(*at);
                        }
                        ReceiptStatus::Delivered => {
                            a.delivered_at.get_or_insert(*at);
                        }
                        ReceiptStatus::Read => {
                            a.read_at.get_or_insert(*at);
                        }
                        ReceiptStatus::Failed => {
                            a.failed_at.get_or_insert(*at);
                            a.error = error.clone();
                        }
                    }
                    a.late |= *late;
                    a.updated_at = *at;
                }
                // The attempt that delivered the message was read later: the message was read.
                if completed_by_this
                    && *status == ReceiptStatus::Read
                    && self.status == MessageStatus::Delivered
                {
                    self.status = MessageStatus::Read;
                }
            }
            MessageEvent::StepTimedOut { attempt_id, at, .. } => {
                if let Some(a) = attempt_id.and_then(|id| self.attempt_mut(id))
                    && matches!(
                        a.status,
                        AttemptStatus::Dispatching | AttemptStatus::Sent | AttemptStatus::InDoubt
                    )
                {
                    // Still dispatching: no answer was ever recorded (a worker died during the
                    // call, or the call outlived the step), so the provider may have it. The
                    // view says so, whether or not a worker came back to mark it in doubt first.
                    if a.status == AttemptStatus::Dispatching {
                        a.in_doubt_at.get_or_insert(*at);
                    }
                    a.status = AttemptStatus::TimedOut;
                    a.updated_at = *at;
                }
            }
            MessageEvent::MessageCompleted {
                status, attempt_id, ..
            } => {
                self.status = match status {
                    Completion::Delivered => MessageStatus::Delivered,
                    Completion::Read => MessageStatus::Read,
                };
                self.completed_by = Some(*attempt_id);
            }
            MessageEvent::MessageFailed { reason, .. } => {
                self.status = MessageStatus::Failed;
                self.reason = Some(reason.clone());
            }
            MessageEvent::MessageExpired { .. } => {
                self.status = MessageStatus::Expired;
                // Only the TTL ends a message that was never tried; its reason says so.
                self.reason = Some(if self.attempts.is_empty() {
                    "ttl_expired_before_dispatch".into()
                } else {
                    "ttl_expired".into()
                });
            }
            MessageEvent::MessageCancelled { .. } => {
                self.status = MessageStatus::Cancelled;
                self.reason = Some("cancelled".into());
            }
        }
    }

    fn start_step_clock(&mut self, step_index: usize, timeout_at: Option<DateTime<Utc>>) {
        if let (Some(step), Some(timeout_at)) = (self.current_step.as_mut(), timeout_at)
            && step.index == step_index
            && step.timeout_at.is_none()
        {
            step.timeout_at = Some(timeout_at);
        }
    }

    /// Whether the current step's clock runs (its first attempt was dispatched, or nothing could
    /// serve it). Until then the step waits for a worker, and its timeout cannot fire.
    pub fn step_clock_started(&self) -> bool {
        self.current_step
            .as_ref()
            .is_some_and(|s| s.timeout_at.is_some())
    }

    /// Whether the current step waits for the recipient's quiet hours to end.
    pub fn step_deferred(&self) -> bool {
        self.current_step
            .as_ref()
            .is_some_and(|s| s.deferred_until.is_some())
    }

    /// Whether `step_index` is the current step and has sent nothing yet: no attempt, no clock
    /// (only such a step waits out quiet hours; once sending, its retries and failovers go on).
    pub fn step_yet_to_send(&self, step_index: usize) -> bool {
        self.current_step_index() == Some(step_index)
            && !self.step_clock_started()
            && self.step_attempts(step_index).next().is_none()
    }

    /// When the step `step_index`, about to send its first attempt at `now`, may start instead,
    /// because its recipient is in the tenant's quiet hours; `None` when it may go now (a step
    /// already sending, a channel the window does not hold back, a number of no known country).
    pub fn quiet_hours_end(
        &self,
        step_index: usize,
        quiet: &QuietHours,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !self.step_yet_to_send(step_index) {
            return None;
        }
        let channel = self.step(step_index)?.channel;
        let country = self.spec.destination_country(channel)?;
        quiet.ends_at(channel, &country, now)
    }

    pub fn attempt(&self, id: AttemptId) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.id == id)
    }

    fn attempt_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.attempts.iter_mut().find(|a| a.id == id)
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    pub fn current_step_index(&self) -> Option<usize> {
        self.current_step.as_ref().map(|s| s.index)
    }

    pub fn step(&self, index: usize) -> Option<&CascadeStep> {
        self.spec.cascade.get(index)
    }

    /// Attempts made for one step, in order.
    pub fn step_attempts(&self, step_index: usize) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(move |a| a.step_index == step_index)
    }

    /// Providers already tried on a step, for routing its next attempt.
    pub fn providers_tried(&self, step_index: usize) -> Vec<&str> {
        self.step_attempts(step_index)
            .map(|a| a.provider.as_str())
            .collect()
    }

    /// The attempt the current step is waiting on, if any. At most one exists at any time.
    pub fn active_attempt(&self) -> Option<&Attempt> {
        if self.is_terminal() {
            return None;
        }
        let step = self.current_step_index()?;
        self.step_attempts(step).last().filter(|a| a.is_awaited())
    }

    /// Whether a receipt status meets the current step's `until` condition.
    pub fn meets_until(until: Until, status: AttemptStatus) -> bool {
        status.progress()
            >= match until {
                Until::Accepted => AttemptStatus::Sent.progress(),
                Until::Delivered => AttemptStatus::Delivered.progress(),
                Until::Read => AttemptStatus::Read.progress(),
            }
    }

    /// Whether a receipt would move the attempt forward (and is therefore not a duplicate).
    ///
    /// A receipt is recorded only when it moves the attempt strictly up [`AttemptStatus::rank`],
    /// so an attempt's status is monotone and one attempt records at most three receipts however
    /// often its callbacks are replayed (`failed → sent → failed → …` would otherwise grow the
    /// stream without bound). A failure after a send that was already refused adds nothing.
    pub(crate) fn receipt_moves_forward(attempt: &Attempt, receipt: ReceiptStatus) -> bool {
        let to: AttemptStatus = receipt.into();
        if to == AttemptStatus::Failed && attempt.status == AttemptStatus::Rejected {
            return false;
        }
        to.rank() > attempt.status.rank()
    }
}
