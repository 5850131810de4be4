//! What an attempt cost, and the lines of a billing export.
//!
//! An attempt's cost is known at dispatch when the account has a price table (`--price`): the
//! price for the recipient's country (or the account's `*` price) times the units the provider
//! bills, SMS segments for an SMS and one for every other channel. It is recorded on
//! `AttemptDispatched` (`cost`), so an export reads what was known when the send was made, not
//! today's prices. Prices are in whatever currency the operator's table is in: Hermes never
//! converts.

use crate::message::{AttemptStatus, Message, MessageEvent, MessageSpec};
use crate::routing::PriceTable;
use crate::{AttemptId, Channel, MessageId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What one attempt cost, as far as the account's price table knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptCost {
    /// The units the provider bills: SMS segments, or 1 on other channels.
    pub units: u32,
    /// The account's price of one unit for the destination.
    pub unit_price: f64,
    /// `units × unit_price`, rounded to a millionth.
    pub price: f64,
}

/// The units a step's send is billed in: the SMS segments of the text it carries (GSM-7 or
/// UCS-2, as the network counts them), one on every other channel.
pub fn billable_units(spec: &MessageSpec, channel: Channel) -> u32 {
    if channel != Channel::Sms {
        return 1;
    }
    spec.sms_parts().map_or(1, |parts| {
        u32::try_from(parts.segments.max(1)).unwrap_or(u32::MAX)
    })
}

/// The cost of sending the message's step on `channel` through an account with `prices`;
/// `None` when the table has no price for the destination (or no table at all).
pub fn attempt_cost(
    spec: &MessageSpec,
    channel: Channel,
    prices: &PriceTable,
) -> Option<AttemptCost> {
    if prices.is_empty() {
        return None;
    }
    // Phone channels are priced per country; email and push by the table's `*` price.
    let country = spec.destination_country(channel);
    let unit_price = *country
        .as_deref()
        .and_then(|c| prices.get(c))
        .or_else(|| prices.get("*"))?;
    let units = billable_units(spec, channel);
    Some(AttemptCost {
        units,
        unit_price,
        price: round_price(unit_price * f64::from(units)),
    })
}

/// A price to the millionth of the currency unit, as costs and estimates are recorded.
pub(crate) fn round_price(price: f64) -> f64 {
    (price * 1e6).round() / 1e6
}

/// Whether the provider charged for an attempt, as far as Hermes can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// The provider accepted it (an answer or a receipt says so).
    Yes,
    /// Hermes cannot know whether the request reached the provider (in doubt, never settled by
    /// a receipt): reconcile by the invoice.
    Maybe,
    /// The provider refused it: nothing was sent.
    No,
    /// The provider has not answered yet.
    Pending,
}

impl Charged {
    pub fn as_str(self) -> &'static str {
        match self {
            Charged::Yes => "yes",
            Charged::Maybe => "maybe",
            Charged::No => "no",
            Charged::Pending => "pending",
        }
    }
}

/// One attempt in a billing export.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingLine {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub attempt_id: AttemptId,
    pub step_index: usize,
    pub channel: Channel,
    pub account: String,
    pub dispatched_at: DateTime<Utc>,
    pub status: AttemptStatus,
    pub charged: Charged,
    pub provider_message_id: Option<String>,
    pub cost: Option<AttemptCost>,
    /// A receipt came after the cascade had moved on: the tenant may have been charged for two
    /// steps of one message.
    pub late: bool,
}

/// The attempts of one message, in the order they were made.
pub fn billing_lines(message_id: MessageId, events: &[MessageEvent]) -> Vec<BillingLine> {
    let mut costs: HashMap<AttemptId, AttemptCost> = HashMap::new();
    let mut state: Option<Message> = None;
    for event in events {
        if let MessageEvent::AttemptDispatched {
            attempt_id,
            cost: Some(cost),
            ..
        } = event
        {
            costs.insert(*attempt_id, cost.clone());
        }
        state = Message::apply(state, message_id, event);
    }
    let Some(message) = state else {
        return Vec::new();
    };
    message
        .attempts
        .iter()
        .map(|a| BillingLine {
            tenant_id: message.tenant_id,
            message_id,
            attempt_id: a.id,
            step_index: a.step_index,
            channel: a.channel,
            account: a.provider.clone(),
            dispatched_at: a.dispatched_at,
            status: a.status,
            charged: charged(a),
            provider_message_id: a.provider_message_id.clone(),
            cost: costs.remove(&a.id),
            late: a.late,
        })
        .collect()
}

fn charged(a: &crate::message::Attempt) -> Charged {
    let answered = a.sent_at.is_some() || a.delivered_at.is_some() || a.read_at.is_some();
    match a.status {
        AttemptStatus::Dispatching => Charged::Pending,
        // A refusal sends nothing, unless a receipt came for it after all.
        AttemptStatus::Rejected => Charged::No,
        // A failure receipt is the provider's word that it took the message.
        AttemptStatus::Failed => Charged::Yes,
        _ if answered => Charged::Yes,
        _ if a.in_doubt_at.is_some() => Charged::Maybe,
        _ => Charged::Yes,
    }
}

#[cfg(test)]
mod tests;
