//! Classifying Twilio's answer to `Create a Message`.
//!
//! Twilio's errors are JSON `{code, message, more_info, status}`; the `code` is Twilio's error code
//! (<https://www.twilio.com/docs/api/errors>), reported as `twilio_<code>`.

use hermes_guest_kit::{Reject, body_or_status, retryable_status, throttling_status};
use serde::Deserialize;

/// Error codes that are about the recipient or the content: the same request fails everywhere.
const PERMANENT_CODES: &[(u32, &str)] = &[
    (21211, "invalid 'To' phone number"),
    (21214, "'To' phone number cannot be reached"),
    (21217, "phone number does not appear to be valid"),
    (21602, "message body is required"),
    (21604, "'To' phone number is required"),
    (21610, "the recipient unsubscribed (replied STOP)"),
    (21612, "'To' number is not reachable by this channel"),
    (21614, "'To' number is not a mobile number"),
    (21617, "the body exceeds 1600 characters"),
    (21635, "'To' number is a landline"),
    (63024, "invalid message recipient"),
];

/// Error codes that are about this account's setup (credentials, sender, permissions): not the
/// recipient's fault, so another account may succeed.
const ACCOUNT_CODES: &[u32] = &[
    20003, // authentication failed
    20005, // account not active
    20404, // resource not found (wrong Account SID or base URL)
    20429, // too many requests
    21212, // invalid 'From' number
    21408, // permission to send to this region not enabled
    21603, // 'From' is required
    21606, // 'From' is not a valid, SMS-capable number for this account
    21659, // 'From' is not a Twilio number
    21660, // 'From' and the account do not match
    21703, // the Messaging Service has no phone numbers
    21704, // the Messaging Service has no valid senders
    21705, // the Messaging Service is invalid
    63007, // no WhatsApp sender for 'From'
];

pub use hermes_guest_kit::Outcome;

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

fn error_code(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the id.
        let sid = serde_json::from_slice::<MessageResource>(body)
            .ok()
            .and_then(|m| m.sid)
            .filter(|sid| !sid.is_empty());
        return Outcome::Accepted(sid);
    }
    let parsed = serde_json::from_slice::<TwilioError>(body).ok();
    let twilio_code = parsed
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .and_then(error_code);
    let known_permanent = twilio_code.and_then(|code| {
        PERMANENT_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, what)| *what)
    });
    let code = match twilio_code {
        Some(code) => format!("twilio_{code}"),
        None => format!("http_{status}"),
    };
    let message = match parsed.as_ref().and_then(|e| e.message.clone()) {
        Some(message) if !message.trim().is_empty() => message,
        _ => match known_permanent {
            Some(what) => what.to_owned(),
            None => body_or_status("Twilio", status, body),
        },
    };
    let account_problem = twilio_code.is_some_and(|c| ACCOUNT_CODES.contains(&c));
    let retryable = if known_permanent.is_some() {
        false
    } else {
        // An account problem (or 20429, throttling), else by HTTP status: any other 4xx is about
        // this request. Twilio sends `Retry-After` as delta-seconds.
        account_problem || retryable_status(status)
    };
    let throttled = throttling_status(status) || twilio_code == Some(20429);
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

    fn twilio_error(code: u32, status: u16, message: &str) -> String {
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string()
    }

    #[test]
    fn a_created_message_gives_its_sid() {
        let body = r#"{"sid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"queued"}"#;
        assert_eq!(
            classify(201, &[], body.as_bytes()),
            Outcome::Accepted(Some("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()))
        );
        assert_eq!(classify(201, &[], b"garbage"), Outcome::Accepted(None));
    }

    #[test]
    fn recipient_errors_are_permanent() {
        for code in [21211, 21610, 21614] {
            let reject = rejected(400, &[], &twilio_error(code, 400, "nope"));
            assert_eq!(reject.code, format!("twilio_{code}"));
            assert_eq!(reject.message, "nope");
            assert!(!reject.retryable, "{code}");
        }
    }

    #[test]
    fn account_errors_are_retryable() {
        let reject = rejected(401, &[], &twilio_error(20003, 401, "Authenticate"));
        assert_eq!(reject.code, "twilio_20003");
        assert!(reject.retryable);
        let reject = rejected(400, &[], &twilio_error(21606, 400, "bad From"));
        assert!(reject.retryable);
        let reject = rejected(404, &[], &twilio_error(20404, 404, "not found"));
        assert!(reject.retryable);
    }

    #[test]
    fn throttling_carries_retry_after() {
        let reject = rejected(
            429,
            &[("Retry-After", "30")],
            &twilio_error(20429, 429, "Too Many Requests"),
        );
        assert_eq!(reject.code, "twilio_20429");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(30));
        let reject = rejected(503, &[("retry-after", "7")], "");
        assert_eq!(reject.code, "http_503");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(7));
        // An HTTP date is not understood: no wait rather than a wrong one.
        let reject = rejected(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "");
        assert_eq!(reject.retry_after_seconds, None);
    }

    #[test]
    fn server_errors_are_retryable_and_unknown_client_errors_permanent() {
        let reject = rejected(500, &[], "<html>oops</html>");
        assert_eq!(reject.code, "http_500");
        assert_eq!(reject.message, "<html>oops</html>");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = rejected(400, &[], &twilio_error(21999, 400, "something"));
        assert_eq!(reject.code, "twilio_21999");
        assert!(!reject.retryable);
        let reject = rejected(400, &[], "");
        assert_eq!(reject.code, "http_400");
        assert_eq!(reject.message, "Twilio answered HTTP 400");
    }

    #[test]
    fn a_string_code_is_read_too() {
        let reject = rejected(400, &[], r#"{"code":"21211","message":"bad"}"#);
        assert_eq!(reject.code, "twilio_21211");
        assert!(!reject.retryable);
    }
}
