//! Which durable timers an event arms or makes pointless. The event store writes these in the
//! same transaction as the event, so a timer exists exactly when its event does.

use crate::message::{MessageEvent, TimerKind};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerEffect {
    Arm {
        kind: TimerKind,
        due_at: DateTime<Utc>,
    },
    /// The message ended: its remaining timers would only fire into no-ops.
    DisarmAll,
}

pub fn timer_effect(event: &MessageEvent) -> Option<TimerEffect> {
    match event {
        MessageEvent::MessageAccepted {
            expires_at: Some(due_at),
            ..
        } => Some(TimerEffect::Arm {
            kind: TimerKind::Ttl,
            due_at: *due_at,
        }),
        MessageEvent::StepStarted {
            step_index,
            timeout_at,
            ..
        } => Some(TimerEffect::Arm {
            kind: TimerKind::StepTimeout {
                step_index: *step_index,
            },
            due_at: *timeout_at,
        }),
        e if e.is_terminal() => Some(TimerEffect::DisarmAll),
        _ => None,
    }
}
