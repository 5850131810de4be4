//! `hermes tenant ...`: the admin API's tenant commands, run against the database directly (an
//! operator on the machine needs no admin token). Both go through `hermes_infra::tenants`, so
//! each change is the same event in the tenant's history.

use crate::config::DatabaseArgs;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use hermes_infra::{db, tenants};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// A tenant's API keys: list, issue, rotate, revoke.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Create a tenant and print its id and API key (shown only once).
    Create {
        #[arg(long)]
        name: String,
        /// Print `{"tenant_id": ..., "key_id": ..., "api_key": ...}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The tenants, oldest first: id, name, status, settings.
    List {
        /// Only those with this status: active, suspended, deactivated.
        #[arg(long)]
        status: Option<String>,
        /// One JSON object per tenant.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// One tenant and its history (every change, who made it, when).
    Show {
        tenant: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Rename a tenant.
    Rename {
        tenant: Uuid,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Refuse the tenant's keys (403 `tenant_suspended`) on every process within 5 s, until it is
    /// reactivated. Messages already accepted finish their cascade.
    Suspend {
        tenant: Uuid,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Let a suspended tenant's keys work again.
    Reactivate {
        tenant: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Close a tenant for good: its keys are refused (403 `tenant_deactivated`); its history stays.
    Deactivate {
        tenant: Uuid,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Change settings with a JSON merge patch, e.g. `'{"max_sms_segments": 3}'` (`null` resets).
    Settings {
        tenant: Uuid,
        patch: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// A tenant's keys: id, prefix, name, created, revoked, expires (never the key itself).
    List {
        #[arg(long)]
        tenant: Uuid,
        /// One JSON object per key.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Issue another key for a tenant and print it (shown only once); the others stay valid.
    Create {
        #[arg(long)]
        tenant: Uuid,
        /// What the key is for, shown in listings.
        #[arg(long)]
        name: Option<String>,
        /// Print `{"key_id": ..., "prefix": ..., "api_key": ...}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key, named by its id, its prefix (`hms_1a2b3c4d`) or the key itself. Every Hermes
    /// process refuses it within 5 s.
    Revoke {
        key: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Issue a key replacing this one (same name); the old one keeps working for the overlap.
    Rotate {
        key: String,
        /// Seconds the old key keeps working (at most 30 days).
        #[arg(long, default_value_t = 86_400)]
        overlap_seconds: i64,
        /// Print `{"key_id": ..., "prefix": ..., "api_key": ..., "replaced_key_expires_at": ...}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

async fn connect(database: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    let pool = db::connect(&database.url(), 2).await?;
    db::migrate(&pool).await?;
    Ok(pool)
}

fn print_tenant(t: &tenants::TenantInfo) -> anyhow::Result<()> {
    println!(
        "{}\t{}\tstatus={}\tsettings={}\tcreated={}",
        t.id,
        t.name,
        t.status,
        serde_json::to_string(&t.settings)?,
        when(Some(t.created_at)),
    );
    Ok(())
}

/// The tenant as it is now, printed after a change.
async fn show_now(pool: &sqlx::PgPool, id: Uuid) -> anyhow::Result<()> {
    let t = tenants::get(pool, id)
        .await?
        .with_context(|| format!("no tenant {id}"))?;
    print_tenant(&t)
}

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Key { command } => key(command).await,
        TenantCommand::Create {
            name,
            json,
            database,
        } => {
            let pool = connect(&database).await?;
            let created = tenants::create_tenant(&pool, &name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": created.tenant_id, "key_id": created.key_id, "api_key": created.api_key})
                );
            } else {
                println!(
                    "tenant_id: {}\napi_key:   {}",
                    created.tenant_id, created.api_key
                );
                eprintln!("(the API key is shown only this once)");
            }
            Ok(())
        }
        TenantCommand::List {
            status,
            json,
            database,
        } => {
            if let Some(s) = status.as_deref() {
                hermes_domain::tenant::TenantStatus::parse(s)
                    .context("--status is active, suspended or deactivated")?;
            }
            let pool = connect(&database).await?;
            for t in tenants::list(&pool, status.as_deref()).await? {
                if json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    print_tenant(&t)?;
                }
            }
            Ok(())
        }
        TenantCommand::Show { tenant, database } => {
            let pool = connect(&database).await?;
            show_now(&pool, tenant).await?;
            for e in tenants::history(&pool, tenant).await? {
                println!(
                    "{}  #{:<3} {:<22} {}  [{}]",
                    e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    e.version,
                    e.event_type,
                    e.data,
                    e.actor.as_deref().unwrap_or("-"),
                );
            }
            Ok(())
        }
        TenantCommand::Rename {
            tenant,
            name,
            database,
        } => {
            let pool = connect(&database).await?;
            tenants::rename(&pool, tenant, &name).await?;
            show_now(&pool, tenant).await
        }
        TenantCommand::Suspend {
            tenant,
            reason,
            database,
        } => {
            let pool = connect(&database).await?;
            tenants::suspend(&pool, tenant, reason.as_deref()).await?;
            eprintln!("every Hermes refuses the tenant's keys (403 tenant_suspended) within 5 s");
            show_now(&pool, tenant).await
        }
        TenantCommand::Reactivate { tenant, database } => {
            let pool = connect(&database).await?;
            tenants::reactivate(&pool, tenant).await?;
            show_now(&pool, tenant).await
        }
        TenantCommand::Deactivate {
            tenant,
            reason,
            database,
        } => {
            let pool = connect(&database).await?;
            tenants::deactivate(&pool, tenant, reason.as_deref()).await?;
            show_now(&pool, tenant).await
        }
        TenantCommand::Settings {
            tenant,
            patch,
            database,
        } => {
            let patch: serde_json::Value =
                serde_json::from_str(&patch).context("the settings patch is not JSON")?;
            let pool = connect(&database).await?;
            tenants::change_settings(&pool, tenant, &patch).await?;
            show_now(&pool, tenant).await
        }
    }
}

async fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::List {
            tenant,
            json,
            database,
        } => {
            let pool = connect(&database).await?;
            for k in tenants::list_keys(&pool, tenant).await? {
                if json {
                    println!("{}", serde_json::to_string(&k)?);
                } else {
                    println!(
                        "{}\t{}\tname={}\tcreated={}\trevoked={}\texpires={}",
                        k.id,
                        k.prefix,
                        k.name.as_deref().unwrap_or("-"),
                        when(Some(k.created_at)),
                        when(k.revoked_at),
                        when(k.expires_at),
                    );
                }
            }
        }
        KeyCommand::Create {
            tenant,
            name,
            json,
            database,
        } => {
            let pool = connect(&database).await?;
            let issued = tenants::create_key(&pool, tenant, name.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key_id": issued.id, "prefix": issued.prefix, "api_key": issued.api_key})
                );
            } else {
                println!("key_id:  {}\napi_key: {}", issued.id, issued.api_key);
                eprintln!("(the API key is shown only this once)");
            }
        }
        KeyCommand::Revoke { key, database } => {
            let pool = connect(&database).await?;
            let found = tenants::find_key(&pool, &key).await?;
            let k = tenants::revoke_key(&pool, found.tenant_id, found.id).await?;
            eprintln!(
                "key {} ({}) of tenant {} revoked at {}; every Hermes refuses it within 5 s",
                k.id,
                k.prefix,
                k.tenant_id,
                when(k.revoked_at)
            );
        }
        KeyCommand::Rotate {
            key,
            overlap_seconds,
            json,
            database,
        } => {
            let pool = connect(&database).await?;
            let found = tenants::find_key(&pool, &key).await?;
            let overlap = chrono::Duration::try_seconds(overlap_seconds)
                .context("--overlap-seconds is 0 to 2592000")?;
            let (issued, expires_at) =
                tenants::rotate_key(&pool, found.tenant_id, found.id, overlap).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key_id": issued.id, "prefix": issued.prefix, "api_key": issued.api_key, "replaces": found.id, "replaced_key_expires_at": expires_at})
                );
            } else {
                println!("key_id:  {}\napi_key: {}", issued.id, issued.api_key);
                eprintln!(
                    "(the API key is shown only this once; key {} works until {})",
                    found.prefix,
                    when(Some(expires_at))
                );
            }
        }
    }
    Ok(())
}
