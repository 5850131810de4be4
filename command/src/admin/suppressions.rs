//! `/admin/v1/tenants/{id}/suppressions`: a tenant's suppression list, as operators see and edit
//! it. Hermes adds to it by itself from hard bounces, complaints and unregistered push tokens
//! (`hermes_projections::suppressions`); a message's steps to a listed address are skipped.

use super::{AdminError, AdminState, authorize};
use crate::api::body;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hermes_domain::Channel;
use hermes_domain::suppression::check_entry;
use hermes_infra::suppressions::{self, SuppressionEntry};
use hermes_infra::tenants::{self, TenantCommandError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

async fn tenant(state: &AdminState, raw: &str) -> Result<Uuid, AdminError> {
    let id: Uuid = raw
        .parse()
        .map_err(|_| AdminError::Tenant(TenantCommandError::NoTenant(Uuid::nil())))?;
    tenants::get(&state.pool, id)
        .await?
        .map(|t| t.id)
        .ok_or(AdminError::Tenant(TenantCommandError::NoTenant(id)))
}

/// The channel and the address as the list holds it (a phone number in E.164).
fn entry(channel: &str, address: &str) -> Result<(Channel, String), AdminError> {
    let (channel, address, _) =
        check_entry(channel, address, None, "operator").map_err(AdminError::BadSuppression)?;
    Ok((channel, address))
}

#[derive(Serialize)]
pub(super) struct SuppressionList {
    suppressions: Vec<SuppressionEntry>,
}

/// `GET /admin/v1/tenants/{id}/suppressions`, newest first.
pub(super) async fn list(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SuppressionList>, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant(&state, &id).await?;
    Ok(Json(SuppressionList {
        suppressions: suppressions::list(&state.pool, id).await?,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Add {
    reason: Option<String>,
}

/// `PUT /admin/v1/tenants/{id}/suppressions/{channel}/{address}` `{"reason"?}`: listed (an address
/// listed already keeps its first reason).
pub(super) async fn add(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((id, channel, address)): Path<(String, String, String)>,
    body: Body,
) -> Result<StatusCode, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant(&state, &id).await?;
    let bytes = body::read_at_most(body, 4096).await?;
    let Add { reason } = if bytes.iter().all(u8::is_ascii_whitespace) {
        Add::default()
    } else {
        body::parse(&bytes)?.value
    };
    let (channel, address, reason) = check_entry(&channel, &address, reason.as_deref(), "operator")
        .map_err(AdminError::BadSuppression)?;
    let mut conn = state.pool.acquire().await?;
    suppressions::add(&mut conn, id, channel, &address, &reason, "operator").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/v1/tenants/{id}/suppressions/{channel}/{address}`: no longer listed.
pub(super) async fn remove(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((id, channel, address)): Path<(String, String, String)>,
) -> Result<StatusCode, AdminError> {
    authorize(&state, &headers)?;
    let id = tenant(&state, &id).await?;
    let (channel, address) = entry(&channel, &address)?;
    if suppressions::remove(&state.pool, id, channel, &address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::NotSuppressed)
    }
}
