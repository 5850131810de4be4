//! The WhatsApp Business Cloud API (Meta Graph API) as a Hermes provider plugin.
//!
//! # Sending
//! `POST {base_url}/{api_version}/{phone_number_id}/messages` (spec
//! `business-messaging-api_v23.0.yaml`, path `/{Version}/{Phone-Number-ID}/messages`, operationId
//! `sendMessage`), JSON, `Authorization: Bearer {access_token}`, body:
//! `{messaging_product: "whatsapp", recipient_type: "individual", to, type, ..., biz_opaque_callback_data}`
//! - `to`: the address's digits (a leading `+` and spaces, dashes, dots, parentheses dropped);
//!   anything else is a permanent `invalid_recipient`.
//! - content without `template`: `type: "text", text: {body: <text>}`;
//!   content with `template`: `type: "template", template: {name, language: {policy:
//!   "deterministic", code}, components?}` (`components` passed through verbatim).
//! - `biz_opaque_callback_data: "<message-id>:<attempt-id>"`: Meta echoes it in every status
//!   webhook of the message, which is how the account-wide webhook finds the attempt.
//!
//! The provider message id is `messages[0].id` (the `wamid.`).
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `base_url` | API root, default `https://graph.facebook.com` |
//! | `api_version` | Graph API version path segment, default `v23.0` |
//! | `access_token` | system-user or business access token (Bearer); required to send |
//! | `phone_number_id` | the business phone number's ID (not the number); required to send |
//! | `app_secret` | the Meta app's secret: key of `X-Hub-Signature-256`; without it every notification is refused |
//! | `verify_token` | the token set in the App Dashboard for the GET verification request; without it every check is refused |
//!
//! # Error classification (send)
//! Graph API errors `{error: {message, type, code, error_subcode, error_data: {details},
//! fbtrace_id}}` give the code `whatsapp_<code>` (else `http_<status>`); the message carries
//! `message`, `error_data.details`, the subcode and `fbtrace_id`. Other plugin codes:
//! `plugin_config`, `invalid_content`, `invalid_recipient`, `connect_failed`, `fetch_denied`.
//! Per Meta's "WhatsApp error codes" reference:
//!
//! | codes | meaning | Hermes |
//! |---|---|---|
//! | 100, 131008, 131009 | invalid / missing parameter | permanent |
//! | 131026 | message undeliverable (not on WhatsApp, old client, terms not accepted) | permanent |
//! | 131047 | re-engagement: outside the 24-hour window (needs a template) | permanent |
//! | 131021, 131049, 131050, 130472 | recipient is sender, ecosystem protection, user stopped marketing, experiment | permanent |
//! | 131051, 131052, 131053 | unsupported type, media download/upload error | permanent |
//! | 132000, 132001, 132005, 132007, 132012, 132015, 132016 | template problems (params, missing, too long, policy, paused, disabled) | permanent |
//! | 135000 | generic user error | permanent |
//! | 4, 80007, 130429, 131048, 131056 | rate limits (app, WABA, throughput, spam, pair) | retryable, `Retry-After` honoured |
//! | 1, 2, 131000, 131016 | unknown / service / something went wrong / unavailable | retryable |
//! | 0, 3, 10, 190, 200-299, 33, 368, 131005, 131031, 131037, 131042, 131045, 131057, 133010 | token, permission, policy block, account locked, payment, registration, maintenance | retryable (account problem) |
//! | any other code, or no Graph error | by HTTP status: 401/403/404/408/429 and 5xx retryable, other 4xx permanent | |
//!
//! Missing/invalid config (`plugin_config`) is retryable; bad content (`invalid_content`) and a
//! non-numeric address (`invalid_recipient`) are permanent. `retry-after-seconds` is set from a
//! numeric `Retry-After` on rate-limit codes, 429 and 503.
//! Fetch errors: Connect/Denied -> retryable rejection (nothing left); Timeout/Transport/TooLarge
//! -> in doubt (Meta may have accepted the message).
//!
//! # Webhooks (account-wide: `/v1/webhooks/whatsapp`, no ids in the URL)
//! - `GET` verification request `?hub.mode=subscribe&hub.challenge=C&hub.verify_token=T`: when
//!   `T` equals `verify_token` (constant time) the reply is `200 text/plain C`, with no receipts;
//!   otherwise `invalid-signature`.
//! - `POST` event notification: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw
//!   body)>` is verified first, in constant time (`invalid-signature` when missing or wrong).
//!   Then each `entry[].changes[]` with `field: "messages"` is read for `value.statuses[]`; a
//!   status gives a receipt only when its `biz_opaque_callback_data` is `<message-id>:<attempt-id>`
//!   (statuses of messages Hermes did not send, inbound `messages`, other fields and objects give
//!   none). The provider message id is the status's `id`.
//!
//! | `statuses[].status` | Hermes receipt |
//! |---|---|
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `read` | `read` |
//! | `failed` | `failed`, code `whatsapp_<errors[0].code>` (`whatsapp_failed` without one), message `errors[0].message` (or `title`) + `error_data.details` |
//! | `played`, `deleted`, anything else | none |

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

mod callback;
mod classify;
mod request;

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError};
use hermes::provider::types::{
    Accepted, CallbackReply, Channel, Receipt, ReceiptError, ReceiptStatus, ReceiptStyle, Rejection,
};

use hermes_guest_kit::{Reject, header};
use request::{Attempt, Config};

struct WhatsappPlugin;

export!(WhatsappPlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        api_version: host::config("api_version"),
        access_token: host::config("access_token"),
        phone_number_id: host::config("phone_number_id"),
    }
}

hermes_guest_kit::wit_glue!();
hermes_guest_kit::receipt_glue!();

impl Guest for WhatsappPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "whatsapp".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Whatsapp],
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        if request.channel != Channel::Whatsapp {
            return failed(
                Reject::unsupported_channel(
                    "the WhatsApp Cloud API serves only the whatsapp channel",
                )
                .into(),
            );
        }
        let http = match request::build(
            &config(),
            Attempt {
                message_id: &request.message_id,
                attempt_id: &request.attempt_id,
                to: &request.to,
                content: &request.content,
            },
        ) {
            Ok(http) => http,
            Err(reject) => return failed(reject.into()),
        };
        post(
            "the WhatsApp Cloud API",
            &request.attempt_id,
            http,
            classify::classify,
        )
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        if request.method.eq_ignore_ascii_case("GET") {
            // The verification request: the verify token is its only authentication.
            let verify_token = host::config("verify_token").unwrap_or_default();
            let Some(challenge) = callback::subscription_challenge(&request.url, &verify_token)
            else {
                host::metric("callbacks_invalid_signature", 1.0);
                return Err(CallbackError::InvalidSignature);
            };
            host::log(Level::Info, "answered a webhook verification request");
            return Ok(CallbackOutcome {
                receipts: Vec::new(),
                reply: Some(CallbackReply {
                    status: 200,
                    content_type: "text/plain".to_owned(),
                    body: challenge.into_bytes(),
                }),
            });
        }
        if !request.method.eq_ignore_ascii_case("POST") {
            return Err(CallbackError::Malformed(format!(
                "WhatsApp webhooks are GET or POST, not {}",
                request.method
            )));
        }
        let app_secret = host::config("app_secret").unwrap_or_default();
        // Verify before anything else: nothing unauthenticated is even parsed.
        if !callback::verify_signature(
            &app_secret,
            &request.body,
            header(&request.headers, callback::SIGNATURE_HEADER),
        ) {
            host::metric("callbacks_invalid_signature", 1.0);
            return Err(CallbackError::InvalidSignature);
        }
        let parsed = callback::receipts(&request.body).map_err(CallbackError::Malformed)?;
        host::metric("receipts_parsed", parsed.len() as f64);
        let receipts = parsed
            .into_iter()
            .map(|parsed| Receipt {
                message_id: parsed.message_id,
                attempt_id: parsed.attempt_id,
                status: parsed.status.into(),
                provider_message_id: parsed.provider_message_id,
                error: parsed.error.map(Into::into),
            })
            .collect();
        Ok(CallbackOutcome {
            receipts,
            reply: None,
        })
    }
}
