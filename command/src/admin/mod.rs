//! The admin API (`/admin/v1/...`), for operators: plugin versions ([`plugins`]) and tenants
//! with their settings and API keys ([`tenants`]).
//!
//! Authenticated with `HERMES_ADMIN_TOKEN` ([`token`]: at least 32 characters, compared by digest in
//! constant time); without it the admin API is off.

mod plugins;
mod suppressions;
mod tenants;
mod token;

pub use token::{AdminToken, AdminTokenTooShort, MIN_ADMIN_TOKEN_LEN};

use crate::api::error::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use hermes_adapters::plugin::PluginEngine;
use hermes_infra::http::Problem;
use hermes_infra::provider_accounts::SealingKey;
use hermes_infra::tenants::TenantCommandError;
use sqlx::PgPool;

/// Largest plugin accepted (the built-in ones are 30 to 400 KB).
pub const MAX_PLUGIN_BYTES: usize = 16 << 20;

#[derive(Clone)]
pub struct AdminState {
    pub pool: PgPool,
    /// `None`: the admin API is off.
    pub token: Option<AdminToken>,
    pub engine: PluginEngine,
    /// Authenticates uploaded plugins (`HERMES_SECRET_KEY`); uploads are refused without it.
    pub key: Option<SealingKey>,
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/admin/v1/plugins", get(plugins::list))
        .route("/admin/v1/plugins/{name}", put(plugins::upload))
        .route("/admin/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route(
            "/admin/v1/tenants",
            get(tenants::list).post(tenants::create),
        )
        .route(
            "/admin/v1/tenants/{id}",
            get(tenants::get).patch(tenants::update),
        )
        .route("/admin/v1/tenants/{id}/suspend", post(tenants::suspend))
        .route(
            "/admin/v1/tenants/{id}/reactivate",
            post(tenants::reactivate),
        )
        .route(
            "/admin/v1/tenants/{id}/deactivate",
            post(tenants::deactivate),
        )
        .route("/admin/v1/tenants/{id}/events", get(tenants::events))
        .route(
            "/admin/v1/tenants/{id}/keys",
            get(tenants::list_keys).post(tenants::create_key),
        )
        .route(
            "/admin/v1/tenants/{id}/keys/{key_id}",
            delete(tenants::revoke_key),
        )
        .route(
            "/admin/v1/tenants/{id}/keys/{key_id}/rotate",
            post(tenants::rotate_key),
        )
        .route(
            "/admin/v1/tenants/{id}/suppressions",
            get(suppressions::list),
        )
        .route(
            "/admin/v1/tenants/{id}/suppressions/{channel}/{address}",
            put(suppressions::add).delete(suppressions::remove),
        )
        // The upload reads its body itself, with its own limit and a problem+json refusal.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("the admin API is off: set HERMES_ADMIN_TOKEN to turn it on")]
    Disabled,
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("invalid plugin name {0:?}: lowercase letters, digits, '-' and '_', at most 63")]
    BadName(String),
    #[error("not a valid plugin: {0}")]
    InvalidPlugin(String),
    #[error("the plugin is larger than {MAX_PLUGIN_BYTES} bytes")]
    TooLarge,
    #[error("plugin {0} has no uploaded version to roll back")]
    NothingToRollBack(String),
    #[error(
        "uploads are authenticated with HERMES_SECRET_KEY, which this process does not have: start it with the key"
    )]
    NoSecretKey,
    #[error(transparent)]
    Tenant(#[from] TenantCommandError),
    #[error("the tenant has no such key")]
    NoKey,
    #[error("status is one of active, suspended, deactivated")]
    BadStatus,
    #[error("{0}")]
    BadSuppression(String),
    #[error("the address is not on the tenant's suppression list")]
    NotSuppressed,
    /// A body that is too large, not JSON, or not of the command's shape: answered as the API does.
    #[error(transparent)]
    Request(#[from] ApiError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            AdminError::Disabled => Problem::new(StatusCode::FORBIDDEN, "admin_disabled", detail),
            AdminError::Unauthorized => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            }
            AdminError::BadName(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin_name",
                detail,
            ),
            AdminError::InvalidPlugin(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin", detail)
            }
            AdminError::TooLarge => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            AdminError::NothingToRollBack(_) => {
                Problem::new(StatusCode::NOT_FOUND, "no_upload", detail)
            }
            AdminError::NoSecretKey => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no_secret_key", detail)
            }
            AdminError::Tenant(e) => crate::api::error::tenant_problem(e),
            AdminError::NoKey => Problem::not_found("API key"),
            AdminError::BadSuppression(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_suppression",
                detail,
            ),
            AdminError::NotSuppressed => Problem::not_found("suppression"),
            AdminError::BadStatus => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_status", detail)
            }
            AdminError::Request(e) => return e.into_response(),
            e @ AdminError::Database(_) => Problem::internal(&e),
        }
        .into_response()
    }
}

/// The request's bearer token must be the configured one. A missing header is compared like a
/// wrong token (as an empty one), so its answer takes no other path.
pub(crate) fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &state.token else {
        return Err(AdminError::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if token.matches(given) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}
