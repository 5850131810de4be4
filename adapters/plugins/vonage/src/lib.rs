//! The Vonage SMS API as a Hermes provider plugin (channel: SMS; receipts: delivery-receipt
//! callbacks).
//!
//! # Sending
//! Spec `sms-1.2.0.openapi.json`, operation `send-an-sms`: `POST {base_url}/sms/json`, with the
//! body `application/x-www-form-urlencoded` as the spec declares (schema `NewMessage`):
//! `api_key`, `api_secret`, `from`, `to` (E.164 without the `+`), `text`, `type=unicode` when the
//! text is not GSM-7, `client-ref` = `<message-id>:<attempt-id>` and `callback` = the attempt's
//! callback URL. `callback` is limited to 100 characters: a longer callback URL is left out (and
//! logged), so the receipt goes to the account's default delivery-receipt webhook, which should be
//! Hermes's `/v1/webhooks/vonage`, and is matched through `client-ref`. The answer is always
//! HTTP 200: `messages[].status` `"0"` is success and the provider message id is that part's
//! `message-id` (a long text is split into parts; once any part is accepted, the attempt is).
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `base_url` | API root, default `https://rest.nexmo.com` (the request goes to `{base_url}/sms/json`) |
//! | `api_key` | the account's API key; required |
//! | `api_secret` | the account's API secret; required |
//! | `from` | the sender: a Vonage number (E.164) or an alphanumeric sender id; required |
//! | `signature_secret` | the account's signature secret: delivery receipts must be signed with it; without it every callback is refused |
//! | `signature_method` | the dashboard's signing method: `md5hash` (default, "MD5 hash"), `md5` (HMAC-MD5), `sha1`, `sha256`, `sha512` (HMAC); an unknown value refuses every callback |
//!
//! # Error classification (send)
//! Codes are `vonage_<status>` for a non-zero `messages[].status` (the spec's `x-errors`), else
//! `http_<status>`; other plugin-side codes are `plugin_config`, `invalid_content`,
//! `unsupported_channel`, `connect_failed`, `fetch_denied`.
//! - Permanent (the recipient or the content): 2 Missing Parameters, 3 Invalid Parameters,
//!   6 Invalid Message (e.g. unrecognized number prefix), 7 Number Barred, 12 Message Too Long,
//!   22 Invalid Network Code (for the destination), 33 Number De-activated; HTTP 4xx other than
//!   those below; content Hermes cannot send (`invalid_content`).
//! - Retryable: 1 Throttled, 4 Invalid Credentials, 5 Internal Error, 8 Partner Account Barred,
//!   9 Partner Quota Violation (credit), 10 Too Many Existing Binds, 11 Account Not Enabled For
//!   HTTP, 14 Invalid Signature, 15 Invalid Sender Address (`from`), 23 Invalid Callback Url,
//!   29 Non-Whitelisted Destination (demo account), 32 Signature And API Secret Disallowed, any
//!   undocumented status; HTTP 429 and 503 (with `Retry-After` seconds as `retry-after-seconds`),
//!   other 5xx, 401, 403, 404, 408; missing or invalid config (`plugin_config`). A misconfigured
//!   or throttled account is not the recipient's fault: another account may well succeed.
//! - An HTTP 200 whose body cannot be read (no `messages`, no `status`) -> in doubt.
//! - Fetch errors: Connect/Denied -> retryable rejection (nothing left); Timeout/Transport/TooLarge
//!   -> in doubt (Vonage may have sent the message).
//!
//! # Delivery receipts
//! Vonage calls the callback URL as a GET (fields in the query) or a POST (form-encoded or JSON),
//! per the account's webhook setting, with `msisdn`, `to`, `network-code`, `messageId`, `price`,
//! `status`, `scts`, `err-code`, `api-key`, `client-ref`, `message-timestamp` and, for signed
//! webhooks, `timestamp`, `nonce` and `sig`. The signature is checked first, in constant time,
//! by the documented algorithm ("Signing messages"): every field but `sig` sorted by name, `&` and
//! `=` in values replaced by `_`, joined as `&name=value...`; `md5hash` = hex(MD5(that +
//! secret)), the others hex(HMAC(secret, that)). A receipt without a valid `sig` (unsigned,
//! tampered, a field repeated) is `invalid-signature`.
//!
//! The signed `timestamp` (seconds since the epoch; Vonage signs each request as it sends it) must
//! be at most 5 minutes old, with 1 minute of clock skew allowed either way: a receipt without
//! one, or outside that window, is a replay and refused as `invalid-signature`.
//!
//! The message and attempt come from the signed `client-ref` (`<message-id>:<attempt-id>`) only,
//! never from the callback URL's path, which Vonage does not sign (a captured receipt replayed
//! onto another attempt's URL still names its own attempt, and Hermes refuses a receipt whose
//! ids differ from the per-attempt URL's); a receipt without a Hermes `client-ref` is
//! `malformed`. Receipts carry no provider message id (each part of a long text has its own;
//! the attempt keeps the one the send returned).
//!
//! | DLR `status` | Hermes receipt |
//! |---|---|
//! | `delivered` | `delivered` |
//! | `expired`, `failed`, `rejected` | `failed`, code `vonage_<err-code>` (`vonage_<status>` when `err-code` is missing or `0`) |
//! | `accepted`, `buffered`, `unknown`, anything else | none (empty list) |
//!
//!
//! # Testing against Prism
//! The spec's server is `https://rest.nexmo.com/sms` with the path `/{format}`; Prism ignores the
//! server's path and would serve `POST /json`. The provider tests (`adapters/tests/providers`)
//! derive the same spec with the server `https://rest.nexmo.com` and the path `/sms/{format}`, so
//! `base_url = http://127.0.0.1:4010` reaches it at `/sms/json`. Prism validates the body against
//! `NewMessage`: `api_key` must be 8 characters, `api_secret` 6 to 32, `to` 7 to 15 digits.

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

mod callback;
mod classify;
mod inbound;
mod request;

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider-with-inbound",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError};
use hermes::provider::types::{
    Accepted, Channel, InboundMessage, Receipt, ReceiptError, ReceiptStatus, ReceiptStyle,
    Rejection,
};

use callback::{Incoming, Refusal, SignatureMethod};
use request::{Chan, Config};

struct VonagePlugin;

export!(VonagePlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        api_key: host::config("api_key"),
        api_secret: host::config("api_secret"),
        from: host::config("from"),
    }
}

hermes_guest_kit::wit_glue!();
hermes_guest_kit::receipt_glue!();

impl Guest for VonagePlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "vonage".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Sms],
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        let channel = match request.channel {
            Channel::Sms => Chan::Sms,
            Channel::Email => Chan::Other("email"),
            Channel::Push => Chan::Other("push"),
            Channel::Whatsapp => Chan::Other("whatsapp"),
        };
        let http = match request::build(
            &config(),
            channel,
            &request.message_id,
            &request.attempt_id,
            &request.to,
            &request.content,
            &request.callback_url,
        ) {
            Ok(http) => http,
            Err(reject) => return failed(reject.into()),
        };
        if http.callback_omitted {
            host::log(
                Level::Warn,
                &format!(
                    "attempt {}: the callback URL is longer than Vonage's 100 characters; the \
                     receipt will go to the account's default webhook",
                    request.attempt_id
                ),
            );
        }
        post(
            "Vonage",
            &request.attempt_id,
            hermes_guest_kit::HttpRequest {
                url: http.url,
                headers: http.headers,
                body: http.body,
            },
            classify::classify,
        )
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        let secret = host::config("signature_secret").unwrap_or_default();
        let method = SignatureMethod::from_config(host::config("signature_method").as_deref());
        if method.is_none() {
            host::log(
                Level::Error,
                "signature_method is not one of md5hash, md5, sha1, sha256, sha512: every \
                 callback is refused",
            );
        }
        let handled = callback::handle(&secret, method, incoming(&request));
        let receipt = handled.map_err(|r| refused(r, "callbacks", "signed delivery receipt"))?;
        let receipts = match receipt {
            None => Vec::new(),
            Some(receipt) => {
                host::metric("receipts_parsed", 1.0);
                vec![Receipt {
                    message_id: receipt.message_id,
                    attempt_id: receipt.attempt_id,
                    status: receipt.parsed.status.into(),
                    // Each part of a long text has its own `messageId`, while the attempt
                    // knows the first part's: naming the part would make Hermes refuse the
                    // other parts' receipts as about another message. The signed `client-ref`
                    // already binds the receipt to its attempt.
                    provider_message_id: None,
                    error: receipt.parsed.error.map(Into::into),
                }]
            }
        };
        Ok(CallbackOutcome {
            receipts,
            reply: None,
        })
    }

    fn parse_inbound(request: CallbackRequest) -> Result<InboundOutcome, CallbackError> {
        let secret = host::config("signature_secret").unwrap_or_default();
        let method = SignatureMethod::from_config(host::config("signature_method").as_deref());
        let handled = inbound::handle(&secret, method, incoming(&request));
        let messages = handled
            .map_err(|r| refused(r, "inbound", "signed inbound message"))?
            .map(|m| InboundMessage {
                from: m.from,
                to: m.to,
                text: m.text,
                provider_message_id: m.message_id,
            })
            .into_iter()
            .collect();
        Ok(InboundOutcome {
            messages,
            reply: None,
        })
    }
}

/// A refused webhook as Hermes is told it, counted (`<metric>_invalid_signature`,
/// `<metric>_stale`); a replay is logged too, since it may be an attack or a slow clock.
fn refused(refusal: Refusal, metric: &str, what: &str) -> CallbackError {
    match refusal {
        Refusal::InvalidSignature => {
            host::metric(&format!("{metric}_invalid_signature"), 1.0);
            CallbackError::InvalidSignature
        }
        Refusal::Stale => {
            host::log(
                Level::Warn,
                &format!(
                    "{what} refused: its timestamp is missing or outside the window (a replay)"
                ),
            );
            host::metric(&format!("{metric}_stale"), 1.0);
            CallbackError::InvalidSignature
        }
        Refusal::Malformed(why) => CallbackError::Malformed(why),
    }
}

/// The webhook request as the signature checks read it, at the host's time.
fn incoming(request: &CallbackRequest) -> Incoming<'_> {
    Incoming {
        method: &request.method,
        url: &request.url,
        headers: &request.headers,
        body: &request.body,
        now_secs: host::now_millis() / 1000,
    }
}
