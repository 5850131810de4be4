//! Connecting to Postgres, creating the database when it is missing, and migrations.

use crate::secret::Secret;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Parses a database URL. A URL that names no user connects as `PGUSER`, else the login user
/// (`USER`), else `postgres`, as psql does; sqlx alone would use a placeholder name.
pub fn options(url: &Secret<String>) -> anyhow::Result<PgConnectOptions> {
    let raw = url.expose();
    let options =
        PgConnectOptions::from_str(raw).context("DATABASE_URL is not a valid Postgres URL")?;
    if names_user(raw) {
        return Ok(options);
    }
    let user = ["PGUSER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "postgres".to_owned());
    Ok(options.username(&user))
}

fn names_user(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.contains('@') || url.contains("user=")
}

pub async fn connect(url: &Secret<String>, max_connections: u32) -> anyhow::Result<PgPool> {
    let options =
        options(url)?.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("cannot connect to Postgres (is it running? is DATABASE_URL right?)")
}

/// Creates the database named in `url` if it does not exist (for `hermes dev` and tests).
pub async fn ensure_database(url: &Secret<String>) -> anyhow::Result<()> {
    let options = options(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("cannot connect to Postgres (is it running? is DATABASE_URL right?)")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        // A concurrent creator may win the race; that is fine.
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut admin)
            .await
        {
            let already = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !already {
                return Err(e).context("cannot create the database");
            }
        }
    }
    admin.close().await.ok();
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("database migration failed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn tells_whether_a_url_names_its_user() {
        assert!(super::names_user("postgres://ada@localhost/db"));
        assert!(super::names_user("postgres://ada:pw@localhost:5432/db"));
        assert!(super::names_user(
            "postgres:///db?host=/run/postgresql&user=ada"
        ));
        assert!(!super::names_user(
            "postgres:///hermes?host=/var/run/postgresql"
        ));
        assert!(!super::names_user("postgres://localhost/db"));
    }
}
