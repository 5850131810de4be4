//! Reconciliation: a step's timeout does not give up on an attempt whose receipt never came
//! before its provider has been asked about it. A receipt can be lost (Hermes was down while the
//! provider posted it, and the provider stopped retrying); the provider's status lookup still
//! knows. The timer handler does the asking (I/O); which attempt to ask about is decided here.

use crate::message::decide::TimerKind;
use crate::message::state::{Attempt, Message};

impl Message {
    /// The attempt to ask its provider about before `timer` fires: on the timeout of the step the
    /// message is on, that step's attempt still awaited (dispatching, sent, in doubt, or delivered
    /// when the step waits for `read`: no receipt has met the step's `until` yet). `None` for any
    /// other timer, a stale one, or a step with nothing awaited (rejected, failed, none sent).
    pub fn attempt_to_reconcile(&self, timer: TimerKind) -> Option<&Attempt> {
        let TimerKind::StepTimeout { step_index } = timer else {
            return None;
        };
        if self.current_step_index() != Some(step_index) {
            return None;
        }
        self.active_attempt()
    }
}

#[cfg(test)]
mod tests {
    use crate::channel::{Channel, Until};
    use crate::message::ReceiptStatus;
    use crate::message::decide::TimerKind;
    use crate::message::events::Completion;
    use crate::message::state::{AttemptStatus, Message};
    use crate::message::tests::*;

    const STEP_0: TimerKind = TimerKind::StepTimeout { step_index: 0 };

    fn state(events: &[crate::message::MessageEvent]) -> Message {
        Message::from_events(MESSAGE, events).unwrap()
    }

    fn asked(events: &[crate::message::MessageEvent], timer: TimerKind) -> Option<AttemptStatus> {
        let m = state(events);
        m.attempt_to_reconcile(timer).map(|a| {
            assert_eq!(a.id, attempt(1));
            a.status
        })
    }

    #[test]
    fn a_sent_or_in_doubt_attempt_is_asked_about_at_its_steps_timeout() {
        let fx = Fx::three_steps();
        assert_eq!(asked(&fx.sent_first(), STEP_0), Some(AttemptStatus::Sent));
        let mut in_doubt_events = fx.dispatched_first();
        in_doubt_events.push(in_doubt(attempt(1), t(2)));
        assert_eq!(
            asked(&in_doubt_events, STEP_0),
            Some(AttemptStatus::InDoubt)
        );
        // Dispatched and never answered (the process died mid-call): in doubt in all but name.
        assert_eq!(
            asked(&fx.dispatched_first(), STEP_0),
            Some(AttemptStatus::Dispatching)
        );
    }

    #[test]
    fn nothing_is_asked_for_other_timers_or_a_step_already_left() {
        let fx = Fx::three_steps();
        let sent = fx.sent_first();
        assert_eq!(asked(&sent, TimerKind::Ttl), None);
        assert_eq!(asked(&sent, TimerKind::StepTimeout { step_index: 1 }), None);
        // The step timed out already: its timer firing again asks nothing.
        let mut moved_on = sent.clone();
        moved_on.push(timed_out(0, Some(attempt(1)), t(60)));
        moved_on.push(fx.started(1, t(60)));
        assert_eq!(asked(&moved_on, STEP_0), None);
    }

    #[test]
    fn nothing_is_asked_once_the_attempt_is_settled() {
        let fx = Fx::three_steps();
        // No attempt at all (no provider could take it).
        assert_eq!(asked(&fx.accepted(), STEP_0), None);
        // Rejected without failover: the step moved on at once.
        let mut rejected_events = fx.dispatched_first();
        rejected_events.push(rejected(attempt(1), false, false, t(2)));
        rejected_events.push(fx.started(1, t(2)));
        assert_eq!(asked(&rejected_events, STEP_0), None);
        // Delivered on a step that waits for delivery: the message is done.
        let mut delivered = fx.sent_first();
        delivered.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)));
        delivered.push(completed(Completion::Delivered, attempt(1), t(3)));
        assert_eq!(asked(&delivered, STEP_0), None);
    }

    #[test]
    fn a_delivered_attempt_on_a_step_waiting_for_read_is_asked_about() {
        let fx = Fx::new(vec![step(Channel::Whatsapp, 60, Until::Read)]);
        let mut delivered = fx.sent_first();
        delivered.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)));
        assert_eq!(asked(&delivered, STEP_0), Some(AttemptStatus::Delivered));
    }
}
