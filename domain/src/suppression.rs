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

/// Longest reason an operator or a tenant may give.
pub const MAX_REASON_CHARS: usize = 200;

/// Checks an entry given by a person: the channel, the address as `to`'s field for it is
/// checked, and the reason (default `reason_default`). Answers the channel, the address as a
/// message carries it (a phone number in E.164), and the reason.
pub fn check_entry(
    channel: &str,
    address: &str,
    reason: Option<&str>,
    reason_default: &str,
) -> Result<(Channel, String, String), String> {
    let channel = Channel::parse(channel)
        .ok_or_else(|| format!("unknown channel {channel:?}: sms, email, push or whatsapp"))?;
    let address = crate::validation::check_address(channel, address)?;
    Ok((channel, address, check_reason(reason, reason_default)?))
}

/// The address a tenant lists, as a message would carry it: a phone number written for people
/// in E.164, anything else as given (see [`check_listed`]).
pub fn listed_address(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Sms | Channel::Whatsapp => {
            crate::phone::normalize(address).unwrap_or_else(|| address.to_owned())
        }
        Channel::Email | Channel::Push => address.to_owned(),
    }
}

fn check_reason(reason: Option<&str>, reason_default: &str) -> Result<String, String> {
    let reason = reason.unwrap_or(reason_default);
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(format!(
            "a reason has 1 to {MAX_REASON_CHARS} characters and no control characters"
        ));
    }
    Ok(reason.to_owned())
}

/// Longest address a list holds (a push token's longest).
pub const MAX_ADDRESS_CHARS: usize = 4096;

/// Checks an entry a tenant gives through its API: any readable address (one that is no valid
/// recipient never matches a message, so it does no harm), and the reason. Answers the reason.
pub fn check_listed(
    address: &str,
    reason: Option<&str>,
    reason_default: &str,
) -> Result<String, String> {
    if address.is_empty()
        || address.chars().count() > MAX_ADDRESS_CHARS
        || address.chars().any(char::is_control)
    {
        return Err(format!(
            "an address has 1 to {MAX_ADDRESS_CHARS} characters and no control characters"
        ));
    }
    check_reason(reason, reason_default)
}

/// How a list compares an address: emails without regard to case (providers and mailboxes do),
/// the others as given.
pub fn normalized(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => address.to_lowercase(),
        _ => address.to_owned(),
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

    #[test]
    fn a_listed_phone_number_is_kept_as_messages_carry_it() {
        assert_eq!(
            check_entry("sms", "+1 (415) 555-0100", None, "operator"),
            Ok((Channel::Sms, "+14155550100".into(), "operator".into()))
        );
        assert!(check_entry("whatsapp", "415 555 0100", None, "operator").is_err());
        assert_eq!(
            listed_address(Channel::Whatsapp, "+44 (0)20 7946 0958"),
            "+442079460958"
        );
        // A tenant may list what is no valid recipient: it is kept as given, and never matches.
        assert_eq!(listed_address(Channel::Sms, "not a number"), "not a number");
        assert_eq!(
            listed_address(Channel::Email, "Ada@Example.com"),
            "Ada@Example.com"
        );
    }
}
