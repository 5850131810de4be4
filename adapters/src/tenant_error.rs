//! What a tenant sees of a failed send. A plugin's rejection message and an in-doubt reason are
//! written for operators: they may quote the provider's raw answer or the host's refusal (which
//! names internal addresses and the account's allow-list). Attempt errors are stored in events the
//! tenant reads (`GET /v1/messages/{id}` and its audit trail), so the tenant gets the stable code
//! and a generic message for its kind; the details go to the logs (the saga logs them with the
//! attempt id) and metrics.

use crate::provider::POLICY_DENIAL_CODES;
use hermes_domain::message::AttemptError;

/// The longest code passed on as it is.
const MAX_CODE_LEN: usize = 64;

/// The message an in-doubt attempt shows its tenant.
pub const IN_DOUBT_FOR_TENANT: &str = "the provider's answer did not arrive: the message may have been sent (settled by its receipt or the step's timeout)";

/// `error` as its tenant sees it: the code when it is a plain identifier (else
/// `provider_error`), and a generic message for the code's kind.
pub fn for_tenant(error: &AttemptError, retryable: bool) -> AttemptError {
    let code = if !error.code.is_empty()
        && error.code.len() <= MAX_CODE_LEN
        && error
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        error.code.as_str()
    } else {
        "provider_error"
    };
    let message = match code {
        c if POLICY_DENIAL_CODES.contains(&c) => {
            "Hermes refused the provider request this account's plugin made (see the operator's logs)"
        }
        "connect_failed" => "the provider could not be reached; nothing was sent",
        "plugin_config" => "the provider account is not configured correctly",
        "invalid_content" => "this provider cannot send the message's content",
        "unsupported_channel" => "this provider account does not serve the channel",
        c if c.starts_with("plugin_") => "the provider plugin failed; nothing was sent",
        _ if retryable => "the provider could not take the message now",
        _ => "the provider refused the message",
    };
    AttemptError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_details_and_raw_provider_text_stay_out() {
        let denied = AttemptError::new(
            "fetch_denied",
            "api.example.com resolves to 10.0.0.7, a private address, for account twilio-eu",
        );
        let seen = for_tenant(&denied, true);
        assert_eq!(seen.code, "fetch_denied");
        assert!(!seen.message.contains("10.0.0.7") && !seen.message.contains("twilio-eu"));

        let raw = AttemptError::new(
            "http_500",
            "<html>stack trace at db-internal-3.corp:5432</html>",
        );
        let seen = for_tenant(&raw, true);
        assert_eq!(seen.code, "http_500");
        assert_eq!(seen.message, "the provider could not take the message now");
        assert_eq!(
            for_tenant(
                &AttemptError::new("twilio_21211", "The 'To' number +1 is not valid"),
                false
            )
            .message,
            "the provider refused the message"
        );

        // A code that is not a plain identifier is not passed on either.
        for code in ["", "code with spaces", "<script>", &"x".repeat(65)] {
            assert_eq!(
                for_tenant(&AttemptError::new(code, "m"), false).code,
                "provider_error",
                "{code}"
            );
        }
        assert_eq!(
            for_tenant(&AttemptError::new("plugin_trap", "wasm backtrace..."), true).message,
            "the provider plugin failed; nothing was sent"
        );
    }
}
