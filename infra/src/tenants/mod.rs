//! Tenants, event-sourced: each command loads the tenant's stream (`stream_type` `tenant`,
//! stream id = tenant id), folds it into a [`Tenant`], lets the domain decide, and appends the
//! events with the read model (`tenants`, `api_keys`) in the same transaction, so what
//! authentication reads is never ahead of or behind the history.
//!
//! The admin API (`/admin/v1/tenants/...`) and the CLI (`hermes tenant ...`) both call these.

mod keys;
mod projection;

pub use keys::{
    ApiKeyInfo, KEY_PREFIX, KeyLookupError, KeyOwner, authenticate, find_key, hash_key, list_keys,
};

use crate::event_store::{self, AppendError, EventMetadata, NewEvent};
use chrono::{DateTime, SubsecRound, Utc};
use hermes_domain::Channel;
use hermes_domain::quiet_hours::QuietHours;
use hermes_domain::routing::RoutingRule;
use hermes_domain::tenant::{self as domain, Tenant, TenantError, TenantEvent, TenantSettings};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const STREAM_TYPE: &str = "tenant";

/// A command is tried again this many times when another writer changed the tenant first.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum TenantCommandError {
    #[error("no tenant {0}")]
    NoTenant(Uuid),
    #[error(transparent)]
    Refused(#[from] TenantError),
    #[error("the tenant kept changing under this command: try again")]
    Contended,
    #[error("a stored tenant event could not be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A tenant just created, with its first key.
pub struct CreatedTenant {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    /// Shown once; not recoverable later.
    pub api_key: String,
}

/// A key just issued.
pub struct IssuedKey {
    pub id: Uuid,
    pub prefix: String,
    /// Shown once; not recoverable later.
    pub api_key: String,
}

/// A tenant as operators see it (the read model's row).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TenantInfo {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub settings: sqlx::types::Json<TenantSettings>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One event of a tenant's history, for the audit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantHistoryEntry {
    pub version: i64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub actor: Option<String>,
    pub data: serde_json::Value,
}

pub async fn create_tenant(pool: &PgPool, name: &str) -> Result<CreatedTenant, TenantCommandError> {
    create_tenant_as(pool, name, "operator").await
}

/// Creates a tenant and its first key, recording `actor` as who did it.
pub async fn create_tenant_as(
    pool: &PgPool,
    name: &str,
    actor: &str,
) -> Result<CreatedTenant, TenantCommandError> {
    let tenant_id = Uuid::now_v7();
    let (key, new_key) = keys::generate();
    let key_id = new_key.key_id;
    let events = domain::create(name, new_key)?;
    let mut tx = pool.begin().await?;
    append(&mut tx, tenant_id, None, &events, actor).await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant_id,
        key_id,
        api_key: key,
    })
}

/// Loads the tenant, asks `decide` for events and appends them with the read model; again from
/// the start when another writer got there first. Answers the tenant as it is after.
async fn execute(
    pool: &PgPool,
    tenant_id: Uuid,
    actor: &str,
    decide: impl Fn(&Tenant) -> Result<Vec<TenantEvent>, TenantError>,
) -> Result<Tenant, TenantCommandError> {
    for _ in 0..CONFLICT_RETRIES {
        let mut tx = pool.begin().await?;
        let mut tenant = load(&mut tx, tenant_id)
            .await?
            .ok_or(TenantCommandError::NoTenant(tenant_id))?;
        let events = decide(&tenant)?;
        if events.is_empty() {
            return Ok(tenant);
        }
        match append(&mut tx, tenant_id, Some(&tenant), &events, actor).await {
            Ok(()) => {}
            // Another writer appended first: decide again on what it wrote.
            Err(TenantCommandError::Contended) => continue,
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        for e in &events {
            tenant.apply(e);
        }
        return Ok(tenant);
    }
    Err(TenantCommandError::Contended)
}

async fn load(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
) -> Result<Option<Tenant>, TenantCommandError> {
    let stored = event_store::load_stream(conn, STREAM_TYPE, tenant_id).await?;
    let events = stored
        .into_iter()
        .map(|e| serde_json::from_value::<TenantEvent>(e.payload))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tenant::fold(&events))
}

/// Appends `events` after `before` (none: a new tenant) and writes the read model.
/// [`TenantCommandError::Contended`] when another writer appended first.
async fn append(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    before: Option<&Tenant>,
    events: &[TenantEvent],
    actor: &str,
) -> Result<(), TenantCommandError> {
    let metadata = EventMetadata {
        correlation_id: Some(tenant_id),
        actor: Some(actor.to_owned()),
        ..EventMetadata::default()
    };
    let new_events = events
        .iter()
        .map(|e| {
            Ok(NewEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type().to_owned(),
                schema_version: 1,
                payload: serde_json::to_value(e)?,
                metadata: metadata.clone(),
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let version = before.map_or(0, |t| t.version);
    match event_store::append(
        conn,
        tenant_id,
        STREAM_TYPE,
        tenant_id,
        version,
        &new_events,
    )
    .await
    {
        Ok(()) => {}
        Err(AppendError::Conflict) => return Err(TenantCommandError::Contended),
        Err(AppendError::Db(e)) => return Err(e.into()),
    }
    projection::write(conn, tenant_id, version, events).await?;
    Ok(())
}

pub async fn rename(pool: &PgPool, id: Uuid, name: &str) -> Result<Tenant, TenantCommandError> {
    execute(pool, id, "operator", |t| t.rename(name)).await
}

pub async fn suspend(
    pool: &PgPool,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Tenant, TenantCommandError> {
    execute(pool, id, "operator", |t| t.suspend(reason)).await
}

pub async fn reactivate(pool: &PgPool, id: Uuid) -> Result<Tenant, TenantCommandError> {
    execute(pool, id, "operator", Tenant::reactivate).await
}

pub async fn deactivate(
    pool: &PgPool,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Tenant, TenantCommandError> {
    execute(pool, id, "operator", |t| t.deactivate(reason)).await
}

/// Who an operator's command (admin API, CLI) is recorded as done by.
const OPERATOR: &str = "operator";

/// Applies a JSON merge patch to the tenant's settings (see [`TenantSettings::merged`]).
pub async fn change_settings(
    pool: &PgPool,
    id: Uuid,
    patch: &serde_json::Value,
) -> Result<Tenant, TenantCommandError> {
    change_settings_by(pool, id, patch, OPERATOR).await
}

/// [`change_settings`], recorded as done by `actor` (`tenant:<key prefix>` through the tenant's
/// own API).
pub async fn change_settings_by(
    pool: &PgPool,
    id: Uuid,
    patch: &serde_json::Value,
    actor: &str,
) -> Result<Tenant, TenantCommandError> {
    execute(pool, id, actor, |t| {
        t.change_settings(t.settings.merged(patch)?)
    })
    .await
}

/// Issues a key for a tenant (the old ones stay valid), with an optional name.
pub async fn create_key(
    pool: &PgPool,
    tenant_id: Uuid,
    name: Option<&str>,
) -> Result<IssuedKey, TenantCommandError> {
    create_key_by(pool, tenant_id, name, OPERATOR).await
}

/// [`create_key`], recorded as done by `actor`.
pub async fn create_key_by(
    pool: &PgPool,
    tenant_id: Uuid,
    name: Option<&str>,
    actor: &str,
) -> Result<IssuedKey, TenantCommandError> {
    let (api_key, new_key) = keys::generate();
    let (id, prefix) = (new_key.key_id, new_key.prefix.clone());
    execute(pool, tenant_id, actor, |t| {
        t.issue_key(new_key.clone(), name)
    })
    .await?;
    Ok(IssuedKey {
        id,
        prefix,
        api_key,
    })
}

/// Revokes a tenant's key. Revoking a revoked key changes nothing.
pub async fn revoke_key(
    pool: &PgPool,
    tenant_id: Uuid,
    key_id: Uuid,
) -> Result<ApiKeyInfo, TenantCommandError> {
    revoke_key_by(pool, tenant_id, key_id, OPERATOR).await
}

/// [`revoke_key`], recorded as done by `actor`.
pub async fn revoke_key_by(
    pool: &PgPool,
    tenant_id: Uuid,
    key_id: Uuid,
    actor: &str,
) -> Result<ApiKeyInfo, TenantCommandError> {
    execute(pool, tenant_id, actor, |t| t.revoke_key(key_id)).await?;
    keys::get(pool, tenant_id, key_id)
        .await?
        .ok_or(TenantCommandError::Refused(TenantError::NoKey(key_id)))
}

/// Issues a key replacing `key_id` under its name; the old key works `overlap` longer.
pub async fn rotate_key(
    pool: &PgPool,
    tenant_id: Uuid,
    key_id: Uuid,
    overlap: chrono::Duration,
) -> Result<(IssuedKey, DateTime<Utc>), TenantCommandError> {
    rotate_key_by(pool, tenant_id, key_id, overlap, OPERATOR).await
}

/// [`rotate_key`], recorded as done by `actor`.
pub async fn rotate_key_by(
    pool: &PgPool,
    tenant_id: Uuid,
    key_id: Uuid,
    overlap: chrono::Duration,
    actor: &str,
) -> Result<(IssuedKey, DateTime<Utc>), TenantCommandError> {
    let (api_key, new_key) = keys::generate();
    let (id, prefix) = (new_key.key_id, new_key.prefix.clone());
    // Postgres keeps microseconds: the time answered is the time stored.
    let now = Utc::now().trunc_subsecs(6);
    let tenant = execute(pool, tenant_id, actor, |t| {
        t.rotate_key(key_id, new_key.clone(), overlap, now)
    })
    .await?;
    let expires_at = tenant.keys[&key_id].expires_at.unwrap_or(now);
    Ok((
        IssuedKey {
            id,
            prefix,
            api_key,
        },
        expires_at,
    ))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<TenantInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, status, settings, version, created_at, updated_at FROM tenants
          WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The tenant's dispatch rules (its `routing` and `quiet_hours` settings); none for an unknown
/// tenant.
pub async fn dispatch_rules(pool: &PgPool, id: Uuid) -> Result<DispatchRules, sqlx::Error> {
    type Row = (
        sqlx::types::Json<BTreeMap<Channel, RoutingRule>>,
        Option<sqlx::types::Json<QuietHours>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT COALESCE(settings->'routing', '{}'::jsonb), settings->'quiet_hours'
           FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(routing, quiet)| DispatchRules {
            routing: routing.0,
            quiet_hours: quiet.map(|q| q.0),
        })
        .unwrap_or_default())
}

/// What the saga needs of a tenant's settings to dispatch its messages.
#[derive(Debug, Clone, Default)]
pub struct DispatchRules {
    /// Per channel: which accounts serve it and how one is picked.
    pub routing: BTreeMap<Channel, RoutingRule>,
    pub quiet_hours: Option<QuietHours>,
}

/// Every tenant, oldest first; only those of `status` when given.
pub async fn list(pool: &PgPool, status: Option<&str>) -> Result<Vec<TenantInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, status, settings, version, created_at, updated_at FROM tenants
          WHERE $1::text IS NULL OR status = $1 ORDER BY created_at, id",
    )
    .bind(status)
    .fetch_all(pool)
    .await
}

/// The tenant's history, oldest first; empty when there is no such tenant. Key hashes are left
/// out: they are not secrets, but nobody reading an audit needs them.
pub async fn history(pool: &PgPool, id: Uuid) -> Result<Vec<TenantHistoryEntry>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let stored = event_store::load_stream(&mut conn, STREAM_TYPE, id).await?;
    Ok(stored
        .into_iter()
        .map(|e| {
            let mut data = e.payload;
            if let Some(o) = data.as_object_mut() {
                o.remove("type");
                o.remove("key_hash");
            }
            TenantHistoryEntry {
                version: e.stream_version,
                event_type: e.event_type,
                recorded_at: e.recorded_at,
                actor: e.metadata.0.actor,
                data,
            }
        })
        .collect())
}

/// The oldest tenant with this name, if any.
pub async fn find_by_name(pool: &PgPool, name: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1")
        .bind(name)
        .fetch_optional(pool)
        .await
}
