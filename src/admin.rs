//! The admin API: `/admin/v1/plugins`, where an operator uploads a new version of a provider plugin
//! (validated before it is stored: it must load and its `describe` must answer with the name it is
//! uploaded as), sees which version serves, and rolls back. Every Hermes process picks the change
//! up at its next reload (`providers::RELOAD_EVERY`); calls in flight finish on the old version.
//!
//! Authenticated with `HERMES_ADMIN_TOKEN` (a bearer token, compared in constant time); without it
//! the admin API is off.

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hermes_adapters::plugin::{AccountConfig, PluginEngine, builtin};
use hermes_infra::Secret;
use hermes_infra::http::Problem;
use hermes_infra::plugin_uploads::{self, Upload};
use hermes_infra::provider_accounts;
use serde::Serialize;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

/// Largest plugin accepted (the built-in ones are 30 to 400 KB).
pub const MAX_PLUGIN_BYTES: usize = 16 << 20;

#[derive(Clone)]
pub struct AdminState {
    pub pool: PgPool,
    /// `None`: the admin API is off.
    pub token: Option<Secret<String>>,
    pub engine: PluginEngine,
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/admin/v1/plugins", get(list))
        .route("/admin/v1/plugins/{name}", put(upload))
        .route("/admin/v1/plugins/{name}/rollback", post(rollback))
        // The upload reads its body itself, with its own limit and a problem+json refusal.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
enum AdminError {
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
            e @ AdminError::Database(_) => Problem::internal(&e),
        }
        .into_response()
    }
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &state.token else {
        return Err(AdminError::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// Which version serves a plugin, and from where.
#[derive(Debug, Serialize)]
struct PluginVersion {
    name: String,
    /// `upload`, or `builtin` (the plugins directory, if any, is not listed: it is per process).
    source: &'static str,
    version: Option<String>,
    sha256: Option<String>,
    uploaded_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Upload> for PluginVersion {
    fn from(u: Upload) -> Self {
        PluginVersion {
            name: u.name,
            source: "upload",
            version: Some(u.version),
            sha256: Some(u.sha256),
            uploaded_at: Some(u.uploaded_at),
        }
    }
}

/// `GET /admin/v1/plugins`: the uploaded versions serving, and the built-in plugins.
async fn list(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Vec<PluginVersion>>, AdminError> {
    authorize(&state, &headers)?;
    let mut out: Vec<PluginVersion> = plugin_uploads::current(&state.pool)
        .await?
        .into_iter()
        .map(PluginVersion::from)
        .collect();
    for (name, _) in builtin::ALL {
        if builtin::by_name(name).is_some() && !out.iter().any(|p| p.name == *name) {
            out.push(PluginVersion {
                name: (*name).to_owned(),
                source: "builtin",
                version: None,
                sha256: None,
                uploaded_at: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

/// `PUT /admin/v1/plugins/{name}` with the component's bytes: validated, then it serves.
async fn upload(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PluginVersion>), AdminError> {
    authorize(&state, &headers)?;
    let body = axum::body::to_bytes(body, MAX_PLUGIN_BYTES)
        .await
        .map_err(|_| AdminError::TooLarge)?;
    // Plugin names follow the account names' rule (the table's CHECK says the same).
    if !provider_accounts::valid_name(&name) {
        return Err(AdminError::BadName(name));
    }
    // Loaded for an account that may reach nothing and holds no secrets: only `describe` runs.
    let probe = AccountConfig {
        name: format!("upload-{name}"),
        ..Default::default()
    };
    let plugin = state
        .engine
        .load(&body, probe)
        .await
        .map_err(|err| AdminError::InvalidPlugin(err.to_string()))?;
    let info = plugin.info();
    if info.name != name {
        return Err(AdminError::InvalidPlugin(format!(
            "it calls itself {:?}, not {name:?}",
            info.name
        )));
    }
    let upload = plugin_uploads::insert(&state.pool, &name, &info.version, &body).await?;
    tracing::info!(plugin = %name, version = %upload.version, sha256 = %upload.sha256,
        "plugin version uploaded");
    Ok((StatusCode::CREATED, Json(upload.into())))
}

/// `POST /admin/v1/plugins/{name}/rollback`: the newest upload goes; the one before it (or the
/// plugins directory's file, or the built-in) serves again.
async fn rollback(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let removed = plugin_uploads::rollback(&state.pool, &name)
        .await?
        .ok_or_else(|| AdminError::NothingToRollBack(name.clone()))?;
    let serving = plugin_uploads::current(&state.pool)
        .await?
        .into_iter()
        .find(|u| u.name == name)
        .map(PluginVersion::from);
    tracing::info!(plugin = %name, removed = %removed.version, "plugin upload rolled back");
    Ok(Json(serde_json::json!({
        "removed": PluginVersion::from(removed),
        "serving": serving.map_or_else(
            || serde_json::json!({"name": name, "source": "plugins directory or builtin"}),
            |v| serde_json::to_value(v).expect("serializes"),
        ),
    })))
}
