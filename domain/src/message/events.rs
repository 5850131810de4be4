//! The facts a message records. Events are never changed once written: their stored JSON is
//! [`super::stored::EventPayload`], converted explicitly from and to these; a new stored shape gets
//! a new `schema_version` and an upcaster in [`upcast`].

use crate::billing::AttemptCost;
use crate::channel::{Channel, Until};
use crate::ids::{AttemptId, TenantId};
use crate::message::spec::MessageSpec;
use crate::message::stored::EventPayload;
use crate::routing::RouteRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why an attempt or a message did not succeed, as the provider or Hermes said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    pub code: String,
    pub message: String,
}

impl AttemptError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A provider's delivery receipt, normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl ReceiptStatus {
    /// As it is written in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Sent => "sent",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
            ReceiptStatus::Failed => "failed",
        }
    }
}

/// Terminal outcome of a successful cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    Delivered,
    Read,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageEvent {
    MessageAccepted {
        tenant_id: TenantId,
        /// Boxed: the spec is large and every other event is small.
        spec: Box<MessageSpec>,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    StepStarted {
        step_index: usize,
        channel: Channel,
        until: Until,
        /// When the step times out. Only on steps started before a step's clock started at its
        /// dispatch: a step's timeout now comes with its first dispatch (`step_timeout_at` of
        /// [`MessageEvent::AttemptDispatched`]) or with [`MessageEvent::StepUnserved`], so that
        /// time spent waiting for a worker never consumes it.
        timeout_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Written *before* the provider is called: if the outcome never follows, the attempt is in doubt.
    AttemptDispatched {
        attempt_id: AttemptId,
        step_index: usize,
        channel: Channel,
        provider: String,
        /// What served the attempt: the provider plugin and its version (`twilio@0.1.0`). Absent
        /// in events written before plugins were versioned.
        served_by: Option<String>,
        /// Why the router chose this account: the candidates it saw (circuit, success rate,
        /// price), the strategy and the rule. Absent in events written before the smart router,
        /// and on a dispatch made again after a restart (no choice was made).
        route: Option<RouteRecord>,
        /// What the attempt costs by the account's price table (units × price for the
        /// destination); absent when the account has no price for it, and in older events.
        cost: Option<AttemptCost>,
        /// The step's first dispatch starts its clock: when the step times out. Absent on later
        /// attempts of the step (failovers share the step's time) and in older events.
        step_timeout_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// No provider account could serve the step's channel when the step's turn came: nothing was
    /// sent, and the step's clock starts here, so its timeout moves the cascade on.
    StepUnserved {
        step_index: usize,
        timeout_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The step's turn came in the recipient's quiet hours (the tenant's `quiet_hours`): nothing
    /// is sent, and the step's clock does not run, until `until`, when it resumes.
    StepDeferred {
        step_index: usize,
        until: DateTime<Utc>,
        /// Why: `quiet_hours`.
        reason: String,
        at: DateTime<Utc>,
    },
    /// A deferred step's wait is over: the saga dispatches it as if it had just started.
    StepResumed {
        step_index: usize,
        channel: Channel,
        at: DateTime<Utc>,
    },
    /// We cannot know whether the provider got the request (crash or timeout after it left).
    /// Never re-sent; resolved by a receipt or by the step timeout.
    AttemptInDoubt {
        attempt_id: AttemptId,
        reason: String,
        at: DateTime<Utc>,
    },
    AttemptSent {
        attempt_id: AttemptId,
        provider_message_id: Option<String>,
        at: DateTime<Utc>,
    },
    AttemptRejected {
        attempt_id: AttemptId,
        error: AttemptError,
        retryable: bool,
        /// Another provider of the same channel will be tried for this step.
        failover: bool,
        /// A retryable refusal with no other account to fail over to: the step tries again at
        /// this time (backoff with jitter), within its own time.
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The retry a rejection planned is due: the saga dispatches the step again, on any account.
    RetryDue {
        step_index: usize,
        /// The rejected attempt this retries.
        after: AttemptId,
        at: DateTime<Utc>,
    },
    ReceiptRecorded {
        attempt_id: AttemptId,
        status: ReceiptStatus,
        provider_message_id: Option<String>,
        error: Option<AttemptError>,
        /// The cascade had already moved past this attempt: the tenant may have been charged twice.
        late: bool,
        at: DateTime<Utc>,
    },
    StepTimedOut {
        step_index: usize,
        attempt_id: Option<AttemptId>,
        at: DateTime<Utc>,
    },
    MessageCompleted {
        status: Completion,
        attempt_id: AttemptId,
        at: DateTime<Utc>,
    },
    MessageFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    MessageExpired {
        at: DateTime<Utc>,
    },
    MessageCancelled {
        at: DateTime<Utc>,
    },
}

/// Current schema version of every message event.
pub const SCHEMA_VERSION: i32 = 1;

impl MessageEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            MessageEvent::MessageAccepted { .. } => "MessageAccepted",
            MessageEvent::StepStarted { .. } => "StepStarted",
            MessageEvent::AttemptDispatched { .. } => "AttemptDispatched",
            MessageEvent::StepUnserved { .. } => "StepUnserved",
            MessageEvent::StepDeferred { .. } => "StepDeferred",
            MessageEvent::StepResumed { .. } => "StepResumed",
            MessageEvent::AttemptInDoubt { .. } => "AttemptInDoubt",
            MessageEvent::AttemptSent { .. } => "AttemptSent",
            MessageEvent::AttemptRejected { .. } => "AttemptRejected",
            MessageEvent::RetryDue { .. } => "RetryDue",
            MessageEvent::ReceiptRecorded { .. } => "ReceiptRecorded",
            MessageEvent::StepTimedOut { .. } => "StepTimedOut",
            MessageEvent::MessageCompleted { .. } => "MessageCompleted",
            MessageEvent::MessageFailed { .. } => "MessageFailed",
            MessageEvent::MessageExpired { .. } => "MessageExpired",
            MessageEvent::MessageCancelled { .. } => "MessageCancelled",
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            MessageEvent::MessageAccepted { at, .. }
            | MessageEvent::StepStarted { at, .. }
            | MessageEvent::AttemptDispatched { at, .. }
            | MessageEvent::StepUnserved { at, .. }
            | MessageEvent::StepDeferred { at, .. }
            | MessageEvent::StepResumed { at, .. }
            | MessageEvent::AttemptInDoubt { at, .. }
            | MessageEvent::AttemptSent { at, .. }
            | MessageEvent::AttemptRejected { at, .. }
            | MessageEvent::RetryDue { at, .. }
            | MessageEvent::ReceiptRecorded { at, .. }
            | MessageEvent::StepTimedOut { at, .. }
            | MessageEvent::MessageCompleted { at, .. }
            | MessageEvent::MessageFailed { at, .. }
            | MessageEvent::MessageExpired { at }
            | MessageEvent::MessageCancelled { at } => *at,
        }
    }

    /// Ends the message: nothing is dispatched after one of these.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            MessageEvent::MessageCompleted { .. }
                | MessageEvent::MessageFailed { .. }
                | MessageEvent::MessageExpired { .. }
                | MessageEvent::MessageCancelled { .. }
        )
    }

    /// Decodes a stored event, upcasting older schema versions first.
    pub fn from_stored(
        event_type: &str,
        schema_version: i32,
        payload: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        EventPayload::decode(event_type, schema_version, payload).map(Self::from)
    }

    /// The stored JSON of this event (schema version [`SCHEMA_VERSION`]).
    pub fn to_payload(&self) -> serde_json::Value {
        EventPayload::from(self).to_json()
    }
}

/// Turns an event stored under an older schema version into the current shape.
///
/// Version 1 is the only version so far, so this is the identity; when an event's shape changes,
/// bump [`SCHEMA_VERSION`] and add a `(event_type, old_version)` arm that rewrites the JSON.
pub fn upcast(
    _event_type: &str,
    _schema_version: i32,
    payload: serde_json::Value,
) -> serde_json::Value {
    payload
}
