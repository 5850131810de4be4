//! Delivery channels and the cascade's "until" condition.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Channel {
    Sms,
    Email,
    Push,
    Whatsapp,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Sms,
        Channel::Email,
        Channel::Push,
        Channel::Whatsapp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The field of `to` that this channel delivers to.
    pub fn recipient_field(self) -> &'static str {
        match self {
            Channel::Sms => "phone",
            Channel::Email => "email",
            Channel::Push => "push_token",
            Channel::Whatsapp => "whatsapp",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cascade step waits for before the message counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Until {
    /// The provider took the message (synchronous acceptance or a "sent" receipt).
    Accepted,
    /// The provider reported delivery to the device or mailbox.
    Delivered,
    /// The recipient read it (WhatsApp read receipts, app acknowledgements).
    Read,
}

impl Until {
    pub fn as_str(self) -> &'static str {
        match self {
            Until::Accepted => "accepted",
            Until::Delivered => "delivered",
            Until::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Until::Accepted, Until::Delivered, Until::Read]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}
