//! Routing policy: which provider account serves a step.

use crate::channel::Channel;

/// What the router knows of one provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCandidate {
    pub name: String,
    pub channels: Vec<Channel>,
    /// Recent calls failed in a way that points at the provider (5xx, timeouts, sandbox traps).
    pub healthy: bool,
}

/// Picks the provider for the next attempt of a step: the first healthy account of the channel
/// not yet tried on this step, in configured (priority) order; an unhealthy one only when no
/// healthy one is left, because trying beats failing the step outright.
pub fn pick_provider<'a>(
    channel: Channel,
    candidates: &'a [ProviderCandidate],
    tried: &[&str],
) -> Option<&'a str> {
    let untried = || {
        candidates
            .iter()
            .filter(move |c| c.channels.contains(&channel) && !tried.contains(&c.name.as_str()))
    };
    untried()
        .find(|c| c.healthy)
        .or_else(|| untried().next())
        .map(|c| c.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, channels: &[Channel], healthy: bool) -> ProviderCandidate {
        ProviderCandidate {
            name: name.into(),
            channels: channels.to_vec(),
            healthy,
        }
    }

    #[test]
    fn picks_first_healthy_provider_of_the_channel() {
        let c = [
            cand("ses", &[Channel::Email], true),
            cand("twilio", &[Channel::Sms], false),
            cand("vonage", &[Channel::Sms], true),
        ];
        assert_eq!(pick_provider(Channel::Sms, &c, &[]), Some("vonage"));
    }

    #[test]
    fn skips_providers_already_tried_on_the_step() {
        let c = [
            cand("a", &[Channel::Sms], true),
            cand("b", &[Channel::Sms], true),
        ];
        assert_eq!(pick_provider(Channel::Sms, &c, &["a"]), Some("b"));
        assert_eq!(pick_provider(Channel::Sms, &c, &["a", "b"]), None);
    }

    #[test]
    fn falls_back_to_an_unhealthy_provider_rather_than_none() {
        let c = [cand("a", &[Channel::Push], false)];
        assert_eq!(pick_provider(Channel::Push, &c, &[]), Some("a"));
        assert_eq!(pick_provider(Channel::Email, &c, &[]), None);
    }
}
