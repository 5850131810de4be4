//! The provider interface: send one attempt, and turn a provider callback into receipts.
//! [`crate::registry`] holds the accounts that implement it.

use bytes::Bytes;
use futures::future::BoxFuture;
use hermes_domain::message::{AttemptError, ChannelContent, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use std::time::Duration;

/// One attempt, as handed to a provider.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub attempt_id: AttemptId,
    pub channel: Channel,
    /// The address on this channel (E.164 phone, email, push token, WhatsApp number).
    pub to: String,
    pub content: ChannelContent,
    /// Where the provider should send receipts for this attempt; it carries the message and
    /// attempt ids, which is how a receipt finds its attempt.
    pub callback_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAccepted {
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The provider refused. `retryable`: the same request may succeed elsewhere or later
    /// (timeouts before sending, 408, 429, 5xx); otherwise it is permanent (bad number...).
    #[error("rejected ({}): {}", error.code, error.message)]
    Rejected {
        error: AttemptError,
        retryable: bool,
        /// The provider asked to be left alone this long (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The request left and no answer came: the provider may have sent the message.
    #[error("in doubt: {0}")]
    InDoubt(String),
}

/// Codes of a request Hermes itself refused for the account (its allowed hosts, a private
/// address): another account may do, but waiting will not change the answer.
pub const POLICY_DENIAL_CODES: [&str; 2] = ["fetch_denied", "plugin_denied"];

impl SendError {
    /// Whether the same account may take the request later: a retryable rejection that is not
    /// Hermes's own policy denial.
    pub fn worth_retrying_later(&self) -> bool {
        matches!(self, SendError::Rejected { error, retryable: true, .. }
            if !POLICY_DENIAL_CODES.contains(&error.code.as_str()))
    }

    /// A rejection with no `Retry-After`.
    pub fn rejected(error: AttemptError, retryable: bool) -> Self {
        SendError::Rejected {
            error,
            retryable,
            retry_after: None,
        }
    }
}

/// A provider-facing HTTP request to `/v1/webhooks/{account}[/{message_id}/{attempt_id}]`.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    /// Message and attempt ids from the callback URL, when the URL carries them.
    pub ids: Option<(MessageId, AttemptId)>,
    /// `POST`, or `GET` for subscription checks.
    pub method: http::Method,
    /// The full URL the provider called, query included (some providers sign it).
    pub url: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A normalized delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: MessageId,
    pub attempt_id: AttemptId,
    pub status: ReceiptStatus,
    pub provider_message_id: Option<String>,
    pub error: Option<AttemptError>,
}

/// What a callback meant: receipts to record, and what to answer the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackOutcome {
    pub receipts: Vec<Receipt>,
    /// An answer other than Hermes's default JSON count (a subscription check's echo).
    pub reply: Option<CallbackReply>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackReply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback's signature is missing or wrong")]
    InvalidSignature,
    #[error("the callback could not be understood: {0}")]
    Malformed(String),
    /// Hermes had no capacity to read it now: answered 503, so the provider sends it again.
    #[error("Hermes is busy; send the callback again")]
    Busy,
}

/// A message a recipient sent to one of the account's numbers (`/v1/inbound/{account}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The sender, E.164.
    pub from: String,
    /// The account's number it was sent to, E.164.
    pub to: String,
    pub text: String,
    pub provider_message_id: Option<String>,
}

/// What an inbound-message webhook carried, and what to answer the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundOutcome {
    pub messages: Vec<InboundMessage>,
    pub reply: Option<CallbackReply>,
}

/// An attempt Hermes asks its provider about (reconciliation, see [`Provider::lookup_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    pub message_id: MessageId,
    pub attempt_id: AttemptId,
    pub channel: Channel,
    /// The provider's id from its answer to the send, if one was recorded.
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The provider (or its plugin) offers no status lookup.
    #[error("the provider offers no status lookup")]
    Unsupported,
    /// The provider could not be asked, or its answer was not understood.
    #[error("the status lookup failed: {0}")]
    Failed(String),
}

pub trait Provider: Send + Sync {
    /// The account's name: used in routing, in `/v1/webhooks/{name}` and in attempt events.
    fn name(&self) -> &str;
    /// What serves this account, `plugin@version`; recorded on every attempt.
    fn served_by(&self) -> String;
    fn channels(&self) -> &[Channel];
    fn send<'a>(
        &'a self,
        request: &'a SendRequest,
    ) -> BoxFuture<'a, Result<SendAccepted, SendError>>;
    /// Verifies the callback's signature (in constant time) and normalizes it.
    fn parse_callback<'a>(
        &'a self,
        request: &'a CallbackRequest,
    ) -> BoxFuture<'a, Result<CallbackOutcome, CallbackError>>;
    /// Asks the provider for the attempt's status: a receipt for exactly that attempt, or `None`
    /// when the provider does not know it or has no status yet. Providers without a lookup
    /// answer [`LookupError::Unsupported`].
    fn lookup_status<'a>(
        &'a self,
        request: &'a LookupRequest,
    ) -> BoxFuture<'a, Result<Option<Receipt>, LookupError>> {
        let _ = request;
        Box::pin(std::future::ready(Err(LookupError::Unsupported)))
    }
    /// Whether the account takes its provider's inbound-message webhook ([`Self::parse_inbound`]).
    fn takes_inbound(&self) -> bool {
        false
    }
    /// Verifies an inbound-message webhook's signature (in constant time) and normalizes it.
    /// Providers without one answer [`CallbackError::Malformed`]; the API asks
    /// [`Self::takes_inbound`] first.
    fn parse_inbound<'a>(
        &'a self,
        request: &'a CallbackRequest,
    ) -> BoxFuture<'a, Result<InboundOutcome, CallbackError>> {
        let _ = request;
        Box::pin(std::future::ready(Err(CallbackError::Malformed(
            "this provider account takes no inbound messages".to_owned(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_retryable_refusal_that_is_not_a_policy_denial_is_worth_retrying_later() {
        let refused =
            |code: &str, retryable| SendError::rejected(AttemptError::new(code, "x"), retryable);
        assert!(refused("http_503", true).worth_retrying_later());
        assert!(refused("connect_failed", true).worth_retrying_later());
        assert!(!refused("fetch_denied", true).worth_retrying_later());
        assert!(!refused("plugin_denied", true).worth_retrying_later());
        assert!(!refused("invalid_recipient", false).worth_retrying_later());
        assert!(!SendError::InDoubt("timeout".into()).worth_retrying_later());
    }
}
