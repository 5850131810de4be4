//! Hermes's side of the mock provider: a [`Provider`] that sends over HTTP to the
//! [mock server](crate::mock::server) and verifies and normalizes its signed receipts.
//!
//! It is written like a real provider adapter on purpose: the way it classifies failures
//! (permanent rejection, retryable rejection, in doubt) is what the cascade relies on to fail over
//! without ever sending an attempt twice.

use crate::provider::{
    CallbackError, CallbackRequest, Provider, Receipt, SendAccepted, SendError, SendRequest,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use hermes_domain::message::{AttemptError, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// Header carrying a receipt's signature: `sha256=<hex HMAC-SHA256(secret, raw body)>`.
pub const SIGNATURE_HEADER: &str = "X-Mock-Signature";

const SIGNATURE_PREFIX: &str = "sha256=";
/// Upper bound on one send, so a hung provider turns into an in-doubt attempt, not a stuck saga.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Short, because a failed connect is safe to fail over from at once (nothing was sent).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of an unexpected error body ends up in an attempt's error message.
const MAX_ERROR_BODY: usize = 200;

type HmacSha256 = Hmac<Sha256>;

/// The `X-Mock-Signature` value for `body`: `sha256=` and the hex HMAC-SHA256 of the raw body.
///
/// Public so tests elsewhere can craft receipts the way the mock server signs them.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks a signature header value in constant time (`verify_slice`), so a forger learns nothing
/// from how fast a wrong guess is refused.
fn verify(secret: &str, body: &[u8], header: Option<&http::HeaderValue>) -> bool {
    let Some(tag) = header
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix(SIGNATURE_PREFIX))
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
    else {
        return false;
    };
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The mock provider as Hermes uses it: name `mock`, every channel.
pub struct MockProvider {
    /// Without a trailing slash.
    base_url: String,
    secret: String,
    http: reqwest::Client,
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl MockProvider {
    /// `base_url` is the server's root (`http://127.0.0.1:PORT`, see
    /// [`MockProviderHandle::base_url`](crate::mock::MockProviderHandle::base_url)); `secret` must
    /// match the server's [`MockProviderConfig::secret`](crate::mock::MockProviderConfig::secret).
    ///
    /// One client is shared by every send so connections are pooled.
    ///
    /// # Panics
    /// If reqwest cannot build a plain-HTTP client (it needs no TLS setup, so this does not happen).
    pub fn new(base_url: String, secret: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The mock is a local stand-in: never send it through an environment proxy, and a
            // redirect is an answer (a wrong base URL), not something to follow with our POST.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain-HTTP reqwest client always builds");
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret,
            http,
        }
    }

    async fn send_inner(&self, request: &SendRequest) -> Result<SendAccepted, SendError> {
        let body = json!({
            "message_id": request.message_id,
            "attempt_id": request.attempt_id,
            "channel": request.channel,
            "to": request.to,
            "content": request.content,
            "callback_url": request.callback_url,
        });
        let url = format!("{}/messages", self.base_url);
        let response = match self.http.post(&url).json(&body).send().await {
            Ok(response) => response,
            Err(err) => return Err(classify_transport_error(&err)),
        };
        let status = response.status();
        if status.is_success() {
            // Accepted is decided by the status alone: an unreadable body only loses the id.
            let provider_message_id = match response.json::<AcceptedBody>().await {
                Ok(body) => Some(body.id),
                Err(err) => {
                    tracing::warn!(attempt_id = %request.attempt_id, error = %err,
                        "mock provider accepted a send but its answer had no readable id");
                    None
                }
            };
            return Ok(SendAccepted {
                provider_message_id,
            });
        }
        let text = response.text().await.unwrap_or_default();
        let error = error_from_body(status, &text);
        // 4xx is about this request: only 408 and 429 may go better later. 5xx, and anything
        // else that is not an acceptance (a redirect: a misconfigured URL), says nothing about the
        // recipient, so another provider may well succeed.
        let retryable = if status.is_client_error() {
            status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
        } else {
            true
        };
        Err(SendError::Rejected { error, retryable })
    }
}

/// A failure before any answer. Only a failed connect proves nothing was sent; after that the
/// provider may have the message, and re-sending could reach the recipient twice.
fn classify_transport_error(err: &reqwest::Error) -> SendError {
    if err.is_connect() {
        SendError::Rejected {
            error: AttemptError::new(
                "connect_failed",
                format!("could not connect to the mock provider: {err}"),
            ),
            retryable: true,
        }
    } else if err.is_builder() {
        // The URL could not be built: the request never existed.
        SendError::Rejected {
            error: AttemptError::new("invalid_provider_url", err.to_string()),
            retryable: true,
        }
    } else if err.is_timeout() {
        SendError::InDoubt(format!(
            "no answer from the mock provider within {REQUEST_TIMEOUT:?}"
        ))
    } else {
        SendError::InDoubt(format!("the mock provider's answer was lost: {err}"))
    }
}

fn error_from_body(status: StatusCode, text: &str) -> AttemptError {
    let fallback_code = || format!("http_{}", status.as_u16());
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(ErrorBody { error }) => AttemptError::new(
            error.code.unwrap_or_else(fallback_code),
            error.message.unwrap_or_default(),
        ),
        Err(_) => {
            let message = if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("").to_owned()
            } else {
                text.trim().chars().take(MAX_ERROR_BODY).collect()
            };
            AttemptError::new(fallback_code(), message)
        }
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

/// A receipt as the mock server POSTs it. `timestamp` is not needed: Hermes records its own time.
#[derive(Deserialize)]
struct ReceiptBody {
    message_id: MessageId,
    attempt_id: AttemptId,
    provider_message_id: Option<String>,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl Provider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    fn channels(&self) -> &[Channel] {
        &Channel::ALL
    }

    fn send<'a>(
        &'a self,
        request: &'a SendRequest,
    ) -> BoxFuture<'a, Result<SendAccepted, SendError>> {
        self.send_inner(request).boxed()
    }

    fn parse_callback(&self, request: &CallbackRequest) -> Result<Vec<Receipt>, CallbackError> {
        // Verify before parsing: nothing unauthenticated is even looked at.
        if !verify(
            &self.secret,
            &request.body,
            request.headers.get(SIGNATURE_HEADER),
        ) {
            return Err(CallbackError::InvalidSignature);
        }
        let body: ReceiptBody = serde_json::from_slice(&request.body)
            .map_err(|err| CallbackError::Malformed(format!("receipt body: {err}")))?;
        if let Some((message_id, attempt_id)) = request.ids
            && (message_id != body.message_id || attempt_id != body.attempt_id)
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
        let error = (status == ReceiptStatus::Failed).then(|| {
            AttemptError::new(
                body.error_code.unwrap_or_else(|| "failed".to_owned()),
                body.error_message.unwrap_or_default(),
            )
        });
        Ok(vec![Receipt {
            message_id: body.message_id,
            attempt_id: body.attempt_id,
            status,
            provider_message_id: body.provider_message_id,
            error,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_prefixed_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_refuses_wrong_prefix_bad_hex_and_missing_header() {
        let good = http::HeaderValue::from_str(&sign("k", b"body")).unwrap();
        assert!(verify("k", b"body", Some(&good)));
        let no_prefix =
            http::HeaderValue::from_str(good.to_str().unwrap().trim_start_matches("sha256="))
                .unwrap();
        assert!(!verify("k", b"body", Some(&no_prefix)));
        assert!(!verify(
            "k",
            b"body",
            Some(&http::HeaderValue::from_static("sha256=zz"))
        ));
        assert!(!verify("k", b"body", None));
    }

    #[test]
    fn error_body_fallbacks() {
        let e = error_from_body(StatusCode::BAD_GATEWAY, "");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_502", "Bad Gateway")
        );
        let e = error_from_body(StatusCode::BAD_REQUEST, "not json");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_400", "not json")
        );
        let e = error_from_body(StatusCode::BAD_REQUEST, r#"{"error":{"message":"m"}}"#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("http_400", "m"));
    }
}
