//! Classifying the Cloud API's answer to `sendMessage`.
//!
//! Success (spec `MessageResponsePayload`): `{messaging_product, contacts: [{input, wa_id}],
//! messages: [{id, message_status?}]}`; `messages[0].id` (a `wamid.`) is the provider message id.
//! Errors are Graph API errors (Graph API "Handling Errors"; spec `ErrorResponse`):
//! `{error: {message, type, code, error_subcode, error_data: {messaging_product, details},
//! fbtrace_id}}`, reported as `whatsapp_<code>`. Codes per Meta's "WhatsApp error codes"
//! (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).

use hermes_guest_kit::{Reject, body_or_status, retryable_status, throttling_status};
use serde::Deserialize;

/// Codes about the recipient or the content: the same request fails everywhere.
const PERMANENT_CODES: &[(u32, &str)] = &[
    (100, "invalid parameter"),
    (130472, "the user's number is part of an experiment"),
    (131008, "required parameter is missing"),
    (131009, "parameter value is not valid"),
    (131021, "recipient cannot be sender"),
    (131026, "message undeliverable"),
    (
        131047,
        "re-engagement message: more than 24 hours since the user last replied",
    ),
    (
        131049,
        "not delivered to maintain healthy ecosystem engagement",
    ),
    (131050, "the user stopped marketing messages"),
    (131051, "unsupported message type"),
    (131052, "media download error"),
    (131053, "media upload error"),
    (132000, "template parameter count mismatch"),
    (132001, "template does not exist"),
    (132005, "template hydrated text too long"),
    (132007, "template format character policy violated"),
    (132012, "template parameter format mismatch"),
    (132015, "template is paused"),
    (132016, "template is disabled"),
    (135000, "generic user error"),
];

/// Throughput limits: retryable, honouring `Retry-After`.
const THROTTLE_CODES: &[u32] = &[
    4,      // API too many calls (app level)
    80007,  // WhatsApp Business Account rate limit
    130429, // Cloud API throughput reached
    131048, // spam rate limit hit (phone number quality)
    131056, // pair rate limit: too many messages to the same user
];

/// Meta-side trouble: retryable.
const SERVER_CODES: &[u32] = &[
    1,      // API unknown (possible server error)
    2,      // API service: temporary downtime or overload
    131000, // something went wrong
    131016, // service unavailable
];

/// This account's setup (token, permissions, payment, policy): not the recipient's fault, so
/// another account may succeed.
const ACCOUNT_CODES: &[u32] = &[
    0,      // AuthException: token expired or invalidated
    3,      // API method: capability or permission
    10,     // permission denied
    33,     // the business phone number was deleted
    190,    // access token expired
    368,    // temporarily blocked for policy violations
    131005, // access denied
    131031, // business account locked
    131037, // display name approval needed
    131042, // business eligibility / payment issue
    131045, // incorrect certificate (phone number not registered)
    131057, // business account in maintenance mode
    133010, // phone number not registered
];

pub use hermes_guest_kit::Outcome;

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    message: Option<String>,
    code: Option<serde_json::Value>,
    error_subcode: Option<serde_json::Value>,
    error_data: Option<ErrorData>,
    fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

/// How Hermes should treat a Cloud API error code (also used for webhook failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Permanent,
    Throttled,
    Server,
    Account,
}

/// The documented class of a Cloud API error code, if it is one this plugin knows.
pub fn kind_of(code: u32) -> Option<Kind> {
    if PERMANENT_CODES.iter().any(|(c, _)| *c == code) {
        Some(Kind::Permanent)
    } else if THROTTLE_CODES.contains(&code) {
        Some(Kind::Throttled)
    } else if SERVER_CODES.contains(&code) {
        Some(Kind::Server)
    } else if ACCOUNT_CODES.contains(&code) || (200..=299).contains(&code) {
        // 200-299: API permission errors.
        Some(Kind::Account)
    } else {
        None
    }
}

/// A short description of the permanent codes, for messages without one.
pub fn describe(code: u32) -> Option<&'static str> {
    PERMANENT_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, what)| *what)
}

pub fn error_code(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the id.
        let id = serde_json::from_slice::<SendResponse>(body)
            .ok()
            .and_then(|r| r.messages.into_iter().next())
            .and_then(|m| m.id)
            .filter(|id| !id.trim().is_empty());
        return Outcome::Accepted(id);
    }
    let parsed = serde_json::from_slice::<GraphErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let graph_code = parsed
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .and_then(error_code);
    let code = match graph_code {
        Some(code) => format!("whatsapp_{code}"),
        None => format!("http_{status}"),
    };
    let message = match &parsed {
        Some(error) => {
            let mut message = error
                .message
                .clone()
                .filter(|m| !m.trim().is_empty())
                .or_else(|| graph_code.and_then(describe).map(str::to_owned))
                .unwrap_or_else(|| format!("WhatsApp Cloud API answered HTTP {status}"));
            if let Some(details) = error
                .error_data
                .as_ref()
                .and_then(|d| d.details.as_deref())
                .filter(|d| !d.trim().is_empty() && !message.contains(d.trim()))
            {
                message.push_str(": ");
                message.push_str(details.trim());
            }
            if let Some(subcode) = error.error_subcode.as_ref().and_then(error_code) {
                message.push_str(&format!(" (subcode {subcode})"));
            }
            if let Some(trace) = error.fbtrace_id.as_deref().filter(|t| !t.is_empty()) {
                message.push_str(&format!(" [fbtrace_id {trace}]"));
            }
            message
        }
        None => body_or_status("WhatsApp Cloud API", status, body),
    };
    let kind = graph_code.and_then(kind_of);
    let retryable = match kind {
        Some(Kind::Permanent) => false,
        Some(Kind::Throttled | Kind::Server | Kind::Account) => true,
        // Unknown code or no Graph error: by HTTP status. Any other 4xx is about this request;
        // anything else (5xx...) says nothing about the recipient.
        None => retryable_status(status),
    };
    let throttled = kind == Some(Kind::Throttled) || throttling_status(status);
    Outcome::Rejected(Reject::new(&code, message, retryable).with_retry_after(throttled, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, headers: &[(&str, &str)], body: &str) -> Reject {
        let headers = hermes_guest_kit::pairs(headers);
        match classify(status, &headers, body.as_bytes()) {
            Outcome::Rejected(reject) => reject,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn graph_error(code: u32, message: &str) -> String {
        serde_json::json!({
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "some details"},
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
            }
        })
        .to_string()
    }

    /// The spec's `sendMessage` 200 "Example response".
    #[test]
    fn a_sent_message_gives_its_wamid() {
        let body = r#"{
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"}],
            "messaging_product": "whatsapp"
        }"#;
        assert_eq!(
            classify(200, &[], body.as_bytes()),
            Outcome::Accepted(Some(
                "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA".to_owned()
            ))
        );
        assert_eq!(classify(200, &[], b"garbage"), Outcome::Accepted(None));
        assert_eq!(
            classify(200, &[], br#"{"messages":[]}"#),
            Outcome::Accepted(None)
        );
    }

    /// The Graph API's documented error example (code 190, subcode 460).
    #[test]
    fn the_graph_error_example_is_an_account_problem() {
        let body = r#"{
          "error": {
            "message": "Message describing the error",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 460,
            "error_user_title": "A title",
            "error_user_msg": "A message",
            "fbtrace_id": "EJplcsCHuLu"
          }
        }"#;
        let reject = rejected(401, &[], body);
        assert_eq!(reject.code, "whatsapp_190");
        assert!(reject.retryable);
        assert_eq!(
            reject.message,
            "Message describing the error (subcode 460) [fbtrace_id EJplcsCHuLu]"
        );
        assert_eq!(reject.retry_after_seconds, None);
    }

    #[test]
    fn recipient_and_content_errors_are_permanent() {
        for code in [100, 131008, 131009, 131026, 131047, 132000, 132001] {
            let reject = rejected(400, &[("retry-after", "5")], &graph_error(code, "nope"));
            assert_eq!(reject.code, format!("whatsapp_{code}"));
            assert_eq!(
                reject.message,
                "nope: some details [fbtrace_id Az8or2yhqkZfEZ-_4Qn_Bam]"
            );
            assert!(!reject.retryable, "{code}");
            assert_eq!(reject.retry_after_seconds, None);
        }
    }

    #[test]
    fn rate_limits_are_retryable_with_retry_after() {
        for code in [130429, 131048, 131056, 80007, 4] {
            let reject = rejected(
                400,
                &[("Retry-After", "30")],
                &graph_error(code, "slow down"),
            );
            assert_eq!(reject.code, format!("whatsapp_{code}"));
            assert!(reject.retryable, "{code}");
            assert_eq!(reject.retry_after_seconds, Some(30), "{code}");
        }
        // Without the header: retryable, no wait.
        let reject = rejected(400, &[], &graph_error(130429, "slow down"));
        assert_eq!(reject.retry_after_seconds, None);
        // An HTTP date is not understood: no wait rather than a wrong one.
        let reject = rejected(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "");
        assert_eq!(reject.code, "http_429");
        assert_eq!(reject.retry_after_seconds, None);
    }

    #[test]
    fn server_and_account_errors_are_retryable() {
        for code in [
            131000, 131016, 1, 2, 0, 190, 368, 10, 200, 299, 131031, 131042,
        ] {
            let reject = rejected(400, &[], &graph_error(code, "x"));
            assert!(reject.retryable, "{code}");
            assert_eq!(reject.retry_after_seconds, None);
        }
        let reject = rejected(503, &[("retry-after", "7")], "");
        assert_eq!(reject.code, "http_503");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(7));
        let reject = rejected(500, &[], "<html>oops</html>");
        assert_eq!(reject.code, "http_500");
        assert_eq!(reject.message, "<html>oops</html>");
        assert!(reject.retryable);
    }

    #[test]
    fn unknown_codes_fall_back_to_the_http_status() {
        let reject = rejected(400, &[], &graph_error(139999, "new"));
        assert_eq!(reject.code, "whatsapp_139999");
        assert!(!reject.retryable);
        let reject = rejected(500, &[], &graph_error(139999, "new"));
        assert!(reject.retryable);
        let reject = rejected(403, &[], &graph_error(139999, "new"));
        assert!(reject.retryable);
        let reject = rejected(400, &[], "");
        assert_eq!(reject.code, "http_400");
        assert_eq!(reject.message, "WhatsApp Cloud API answered HTTP 400");
        assert!(!reject.retryable);
    }

    #[test]
    fn a_missing_message_is_described_and_string_codes_are_read() {
        let reject = rejected(400, &[], r#"{"error":{"code":"131026"}}"#);
        assert_eq!(reject.code, "whatsapp_131026");
        assert_eq!(reject.message, "message undeliverable");
        assert!(!reject.retryable);
    }
}
