//! Classifying SES v2's answer to `SendEmail`.
//!
//! SES v2 is a `rest-json` service (spec `sesv2-2019-09-27-service-2.json`, `metadata.protocol`):
//! success is HTTP 200 with `SendEmailResponse` `{"MessageId": "..."}`; an error names its type in
//! the `x-amzn-ErrorType` header (`MessageRejected:http://internal.amazon.com/...`, the part before
//! `:` is the type) and/or the body's `__type` (possibly namespaced `...#MessageRejected`), with
//! `message` (or `Message`) explaining it. The codes are `ses_<ErrorType>`.
//!
//! `SendEmail`'s modeled errors (the spec's `operations.SendEmail.errors`) and their HTTP statuses:
//! `TooManyRequestsException` 429, `LimitExceededException` 400, `AccountSuspendedException` 400,
//! `SendingPausedException` 400, `MessageRejected` 400, `MailFromDomainNotVerifiedException` 400,
//! `NotFoundException` 404, `BadRequestException` 400.

use hermes_guest_kit::{Reject, body_excerpt, header, retryable_status, throttling_status};
use serde::Deserialize;

/// The request or the message is wrong: the same request fails on any account.
const PERMANENT: &[&str] = &[
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
];

/// Account-level problems (suspended, paused, configuration set not found) and throttling, and
/// the credential/signature errors of AWS's common errors: not the recipient's fault.
const RETRYABLE: &[&str] = &[
    "AccountSuspendedException",
    "SendingPausedException",
    "NotFoundException",
    "TooManyRequestsException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "ServiceUnavailable",
    "InternalFailure",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "AccessDeniedException",
    "MissingAuthenticationToken",
    "RequestExpired",
];

/// Throttling: `Retry-After` (when sent) is passed on.
const THROTTLING: &[&str] = &[
    "TooManyRequestsException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
];

pub use hermes_guest_kit::Outcome;

#[derive(Deserialize)]
struct SendEmailResponse {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
}

#[derive(Deserialize)]
struct AwsError {
    #[serde(rename = "__type")]
    kind: Option<String>,
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
    #[serde(rename = "code")]
    code: Option<String>,
}

/// The bare error type: `Type:http://...` (header form) and `ns#Type` (body form) both give `Type`.
pub fn error_type(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let raw = raw.split(':').next().unwrap_or(raw);
    let raw = raw.rsplit('#').next().unwrap_or(raw).trim();
    (!raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    .then(|| raw.to_owned())
}

pub fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the id.
        let id = serde_json::from_slice::<SendEmailResponse>(body)
            .ok()
            .and_then(|r| r.message_id)
            .filter(|id| !id.is_empty());
        return Outcome::Accepted(id);
    }
    let parsed = serde_json::from_slice::<AwsError>(body).ok();
    let kind = header(headers, "x-amzn-errortype")
        .and_then(error_type)
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|e| e.kind.as_deref().or(e.code.as_deref()))
                .and_then(error_type)
        });
    let code = match &kind {
        Some(kind) => format!("ses_{kind}"),
        None => format!("http_{status}"),
    };
    let message = parsed
        .as_ref()
        .and_then(|e| e.message.clone().or_else(|| e.message_upper.clone()))
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let excerpt = body_excerpt(body);
            if !excerpt.is_empty() {
                return excerpt;
            }
            match &kind {
                Some(kind) => format!("SES answered HTTP {status} ({kind})"),
                None => format!("SES answered HTTP {status}"),
            }
        });
    let kind = kind.as_deref();
    let retryable = if kind.is_some_and(|k| PERMANENT.contains(&k)) {
        false
    } else {
        // A known account or throttling error, else by HTTP status (any other 4xx is about this
        // request).
        kind.is_some_and(|k| RETRYABLE.contains(&k)) || retryable_status(status)
    };
    let throttled = throttling_status(status) || kind.is_some_and(|k| THROTTLING.contains(&k));
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

    #[test]
    fn a_sent_email_gives_its_message_id() {
        let body =
            r#"{"MessageId":"010001234567890a-abcdef12-3456-7890-abcd-ef1234567890-000000"}"#;
        assert_eq!(
            classify(200, &[], body.as_bytes()),
            Outcome::Accepted(Some(
                "010001234567890a-abcdef12-3456-7890-abcd-ef1234567890-000000".to_owned()
            ))
        );
        assert_eq!(classify(200, &[], b"garbage"), Outcome::Accepted(None));
    }

    #[test]
    fn content_errors_are_permanent() {
        for kind in [
            "MessageRejected",
            "MailFromDomainNotVerifiedException",
            "BadRequestException",
        ] {
            let reject = rejected(
                400,
                &[(
                    "x-amzn-ErrorType",
                    &format!("{kind}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"),
                )],
                r#"{"message":"Email address is not verified."}"#,
            );
            assert_eq!(reject.code, format!("ses_{kind}"));
            assert_eq!(reject.message, "Email address is not verified.");
            assert!(!reject.retryable, "{kind}");
        }
    }

    #[test]
    fn the_body_type_is_read_when_the_header_is_missing() {
        let reject = rejected(
            400,
            &[],
            r#"{"__type":"com.amazonaws.sesv2#MessageRejected","Message":"bad"}"#,
        );
        assert_eq!(reject.code, "ses_MessageRejected");
        assert_eq!(reject.message, "bad");
        assert!(!reject.retryable);
    }

    #[test]
    fn account_problems_are_retryable() {
        for (status, kind) in [
            (400, "AccountSuspendedException"),
            (400, "SendingPausedException"),
            (404, "NotFoundException"),
            (403, "SignatureDoesNotMatch"),
            (403, "InvalidSignatureException"),
            (403, "UnrecognizedClientException"),
        ] {
            let reject = rejected(status, &[("x-amzn-errortype", kind)], "{}");
            assert_eq!(reject.code, format!("ses_{kind}"));
            assert!(reject.retryable, "{kind}");
            assert_eq!(reject.retry_after_seconds, None);
        }
        // A 403 without a type is still a credential problem.
        let reject = rejected(403, &[], "");
        assert_eq!(reject.code, "http_403");
        assert!(reject.retryable);
    }

    #[test]
    fn throttling_carries_retry_after() {
        let reject = rejected(
            429,
            &[
                ("x-amzn-ErrorType", "TooManyRequestsException"),
                ("Retry-After", "12"),
            ],
            r#"{"message":"Too many requests"}"#,
        );
        assert_eq!(reject.code, "ses_TooManyRequestsException");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(12));
        let reject = rejected(400, &[("x-amzn-ErrorType", "LimitExceededException")], "{}");
        assert!(reject.retryable);
        let reject = rejected(
            400,
            &[],
            r#"{"__type":"Throttling","message":"Rate exceeded"}"#,
        );
        assert_eq!(reject.code, "ses_Throttling");
        assert!(reject.retryable);
    }

    #[test]
    fn server_errors_are_retryable_and_unknown_client_errors_permanent() {
        let reject = rejected(503, &[("retry-after", "3")], "<html>busy</html>");
        assert_eq!(reject.code, "http_503");
        assert_eq!(reject.message, "<html>busy</html>");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(3));
        let reject = rejected(500, &[("x-amzn-ErrorType", "InternalFailure")], "");
        assert_eq!(reject.code, "ses_InternalFailure");
        assert!(reject.retryable);
        let reject = rejected(400, &[("x-amzn-ErrorType", "SomethingNewException")], "");
        assert_eq!(reject.code, "ses_SomethingNewException");
        assert!(!reject.retryable);
        let reject = rejected(400, &[], "");
        assert_eq!(reject.code, "http_400");
        assert_eq!(reject.message, "SES answered HTTP 400");
    }

    #[test]
    fn error_types_are_stripped_of_namespaces_and_urls() {
        assert_eq!(
            error_type("MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/")
                .as_deref(),
            Some("MessageRejected")
        );
        assert_eq!(
            error_type("com.amazonaws.sesv2#NotFoundException").as_deref(),
            Some("NotFoundException")
        );
        assert_eq!(error_type(""), None);
        assert_eq!(error_type("bad type!"), None);
    }
}
