//! A provider account's sealed configuration is bound to where its credentials go: someone who
//! can write the table but does not hold `HERMES_SECRET_KEY` cannot hand them to another plugin or
//! host. Rows sealed the old way (bound to the name only) are resealed on first read.

use crate::harness::TestApp;
use crate::providers::account;
use hermes_infra::provider_accounts::{self, AccountError, SealingKey};

const MOCK_SECRET: &str = "mock-secret-for-sealing-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_account_opens_only_with_its_plugin_hosts_and_allow_private() {
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let pool = &app.app.pool;
    let original = account("sms", "mock", 10, &[("secret", MOCK_SECRET)]);
    provider_accounts::put(pool, &key, &original).await.unwrap();
    assert_eq!(
        provider_accounts::list(pool, &key).await.unwrap(),
        vec![original.clone()]
    );

    for tamper in [
        "UPDATE provider_accounts SET plugin = 'evil'",
        "UPDATE provider_accounts SET allowed_hosts = ARRAY['attacker.example']",
        "UPDATE provider_accounts SET allow_private = NOT allow_private",
    ] {
        provider_accounts::put(pool, &key, &original).await.unwrap();
        sqlx::query(tamper).execute(pool).await.unwrap();
        assert!(
            matches!(
                provider_accounts::list(pool, &key).await,
                Err(AccountError::Unsealable(name)) if name == "sms"
            ),
            "{tamper}"
        );
    }

    // A row sealed the old way, its associated data the name alone, still opens, and is resealed
    // with the full binding: after that, changing its plugin makes it unsealable too.
    provider_accounts::put(pool, &key, &original).await.unwrap();
    let legacy = key.seal(
        serde_json::to_vec(&serde_json::json!({"secret": MOCK_SECRET}))
            .unwrap()
            .as_slice(),
        "sms",
    );
    sqlx::query("UPDATE provider_accounts SET sealed_config = $1")
        .bind(&legacy)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        provider_accounts::list(pool, &key).await.unwrap(),
        vec![original.clone()]
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT sealed_config FROM provider_accounts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_ne!(stored, legacy, "resealed");
    sqlx::query("UPDATE provider_accounts SET plugin = 'evil'")
        .execute(pool)
        .await
        .unwrap();
    assert!(matches!(
        provider_accounts::list(pool, &key).await,
        Err(AccountError::Unsealable(_))
    ));
}
