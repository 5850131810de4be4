//! `/v1/suppressions`: a tenant's own suppression list (the same list operators edit under
//! `/admin/v1/tenants/{id}/suppressions`, and Hermes fills from hard bounces, complaints and
//! unregistered push tokens). A message's steps to a listed address are skipped.

use super::CommandState;
use super::body;
use super::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hermes_domain::Channel;
use hermes_domain::suppression::{check_listed, listed_address};
use hermes_infra::http::{Problem, Tenant};
use hermes_infra::suppressions;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One listed address.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suppression {
    #[schema(example = "email")]
    pub channel: String,
    #[schema(example = "ada@example.com")]
    pub address: String,
    /// `hard_bounce`, `complaint`, `unregistered`, or the words of whoever listed it.
    pub reason: String,
    /// `tenant`, `operator`, or `message:<id>` when an outcome of that message listed it.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionList {
    /// Newest first, at most 1,000.
    pub suppressions: Vec<Suppression>,
}

/// Most entries one list answer holds.
const MAX_LISTED: usize = 1000;

/// The tenant's suppression list, newest first.
#[utoipa::path(
    get,
    path = "/v1/suppressions",
    tag = "suppressions",
    responses(
        (status = 200, body = SuppressionList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_suppressions(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
) -> Result<Json<SuppressionList>, ApiError> {
    let entries = suppressions::list(state.handler.pool(), tenant.0)
        .await
        .map_err(|e| ApiError::Command(e.into()))?;
    Ok(Json(SuppressionList {
        suppressions: entries
            .into_iter()
            .take(MAX_LISTED)
            .map(|e| Suppression {
                channel: e.channel,
                address: e.address,
                reason: e.reason,
                source: e.source,
                created_at: e.created_at,
            })
            .collect(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    /// Why (default `tenant`).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// List an address: the tenant's messages skip their steps to it. An address listed already keeps
/// its first reason.
#[utoipa::path(
    put,
    path = "/v1/suppressions/{channel}/{address}",
    tag = "suppressions",
    params(
        ("channel" = Channel, Path, description = "sms, email, push or whatsapp"),
        ("address" = String, Path, min_length = 1, max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
            description = "The address as `to` gives it for the channel (emails compare without regard to case)"),
    ),
    request_body(content = Option<SuppressRequest>, description = "Optional"),
    responses(
        (status = 204, description = "Listed"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown channel, an address with control characters or over 4,096 characters, or a bad reason (`invalid_suppression`); a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn suppress(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path((channel, address)): Path<(String, String)>,
    request: Body,
) -> Result<StatusCode, ApiError> {
    let channel = Channel::parse(&channel).ok_or_else(|| {
        ApiError::InvalidSuppression(format!(
            "unknown channel {channel:?}: sms, email, push or whatsapp"
        ))
    })?;
    let SuppressRequest { reason } = body::optional(request, 4096).await?;
    let reason = check_listed(&address, reason.as_deref(), "tenant")
        .map_err(ApiError::InvalidSuppression)?;
    let address = listed_address(channel, &address);
    let mut conn = state
        .handler
        .pool()
        .acquire()
        .await
        .map_err(|e| ApiError::Command(e.into()))?;
    suppressions::add(&mut conn, tenant.0, channel, &address, &reason, "tenant")
        .await
        .map_err(|e| ApiError::Command(e.into()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unlist an address.
#[utoipa::path(
    delete,
    path = "/v1/suppressions/{channel}/{address}",
    tag = "suppressions",
    params(
        ("channel" = Channel, Path, description = "sms, email, push or whatsapp"),
        ("address" = String, Path, min_length = 1, max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
            description = "The address as `to` gives it for the channel (emails compare without regard to case)"),
    ),
    responses(
        (status = 204, description = "No longer listed"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The address is not listed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn unsuppress(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path((channel, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    // Nothing is listed under an unknown channel or an address no list can hold.
    let Some(channel) = Channel::parse(&channel) else {
        return Err(ApiError::NotFound("suppression"));
    };
    if check_listed(&address, None, "tenant").is_err() {
        return Err(ApiError::NotFound("suppression"));
    }
    let address = listed_address(channel, &address);
    if suppressions::remove(state.handler.pool(), tenant.0, channel, &address)
        .await
        .map_err(|e| ApiError::Command(e.into()))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("suppression"))
    }
}
