//! The tenants' read model: `tenants` and `api_keys`, written from each event in the transaction
//! that appends it. Authentication and the listings read these tables, never the stream.

use hermes_domain::tenant::{TenantEvent, TenantStatus};
use sqlx::PgConnection;
use uuid::Uuid;

/// Applies `events`, appended after version `before`, to the read model.
pub(super) async fn write(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    before: i64,
    events: &[TenantEvent],
) -> Result<(), sqlx::Error> {
    for event in events {
        apply(conn, tenant_id, event).await?;
    }
    sqlx::query("UPDATE tenants SET version = $2, updated_at = now() WHERE id = $1")
        .bind(tenant_id)
        .bind(before + events.len() as i64)
        .execute(conn)
        .await?;
    Ok(())
}

async fn apply(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    event: &TenantEvent,
) -> Result<(), sqlx::Error> {
    let status = |s: TenantStatus| {
        sqlx::query("UPDATE tenants SET status = $2 WHERE id = $1")
            .bind(tenant_id)
            .bind(s.as_str())
    };
    match event {
        TenantEvent::TenantCreated { name } => {
            sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
                .bind(tenant_id)
                .bind(name)
                .execute(conn)
                .await?;
        }
        TenantEvent::TenantRenamed { name } => {
            sqlx::query("UPDATE tenants SET name = $2 WHERE id = $1")
                .bind(tenant_id)
                .bind(name)
                .execute(conn)
                .await?;
        }
        TenantEvent::TenantSuspended { .. } => {
            status(TenantStatus::Suspended).execute(conn).await?;
        }
        TenantEvent::TenantReactivated {} => {
            status(TenantStatus::Active).execute(conn).await?;
        }
        TenantEvent::TenantDeactivated { .. } => {
            status(TenantStatus::Deactivated).execute(conn).await?;
        }
        TenantEvent::TenantSettingsChanged { settings } => {
            sqlx::query("UPDATE tenants SET settings = $2 WHERE id = $1")
                .bind(tenant_id)
                .bind(sqlx::types::Json(settings))
                .execute(conn)
                .await?;
        }
        TenantEvent::ApiKeyIssued {
            key_id,
            prefix,
            name,
            key_hash,
            ..
        } => {
            let hash = hex::decode(key_hash).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key_id)
            .bind(tenant_id)
            .bind(hash)
            .bind(prefix)
            .bind(name)
            .execute(conn)
            .await?;
        }
        TenantEvent::ApiKeyExpiring {
            key_id, expires_at, ..
        } => {
            sqlx::query("UPDATE api_keys SET expires_at = $3 WHERE id = $1 AND tenant_id = $2")
                .bind(key_id)
                .bind(tenant_id)
                .bind(expires_at)
                .execute(conn)
                .await?;
        }
        TenantEvent::ApiKeyRevoked { key_id } => {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                  WHERE id = $1 AND tenant_id = $2",
            )
            .bind(key_id)
            .bind(tenant_id)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
