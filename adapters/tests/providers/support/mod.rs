//! Shared by the provider plugin tests: the providers' official specifications, and Prism, the
//! spec-driven mock server that checks each request a plugin makes against them.
//!
//! Used by the `providers` test binary (`adapters/tests/providers/main.rs`, one module per
//! provider) and by the end-to-end cascade in `tests/it`.
#![allow(dead_code)]

pub mod moto;
pub mod prism;
pub mod specs;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hermes_adapters::plugin::{AccountConfig, PluginEngine, PluginLimits, PluginProvider, Secret};
use hermes_adapters::{
    CallbackError, CallbackOutcome, CallbackRequest, Provider, Receipt, SendAccepted, SendRequest,
};
use hermes_domain::message::ChannelContent;
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};

/// The repository's root (the main workspace). This module also serves the root crate's tests
/// (`tests/it`), so it is found by looking up from the crate being tested.
pub fn repo_root() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .find(|dir| dir.join("adapters/plugins").is_dir())
        .expect("the repository root is above the crate")
        .to_path_buf()
}

/// The providers' specifications (`provider-specs/`, see its SOURCES.md): `HERMES_PROVIDER_SPECS`,
/// else `../shared/provider-specs` next to the repository, else `/work/shared/provider-specs`.
pub fn specs_dir() -> PathBuf {
    let candidates = std::env::var_os("HERMES_PROVIDER_SPECS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo_root().join("../shared/provider-specs"),
            PathBuf::from("/work/shared/provider-specs"),
        ]);
    for dir in candidates {
        if dir.join("SOURCES.md").is_file() {
            return dir;
        }
    }
    panic!(
        "the providers' specifications were not found: set HERMES_PROVIDER_SPECS to the \
         provider-specs directory"
    )
}

/// One spec file, e.g. `spec("twilio/twilio_api_v2010.json")`.
pub fn spec(relative: &str) -> PathBuf {
    let path = specs_dir().join(relative);
    assert!(path.is_file(), "no spec at {}", path.display());
    path
}

/// A plugin engine with the default limits.
pub fn engine() -> PluginEngine {
    PluginEngine::new(PluginLimits::default()).expect("the plugin engine starts")
}

/// An account for `name` that may reach the local test servers, with the given config.
pub fn local_account(name: &str, config: &[(&str, &str)]) -> AccountConfig {
    AccountConfig {
        name: name.to_owned(),
        allowed_hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        allow_private: true,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
            .collect(),
    }
}

/// Loads a built-in plugin for a local test account.
pub async fn load(bytes: &[u8], name: &str, config: &[(&str, &str)]) -> Arc<PluginProvider> {
    Arc::new(
        engine()
            .load(bytes, local_account(name, config))
            .await
            .unwrap_or_else(|err| panic!("plugin {name} loads: {err}")),
    )
}

/// An attempt on `channel` to `to`, with the per-attempt callback URL Hermes would give `account`.
pub fn attempt(account: &str, channel: Channel, to: &str, content: ChannelContent) -> SendRequest {
    let message_id = MessageId::new();
    let attempt_id = AttemptId::new();
    SendRequest {
        tenant_id: TenantId::new(),
        message_id,
        attempt_id,
        channel,
        to: to.to_owned(),
        content,
        callback_url: format!(
            "https://hermes.example.com/v1/webhooks/{account}/{message_id}/{attempt_id}"
        ),
    }
}

pub fn sms_text(text: &str) -> ChannelContent {
    ChannelContent::Sms {
        text: text.to_owned(),
    }
}

/// A provider's POST to Hermes: to the attempt's own callback URL when `to_attempt` is given,
/// else to the account-wide webhook `https://hermes.example.com/v1/webhooks/{account}`.
pub fn callback(
    account: &str,
    to_attempt: Option<&SendRequest>,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> CallbackRequest {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    CallbackRequest {
        ids: to_attempt.map(|a| (a.message_id, a.attempt_id)),
        method: http::Method::POST,
        url: to_attempt.map_or_else(
            || format!("https://hermes.example.com/v1/webhooks/{account}"),
            |a| a.callback_url.clone(),
        ),
        headers: map,
        body: body.into(),
    }
}

/// The only receipt of a callback's outcome.
pub fn only_receipt(outcome: Result<CallbackOutcome, CallbackError>) -> Receipt {
    let outcome = outcome.expect("the callback is accepted");
    assert_eq!(outcome.receipts.len(), 1, "{:?}", outcome.receipts);
    outcome.receipts.into_iter().next().unwrap()
}

/// hex(HMAC-SHA256(key, body)), the signature scheme of several providers.
pub fn hmac_sha256_hex(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Sends and expects acceptance, showing Prism's violations when it refused.
pub async fn send_accepted(
    prism: &prism::Prism,
    provider: &PluginProvider,
    request: &SendRequest,
) -> SendAccepted {
    let mark = prism.mark();
    match provider.send(request).await {
        Ok(accepted) => accepted,
        Err(err) => panic!(
            "{} refused the request ({err}); Prism's violations:\n{:#?}",
            provider.name(),
            prism.violations_since(mark)
        ),
    }
}

/// Twilio's documented request signature: base64(HMAC-SHA1(auth token, the full URL followed by
/// every POST parameter's name and value, sorted by name)).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Meta's status webhook (`entry[].changes[].value.statuses[]`) for one attempt, carrying the
/// `biz_opaque_callback_data` Hermes sent with it; `errors` as the Cloud API gives them, or null.
pub fn whatsapp_status(
    message_id: impl std::fmt::Display,
    attempt_id: impl std::fmt::Display,
    status: &str,
    errors: serde_json::Value,
) -> Vec<u8> {
    let mut entry = serde_json::json!({
        "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        "status": status,
        "timestamp": "1751347200",
        "recipient_id": "16505551234",
        "biz_opaque_callback_data": format!("{message_id}:{attempt_id}"),
    });
    if !errors.is_null() {
        entry["errors"] = errors;
    }
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "statuses": [entry],
                },
            }],
        }],
    }))
    .unwrap()
}
