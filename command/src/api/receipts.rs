//! Provider-facing receipt intake: `POST /v1/webhooks/{account}[/{message_id}/{attempt_id}]`, and
//! `GET` on the same paths for subscription checks (WhatsApp's `hub.challenge`). The account's
//! plugin verifies the signature; nothing is recorded from an unverified call.

use super::CommandState;
use super::body;
use super::error::ApiError;
use crate::handler::CommandError;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hermes_adapters::{CallbackError, CallbackReply, CallbackRequest, Receipt};
use hermes_domain::message::MessageCommand;
use hermes_domain::{AttemptId, MessageId};
use hermes_infra::event_store::EventMetadata;
use hermes_infra::http::Problem;
use serde::Serialize;
use utoipa::ToSchema;

/// Largest callback accepted: providers' receipts are a few KB; an SNS notification is at most
/// 256 KB plus its envelope.
pub const MAX_CALLBACK_BYTES: usize = 1 << 20;

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
        (status = 413, description = "The body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_attempt_callback(
    State(state): State<CommandState>,
    Path((provider, message_id, attempt_id)): Path<(String, String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body::read_at_most(body, MAX_CALLBACK_BYTES).await?;
    let ids = match (
        message_id.parse::<MessageId>(),
        attempt_id.parse::<AttemptId>(),
    ) {
        (Ok(m), Ok(a)) => Some((m, a)),
        _ => return Err(ApiError::NotFound("attempt")),
    };
    intake(&state, &provider, Method::POST, ids, &uri, headers, body).await
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
        (status = 413, description = "The body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_callback(
    State(state): State<CommandState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body::read_at_most(body, MAX_CALLBACK_BYTES).await?;
    intake(&state, &provider, Method::POST, None, &uri, headers, body).await
}

/// A provider's subscription check (WhatsApp's `hub.mode=subscribe&hub.verify_token=...&
/// hub.challenge=...`): the account's plugin decides the answer.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{provider}",
    tag = "provider callbacks",
    params(("provider" = String, Path, description = "Provider name")),
    responses(
        (status = 200, description = "The check passed; the body is what the provider expects (e.g. the challenge)"),
        (status = 401, description = "The check failed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_callback(
    State(state): State<CommandState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    intake(
        &state,
        &provider,
        Method::GET,
        None,
        &uri,
        headers,
        Bytes::new(),
    )
    .await
}

async fn intake(
    state: &CommandState,
    provider_name: &str,
    method: Method,
    ids: Option<(MessageId, AttemptId)>,
    uri: &axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = state
        .providers
        .get(provider_name)
        .ok_or_else(|| ApiError::UnknownProvider(provider_name.to_owned()))?;
    let request = CallbackRequest {
        ids,
        method,
        url: format!("{}{}", state.public_url.trim_end_matches('/'), uri),
        headers,
        body,
    };
    let outcome = provider.parse_callback(&request).await.inspect_err(|e| {
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
    } in outcome.receipts
    {
        let command = MessageCommand::RecordReceipt {
            attempt_id,
            status,
            provider_message_id,
            error,
        };
        match state
            .handler
            .execute(message_id, None, &command, &metadata, None)
            .await
        {
            Ok(done) => recorded += usize::from(!done.events.is_empty()),
            // On an account-wide webhook, signed by the provider but about no message of ours
            // (another system sharing the account, or data already purged): answering 404 would
            // only make the provider retry it forever and lose the receipts for ours in the same
            // call. A per-attempt URL names its message, so there an unknown one is a 404.
            Err(CommandError::NotFound) if ids.is_none() => {
                tracing::info!(provider = provider_name, %message_id,
                    "receipt for a message Hermes does not know; skipped");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(match outcome.reply {
        Some(CallbackReply {
            status,
            content_type,
            body,
        }) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        None => Json(CallbackRecorded { recorded }).into_response(),
    })
}
