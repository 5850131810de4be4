//! The provider interface: send one attempt, and turn a provider callback into receipts.

use bytes::Bytes;
use futures::future::BoxFuture;
use hermes_domain::message::{AttemptError, ChannelContent, ReceiptStatus};
use hermes_domain::routing::ProviderCandidate;
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use std::sync::Arc;

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
    },
    /// The request left and no answer came: the provider may have sent the message.
    #[error("in doubt: {0}")]
    InDoubt(String),
}

/// A provider-facing HTTP request to `/v1/webhooks/{provider}/...`.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    /// Message and attempt ids from the callback URL, when the URL carries them.
    pub ids: Option<(MessageId, AttemptId)>,
    /// The full URL the provider called (some providers sign it).
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback's signature is missing or wrong")]
    InvalidSignature,
    #[error("the callback could not be understood: {0}")]
    Malformed(String),
}

pub trait Provider: Send + Sync {
    /// Stable name: used in routing, in `/v1/webhooks/{name}` and in attempt events.
    fn name(&self) -> &str;
    fn channels(&self) -> &[Channel];
    fn send<'a>(
        &'a self,
        request: &'a SendRequest,
    ) -> BoxFuture<'a, Result<SendAccepted, SendError>>;
    /// Verifies the callback's signature (in constant time) and normalizes it.
    fn parse_callback(&self, request: &CallbackRequest) -> Result<Vec<Receipt>, CallbackError>;
}

/// The provider accounts Hermes can route to, in priority order.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: Vec<Arc<dyn Provider>>,
}

impl ProviderRegistry {
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        Self { providers }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// What the router sees. Health tracking arrives with the plugin host; all are healthy now.
    pub fn candidates(&self) -> Vec<ProviderCandidate> {
        self.providers
            .iter()
            .map(|p| ProviderCandidate {
                name: p.name().to_owned(),
                channels: p.channels().to_vec(),
                healthy: true,
            })
            .collect()
    }
}
