//! Suppression: addresses a tenant must not send to on a channel, because the recipient asked
//! (a complaint), the address is dead (a hard bounce, an unregistered push token), or the tenant
//! said so. This module says which outcomes suppress an address; the list lives in
//! `suppressions` (written by the `suppressions` subscriber and the admin API), and a message's
//! suppressed steps are skipped at accept ([`crate::message::MessageSpec::suppressed_steps`]).

use crate::channel::Channel;
use crate::message::{Message, MessageEvent, ReceiptStatus};

/// An address to suppress, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub channel: Channel,
    pub address: String,
    /// `hard_bounce`, `complaint` or `unregistered`.
    pub reason: &'static str,
}

/// The error codes, as the plugins classify them, that mean the address is no good: a hard
/// bounce or a complaint (email receipts), a dead token (push rejections). A soft bounce
/// (`ses_bounce_transient`) is not among them.
fn reason_for(channel: Channel, code: &str) -> Option<&'static str> {
    match (channel, code) {
        (Channel::Email, "bounce" | "ses_bounce_permanent") => Some("hard_bounce"),
        (Channel::Email, "complaint" | "ses_complaint") => Some("complaint"),
        (Channel::Push, "UNREGISTERED" | "fcm_UNREGISTERED") => Some("unregistered"),
        _ => None,
    }
}

/// Whether `event` may call for a suppression, told without the message (so a subscriber loads
/// a message only for the few that might).
pub fn may_suppress(event: &MessageEvent) -> bool {
    let code = match event {
        MessageEvent::ReceiptRecorded {
            status: ReceiptStatus::Failed,
            error: Some(error),
            ..
        } => &error.code,
        MessageEvent::AttemptRejected {
            error,
            retryable: false,
            ..
        } => &error.code,
        _ => return false,
    };
    [Channel::Email, Channel::Push]
        .into_iter()
        .any(|c| reason_for(c, code).is_some())
}

/// The suppression `event` calls for, given the message it belongs to (as it was before it).
pub fn from_event(message: &Message, event: &MessageEvent) -> Option<Suppression> {
    let (attempt_id, error) = match event {
        MessageEvent::ReceiptRecorded {
            attempt_id,
            status: ReceiptStatus::Failed,
            error: Some(error),
            ..
        } => (attempt_id, error),
        MessageEvent::AttemptRejected {
            attempt_id,
            error,
            retryable: false,
            ..
        } => (attempt_id, error),
        _ => return None,
    };
    let attempt = message.attempts.iter().find(|a| a.id == *attempt_id)?;
    let reason = reason_for(attempt.channel, &error.code)?;
    let address = message.spec.to.address_for(attempt.channel)?;
    Some(Suppression {
        channel: attempt.channel,
        address: address.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hard_outcomes_suppress() {
        assert_eq!(
            reason_for(Channel::Email, "ses_bounce_permanent"),
            Some("hard_bounce")
        );
        assert_eq!(reason_for(Channel::Email, "complaint"), Some("complaint"));
        assert_eq!(
            reason_for(Channel::Push, "fcm_UNREGISTERED"),
            Some("unregistered")
        );
        assert_eq!(reason_for(Channel::Email, "ses_bounce_transient"), None);
        assert_eq!(reason_for(Channel::Sms, "bounce"), None);
        assert_eq!(reason_for(Channel::Push, "fcm_QUOTA_EXCEEDED"), None);
    }
}
