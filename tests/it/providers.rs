//! Provider accounts as an operator manages them: sealed at rest, swapped in while Hermes runs,
//! and the plugin version that served each attempt on its event.

use crate::harness::TestApp;
use hermes_infra::Secret;
use hermes_infra::provider_accounts::{self, ProviderAccount, SealingKey};
use serde_json::{Value, json};
use std::time::Duration;

use crate::harness::WITHIN;
const MOCK_SECRET: &str = "mock-receipt-secret-for-swap-test";

/// An SMS that ends as soon as a provider accepts it.
pub(crate) fn accepted_sms() -> Value {
    json!({
        "to": {"phone": "+15550101234"},
        "content": {"text": "hello"},
        "cascade": [{"channel": "sms", "timeout_seconds": 30, "until": "accepted"}],
    })
}

/// What served the message's first attempt (`served_by` on its `AttemptDispatched`).
pub(crate) async fn served_by(app: &TestApp, id: &str) -> String {
    app.wait_for_status(id, "delivered", WITHIN).await;
    let events = app.events(id).await;
    let dispatched = events
        .iter()
        .find(|e| e["type"] == "AttemptDispatched")
        .expect("dispatched");
    dispatched["data"]["served_by"]
        .as_str()
        .unwrap_or_else(|| panic!("no served_by: {dispatched}"))
        .to_owned()
}

pub(crate) fn account(
    name: &str,
    plugin: &str,
    priority: i32,
    config: &[(&str, &str)],
) -> ProviderAccount {
    ProviderAccount {
        name: name.to_owned(),
        plugin: plugin.to_owned(),
        priority,
        allowed_hosts: vec!["127.0.0.1".to_owned()],
        allow_private: true,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new((*v).to_owned())))
            .collect(),
        prices: Default::default(),
        max_per_second: None,
        tenant_id: None,
    }
}

/// Stores `accounts`, sealed with `key`, and waits until the running Hermes has loaded exactly
/// them (the accounts reload every 2 s; until then the fallback serves).
pub(crate) async fn install_accounts(
    app: &TestApp,
    key: &SealingKey,
    accounts: &[ProviderAccount],
) {
    for account in accounts {
        provider_accounts::put(&app.app.pool, key, account)
            .await
            .unwrap();
    }
    let mut expected: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    expected.sort_unstable();
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let mut names = app.app.providers.names();
        names.sort();
        if names == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "accounts {expected:?} not loaded: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a new message is served by `expected` (the accounts reload every 2 s).
pub(crate) async fn wait_until_served_by(app: &TestApp, expected: &str) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let id = app.send(&accepted_sms()).await;
        let got = served_by(app, &id).await;
        if got == expected {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still served by {got}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn accounts_are_sealed_at_rest_and_swapped_in_while_running() {
    let key_hex = SealingKey::generate_hex();
    let plugins_dir = tempfile_dir();
    let app = TestApp::spawn_with(|args| {
        args.secret_key = Some(key_hex.clone());
        args.plugins_dir = Some(plugins_dir.clone());
        args.mock_provider_secret = Some(MOCK_SECRET.to_owned());
    })
    .await;
    let key = SealingKey::from_hex(&key_hex).unwrap();

    // No account configured: the built-in mock serves, and says which version it is.
    let first = app.send(&accepted_sms()).await;
    assert_eq!(served_by(&app, &first).await, "mock@0.1.0");

    // An operator drops a plugin into the plugins directory (the evil test plugin, which accepts
    // every SMS and is not offered built in) and configures two accounts; the higher priority one
    // (lower number) uses it. Running Hermes picks both up without a restart.
    std::fs::write(
        plugins_dir.join("evil.wasm"),
        hermes_adapters::plugin::builtin::EVIL,
    )
    .unwrap();
    let mock_url = app.app.mock.as_ref().unwrap().base_url();
    provider_accounts::put(
        &app.app.pool,
        &key,
        &account(
            "mock",
            "mock",
            100,
            &[("base_url", &mock_url), ("secret", MOCK_SECRET)],
        ),
    )
    .await
    .unwrap();
    provider_accounts::put(
        &app.app.pool,
        &key,
        &account("sms-first", "evil", 10, &[("token", "evil-token-value")]),
    )
    .await
    .unwrap();
    wait_until_served_by(&app, "evil@0.1.0").await;

    // The credentials are not stored in the clear.
    let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed_config FROM provider_accounts")
        .fetch_all(&app.app.pool)
        .await
        .unwrap();
    assert_eq!(sealed.len(), 2);
    for blob in &sealed {
        for secret in [MOCK_SECRET.as_bytes(), b"evil-token-value"] {
            assert!(
                !blob.windows(secret.len()).any(|w| w == secret),
                "a credential is stored in the clear"
            );
        }
    }

    // A broken new version of the plugin is refused; the current one keeps serving.
    std::fs::write(plugins_dir.join("evil.wasm"), b"not a component").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await; // two reloads
    let id = app.send(&accepted_sms()).await;
    assert_eq!(served_by(&app, &id).await, "evil@0.1.0");

    // A plugin file that is another plugin (the mock, which calls itself "mock") is refused too.
    std::fs::write(
        plugins_dir.join("evil.wasm"),
        hermes_adapters::plugin::builtin::MOCK,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let id = app.send(&accepted_sms()).await;
    assert_eq!(served_by(&app, &id).await, "evil@0.1.0");

    // Removing the account swaps back to the mock account: the messages go on.
    std::fs::remove_file(plugins_dir.join("evil.wasm")).unwrap();
    assert!(
        provider_accounts::delete(&app.app.pool, "sms-first")
            .await
            .unwrap()
    );
    wait_until_served_by(&app, "mock@0.1.0").await;
    std::fs::remove_dir_all(&plugins_dir).ok();
}

#[tokio::test]
async fn accounts_sealed_with_another_key_are_refused_at_start() {
    let app = TestApp::spawn().await;
    let other = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
    provider_accounts::put(
        &app.app.pool,
        &other,
        &account("mock", "mock", 100, &[("base_url", "http://127.0.0.1:9")]),
    )
    .await
    .unwrap();
    // Without the key, and with the wrong key, Hermes will not start on these accounts.
    for key in [None, Some(SealingKey::generate_hex())] {
        let mut args = crate::harness::server_args(&app.database_url);
        args.secret_key = key.clone();
        let err = match hermes::app::start(&args, hermes::app::Roles::all()).await {
            Ok(_) => panic!("started with key {key:?}"),
            Err(err) => format!("{err:#}"),
        };
        assert!(
            err.contains("HERMES_SECRET_KEY"),
            "unclear error without the right key: {err}"
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hermes-plugins-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn serve_refuses_to_start_without_accounts_unless_the_mock_is_asked_for() {
    let database_url = crate::harness::fresh_database().await;
    let mut args = crate::harness::server_args(&database_url);
    args.mock_provider = false;
    let err = match hermes::app::start(&args, hermes::app::Roles::all()).await {
        Ok(_) => panic!("started with no provider account and no mock"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("no provider account") && err.contains("--mock-provider"),
        "{err}"
    );

    // Asked for explicitly: the mock serves as account `mock`.
    args.mock_provider = true;
    let app = hermes::app::start(&args, hermes::app::Roles::all())
        .await
        .expect("starts with --mock-provider");
    assert_eq!(app.providers.names(), ["mock"]);
    assert!(app.mock.is_some());
    drop(app);

    // With an account configured, it starts without the mock, and no mock serves.
    let key_hex = SealingKey::generate_hex();
    let pool = hermes_infra::db::connect(&Secret::new(database_url.clone()), 2)
        .await
        .unwrap();
    provider_accounts::put(
        &pool,
        &SealingKey::from_hex(&key_hex).unwrap(),
        &account(
            "twilio-test",
            "twilio",
            100,
            &[
                ("base_url", "http://127.0.0.1:9"),
                ("account_sid", "AC00000000000000000000000000000000"),
                ("auth_token", "token"),
                ("from", "+15005550006"),
            ],
        ),
    )
    .await
    .unwrap();
    args.mock_provider = false;
    args.secret_key = Some(key_hex);
    let app = hermes::app::start(&args, hermes::app::Roles::all())
        .await
        .expect("starts with an account");
    assert_eq!(app.providers.names(), ["twilio-test"]);
    assert!(app.mock.is_none());
}
