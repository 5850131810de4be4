//! What a tenant asked for. Built only by [`crate::validation`], so a `MessageSpec` is valid.
//! None of these is a wire type: the API has its request types, events their stored form
//! ([`super::stored`]); only `ChannelContent` (and its template) has a JSON form, the mock
//! provider's request body.

use crate::channel::{Channel, Until};
use crate::enrichment::Enrichment;
use crate::sms_segments::SmsSegments;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub push_token: Option<String>,
    pub whatsapp: Option<String>,
}

impl Recipient {
    /// The address a channel delivers to, if the tenant gave one.
    pub fn address_for(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Sms => self.phone.as_deref(),
            Channel::Email => self.email.as_deref(),
            Channel::Push => self.push_token.as_deref(),
            Channel::Whatsapp => self.whatsapp.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmsContent {
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmailContent {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushContent {
    pub title: Option<String>,
    pub body: Option<String>,
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WhatsappContent {
    pub text: Option<String>,
    /// A pre-approved message template: the only content WhatsApp delivers outside the 24-hour
    /// customer-service window. `text` (or the top-level `text`) still describes the message for
    /// audit and for providers that cannot send templates.
    pub template: Option<WhatsappTemplate>,
}

/// A WhatsApp message template, as the WhatsApp Cloud API names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsappTemplate {
    /// The template's name, e.g. `order_shipped`.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// The Cloud API's `components` (header, body and button parameters), passed through as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<serde_json::Value>>,
}

/// Per-channel content with a plain `text` fallback for every channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    pub text: Option<String>,
    pub sms: Option<SmsContent>,
    pub email: Option<EmailContent>,
    pub push: Option<PushContent>,
    pub whatsapp: Option<WhatsappContent>,
}

/// The content as one channel sends it, after the `text` fallback is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum ChannelContent {
    Sms {
        text: String,
    },
    Email {
        subject: String,
        text: Option<String>,
        html: Option<String>,
    },
    Push {
        title: Option<String>,
        body: Option<String>,
        data: Option<serde_json::Map<String, serde_json::Value>>,
    },
    Whatsapp {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<WhatsappTemplate>,
    },
}

/// Longest email subject we derive from `text` when no subject is given (RFC 5322's line advice).
const DERIVED_SUBJECT_MAX: usize = 78;

impl Content {
    /// The channel's own text (`sms.text`, `whatsapp.text`, `push.body`, `email.text`), which
    /// takes the place of the `text` fallback.
    pub fn own_text(&self, channel: Channel) -> Option<&String> {
        match channel {
            Channel::Sms => self.sms.as_ref()?.text.as_ref(),
            Channel::Whatsapp => self.whatsapp.as_ref()?.text.as_ref(),
            Channel::Push => self.push.as_ref()?.body.as_ref(),
            Channel::Email => self.email.as_ref()?.text.as_ref(),
        }
    }

    /// Renders the content for one channel; `None` when there is nothing to send on it.
    pub fn render(&self, channel: Channel) -> Option<ChannelContent> {
        let fallback = self.text.clone();
        match channel {
            Channel::Sms => self
                .sms
                .as_ref()
                .and_then(|s| s.text.clone())
                .or(fallback)
                .map(|text| ChannelContent::Sms { text }),
            Channel::Whatsapp => {
                let w = self.whatsapp.clone().unwrap_or_default();
                let text = w.text.or(fallback);
                if text.is_none() && w.template.is_none() {
                    return None;
                }
                Some(ChannelContent::Whatsapp {
                    text: text.unwrap_or_default(),
                    template: w.template,
                })
            }
            Channel::Email => {
                let e = self.email.clone().unwrap_or_default();
                let text = e.text.or(fallback);
                if text.is_none() && e.html.is_none() {
                    return None;
                }
                let subject = e.subject.unwrap_or_else(|| {
                    let first_line = text.as_deref().unwrap_or("").lines().next().unwrap_or("");
                    first_line.chars().take(DERIVED_SUBJECT_MAX).collect()
                });
                Some(ChannelContent::Email {
                    subject,
                    text,
                    html: e.html,
                })
            }
            Channel::Push => {
                let p = self.push.clone().unwrap_or_default();
                let body = p.body.or(fallback);
                if p.title.is_none() && body.is_none() && p.data.is_none() {
                    return None;
                }
                Some(ChannelContent::Push {
                    title: p.title,
                    body,
                    data: p.data,
                })
            }
        }
    }
}

/// One step of a cascade: try `channel`, wait up to `timeout_seconds` for `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CascadeStep {
    pub channel: Channel,
    pub timeout_seconds: u32,
    pub until: Until,
}

/// A validated delivery request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSpec {
    pub to: Recipient,
    pub content: Content,
    pub cascade: Vec<CascadeStep>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub ttl_seconds: Option<u32>,
    /// The tenant's named cascade policy the steps came from, and which version of it.
    pub cascade_policy: Option<PolicyRef>,
    /// Steps (indices) whose address the tenant's suppression list held at accept: the cascade
    /// skips them. Recorded in `MessageAccepted`, so the skip is part of the message's history.
    pub suppressed_steps: Vec<usize>,
    /// What layer 9 read off the message at accept ([`crate::enrichment`]); `None` on messages
    /// accepted before it was recorded.
    pub enrichment: Option<Enrichment>,
}

impl MessageSpec {
    /// The parts the SMS text (`content.sms.text`, else `content.text`) is sent in: as recorded
    /// at accept, else counted now. `None` when there is no such text.
    pub fn sms_parts(&self) -> Option<SmsSegments> {
        if let Some(enrichment) = &self.enrichment
            && let Some(i) = self.cascade.iter().position(|s| s.channel == Channel::Sms)
            && let Some(step) = enrichment.steps.get(i)
        {
            return step.sms;
        }
        self.content
            .own_text(Channel::Sms)
            .or(self.content.text.as_ref())
            .map(|text| crate::sms_segments::count(text))
    }

    /// The country of the number a phone channel (SMS, WhatsApp) sends to: as recorded at accept,
    /// else read from the number now (messages accepted before enrichment was recorded).
    pub fn destination_country(&self, channel: Channel) -> Option<String> {
        if !matches!(channel, Channel::Sms | Channel::Whatsapp) {
            return None;
        }
        if let Some(enrichment) = &self.enrichment
            && let Some(i) = self.cascade.iter().position(|s| s.channel == channel)
            && let Some(step) = enrichment.steps.get(i)
        {
            return step.country.clone();
        }
        self.to
            .address_for(channel)
            .and_then(crate::phone::country_of)
    }

    /// The first step at or after `from` that is not suppressed.
    pub fn next_step_from(&self, from: usize) -> Option<usize> {
        (from..self.cascade.len()).find(|i| !self.suppressed_steps.contains(i))
    }
}

/// A named cascade policy as a message used it: its version is the tenant's stream version at
/// which the policy took the shape the message ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub name: String,
    pub version: i64,
}
