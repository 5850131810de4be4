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
use hermes_domain::message::{DomainError, MessageCommand};
use hermes_domain::{AttemptId, MessageId};
use hermes_infra::event_store::{Cause, EventMetadata};
use hermes_infra::http::Problem;
use hermes_infra::{event_store, trace_context};
use serde::Serialize;
use tracing::Instrument;
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
        (status = 403, description = "A receipt is about another attempt than the URL names (`receipt_attempt_mismatch`) or about an attempt another provider account sent (`receipt_account_mismatch`) or about another provider message than the attempt's (`receipt_provider_id_mismatch`); nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, message or attempt", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No capacity to read the callback now (`busy`, see `Retry-After`); nothing recorded, the provider sends it again", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before sending again"))),
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
        (status = 403, description = "A receipt is about another attempt than the URL names (`receipt_attempt_mismatch`) or about an attempt another provider account sent (`receipt_account_mismatch`) or about another provider message than the attempt's (`receipt_provider_id_mismatch`); nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, message or attempt", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No capacity to read the callback now (`busy`, see `Retry-After`); nothing recorded, the provider sends it again", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before sending again"))),
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
        let reason = refusal_reason(e);
        metrics::counter!("hermes_callbacks_refused_total", "provider" => provider_name.to_owned(), "reason" => reason)
            .increment(1);
    })?;
    let refused = |reason: &'static str| {
        metrics::counter!("hermes_callbacks_refused_total", "provider" => provider_name.to_owned(), "reason" => reason)
            .increment(1);
    };
    // A per-attempt URL is the one Hermes gave the provider for that attempt: a receipt in it
    // about any other attempt (a captured receipt replayed onto another URL, a plugin bug) is
    // refused as a whole, before anything is recorded.
    if let Some((url_message, url_attempt)) = ids
        && let Some(other) = outcome
            .receipts
            .iter()
            .find(|r| (r.message_id, r.attempt_id) != (url_message, url_attempt))
    {
        refused("attempt_mismatch");
        tracing::warn!(provider = provider_name, url_message = %url_message, url_attempt = %url_attempt,
            receipt_message = %other.message_id, receipt_attempt = %other.attempt_id,
            "callback refused: its receipt is about another attempt than its URL");
        return Err(ApiError::ReceiptAttemptMismatch);
    }
    // Each attempt must have been sent by this account, and be the provider message the receipt
    // names (see `Message::check_receipt_binding`). With several receipts, every one is checked
    // before the first is recorded, so a refused callback records nothing (an attempt's account
    // and provider message id never change once set; the check is repeated as each is recorded).
    if outcome.receipts.len() > 1 {
        for r in &outcome.receipts {
            match check_binding(state, provider_name, r).await {
                Err(ApiError::Command(CommandError::NotFound)) if ids.is_none() => {}
                Err(e) => {
                    refused_for_binding(&e, refused);
                    return Err(e);
                }
                Ok(()) => {}
            }
        }
    }
    let actor = format!("provider:{provider_name}");
    let mut recorded = 0;
    for Receipt {
        message_id,
        attempt_id,
        status,
        provider_message_id,
        error,
    } in outcome.receipts
    {
        let span = receipt_span(state, message_id, attempt_id, provider_name, status).await;
        let metadata = EventMetadata {
            traceparent: trace_context::carried(&span, None),
            actor: Some(actor.clone()),
            cause: Some(Cause::Receipt {
                provider: provider_name.to_owned(),
                provider_message_id: provider_message_id.clone(),
                status: status.as_str().to_owned(),
            }),
            ..Default::default()
        };
        let command = MessageCommand::RecordReceipt {
            attempt_id,
            status,
            provider_message_id: provider_message_id.clone(),
            error,
        };
        let account = provider_name.to_owned();
        let executed = state
            .handler
            .execute_with(message_id, None, &metadata, None, move |m| {
                m.check_receipt_binding(attempt_id, &account, provider_message_id.as_deref())?;
                Ok(Some(command.clone()))
            })
            .instrument(span)
            .await;
        match executed {
            Ok(done) => {
                recorded += usize::from(done.is_some_and(|d| !d.events.is_empty()));
            }
            Err(
                e @ CommandError::Domain(
                    DomainError::ReceiptFromAnotherAccount { .. }
                    | DomainError::ReceiptForAnotherProviderMessage { .. },
                ),
            ) => {
                let e = ApiError::from(e);
                refused_for_binding(&e, refused);
                return Err(e);
            }
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

/// Whether a receipt may be recorded for the attempt it names (see
/// [`hermes_domain::message::Message::check_receipt_binding`]), without recording anything.
async fn check_binding(
    state: &CommandState,
    account: &str,
    receipt: &Receipt,
) -> Result<(), ApiError> {
    let account = account.to_owned();
    let attempt_id = receipt.attempt_id;
    let provider_message_id = receipt.provider_message_id.clone();
    state
        .handler
        .execute_with(
            receipt.message_id,
            None,
            &EventMetadata::default(),
            None,
            move |m| {
                m.check_receipt_binding(attempt_id, &account, provider_message_id.as_deref())?;
                Ok(None)
            },
        )
        .await?;
    Ok(())
}

fn refused_for_binding(e: &ApiError, refused: impl Fn(&'static str)) {
    match e {
        ApiError::Command(CommandError::Domain(DomainError::ReceiptFromAnotherAccount {
            attempt_id,
            account,
        })) => {
            refused("account_mismatch");
            tracing::warn!(%attempt_id, account = account.as_str(),
                "callback refused: its attempt was sent by another provider account");
        }
        ApiError::Command(CommandError::Domain(
            DomainError::ReceiptForAnotherProviderMessage {
                attempt_id,
                receipt,
                attempt,
            },
        )) => {
            refused("provider_id_mismatch");
            tracing::warn!(%attempt_id, receipt = receipt.as_str(), attempt = attempt.as_str(),
                "callback refused: its receipt is about another provider message than its attempt");
        }
        _ => {}
    }
}

/// A receipt's span, in its message's trace (under the message's latest traced event, usually
/// the dispatch that sent the attempt) and linked to the provider's request, which is a trace of
/// its own. [`tracing::Span::none`] while traces are not exported.
async fn receipt_span(
    state: &CommandState,
    message_id: MessageId,
    attempt_id: AttemptId,
    provider: &str,
    status: hermes_domain::message::ReceiptStatus,
) -> tracing::Span {
    if !trace_context::active() {
        return tracing::Span::none();
    }
    // Without it (a database error, a message traced before), the receipt starts a trace.
    let parent = event_store::latest_traceparent(
        state.handler.pool(),
        crate::handler::STREAM_TYPE,
        message_id.0,
    )
    .await
    .ok()
    .flatten();
    let span = trace_context::span_under(parent.as_deref(), || {
        tracing::info_span!(
            "receipt",
            otel.name = "receipt.record",
            trace_id = tracing::field::Empty,
            hermes.message_id = %message_id,
            hermes.attempt_id = %attempt_id,
            hermes.provider = provider,
            hermes.receipt_status = status.as_str(),
        )
    });
    trace_context::link(
        &span,
        trace_context::carried(&tracing::Span::current(), None).as_deref(),
    );
    span
}

/// A refused callback's `reason` label in the refusal counters.
pub(super) fn refusal_reason(error: &CallbackError) -> &'static str {
    match error {
        CallbackError::InvalidSignature => "invalid_signature",
        CallbackError::Malformed(_) => "malformed",
        CallbackError::Busy => "busy",
    }
}
