//! Twilio Programmable Messaging as a Hermes provider plugin: SMS, and WhatsApp through Twilio.
//!
//! # Sending
//! `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form-encoded, HTTP Basic auth
//! `account_sid:auth_token`, with `To`, `From` (or `MessagingServiceSid`), `Body` and
//! `StatusCallback` = the attempt's callback URL. On WhatsApp, `To` and `From` carry the
//! `whatsapp:` prefix (added when missing). The provider message id is the Message's `sid`.
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `base_url` | API root, default `https://api.twilio.com` |
//! | `account_sid` | the Account SID (`AC` + 32 hex digits); required (an inbound message must carry it as `AccountSid`) |
//! | `auth_token` | the Auth Token: API password and callback signing key; required |
//! | `from` | SMS sender (E.164 number or alphanumeric sender id), or a Messaging Service SID (`MG...`) |
//! | `messaging_service_sid` | a Messaging Service SID, used when `from` is not set (and for WhatsApp without `whatsapp_from`) |
//! | `whatsapp_from` | the WhatsApp sender number (`whatsapp:` prefix optional) |
//!
//! # Error classification (send)
//! Codes are `twilio_<Twilio error code>` when Twilio's JSON error (`{code, message, more_info,
//! status}`) has one, else `http_<status>`; other plugin-side codes are `plugin_config`,
//! `invalid_content`, `unsupported_channel`, `connect_failed`, `fetch_denied`.
//! - Permanent (the recipient or the content): 21211 invalid `To`, 21214, 21217, 21602, 21604,
//!   21610 unsubscribed, 21612, 21614 not a mobile number, 21617, 21635, 63024, any other 4xx
//!   not listed below, and content Hermes cannot send (`invalid_content`).
//! - Retryable: 429 / 20429 and 503 (with `Retry-After` seconds as `retry-after-seconds`), other
//!   5xx, 408, and account problems: HTTP 401/403/404 and codes 20003 (authentication), 20005,
//!   20404, 21212, 21408, 21603, 21606, 21659, 21660, 21703-21705, 63007, missing or invalid
//!   config (`plugin_config`). A misconfigured account is not the recipient's fault: another
//!   account or provider may well succeed, so these are retryable rather than failing the message.
//! - Fetch errors: Connect/Denied -> retryable rejection (nothing left); Timeout/Transport/TooLarge
//!   -> in doubt (Twilio may have created the message).
//!
//! # Status callbacks
//! Form-encoded POSTs to the attempt's callback URL (the message and attempt ids come from that
//! URL: a callback without them is `Malformed`). `X-Twilio-Signature` must be
//! base64(HMAC-SHA1(auth_token, full URL + each POST parameter name and value, sorted by name)),
//! compared in constant time; the URL is accepted with or without its default port, as Twilio's
//! helper libraries do.
//!
//! | `MessageStatus` | Hermes receipt |
//! |---|---|
//! | `queued`, `accepted`, `sending`, `scheduled` | none (empty list) |
//! | `sent` | `sent` |
//! | `delivered`, `partially_delivered` | `delivered` |
//! | `read` (WhatsApp) | `read` |
//! | `undelivered`, `failed`, `canceled` | `failed`, code `twilio_<ErrorCode>` (`twilio_<status>` without one) |
//! | anything else (`receiving`, `received`, new statuses) | none |
//!
//! The `StatusCallback` URL carries Twilio's connection overrides (`#rc=5&rp=5xx,ct,rt&tt=15000`,
//! see `request::CONNECTION_OVERRIDES`), so Twilio retries a callback Hermes could not take; the
//! signature is accepted over the URL with or without that fragment.
//!
//! # Status lookup (reconciliation)
//! `lookup-status` GETs the Message resource by its SID (`lookup`) and reads its `status`,
//! `error_code` and `error_message` by the table above. An attempt without a SID (in doubt) is
//! not looked up.
//!
//! # Inbound messages
//! `parse-inbound` (world `provider-with-lookup-and-inbound`) takes Twilio's incoming-message
//! webhook: set the number's (or Messaging Service's) "A message comes in" URL to Hermes's
//! `/v1/inbound/{account}`, HTTP POST (GET works too: the fields are then in the signed URL).
//! Per Twilio's "Twilio's request to your incoming message Webhook URL"
//! (<https://www.twilio.com/docs/messaging/guides/webhook-request>) the request is form-encoded
//! with `MessageSid`, `SmsSid`, `AccountSid`, `MessagingServiceSid`, `From`, `To`, `Body`,
//! `NumMedia`, `NumSegments` and more (`OptOutType` with Advanced Opt-Out), and is signed with
//! `X-Twilio-Signature` like status callbacks ("Webhooks security",
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>); sources in detail in
//! `inbound.rs`.
//! - The signature is checked first, in constant time, by the same code as status callbacks
//!   (over every parameter received, including ones Twilio adds later): missing or wrong ->
//!   `invalid-signature`.
//! - The signed `AccountSid` must be the account's `account_sid`: another account's (or none, or
//!   an account without `account_sid`) -> `malformed`, logged.
//! - `From` (the sender) and `To` (the account's number) are given as Twilio sends them (E.164
//!   with `+`); `Body` is the text, raw (empty for a media-only MMS); `MessageSid` (else
//!   `SmsSid`) is the provider message id. A message without `From` or `To` is `malformed`. A
//!   message from or to a channel address (`whatsapp:+...`, `rcs:...`) is left out (an empty
//!   list): Hermes's keywords are SMS opt-outs.
//! - The answer is `200` with an empty TwiML `<Response>` (`text/xml`), not Hermes's default JSON
//!   count: Twilio "expects to receive TwiML in response", an empty `<Response>` sends no reply
//!   to the recipient, and a JSON body would be logged in the account's debugger as error 12300
//!   (Invalid Content-Type) for every inbound message.
//! - Not taken: webhooks signed by a Webhooks Rule's shared key (HMAC-SHA256, announced by
//!   `X-Twilio-Webhooks-Signature-Settings`) and JSON-bodied webhooks (`bodySHA256`): both fail
//!   the signature check.

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

mod callback;
mod classify;
mod inbound;
mod lookup;
mod request;

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider-with-lookup-and-inbound",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError};
use hermes::provider::types::{
    Accepted, CallbackReply, Channel, InboundMessage, ReceiptError, ReceiptStatus, ReceiptStyle,
    Rejection,
};

use inbound::Refusal;

use request::{Chan, Config};

struct TwilioPlugin;

export!(TwilioPlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        account_sid: host::config("account_sid"),
        auth_token: host::config("auth_token"),
        from: host::config("from"),
        messaging_service_sid: host::config("messaging_service_sid"),
        whatsapp_from: host::config("whatsapp_from"),
    }
}

hermes_guest_kit::wit_glue!();
hermes_guest_kit::receipt_glue!();

impl Guest for TwilioPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "twilio".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Sms, Channel::Whatsapp],
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        let channel = match request.channel {
            Channel::Sms => Chan::Sms,
            Channel::Whatsapp => Chan::Whatsapp,
            Channel::Email => Chan::Other("email"),
            Channel::Push => Chan::Other("push"),
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
        post("Twilio", &request.attempt_id, http, classify::classify)
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        let auth_token = host::config("auth_token").unwrap_or_default();
        // The signature covers the POST parameters; a GET has none (its query is in the URL).
        let params = if request.method.eq_ignore_ascii_case("POST") {
            callback::form_params(&request.body)
        } else {
            Vec::new()
        };
        let signature = hermes_guest_kit::header(&request.headers, callback::SIGNATURE_HEADER);
        // Verify before anything else: nothing unauthenticated is even looked at.
        if !callback::verify(&auth_token, &request.url, &params, signature) {
            host::metric("callbacks_invalid_signature", 1.0);
            return Err(CallbackError::InvalidSignature);
        }
        let (Some(message_id), Some(attempt_id)) = (request.message_id, request.attempt_id) else {
            return Err(CallbackError::Malformed(
                "Twilio callbacks must come to the attempt's callback URL (with its message and \
                 attempt ids)"
                    .to_owned(),
            ));
        };
        let parsed = callback::interpret(&params).map_err(CallbackError::Malformed)?;
        let receipts = match parsed {
            None => Vec::new(),
            Some(parsed) => {
                host::metric("receipts_parsed", 1.0);
                vec![receipt(message_id, attempt_id, parsed)]
            }
        };
        Ok(CallbackOutcome {
            receipts,
            reply: None,
        })
    }

    /// The Message resource by its SID. An attempt without one (in doubt: Twilio's answer never
    /// came) cannot be looked up: Twilio has no field Hermes set that it can be found by.
    fn lookup_status(request: LookupRequest) -> Result<Option<Receipt>, String> {
        let Some(sid) = request.provider_message_id else {
            return Ok(None);
        };
        let (url, headers) = lookup::build(&config(), &sid)?;
        let response = http_client::fetch(&http_client::Request {
            method: "GET".to_owned(),
            url,
            headers,
            body: Vec::new(),
        })
        .map_err(|err| format!("Twilio could not be asked: {err:?}"))?;
        host::metric("lookups", 1.0);
        let parsed = lookup::interpret(response.status, &response.body)?;
        Ok(parsed.map(|parsed| receipt(request.message_id, request.attempt_id, parsed)))
    }

    /// A recipient's message to one of the account's numbers (see "Inbound messages").
    fn parse_inbound(request: CallbackRequest) -> Result<InboundOutcome, CallbackError> {
        let auth_token = host::config("auth_token").unwrap_or_default();
        let account_sid = host::config("account_sid");
        let handled = inbound::handle(
            &auth_token,
            account_sid.as_deref(),
            inbound::Incoming {
                method: &request.method,
                url: &request.url,
                headers: &request.headers,
                body: &request.body,
            },
        );
        let messages = match handled {
            Ok(None) => Vec::new(),
            Ok(Some(m)) => {
                host::metric("inbound_messages", 1.0);
                vec![InboundMessage {
                    from: m.from,
                    to: m.to,
                    text: m.text,
                    provider_message_id: m.message_id,
                }]
            }
            Err(Refusal::InvalidSignature) => {
                host::metric("inbound_invalid_signature", 1.0);
                return Err(CallbackError::InvalidSignature);
            }
            Err(Refusal::OtherAccount(theirs)) => {
                let theirs = theirs.as_deref().unwrap_or("no account");
                host::log(
                    Level::Warn,
                    &format!(
                        "signed inbound message refused: it is for {theirs}, not this account's \
                         `account_sid`"
                    ),
                );
                host::metric("inbound_other_account", 1.0);
                return Err(CallbackError::Malformed(format!(
                    "the inbound message is for {theirs}, not this provider account's"
                )));
            }
            Err(Refusal::NoAccountSid) => {
                host::log(
                    Level::Warn,
                    "inbound message refused: the account has no `account_sid` to check it against",
                );
                return Err(CallbackError::Malformed(
                    "the provider account has no `account_sid`".to_owned(),
                ));
            }
            Err(Refusal::Malformed(why)) => return Err(CallbackError::Malformed(why)),
        };
        Ok(InboundOutcome {
            messages,
            reply: Some(CallbackReply {
                status: 200,
                content_type: inbound::TWIML_CONTENT_TYPE.to_owned(),
                body: inbound::EMPTY_TWIML.as_bytes().to_vec(),
            }),
        })
    }
}

fn receipt(message_id: String, attempt_id: String, parsed: callback::Parsed) -> Receipt {
    Receipt {
        message_id,
        attempt_id,
        status: parsed.status.into(),
        provider_message_id: parsed.provider_message_id,
        error: parsed.error.map(Into::into),
    }
}
