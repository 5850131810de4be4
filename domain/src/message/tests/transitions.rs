//! One test per transition of the cascade state machine.

use super::*;
use crate::message::{AttemptStatus, MessageStatus};

// --- accepting -------------------------------------------------------------------------------

#[test]
fn accepting_a_message_starts_its_first_step_whose_clock_waits_for_its_dispatch() {
    let fx = Fx::three_steps();
    MessageTest::given_no_previous_events()
        .when_accepted(fx.spec.clone(), t(0))
        .then_expect_events(vec![
            MessageEvent::MessageAccepted {
                tenant_id: TENANT,
                spec: Box::new(fx.spec.clone()),
                expires_at: None,
                at: t(0),
            },
            MessageEvent::StepStarted {
                step_index: 0,
                channel: Channel::Sms,
                until: Until::Delivered,
                timeout_at: None,
                at: t(0),
            },
        ])
        .then_state(|m| {
            assert_eq!(m.id, MESSAGE);
            assert_eq!(m.tenant_id, TENANT);
            assert_eq!(m.status, MessageStatus::Accepted);
            assert_eq!(m.current_step_index(), Some(0));
            assert_eq!(m.current_step.as_ref().map(|s| s.timeout_at), Some(None));
            assert!(m.attempts.is_empty());
            assert_eq!(m.expires_at, None);
            assert_eq!(m.accepted_at, t(0));
        });
}

#[test]
fn a_ttl_sets_when_the_message_expires() {
    let fx = Fx::with_ttl(vec![step(Channel::Whatsapp, 120, Until::Read)], 600);
    MessageTest::given_no_previous_events()
        .when_accepted(fx.spec.clone(), t(0))
        .then_expect_events(vec![
            MessageEvent::MessageAccepted {
                tenant_id: TENANT,
                spec: Box::new(fx.spec.clone()),
                expires_at: Some(t(600)),
                at: t(0),
            },
            MessageEvent::StepStarted {
                step_index: 0,
                channel: Channel::Whatsapp,
                until: Until::Read,
                timeout_at: None,
                at: t(0),
            },
        ])
        .then_state(|m| assert_eq!(m.expires_at, Some(t(600))));
}

// --- dispatching -----------------------------------------------------------------------------

#[test]
fn dispatching_the_first_step_records_the_attempt_and_the_message_is_sending() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.accepted())
        .when(dispatch(0, 0, attempt(1)), t(1))
        .then_expect_events(vec![MessageEvent::AttemptDispatched {
            attempt_id: attempt(1),
            step_index: 0,
            channel: Channel::Sms,
            provider: PROVIDER.into(),
            served_by: Some(SERVED_BY.into()),
            route: Some(route()),
            cost: None,
            // The step's 60 s count from its dispatch.
            step_timeout_at: Some(t(61)),
            at: t(1),
        }])
        .then_state(|m| {
            assert_eq!(m.current_step.as_ref().unwrap().timeout_at, Some(t(61)));
            assert_eq!(m.status, MessageStatus::Sending);
            let a = m.active_attempt().expect("an attempt in flight");
            assert_eq!(a.id, attempt(1));
            assert_eq!(a.status, AttemptStatus::Dispatching);
            assert_eq!(a.provider, PROVIDER);
        });
}

#[test]
fn a_dispatch_redelivered_after_a_restart_puts_the_attempt_in_doubt_and_never_sends_twice() {
    let fx = Fx::three_steps();
    // The saga recorded the dispatch, then died before the provider's answer was recorded.
    MessageTest::given(fx.dispatched_first())
        .when(dispatch(0, 0, attempt(2)), t(5))
        .then_events(|events| match events {
            [MessageEvent::AttemptInDoubt { attempt_id, at, .. }] => {
                assert_eq!(*attempt_id, attempt(1));
                assert_eq!(*at, t(5));
            }
            other => panic!("expected only AttemptInDoubt, got {other:?}"),
        })
        .then_state(|m| {
            assert_eq!(m.attempts.len(), 1, "no second attempt");
            assert_eq!(m.attempts[0].status, AttemptStatus::InDoubt);
        });

    // A third delivery of the same command: still nothing is sent.
    let mut history = fx.dispatched_first();
    history.push(in_doubt(attempt(1), t(5)));
    MessageTest::given(history)
        .when(dispatch(0, 0, attempt(3)), t(6))
        .then_expect_no_events();
}

#[test]
fn a_dispatch_redelivered_once_the_attempt_was_sent_does_nothing() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(dispatch(0, 0, attempt(2)), t(5))
        .then_expect_no_events();
}

#[test]
fn a_dispatch_for_a_step_that_is_not_current_does_nothing() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.accepted())
        .when(dispatch(1, 0, attempt(1)), t(1))
        .then_expect_no_events();
}

#[test]
fn a_second_attempt_of_a_step_needs_a_failover() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(dispatch(0, 1, attempt(2)), t(5))
        .then_expect_no_events();
    // Nor may the saga skip a sequence number.
    MessageTest::given(fx.accepted())
        .when(dispatch(0, 1, attempt(2)), t(5))
        .then_expect_no_events();
}

// --- the provider's synchronous answer --------------------------------------------------------

#[test]
fn sent_completes_a_step_that_waits_until_accepted() {
    let fx = Fx::one_step(Until::Accepted);
    MessageTest::given(fx.dispatched_first())
        .when(outcome_sent(attempt(1)), t(2))
        .then_expect_events(vec![
            sent(attempt(1), t(2)),
            completed(Completion::Delivered, attempt(1), t(2)),
        ])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Delivered);
            assert_eq!(m.completed_by, Some(attempt(1)));
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::Sent);
            assert_eq!(a.provider_message_id, Some(provider_id(attempt(1))));
        });
}

#[test]
fn sent_only_records_the_attempt_when_the_step_waits_for_delivery() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_sent(attempt(1)), t(2))
        .then_expect_events(vec![sent(attempt(1), t(2))])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Sending);
            assert_eq!(m.active_attempt().map(|a| a.id), Some(attempt(1)));
            assert_eq!(m.attempt(attempt(1)).unwrap().sent_at, Some(t(2)));
        });
}

#[test]
fn a_send_outcome_delivered_twice_records_nothing_the_second_time() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(outcome_sent(attempt(1)), t(3))
        .then_expect_no_events();
    // Also when the provider gave no message id.
    let mut history = fx.dispatched_first();
    history.push(MessageEvent::AttemptSent {
        attempt_id: attempt(1),
        provider_message_id: None,
        at: t(2),
    });
    MessageTest::given(history)
        .when(
            MessageCommand::RecordSendOutcome {
                attempt_id: attempt(1),
                outcome: SendOutcome::Sent {
                    provider_message_id: None,
                },
            },
            t(3),
        )
        .then_expect_no_events();
}

#[test]
fn an_unanswered_provider_call_puts_the_attempt_in_doubt() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_in_doubt(attempt(1)), t(2))
        .then_expect_events(vec![in_doubt(attempt(1), t(2))])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Sending);
            assert_eq!(
                m.active_attempt().map(|a| a.status),
                Some(AttemptStatus::InDoubt)
            );
        });
}

#[test]
fn an_in_doubt_attempt_is_never_sent_again() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(in_doubt(attempt(1), t(2)));
    MessageTest::given(history.clone())
        .when(dispatch(0, 1, attempt(2)), t(3))
        .then_expect_no_events();
    MessageTest::given(history)
        .when(outcome_in_doubt(attempt(1)), t(3))
        .then_expect_no_events();
}

// --- push acknowledgements -----------------------------------------------------------------

#[test]
fn an_app_acknowledgement_delivers_a_push_step() {
    let fx = Fx::new(vec![step(Channel::Push, 60, Until::Delivered)]);
    MessageTest::given(fx.sent_first())
        .when(
            MessageCommand::AcknowledgePush {
                status: ReceiptStatus::Delivered,
            },
            t(10),
        )
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)),
            completed(Completion::Delivered, attempt(1), t(10)),
        ]);
}

#[test]
fn an_acknowledgement_without_a_push_attempt_is_refused() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(
            MessageCommand::AcknowledgePush {
                status: ReceiptStatus::Delivered,
            },
            t(10),
        )
        .then_expect_error(DomainError::NoPushAttempt);
}

#[test]
fn a_repeated_acknowledgement_changes_nothing() {
    let fx = Fx::new(vec![step(Channel::Push, 60, Until::Read)]);
    let mut events = fx.sent_first();
    events.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    MessageTest::given(events)
        .when(
            MessageCommand::AcknowledgePush {
                status: ReceiptStatus::Delivered,
            },
            t(11),
        )
        .then_expect_no_events();
}

// --- receipts --------------------------------------------------------------------------------

#[test]
fn a_delivered_receipt_completes_a_step_that_waits_until_delivered() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(10))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)),
            completed(Completion::Delivered, attempt(1), t(10)),
        ])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Delivered);
            assert_eq!(m.completed_by, Some(attempt(1)));
            assert_eq!(m.attempt(attempt(1)).unwrap().delivered_at, Some(t(10)));
        });
}

#[test]
fn a_delivered_receipt_does_not_end_a_step_that_waits_until_read() {
    let fx = Fx::one_step(Until::Read);
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(10))
        .then_expect_events(vec![receipt(
            attempt(1),
            ReceiptStatus::Delivered,
            false,
            t(10),
        )])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Sending);
            let a = m.active_attempt().expect("still waiting on the attempt");
            assert_eq!(a.status, AttemptStatus::Delivered);
        });
}

#[test]
fn a_read_receipt_completes_a_step_that_waits_until_read() {
    let fx = Fx::one_step(Until::Read);
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(20))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Read, false, t(20)),
            completed(Completion::Read, attempt(1), t(20)),
        ])
        .then_state(|m| assert_eq!(m.status, MessageStatus::Read));
}

#[test]
fn a_read_receipt_also_meets_a_step_that_waits_until_delivered() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(10))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Read, false, t(10)),
            completed(Completion::Read, attempt(1), t(10)),
        ]);
}

#[test]
fn a_sent_receipt_completes_a_step_that_waits_until_accepted() {
    let fx = Fx::one_step(Until::Accepted);
    MessageTest::given(fx.dispatched_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Sent), t(3))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Sent, false, t(3)),
            completed(Completion::Delivered, attempt(1), t(3)),
        ]);
}

#[test]
fn a_failed_receipt_starts_the_next_step_at_once() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Failed), t(10))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Failed, false, t(10)),
            fx.started(1, t(10)),
        ])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Sending);
            assert_eq!(m.current_step_index(), Some(1));
            assert_eq!(m.active_attempt(), None);
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::Failed);
            assert_eq!(a.error, Some(undeliverable()));
            assert_eq!(a.failed_at, Some(t(10)));
        });
}

#[test]
fn a_failed_receipt_without_a_reason_gets_a_generic_error() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(
            MessageCommand::RecordReceipt {
                attempt_id: attempt(1),
                status: ReceiptStatus::Failed,
                provider_message_id: None,
                error: None,
            },
            t(10),
        )
        .then_events(|events| match events {
            [
                MessageEvent::ReceiptRecorded { error: Some(e), .. },
                MessageEvent::StepStarted { .. },
            ] => {
                assert_eq!(e.code, "failed")
            }
            other => panic!("expected a failed receipt and the next step, got {other:?}"),
        });
}

#[test]
fn a_failed_receipt_on_the_last_step_fails_the_message_as_exhausted() {
    let fx = Fx::one_step(Until::Delivered);
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Failed), t(10))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Failed, false, t(10)),
            exhausted(t(10)),
        ])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Failed);
            assert_eq!(m.reason.as_deref(), Some("exhausted"));
        });
}

// --- rejections and failover -----------------------------------------------------------------

#[test]
fn a_rejection_that_is_not_retryable_moves_to_the_next_step() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), false, false), t(2))
        .then_expect_events(vec![
            rejected(attempt(1), false, false, t(2)),
            fx.started(1, t(2)),
        ])
        .then_state(|m| {
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::Rejected);
            assert_eq!(a.error, Some(provider_error()));
            assert_eq!(m.current_step_index(), Some(1));
        });
}

#[test]
fn a_rejection_that_is_not_retryable_never_fails_over() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), false, true), t(2))
        .then_expect_events(vec![
            rejected(attempt(1), false, false, t(2)),
            fx.started(1, t(2)),
        ]);
}

#[test]
fn a_retryable_rejection_with_failover_stays_on_the_step_for_the_next_provider() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), true, true), t(2))
        .then_expect_events(vec![rejected(attempt(1), true, true, t(2))])
        .then_state(|m| {
            assert_eq!(m.current_step_index(), Some(0));
            assert_eq!(m.status, MessageStatus::Sending);
            assert_eq!(m.active_attempt(), None);
        });

    let mut history = fx.dispatched_first();
    history.push(rejected(attempt(1), true, true, t(2)));
    MessageTest::given(history)
        .when(dispatch(0, 1, attempt(2)), t(3))
        .then_expect_events(vec![fx.failover_dispatched(attempt(2), 0, t(3))])
        .then_state(|m| {
            assert_eq!(m.active_attempt().map(|a| a.id), Some(attempt(2)));
            assert_eq!(m.step_attempts(0).count(), 2);
        });
}

/// The `retry_at` of the one `AttemptRejected` decided.
fn planned_retry(events: &[MessageEvent]) -> Option<DateTime<Utc>> {
    match events {
        [MessageEvent::AttemptRejected { retry_at, .. }] => *retry_at,
        other => panic!("expected only AttemptRejected, got {other:?}"),
    }
}

/// Step 0 (60 s, dispatched at t(1)) after `n` attempts, the last one refused retryably at
/// `t(refused_at)` with its retry due.
fn retried_history(fx: &Fx, n: u128) -> Vec<MessageEvent> {
    let mut history = fx.dispatched_first();
    for i in 1..n {
        history.push(retry_planned(
            attempt(i),
            t(i as i64 * 2 + 1),
            t(i as i64 * 2),
        ));
        history.push(MessageEvent::RetryDue {
            step_index: 0,
            after: attempt(i),
            at: t(i as i64 * 2 + 1),
        });
        history.push(fx.failover_dispatched(attempt(i + 1), 0, t(i as i64 * 2 + 1)));
    }
    history
}

#[test]
fn a_retryable_rejection_with_no_account_to_fail_over_to_is_retried_within_the_step() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), true, false), t(2))
        .then_events(|events| {
            // The first retry: 1 s of backoff, 50 to 100 % of it with jitter.
            let at = planned_retry(events).expect("a retry");
            assert!(
                at >= t(2) + Duration::milliseconds(500) && at <= t(3),
                "{at}"
            );
        })
        .then_state(|m| {
            assert_eq!(
                m.current_step_index(),
                Some(0),
                "the cascade stays on the step"
            );
            assert_eq!(m.status, MessageStatus::Sending);
            assert!(m.active_attempt().is_none());
        });
}

#[test]
fn retries_back_off_exponentially_up_to_30_s() {
    let fx = Fx::new(vec![step(Channel::Sms, 3600, Until::Delivered)]);
    let backoff = |n: u128| {
        let refused = t(n as i64 * 2);
        let at = planned_retry(
            MessageTest::given(retried_history(&fx, n))
                .when(outcome_rejected(attempt(n), true, false), refused)
                .events(),
        )
        .expect("a retry");
        (at - refused).num_milliseconds()
    };
    assert!((1_000..=2_000).contains(&backoff(2)), "{}", backoff(2));
    assert!((2_000..=4_000).contains(&backoff(3)), "{}", backoff(3));
    assert!((15_000..=30_000).contains(&backoff(9)), "{}", backoff(9));
}

#[test]
fn a_retry_that_would_come_after_the_steps_end_moves_the_cascade_on() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(
            outcome_rejected(attempt(1), true, false),
            t(60) + Duration::milliseconds(600),
        )
        .then_expect_events(vec![
            rejected(attempt(1), true, false, t(60) + Duration::milliseconds(600)),
            fx.started(1, t(60) + Duration::milliseconds(600)),
        ]);
}

#[test]
fn a_step_gives_up_retrying_after_10_attempts() {
    let fx = Fx::new(vec![
        step(Channel::Sms, 3600, Until::Delivered),
        step(Channel::Email, 60, Until::Delivered),
    ]);
    MessageTest::given(retried_history(&fx, 10))
        .when(outcome_rejected(attempt(10), true, false), t(20))
        .then_expect_events(vec![
            rejected(attempt(10), true, false, t(20)),
            fx.started(1, t(20)),
        ]);
}

#[test]
fn a_refusal_that_waiting_will_not_change_moves_on_at_once() {
    // A denial by the account's own policy: another account could take it, the same never will.
    let fx = Fx::three_steps();
    let denied = MessageCommand::RecordSendOutcome {
        attempt_id: attempt(1),
        outcome: SendOutcome::Rejected {
            error: provider_error(),
            retryable: true,
            failover: false,
            retry_later: false,
        },
    };
    MessageTest::given(fx.dispatched_first())
        .when(denied, t(2))
        .then_expect_events(vec![
            rejected(attempt(1), true, false, t(2)),
            fx.started(1, t(2)),
        ]);
}

#[test]
fn a_due_retry_is_made_once_and_dispatches_on_the_same_step_clock() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(retry_planned(attempt(1), t(3), t(2)));
    let retry = MessageCommand::FireTimer(TimerKind::Retry { after: attempt(1) });
    MessageTest::given(history.clone())
        .when(retry.clone(), t(3))
        .then_expect_events(vec![MessageEvent::RetryDue {
            step_index: 0,
            after: attempt(1),
            at: t(3),
        }]);
    history.push(MessageEvent::RetryDue {
        step_index: 0,
        after: attempt(1),
        at: t(3),
    });
    MessageTest::given(history.clone())
        .when(retry, t(4))
        .then_expect_events(vec![]);
    MessageTest::given(history)
        .when(dispatch(0, 1, attempt(2)), t(3))
        .then_expect_events(vec![fx.failover_dispatched(attempt(2), 0, t(3))])
        .then_state(|m| assert_eq!(m.current_step.as_ref().unwrap().timeout_at, Some(t(61))));
}

#[test]
fn a_retry_timer_after_the_step_timed_out_does_nothing() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(retry_planned(attempt(1), t(50), t(40)));
    history.push(timed_out(0, None, t(61)));
    history.push(fx.started(1, t(61)));
    MessageTest::given(history)
        .when(
            MessageCommand::FireTimer(TimerKind::Retry { after: attempt(1) }),
            t(62),
        )
        .then_expect_events(vec![]);
}

#[test]
fn a_rejection_of_the_last_step_fails_the_message_as_exhausted() {
    let fx = Fx::one_step(Until::Delivered);
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), false, false), t(2))
        .then_expect_events(vec![
            rejected(attempt(1), false, false, t(2)),
            exhausted(t(2)),
        ]);
}

#[test]
fn a_rejection_after_the_provider_already_answered_is_ignored() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(outcome_rejected(attempt(1), true, true), t(3))
        .then_expect_no_events();
}

#[test]
fn a_late_receipt_for_an_attempt_that_failed_over_is_late_and_does_not_block_the_failover() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(rejected(attempt(1), true, true, t(2)));
    // The provider said 503 but did deliver: the cascade had moved on to another provider.
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(3))
        .then_expect_events(vec![receipt(
            attempt(1),
            ReceiptStatus::Delivered,
            true,
            t(3),
        )])
        .then_state(|m| {
            assert!(m.attempt(attempt(1)).unwrap().late);
            assert_eq!(m.active_attempt(), None, "a late attempt is not waited on");
        });

    history.push(receipt(attempt(1), ReceiptStatus::Delivered, true, t(3)));
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(4))
        .then_expect_events(vec![receipt(attempt(1), ReceiptStatus::Read, true, t(4))]);
    MessageTest::given(history)
        .when(dispatch(0, 1, attempt(2)), t(4))
        .then_expect_events(vec![fx.failover_dispatched(attempt(2), 0, t(4))])
        .then_state(|m| {
            assert_eq!(m.active_attempt().map(|a| a.id), Some(attempt(2)));
            let awaited = m.step_attempts(0).filter(|a| a.is_awaited()).count();
            assert_eq!(awaited, 1, "one attempt in flight");
        });
}

// --- timers ----------------------------------------------------------------------------------

#[test]
fn the_step_timeout_moves_to_the_next_step_and_names_the_attempt_in_flight() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(step_timer(0), t(60))
        .then_expect_events(vec![
            timed_out(0, Some(attempt(1)), t(60)),
            fx.started(1, t(60)),
        ])
        .then_state(|m| {
            assert_eq!(
                m.attempt(attempt(1)).unwrap().status,
                AttemptStatus::TimedOut
            );
            assert_eq!(m.current_step_index(), Some(1));
            // The next step's clock waits for its dispatch.
            assert_eq!(m.current_step.as_ref().map(|s| s.timeout_at), Some(None));
        });
}

#[test]
fn the_step_timeout_with_nothing_in_flight_names_no_attempt() {
    let fx = Fx::three_steps();
    let mut history = fx.accepted();
    history.push(fx.unserved(0, t(5)));
    MessageTest::given(history)
        .when(step_timer(0), t(65))
        .then_expect_events(vec![timed_out(0, None, t(65)), fx.started(1, t(65))]);
}

#[test]
fn a_step_waiting_for_a_worker_never_times_out() {
    // Overload: the saga has not reached the message yet. Its step has no clock, so a timer
    // (one armed by an older Hermes at the step's start) fails nothing.
    let fx = Fx::one_step(Until::Delivered);
    MessageTest::given(fx.accepted())
        .when(step_timer(0), t(3600))
        .then_expect_events(vec![]);
}

#[test]
fn a_failover_keeps_the_time_its_step_started_with() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(rejected(attempt(1), true, true, t(2)));
    MessageTest::given(history)
        .when(dispatch(0, 1, attempt(2)), t(30))
        .then_expect_events(vec![fx.failover_dispatched(attempt(2), 0, t(30))])
        .then_state(|m| assert_eq!(m.current_step.as_ref().unwrap().timeout_at, Some(t(61))));
}

#[test]
fn a_step_no_provider_can_serve_starts_its_clock_once() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.accepted())
        .when(MessageCommand::NoProvider { step_index: 0 }, t(7))
        .then_expect_events(vec![fx.unserved(0, t(7))])
        .then_state(|m| {
            assert_eq!(m.current_step.as_ref().unwrap().timeout_at, Some(t(67)));
            assert!(m.attempts.is_empty());
        });
    let mut history = fx.accepted();
    history.push(fx.unserved(0, t(7)));
    MessageTest::given(history)
        .when(MessageCommand::NoProvider { step_index: 0 }, t(9))
        .then_expect_events(vec![]);
    // Once dispatched, the step has its clock: a later "no provider" changes nothing.
    MessageTest::given(fx.dispatched_first())
        .when(MessageCommand::NoProvider { step_index: 0 }, t(9))
        .then_expect_events(vec![]);
}

#[test]
fn a_message_the_ttl_ends_before_any_dispatch_says_so() {
    let fx = Fx::with_ttl(vec![step(Channel::Sms, 60, Until::Delivered)], 600);
    MessageTest::given(fx.accepted())
        .when(MessageCommand::FireTimer(TimerKind::Ttl), t(600))
        .then_expect_events(vec![MessageEvent::MessageExpired { at: t(600) }])
        .then_state(|m| assert_eq!(m.reason.as_deref(), Some("ttl_expired_before_dispatch")));
    MessageTest::given(fx.sent_first())
        .when(MessageCommand::FireTimer(TimerKind::Ttl), t(600))
        .then_state(|m| assert_eq!(m.reason.as_deref(), Some("ttl_expired")));
}

#[test]
fn the_timeout_of_the_last_step_fails_the_message_as_exhausted() {
    let fx = Fx::one_step(Until::Delivered);
    MessageTest::given(fx.sent_first())
        .when(step_timer(0), t(60))
        .then_expect_events(vec![
            timed_out(0, Some(attempt(1)), t(60)),
            exhausted(t(60)),
        ]);
}

#[test]
fn an_in_doubt_attempt_is_resolved_by_the_step_timeout() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(in_doubt(attempt(1), t(2)));
    MessageTest::given(history)
        .when(step_timer(0), t(60))
        .then_expect_events(vec![
            timed_out(0, Some(attempt(1)), t(60)),
            fx.started(1, t(60)),
        ])
        .then_state(|m| {
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::TimedOut);
            // It may have been delivered: the view keeps saying it was in doubt.
            assert_eq!(a.in_doubt_at, Some(t(2)));
        });
}

#[test]
fn an_attempt_still_dispatching_at_the_step_timeout_is_shown_in_doubt() {
    // The worker that dispatched it died before the answer, and no worker marked it in doubt
    // before the timeout: the provider may still have it.
    let fx = Fx::three_steps();
    MessageTest::given(fx.dispatched_first())
        .when(step_timer(0), t(60))
        .then_expect_events(vec![
            timed_out(0, Some(attempt(1)), t(60)),
            fx.started(1, t(60)),
        ])
        .then_state(|m| {
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::TimedOut);
            assert_eq!(a.in_doubt_at, Some(t(60)));
        });
}

#[test]
fn an_attempt_the_provider_answered_is_not_in_doubt_at_the_step_timeout() {
    let fx = Fx::one_step(Until::Delivered);
    MessageTest::given(fx.sent_first())
        .when(step_timer(0), t(60))
        .then_state(|m| assert_eq!(m.attempt(attempt(1)).unwrap().in_doubt_at, None));
}

#[test]
fn the_timeout_of_an_earlier_step_is_stale_and_does_nothing() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(timed_out(0, Some(attempt(1)), t(60)));
    history.push(fx.started(1, t(60)));
    MessageTest::given(history.clone())
        .when(step_timer(0), t(61))
        .then_expect_no_events();
    // Nor does one for a step that has not started.
    MessageTest::given(history)
        .when(step_timer(2), t(61))
        .then_expect_no_events();
}

#[test]
fn timers_that_fire_after_the_message_ended_do_nothing() {
    let fx = Fx::with_ttl(vec![step(Channel::Sms, 60, Until::Accepted)], 600);
    let mut history = fx.dispatched_first();
    history.push(sent(attempt(1), t(2)));
    history.push(completed(Completion::Delivered, attempt(1), t(2)));
    MessageTest::given(history.clone())
        .when(step_timer(0), t(60))
        .then_expect_no_events();
    MessageTest::given(history)
        .when(ttl_timer(), t(600))
        .then_expect_no_events();
}

#[test]
fn the_ttl_timer_expires_the_message() {
    let fx = Fx::with_ttl(Fx::three_steps().spec.cascade, 600);
    MessageTest::given(fx.sent_first())
        .when(ttl_timer(), t(600))
        .then_expect_events(vec![MessageEvent::MessageExpired { at: t(600) }])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Expired);
            assert_eq!(m.reason.as_deref(), Some("ttl_expired"));
            assert_eq!(m.active_attempt(), None);
        });
}

#[test]
fn moving_on_after_the_ttl_passed_expires_the_message_instead_of_starting_the_next_step() {
    // The TTL (45 s) ends before step 0's timeout (60 s); its timer has not fired yet.
    let fx = Fx::with_ttl(Fx::three_steps().spec.cascade, 45);
    MessageTest::given(fx.sent_first())
        .when(step_timer(0), t(60))
        .then_expect_events(vec![
            timed_out(0, Some(attempt(1)), t(60)),
            MessageEvent::MessageExpired { at: t(60) },
        ])
        .then_state(|m| assert_eq!(m.status, MessageStatus::Expired));
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Failed), t(50))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Failed, false, t(50)),
            MessageEvent::MessageExpired { at: t(50) },
        ]);
    MessageTest::given(fx.dispatched_first())
        .when(outcome_rejected(attempt(1), false, false), t(45))
        .then_expect_events(vec![
            rejected(attempt(1), false, false, t(45)),
            MessageEvent::MessageExpired { at: t(45) },
        ]);
}

// --- cancelling ------------------------------------------------------------------------------

#[test]
fn cancelling_mid_cascade_cancels_the_message() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(MessageCommand::Cancel, t(5))
        .then_expect_events(vec![MessageEvent::MessageCancelled { at: t(5) }])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Cancelled);
            assert_eq!(m.reason.as_deref(), Some("cancelled"));
        });

    let mut history = fx.sent_first();
    history.push(MessageEvent::MessageCancelled { at: t(5) });
    MessageTest::given(history)
        .when(dispatch(0, 1, attempt(2)), t(6))
        .then_expect_no_events();
}

#[test]
fn cancelling_twice_does_nothing_the_second_time() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(MessageEvent::MessageCancelled { at: t(5) });
    MessageTest::given(history)
        .when(MessageCommand::Cancel, t(6))
        .then_expect_no_events();
}

#[test]
fn cancelling_a_delivered_message_is_refused() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    history.push(completed(Completion::Delivered, attempt(1), t(10)));
    MessageTest::given(history)
        .when(MessageCommand::Cancel, t(11))
        .then_expect_error(DomainError::AlreadyTerminal(MessageStatus::Delivered));

    let fx = Fx::one_step(Until::Delivered);
    let mut history = fx.sent_first();
    history.push(timed_out(0, Some(attempt(1)), t(60)));
    history.push(exhausted(t(60)));
    MessageTest::given(history)
        .when(MessageCommand::Cancel, t(61))
        .then_expect_error(DomainError::AlreadyTerminal(MessageStatus::Failed));
}

// --- late, duplicate, out-of-order and racing receipts ---------------------------------------

#[test]
fn a_receipt_for_an_earlier_step_is_recorded_as_late_and_changes_no_step() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(timed_out(0, Some(attempt(1)), t(60)));
    history.push(fx.started(1, t(60)));
    history.push(fx.dispatched(attempt(2), 1, t(61)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(70))
        .then_expect_events(vec![receipt(
            attempt(1),
            ReceiptStatus::Delivered,
            true,
            t(70),
        )])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Sending);
            assert_eq!(m.current_step_index(), Some(1));
            assert_eq!(m.active_attempt().map(|a| a.id), Some(attempt(2)));
            let late = m.attempt(attempt(1)).unwrap();
            assert!(late.late, "the tenant must see the late receipt");
            assert_eq!(late.delivered_at, Some(t(70)));
        });
}

#[test]
fn a_receipt_after_the_message_ended_is_recorded_as_late() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(MessageEvent::MessageCancelled { at: t(5) });
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(10))
        .then_expect_events(vec![receipt(
            attempt(1),
            ReceiptStatus::Delivered,
            true,
            t(10),
        )])
        .then_state(|m| assert_eq!(m.status, MessageStatus::Cancelled));
}

#[test]
fn duplicate_receipts_record_nothing() {
    let fx = Fx::one_step(Until::Read);
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(11))
        .then_expect_no_events();
    // The synchronous answer already said sent.
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Sent), t(11))
        .then_expect_no_events();
    // A failure reported twice.
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Failed, false, t(10)));
    history.push(fx.started(1, t(10)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Failed), t(11))
        .then_expect_no_events();
}

#[test]
fn replayed_alternating_receipts_never_move_an_attempt_back() {
    // A provider (or an attacker replaying captured callbacks) alternates failed and sent.
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Failed, false, t(10)));
    history.push(fx.started(1, t(10)));
    for (i, status) in [
        ReceiptStatus::Sent,
        ReceiptStatus::Failed,
        ReceiptStatus::Delivered,
        ReceiptStatus::Read,
        ReceiptStatus::Sent,
    ]
    .into_iter()
    .enumerate()
    {
        MessageTest::given(history.clone())
            .when(receipt_cmd(attempt(1), status), t(11 + i as i64))
            .then_expect_no_events()
            .then_state(|m| {
                assert_eq!(m.attempt(attempt(1)).unwrap().status, AttemptStatus::Failed)
            });
    }
    // Delivered, then failed, then the same two again: the failure is the last word.
    let fx = Fx::one_step(Until::Read);
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Failed), t(11))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Failed, false, t(11)),
            exhausted(t(11)),
        ]);
    history.push(receipt(attempt(1), ReceiptStatus::Failed, false, t(11)));
    history.push(exhausted(t(11)));
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(12))
        .then_expect_no_events();
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(12))
        .then_expect_no_events();
}

#[test]
fn an_older_receipt_after_a_newer_one_records_nothing() {
    let fx = Fx::one_step(Until::Read);
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Read, false, t(20)));
    history.push(completed(Completion::Read, attempt(1), t(20)));
    MessageTest::given(history.clone())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(21))
        .then_expect_no_events();
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Sent), t(21))
        .then_expect_no_events();
}

#[test]
fn a_receipt_that_overtakes_the_send_outcome_completes_once_and_keeps_the_provider_id() {
    let fx = Fx::three_steps();
    // The receipt webhook arrives before the provider call returned.
    MessageTest::given(fx.dispatched_first())
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(3))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)),
            completed(Completion::Delivered, attempt(1), t(3)),
        ]);

    let mut history = fx.dispatched_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)));
    history.push(completed(Completion::Delivered, attempt(1), t(3)));
    MessageTest::given(history.clone())
        .when(outcome_sent(attempt(1)), t(4))
        .then_expect_events(vec![sent(attempt(1), t(4))])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Delivered);
            assert_eq!(m.completed_by, Some(attempt(1)));
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(
                a.status,
                AttemptStatus::Delivered,
                "sent never moves it back"
            );
            assert_eq!(a.provider_message_id, Some(provider_id(attempt(1))));
            assert!(!a.late);
        });

    history.push(sent(attempt(1), t(4)));
    MessageTest::given(history)
        .when(outcome_sent(attempt(1)), t(5))
        .then_expect_no_events();
}

#[test]
fn a_sent_receipt_that_overtakes_the_send_outcome_of_an_accepted_step_completes_once() {
    let fx = Fx::one_step(Until::Accepted);
    let mut history = fx.dispatched_first();
    history.push(receipt(attempt(1), ReceiptStatus::Sent, false, t(3)));
    history.push(completed(Completion::Delivered, attempt(1), t(3)));
    MessageTest::given(history)
        .when(outcome_sent(attempt(1)), t(4))
        .then_expect_events(vec![sent(attempt(1), t(4))])
        .then_state(|m| {
            assert_eq!(
                m.attempt(attempt(1)).unwrap().provider_message_id,
                Some(provider_id(attempt(1)))
            );
        });
}

#[test]
fn a_read_receipt_after_delivery_marks_the_message_read_and_is_not_late() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)));
    history.push(completed(Completion::Delivered, attempt(1), t(10)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(30))
        .then_expect_events(vec![receipt(attempt(1), ReceiptStatus::Read, false, t(30))])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Read);
            assert_eq!(m.completed_by, Some(attempt(1)));
            let a = m.attempt(attempt(1)).unwrap();
            assert!(!a.late);
            assert_eq!(a.read_at, Some(t(30)));
        });
}

#[test]
fn a_read_receipt_of_another_attempt_does_not_change_a_delivered_message() {
    let fx = Fx::three_steps();
    let mut history = fx.sent_first();
    history.push(timed_out(0, Some(attempt(1)), t(60)));
    history.push(fx.started(1, t(60)));
    history.push(fx.dispatched(attempt(2), 1, t(61)));
    history.push(sent(attempt(2), t(62)));
    history.push(completed(Completion::Delivered, attempt(2), t(62)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Read), t(90))
        .then_expect_events(vec![receipt(attempt(1), ReceiptStatus::Read, true, t(90))])
        .then_state(|m| assert_eq!(m.status, MessageStatus::Delivered));
}

#[test]
fn receipts_and_outcomes_for_an_unknown_attempt_are_refused() {
    let fx = Fx::three_steps();
    MessageTest::given(fx.sent_first())
        .when(receipt_cmd(attempt(99), ReceiptStatus::Delivered), t(10))
        .then_expect_error(DomainError::UnknownAttempt(attempt(99)));
    MessageTest::given(fx.sent_first())
        .when(outcome_sent(attempt(99)), t(10))
        .then_expect_error(DomainError::UnknownAttempt(attempt(99)));
}

#[test]
fn an_in_doubt_attempt_is_resolved_by_its_delivered_receipt() {
    let fx = Fx::three_steps();
    let mut history = fx.dispatched_first();
    history.push(in_doubt(attempt(1), t(2)));
    MessageTest::given(history)
        .when(receipt_cmd(attempt(1), ReceiptStatus::Delivered), t(10))
        .then_expect_events(vec![
            receipt(attempt(1), ReceiptStatus::Delivered, false, t(10)),
            completed(Completion::Delivered, attempt(1), t(10)),
        ])
        .then_state(|m| {
            assert_eq!(m.status, MessageStatus::Delivered);
            let a = m.attempt(attempt(1)).unwrap();
            assert_eq!(a.status, AttemptStatus::Delivered);
            assert_eq!(a.in_doubt_at, Some(t(2)));
        });
}

#[test]
fn an_in_doubt_attempt_that_turns_out_sent_completes_an_accepted_step() {
    let fx = Fx::one_step(Until::Accepted);
    let mut history = fx.dispatched_first();
    history.push(in_doubt(attempt(1), t(2)));
    MessageTest::given(history)
        .when(outcome_sent(attempt(1)), t(3))
        .then_expect_events(vec![
            sent(attempt(1), t(3)),
            completed(Completion::Delivered, attempt(1), t(3)),
        ]);
}

#[test]
fn a_dispatch_after_the_ttl_passed_expires_the_message_instead_of_sending() {
    // The TTL timer has not fired yet (the poller is behind), but the message must not go out.
    let fx = Fx::with_ttl(Fx::three_steps().spec.cascade, 45);
    MessageTest::given(fx.accepted())
        .when(dispatch(0, 0, attempt(1)), t(46))
        .then_expect_events(vec![MessageEvent::MessageExpired { at: t(46) }])
        .then_state(|m| assert!(m.attempts.is_empty()));
}

// --- which account may report on an attempt ----------------------------------------------------

#[test]
fn only_the_account_that_sent_an_attempt_may_report_on_it() {
    let fx = Fx::three_steps();
    let m = Message::from_events(MESSAGE, &fx.sent_first()).unwrap();
    let known = provider_id(attempt(1));
    assert_eq!(
        m.check_receipt_binding(attempt(1), PROVIDER, Some(&known)),
        Ok(())
    );
    assert_eq!(m.check_receipt_binding(attempt(1), PROVIDER, None), Ok(()));
    assert_eq!(
        m.check_receipt_binding(attempt(1), "other-account", Some(&known)),
        Err(DomainError::ReceiptFromAnotherAccount {
            attempt_id: attempt(1),
            account: "other-account".into(),
        })
    );
    assert_eq!(
        m.check_receipt_binding(attempt(2), PROVIDER, None),
        Err(DomainError::UnknownAttempt(attempt(2)))
    );
}

#[test]
fn a_receipt_about_another_provider_message_is_not_this_attempts() {
    let fx = Fx::three_steps();
    let m = Message::from_events(MESSAGE, &fx.sent_first()).unwrap();
    assert_eq!(
        m.check_receipt_binding(attempt(1), PROVIDER, Some("replayed-from-elsewhere")),
        Err(DomainError::ReceiptForAnotherProviderMessage {
            attempt_id: attempt(1),
            receipt: "replayed-from-elsewhere".into(),
            attempt: provider_id(attempt(1)),
        })
    );
    // An attempt whose send answer never came (in doubt) has no id to compare yet.
    let m = Message::from_events(MESSAGE, &fx.dispatched_first()).unwrap();
    assert_eq!(
        m.check_receipt_binding(attempt(1), PROVIDER, Some("any")),
        Ok(())
    );
}

#[test]
fn a_step_no_provider_can_serve_after_the_ttl_expires_the_message() {
    let fx = Fx::with_ttl(vec![step(Channel::Sms, 60, Until::Delivered)], 10);
    MessageTest::given(fx.accepted())
        .when(MessageCommand::NoProvider { step_index: 0 }, t(10))
        .then_expect_events(vec![MessageEvent::MessageExpired { at: t(10) }]);
}

#[test]
fn a_retry_due_after_the_ttl_expires_the_message_instead() {
    let fx = Fx::with_ttl(vec![step(Channel::Sms, 60, Until::Delivered)], 10);
    let mut history = fx.dispatched_first();
    history.push(retry_planned(attempt(1), t(9), t(8)));
    MessageTest::given(history)
        .when(
            MessageCommand::FireTimer(TimerKind::Retry { after: attempt(1) }),
            t(10),
        )
        .then_expect_events(vec![MessageEvent::MessageExpired { at: t(10) }]);
}

#[test]
fn no_retry_is_planned_past_the_ttl() {
    // The step has time left, the message does not: the cascade moves on at once.
    let fx = Fx::with_ttl(
        vec![
            step(Channel::Sms, 60, Until::Delivered),
            step(Channel::Email, 60, Until::Delivered),
        ],
        3,
    );
    MessageTest::given(fx.dispatched_first())
        .when(
            outcome_rejected(attempt(1), true, false),
            t(2) + Duration::milliseconds(900),
        )
        .then_expect_events(vec![
            rejected(attempt(1), true, false, t(2) + Duration::milliseconds(900)),
            fx.started(1, t(2) + Duration::milliseconds(900)),
        ]);
}

#[test]
fn suppressed_steps_are_skipped_at_the_start_and_on_the_way() {
    // Step 0 suppressed: the message starts at step 1.
    let mut fx = Fx::three_steps();
    fx.spec.suppressed_steps = vec![0];
    assert_eq!(
        crate::message::decide::accept(TENANT, fx.spec.clone(), t(0)),
        vec![fx.message_accepted(t(0)), fx.started(1, t(0))]
    );
    // Step 1 suppressed: step 0's timeout moves the cascade to step 2.
    let mut fx = Fx::three_steps();
    fx.spec.suppressed_steps = vec![1];
    let mut history = fx.accepted();
    history.push(fx.unserved(0, t(5)));
    MessageTest::given(history.clone())
        .when(step_timer(0), t(65))
        .then_expect_events(vec![timed_out(0, None, t(65)), fx.started(2, t(65))]);
    // Every later step suppressed: nothing is left, the message fails.
    let mut fx = Fx::three_steps();
    fx.spec.suppressed_steps = vec![1, 2];
    let mut history = fx.accepted();
    history.push(fx.unserved(0, t(5)));
    MessageTest::given(history)
        .when(step_timer(0), t(65))
        .then_expect_events(vec![
            timed_out(0, None, t(65)),
            MessageEvent::MessageFailed {
                reason: "exhausted".into(),
                at: t(65),
            },
        ]);
}
