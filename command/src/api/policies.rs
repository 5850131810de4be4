//! `/v1/cascade-policies`: a tenant's own named cascades (its `cascade_policies` setting, which
//! operators edit through `/admin/v1/tenants/{id}`). A message names one instead of listing its
//! steps (`"cascade": "otp"`) and records the version it ran.

use super::CommandState;
use super::body;
use super::error::ApiError;
use super::keys::{ACTOR, MAX_BODY_BYTES};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hermes_domain::tenant::{CascadePolicy, TenantSettings};
use hermes_domain::{Channel, Until};
use hermes_infra::http::{Problem, Tenant};
use hermes_infra::tenants;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct CascadePolicyView {
    #[schema(example = "otp")]
    pub name: String,
    /// The steps, as a message's `cascade` lists them.
    #[schema(value_type = Vec<Object>)]
    pub steps: serde_json::Value,
    /// The tenant's history version at which the policy took these steps; a message records it.
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CascadePolicyList {
    /// By name.
    pub policies: Vec<CascadePolicyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCascadePolicy {
    /// The steps, as a message's `cascade` lists them (checked the same way).
    #[schema(value_type = Vec<PolicyStep>, min_items = 1, max_items = 10)]
    pub steps: serde_json::Value,
}

/// One step of a policy, as the document describes it (the server checks the JSON itself, as it
/// checks a message's `cascade`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PolicyStep {
    pub channel: Channel,
    /// Default 60.
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout_seconds: Option<u32>,
    /// Default `delivered`.
    pub until: Option<Until>,
}

fn views(policies: &BTreeMap<String, CascadePolicy>) -> Vec<CascadePolicyView> {
    policies
        .iter()
        .map(|(name, p)| CascadePolicyView {
            name: name.clone(),
            steps: p.steps.clone(),
            version: p.version,
        })
        .collect()
}

/// The tenant's settings as stored now (the key's copy may be up to 2 s old).
async fn settings(state: &CommandState, tenant: uuid::Uuid) -> Result<TenantSettings, ApiError> {
    let info = tenants::get(state.handler.pool(), tenant)
        .await
        .map_err(|e| ApiError::Command(e.into()))?
        .ok_or(ApiError::NotFound("tenant"))?;
    Ok(info.settings.0)
}

/// The tenant's cascade policies.
#[utoipa::path(
    get,
    path = "/v1/cascade-policies",
    tag = "cascade policies",
    responses(
        (status = 200, body = CascadePolicyList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_policies(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
) -> Result<Json<CascadePolicyList>, ApiError> {
    let settings = settings(&state, tenant.0).await?;
    Ok(Json(CascadePolicyList {
        policies: views(&settings.cascade_policies),
    }))
}

/// Create or replace a policy. Its version moves only when its steps change.
#[utoipa::path(
    put,
    path = "/v1/cascade-policies/{name}",
    tag = "cascade policies",
    params(("name" = String, Path, min_length = 1, max_length = 64, pattern = "^[a-z0-9_-]+$")),
    request_body = PutCascadePolicy,
    responses(
        (status = 200, body = CascadePolicyView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Steps a message could not have, or a bad name (`invalid_cascade_policy`, `invalid_setting`); a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant kept changing under the command (`contended`): try again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn put_policy(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(name): Path<String>,
    request: Body,
) -> Result<Json<CascadePolicyView>, ApiError> {
    let bytes = body::read_at_most(request, MAX_BODY_BYTES).await?;
    let PutCascadePolicy { steps } = body::parse(&bytes)?.value;
    let patch = json!({"cascade_policies": {&name: {"steps": steps}}});
    let changed =
        tenants::change_settings_by(state.handler.pool(), tenant.0, &patch, ACTOR).await?;
    let policy = changed
        .settings
        .cascade_policies
        .get(&name)
        .expect("the policy was just set");
    Ok(Json(CascadePolicyView {
        name,
        steps: policy.steps.clone(),
        version: policy.version,
    }))
}

/// Remove a policy. Messages that ran it keep its record; new ones naming it are refused.
#[utoipa::path(
    delete,
    path = "/v1/cascade-policies/{name}",
    tag = "cascade policies",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no policy of that name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant kept changing under the command (`contended`): try again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_policy(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !settings(&state, tenant.0)
        .await?
        .cascade_policies
        .contains_key(&name)
    {
        return Err(ApiError::NotFound("cascade policy"));
    }
    let patch = json!({"cascade_policies": {&name: null}});
    tenants::change_settings_by(state.handler.pool(), tenant.0, &patch, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}
