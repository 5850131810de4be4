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

mod fetch;
mod http;
mod reject;

pub use fetch::{FetchFailure, SendFailure};
pub use http::{
    MAX_ERROR_BODY, body_excerpt, body_or_status, header, pairs, retry_after, retryable_status,
    throttling_status,
};
pub use reject::Reject;

/// A config value, trimmed, if it is set and not blank.
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
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
