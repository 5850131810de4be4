//! What the operator's metrics read from decisions (`observe`): fallbacks by reason, dispatch
//! waits, receipt times. Each case takes the events the aggregate itself decides.

use super::*;
use crate::message::observe::{FallbackReason, Observation, observe};
use std::time::Duration as StdDuration;

/// The state after `given`, and what it decides on `command` at `now`.
fn decide(
    given: &[MessageEvent],
    command: MessageCommand,
    now: DateTime<Utc>,
) -> (Message, Vec<MessageEvent>) {
    let state = Message::from_events(MESSAGE, given).expect("given starts with MessageAccepted");
    let events = state
        .decide(&command, now)
        .expect("the command is accepted");
    (state, events)
}

#[test]
fn a_step_timeout_that_moves_the_cascade_on_is_a_timeout_fallback() {
    let fx = Fx::three_steps();
    let (state, events) = decide(
        &fx.sent_first(),
        MessageCommand::FireTimer(TimerKind::StepTimeout { step_index: 0 }),
        t(61),
    );
    assert_eq!(
        observe(&state, &events),
        vec![Observation::Fallback {
            to: Channel::Email,
            reason: FallbackReason::Timeout
        }]
    );
}

#[test]
fn a_failed_receipt_is_an_undelivered_fallback_and_a_receipt_timed_from_the_send() {
    let fx = Fx::three_steps();
    let (state, events) = decide(
        &fx.sent_first(),
        MessageCommand::RecordReceipt {
            attempt_id: attempt(1),
            status: ReceiptStatus::Failed,
            provider_message_id: Some(provider_id(attempt(1))),
            error: Some(AttemptError::new("undelivered", "the handset is off")),
        },
        t(9),
    );
    assert_eq!(
        observe(&state, &events),
        vec![
            Observation::Receipt {
                provider: PROVIDER.into(),
                status: ReceiptStatus::Failed,
                after: StdDuration::from_secs(7),
            },
            Observation::Fallback {
                to: Channel::Email,
                reason: FallbackReason::Undelivered
            },
        ]
    );
}

#[test]
fn a_final_refusal_is_a_rejected_fallback() {
    let fx = Fx::three_steps();
    let (state, events) = decide(
        &fx.dispatched_first(),
        MessageCommand::RecordSendOutcome {
            attempt_id: attempt(1),
            outcome: SendOutcome::Rejected {
                error: AttemptError::new("invalid_number", "not a mobile number"),
                retryable: false,
                failover: false,
                retry_later: false,
            },
        },
        t(2),
    );
    assert_eq!(
        observe(&state, &events),
        vec![Observation::Fallback {
            to: Channel::Email,
            reason: FallbackReason::Rejected
        }]
    );
}

#[test]
fn a_dispatch_waited_from_its_steps_start_and_a_delivery_on_the_last_step_is_no_fallback() {
    let fx = Fx::three_steps();
    let (state, events) = decide(
        &fx.accepted(),
        MessageCommand::DispatchAttempt {
            step_index: 0,
            attempt_seq: 0,
            attempt_id: attempt(1),
            provider: PROVIDER.into(),
            served_by: None,
            route: None,
            cost: None,
        },
        t(3),
    );
    assert_eq!(
        observe(&state, &events),
        vec![Observation::Dispatched {
            channel: Channel::Sms,
            provider: PROVIDER.into(),
            waited: StdDuration::from_secs(3),
        }]
    );

    let fx = Fx::one_step(Until::Delivered);
    let (state, events) = decide(
        &fx.sent_first(),
        MessageCommand::RecordReceipt {
            attempt_id: attempt(1),
            status: ReceiptStatus::Delivered,
            provider_message_id: Some(provider_id(attempt(1))),
            error: None,
        },
        t(5),
    );
    assert_eq!(
        observe(&state, &events),
        vec![Observation::Receipt {
            provider: PROVIDER.into(),
            status: ReceiptStatus::Delivered,
            after: StdDuration::from_secs(3),
        }]
    );
}
