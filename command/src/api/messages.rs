//! `POST /v1/messages` and `POST /v1/messages/{id}/cancel`.

use super::CommandState;
use super::body::JsonBody;
use super::error::ApiError;
use super::rate_limits;
use super::send_request::SendMessageRequest;
use crate::handler::{AcceptRequest, ContentDedup, IdempotencyKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hermes_domain::enrichment::enrich;
use hermes_domain::message::{MessageCommand, MessageSpec};
use hermes_domain::routing::ProviderCandidate;
use hermes_domain::validation;
use hermes_domain::{Channel, MessageId, TenantId};
use hermes_infra::event_store::{Cause, EventMetadata};
use hermes_infra::http::{Problem, Tenant};
use hermes_infra::trace_context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Instant;
use utoipa::ToSchema;

const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageAccepted {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(example = "accepted")]
    pub status: String,
}

pub(super) fn trace_metadata(headers: &HeaderMap, tenant: &Tenant) -> EventMetadata {
    EventMetadata {
        // The request's span when traces are exported (a child of the client's), else the
        // client's own context as it came.
        traceparent: trace_context::carried(
            &tracing::Span::current(),
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(trace_context::valid),
        ),
        actor: Some(format!("tenant:{}", tenant.0)),
        cause: headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(|request_id| Cause::Request { request_id }),
        ..Default::default()
    }
}

/// The request's id, set by the server on every request it routes (whatever the client sent)
/// and answered in the response: the `cause` of the events the request wrote.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The accept path's stages, as `hermes_accept_layer_seconds` labels them.
#[derive(Clone, Copy)]
enum Layer {
    /// Layers 3 and 4 that need no tenant: the body's schema and its content.
    Schema,
    /// What the tenant's settings add: its SMS segment cap (4) and allowed countries (5).
    TenantRules,
    /// Layer 6, for tenants with a suppression list.
    Suppression,
    /// Layer 7.
    RateLimit,
    /// Layer 9: country, SMS parts, the route and its price, recorded with the message.
    Enrich,
    /// Layer 8 (the Idempotency-Key) and the commit that stores the message.
    DedupAndStore,
}

impl Layer {
    fn record(self, started: Instant) {
        let layer = match self {
            Layer::Schema => "schema",
            Layer::TenantRules => "tenant_rules",
            Layer::Suppression => "suppression",
            Layer::RateLimit => "rate_limit",
            Layer::Enrich => "enrich",
            Layer::DedupAndStore => "dedup_and_store",
        };
        metrics::histogram!("hermes_accept_layer_seconds", "layer" => layer)
            .record(started.elapsed().as_secs_f64());
    }
}

fn timed<T>(layer: Layer, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = run();
    layer.record(started);
    out
}

/// The pipeline's layers after auth and tenant that need no I/O (see README "The validation
/// pipeline"): the tenant's cascade policy put in place, the schema and content, then what the
/// tenant's settings add; each timed in `hermes_accept_layer_seconds{layer}`. Layer 9's
/// enrichment, which refuses nothing, is read before the tenant's rules, which then take its
/// country and SMS parts rather than reading the number and counting the text again.
pub(super) fn checked_spec(
    tenant: &Tenant,
    candidates: &[ProviderCandidate],
    request: SendMessageRequest,
) -> Result<MessageSpec, ApiError> {
    let mut draft = request.into_draft();
    let policy = validation::resolve_cascade_policy(&mut draft, &tenant.1.settings);
    let mut spec =
        timed(Layer::Schema, || validation::validate(draft)).map_err(ApiError::Validation)?;
    spec.cascade_policy = policy;
    spec.enrichment = Some(timed(Layer::Enrich, || {
        enrich(tenant.0, &spec, candidates, &tenant.1.settings.routing)
    }));
    timed(Layer::TenantRules, || {
        validation::validate_for_tenant(&spec, &tenant.1.settings)
    })
    .map_err(ApiError::Validation)?;
    Ok(spec)
}

/// Layer 6: the steps whose address is on the tenant's suppression list are skipped (recorded
/// in the spec, so in `MessageAccepted`); a message with no step left is refused.
pub(super) async fn skip_suppressed(
    state: &CommandState,
    tenant: &Tenant,
    spec: &mut MessageSpec,
) -> Result<(), ApiError> {
    if !tenant.1.has_suppressions {
        return Ok(());
    }
    let started = Instant::now();
    let suppressed = state.suppressions.suppressed_steps(tenant.0, spec).await;
    Layer::Suppression.record(started);
    let suppressed = suppressed.map_err(|e| ApiError::Command(e.into()))?;
    if suppressed.len() == spec.cascade.len() {
        let listed: Vec<String> = spec.cascade.iter().map(|s| s.channel.to_string()).collect();
        return Err(ApiError::RecipientSuppressed(listed.join(", ")));
    }
    spec.suppressed_steps = suppressed;
    Ok(())
}

/// The message's fingerprint for the tenant's duplicate window, when it has one.
pub(super) fn content_dedup(tenant: &Tenant, spec: &MessageSpec) -> Option<ContentDedup> {
    let window_seconds = tenant.1.settings.dedup_window_seconds?;
    Some(ContentDedup {
        fingerprint: Sha256::digest(spec.dedup_key()).to_vec(),
        window_seconds,
    })
}

/// Some provider account serves every channel of the cascade (`channel_unavailable` if not).
pub(super) fn every_channel_served(
    candidates: &[ProviderCandidate],
    tenant: TenantId,
    spec: &MessageSpec,
) -> Result<(), ApiError> {
    let served = |channel: Channel| {
        candidates
            .iter()
            .any(|c| c.serves_tenant(Some(tenant)) && c.channels.contains(&channel))
    };
    match spec.cascade.iter().find(|s| !served(s.channel)) {
        Some(step) => Err(ApiError::ChannelUnavailable(step.channel.to_string())),
        None => Ok(()),
    }
}

/// Accept a message for delivery. The cascade runs in the background; follow it with
/// `GET /v1/messages/{id}`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = SendMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([\\t -~]*[!-~])?$",
        description = "Same key and body within 24 h: the same answer; same key, other body: 409")),
    responses(
        (status = 202, description = "Accepted", body = MessageAccepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used with another body (`idempotency_key_reused`), or, by the tenant's `dedup_window_seconds`, a message to this recipient with this content was accepted within the window (`duplicate_content`, `Location` names it)", body = Problem, content_type = "application/problem+json",
            headers(("Location" = String, description = "With `duplicate_content`: the message this one duplicates"))),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request; also, by the tenant's settings (not in this schema), `too_many_segments` when the SMS a step would send takes more segments than `max_sms_segments` allows, `country_not_allowed` when a phone step's number is in a country outside `allowed_countries`, and `recipient_suppressed` when every step's address is on the tenant's suppression list", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit (`rate_limit`, or a channel's in `channel_rate_limits`) is reached (code `rate_limited`); nothing was accepted", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until one more message fits"))),
        (status = 503, description = "Overloaded (code `overloaded`, see `Retry-After`): accepted messages wait too long for their dispatch", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("api_key" = []))
)]
pub async fn send_message(
    State(state): State<CommandState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: JsonBody<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| ApiError::InvalidIdempotencyKey("it must be printable ASCII"))?;
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(ApiError::InvalidIdempotencyKey(
                    "it must be 1 to 255 characters",
                ));
            }
            Some(IdempotencyKey {
                key: key.to_owned(),
                request_hash: Sha256::digest(&body.canonical).to_vec(),
            })
        }
    };
    // Refused before anything else is done: the cheapest answer while the workers catch up.
    state.backlog.admit().map_err(ApiError::Overloaded)?;
    let candidates = state.providers.candidates();
    let mut spec = checked_spec(&tenant, &candidates, body.value)?;
    skip_suppressed(&state, &tenant, &mut spec).await?;
    let started = Instant::now();
    let admitted =
        rate_limits::admit(&state.rate_limiter, tenant.0, &tenant.1.settings, &spec).await;
    Layer::RateLimit.record(started);
    admitted.map_err(ApiError::RateLimited)?;
    every_channel_served(&candidates, tenant.0, &spec)?;
    let dedup = content_dedup(&tenant, &spec);
    let started = Instant::now();
    let accepted = state
        .accepts
        .accept(AcceptRequest {
            tenant_id: tenant.0,
            spec,
            idempotency,
            dedup,
            metadata: trace_metadata(&headers, &tenant),
        })
        .await;
    Layer::DedupAndStore.record(started);
    let accepted = accepted?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(MessageAccepted {
            id: accepted.message_id,
            status: "accepted".into(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/messages/{}", accepted.message_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageCancelled {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(example = "cancelled")]
    pub status: String,
}

/// Stop a message's cascade. An attempt already with a provider may still arrive; its receipt
/// is recorded as late.
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/cancel",
    tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled (or already cancelled)", body = MessageCancelled),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The message already ended", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel_message(
    State(state): State<CommandState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MessageCancelled>, ApiError> {
    let id: MessageId = id.parse().map_err(|_| ApiError::NotFound("message"))?;
    state
        .handler
        .execute(
            id,
            Some(tenant.0),
            &MessageCommand::Cancel,
            &trace_metadata(&headers, &tenant),
            None,
        )
        .await?;
    Ok(Json(MessageCancelled {
        id,
        status: "cancelled".into(),
    }))
}
