//! Quiet hours in the cascade: a step whose turn comes in the recipient's quiet hours waits
//! (`StepDeferred`), sends nothing and runs no clock until its resume (`StepResumed`).

use super::*;
use crate::message::MessageStatus;
use crate::quiet_hours::QuietHours;

/// 21:00 to 08:00. The fixtures' number is Estonian: Tallinn, UTC+2 in January, where `t(0)`
/// (midnight UTC) is 02:00 and the window ends at 06:00 UTC.
fn night() -> QuietHours {
    serde_json::from_value(serde_json::json!({"start": "21:00", "end": "08:00"})).unwrap()
}

const HOUR: i64 = 3600;

fn deferred(until: DateTime<Utc>, at: DateTime<Utc>) -> MessageEvent {
    MessageEvent::StepDeferred {
        step_index: 0,
        until,
        reason: "quiet_hours".into(),
        at,
    }
}

#[test]
fn a_step_whose_turn_comes_in_the_quiet_hours_waits_for_their_end() {
    let fx = Fx::three_steps();
    let accepted = Message::from_events(MESSAGE, &fx.accepted()).unwrap();
    assert_eq!(
        accepted.quiet_hours_end(0, &night(), t(1)),
        Some(t(6 * HOUR))
    );
    assert_eq!(accepted.quiet_hours_end(0, &night(), t(6 * HOUR)), None);
    MessageTest::given(fx.accepted())
        .when(
            MessageCommand::DeferStep {
                step_index: 0,
                until: t(6 * HOUR),
            },
            t(1),
        )
        .then_expect_events(vec![deferred(t(6 * HOUR), t(1))])
        .then_state(|m| {
            assert!(m.step_deferred());
            assert!(
                !m.step_clock_started(),
                "waiting takes none of the step's time"
            );
            assert_eq!(m.status, MessageStatus::Accepted);
        });
}

#[test]
fn a_deferred_step_sends_nothing_until_it_resumes_and_then_its_clock_starts() {
    let fx = Fx::three_steps();
    let mut events = fx.accepted();
    events.push(deferred(t(6 * HOUR), t(1)));
    // A dispatch decided before the deferral (read again after a restart) sends nothing.
    MessageTest::given(events.clone())
        .when(dispatch(0, 0, attempt(1)), t(2))
        .then_expect_no_events();
    MessageTest::given(events.clone())
        .when(
            MessageCommand::FireTimer(TimerKind::StepResume { step_index: 0 }),
            t(6 * HOUR),
        )
        .then_expect_events(vec![MessageEvent::StepResumed {
            step_index: 0,
            channel: Channel::Sms,
            at: t(6 * HOUR),
        }])
        .then_state(|m| assert!(!m.step_deferred()));
    events.push(MessageEvent::StepResumed {
        step_index: 0,
        channel: Channel::Sms,
        at: t(6 * HOUR),
    });
    MessageTest::given(events)
        .when(dispatch(0, 0, attempt(1)), t(6 * HOUR + 1))
        .then_events(|e| match e {
            [
                MessageEvent::AttemptDispatched {
                    step_timeout_at, ..
                },
            ] => assert_eq!(*step_timeout_at, Some(t(6 * HOUR + 61))),
            other => panic!("expected the dispatch, got {other:?}"),
        });
}

#[test]
fn only_a_step_that_has_sent_nothing_waits_and_only_once() {
    let fx = Fx::three_steps();
    let defer = MessageCommand::DeferStep {
        step_index: 0,
        until: t(6 * HOUR),
    };
    // Sending already: its retries and failovers go on.
    let sending = Message::from_events(MESSAGE, &fx.dispatched_first()).unwrap();
    assert_eq!(sending.quiet_hours_end(0, &night(), t(2)), None);
    MessageTest::given(fx.dispatched_first())
        .when(defer.clone(), t(2))
        .then_expect_no_events();
    // Deferred already: the wait stands.
    let mut waiting = fx.accepted();
    waiting.push(deferred(t(6 * HOUR), t(1)));
    MessageTest::given(waiting)
        .when(defer.clone(), t(2))
        .then_expect_no_events();
    // A resume for a step that does not wait (a stale timer) does nothing.
    MessageTest::given(fx.accepted())
        .when(
            MessageCommand::FireTimer(TimerKind::StepResume { step_index: 0 }),
            t(2),
        )
        .then_expect_no_events();
    // The email step has no phone: no quiet hours.
    let mut on_email = fx.dispatched_first();
    on_email.push(timed_out(0, Some(attempt(1)), t(61)));
    on_email.push(fx.started(1, t(61)));
    let m = Message::from_events(MESSAGE, &on_email).unwrap();
    assert_eq!(m.quiet_hours_end(1, &night(), t(62)), None);
}

#[test]
fn a_deferral_arms_the_resume_at_its_end() {
    assert_eq!(
        crate::timers::timer_effect(&deferred(t(6 * HOUR), t(1))),
        Some(crate::timers::TimerEffect::Arm {
            kind: TimerKind::StepResume { step_index: 0 },
            due_at: t(6 * HOUR),
        })
    );
}
