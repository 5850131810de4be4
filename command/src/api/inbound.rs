//! Provider-facing inbound messages: `POST` (and `GET`) `/v1/inbound/{account}`, the webhook a
//! provider calls with what recipients send to the account's number. The account's plugin
//! verifies the signature and normalizes the messages (`parse-inbound`); Hermes reads each for an
//! opt-out or opt-in keyword (`hermes_domain::opt_out`).
//!
//! - **STOP** (and the other opt-out words) puts the sender's number on the suppression list of
//!   the tenant it answers, reason `opt_out`, source `inbound:<account>`: that tenant's next
//!   messages skip their SMS step (or are refused when no other step is left).
//! - **START** removes that `opt_out` entry, and only it: an address the tenant listed, or an
//!   outcome added (a hard bounce), stays.
//!
//! Which tenant: the account's own tenant for a tenant's account; for a platform account, every
//! tenant whose SMS reached that number through it in the last 30 days (the sender number is
//! shared: the opt-out is from that number, whoever sent through it).

use super::CommandState;
use super::body;
use super::error::ApiError;
use super::receipts::{MAX_CALLBACK_BYTES, refusal_reason};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hermes_adapters::CallbackRequest;
use hermes_domain::Channel;
use hermes_domain::opt_out::{OptKeyword, keyword};
use hermes_infra::http::Problem;
use hermes_infra::suppressions::{self, OPT_OUT_REASON};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundRecorded {
    /// Messages the webhook carried.
    pub messages: usize,
    /// Opt-outs recorded: one per tenant the sender's number was put on the list of.
    pub opted_out: usize,
    /// Opt-ins recorded: one per tenant whose opt-out entry was removed.
    pub opted_in: usize,
}

/// A provider's inbound-message webhook (form, JSON or query, as the provider sends it).
#[utoipa::path(
    post,
    path = "/v1/inbound/{provider}",
    tag = "provider callbacks",
    request_body(content = String, description = "The inbound message exactly as the provider sends it", content_type = "*/*"),
    params(("provider" = String, Path, description = "Provider account name")),
    responses(
        (status = 200, body = InboundRecorded),
        (status = 400, description = "The message could not be understood (`malformed_callback`); nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Signature missing or wrong (`invalid_signature`); nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider account (`unknown_provider`), or one whose plugin takes no inbound messages (`inbound_not_supported`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No capacity to read it now (`busy`, see `Retry-After`); nothing recorded, the provider sends it again", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before sending again"))),
    )
)]
pub async fn receive_inbound(
    State(state): State<CommandState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body::read_at_most(body, MAX_CALLBACK_BYTES).await?;
    intake(&state, &provider, Method::POST, &uri, headers, body).await
}

/// The same webhook, for a provider set to call it as a `GET` with the fields in the query
/// (Vonage's "GET" webhook method).
#[utoipa::path(
    get,
    path = "/v1/inbound/{provider}",
    tag = "provider callbacks",
    params(("provider" = String, Path, description = "Provider account name")),
    responses(
        (status = 200, body = InboundRecorded),
        (status = 400, description = "The message could not be understood (`malformed_callback`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Signature missing or wrong (`invalid_signature`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider account, or one that takes no inbound messages", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_inbound_get(
    State(state): State<CommandState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    intake(&state, &provider, Method::GET, &uri, headers, Bytes::new()).await
}

async fn intake(
    state: &CommandState,
    account: &str,
    method: Method,
    uri: &axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = state
        .providers
        .get(account)
        .ok_or_else(|| ApiError::UnknownProvider(account.to_owned()))?;
    if !provider.takes_inbound() {
        return Err(ApiError::InboundNotSupported(account.to_owned()));
    }
    let request = CallbackRequest {
        ids: None,
        method,
        url: format!("{}{}", state.public_url.trim_end_matches('/'), uri),
        headers,
        body,
    };
    let outcome = provider.parse_inbound(&request).await.inspect_err(|e| {
        let reason = refusal_reason(e);
        metrics::counter!("hermes_inbound_refused_total", "provider" => account.to_owned(), "reason" => reason)
            .increment(1);
    })?;
    let owner = state
        .providers
        .candidates()
        .into_iter()
        .find(|c| c.name == account)
        .and_then(|c| c.owner);
    let pool = state.handler.pool();
    let db = |e: sqlx::Error| ApiError::Command(e.into());
    let mut recorded = InboundRecorded {
        messages: outcome.messages.len(),
        opted_out: 0,
        opted_in: 0,
    };
    for message in &outcome.messages {
        let Some(word) = keyword(&message.text) else {
            continue;
        };
        let tenants: Vec<Uuid> = match owner {
            Some(tenant) => vec![tenant.0],
            None => suppressions::tenants_that_texted(pool, account, &message.from)
                .await
                .map_err(db)?,
        };
        let outcome = match word {
            OptKeyword::OptOut => "opt_out",
            OptKeyword::OptIn => "opt_in",
        };
        metrics::counter!("hermes_inbound_keywords_total", "provider" => account.to_owned(), "keyword" => outcome)
            .increment(1);
        tracing::info!(
            provider = account,
            keyword = outcome,
            tenants = tenants.len(),
            "recipient's keyword reply recorded"
        );
        for tenant in tenants {
            match word {
                OptKeyword::OptOut => {
                    let mut conn = pool.acquire().await.map_err(db)?;
                    suppressions::add(
                        &mut conn,
                        tenant,
                        Channel::Sms,
                        &message.from,
                        OPT_OUT_REASON,
                        &format!("inbound:{account}"),
                    )
                    .await
                    .map_err(db)?;
                    recorded.opted_out += 1;
                }
                OptKeyword::OptIn => {
                    if suppressions::remove_opt_out(pool, tenant, &message.from)
                        .await
                        .map_err(db)?
                    {
                        recorded.opted_in += 1;
                    }
                }
            }
        }
    }
    Ok(match outcome.reply {
        Some(reply) => (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
            [(header::CONTENT_TYPE, reply.content_type)],
            reply.body,
        )
            .into_response(),
        None => (StatusCode::OK, Json(recorded)).into_response(),
    })
}
