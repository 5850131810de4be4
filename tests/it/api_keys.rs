//! API keys as an operator manages them with `hermes tenant key ...`: listed without the key,
//! issued with a name, revoked, and then refused by every running Hermes within 5 s.

use crate::harness::{TestApp, server_args};
use hermes::app::{self, Roles};
use hermes_infra::tenants;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How soon a revocation must take effect on every process.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(5);

/// Runs the `hermes` binary against the test's database; returns stdout, or panics with stderr.
async fn hermes(app: &TestApp, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("hermes runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

async fn status_with(client: &reqwest::Client, base_url: &str, key: &str) -> u16 {
    client
        .get(format!("{base_url}/v1/messages"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_process_within_5_s() {
    let app = TestApp::spawn().await;
    // A second Hermes process on the same database: its key cache is its own.
    let other = app::start(
        &server_args(&app.database_url),
        Roles::parse("api").unwrap(),
    )
    .await
    .expect("second hermes starts");
    let tenant = app.tenant_id.to_string();

    let created: Value = serde_json::from_str(
        &hermes(
            &app,
            &[
                "tenant", "key", "create", "--tenant", &tenant, "--name", "ci", "--json",
            ],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&prefix) && key.len() > prefix.len());

    // Both processes accept it (and cache it), as they do the tenant's first key.
    for base in [&app.app.base_url, &other.base_url] {
        assert_eq!(status_with(&app.client, base, &key).await, 200);
        assert_eq!(status_with(&app.client, base, &app.api_key).await, 200);
    }

    // Listed by id, prefix and name, never the key.
    let listed = hermes(&app, &["tenant", "key", "list", "--tenant", &tenant])
        .await
        .unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        !listed.contains(&key) && !listed.contains(&app.api_key),
        "{listed}"
    );
    let line = listed.lines().find(|l| l.contains(&prefix)).unwrap();
    assert!(
        line.contains("name=ci") && line.contains("revoked=-"),
        "{line}"
    );

    // Revoked by its prefix: both processes refuse it within the deadline.
    let revoked_at = Instant::now();
    hermes(&app, &["tenant", "key", "revoke", &prefix])
        .await
        .unwrap();
    for base in [&app.app.base_url, &other.base_url] {
        loop {
            match status_with(&app.client, base, &key).await {
                401 => break,
                200 => assert!(
                    revoked_at.elapsed() < REVOCATION_DEADLINE,
                    "{base} still accepts the key {:?} after its revocation",
                    revoked_at.elapsed()
                ),
                other => panic!("{base} answered {other}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The tenant's other key still works; the listing shows the revocation.
    assert_eq!(
        status_with(&app.client, &other.base_url, &app.api_key).await,
        200
    );
    let listed = hermes(
        &app,
        &["tenant", "key", "list", "--tenant", &tenant, "--json"],
    )
    .await
    .unwrap();
    let keys: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ci = keys.iter().find(|k| k["name"] == "ci").unwrap();
    assert!(ci["revoked_at"].is_string(), "{ci}");
    assert!(
        keys.iter()
            .filter(|k| k["name"] != "ci")
            .all(|k| k["revoked_at"].is_null())
    );
}

#[tokio::test]
async fn key_commands_refuse_what_they_cannot_do() {
    let app = TestApp::spawn().await;
    let nobody = uuid::Uuid::now_v7().to_string();

    let err = hermes(&app, &["tenant", "key", "create", "--tenant", &nobody])
        .await
        .unwrap_err();
    assert!(err.contains(&format!("no tenant {nobody}")), "{err}");
    let err = hermes(&app, &["tenant", "key", "list", "--tenant", &nobody])
        .await
        .unwrap_err();
    assert!(err.contains("no tenant"), "{err}");
    let err = hermes(&app, &["tenant", "key", "revoke", "hms_zzzz"])
        .await
        .unwrap_err();
    assert!(err.contains("no API key matches"), "{err}");
    let err = hermes(&app, &["tenant", "key", "revoke", &nobody])
        .await
        .unwrap_err();
    assert!(err.contains("no API key matches"), "{err}");

    // A prefix that names two keys is refused, and nothing is revoked. Among 17 keys, two share
    // their first hex digit.
    let mut first_digits = std::collections::HashMap::new();
    let shared = loop {
        let issued = tenants::create_key(&app.app.pool, app.tenant_id, None)
            .await
            .unwrap();
        let digit = issued.prefix[4..5].to_owned();
        if first_digits.insert(digit.clone(), ()).is_some() {
            break format!("hms_{digit}");
        }
    };
    let err = hermes(&app, &["tenant", "key", "revoke", &shared])
        .await
        .unwrap_err();
    assert!(err.contains("API keys match"), "{err}");
    let keys = tenants::list_keys(&app.app.pool, app.tenant_id)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| k.revoked_at.is_none()));

    // The whole key revokes too; revoking it again changes nothing.
    hermes(&app, &["tenant", "key", "revoke", &app.api_key])
        .await
        .unwrap();
    let revoked = |keys: Vec<tenants::ApiKeyInfo>| -> Vec<_> {
        keys.into_iter()
            .filter_map(|k| k.revoked_at.map(|t| (k.id, t)))
            .collect()
    };
    let first = revoked(
        tenants::list_keys(&app.app.pool, app.tenant_id)
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), 1);
    hermes(&app, &["tenant", "key", "revoke", &first[0].0.to_string()])
        .await
        .unwrap();
    let second = revoked(
        tenants::list_keys(&app.app.pool, app.tenant_id)
            .await
            .unwrap(),
    );
    assert_eq!(first, second);
    assert_eq!(
        status_with(&app.client, &app.app.base_url, &app.api_key).await,
        401
    );
}
