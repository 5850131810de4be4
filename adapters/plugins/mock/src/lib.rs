//! The built-in mock provider as a provider plugin: the same wire protocol and the same outcome
//! classification as the native client (`adapters/src/mock/client.rs`), but everything outside the
//! sandbox goes through what the host grants: `fetch` for HTTP and `config` for `base_url` and
//! `secret`, and optionally `channels` (`sms,email`: the channels this account serves; all four
//! by default), so that tests can give two channels to two accounts.

// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider-with-lookup",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError, Request};
// The worlds' `use` puts `PluginInfo`, `SendRequest`, `SendResult`, `CallbackRequest`,
// `CallbackOutcome`, `CallbackError`, `LookupRequest` and `Receipt` at the crate root.
use hermes::provider::types::{
    Accepted, Channel, ReceiptError, ReceiptStatus, ReceiptStyle, Rejection,
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

const SIGNATURE_HEADER: &str = "x-mock-signature";
const SIGNATURE_PREFIX: &str = "sha256=";
/// How much of an unexpected error body ends up in an attempt's error message.
const MAX_ERROR_BODY: usize = 200;

type HmacSha256 = Hmac<Sha256>;

struct MockPlugin;

export!(MockPlugin);

impl Guest for MockPlugin {
    fn describe() -> PluginInfo {
        let all = [
            ("sms", Channel::Sms),
            ("email", Channel::Email),
            ("push", Channel::Push),
            ("whatsapp", Channel::Whatsapp),
        ];
        let wanted = host::config("channels");
        let channels = all
            .into_iter()
            .filter(|(name, _)| {
                wanted
                    .as_deref()
                    .is_none_or(|list| list.split(',').any(|c| c.trim() == *name))
            })
            .map(|(_, channel)| channel)
            .collect();
        PluginInfo {
            name: "mock".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels,
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        match send(&request) {
            Ok(result) | Err(result) => result,
        }
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        // An empty key makes an HMAC anyone can compute: without a secret nothing is accepted.
        let Some(secret) = host::config("secret").filter(|s| !s.is_empty()) else {
            host::log(
                Level::Error,
                "no `secret` configured: every receipt is refused as unsigned",
            );
            return Err(CallbackError::InvalidSignature);
        };
        // Verify before parsing: nothing unauthenticated is even looked at.
        let header = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(SIGNATURE_HEADER))
            .map(|(_, value)| value.as_str());
        if !verify(&secret, &request.body, header) {
            return Err(CallbackError::InvalidSignature);
        }
        let body: ReceiptBody = serde_json::from_slice(&request.body)
            .map_err(|err| CallbackError::Malformed(format!("receipt body: {err}")))?;
        if let (Some(message_id), Some(attempt_id)) = (&request.message_id, &request.attempt_id)
            && (!message_id.eq_ignore_ascii_case(&body.message_id)
                || !attempt_id.eq_ignore_ascii_case(&body.attempt_id))
        {
            return Err(CallbackError::Malformed(format!(
                "the URL is for message {message_id} attempt {attempt_id}, the body for message {} attempt {}",
                body.message_id, body.attempt_id
            )));
        }
        let status = match body.status.as_str() {
            "sent" => ReceiptStatus::Sent,
            "delivered" => ReceiptStatus::Delivered,
            "read" => ReceiptStatus::Read,
            "failed" => ReceiptStatus::Failed,
            other => {
                return Err(CallbackError::Malformed(format!(
                    "unknown receipt status {other:?}"
                )));
            }
        };
        let error = (status == ReceiptStatus::Failed).then(|| ReceiptError {
            code: body.error_code.unwrap_or_else(|| "failed".to_owned()),
            message: body.error_message.unwrap_or_default(),
        });
        host::metric("receipts_parsed", 1.0);
        Ok(CallbackOutcome {
            receipts: vec![Receipt {
                message_id: body.message_id,
                attempt_id: body.attempt_id,
                status,
                provider_message_id: body.provider_message_id,
                error,
            }],
            reply: None,
        })
    }

    /// `GET /messages/{provider id}`, or `GET /attempts/{attempt id}` for an attempt whose send
    /// answer never came (in doubt). 404: the provider does not know it.
    fn lookup_status(request: LookupRequest) -> Result<Option<Receipt>, String> {
        let base_url = host::config("base_url").ok_or("no base_url configured")?;
        let base_url = base_url.trim_end_matches('/');
        let url = match &request.provider_message_id {
            Some(id) => format!("{base_url}/messages/{}", path_segment(id)),
            None => format!("{base_url}/attempts/{}", path_segment(&request.attempt_id)),
        };
        let response = http_client::fetch(&Request {
            method: "GET".to_owned(),
            url,
            headers: vec![("accept".to_owned(), "application/json".to_owned())],
            body: Vec::new(),
        })
        .map_err(|err| format!("the mock provider could not be asked: {err:?}"))?;
        host::metric("lookups", 1.0);
        lookup_answer(response.status, &response.body, request)
    }
}

/// What a status answer means for the attempt asked about.
fn lookup_answer(
    status: u16,
    body: &[u8],
    request: LookupRequest,
) -> Result<Option<Receipt>, String> {
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(format!("the mock provider answered HTTP {status}"));
    }
    let body: StatusBody =
        serde_json::from_slice(body).map_err(|err| format!("unreadable status answer: {err}"))?;
    let status = match body.status.as_str() {
        "queued" => return Ok(None),
        "sent" => ReceiptStatus::Sent,
        "delivered" => ReceiptStatus::Delivered,
        "read" => ReceiptStatus::Read,
        "failed" => ReceiptStatus::Failed,
        other => return Err(format!("unknown status {other:?}")),
    };
    let error = (status == ReceiptStatus::Failed).then(|| ReceiptError {
        code: body.error_code.unwrap_or_else(|| "failed".to_owned()),
        message: body.error_message.unwrap_or_default(),
    });
    Ok(Some(Receipt {
        message_id: request.message_id,
        attempt_id: request.attempt_id,
        status,
        provider_message_id: Some(body.id),
        error,
    }))
}

/// Ids are ours or the mock's (UUIDs, `mock-...`): anything else is percent-encoded.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rejected(code: &str, message: String, retryable: bool) -> SendResult {
    SendResult::Rejected(Rejection {
        code: code.to_owned(),
        message,
        retryable,
        retry_after_seconds: None,
    })
}

/// `Err` carries an early outcome, so `?` reads naturally.
fn send(request: &SendRequest) -> Result<SendResult, SendResult> {
    let base_url = host::config("base_url")
        .ok_or_else(|| rejected("plugin_config", "no base_url configured".to_owned(), true))?;
    let content: serde_json::Value = serde_json::from_str(&request.content).map_err(|err| {
        rejected(
            "invalid_content",
            format!("the content is not JSON: {err}"),
            false,
        )
    })?;
    let channel = match request.channel {
        Channel::Sms => "sms",
        Channel::Email => "email",
        Channel::Push => "push",
        Channel::Whatsapp => "whatsapp",
    };
    let body = serde_json::json!({
        "message_id": request.message_id,
        "attempt_id": request.attempt_id,
        "channel": channel,
        "to": request.to,
        "content": content,
        "callback_url": request.callback_url,
    });
    let http_request = Request {
        method: "POST".to_owned(),
        url: format!("{}/messages", base_url.trim_end_matches('/')),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: serde_json::to_vec(&body).expect("a JSON value always serializes"),
    };
    let response = match http_client::fetch(&http_request) {
        Ok(response) => response,
        // Nothing left: safe to fail over at once.
        Err(FetchError::Connect(err)) => {
            return Err(rejected(
                "connect_failed",
                format!("could not connect to the mock provider: {err}"),
                true,
            ));
        }
        Err(FetchError::Denied(err)) => return Err(rejected("fetch_denied", err, true)),
        Err(FetchError::Timeout) => {
            return Err(SendResult::InDoubt(
                "no answer from the mock provider in time".to_owned(),
            ));
        }
        Err(FetchError::TooLarge) => {
            return Err(SendResult::InDoubt(
                "the mock provider's answer was too large".to_owned(),
            ));
        }
        Err(FetchError::Transport(err)) => {
            return Err(SendResult::InDoubt(format!(
                "the mock provider's answer was lost: {err}"
            )));
        }
    };
    let status = response.status;
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the id.
        let provider_message_id = match serde_json::from_slice::<AcceptedBody>(&response.body) {
            Ok(body) => Some(body.id),
            Err(err) => {
                host::log(
                    Level::Warn,
                    &format!(
                        "attempt {}: accepted but the answer had no readable id: {err}",
                        request.attempt_id
                    ),
                );
                None
            }
        };
        host::metric("sends_accepted", 1.0);
        return Ok(SendResult::Accepted(Accepted {
            provider_message_id,
        }));
    }
    let text = String::from_utf8_lossy(&response.body);
    let (code, message) = error_from_body(status, &text);
    // 4xx is about this request: only 408 and 429 may go better later. Anything else that is not
    // an acceptance says nothing about the recipient, so another provider may well succeed.
    let retryable = if (400..500).contains(&status) {
        status == 408 || status == 429
    } else {
        true
    };
    host::metric("sends_rejected", 1.0);
    Ok(SendResult::Rejected(Rejection {
        code,
        message,
        retryable,
        retry_after_seconds: None,
    }))
}

fn verify(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(tag) = header
        .and_then(|value| value.trim().strip_prefix(SIGNATURE_PREFIX))
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
    else {
        return false;
    };
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    // Constant time.
    mac.verify_slice(&tag).is_ok()
}

fn error_from_body(status: u16, text: &str) -> (String, String) {
    let fallback_code = || format!("http_{status}");
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(ErrorBody { error }) => (
            error.code.unwrap_or_else(fallback_code),
            error.message.unwrap_or_default(),
        ),
        Err(_) => {
            let message = if text.trim().is_empty() {
                canonical_reason(status).to_owned()
            } else {
                text.trim().chars().take(MAX_ERROR_BODY).collect()
            };
            (fallback_code(), message)
        }
    }
}

/// The reason phrases the native client can report (from `http::StatusCode`).
fn canonical_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[derive(Deserialize)]
struct AcceptedBody {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

/// A `GET /messages/{id}` answer.
#[derive(Deserialize)]
struct StatusBody {
    id: String,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
}

/// A receipt as the mock server POSTs it.
#[derive(Deserialize)]
struct ReceiptBody {
    message_id: String,
    attempt_id: String,
    provider_message_id: Option<String>,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
}
