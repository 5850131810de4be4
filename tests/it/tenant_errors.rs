//! What a tenant sees of a failed send: the stable code and a generic message, never the host's
//! refusal (internal addresses, the account's allow-list) or a provider's raw text.

use crate::harness::{TestApp, WITHIN, message};
use crate::providers::{account, install_accounts};
use hermes_infra::provider_accounts::SealingKey;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fetch_shows_its_code_but_not_the_internal_address() {
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    // The account's base URL is on loopback, which it does not allow: the host refuses the fetch.
    let mock_url = app.app.mock.as_ref().unwrap().base_url();
    let mut sms = account(
        "sms-internal",
        "mock",
        10,
        &[("base_url", &mock_url), ("secret", "s")],
    );
    sms.allow_private = false;
    install_accounts(&app, &key, &[sms]).await;

    let id = app
        .send(&message(json!({"phone": "+15550101234"}), &[("sms", 30)]))
        .await;
    let m = app.wait_for_status(&id, "failed", WITHIN).await;
    let error = &m["attempts"][0]["error"];
    assert!(
        matches!(
            error["code"].as_str(),
            Some("plugin_denied" | "fetch_denied")
        ),
        "{error}"
    );
    // The host's refusal says the address is private (loopback) and names the account's policy.
    let shown = serde_json::to_string(&app.events(&id).await).unwrap() + &m.to_string();
    for detail in ["127.0.0.1", "private", "loopback", "allow"] {
        assert!(
            !shown.contains(detail),
            "{detail:?} reached the tenant: {shown}"
        );
    }
}
