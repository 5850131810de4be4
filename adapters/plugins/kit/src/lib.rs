//! What the provider plugins share, in plain Rust: no WIT bindings and no host calls, so every
//! piece is unit-tested natively and each plugin's `lib.rs` only converts between these types and
//! its generated ones (`FetchError` -> [`FetchFailure`], [`Reject`] -> `Rejection`).
//!
//! - [`Reject`]: a refusal in the plugins' own terms, with the constructors of the plugin-side
//!   codes every plugin uses (`plugin_config`, `invalid_content`, `unsupported_channel`) and the
//!   generic classification of an HTTP error status ([`Reject::http_status`]).
//! - [`header`], [`retry_after`], [`body_excerpt`], [`body_or_status`]: reading an answer;
//!   [`pairs`]: headers or parameters from literals.
//! - [`non_empty`]: reading a config value.
//! - [`FetchFailure`]: what a failed `fetch` means (a rejection, or in doubt).
//! - [`HttpRequest`] and [`Outcome`]: a send's request and what its answer means; with them the
//!   [`wit_glue!`] macro gives every plugin the same send path (`post`).
//! - [`Status`]: what a receipt reports; [`receipt_glue!`] converts it to the WIT type.

mod fetch;
mod http;
mod receipt;
mod reject;

pub use fetch::{FetchFailure, SendFailure};
pub use http::{
    MAX_ERROR_BODY, body_excerpt, body_or_status, header, pairs, retry_after, retryable_status,
    throttling_status,
};
pub use receipt::Status;
pub use reject::Reject;

/// A provider API request a plugin built: always a `POST` (every send here is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a provider's answer to a send means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken; the provider's message id when the answer had one.
    Accepted(Option<String>),
    Rejected(Reject),
    /// An answer that does not say (e.g. unreadable): the provider may have the message.
    InDoubt(String),
}

/// A config value, trimmed, if it is set and not blank.
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The glue between a plugin's generated WIT types and the kit, the same in every plugin (the
/// types are generated per plugin crate, so it cannot live here as plain code). Expands to
/// `From<FetchError> for FetchFailure`, `From<Reject> for Rejection`, and `failed`, which turns a
/// [`SendFailure`] into the WIT `SendResult` and counts it. Call it at the top level of the plugin's
/// `lib.rs`, with `FetchError`, `Rejection`, `SendResult`, `Accepted` and the `host` and
/// `http_client` interfaces in scope.
///
/// It also gives `post`: the send path every plugin shares. It POSTs the request, turns a failed
/// fetch into a rejection or in doubt (`provider` names the provider in messages), classifies the
/// answer with the plugin's own `classify`, and logs and counts the result.
#[macro_export]
macro_rules! wit_glue {
    () => {
        impl From<FetchError> for $crate::FetchFailure {
            fn from(err: FetchError) -> Self {
                match err {
                    FetchError::Denied(err) => $crate::FetchFailure::Denied(err),
                    FetchError::Connect(err) => $crate::FetchFailure::Connect(err),
                    FetchError::Timeout => $crate::FetchFailure::Timeout,
                    FetchError::TooLarge => $crate::FetchFailure::TooLarge,
                    FetchError::Transport(err) => $crate::FetchFailure::Transport(err),
                }
            }
        }

        impl From<$crate::Reject> for Rejection {
            fn from(reject: $crate::Reject) -> Self {
                Rejection {
                    code: reject.code,
                    message: reject.message,
                    retryable: reject.retryable,
                    retry_after_seconds: reject.retry_after_seconds,
                }
            }
        }

        /// POSTs `http` for `attempt_id` and makes a `SendResult` of the answer.
        #[allow(dead_code)] // fcm has a flow of its own (its token request comes first)
        fn post(
            provider: &str,
            attempt_id: &str,
            http: $crate::HttpRequest,
            classify: impl FnOnce(u16, &[(String, String)], &[u8]) -> $crate::Outcome,
        ) -> SendResult {
            let response = match http_client::fetch(&http_client::Request {
                method: "POST".to_owned(),
                url: http.url,
                headers: http.headers,
                body: http.body,
            }) {
                Ok(response) => response,
                // Connect/Denied: nothing left, a rejection; otherwise the provider may have it.
                Err(err) => return failed($crate::FetchFailure::from(err).after_send(provider)),
            };
            match classify(response.status, &response.headers, &response.body) {
                $crate::Outcome::Accepted(provider_message_id) => {
                    if provider_message_id.is_none() {
                        host::log(
                            host::Level::Warn,
                            &format!(
                                "attempt {attempt_id}: {provider} accepted it (HTTP {}) but its \
                                 answer had no message id",
                                response.status
                            ),
                        );
                    }
                    host::metric("sends_accepted", 1.0);
                    SendResult::Accepted(Accepted {
                        provider_message_id,
                    })
                }
                $crate::Outcome::Rejected(reject) => {
                    host::log(
                        host::Level::Info,
                        &format!(
                            "attempt {attempt_id}: {provider} answered HTTP {} ({})",
                            response.status, reject.code
                        ),
                    );
                    failed(reject.into())
                }
                $crate::Outcome::InDoubt(message) => {
                    host::log(
                        host::Level::Warn,
                        &format!("attempt {attempt_id}: {message}"),
                    );
                    failed($crate::SendFailure::InDoubt(message))
                }
            }
        }

        /// The result of a send that failed, counted.
        #[allow(dead_code)] // a plugin with its own send flow (fcm) counts on its own
        fn failed(failure: $crate::SendFailure) -> SendResult {
            match failure {
                $crate::SendFailure::Rejected(reject) => {
                    host::metric("sends_rejected", 1.0);
                    SendResult::Rejected(reject.into())
                }
                $crate::SendFailure::InDoubt(message) => {
                    host::metric("sends_in_doubt", 1.0);
                    SendResult::InDoubt(message)
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_trims_and_drops_blank_values() {
        assert_eq!(non_empty(&None), None);
        assert_eq!(non_empty(&Some(String::new())), None);
        assert_eq!(non_empty(&Some("  \t".to_owned())), None);
        assert_eq!(non_empty(&Some(" AC12 ".to_owned())), Some("AC12"));
    }
}
