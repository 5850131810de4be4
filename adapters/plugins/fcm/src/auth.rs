//! The service account and its OAuth 2.0 access token ("Using OAuth 2.0 for Server to Server
//! Applications", <https://developers.google.com/identity/protocols/oauth2/service-account>,
//! section "Making the access token request" / "Handling the response").
//!
//! The token request is `POST {token_uri}`, `application/x-www-form-urlencoded`,
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`; Google answers
//! `{"access_token", "expires_in", "token_type": "Bearer"}`, or an OAuth error
//! `{"error": "invalid_grant", "error_description": ...}` (RFC 6749 section 5.2).

use serde::Deserialize;

use hermes_guest_kit::{Reject, body_excerpt, non_empty, retry_after};

use crate::classify;
use crate::request::HttpRequest;

/// Where Google's keys send the assertion (used when a key has no `token_uri`).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The `cache-get`/`cache-set` key of the access token.
pub const CACHE_KEY: &str = "access_token";
/// The token is dropped from the cache this long before Google says it expires.
pub const EXPIRY_MARGIN_SECONDS: u64 = 300;
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a Google service-account key file that the plugin uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceAccount {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub project_id: Option<String>,
    pub private_key_id: Option<String>,
    pub private_key: Option<String>,
    pub client_email: Option<String>,
    pub token_uri: Option<String>,
}

impl ServiceAccount {
    pub fn client_email(&self) -> &str {
        non_empty(&self.client_email).unwrap_or_default()
    }

    pub fn private_key(&self) -> &str {
        non_empty(&self.private_key).unwrap_or_default()
    }

    pub fn private_key_id(&self) -> Option<&str> {
        non_empty(&self.private_key_id)
    }

    pub fn token_uri(&self) -> &str {
        non_empty(&self.token_uri).unwrap_or(DEFAULT_TOKEN_URI)
    }

    pub fn project_id(&self) -> Option<&str> {
        non_empty(&self.project_id)
    }
}

/// Reads `service_account_json` (the key file's content). Errors never echo the key.
pub fn parse_service_account(json: Option<&str>) -> Result<ServiceAccount, Reject> {
    let json = json
        .map(str::trim)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| Reject::plugin_config("no service_account_json configured"))?;
    let account: ServiceAccount = serde_json::from_str(json).map_err(|err| {
        // serde_json's messages give a position, never the text.
        Reject::plugin_config(format!(
            "service_account_json is not a service-account key (JSON object): {err}"
        ))
    })?;
    if let Some(kind) = non_empty(&account.kind)
        && kind != "service_account"
    {
        return Err(Reject::plugin_config(format!(
            "service_account_json is a {kind:?} credential, not a service_account key"
        )));
    }
    if non_empty(&account.client_email).is_none() {
        return Err(Reject::plugin_config(
            "service_account_json has no client_email",
        ));
    }
    if non_empty(&account.private_key).is_none() {
        return Err(Reject::plugin_config(
            "service_account_json has no private_key",
        ));
    }
    let token_uri = account.token_uri();
    if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
        return Err(Reject::plugin_config(
            "service_account_json's token_uri is not an http(s) URL",
        ));
    }
    Ok(account)
}

/// The token request for a signed assertion.
pub fn token_request(account: &ServiceAccount, assertion: &str) -> HttpRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("assertion", assertion)
        .finish();
    HttpRequest {
        method: "POST",
        url: account.token_uri().to_owned(),
        headers: vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
        ],
        body: body.into_bytes(),
    }
}

/// A fresh access token and how long the cache may keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub cache_ttl_seconds: u32,
}

/// How long to cache a token Google says lives `expires_in` seconds: that less a 5-minute
/// margin, at least 0 (0 = not cached). Without `expires_in` the token is used once.
pub fn cache_ttl(expires_in: Option<u64>) -> u32 {
    expires_in
        .map(|secs| secs.saturating_sub(EXPIRY_MARGIN_SECONDS))
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<serde_json::Value>,
    error_description: Option<String>,
}

fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An account problem with the token: retryable (another account may succeed).
fn auth_error(message: impl Into<String>) -> Reject {
    Reject::new("fcm_auth", message, true)
}

/// The token endpoint's answer: the token, or why there is none. Every failure is retryable:
/// nothing was sent to the recipient.
pub fn token_answer(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<AccessToken, Reject> {
    if (200..300).contains(&status) {
        let answer = serde_json::from_slice::<TokenAnswer>(body)
            .map_err(|_| auth_error("the token endpoint's answer is not a token (JSON)"))?;
        let token = answer
            .access_token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_error("the token endpoint's answer has no access_token"))?;
        if let Some(kind) = answer.token_type.as_deref()
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(auth_error(format!(
                "the token endpoint issued a {kind:?} token, not a Bearer token"
            )));
        }
        return Ok(AccessToken {
            token,
            cache_ttl_seconds: cache_ttl(answer.expires_in.as_ref().and_then(seconds)),
        });
    }
    // An OAuth error (`invalid_grant`: a revoked or deleted key, a wrong client_email, a clock
    // off by more than the JWT allows...) or Google's JSON error.
    let oauth = serde_json::from_slice::<OAuthError>(body).ok();
    let oauth_code = oauth
        .as_ref()
        .and_then(|e| e.error.as_ref())
        .and_then(|e| e.as_str())
        .map(str::to_owned);
    let description = oauth
        .as_ref()
        .and_then(|e| e.error_description.clone())
        .or_else(|| classify::google_error(body).and_then(|e| e.message))
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| body_excerpt(body));
    let what = match (&oauth_code, description.is_empty()) {
        (Some(code), false) => format!("{code}: {description}"),
        (Some(code), true) => code.clone(),
        (None, false) => description,
        (None, true) => String::new(),
    };
    let message = if what.is_empty() {
        format!("the token endpoint answered HTTP {status}")
    } else {
        format!("the token endpoint answered HTTP {status}: {what}")
    };
    if (400..500).contains(&status) && status != 408 && status != 429 {
        // The account cannot get a token: retryable as an account problem.
        return Err(auth_error(message));
    }
    // 408, 429, 5xx...: the endpoint, not the account.
    let mut reject = Reject::new(&format!("http_{status}"), message, true);
    reject.retry_after_seconds = retry_after(headers);
    Err(reject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json() -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": "0123456789abcdef",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n",
            "client_email": "hermes@example-project.iam.gserviceaccount.com",
            "client_id": "123456789",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/hermes%40example-project.iam.gserviceaccount.com",
        })
        .to_string()
    }

    #[test]
    fn a_key_file_is_read() {
        let account = parse_service_account(Some(&key_json())).unwrap();
        assert_eq!(
            account.client_email(),
            "hermes@example-project.iam.gserviceaccount.com"
        );
        assert_eq!(account.private_key_id(), Some("0123456789abcdef"));
        assert_eq!(account.token_uri(), "https://oauth2.googleapis.com/token");
        assert_eq!(account.project_id(), Some("example-project"));
        assert!(
            account
                .private_key()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        // No token_uri: Google's.
        let mut value: serde_json::Value = serde_json::from_str(&key_json()).unwrap();
        value.as_object_mut().unwrap().remove("token_uri");
        let account = parse_service_account(Some(&value.to_string())).unwrap();
        assert_eq!(account.token_uri(), DEFAULT_TOKEN_URI);
    }

    #[test]
    fn a_bad_key_file_is_a_retryable_config_error_that_does_not_echo_it() {
        let without = |field: &str| {
            let mut value: serde_json::Value = serde_json::from_str(&key_json()).unwrap();
            value.as_object_mut().unwrap().remove(field);
            value.to_string()
        };
        let other_type = key_json().replace("\"service_account\"", "\"authorized_user\"");
        let bad_uri = key_json().replace("https://oauth2.googleapis.com/token", "file:///etc");
        for json in [
            None,
            Some(String::new()),
            Some("{not json MIIE".to_owned()),
            Some("[]".to_owned()),
            Some(without("client_email")),
            Some(without("private_key")),
            Some(other_type),
            Some(bad_uri),
        ] {
            let err = parse_service_account(json.as_deref()).unwrap_err();
            assert_eq!(err.code, "plugin_config", "{json:?}");
            assert!(err.retryable);
            assert!(!err.message.contains("MIIE"), "{}", err.message);
        }
    }

    #[test]
    fn the_token_request_is_a_jwt_bearer_grant() {
        let account = parse_service_account(Some(&key_json())).unwrap();
        let request = token_request(&account, "aaa.bbb.c-_c");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://oauth2.googleapis.com/token");
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.c-_c"
        );
        assert!(request.headers.contains(&(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned()
        )));
    }

    #[test]
    fn a_token_is_cached_five_minutes_short_of_its_expiry() {
        // The documented answer shape.
        let body = br#"{"access_token":"1/8xbJqaOZXSUZbHLl5EOtu1pxz3fmmetKx9W8CV4t79M","scope":"https://www.googleapis.com/auth/firebase.messaging","token_type":"Bearer","expires_in":3599}"#;
        assert_eq!(
            token_answer(200, &[], body),
            Ok(AccessToken {
                token: "1/8xbJqaOZXSUZbHLl5EOtu1pxz3fmmetKx9W8CV4t79M".to_owned(),
                cache_ttl_seconds: 3299,
            })
        );
        assert_eq!(cache_ttl(Some(100)), 0);
        assert_eq!(cache_ttl(Some(300)), 0);
        assert_eq!(cache_ttl(None), 0);
        assert_eq!(cache_ttl(Some(u64::MAX)), u32::MAX);
        let token = token_answer(200, &[], br#"{"access_token":"t","expires_in":"600"}"#).unwrap();
        assert_eq!(token.cache_ttl_seconds, 300);
    }

    #[test]
    fn an_unusable_token_answer_is_an_auth_error() {
        for body in [
            &b"garbage"[..],
            br#"{"expires_in":3599}"#,
            br#"{"access_token":"  "}"#,
            br#"{"access_token":"t","token_type":"MAC"}"#,
        ] {
            let err = token_answer(200, &[], body).unwrap_err();
            assert_eq!(err.code, "fcm_auth");
            assert!(err.retryable);
        }
    }

    #[test]
    fn invalid_grant_is_a_retryable_auth_error() {
        let body = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        for status in [400, 401] {
            let err = token_answer(status, &[], body).unwrap_err();
            assert_eq!(err.code, "fcm_auth");
            assert!(err.retryable);
            assert_eq!(
                err.message,
                format!(
                    "the token endpoint answered HTTP {status}: invalid_grant: Invalid JWT Signature."
                )
            );
            assert_eq!(err.retry_after_seconds, None);
        }
        let err = token_answer(403, &[], b"").unwrap_err();
        assert_eq!(err.code, "fcm_auth");
        assert_eq!(err.message, "the token endpoint answered HTTP 403");
    }

    #[test]
    fn token_endpoint_outages_are_retryable_with_their_wait() {
        let headers = vec![("Retry-After".to_owned(), "12".to_owned())];
        let err = token_answer(503, &headers, b"<html>unavailable</html>").unwrap_err();
        assert_eq!(err.code, "http_503");
        assert!(err.retryable);
        assert_eq!(err.retry_after_seconds, Some(12));
        assert!(err.message.contains("unavailable"));
        let err = token_answer(429, &headers, b"").unwrap_err();
        assert_eq!(err.code, "http_429");
        assert_eq!(err.retry_after_seconds, Some(12));
    }
}
