//! The `state` column of a `message_views` row: a message's folded state as JSON.
//!
//! Its own type, converted explicitly from and to the domain's [`Message`], so that reshaping the
//! aggregate never reshapes stored rows by accident. The spec inside it is the events' stored
//! spec ([`SpecPayload`]): both are stored forms of the same request.
//!
//! Unlike stored events, a row tolerates fields it does not know: rows are derived data, and
//! during a rolling upgrade a newer projector may write rows an older API process reads. Fields
//! added after the first rows were written are `#[serde(default)]`; `hermes replay
//! message-views` rebuilds every row in the current shape.

use chrono::{DateTime, Utc};
use hermes_domain::message::state::CurrentStep;
use hermes_domain::message::stored::{ErrorPayload, SpecPayload};
use hermes_domain::message::{Attempt, AttemptStatus, Message, MessageStatus};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: MessageId,
    pub tenant_id: TenantId,
    /// The stream version of the last event folded in.
    pub version: u64,
    pub spec: SpecPayload,
    pub status: MessageStatus,
    pub current_step: Option<CurrentStepRow>,
    pub attempts: Vec<AttemptRow>,
    pub completed_by: Option<AttemptId>,
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentStepRow {
    pub index: usize,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub timeout_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    pub id: AttemptId,
    pub step_index: usize,
    pub channel: Channel,
    pub provider: String,
    pub status: AttemptStatus,
    pub provider_message_id: Option<String>,
    pub error: Option<ErrorPayload>,
    pub late: bool,
    pub dispatched_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub in_doubt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub retried: bool,
    pub updated_at: DateTime<Utc>,
}

impl From<&Message> for MessageRow {
    fn from(m: &Message) -> Self {
        MessageRow {
            id: m.id,
            tenant_id: m.tenant_id,
            version: m.version,
            spec: m.spec.clone().into(),
            status: m.status,
            current_step: m.current_step.as_ref().map(|s| CurrentStepRow {
                index: s.index,
                started_at: s.started_at,
                timeout_at: s.timeout_at,
                deferred_until: s.deferred_until,
            }),
            attempts: m.attempts.iter().cloned().map(AttemptRow::from).collect(),
            completed_by: m.completed_by,
            reason: m.reason.clone(),
            expires_at: m.expires_at,
            accepted_at: m.accepted_at,
            updated_at: m.updated_at,
        }
    }
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: r.id,
            tenant_id: r.tenant_id,
            version: r.version,
            spec: r.spec.into(),
            status: r.status,
            current_step: r.current_step.map(|s| CurrentStep {
                index: s.index,
                started_at: s.started_at,
                timeout_at: s.timeout_at,
                deferred_until: s.deferred_until,
            }),
            attempts: r.attempts.into_iter().map(Attempt::from).collect(),
            completed_by: r.completed_by,
            reason: r.reason,
            expires_at: r.expires_at,
            accepted_at: r.accepted_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<Attempt> for AttemptRow {
    fn from(a: Attempt) -> Self {
        AttemptRow {
            id: a.id,
            step_index: a.step_index,
            channel: a.channel,
            provider: a.provider,
            status: a.status,
            provider_message_id: a.provider_message_id,
            error: a.error.map(Into::into),
            late: a.late,
            dispatched_at: a.dispatched_at,
            sent_at: a.sent_at,
            delivered_at: a.delivered_at,
            read_at: a.read_at,
            failed_at: a.failed_at,
            in_doubt_at: a.in_doubt_at,
            retry_at: a.retry_at,
            retried: a.retried,
            updated_at: a.updated_at,
        }
    }
}

impl From<AttemptRow> for Attempt {
    fn from(a: AttemptRow) -> Self {
        Attempt {
            id: a.id,
            step_index: a.step_index,
            channel: a.channel,
            provider: a.provider,
            status: a.status,
            provider_message_id: a.provider_message_id,
            error: a.error.map(Into::into),
            late: a.late,
            dispatched_at: a.dispatched_at,
            sent_at: a.sent_at,
            delivered_at: a.delivered_at,
            read_at: a.read_at,
            failed_at: a.failed_at,
            in_doubt_at: a.in_doubt_at,
            retry_at: a.retry_at,
            retried: a.retried,
            updated_at: a.updated_at,
        }
    }
}
