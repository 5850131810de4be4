//! Classifying FCM's answer to `fcm.projects.messages.send`.
//!
//! Success is HTTP 200 with the sent `Message`, whose `name` is
//! `projects/{project_id}/messages/{message_id}` (spec: `components.schemas.Message.name`).
//! Errors are Google's standard JSON error
//! `{"error": {"code", "message", "status", "details": [...]}}`; FCM's own code is in the detail of
//! type `type.googleapis.com/google.firebase.fcm.v1.FcmError`, field `errorCode`
//! (<https://firebase.google.com/docs/cloud-messaging/error-codes>,
//! <https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode>):
//!
//! | errorCode | HTTP | meaning | Hermes |
//! |---|---|---|---|
//! | `UNREGISTERED` | 404 | the registration token is no longer valid | permanent |
//! | `INVALID_ARGUMENT` | 400 | invalid token format, payload too big, reserved data key... | permanent |
//! | `SENDER_ID_MISMATCH` | 403 | the token belongs to another sender (project) | permanent |
//! | `QUOTA_EXCEEDED` | 429 | sending limit exceeded | retryable, `Retry-After` |
//! | `UNAVAILABLE` | 503 | server overloaded | retryable, `Retry-After` |
//! | `INTERNAL` | 500 | unknown internal error | retryable |
//! | `THIRD_PARTY_AUTH_ERROR` | 401 | APNs certificate / web push key invalid or missing | retryable (account) |
//! | `UNSPECIFIED_ERROR`, anything else | | | by HTTP status |

use hermes_guest_kit::{Reject, body_or_status, retryable_status, throttling_status};
use serde::Deserialize;

/// The `@type` of FCM's own error detail.
const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// FCM accepted the message; its `name` when the body had one.
    Accepted(Option<String>),
    Rejected {
        reject: Reject,
        /// FCM refused the access token (HTTP 401): the cached token must be dropped.
        drop_token: bool,
    },
}

#[derive(Deserialize)]
struct SentMessage {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<GoogleError>,
}

/// Google's error (`google.rpc.Status` in JSON).
#[derive(Deserialize)]
pub struct GoogleError {
    pub message: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

impl GoogleError {
    /// The `errorCode` of the `FcmError` detail, if any.
    pub fn fcm_error_code(&self) -> Option<&str> {
        self.details.iter().find_map(|detail| {
            let is_fcm = detail.get("@type").and_then(|t| t.as_str()) == Some(FCM_ERROR_TYPE);
            detail
                .get("errorCode")
                .and_then(|c| c.as_str())
                .filter(|c| is_fcm && !c.is_empty())
        })
    }
}

/// Google's error object of an error body, if it is one.
pub fn google_error(body: &[u8]) -> Option<GoogleError> {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error)
}

/// Whether an FCM error code is about the recipient or the content (`Some(false)`), about the
/// account or the moment (`Some(true)`), or unknown (`None`: decided by the HTTP status).
fn retryable_by_error_code(code: &str) -> Option<bool> {
    match code {
        "UNREGISTERED" | "INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" => Some(false),
        "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" | "THIRD_PARTY_AUTH_ERROR" => Some(true),
        _ => None,
    }
}

pub fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        // Accepted is decided by the status alone: an unreadable body only loses the name.
        let name = serde_json::from_slice::<SentMessage>(body)
            .ok()
            .and_then(|m| m.name)
            .filter(|name| !name.is_empty());
        return Outcome::Accepted(name);
    }
    let error = google_error(body);
    let fcm_code = error.as_ref().and_then(|e| e.fcm_error_code());
    let google_status = error
        .as_ref()
        .and_then(|e| e.status.as_deref())
        .filter(|s| !s.is_empty());
    // FCM's own code first, then Google's canonical status (UNAUTHENTICATED, PERMISSION_DENIED...).
    let code = match fcm_code.or(google_status) {
        Some(code) => format!("fcm_{code}"),
        None => format!("http_{status}"),
    };
    let message = match error.as_ref().and_then(|e| e.message.as_deref()) {
        Some(message) if !message.trim().is_empty() => message.to_owned(),
        _ => body_or_status("FCM", status, body),
    };
    // Without a known FCM error code, by HTTP status alone: 401/403 (credentials, permissions),
    // 404 (a wrong project id or base URL), 408, 429 and 5xx are retryable; any other 4xx is about
    // this request.
    let retryable = fcm_code
        .and_then(retryable_by_error_code)
        .unwrap_or_else(|| retryable_status(status));
    let throttled =
        throttling_status(status) || matches!(fcm_code, Some("QUOTA_EXCEEDED" | "UNAVAILABLE"));
    Outcome::Rejected {
        reject: Reject::new(&code, message, retryable).with_retry_after(throttled, headers),
        drop_token: status == 401,
    }
}

#[cfg(test)]
mod tests {
    use hermes_guest_kit::MAX_ERROR_BODY;

    use super::*;

    fn rejected(status: u16, headers: &[(&str, &str)], body: &str) -> (Reject, bool) {
        let headers = hermes_guest_kit::pairs(headers);
        match classify(status, &headers, body.as_bytes()) {
            Outcome::Rejected { reject, drop_token } => (reject, drop_token),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// An error as FCM sends it, with its `FcmError` detail.
    fn fcm_error(http: u16, status: &str, error_code: &str, message: &str) -> String {
        serde_json::json!({
            "error": {
                "code": http,
                "message": message,
                "status": status,
                "details": [{
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": error_code,
                }],
            }
        })
        .to_string()
    }

    #[test]
    fn a_sent_message_gives_its_name() {
        let body =
            r#"{"name":"projects/myproject-b5ae1/messages/0:1500415314455276%31bd1c9631bd1c96"}"#;
        assert_eq!(
            classify(200, &[], body.as_bytes()),
            Outcome::Accepted(Some(
                "projects/myproject-b5ae1/messages/0:1500415314455276%31bd1c9631bd1c96".to_owned()
            ))
        );
        assert_eq!(classify(200, &[], b"garbage"), Outcome::Accepted(None));
        assert_eq!(
            classify(200, &[], br#"{"name":""}"#),
            Outcome::Accepted(None)
        );
    }

    #[test]
    fn the_documented_invalid_token_error_is_permanent() {
        // "Example 2: error response from an HTTP v1 API request with an invalid registration
        // token" (https://firebase.google.com/docs/cloud-messaging/error-codes).
        let body = r#"{
          "error": {
            "code": 400,
            "message": "The registration token is not a valid FCM registration token",
            "status": "INVALID_ARGUMENT",
            "details": [
              {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "INVALID_ARGUMENT"
              }
            ]
           }
        }"#;
        let (reject, drop_token) = rejected(400, &[], body);
        assert_eq!(reject.code, "fcm_INVALID_ARGUMENT");
        assert_eq!(
            reject.message,
            "The registration token is not a valid FCM registration token"
        );
        assert!(!reject.retryable);
        assert!(!drop_token);
    }

    #[test]
    fn the_documented_bad_request_error_is_permanent_by_its_status() {
        // "Example 1: error response from an HTTP v1 API request with an invalid value in a data
        // message": no FcmError detail, a google.rpc.BadRequest one.
        let body = r#"{
          "error": {
            "code": 400,
            "message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
            "status": "INVALID_ARGUMENT",
            "details": [
              {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                  {
                    "field": "message.data[0].value",
                    "description": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12"
                  }
                ]
              }
            ]
          }
        }"#;
        let (reject, _) = rejected(400, &[], body);
        assert_eq!(reject.code, "fcm_INVALID_ARGUMENT");
        assert!(!reject.retryable);
    }

    #[test]
    fn recipient_errors_are_permanent() {
        for (http, status, code) in [
            (404, "NOT_FOUND", "UNREGISTERED"),
            (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        ] {
            let (reject, _) = rejected(http, &[], &fcm_error(http, status, code, "nope"));
            assert_eq!(reject.code, format!("fcm_{code}"));
            assert_eq!(reject.message, "nope");
            assert!(!reject.retryable, "{code}");
            assert_eq!(reject.retry_after_seconds, None);
        }
    }

    #[test]
    fn quota_and_unavailable_carry_retry_after() {
        let (reject, _) = rejected(
            429,
            &[("Retry-After", "30")],
            &fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota"),
        );
        assert_eq!(reject.code, "fcm_QUOTA_EXCEEDED");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(30));
        let (reject, _) = rejected(
            503,
            &[("retry-after", "7")],
            &fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "overloaded"),
        );
        assert_eq!(reject.code, "fcm_UNAVAILABLE");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, Some(7));
        // A bare 429: still retryable with its wait; an HTTP date is not understood.
        let (reject, _) = rejected(429, &[("retry-after", "5")], "");
        assert_eq!(reject.code, "http_429");
        assert_eq!(reject.retry_after_seconds, Some(5));
        let (reject, _) = rejected(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "");
        assert_eq!(reject.retry_after_seconds, None);
    }

    #[test]
    fn server_errors_are_retryable() {
        let (reject, _) = rejected(500, &[], &fcm_error(500, "INTERNAL", "INTERNAL", "oops"));
        assert_eq!(reject.code, "fcm_INTERNAL");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let (reject, _) = rejected(502, &[], "<html>bad gateway</html>");
        assert_eq!(reject.code, "http_502");
        assert_eq!(reject.message, "<html>bad gateway</html>");
        assert!(reject.retryable);
    }

    #[test]
    fn auth_errors_are_retryable_and_a_401_drops_the_token() {
        // An expired or revoked access token: Google's UNAUTHENTICATED, no FcmError detail.
        let body = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        let (reject, drop_token) = rejected(401, &[], body);
        assert_eq!(reject.code, "fcm_UNAUTHENTICATED");
        assert!(reject.retryable);
        assert!(drop_token);
        let (reject, drop_token) = rejected(
            401,
            &[],
            &fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "APNs"),
        );
        assert_eq!(reject.code, "fcm_THIRD_PARTY_AUTH_ERROR");
        assert!(reject.retryable);
        assert!(drop_token);
        // The FCM API not enabled for the project, or the account lacks the permission.
        let body =
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#;
        let (reject, drop_token) = rejected(403, &[], body);
        assert_eq!(reject.code, "fcm_PERMISSION_DENIED");
        assert!(reject.retryable);
        assert!(!drop_token);
        // A 404 without an FCM code: a wrong project id, not a dead token.
        let body = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#;
        let (reject, _) = rejected(404, &[], body);
        assert_eq!(reject.code, "fcm_NOT_FOUND");
        assert!(reject.retryable);
    }

    #[test]
    fn unknown_answers_fall_back_to_the_http_status() {
        let (reject, _) = rejected(400, &[], "");
        assert_eq!(reject.code, "http_400");
        assert_eq!(reject.message, "FCM answered HTTP 400");
        assert!(!reject.retryable);
        let (reject, _) = rejected(
            400,
            &[],
            &fcm_error(400, "INVALID_ARGUMENT", "UNSPECIFIED_ERROR", "?"),
        );
        assert_eq!(reject.code, "fcm_UNSPECIFIED_ERROR");
        assert!(!reject.retryable);
        let (reject, _) = rejected(
            503,
            &[],
            &fcm_error(503, "UNAVAILABLE", "SOMETHING_NEW", "?"),
        );
        assert_eq!(reject.code, "fcm_SOMETHING_NEW");
        assert!(reject.retryable);
        // An errorCode outside an FcmError detail is not FCM's code.
        let body = r#"{"error":{"code":400,"status":"FAILED_PRECONDITION","details":[{"@type":"x","errorCode":"UNREGISTERED"}]}}"#;
        let (reject, _) = rejected(400, &[], body);
        assert_eq!(reject.code, "fcm_FAILED_PRECONDITION");
        // The message of a non-JSON body is its start, capped.
        let long = "x".repeat(1000);
        let (reject, _) = rejected(500, &[], &long);
        assert_eq!(reject.message.len(), MAX_ERROR_BODY);
    }
}
