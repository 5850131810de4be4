//! `/admin/v1/tenants`: operators create tenants, rename, suspend, reactivate and deactivate them,
//! change their settings, read their history, and issue, rotate and revoke their API keys. Each
//! change is an event of the tenant's stream (`hermes_infra::tenants`); suspension, deactivation,
//! revocation and a rotation's end reach every Hermes process within 5 s (its auth cache).

use super::{AdminError, AdminState, authorize};
use crate::api::body;
use crate::api::keys::{IssuedApiKey, rotation_overlap};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use hermes_domain::tenant::TenantStatus;
use hermes_infra::tenants::{self, ApiKeyInfo, TenantCommandError, TenantHistoryEntry, TenantInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Largest body a tenant command takes (they are a few fields).
const MAX_TENANT_BODY_BYTES: usize = 16 * 1024;

/// A path id that is not a UUID names nothing: 404, as for a tenant that does not exist.
fn tenant_id(raw: &str) -> Result<Uuid, AdminError> {
    raw.parse()
        .map_err(|_| AdminError::Tenant(TenantCommandError::NoTenant(Uuid::nil())))
}

fn key_id(raw: &str) -> Result<Uuid, AdminError> {
    raw.parse().map_err(|_| AdminError::NoKey)
}

/// The body as `T`; an empty body is `T::default()` (every field of these commands is optional).
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: Body,
) -> Result<T, AdminError> {
    let bytes = body::read_at_most(body, MAX_TENANT_BODY_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(body::parse(&bytes)?.value)
}

async fn info(state: &AdminState, id: Uuid) -> Result<TenantInfo, AdminError> {
    tenants::get(&state.pool, id)
        .await?
        .ok_or(AdminError::Tenant(TenantCommandError::NoTenant(id)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    name: String,
}

#[derive(Serialize)]
pub(super) struct CreatedTenant {
    tenant_id: Uuid,
    key_id: Uuid,
    prefix: String,
    /// Shown only this once.
    api_key: String,
    tenant: TenantInfo,
}

/// `POST /admin/v1/tenants` `{"name"}`: the tenant and its first key.
pub(super) async fn create(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CreatedTenant>), AdminError> {
    authorize(&state, &headers)?;
    let CreateTenant { name } = optional_body(body).await?;
    let created = tenants::create_tenant(&state.pool, &name).await?;
    let tenant = info(&state, created.tenant_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTenant {
            tenant_id: created.tenant_id,
            key_id: created.key_id,
            prefix: created.api_key[..tenants::KEY_PREFIX.len() + 8].to_owned(),
            api_key: created.api_key,
            tenant,
        }),
    ))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

#[derive(Serialize)]
pub(super) struct TenantList {
    tenants: Vec<TenantInfo>,
}

/// `GET /admin/v1/tenants[?status=active|suspended|deactivated]`, oldest first.
pub(super) async fn list(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<TenantList>, AdminError> {
    authorize(&state, &headers)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(TenantStatus::parse(s).ok_or(AdminError::BadStatus)?),
    };
    Ok(Json(TenantList {
        tenants: tenants::list(&state.pool, status.map(TenantStatus::as_str)).await?,
    }))
}

/// `GET /admin/v1/tenants/{id}`.
pub(super) async fn get(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TenantInfo>, AdminError> {
    authorize(&state, &headers)?;
    Ok(Json(info(&state, tenant_id(&id)?).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateTenant {
    name: Option<String>,
    /// A JSON merge patch of the settings: `null` returns a setting to its default.
    settings: Option<Value>,
}

/// `PATCH /admin/v1/tenants/{id}` `{"name"?, "settings"?}`: rename, change settings.
pub(super) async fn update(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<TenantInfo>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    let UpdateTenant { name, settings } = optional_body(body).await?;
    if let Some(name) = name {
        tenants::rename(&state.pool, id, &name).await?;
    }
    if let Some(patch) = settings {
        tenants::change_settings(&state.pool, id, &patch).await?;
    }
    Ok(Json(info(&state, id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    reason: Option<String>,
}

/// `POST /admin/v1/tenants/{id}/suspend` `{"reason"?}`: its keys are refused (403
/// `tenant_suspended`) until reactivated; messages already accepted finish their cascade.
pub(super) async fn suspend(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<TenantInfo>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    let Reason { reason } = optional_body(body).await?;
    tenants::suspend(&state.pool, id, reason.as_deref()).await?;
    Ok(Json(info(&state, id).await?))
}

/// `POST /admin/v1/tenants/{id}/reactivate`.
pub(super) async fn reactivate(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TenantInfo>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    tenants::reactivate(&state.pool, id).await?;
    Ok(Json(info(&state, id).await?))
}

/// `POST /admin/v1/tenants/{id}/deactivate` `{"reason"?}`: final.
pub(super) async fn deactivate(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<TenantInfo>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    let Reason { reason } = optional_body(body).await?;
    tenants::deactivate(&state.pool, id, reason.as_deref()).await?;
    Ok(Json(info(&state, id).await?))
}

#[derive(Serialize)]
pub(super) struct History {
    events: Vec<TenantHistoryEntry>,
}

/// `GET /admin/v1/tenants/{id}/events`: the tenant's history, oldest first.
pub(super) async fn events(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<History>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    let events = tenants::history(&state.pool, id).await?;
    if events.is_empty() {
        return Err(AdminError::Tenant(TenantCommandError::NoTenant(id)));
    }
    Ok(Json(History { events }))
}

#[derive(Serialize)]
pub(super) struct KeyList {
    keys: Vec<ApiKeyInfo>,
}

/// `GET /admin/v1/tenants/{id}/keys`: id, prefix, name, created, revoked, expires (never a key).
pub(super) async fn list_keys(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, AdminError> {
    authorize(&state, &headers)?;
    let keys = tenants::list_keys(&state.pool, tenant_id(&id)?).await?;
    Ok(Json(KeyList { keys }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKey {
    name: Option<String>,
}

/// `POST /admin/v1/tenants/{id}/keys` `{"name"?}`: another key; the others stay valid.
pub(super) async fn create_key(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<IssuedApiKey>), AdminError> {
    authorize(&state, &headers)?;
    let id = tenant_id(&id)?;
    let CreateKey { name } = optional_body(body).await?;
    let issued = tenants::create_key(&state.pool, id, name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(IssuedApiKey::new(issued, None))))
}

/// `DELETE /admin/v1/tenants/{id}/keys/{key_id}`: revoked; every process refuses it within 5 s.
pub(super) async fn revoke_key(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<ApiKeyInfo>, AdminError> {
    authorize(&state, &headers)?;
    let revoked = tenants::revoke_key(&state.pool, tenant_id(&id)?, key_id(&key)?).await?;
    Ok(Json(revoked))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotate {
    overlap_seconds: Option<i64>,
}

/// `POST /admin/v1/tenants/{id}/keys/{key_id}/rotate` `{"overlap_seconds"?}` (default a day, at
/// most 30 days): a new key under the old one's name; the old one works until the overlap ends.
pub(super) async fn rotate_key(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<IssuedApiKey>), AdminError> {
    authorize(&state, &headers)?;
    let (id, key) = (tenant_id(&id)?, key_id(&key)?);
    let Rotate { overlap_seconds } = optional_body(body).await?;
    let overlap = rotation_overlap(overlap_seconds);
    let (issued, expires_at) = tenants::rotate_key(&state.pool, id, key, overlap).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedApiKey::new(issued, Some((key, expires_at)))),
    ))
}
