//! Classifying the SMS API's answer to `Send an SMS`.
//!
//! The spec's only response is `200` with `oneOf: [SMS, Error]`: `{"message-count": "1",
//! "messages": [{"status": "0", "message-id": "...", ...}]}`. Each entry of `messages` is one
//! part of the (possibly concatenated) SMS; its `status` is `"0"` on success, otherwise one of the
//! spec's `x-errors` codes with `error-text`. Codes are reported as `vonage_<status>`.

use hermes_guest_kit::{MAX_ERROR_BODY, Reject};
use serde::Deserialize;

/// Whether a documented non-zero `status` (the spec's `x-errors`) is worth trying again (on this
/// account later, or on another account or provider) and what it means. Permanent = the recipient
/// or the content is wrong; retryable = throttling, Vonage's own failures, and problems with this
/// account's setup (credentials, credit, sender, demo mode).
const STATUSES: &[(u32, bool, &str)] = &[
    (1, true, "Throttled: sending faster than the account limit"),
    (2, false, "Missing Parameters"),
    (3, false, "Invalid Parameters"),
    (4, true, "Invalid Credentials"),
    (5, true, "Internal Error"),
    (
        6,
        false,
        "Invalid Message (for example an unrecognized number prefix)",
    ),
    (7, false, "Number Barred: the recipient is blacklisted"),
    (
        8,
        true,
        "Partner Account Barred: the Vonage account is suspended",
    ),
    (9, true, "Partner Quota Violation: not enough credit"),
    (10, true, "Too Many Existing Binds"),
    (11, true, "Account Not Enabled For HTTP"),
    (12, false, "Message Too Long"),
    (14, true, "Invalid Signature"),
    (15, true, "Invalid Sender Address: `from` is not authorized"),
    (22, false, "Invalid Network Code for the destination"),
    (23, true, "Invalid Callback Url"),
    (
        29,
        true,
        "Non-Whitelisted Destination: the account is in demo mode",
    ),
    (32, true, "Signature And API Secret Disallowed"),
    (33, false, "Number De-activated"),
];

pub use hermes_guest_kit::Outcome;

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<MessagePart>,
}

#[derive(Deserialize)]
struct MessagePart {
    status: Option<serde_json::Value>,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

/// `status` is a string in the spec (`"0"`); a number is read too.
fn status_of(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_ERROR_BODY) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The rejection for a non-zero per-message `status`.
pub fn status_rejection(status: u32, error_text: Option<&str>) -> Reject {
    let known = STATUSES.iter().find(|(code, _, _)| *code == status);
    // An undocumented status is not known to be the recipient's fault: retryable.
    let retryable = known.is_none_or(|(_, retryable, _)| *retryable);
    let message = error_text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| known.map(|(_, _, what)| (*what).to_owned()))
        .unwrap_or_else(|| format!("Vonage refused the message with status {status}"));
    Reject::new(&format!("vonage_{status}"), message, retryable)
}

fn http_rejection(status: u16, headers: &[(String, String)], body: &[u8]) -> Reject {
    let excerpt = body_excerpt(body);
    let message = if excerpt.is_empty() {
        format!("Vonage answered HTTP {status}")
    } else {
        excerpt
    };
    // 429 and 5xx: Vonage's side; 401/403: the credentials; 404: a wrong base_url; 408: timeout.
    let mut reject = Reject::http_status(status, headers, message);
    // Not an error status (1xx, 3xx): not worth another try either.
    reject.retryable &= status >= 400;
    reject
}

pub fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return Outcome::Rejected(http_rejection(status, headers, body));
    }
    let Ok(response) = serde_json::from_slice::<SendResponse>(body) else {
        return Outcome::InDoubt(format!(
            "Vonage answered HTTP {status} with an unreadable body"
        ));
    };
    let Some(first) = response.messages.first() else {
        return Outcome::InDoubt(format!("Vonage answered HTTP {status} without messages"));
    };
    // A long text is sent as several parts, each with its own status: once any part went out
    // the message is (at least partly) on its way, and failing the attempt would send it twice.
    if let Some(sent) = response
        .messages
        .iter()
        .find(|m| m.status.as_ref().and_then(status_of) == Some(0))
    {
        return Outcome::Accepted(sent.message_id.clone().filter(|id| !id.is_empty()));
    }
    match first.status.as_ref().and_then(status_of) {
        Some(code) => Outcome::Rejected(status_rejection(code, first.error_text.as_deref())),
        None => Outcome::InDoubt(format!(
            "Vonage answered HTTP {status} without a message status"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use hermes_guest_kit::pairs as headers;

    fn rejected(status: u16, headers: &[(String, String)], body: &str) -> Reject {
        match classify(status, headers, body.as_bytes()) {
            Outcome::Rejected(reject) => reject,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn error_body(status: &str, text: &str) -> String {
        serde_json::json!({
            "message-count": "1",
            "messages": [{"status": status, "error-text": text}],
        })
        .to_string()
    }

    /// The spec's `SMS` schema, filled with its documented examples.
    #[test]
    fn status_0_is_accepted_with_the_message_id() {
        let body = r#"{
            "message-count": "1",
            "messages": [{
                "to": "447700900000",
                "message-id": "0A0000000123ABCD1",
                "status": "0",
                "remaining-balance": "3.14159265",
                "message-price": "0.03330000",
                "network": "12345",
                "client-ref": "my-personal-reference",
                "account-ref": "customer1234"
            }]
        }"#;
        assert_eq!(
            classify(200, &[], body.as_bytes()),
            Outcome::Accepted(Some("0A0000000123ABCD1".to_owned()))
        );
        // A numeric status is read too.
        assert_eq!(
            classify(200, &[], br#"{"messages":[{"status":0,"message-id":"X"}]}"#),
            Outcome::Accepted(Some("X".to_owned()))
        );
    }

    #[test]
    fn a_concatenated_message_is_accepted_once_any_part_is() {
        let body = r#"{"message-count":"2","messages":[
            {"status":"0","message-id":"P1"},
            {"status":"1","error-text":"Throttled"}]}"#;
        assert_eq!(
            classify(200, &[], body.as_bytes()),
            Outcome::Accepted(Some("P1".to_owned()))
        );
    }

    /// The spec's `ErrorMessage` example: status "2", "Missing to param".
    #[test]
    fn recipient_and_content_errors_are_permanent() {
        let reject = rejected(200, &[], &error_body("2", "Missing to param"));
        assert_eq!(reject.code, "vonage_2");
        assert_eq!(reject.message, "Missing to param");
        assert!(!reject.retryable);
        for status in ["3", "6", "7", "12", "22", "33"] {
            let reject = rejected(200, &[], &error_body(status, "nope"));
            assert_eq!(reject.code, format!("vonage_{status}"));
            assert!(!reject.retryable, "{status}");
        }
    }

    #[test]
    fn throttling_and_account_errors_are_retryable() {
        for status in [
            "1", "4", "5", "8", "9", "10", "11", "14", "15", "23", "29", "32",
        ] {
            let reject = rejected(200, &[], &error_body(status, "account"));
            assert_eq!(reject.code, format!("vonage_{status}"));
            assert!(reject.retryable, "{status}");
        }
        // An undocumented status: retryable, described by its number.
        let reject = rejected(200, &[], r#"{"messages":[{"status":"99"}]}"#);
        assert_eq!(reject.code, "vonage_99");
        assert!(reject.retryable);
        assert_eq!(reject.message, "Vonage refused the message with status 99");
        // No error-text: the spec's description.
        let reject = rejected(200, &[], r#"{"messages":[{"status":"4"}]}"#);
        assert_eq!(reject.message, "Invalid Credentials");
    }

    #[test]
    fn http_throttling_and_server_errors_are_retryable() {
        let reject = rejected(429, &headers(&[("Retry-After", "30")]), "");
        assert_eq!(reject.code, "http_429");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(30));
        assert_eq!(reject.message, "Vonage answered HTTP 429");
        let reject = rejected(503, &headers(&[("retry-after", "7")]), "busy");
        assert_eq!(reject.code, "http_503");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(7));
        assert_eq!(reject.message, "busy");
        let reject = rejected(500, &headers(&[("retry-after", "7")]), "");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = rejected(401, &[], "");
        assert!(reject.retryable);
        let reject = rejected(400, &[], "bad");
        assert_eq!(reject.code, "http_400");
        assert!(!reject.retryable);
        // An HTTP date is not understood: no wait rather than a wrong one.
        let reject = rejected(
            429,
            &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            "",
        );
        assert_eq!(reject.retry_after_seconds, None);
        // Long bodies are cut.
        let reject = rejected(502, &[], &"x".repeat(1000));
        assert!(reject.message.len() < 300);
    }

    #[test]
    fn an_unreadable_200_is_in_doubt() {
        assert!(matches!(classify(200, &[], b"<html>"), Outcome::InDoubt(_)));
        assert!(matches!(
            classify(200, &[], br#"{"message-count":"0","messages":[]}"#),
            Outcome::InDoubt(_)
        ));
        assert!(matches!(
            classify(200, &[], br#"{"messages":[{"message-id":"X"}]}"#),
            Outcome::InDoubt(_)
        ));
    }
}
