//! Layer 9 of the accept pipeline, enrich: what Hermes reads off a message that passed every
//! other layer, recorded with it in `MessageAccepted` (`spec.enrichment`) and answered before any
//! send by `POST /v1/messages/preview`. Per step: the destination's country (phone steps), the
//! parts an SMS is sent in, and the route the router would take at accept, with its price.
//!
//! The route is the router's answer at accept. Each dispatch routes again with what it knows
//! then (circuits, a failover, the weighted draw seeded by the attempt), and records that route
//! on `AttemptDispatched`; the two differ when something changed in between. The country is what
//! every later decision on the message uses (routing rules, quiet hours, prices), so a message
//! keeps its country even if a libphonenumber upgrade would read the number otherwise.

use crate::billing::round_price;
use crate::channel::Channel;
use crate::ids::TenantId;
use crate::message::MessageSpec;
use crate::phone;
use crate::routing::{ProviderCandidate, RouteRequest, RoutingRule, route};
use crate::sms_segments::SmsSegments;
use std::collections::BTreeMap;

/// What layer 9 found, one entry per step of the cascade (in its order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Enrichment {
    pub steps: Vec<StepEnrichment>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepEnrichment {
    /// The recipient's country (ISO 3166-1 alpha-2), for SMS and WhatsApp steps whose number
    /// belongs to one.
    pub country: Option<String>,
    /// For SMS steps: the encoding, units and parts the text is sent as.
    pub sms: Option<SmsSegments>,
    /// The provider account the router would pick for the step's first attempt.
    pub account: Option<String>,
    /// Why that account (`first_usable`, `cheapest`, `weighted`, `probe`, `every_circuit_open`).
    pub route_reason: Option<String>,
    /// The account's price for the destination times the message units, when it has a price.
    pub price_estimate: Option<f64>,
}

impl Enrichment {
    /// The sum of the steps' price estimates: what the message costs if every step is sent once
    /// (`None` when no step has a price).
    pub fn price_estimate(&self) -> Option<f64> {
        let prices: Vec<f64> = self.steps.iter().filter_map(|s| s.price_estimate).collect();
        (!prices.is_empty()).then(|| round_price(prices.iter().sum()))
    }
}

/// Enriches `spec` for `tenant`, routing among `candidates` under the tenant's `rules`.
pub fn enrich(
    tenant: TenantId,
    spec: &MessageSpec,
    candidates: &[ProviderCandidate],
    rules: &BTreeMap<Channel, RoutingRule>,
) -> Enrichment {
    // One libphonenumber read per number, however many steps go to it.
    let phone_country = spec.to.phone.as_deref().and_then(phone::country_of);
    let whatsapp_country = if spec.to.whatsapp == spec.to.phone {
        phone_country.clone()
    } else {
        spec.to.whatsapp.as_deref().and_then(phone::country_of)
    };
    let steps = spec
        .cascade
        .iter()
        .map(|step| {
            let country = match step.channel {
                Channel::Sms => phone_country.clone(),
                Channel::Whatsapp => whatsapp_country.clone(),
                Channel::Email | Channel::Push => None,
            };
            let sms = (step.channel == Channel::Sms)
                .then(|| spec.sms_parts())
                .flatten();
            let decision = route(
                &RouteRequest {
                    tenant: Some(tenant),
                    country: country.as_deref(),
                    rule: rules.get(&step.channel),
                    ..RouteRequest::any(step.channel)
                },
                candidates,
            );
            let units = sms.map_or(1, |s| s.segments.max(1));
            let price_estimate = decision.as_ref().and_then(|d| {
                d.record
                    .candidates
                    .iter()
                    .find(|c| c.account == d.account)
                    .and_then(|c| c.price)
                    .map(|price| round_price(price * units as f64))
            });
            StepEnrichment {
                route_reason: decision.as_ref().map(|d| d.record.reason.clone()),
                account: decision.map(|d| d.account),
                country,
                sms,
                price_estimate,
            }
        })
        .collect();
    Enrichment { steps }
}

#[cfg(test)]
mod tests;
