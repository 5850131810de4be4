//! Reconciliation: before a step's timeout moves the cascade on, the provider of the step's
//! awaited attempt is asked for its status (`lookup-status`, where the provider offers one).
//! A receipt lost while Hermes was down (the provider posted it into the void and stopped
//! retrying) is then recorded all the same, and a delivered message is not sent again on the next
//! channel nor reported `failed`.
//!
//! Which attempt to ask about is the domain's rule ([`Message::attempt_to_reconcile`]); this is the
//! I/O around it. What the provider says is recorded as that attempt's receipt, through the same
//! command as a callback, with the actor `reconciliation:<provider>` in the event's metadata so the
//! audit trail shows where it came from. A lookup that fails or is not offered changes nothing: the
//! timeout then does what it always did.

use crate::handler::{CommandError, CommandHandler};
use hermes_adapters::{LookupError, LookupRequest, ProviderRegistry, Receipt};
use hermes_domain::MessageId;
use hermes_domain::message::{Message, MessageCommand, TimerKind};
use hermes_infra::event_store::{Cause, EventMetadata};

/// The actor recorded on receipts that came from a status lookup (`reconciliation:<provider>`).
pub const ACTOR_PREFIX: &str = "reconciliation:";

#[derive(Clone)]
pub struct Reconciler {
    handler: CommandHandler,
    providers: ProviderRegistry,
}

impl Reconciler {
    pub fn new(handler: CommandHandler, providers: ProviderRegistry) -> Self {
        Self { handler, providers }
    }

    /// Asks before `timer` fires on `message_id`; returns whether the answer changed the message
    /// (a receipt was recorded).
    pub async fn before_timer(
        &self,
        message_id: MessageId,
        timer: TimerKind,
    ) -> Result<bool, CommandError> {
        if !matches!(timer, TimerKind::StepTimeout { .. }) {
            return Ok(false);
        }
        let Some(message) = self.handler.load(message_id).await? else {
            return Ok(false);
        };
        let Some((provider_name, receipt)) = self.ask(&message, timer).await else {
            return Ok(false);
        };
        let metadata = EventMetadata {
            actor: Some(format!("{ACTOR_PREFIX}{provider_name}")),
            cause: Some(Cause::StatusLookup {
                provider: provider_name.clone(),
                status: receipt.status.as_str().to_owned(),
            }),
            ..Default::default()
        };
        let command = MessageCommand::RecordReceipt {
            attempt_id: receipt.attempt_id,
            status: receipt.status,
            provider_message_id: receipt.provider_message_id,
            error: receipt.error,
        };
        let done = self
            .handler
            .execute(message_id, None, &command, &metadata, None)
            .await?;
        let recorded = !done.events.is_empty();
        if recorded {
            tracing::info!(%message_id, attempt_id = %receipt.attempt_id, provider = %provider_name,
                status = ?receipt.status, "receipt recorded from the provider's status lookup");
        }
        count(
            &provider_name,
            if recorded { "recorded" } else { "no_news" },
        );
        Ok(recorded)
    }

    /// The provider's answer about the attempt to reconcile, if it has one.
    async fn ask(&self, message: &Message, timer: TimerKind) -> Option<(String, Receipt)> {
        let attempt = message.attempt_to_reconcile(timer)?;
        let provider = self.providers.get(&attempt.provider)?;
        let request = LookupRequest {
            message_id: message.id,
            attempt_id: attempt.id,
            channel: attempt.channel,
            provider_message_id: attempt.provider_message_id.clone(),
        };
        match provider.lookup_status(&request).await {
            Ok(Some(receipt)) => Some((attempt.provider.clone(), receipt)),
            Ok(None) => {
                count(&attempt.provider, "unknown");
                None
            }
            Err(LookupError::Unsupported) => None,
            Err(LookupError::Failed(reason)) => {
                tracing::warn!(message_id = %message.id, attempt_id = %attempt.id,
                    provider = %attempt.provider, %reason,
                    "status lookup failed; the step times out without it");
                count(&attempt.provider, "failed");
                None
            }
        }
    }
}

fn count(provider: &str, outcome: &'static str) {
    metrics::counter!("hermes_status_lookups_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}
