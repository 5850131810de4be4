//! Key rotation (issue 13): while every process holds the new key and the previous one,
//! `hermes provider rekey` seals every provider account and webhook secret again under the new
//! key; afterwards the new key alone serves them, and the old one opens nothing.

use crate::crash::{SECRET, mock_provider};
use crate::harness::{TestApp, WITHIN, message, server_args};
use crate::providers::{account, install_accounts};
use crate::webhooks::{Receiver, receiver};
use hermes::app::{self, Roles};
use hermes_infra::provider_accounts::{self, AccountError, SealingKey};
use serde_json::json;
use std::time::{Duration, Instant};

/// Stops `running` and starts a Hermes on its database (same tenant and API key) with these
/// sealing keys, once it serves the account `sms`.
async fn restart(running: TestApp, current: &str, previous: Option<&str>) -> TestApp {
    let TestApp {
        app,
        database_url,
        client,
        api_key,
        tenant_id,
    } = running;
    drop(app);
    let mut args = server_args(&database_url);
    args.secret_key = Some(current.to_owned());
    args.previous_secret_key = previous.map(str::to_owned);
    let app = app::start(&args, Roles::all())
        .await
        .expect("hermes starts");
    let deadline = Instant::now() + WITHIN;
    while app.providers.names() != ["sms"] {
        assert!(Instant::now() < deadline, "{:?}", app.providers.names());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    TestApp {
        app,
        database_url,
        client,
        api_key,
        tenant_id,
    }
}

/// Sends one SMS, sees it delivered by the account `sms`, and its notice reach the receiver.
async fn delivered_with_notice(app: &TestApp, notices: &Receiver) {
    let before = notices.got("ok").len();
    let id = app
        .send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(m["attempts"][0]["provider"], "sms", "{m}");
    let deadline = Instant::now() + WITHIN;
    while notices.got("ok").len() == before {
        assert!(Instant::now() < deadline, "no webhook notice for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `hermes provider rekey` against the app's database with `env`: its stdout, or its stderr.
async fn rekey_cli(app: &TestApp, env: &[(&str, &str)]) -> Result<String, String> {
    let out = app.hermes_cli_with(&["provider", "rekey"], env).await;
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_every_account_and_webhook_secret_working() {
    let (old_hex, new_hex) = (SealingKey::generate_hex(), SealingKey::generate_hex());
    let old = SealingKey::from_hex(&old_hex).unwrap();
    let mock = mock_provider().await;
    let (notices, hook) = receiver().await;
    let hook = format!("{hook}/ok");

    // Before: the old key sealed an account and a webhook endpoint's secret.
    let first = TestApp::spawn_with(|args| args.secret_key = Some(old_hex.clone())).await;
    let sms = account(
        "sms",
        "mock",
        10,
        &[("base_url", mock.base_url().as_str()), ("secret", SECRET)],
    );
    install_accounts(&first, &old, std::slice::from_ref(&sms)).await;
    let (status, body) = first
        .call(
            &first.api_key,
            reqwest::Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": hook, "event_types": ["message.delivered"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    delivered_with_notice(&first, &notices).await;

    // During: a process holding both keys serves them; the rekey seals them again under the new.
    let during = restart(first, &new_hex, Some(&old_hex)).await;
    delivered_with_notice(&during, &notices).await;
    let err = rekey_cli(&during, &[("HERMES_SECRET_KEY", &new_hex)])
        .await
        .unwrap_err();
    assert!(
        err.contains("cannot be opened"),
        "without the old key: {err}"
    );
    let out = rekey_cli(
        &during,
        &[
            ("HERMES_SECRET_KEY", &new_hex),
            ("HERMES_SECRET_KEY_PREVIOUS", &old_hex),
        ],
    )
    .await
    .unwrap();
    assert!(
        out.contains("1 provider accounts, 1 webhook secrets"),
        "{out}"
    );
    delivered_with_notice(&during, &notices).await;

    // After: the new key alone serves everything; the old one opens nothing.
    let after = restart(during, &new_hex, None).await;
    delivered_with_notice(&after, &notices).await;
    assert!(matches!(
        provider_accounts::list(&after.app.pool, &old).await,
        Err(AccountError::Unsealable(name)) if name == "sms"
    ));
    let again = rekey_cli(&after, &[("HERMES_SECRET_KEY", &new_hex)])
        .await
        .unwrap();
    assert!(
        again.contains("0 provider accounts, 0 webhook secrets"),
        "{again}"
    );

    // Refused: the previous key without the new one, and a previous key that is not a key.
    let err = rekey_cli(&after, &[("HERMES_SECRET_KEY_PREVIOUS", &old_hex)])
        .await
        .unwrap_err();
    assert!(err.contains("without HERMES_SECRET_KEY"), "{err}");
    let err = rekey_cli(
        &after,
        &[
            ("HERMES_SECRET_KEY", &new_hex),
            ("HERMES_SECRET_KEY_PREVIOUS", "not-a-key"),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("HERMES_SECRET_KEY_PREVIOUS: the secret key must be 64 hex characters"),
        "{err}"
    );
    // A signing secret neither key opens stops the rekey, named.
    sqlx::query("UPDATE webhook_endpoints SET secret = '\\x00'")
        .execute(&after.app.pool)
        .await
        .unwrap();
    let err = rekey_cli(
        &after,
        &[
            ("HERMES_SECRET_KEY", &new_hex),
            ("HERMES_SECRET_KEY_PREVIOUS", &old_hex),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("signing secret opens with neither key"),
        "{err}"
    );
}
