//! `/admin/v1/plugins`: an operator uploads a new version of a provider plugin (validated before it
//! is stored: it must load and its `describe` must answer with the name it is uploaded as), sees
//! which version serves, and rolls back. Every Hermes process picks the change up at its next
//! reload (`provider_source::RELOAD_EVERY`); calls in flight finish on the old version.

use super::{AdminError, AdminState, MAX_PLUGIN_BYTES, authorize};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hermes_adapters::plugin::{AccountConfig, builtin};
use hermes_infra::plugin_uploads::{self, Upload};
use hermes_infra::provider_accounts;
use serde::Serialize;

/// Which version serves a plugin, and from where.
#[derive(Debug, Serialize)]
pub(super) struct PluginVersion {
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
pub(super) async fn list(
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
pub(super) async fn upload(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PluginVersion>), AdminError> {
    authorize(&state, &headers)?;
    let body = axum::body::to_bytes(body, MAX_PLUGIN_BYTES)
        .await
        .map_err(|_| AdminError::TooLarge)?;
    let key = state.key.as_ref().ok_or(AdminError::NoSecretKey)?;
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
    let upload = plugin_uploads::insert(&state.pool, key, &name, &info.version, &body).await?;
    tracing::info!(plugin = %name, version = %upload.version, sha256 = %upload.sha256,
        "plugin version uploaded");
    Ok((StatusCode::CREATED, Json(upload.into())))
}

/// `POST /admin/v1/plugins/{name}/rollback`: the newest upload goes; the one before it (or the
/// plugins directory's file, or the built-in) serves again.
pub(super) async fn rollback(
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
