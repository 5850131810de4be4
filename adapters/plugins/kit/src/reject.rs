//! [`Reject`]: a refusal (nothing was sent, or the provider said no), in the plugins' own terms.

use crate::http::{retry_after, retryable_status, throttling_status};

/// A refusal (nothing was sent, or the provider said no), in the plugin's own terms: the WIT
/// `rejection` without the bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    pub retry_after_seconds: Option<u32>,
}

impl Reject {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Reject {
            code: code.to_owned(),
            message: message.into(),
            retryable,
            retry_after_seconds: None,
        }
    }

    /// `plugin_config`, retryable: missing or invalid config. A misconfigured account is not the
    /// recipient's fault: another account may succeed.
    pub fn plugin_config(message: impl Into<String>) -> Self {
        Reject::new("plugin_config", message, true)
    }

    /// `invalid_content`, permanent: content (or an address) this plugin cannot send, on any
    /// account.
    pub fn invalid_content(message: impl Into<String>) -> Self {
        Reject::new("invalid_content", message, false)
    }

    /// `unsupported_channel`, retryable: the attempt's channel is not one this plugin serves
    /// (another provider may serve it).
    pub fn unsupported_channel(message: impl Into<String>) -> Self {
        Reject::new("unsupported_channel", message, true)
    }

    /// The generic classification of an HTTP error status, for an answer without a provider code
    /// the plugin knows: code `http_<status>`, retryable by [`retryable_status`], and
    /// `Retry-After` seconds passed on for 429 and 503.
    pub fn http_status(
        status: u16,
        headers: &[(String, String)],
        message: impl Into<String>,
    ) -> Self {
        Reject::new(&format!("http_{status}"), message, retryable_status(status))
            .with_retry_after(throttling_status(status), headers)
    }

    /// Passes the answer's `Retry-After` seconds on when the provider said it is `throttled` and
    /// this rejection is retryable (a permanent one has nothing to wait for).
    pub fn with_retry_after(mut self, throttled: bool, headers: &[(String, String)]) -> Self {
        if self.retryable && throttled {
            self.retry_after_seconds = retry_after(headers);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::pairs;

    #[test]
    fn the_plugin_side_codes_and_their_retryability() {
        let reject = Reject::plugin_config("account_sid is not set");
        assert_eq!(reject.code, "plugin_config");
        assert_eq!(reject.message, "account_sid is not set");
        assert!(reject.retryable);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = Reject::invalid_content(String::from("no text"));
        assert_eq!(reject.code, "invalid_content");
        assert!(!reject.retryable);
        let reject = Reject::unsupported_channel("email");
        assert_eq!(reject.code, "unsupported_channel");
        assert!(reject.retryable);
        assert_eq!(
            Reject::new("x_1", "m", false),
            Reject {
                code: "x_1".to_owned(),
                message: "m".to_owned(),
                retryable: false,
                retry_after_seconds: None,
            }
        );
    }

    #[test]
    fn http_status_fallback() {
        let throttled = pairs(&[("Retry-After", "30")]);
        for status in [429, 503] {
            let reject = Reject::http_status(status, &throttled, "busy");
            assert_eq!(reject.code, format!("http_{status}"));
            assert_eq!(reject.message, "busy");
            assert!(reject.retryable);
            assert_eq!(reject.retry_after_seconds, Some(30));
        }
        // Other retryable statuses do not pass a wait on.
        for status in [401, 403, 404, 408, 500, 502, 504] {
            let reject = Reject::http_status(status, &throttled, "");
            assert!(reject.retryable, "{status}");
            assert_eq!(reject.retry_after_seconds, None, "{status}");
        }
        for status in [400, 402, 405, 409, 413, 422] {
            let reject = Reject::http_status(status, &throttled, "");
            assert!(!reject.retryable, "{status}");
            assert_eq!(reject.retry_after_seconds, None, "{status}");
        }
        assert_eq!(Reject::http_status(429, &[], "").retry_after_seconds, None);
    }

    #[test]
    fn retry_after_is_passed_on_only_when_throttled_and_retryable() {
        let throttled = pairs(&[("retry-after", "12")]);
        let retryable = Reject::new("x_1", "m", true);
        let reject = retryable.clone().with_retry_after(true, &throttled);
        assert_eq!(reject.retry_after_seconds, Some(12));
        let reject = retryable.with_retry_after(false, &throttled);
        assert_eq!(reject.retry_after_seconds, None);
        let reject = Reject::new("x_2", "m", false).with_retry_after(true, &throttled);
        assert_eq!(reject.retry_after_seconds, None);
    }
}
