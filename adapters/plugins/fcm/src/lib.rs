//! Firebase Cloud Messaging HTTP v1 as a Hermes provider plugin: push notifications to
//! registration tokens. Receipt style `none`: FCM reports acceptance only.
//!
//! # Sending
//! `fcm.projects.messages.send` (`/work/shared/provider-specs/fcm/fcm-v1.openapi.json`, path
//! `/v1/{parent}/messages:send` with `parent` = `projects/{project_id}`; Prism routes the same
//! request through `fcm-v1.openapi.prism-patched.json`'s `/v1/projects/{projectId}/messages:send`):
//!
//! `POST {base_url}/v1/projects/{project_id}/messages:send`, `Authorization: Bearer <token>`,
//! JSON body
//! `{"message": {"token": <to>, "notification": {"title", "body"}, "data": {k: string}}}`:
//! `notification` carries only the fields Hermes's push content has (left out when neither), and
//! `data` only when there is some. FCM data values must be strings, so a non-string JSON value in
//! Hermes's `data` (number, boolean, null, array, object) is sent as its JSON text (`3` -> `"3"`,
//! `{"a":1}` -> `"{\"a\":1}"`). Content with neither a non-blank title/body nor data, a wrong
//! channel, or an empty token is `invalid_content` (permanent). A 200 answer is the sent `Message`:
//! its `name` (`projects/{project_id}/messages/{message_id}`) is the provider message id.
//!
//! # Authentication (OAuth 2.0 service account)
//! Google's "Using OAuth 2.0 for Server to Server Applications" flow:
//! 1. `host::cache-get("access_token")`: a cached token is used as is.
//! 2. Otherwise a JWT is signed RS256 with the key's `private_key` (PKCS#8 PEM; PKCS#1 accepted):
//!    header `{"alg":"RS256","typ":"JWT","kid":<private_key_id>}` (no `kid` if the key has no
//!    `private_key_id`), claims
//!    `{"iss":<client_email>,"scope":"https://www.googleapis.com/auth/firebase.messaging",
//!    "aud":<token_uri>,"iat":now,"exp":now+3600}`, now from `host::now-millis` (module `jwt`).
//! 3. `POST <token_uri>` (form) `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`
//!    answers `{access_token, expires_in, token_type}`; the token is cached with
//!    `host::cache-set("access_token", token, expires_in - 300)` (not cached when that is 0).
//!    The whole flow (module `flow`) sees the host through a trait, so it is unit-tested
//!    natively against a fake host.
//! 4. A 401 from FCM drops the cached token (`cache-set` with ttl 0) and the attempt is rejected
//!    as retryable; the next attempt fetches a fresh token.
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `service_account_json` | the Google service-account key file (JSON: `type` = `service_account`, `client_email`, `private_key`, `private_key_id`, `token_uri`, `project_id`); required |
//! | `project_id` | the Firebase project id (or number); default the key's `project_id` |
//! | `base_url` | FCM API root, default `https://fcm.googleapis.com` |
//!
//! The token endpoint is the key's `token_uri` (default `https://oauth2.googleapis.com/token`): a
//! test key can point it at a mock token server. Missing or invalid config (no key, not JSON, no
//! `client_email`/`private_key`, an unreadable private key, no project id) is a retryable
//! `plugin_config` rejection; error messages never echo the key.
//!
//! # Error classification (send)
//! FCM's errors are Google's JSON error `{"error": {"code", "message", "status", "details"}}`;
//! the code is `fcm_<errorCode>` from the `type.googleapis.com/google.firebase.fcm.v1.FcmError`
//! detail, else `fcm_<status>` (Google's canonical status such as `UNAUTHENTICATED`), else
//! `http_<HTTP status>` (module `classify`). Other plugin codes: `plugin_config`,
//! `invalid_content`, `unsupported_channel`, `connect_failed`, `fetch_denied`, `fcm_auth`.
//! - Permanent (the token or the content): `UNREGISTERED` (404, the token is dead),
//!   `INVALID_ARGUMENT` (400: malformed token, payload too big, reserved data key...),
//!   `SENDER_ID_MISMATCH` (403: the token belongs to another project), any other 4xx not listed
//!   below, `invalid_content`.
//! - Retryable: `QUOTA_EXCEEDED` / 429 and `UNAVAILABLE` / 503 (with `Retry-After` seconds as
//!   `retry-after-seconds`), `INTERNAL` / other 5xx, 408, and account problems:
//!   `THIRD_PARTY_AUTH_ERROR` (APNs / web push credentials), HTTP 401 (token refused: dropped from
//!   the cache), 403 without an FCM code (API disabled, no permission), 404 without an FCM code
//!   (wrong project id or base URL), `plugin_config`, `unsupported_channel`.
//! - Token endpoint: a 4xx (`invalid_grant`: revoked or deleted key, wrong `client_email`, clock
//!   skew...) and an unusable 2xx answer are retryable `fcm_auth` (an account problem); 408, 429
//!   and 5xx are retryable `http_<status>` with `Retry-After`. No message has left at that point,
//!   so every token failure is a rejection: Connect -> `connect_failed`, Denied -> `fetch_denied`,
//!   and Timeout/TooLarge/Transport -> `fcm_auth`, all retryable (never in doubt).
//! - Fetch errors of the send itself: Connect/Denied -> retryable rejection (nothing left);
//!   Timeout/Transport/TooLarge -> in doubt (FCM may have sent the message).
//!
//! # Callbacks
//! FCM has no delivery-receipt webhook: `parse-callback` always answers
//! `malformed("FCM sends no callbacks")`.

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

mod auth;
mod classify;
mod flow;
mod jwt;
mod request;

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError, Request};
use hermes::provider::types::{Accepted, Channel, ReceiptStyle, Rejection};

use flow::{HttpResponse, SendOutcome};
use hermes_guest_kit::FetchFailure;
use request::{Chan, Config, HttpRequest};

struct FcmPlugin;

export!(FcmPlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        project_id: host::config("project_id"),
        service_account_json: host::config("service_account_json"),
    }
}

/// The real host behind [`flow::Host`].
struct WitHost;

impl flow::Host for WitHost {
    fn cache_get(&self, key: &str) -> Option<String> {
        host::cache_get(key)
    }

    fn cache_set(&self, key: &str, value: &str, ttl_seconds: u32) {
        host::cache_set(key, value, ttl_seconds);
    }

    fn now_millis(&self) -> u64 {
        host::now_millis()
    }

    fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, FetchFailure> {
        http_client::fetch(&Request {
            method: request.method.to_owned(),
            url: request.url,
            headers: request.headers,
            body: request.body,
        })
        .map(|response| HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
        .map_err(FetchFailure::from)
    }
}

hermes_guest_kit::wit_glue!();

impl Guest for FcmPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "fcm".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Push],
            receipt_style: ReceiptStyle::None,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        let channel = match request.channel {
            Channel::Push => Chan::Push,
            Channel::Sms => Chan::Other("sms"),
            Channel::Email => Chan::Other("email"),
            Channel::Whatsapp => Chan::Other("whatsapp"),
        };
        let outcome = match request::prepare(&config(), channel, &request.to, &request.content) {
            Ok(prepared) => flow::deliver(&WitHost, &prepared),
            Err(reject) => SendOutcome::Rejected(reject),
        };
        match outcome {
            SendOutcome::Accepted(provider_message_id) => {
                if provider_message_id.is_none() {
                    host::log(
                        Level::Warn,
                        &format!(
                            "attempt {}: accepted but FCM's answer had no name",
                            request.attempt_id
                        ),
                    );
                }
                host::metric("sends_accepted", 1.0);
                SendResult::Accepted(Accepted {
                    provider_message_id,
                })
            }
            SendOutcome::Rejected(reject) => {
                // Codes and provider messages only: never credentials or bodies.
                host::log(
                    Level::Info,
                    &format!(
                        "attempt {}: rejected, {} ({})",
                        request.attempt_id, reject.code, reject.message
                    ),
                );
                host::metric("sends_rejected", 1.0);
                SendResult::Rejected(reject.into())
            }
            SendOutcome::InDoubt(message) => {
                host::log(
                    Level::Warn,
                    &format!("attempt {}: in doubt, {message}", request.attempt_id),
                );
                host::metric("sends_in_doubt", 1.0);
                SendResult::InDoubt(message)
            }
        }
    }

    fn parse_callback(_request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        host::metric("callbacks_refused", 1.0);
        Err(CallbackError::Malformed(
            "FCM sends no callbacks".to_owned(),
        ))
    }
}
