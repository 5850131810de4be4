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
        // A step's clock starts at its first dispatch, or when nothing could serve it (steps
        // started before that rule carry their timeout on `StepStarted`).
        MessageEvent::StepStarted {
            step_index,
            timeout_at: Some(due_at),
            ..
        }
        | MessageEvent::AttemptDispatched {
            step_index,
            step_timeout_at: Some(due_at),
            ..
        }
        | MessageEvent::StepUnserved {
            step_index,
            timeout_at: due_at,
            ..
        } => Some(TimerEffect::Arm {
            kind: TimerKind::StepTimeout {
                step_index: *step_index,
            },
            due_at: *due_at,
        }),
        MessageEvent::AttemptRejected {
            attempt_id,
            retry_at: Some(due_at),
            ..
        } => Some(TimerEffect::Arm {
            kind: TimerKind::Retry { after: *attempt_id },
            due_at: *due_at,
        }),
        MessageEvent::StepDeferred {
            step_index, until, ..
        } => Some(TimerEffect::Arm {
            kind: TimerKind::StepResume {
                step_index: *step_index,
            },
            due_at: *until,
        }),
        e if e.is_terminal() => Some(TimerEffect::DisarmAll),
        _ => None,
    }
}
