//! The API's view of a message: the shape clients code against (see ARCHITECTURE.md).

use chrono::{DateTime, Utc};
use hermes_domain::enrichment::Enrichment;
use hermes_domain::message::{
    Attempt, AttemptError, AttemptStatus, Message, MessageStatus, Recipient,
};
use hermes_domain::{Channel, Until};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The addresses the message was sent to, one per channel it uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Recipient)]
pub struct RecipientView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<String>,
}

impl From<Recipient> for RecipientView {
    fn from(r: Recipient) -> Self {
        RecipientView {
            phone: r.phone,
            email: r.email,
            push_token: r.push_token,
            whatsapp: r.whatsapp,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub channel: Channel,
    pub timeout_seconds: u32,
    pub until: Until,
}

/// Layer 9 of the accept pipeline, as recorded with the message when it was accepted: what
/// `POST /v1/messages/preview` answers, kept. The route is the router's answer at accept; each
/// attempt's `provider` is where the dispatch actually went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrichmentView {
    /// The sum of the steps' price estimates (absent when no step's account has a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_estimate: Option<f64>,
    /// One entry per step of `cascade`, in its order.
    pub steps: Vec<StepEnrichmentView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepEnrichmentView {
    /// The recipient's country (ISO 3166-1 alpha-2), for SMS and WhatsApp steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "US")]
    pub country: Option<String>,
    /// For SMS steps: the parts the text is sent in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPartsView>,
    /// The provider account the router picked at accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Why that account: `first_usable`, `cheapest`, `weighted`, `probe` or `every_circuit_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reason: Option<String>,
    /// The account's price for the destination times the message units (SMS segments; one on
    /// other channels), when the account has a price table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_estimate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SmsPartsView {
    /// `gsm7` or `ucs2`.
    #[schema(example = "gsm7")]
    pub encoding: String,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    pub segments: usize,
}

impl From<Enrichment> for EnrichmentView {
    fn from(e: Enrichment) -> Self {
        EnrichmentView {
            price_estimate: e.price_estimate(),
            steps: e
                .steps
                .into_iter()
                .map(|s| StepEnrichmentView {
                    country: s.country,
                    sms: s.sms.map(|p| SmsPartsView {
                        encoding: p.encoding.as_str().to_owned(),
                        units: p.units,
                        segments: p.segments,
                    }),
                    account: s.account,
                    route_reason: s.route_reason,
                    price_estimate: s.price_estimate,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CurrentStepView {
    /// Index into `cascade`, from 0.
    pub index: usize,
    pub channel: Channel,
    pub started_at: DateTime<Utc>,
    /// When the step times out: `null` until its first attempt is dispatched, since a step's
    /// timeout counts from its dispatch (time spent waiting for a worker never consumes it).
    pub timeout_at: Option<DateTime<Utc>>,
    /// When the step waits for the recipient's quiet hours (the tenant's `quiet_hours`) to end:
    /// nothing is sent before then. `null` when it does not wait.
    pub deferred_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub id: Uuid,
    pub step_index: usize,
    pub channel: Channel,
    pub provider: String,
    pub provider_message_id: Option<String>,
    pub status: AttemptStatus,
    /// A receipt came after the cascade had moved on from this attempt: it may have been
    /// delivered (and charged) although another step was tried.
    pub late: bool,
    pub error: Option<ErrorView>,
    pub dispatched_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// When Hermes put the attempt in doubt (it could not know whether the provider got it), or
    /// when its step timed out while it was still dispatching; kept after a receipt or the
    /// step's timeout settled it.
    pub in_doubt_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub status: MessageStatus,
    /// Why the message failed, expired or was cancelled (`exhausted`, `ttl_expired`,
    /// `ttl_expired_before_dispatch` when nothing was ever sent, `cancelled`).
    pub reason: Option<String>,
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub to: RecipientView,
    pub cascade: Vec<StepView>,
    /// What the accept pipeline's last layer read off the message: per step the country, the
    /// SMS parts, the route and its price. `null` for messages accepted before it was recorded.
    pub enrichment: Option<EnrichmentView>,
    pub current_step: Option<CurrentStepView>,
    /// Every attempt, in the order they were made.
    pub attempts: Vec<AttemptView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let current_step = m.current_step.as_ref().map(|s| CurrentStepView {
            index: s.index,
            channel: m.spec.cascade[s.index].channel,
            started_at: s.started_at,
            timeout_at: s.timeout_at,
            deferred_until: s.deferred_until,
        });
        MessageView {
            id: m.id.0,
            status: m.status,
            reason: m.reason,
            reference: m.spec.reference,
            metadata: m.spec.metadata,
            to: m.spec.to.into(),
            cascade: m
                .spec
                .cascade
                .iter()
                .map(|s| StepView {
                    channel: s.channel,
                    timeout_seconds: s.timeout_seconds,
                    until: s.until,
                })
                .collect(),
            enrichment: m.spec.enrichment.map(EnrichmentView::from),
            current_step,
            attempts: m.attempts.into_iter().map(AttemptView::from).collect(),
            created_at: m.accepted_at,
            updated_at: m.updated_at,
            expires_at: m.expires_at,
        }
    }
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            id: a.id.0,
            step_index: a.step_index,
            channel: a.channel,
            provider: a.provider,
            provider_message_id: a.provider_message_id,
            status: a.status,
            late: a.late,
            error: a
                .error
                .map(|AttemptError { code, message }| ErrorView { code, message }),
            dispatched_at: a.dispatched_at,
            sent_at: a.sent_at,
            delivered_at: a.delivered_at,
            read_at: a.read_at,
            failed_at: a.failed_at,
            in_doubt_at: a.in_doubt_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub data: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The event's id: what a later event's `cause` of type `event` names.
    pub id: Uuid,
    /// Global position in the event log.
    pub position: i64,
    /// 1 for the message's first event, then 2, 3...
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// correlation_id, causation_id, traceparent, actor, and `cause`: what made it happen, by
    /// `type`: `request` (`request_id`, the response's `X-Request-Id`), `timer` (`timer`,
    /// `timer_id`), `receipt` (`provider`, `provider_message_id`, `status`), `status_lookup`
    /// (`provider`, `status`) or `event` (`event_id`, `event_type`: the event the saga acted on).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventView>,
}
