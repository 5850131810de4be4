//! Secrets stay off the command line (which every user of the machine can read): the sealing key
//! comes from the environment or a file, and `--config` values from a file (`@PATH`) or stdin (`-`).

use crate::harness::fresh_database;
use hermes_infra::provider_accounts::{self, SealingKey};
use hermes_infra::{Secret, db};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

async fn hermes(
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<String, String> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hermes"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env_remove("HERMES_SECRET_KEY")
        .env_remove("HERMES_SECRET_KEY_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("hermes runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[tokio::test]
async fn provider_secrets_come_from_files_stdin_and_the_environment() {
    let database_url = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("hermes-secrets-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_hex = SealingKey::generate_hex();
    let key_file = dir.join("secret-key");
    std::fs::write(&key_file, format!("{key_hex}\n")).unwrap();
    let token_file = dir.join("auth-token");
    std::fs::write(&token_file, "token-from-a-file\n").unwrap();
    let key_path = key_file.to_str().unwrap();
    let token_arg = format!("auth_token=@{}", token_file.display());
    let set = |name: &'static str| {
        vec![
            "provider",
            "set",
            name,
            "--plugin",
            "twilio",
            "--allow-host",
            "api.twilio.com",
            "--config",
            "account_sid=AC0123",
            "--config",
            "from=-",
            "--config",
            "note=@@literal",
        ]
    };

    // The key from a file, a value from a file and one from stdin.
    let mut args = set("twilio-file");
    args.extend(["--config", &token_arg, "--secret-key-file", key_path]);
    hermes(&database_url, &args, &[], b"+15005550006\n")
        .await
        .unwrap();
    // The key from the environment.
    let mut args = set("twilio-env");
    args.extend(["--config", &token_arg]);
    hermes(
        &database_url,
        &args,
        &[("HERMES_SECRET_KEY", &key_hex)],
        b"+15005550007",
    )
    .await
    .unwrap();

    let pool = db::connect(&Secret::new(database_url.clone()), 2)
        .await
        .unwrap();
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let accounts = provider_accounts::list(&pool, &key).await.unwrap();
    let value = |account: &str, k: &str| {
        accounts.iter().find(|a| a.name == account).unwrap().config[k]
            .expose()
            .clone()
    };
    assert_eq!(value("twilio-file", "auth_token"), "token-from-a-file");
    assert_eq!(value("twilio-file", "from"), "+15005550006");
    assert_eq!(value("twilio-file", "note"), "@literal");
    assert_eq!(value("twilio-env", "from"), "+15005550007");

    // Refused: the key as a flag, no key at all, a key both ways, a file that is not there.
    let err = hermes(
        &database_url,
        &["provider", "list", "--secret-key", &key_hex],
        &[],
        b"",
    )
    .await
    .unwrap_err();
    assert!(err.contains("unexpected argument '--secret-key'"), "{err}");
    let err = hermes(&database_url, &["provider", "list"], &[], b"")
        .await
        .unwrap_err();
    assert!(err.contains("HERMES_SECRET_KEY"), "{err}");
    let err = hermes(
        &database_url,
        &["provider", "list", "--secret-key-file", key_path],
        &[("HERMES_SECRET_KEY", &key_hex)],
        b"",
    )
    .await
    .unwrap_err();
    assert!(err.contains("not both"), "{err}");
    let mut args = set("twilio-missing");
    args.extend(["--config", "auth_token=@/nonexistent/hermes-token"]);
    let err = hermes(
        &database_url,
        &args,
        &[("HERMES_SECRET_KEY", &key_hex)],
        b"x",
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("auth_token") && err.contains("/nonexistent/hermes-token"),
        "{err}"
    );
    // The listing shows keys, never values.
    let listed = hermes(
        &database_url,
        &["provider", "list"],
        &[("HERMES_SECRET_KEY", &key_hex)],
        b"",
    )
    .await
    .unwrap();
    assert!(
        listed.contains("twilio-file") && !listed.contains("token-from-a-file"),
        "{listed}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `hermes migrate` with its environment exactly as given (no `DATABASE_URL` of the test's).
async fn migrate_with(env: &[(&str, &str)]) -> Result<(), String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_URL_FILE")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("hermes runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[tokio::test]
async fn the_database_url_can_come_from_a_file() {
    let database_url = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("hermes-secrets-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("database-url");
    std::fs::write(&file, format!("{database_url}\n")).unwrap();
    let path = file.to_str().unwrap();

    migrate_with(&[("DATABASE_URL_FILE", path)]).await.unwrap();
    let pool = db::connect(&Secret::new(database_url.clone()), 1)
        .await
        .unwrap();
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(migrations > 0, "the database in the file was migrated");

    // Refused: both ways (which one would win is a guess), and a file that is not there.
    let err = migrate_with(&[("DATABASE_URL_FILE", path), ("DATABASE_URL", &database_url)])
        .await
        .unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");
    let err = migrate_with(&[("DATABASE_URL_FILE", "/nonexistent/hermes-database-url")])
        .await
        .unwrap_err();
    assert!(err.contains("/nonexistent/hermes-database-url"), "{err}");
    assert!(!err.contains(&database_url), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
