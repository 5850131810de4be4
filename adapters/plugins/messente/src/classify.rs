//! Classifying Messente's answer to `sendOmnimessage`.
//!
//! Success is `201` with `OmniMessageCreateSuccessResponse` (`{messages: [{channel, message_id,
//! sender}], to, omnimessage_id}`); errors are `ErrorOmnichannel` (`{errors: [{code, title, detail,
//! source}]}`) where `code` is one of (spec, `ErrorCodeOmnichannel`): 101 Not found, 102 Forbidden,
//! 103 Unauthorized, 104 Internal Server Error, 105 Invalid data, 106 Missing data, 107 Method not
//! allowed. The first error's code is reported as `messente_<code>`.

use hermes_guest_kit::{Reject, body_or_status, retryable_status, throttling_status};
use serde::Deserialize;

pub use hermes_guest_kit::Outcome;

#[derive(Deserialize)]
struct MessageResult {
    message_id: Option<String>,
    channel: Option<String>,
}

#[derive(Deserialize)]
struct CreateSuccess {
    #[serde(default)]
    messages: Vec<MessageResult>,
    omnimessage_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorItem {
    code: Option<serde_json::Value>,
    title: Option<String>,
    detail: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

fn code_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The provider message id: the `message_id` of the message on our channel (that is what every
/// delivery report names), else the first message's, else the `omnimessage_id`.
fn provider_message_id(body: &[u8], channel: &str) -> Option<String> {
    let success = serde_json::from_slice::<CreateSuccess>(body).ok()?;
    let usable = |id: &Option<String>| id.as_deref().filter(|id| !id.trim().is_empty()).is_some();
    success
        .messages
        .iter()
        .find(|m| m.channel.as_deref() == Some(channel) && usable(&m.message_id))
        .or_else(|| success.messages.iter().find(|m| usable(&m.message_id)))
        .and_then(|m| m.message_id.clone())
        .or(success.omnimessage_id.filter(|id| !id.trim().is_empty()))
}

/// Whether an invalid/missing-data error is about the account's setup rather than the recipient
/// or the content: the sender (not allowed / not registered for this account) or the `dlr_url`.
fn is_setup_field(item: &ErrorItem) -> bool {
    let mentions = |text: &Option<String>| {
        text.as_deref().is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("sender") || t.contains("dlr_url")
        })
    };
    mentions(&item.source) || mentions(&item.detail)
}

/// `channel` is the Messente channel name of the attempt (`sms`, `whatsapp`).
pub fn classify(status: u16, headers: &[(String, String)], body: &[u8], channel: &str) -> Outcome {
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the id.
        return Outcome::Accepted(provider_message_id(body, channel));
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let first = parsed.as_ref().and_then(|e| e.errors.first());
    let messente_code = first.and_then(|e| e.code.as_ref()).and_then(code_text);
    let code = match &messente_code {
        Some(code) => format!("messente_{code}"),
        None => format!("http_{status}"),
    };
    let message = match first {
        Some(item) => {
            let mut parts: Vec<String> = Vec::new();
            for part in [&item.title, &item.detail] {
                if let Some(text) = part.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                    parts.push(text.to_owned());
                }
            }
            let mut message = parts.join(": ");
            if let Some(source) = item
                .source
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                message = format!("{message} (source: {source})");
            }
            message
        }
        None => String::new(),
    };
    let message = if message.trim().is_empty() {
        body_or_status("Messente", status, body)
    } else {
        message
    };
    let setup_problem = first.is_some_and(is_setup_field);
    let retryable = match status {
        // Invalid (105) or missing (106) data: the recipient or the content, unless it is the
        // account's sender or the callback URL.
        400 | 422 => setup_problem,
        // Credentials, permissions, credit, wrong base URL or method, timeouts, throttling.
        401 | 402 | 403 | 404 | 405 | 408 | 429 => true,
        // Any other 4xx is about this request; 5xx (104) says nothing about the recipient.
        _ => retryable_status(status),
    };
    // 429 and 503 are always retryable above, so their `Retry-After` is always passed on.
    let throttled = throttling_status(status);
    Outcome::Rejected(Reject::new(&code, message, retryable).with_retry_after(throttled, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, headers: &[(&str, &str)], body: &str) -> Reject {
        let headers = hermes_guest_kit::pairs(headers);
        match classify(status, &headers, body.as_bytes(), "sms") {
            Outcome::Rejected(reject) => reject,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn messente_error(code: &str, title: &str, detail: &str, source: Option<&str>) -> String {
        serde_json::json!({
            "errors": [{"code": code, "title": title, "detail": detail, "source": source}]
        })
        .to_string()
    }

    /// The documented answer (support.messente.com, "Delivery Report Webhooking").
    #[test]
    fn a_created_omnimessage_gives_the_message_id() {
        let body = r#"{
            "messages": [
                {"channel": "sms", "message_id": "fr593ce7-68de-5e44-bc50-044a3ad0a7fa", "sender": "CoffeeShop"}
            ],
            "omnimessage_id": "632c6f3d-49d0-4a8f-5k2n-74023d31e51d",
            "to": "+4400000000"
        }"#;
        assert_eq!(
            classify(201, &[], body.as_bytes(), "sms"),
            Outcome::Accepted(Some("fr593ce7-68de-5e44-bc50-044a3ad0a7fa".to_owned()))
        );
        assert_eq!(
            classify(202, &[], body.as_bytes(), "sms"),
            Outcome::Accepted(Some("fr593ce7-68de-5e44-bc50-044a3ad0a7fa".to_owned()))
        );
        // The message of our channel wins; without any message id, the omnimessage id.
        let body = r#"{"messages":[{"channel":"sms","message_id":"s1","sender":"x"},
            {"channel":"whatsapp","message_id":"w1","sender":"y"}],"omnimessage_id":"o1","to":"+1"}"#;
        assert_eq!(
            classify(201, &[], body.as_bytes(), "whatsapp"),
            Outcome::Accepted(Some("w1".to_owned()))
        );
        let body = r#"{"messages":[],"omnimessage_id":"o1","to":"+1"}"#;
        assert_eq!(
            classify(201, &[], body.as_bytes(), "sms"),
            Outcome::Accepted(Some("o1".to_owned()))
        );
        assert_eq!(
            classify(201, &[], b"garbage", "sms"),
            Outcome::Accepted(None)
        );
    }

    #[test]
    fn invalid_data_is_permanent() {
        let reject = rejected(
            400,
            &[],
            &messente_error("105", "Invalid data", "Invalid phone number", Some("to")),
        );
        assert_eq!(reject.code, "messente_105");
        assert_eq!(
            reject.message,
            "Invalid data: Invalid phone number (source: to)"
        );
        assert!(!reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = rejected(
            400,
            &[],
            &messente_error(
                "106",
                "Missing data",
                "text is required",
                Some("messages[0].text"),
            ),
        );
        assert_eq!(reject.code, "messente_106");
        assert!(!reject.retryable);
    }

    #[test]
    fn sender_and_callback_problems_are_retryable() {
        let reject = rejected(
            400,
            &[],
            &messente_error(
                "105",
                "Invalid data",
                "Sender name not allowed",
                Some("messages[0].sender"),
            ),
        );
        assert_eq!(reject.code, "messente_105");
        assert!(reject.retryable);
        let reject = rejected(
            400,
            &[],
            &messente_error("105", "Invalid data", "Invalid URL", Some("dlr_url")),
        );
        assert!(reject.retryable);
        let reject = rejected(
            400,
            &[],
            &messente_error("105", "Invalid data", "Unverified sender", None),
        );
        assert!(reject.retryable);
    }

    #[test]
    fn account_errors_are_retryable() {
        let reject = rejected(
            401,
            &[],
            &messente_error("103", "Unauthorized", "Invalid credentials", None),
        );
        assert_eq!(reject.code, "messente_103");
        assert_eq!(reject.message, "Unauthorized: Invalid credentials");
        assert!(reject.retryable);
        for (status, code) in [(403, "102"), (404, "101"), (405, "107")] {
            let reject = rejected(status, &[], &messente_error(code, "x", "y", None));
            assert_eq!(reject.code, format!("messente_{code}"));
            assert!(reject.retryable, "{status}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_with_retry_after() {
        let reject = rejected(429, &[("Retry-After", "30")], "");
        assert_eq!(reject.code, "http_429");
        assert_eq!(reject.message, "Messente answered HTTP 429");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(30));
        let reject = rejected(
            503,
            &[("retry-after", "7")],
            &messente_error("104", "Internal Server Error", "try later", None),
        );
        assert_eq!(reject.code, "messente_104");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(7));
        let reject = rejected(500, &[("retry-after", "7")], "<html>oops</html>");
        assert_eq!(reject.code, "http_500");
        assert_eq!(reject.message, "<html>oops</html>");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = rejected(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "");
        assert_eq!(reject.retry_after_seconds, None);
    }

    #[test]
    fn other_client_errors_are_permanent_and_numeric_codes_are_read() {
        let reject = rejected(409, &[], "");
        assert_eq!(reject.code, "http_409");
        assert!(!reject.retryable);
        let reject = rejected(
            400,
            &[],
            r#"{"errors":[{"code":105,"title":"Invalid data"}]}"#,
        );
        assert_eq!(reject.code, "messente_105");
        assert_eq!(reject.message, "Invalid data");
        assert!(!reject.retryable);
    }
}
