//! What a decision's events say about the cascade, for the operator's metrics: a fallback to a
//! later step and why the step before it ended, how long a dispatch waited, how long a receipt
//! took. Pure: the caller (the command writer) turns these into metrics.

use crate::channel::Channel;
use crate::message::events::{MessageEvent, ReceiptStatus};
use crate::message::state::Message;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Why a step ended without success, so that the cascade fell back to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// Its time ran out (no receipt, or none that counted, within the step's timeout).
    Timeout,
    /// The provider refused the attempt, with no other account or retry left for the step.
    Rejected,
    /// The provider's receipt said it failed (undelivered, bounced).
    Undelivered,
}

impl FallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Timeout => "timeout",
            FallbackReason::Rejected => "rejected",
            FallbackReason::Undelivered => "undelivered",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The cascade moved on to `to`, a later step's channel.
    Fallback { to: Channel, reason: FallbackReason },
    /// An attempt was dispatched `waited` after its step started (the first step starts at
    /// accept): the saga's lag plus routing, before the provider is called.
    Dispatched {
        channel: Channel,
        provider: String,
        waited: Duration,
    },
    /// A receipt came `after` the attempt was sent (for a receipt without a recorded send: after
    /// its dispatch).
    Receipt {
        provider: String,
        status: ReceiptStatus,
        after: Duration,
    },
}

/// What `events`, decided on `before`, show.
pub fn observe(before: &Message, events: &[MessageEvent]) -> Vec<Observation> {
    let mut seen = Vec::new();
    for event in events {
        match event {
            MessageEvent::StepStarted {
                step_index,
                channel,
                ..
            } if *step_index > 0 => {
                if let Some(reason) = why_the_step_before_ended(events) {
                    seen.push(Observation::Fallback {
                        to: *channel,
                        reason,
                    });
                }
            }
            MessageEvent::AttemptDispatched {
                step_index,
                channel,
                provider,
                at,
                ..
            } => {
                let started = step_started_at(before, events, *step_index);
                seen.push(Observation::Dispatched {
                    channel: *channel,
                    provider: provider.clone(),
                    waited: elapsed(started, *at),
                });
            }
            MessageEvent::ReceiptRecorded {
                attempt_id,
                status,
                at,
                ..
            } => {
                if let Some(attempt) = before.attempt(*attempt_id) {
                    let since = attempt.sent_at.unwrap_or(attempt.dispatched_at);
                    seen.push(Observation::Receipt {
                        provider: attempt.provider.clone(),
                        status: *status,
                        after: elapsed(since, *at),
                    });
                }
            }
            _ => {}
        }
    }
    seen
}

/// The event that ended the step before, among those decided with the next step's start.
fn why_the_step_before_ended(events: &[MessageEvent]) -> Option<FallbackReason> {
    events.iter().find_map(|e| match e {
        MessageEvent::StepTimedOut { .. } => Some(FallbackReason::Timeout),
        MessageEvent::AttemptRejected { .. } => Some(FallbackReason::Rejected),
        MessageEvent::ReceiptRecorded {
            status: ReceiptStatus::Failed,
            ..
        } => Some(FallbackReason::Undelivered),
        _ => None,
    })
}

/// When step `index` started: in these events, or as the state knows it; the message's accept
/// when neither does.
fn step_started_at(before: &Message, events: &[MessageEvent], index: usize) -> DateTime<Utc> {
    events
        .iter()
        .find_map(|e| match e {
            MessageEvent::StepStarted { step_index, at, .. } if *step_index == index => Some(*at),
            _ => None,
        })
        .or_else(|| {
            before
                .current_step
                .as_ref()
                .filter(|s| s.index == index)
                .map(|s| s.started_at)
        })
        .unwrap_or(before.accepted_at)
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}
