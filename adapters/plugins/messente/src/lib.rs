//! Messente's Omnichannel API as a Hermes provider plugin: SMS and WhatsApp.
//!
//! # Sending
//! `sendOmnimessage`: `POST {base_url}/omnimessage` (Messente API 2.1.0,
//! `provider-specs/messente/openapi.yaml`), JSON, HTTP Basic auth `username:password` (the API
//! key's username and password), body (`components/schemas/Omnimessage`):
//! `{"to": <E.164>, "messages": [<one message>], "dlr_url": <the attempt's callback URL>}` where the
//! message is `{"channel": "sms", "sender"?, "text"}` (schema `SMS`) or, on WhatsApp,
//! `{"channel": "whatsapp", "sender"?, "text": {"body"}}` or
//! `{"channel": "whatsapp", "sender"?, "template": {"name", "language": {"code"}, "components"}}`
//! (schemas `WhatsApp`, `WhatsAppTemplate`; Hermes's template `components` are passed through
//! verbatim, a template wins over text since the spec allows one content kind per message).
//! Exactly one message is sent per omnimessage: Hermes does its own failover, so Messente's
//! multi-channel fallback is not used.
//!
//! **Provider message id:** the `message_id` of our message in the `201` answer
//! (`OmniMessageCreateSuccessResponse.messages[]`, matched by channel), since that is the id every
//! delivery report carries; `omnimessage_id` only when the answer has no message id.
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `base_url` | API root, default `https://api.messente.com/v1` (the spec's `servers`) |
//! | `username` | the API username; required |
//! | `password` | the API password: API credential and the delivery-report signing key; required |
//! | `sender` | SMS sender (phone number or alphanumeric sender name); optional (the spec's `sender` is optional: Messente then uses the account's default) |
//! | `whatsapp_sender` | WhatsApp sender number; optional (the SMS `sender` is not reused for WhatsApp) |
//!
//! # Error classification (send)
//! Codes are `messente_<code>` from the first item of the spec's `ErrorOmnichannel`
//! (`{errors: [{code, title, detail, source}]}`; codes 101 Not found, 102 Forbidden,
//! 103 Unauthorized, 104 Internal Server Error, 105 Invalid data, 106 Missing data, 107 Method not
//! allowed), else `http_<status>`; the message is `title: detail (source: ...)`. Other plugin-side
//! codes are `plugin_config`, `invalid_content`, `unsupported_channel`, `connect_failed`,
//! `fetch_denied`.
//! - Permanent: HTTP 400 (105/106: invalid or missing `to`, text...) unless the error's `source` or
//!   `detail` names the sender or the `dlr_url`; any other 4xx not listed below; content Hermes
//!   cannot send (`invalid_content`).
//! - Retryable: 400 about the sender/`dlr_url` (the account's setup), 401 (103), 402, 403 (102),
//!   404 (101: wrong `base_url`), 405 (107), 408, 429 and 503 (with `Retry-After` seconds as
//!   `retry-after-seconds`), other 5xx (104), missing or invalid config (`plugin_config`). A
//!   misconfigured account is not the recipient's fault.
//! - Fetch errors: Connect/Denied -> retryable rejection (nothing left); Timeout/Transport/TooLarge
//!   -> in doubt (Messente may have created the omnimessage).
//!
//! # Delivery reports
//! JSON POSTs to the omnimessage's `dlr_url`, i.e. the attempt's callback URL, whose message and
//! attempt ids correlate the report (a report without them is `Malformed`). The URL is not
//! signed, only the body, and the body carries no Hermes id: what binds a report to its attempt
//! is its signed `message_id`, which the receipt names and Hermes compares with the provider
//! message id the attempt was accepted with (a captured report replayed onto another attempt's
//! URL is refused, `receipt_provider_id_mismatch`). The signed `timestamp` (the reported status's
//! time, ISO 8601, UTC) must be at most 5 minutes old, with 1 minute of clock skew allowed either
//! way; a report without one, or outside that window, is a replay and refused as
//! `InvalidSignature`. Fields (spec
//! `DeliveryResult` + documentation example): `status`, `channel`, `message_id`, `omnimessage_id`,
//! `to`, `sender`, `err`, `error`, `timestamp`, `price_info`. The `X-Messente-Signature` header
//! must be hex(HMAC-SHA256(`password`, raw body)) (documentation "API Setup / Security": "For
//! Delivery Reports (DLR), the signature is calculated using the Password of the HTTP API Key used
//! to deliver the message", `HMAC_SHA256("$secret", "$http_request_body")`); it is checked first,
//! in constant time; a missing, malformed or wrong signature, or no `password` configured, is
//! `InvalidSignature`.
//!
//! | `status` (spec `Status`, documented meaning) | Hermes receipt |
//! |---|---|
//! | `null` (still being processed), `UNKNOWN` (unknown status reported by the operator), anything else (`ENROUTE`, new statuses) | none (empty list) |
//! | `ACK` (operator accepted the message for delivery), `ACCEPTD` (in the operator's delivery queue) | `sent` |
//! | `DELIVRD` (delivered to the handset) | `delivered` |
//! | `SEEN` (seen by the recipient) | `read` |
//! | `UNDELIV`, `FAILED`, `REJECTD`, `DELETED`, `EXPIRED`, `NACK` | `failed`, code `messente_<err>` (spec `ErrorCodeOmnichannelMachine`: 1 delivery failure, 2 expired, 3 invalid number, 4 crediting error, 5 invalid number format, 6 too many identical messages, 7 sender name not allowed, 8 operator blacklisted, 9 unroutable, 999 temporary error), or `messente_<status in lower case>` when `err` is 0 or absent; message = `error`, else the err's meaning |
//!
//! The receipt's provider message id is the report's `message_id` (else `omnimessage_id`).

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
    Accepted, Channel, Receipt, ReceiptError, ReceiptStatus, ReceiptStyle, Rejection,
};

use request::{Chan, Config};

struct MessentePlugin;

export!(MessentePlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        username: host::config("username"),
        password: host::config("password"),
        sender: host::config("sender"),
        whatsapp_sender: host::config("whatsapp_sender"),
    }
}

hermes_guest_kit::wit_glue!();
hermes_guest_kit::receipt_glue!();

impl Guest for MessentePlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "messente".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Sms, Channel::Whatsapp],
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        let (channel, channel_name) = match request.channel {
            Channel::Sms => (Chan::Sms, "sms"),
            Channel::Whatsapp => (Chan::Whatsapp, "whatsapp"),
            Channel::Email => (Chan::Other("email"), "email"),
            Channel::Push => (Chan::Other("push"), "push"),
        };
        let http = match request::build(
            &config(),
            channel,
            &request.to,
            &request.content,
            &request.callback_url,
        ) {
            Ok(http) => http,
            Err(reject) => return failed(reject.into()),
        };
        post(
            "Messente",
            &request.attempt_id,
            http,
            |status, headers, body| classify::classify(status, headers, body, channel_name),
        )
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        let password = host::config("password").unwrap_or_default();
        let signature = hermes_guest_kit::header(&request.headers, callback::SIGNATURE_HEADER);
        // Verify before anything else: nothing unauthenticated is even looked at.
        if !callback::verify(password.trim(), &request.body, signature) {
            host::metric("callbacks_invalid_signature", 1.0);
            return Err(CallbackError::InvalidSignature);
        }
        if !callback::fresh(
            callback::report_time(&request.body),
            host::now_millis() / 1000,
        ) {
            host::log(
                Level::Warn,
                "signed delivery report refused: its timestamp is missing or outside the window \
                 (a replay)",
            );
            host::metric("callbacks_stale", 1.0);
            return Err(CallbackError::InvalidSignature);
        }
        let (Some(message_id), Some(attempt_id)) = (request.message_id, request.attempt_id) else {
            return Err(CallbackError::Malformed(
                "Messente delivery reports must come to the attempt's callback URL (with its \
                 message and attempt ids)"
                    .to_owned(),
            ));
        };
        let parsed = callback::interpret(&request.body).map_err(CallbackError::Malformed)?;
        let receipts = match parsed {
            None => Vec::new(),
            Some(parsed) => {
                host::metric("receipts_parsed", 1.0);
                vec![Receipt {
                    message_id,
                    attempt_id,
                    status: parsed.status.into(),
                    provider_message_id: parsed.provider_message_id,
                    error: parsed.error.map(Into::into),
                }]
            }
        };
        Ok(CallbackOutcome {
            receipts,
            reply: None,
        })
    }
}
