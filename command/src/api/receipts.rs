//! Provider-facing receipt intake: `POST /v1/webhooks/{provider}[/{message_id}/{attempt_id}]`.
//! The provider's adapter verifies the signature; nothing is recorded from an unverified call.

use super::CommandState;
use super::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use hermes_adapters::{CallbackError, CallbackRequest, Receipt};
use hermes_domain::message::MessageCommand;
use hermes_domain::{AttemptId, MessageId};
use hermes_infra::event_store::EventMetadata;
use hermes_infra::http::Problem;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackRecorded {
    /// Receipts in the callback that changed something (duplicates count as 0).
    pub recorded: usize,
}

/// A provider's callback for one attempt (the URL Hermes gave the provider at send).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}/{message_id}/{attempt_id}",
    tag = "provider callbacks",
    request_body(content = String, description = "The callback exactly as the provider sends it", content_type = "*/*"),
    params(
        ("provider" = String, Path, description = "Provider name"),
        ("message_id" = String, Path),
        ("attempt_id" = String, Path),
    ),
    responses(
        (status = 200, body = CallbackRecorded),
        (status = 401, description = "Signature missing or wrong; nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, message or attempt", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_attempt_callback(
    State(state): State<CommandState>,
    Path((provider, message_id, attempt_id)): Path<(String, String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallbackRecorded>, ApiError> {
    let ids = match (
        message_id.parse::<MessageId>(),
        attempt_id.parse::<AttemptId>(),
    ) {
        (Ok(m), Ok(a)) => Some((m, a)),
        _ => return Err(ApiError::NotFound("attempt")),
    };
    intake(&state, &provider, ids, &uri, headers, body).await
}

/// A provider's callback that carries its own correlation (e.g. notifications by topic).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    tag = "provider callbacks",
    request_body(content = String, description = "The callback exactly as the provider sends it", content_type = "*/*"),
    params(("provider" = String, Path, description = "Provider name")),
    responses(
        (status = 200, body = CallbackRecorded),
        (status = 401, description = "Signature missing or wrong; nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, message or attempt", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_callback(
    State(state): State<CommandState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallbackRecorded>, ApiError> {
    intake(&state, &provider, None, &uri, headers, body).await
}

async fn intake(
    state: &CommandState,
    provider_name: &str,
    ids: Option<(MessageId, AttemptId)>,
    uri: &axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallbackRecorded>, ApiError> {
    let provider = state
        .providers
        .get(provider_name)
        .ok_or_else(|| ApiError::UnknownProvider(provider_name.to_owned()))?;
    let request = CallbackRequest {
        ids,
        url: format!("{}{}", state.public_url.trim_end_matches('/'), uri),
        headers,
        body,
    };
    let receipts = provider.parse_callback(&request).inspect_err(|e| {
        let reason = match e {
            CallbackError::InvalidSignature => "invalid_signature",
            CallbackError::Malformed(_) => "malformed",
        };
        metrics::counter!("hermes_callbacks_refused_total", "provider" => provider_name.to_owned(), "reason" => reason)
            .increment(1);
    })?;
    let metadata = EventMetadata {
        actor: Some(format!("provider:{provider_name}")),
        ..Default::default()
    };
    let mut recorded = 0;
    for Receipt {
        message_id,
        attempt_id,
        status,
        provider_message_id,
        error,
    } in receipts
    {
        let command = MessageCommand::RecordReceipt {
            attempt_id,
            status,
            provider_message_id,
            error,
        };
        let done = state
            .handler
            .execute(message_id, None, &command, &metadata, None)
            .await?;
        recorded += usize::from(!done.events.is_empty());
    }
    Ok(Json(CallbackRecorded { recorded }))
}
