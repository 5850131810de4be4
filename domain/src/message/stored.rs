//! The stored form of message events: the JSON written to the event store (and shown, as is, by
//! the audit endpoint `GET /v1/messages/{id}/events`). Schema version 1.
//!
//! These types are not the domain's: [`MessageEvent`] and [`MessageSpec`] may change shape freely,
//! while a stored event never changes once written. Every conversion is spelled out here, so a
//! field renamed in the domain cannot silently rename a stored field (and decode every older
//! event's value as `None`). Decoding refuses unknown fields at every level: a payload that does
//! not fit is an error that parks the event, never a quiet loss of data. The golden fixtures in
//! `domain/tests/fixtures/events/` pin the JSON of every event type.
//!
//! A field added later is `Option` with `#[serde(default)]`, so the events stored before it
//! decode; a change of meaning gets a new schema version and an upcaster ([`super::events::upcast`]).
//! Vocabulary enums (channel, until, receipt status, completion) and ids keep their own serde
//! forms: they are strings and UUIDs whose spelling is the contract everywhere.

use crate::billing::AttemptCost;
use crate::channel::{Channel, Until};
use crate::enrichment::{Enrichment, StepEnrichment};
use crate::ids::{AttemptId, TenantId};
use crate::message::events::{AttemptError, Completion, MessageEvent, ReceiptStatus};
use crate::message::spec::{
    CascadeStep, Content, EmailContent, MessageSpec, PolicyRef, PushContent, Recipient, SmsContent,
    WhatsappContent, WhatsappTemplate,
};
use crate::routing::RouteRecord;
use crate::sms_segments::{SmsEncoding, SmsSegments};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One stored message event, tagged by `type` (the same name as the event store's `event_type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum EventPayload {
    MessageAccepted {
        tenant_id: TenantId,
        /// Boxed: the spec is large and every other event is small.
        spec: Box<SpecPayload>,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    StepStarted {
        step_index: usize,
        channel: Channel,
        until: Until,
        /// Only in steps stored before a step's clock started at its dispatch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    AttemptDispatched {
        attempt_id: AttemptId,
        step_index: usize,
        channel: Channel,
        provider: String,
        /// Absent in events stored before plugins were versioned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        served_by: Option<String>,
        /// Absent in events stored before the smart router.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<RouteRecord>,
        /// Absent when the account has no price for the destination, and in events stored
        /// before attempts were priced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<AttemptCost>,
        /// Absent on a step's later attempts and in events stored before the step clock moved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_timeout_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    StepUnserved {
        step_index: usize,
        timeout_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    StepDeferred {
        step_index: usize,
        until: DateTime<Utc>,
        reason: String,
        at: DateTime<Utc>,
    },
    StepResumed {
        step_index: usize,
        channel: Channel,
        at: DateTime<Utc>,
    },
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
        error: ErrorPayload,
        retryable: bool,
        failover: bool,
        /// Absent when no retry was planned, and in events stored before retries existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RetryDue {
        step_index: usize,
        after: AttemptId,
        at: DateTime<Utc>,
    },
    ReceiptRecorded {
        attempt_id: AttemptId,
        status: ReceiptStatus,
        provider_message_id: Option<String>,
        error: Option<ErrorPayload>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPayload {
    pub code: String,
    pub message: String,
}

/// What the tenant asked for, as stored in `MessageAccepted` (and in the read model's rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecPayload {
    pub to: RecipientPayload,
    pub content: ContentPayload,
    pub cascade: Vec<StepPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    /// Absent on messages that gave their steps (and on every message stored before policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade_policy: Option<PolicyRef>,
    /// Absent when no step was suppressed (and on every message stored before suppression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_steps: Vec<usize>,
    /// What layer 9 read off the message; absent on messages stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<EnrichmentPayload>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentPayload {
    pub steps: Vec<StepEnrichmentPayload>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepEnrichmentPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPartsPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_estimate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsPartsPayload {
    pub encoding: SmsEncodingPayload,
    pub units: usize,
    pub segments: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsEncodingPayload {
    Gsm7,
    Ucs2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPayload {
    pub channel: Channel,
    pub timeout_seconds: u32,
    pub until: Until,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<WhatsappPayload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsPayload {
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailPayload {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushPayload {
    pub title: Option<String>,
    pub body: Option<String>,
    pub data: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappPayload {
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplatePayload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatePayload {
    pub name: String,
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Value>>,
}

impl EventPayload {
    /// Decodes a stored event, upcasting older schema versions first.
    pub fn decode(
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<Self, serde_json::Error> {
        serde_json::from_value(super::events::upcast(event_type, schema_version, payload))
    }

    /// The stored JSON of a payload.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a payload is plain JSON data")
    }
}

// --- domain → stored ---------------------------------------------------------------------------

impl From<&MessageEvent> for EventPayload {
    fn from(e: &MessageEvent) -> Self {
        match e.clone() {
            MessageEvent::MessageAccepted {
                tenant_id,
                spec,
                expires_at,
                at,
            } => EventPayload::MessageAccepted {
                tenant_id,
                spec: Box::new(SpecPayload::from(*spec)),
                expires_at,
                at,
            },
            MessageEvent::StepStarted {
                step_index,
                channel,
                until,
                timeout_at,
                at,
            } => EventPayload::StepStarted {
                step_index,
                channel,
                until,
                timeout_at,
                at,
            },
            MessageEvent::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                cost,
                step_timeout_at,
                at,
            } => EventPayload::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                cost,
                step_timeout_at,
                at,
            },
            MessageEvent::StepUnserved {
                step_index,
                timeout_at,
                at,
            } => EventPayload::StepUnserved {
                step_index,
                timeout_at,
                at,
            },
            MessageEvent::StepDeferred {
                step_index,
                until,
                reason,
                at,
            } => EventPayload::StepDeferred {
                step_index,
                until,
                reason,
                at,
            },
            MessageEvent::StepResumed {
                step_index,
                channel,
                at,
            } => EventPayload::StepResumed {
                step_index,
                channel,
                at,
            },
            MessageEvent::AttemptInDoubt {
                attempt_id,
                reason,
                at,
            } => EventPayload::AttemptInDoubt {
                attempt_id,
                reason,
                at,
            },
            MessageEvent::AttemptSent {
                attempt_id,
                provider_message_id,
                at,
            } => EventPayload::AttemptSent {
                attempt_id,
                provider_message_id,
                at,
            },
            MessageEvent::AttemptRejected {
                attempt_id,
                error,
                retryable,
                failover,
                retry_at,
                at,
            } => EventPayload::AttemptRejected {
                attempt_id,
                error: error.into(),
                retryable,
                failover,
                retry_at,
                at,
            },
            MessageEvent::RetryDue {
                step_index,
                after,
                at,
            } => EventPayload::RetryDue {
                step_index,
                after,
                at,
            },
            MessageEvent::ReceiptRecorded {
                attempt_id,
                status,
                provider_message_id,
                error,
                late,
                at,
            } => EventPayload::ReceiptRecorded {
                attempt_id,
                status,
                provider_message_id,
                error: error.map(Into::into),
                late,
                at,
            },
            MessageEvent::StepTimedOut {
                step_index,
                attempt_id,
                at,
            } => EventPayload::StepTimedOut {
                step_index,
                attempt_id,
                at,
            },
            MessageEvent::MessageCompleted {
                status,
                attempt_id,
                at,
            } => EventPayload::MessageCompleted {
                status,
                attempt_id,
                at,
            },
            MessageEvent::MessageFailed { reason, at } => {
                EventPayload::MessageFailed { reason, at }
            }
            MessageEvent::MessageExpired { at } => EventPayload::MessageExpired { at },
            MessageEvent::MessageCancelled { at } => EventPayload::MessageCancelled { at },
        }
    }
}

impl From<AttemptError> for ErrorPayload {
    fn from(AttemptError { code, message }: AttemptError) -> Self {
        ErrorPayload { code, message }
    }
}

impl MessageSpec {
    /// What makes two messages the same for a tenant's duplicate window: the recipient and the
    /// content, in their stored form (which never changes meaning between versions), as bytes to
    /// hash. The cascade, reference, metadata and TTL do not count.
    pub fn dedup_key(&self) -> Vec<u8> {
        let SpecPayload { to, content, .. } = SpecPayload::from(self.clone());
        serde_json::to_vec(&(to, content)).expect("a payload always serializes")
    }
}

impl From<MessageSpec> for SpecPayload {
    fn from(s: MessageSpec) -> Self {
        SpecPayload {
            to: RecipientPayload {
                phone: s.to.phone,
                email: s.to.email,
                push_token: s.to.push_token,
                whatsapp: s.to.whatsapp,
            },
            content: s.content.into(),
            cascade: s
                .cascade
                .into_iter()
                .map(|c| StepPayload {
                    channel: c.channel,
                    timeout_seconds: c.timeout_seconds,
                    until: c.until,
                })
                .collect(),
            reference: s.reference,
            metadata: s.metadata,
            ttl_seconds: s.ttl_seconds,
            cascade_policy: s.cascade_policy,
            suppressed_steps: s.suppressed_steps,
            enrichment: s.enrichment.map(|e| EnrichmentPayload {
                steps: e
                    .steps
                    .into_iter()
                    .map(|step| StepEnrichmentPayload {
                        country: step.country,
                        sms: step.sms.map(|sms| SmsPartsPayload {
                            encoding: match sms.encoding {
                                SmsEncoding::Gsm7 => SmsEncodingPayload::Gsm7,
                                SmsEncoding::Ucs2 => SmsEncodingPayload::Ucs2,
                            },
                            units: sms.units,
                            segments: sms.segments,
                        }),
                        account: step.account,
                        route_reason: step.route_reason,
                        price_estimate: step.price_estimate,
                    })
                    .collect(),
            }),
        }
    }
}

impl From<Content> for ContentPayload {
    fn from(c: Content) -> Self {
        ContentPayload {
            text: c.text,
            sms: c.sms.map(|s| SmsPayload { text: s.text }),
            email: c.email.map(|e| EmailPayload {
                subject: e.subject,
                text: e.text,
                html: e.html,
            }),
            push: c.push.map(|p| PushPayload {
                title: p.title,
                body: p.body,
                data: p.data,
            }),
            whatsapp: c.whatsapp.map(|w| WhatsappPayload {
                text: w.text,
                template: w.template.map(|t| TemplatePayload {
                    name: t.name,
                    language: t.language,
                    components: t.components,
                }),
            }),
        }
    }
}

// --- stored → domain ---------------------------------------------------------------------------

impl From<EventPayload> for MessageEvent {
    fn from(p: EventPayload) -> Self {
        match p {
            EventPayload::MessageAccepted {
                tenant_id,
                spec,
                expires_at,
                at,
            } => MessageEvent::MessageAccepted {
                tenant_id,
                spec: Box::new((*spec).into()),
                expires_at,
                at,
            },
            EventPayload::StepStarted {
                step_index,
                channel,
                until,
                timeout_at,
                at,
            } => MessageEvent::StepStarted {
                step_index,
                channel,
                until,
                timeout_at,
                at,
            },
            EventPayload::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                cost,
                step_timeout_at,
                at,
            } => MessageEvent::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                cost,
                step_timeout_at,
                at,
            },
            EventPayload::StepUnserved {
                step_index,
                timeout_at,
                at,
            } => MessageEvent::StepUnserved {
                step_index,
                timeout_at,
                at,
            },
            EventPayload::StepDeferred {
                step_index,
                until,
                reason,
                at,
            } => MessageEvent::StepDeferred {
                step_index,
                until,
                reason,
                at,
            },
            EventPayload::StepResumed {
                step_index,
                channel,
                at,
            } => MessageEvent::StepResumed {
                step_index,
                channel,
                at,
            },
            EventPayload::AttemptInDoubt {
                attempt_id,
                reason,
                at,
            } => MessageEvent::AttemptInDoubt {
                attempt_id,
                reason,
                at,
            },
            EventPayload::AttemptSent {
                attempt_id,
                provider_message_id,
                at,
            } => MessageEvent::AttemptSent {
                attempt_id,
                provider_message_id,
                at,
            },
            EventPayload::AttemptRejected {
                attempt_id,
                error,
                retryable,
                failover,
                retry_at,
                at,
            } => MessageEvent::AttemptRejected {
                attempt_id,
                error: error.into(),
                retryable,
                failover,
                retry_at,
                at,
            },
            EventPayload::RetryDue {
                step_index,
                after,
                at,
            } => MessageEvent::RetryDue {
                step_index,
                after,
                at,
            },
            EventPayload::ReceiptRecorded {
                attempt_id,
                status,
                provider_message_id,
                error,
                late,
                at,
            } => MessageEvent::ReceiptRecorded {
                attempt_id,
                status,
                provider_message_id,
                error: error.map(Into::into),
                late,
                at,
            },
            EventPayload::StepTimedOut {
                step_index,
                attempt_id,
                at,
            } => MessageEvent::StepTimedOut {
                step_index,
                attempt_id,
                at,
            },
            EventPayload::MessageCompleted {
                status,
                attempt_id,
                at,
            } => MessageEvent::MessageCompleted {
                status,
                attempt_id,
                at,
            },
            EventPayload::MessageFailed { reason, at } => {
                MessageEvent::MessageFailed { reason, at }
            }
            EventPayload::MessageExpired { at } => MessageEvent::MessageExpired { at },
            EventPayload::MessageCancelled { at } => MessageEvent::MessageCancelled { at },
        }
    }
}

impl From<ErrorPayload> for AttemptError {
    fn from(ErrorPayload { code, message }: ErrorPayload) -> Self {
        AttemptError { code, message }
    }
}

impl From<SpecPayload> for MessageSpec {
    fn from(s: SpecPayload) -> Self {
        MessageSpec {
            to: Recipient {
                phone: s.to.phone,
                email: s.to.email,
                push_token: s.to.push_token,
                whatsapp: s.to.whatsapp,
            },
            content: s.content.into(),
            cascade: s
                .cascade
                .into_iter()
                .map(|c| CascadeStep {
                    channel: c.channel,
                    timeout_seconds: c.timeout_seconds,
                    until: c.until,
                })
                .collect(),
            reference: s.reference,
            metadata: s.metadata,
            ttl_seconds: s.ttl_seconds,
            cascade_policy: s.cascade_policy,
            suppressed_steps: s.suppressed_steps,
            enrichment: s.enrichment.map(|e| Enrichment {
                steps: e
                    .steps
                    .into_iter()
                    .map(|step| StepEnrichment {
                        country: step.country,
                        sms: step.sms.map(|sms| SmsSegments {
                            encoding: match sms.encoding {
                                SmsEncodingPayload::Gsm7 => SmsEncoding::Gsm7,
                                SmsEncodingPayload::Ucs2 => SmsEncoding::Ucs2,
                            },
                            units: sms.units,
                            segments: sms.segments,
                        }),
                        account: step.account,
                        route_reason: step.route_reason,
                        price_estimate: step.price_estimate,
                    })
                    .collect(),
            }),
        }
    }
}

impl From<ContentPayload> for Content {
    fn from(c: ContentPayload) -> Self {
        Content {
            text: c.text,
            sms: c.sms.map(|s| SmsContent { text: s.text }),
            email: c.email.map(|e| EmailContent {
                subject: e.subject,
                text: e.text,
                html: e.html,
            }),
            push: c.push.map(|p| PushContent {
                title: p.title,
                body: p.body,
                data: p.data,
            }),
            whatsapp: c.whatsapp.map(|w| WhatsappContent {
                text: w.text,
                template: w.template.map(|t| WhatsappTemplate {
                    name: t.name,
                    language: t.language,
                    components: t.components,
                }),
            }),
        }
    }
}
