//! `POST /v1/messages/preview`: what `POST /v1/messages` would do with this request, without
//! doing it. The same layers refuse with the same codes (auth, tenant, schema, content,
//! compliance, channels served); an accepted request answers layer 9's enrichment
//! ([`hermes_domain::enrichment`]), the same a send records: per step, the account the router
//! would pick now, the recipient's country, and for SMS the segments it takes. Nothing is stored,
//! nothing is sent, and the tenant's rate limits are neither checked nor spent.

use super::CommandState;
use super::body::JsonBody;
use super::error::ApiError;
use super::messages::{checked_spec, content_dedup, every_channel_served, skip_suppressed};
use super::send_request::SendMessageRequest;
use crate::handler::CommandError;
use axum::Json;
use axum::extract::State;
use hermes_domain::enrichment::Enrichment;
use hermes_domain::message::MessageSpec;
use hermes_domain::sms_segments::SmsSegments;
use hermes_domain::{Channel, Until};
use hermes_infra::content_dedup;
use hermes_infra::http::{Problem, Tenant};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePreview {
    /// The steps the message would run, in order.
    pub steps: Vec<StepPreview>,
    /// The sum of the steps' price estimates: the message's price if each step is sent once
    /// (absent when no step's account has a price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_estimate: Option<f64>,
    /// The tenant's cascade policy the steps come from, when the request named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade_policy: Option<PolicyPreview>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyPreview {
    pub name: String,
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepPreview {
    pub channel: Channel,
    pub timeout_seconds: u32,
    pub until: Until,
    /// The recipient's address for this channel is on the tenant's suppression list: the step
    /// would be skipped.
    pub suppressed: bool,
    /// The provider account the router would pick for the step's first attempt now, under the
    /// tenant's routing rule for the channel (by default the first account of the channel whose
    /// circuit is closed, in priority order; another when it fails over).
    pub account: Option<String>,
    /// Why that account: `first_usable`, `cheapest`, `weighted`, `probe` or
    /// `every_circuit_open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "cheapest")]
    pub route_reason: Option<String>,
    /// The account's price for the destination times the message units (SMS segments; one on
    /// other channels), when the account has a price table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_estimate: Option<f64>,
    /// The recipient's country (ISO 3166-1 alpha-2), for SMS and WhatsApp steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// For SMS steps: the parts the text is sent in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPreview>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SmsPreview {
    /// `gsm7` or `ucs2`.
    #[schema(example = "gsm7")]
    pub encoding: &'static str,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    pub segments: usize,
}

impl From<SmsSegments> for SmsPreview {
    fn from(s: SmsSegments) -> Self {
        SmsPreview {
            encoding: s.encoding.as_str(),
            units: s.units,
            segments: s.segments,
        }
    }
}

/// Preview a message: what `POST /v1/messages` would accept and how it would route it, without
/// storing or sending anything (and without spending the tenant's rate limits).
#[utoipa::path(
    post,
    path = "/v1/messages/preview",
    tag = "messages",
    request_body = SendMessageRequest,
    responses(
        (status = 200, description = "The message would be accepted; how it would go", body = MessagePreview),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A message to this recipient with this content was accepted within the tenant's duplicate window (`duplicate_content`, `Location` names it)", body = Problem, content_type = "application/problem+json",
            headers(("Location" = String, description = "The message this one would duplicate"))),
        (status = 422, description = "The message would be refused, with the code `POST /v1/messages` would answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn preview_message(
    State(state): State<CommandState>,
    tenant: Tenant,
    body: JsonBody<SendMessageRequest>,
) -> Result<Json<MessagePreview>, ApiError> {
    let candidates = state.providers.candidates();
    let mut spec = checked_spec(&tenant, &candidates, body.value)?;
    skip_suppressed(&state, &tenant, &mut spec).await?;
    every_channel_served(&candidates, tenant.0, &spec)?;
    if let Some(dedup) = content_dedup(&tenant, &spec)
        && let Some(first) =
            content_dedup::holder(state.handler.pool(), tenant.0.0, &dedup.fingerprint)
                .await
                .map_err(|e| ApiError::Command(e.into()))?
    {
        return Err(ApiError::Command(CommandError::DuplicateContent(
            hermes_domain::MessageId(first),
        )));
    }
    Ok(Json(preview(&spec)))
}

/// The preview of a checked spec: its steps with what layer 9 read off them.
fn preview(spec: &MessageSpec) -> MessagePreview {
    let enrichment = spec.enrichment.as_ref();
    MessagePreview {
        price_estimate: enrichment.and_then(Enrichment::price_estimate),
        steps: spec
            .cascade
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let found = enrichment
                    .and_then(|e| e.steps.get(i))
                    .cloned()
                    .unwrap_or_default();
                StepPreview {
                    suppressed: spec.suppressed_steps.contains(&i),
                    channel: step.channel,
                    timeout_seconds: step.timeout_seconds,
                    until: step.until,
                    route_reason: found.route_reason,
                    account: found.account,
                    country: found.country,
                    price_estimate: found.price_estimate,
                    sms: found.sms.map(SmsPreview::from),
                }
            })
            .collect(),
        cascade_policy: spec.cascade_policy.as_ref().map(|p| PolicyPreview {
            name: p.name.clone(),
            version: p.version,
        }),
    }
}
