//! `/v1/keys`: a tenant's own API keys, managed with any of its keys (the same commands operators
//! run under `/admin/v1/tenants/{id}/keys`, recorded in the tenant's history as done by
//! `tenant`). Keys are shown once, when issued; listed by prefix only.

use super::CommandState;
use super::body;
use super::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hermes_domain::tenant::{DEFAULT_ROTATION_OVERLAP_SECONDS, MAX_ROTATION_OVERLAP};
use hermes_infra::http::{Problem, Tenant};
use hermes_infra::tenants::{self, ApiKeyInfo, IssuedKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Who the tenant's own commands are recorded as done by.
pub(super) const ACTOR: &str = "tenant";
/// Largest body a key or policy command takes.
pub(super) const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    /// The key's first characters, to tell keys apart; the key itself is never shown again.
    #[schema(example = "hk_3f9a1c")]
    pub prefix: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A rotated key works until then.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyInfo> for ApiKey {
    fn from(k: ApiKeyInfo) -> Self {
        ApiKey {
            id: k.id,
            prefix: k.prefix,
            name: k.name,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            expires_at: k.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Oldest first, revoked ones included.
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedApiKey {
    pub key_id: Uuid,
    pub prefix: String,
    /// The key: shown only this once.
    pub api_key: String,
    /// The key this one replaces (a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Uuid>,
    /// When the replaced key stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_key_expires_at: Option<DateTime<Utc>>,
}

impl IssuedApiKey {
    /// A key just issued; `replaced`: the key it rotates and when that one stops working.
    pub fn new(issued: IssuedKey, replaced: Option<(Uuid, DateTime<Utc>)>) -> Self {
        IssuedApiKey {
            key_id: issued.id,
            prefix: issued.prefix,
            api_key: issued.api_key,
            replaces: replaced.map(|(id, _)| id),
            replaced_key_expires_at: replaced.map(|(_, at)| at),
        }
    }
}

/// A rotation's overlap from the seconds asked for (a day when not given). Out of range values
/// are the domain's to refuse; only what chrono cannot hold is clamped (still out of range).
pub fn rotation_overlap(seconds: Option<i64>) -> chrono::Duration {
    chrono::Duration::try_seconds(seconds.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECONDS))
        .unwrap_or(MAX_ROTATION_OVERLAP * 2)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// 1 to 200 characters, no control characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working: 0 to 2,592,000 (30 days); default 86,400.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 2592000)]
    pub overlap_seconds: Option<serde_json::Number>,
}

/// A path id that is not a UUID names no key.
fn key_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("API key"))
}

/// The tenant's API keys (never the keys themselves).
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_keys(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = tenants::list_keys(state.handler.pool(), tenant.0).await?;
    Ok(Json(ApiKeyList {
        keys: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// Issue another key; the others stay valid.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    request_body(content = Option<NewKeyRequest>, description = "Optional"),
    responses(
        (status = 201, body = IssuedApiKey),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name (`invalid_name`) or a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant kept changing under the command (`contended`): try again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_key(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    request: Body,
) -> Result<(StatusCode, Json<IssuedApiKey>), ApiError> {
    let NewKeyRequest { name } = body::optional(request, MAX_BODY_BYTES).await?;
    let issued =
        tenants::create_key_by(state.handler.pool(), tenant.0, name.as_deref(), ACTOR).await?;
    Ok((StatusCode::CREATED, Json(IssuedApiKey::new(issued, None))))
}

/// Revoke a key: every Hermes process refuses it within 5 s. Revoking a revoked key changes
/// nothing.
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}",
    tag = "keys",
    params(("key_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Revoked", body = ApiKey),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant kept changing under the command (`contended`): try again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(key): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let revoked =
        tenants::revoke_key_by(state.handler.pool(), tenant.0, key_id(&key)?, ACTOR).await?;
    Ok(Json(revoked.into()))
}

/// Rotate a key: a new key under its name; the old one keeps working for the overlap only.
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/rotate",
    tag = "keys",
    params(("key_id" = Uuid, Path)),
    request_body(content = Option<RotateKeyRequest>, description = "Optional"),
    responses(
        (status = 201, body = IssuedApiKey),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key was rotated or revoked already (`key_not_rotatable`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An overlap out of range (`invalid_overlap`) or a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant kept changing under the command (`contended`): try again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_key(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(key): Path<String>,
    request: Body,
) -> Result<(StatusCode, Json<IssuedApiKey>), ApiError> {
    let key = key_id(&key)?;
    let RotateKeyRequest { overlap_seconds } = body::optional(request, MAX_BODY_BYTES).await?;
    let seconds = overlap_seconds.as_ref().map(body::whole_seconds);
    let overlap = rotation_overlap(seconds);
    let (issued, expires_at) =
        tenants::rotate_key_by(state.handler.pool(), tenant.0, key, overlap, ACTOR).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedApiKey::new(issued, Some((key, expires_at)))),
    ))
}
