//! What leaves the aggregate besides its state: the timers an event arms and the stored JSON form
//! of every event.

use super::*;
use crate::message::events::SCHEMA_VERSION;
use crate::message::spec::{EmailContent, PushContent};
use crate::timers::{TimerEffect, timer_effect};
use std::collections::BTreeSet;

// --- timer effects ---------------------------------------------------------------------------

#[test]
fn a_steps_first_dispatch_arms_its_timeout_and_a_failover_arms_nothing() {
    let fx = Fx::three_steps();
    assert_eq!(timer_effect(&fx.started(1, t(10))), None);
    assert_eq!(
        timer_effect(&fx.dispatched(attempt(2), 1, t(40))),
        Some(TimerEffect::Arm {
            kind: TimerKind::StepTimeout { step_index: 1 },
            due_at: t(340),
        })
    );
    assert_eq!(
        timer_effect(&fx.failover_dispatched(attempt(3), 1, t(50))),
        None
    );
    assert_eq!(
        timer_effect(&fx.unserved(2, t(60))),
        Some(TimerEffect::Arm {
            kind: TimerKind::StepTimeout { step_index: 2 },
            due_at: t(90),
        })
    );
}

#[test]
fn a_step_started_by_an_older_hermes_keeps_the_timeout_it_was_stored_with() {
    let payload = serde_json::json!({
        "type": "StepStarted", "step_index": 0, "channel": "sms", "until": "delivered",
        "timeout_at": "2026-01-01T00:01:00Z", "at": "2026-01-01T00:00:00Z"
    });
    let event = MessageEvent::from_stored("StepStarted", SCHEMA_VERSION, payload).unwrap();
    assert_eq!(
        timer_effect(&event),
        Some(TimerEffect::Arm {
            kind: TimerKind::StepTimeout { step_index: 0 },
            due_at: "2026-01-01T00:01:00Z".parse().unwrap(),
        })
    );
}

#[test]
fn an_accepted_message_with_a_ttl_arms_the_ttl_timer() {
    let fx = Fx::with_ttl(Fx::three_steps().spec.cascade, 600);
    assert_eq!(
        timer_effect(&fx.message_accepted(t(0))),
        Some(TimerEffect::Arm {
            kind: TimerKind::Ttl,
            due_at: t(600),
        })
    );
    assert_eq!(
        timer_effect(&Fx::three_steps().message_accepted(t(0))),
        None
    );
}

#[test]
fn accept_arms_the_ttl_and_no_step_timeout_before_the_dispatch() {
    let fx = Fx::with_ttl(Fx::three_steps().spec.cascade, 600);
    let effects: Vec<_> = accept(TENANT, fx.spec, t(0))
        .iter()
        .filter_map(timer_effect)
        .collect();
    assert_eq!(
        effects,
        vec![TimerEffect::Arm {
            kind: TimerKind::Ttl,
            due_at: t(600)
        },]
    );
}

#[test]
fn terminal_events_disarm_every_timer() {
    for e in every_event() {
        let effect = timer_effect(&e);
        if e.is_terminal() {
            assert_eq!(effect, Some(TimerEffect::DisarmAll), "{}", e.event_type());
        } else if !matches!(
            e,
            MessageEvent::MessageAccepted { .. }
                | MessageEvent::AttemptDispatched { .. }
                | MessageEvent::StepUnserved { .. }
                | MessageEvent::StepDeferred { .. }
                | MessageEvent::AttemptRejected { .. }
        ) {
            assert_eq!(effect, None, "{} arms nothing", e.event_type());
        }
    }
}

// --- the stored form -------------------------------------------------------------------------

/// One event of every variant, with every optional field filled.
fn every_event() -> Vec<MessageEvent> {
    let mut spec = spec(
        vec![
            step(Channel::Email, 300, Until::Delivered),
            step(Channel::Push, 30, Until::Read),
        ],
        Some(3600),
    );
    spec.content.email = Some(EmailContent {
        subject: Some("Your code".into()),
        text: None,
        html: Some("<b>123456</b>".into()),
    });
    spec.content.push = Some(PushContent {
        title: Some("Code".into()),
        body: None,
        data: Some(
            serde_json::json!({ "deep_link": "app://otp" })
                .as_object()
                .unwrap()
                .clone(),
        ),
    });
    spec.metadata = Some(
        serde_json::json!({ "user": 7, "vip": true })
            .as_object()
            .unwrap()
            .clone(),
    );
    let fx = Fx { spec };
    let a = attempt(1);
    vec![
        fx.message_accepted(t(0)),
        fx.started(0, t(0)),
        fx.dispatched(a, 0, t(1)),
        fx.unserved(1, t(1)),
        in_doubt(a, t(2)),
        sent(a, t(3)),
        rejected(a, true, true, t(4)),
        retry_planned(a, t(5), t(4)),
        MessageEvent::RetryDue {
            step_index: 0,
            after: a,
            at: t(5),
        },
        MessageEvent::ReceiptRecorded {
            attempt_id: a,
            status: ReceiptStatus::Failed,
            provider_message_id: Some("SM123".into()),
            error: Some(undeliverable()),
            late: true,
            at: t(5),
        },
        timed_out(0, Some(a), t(6)),
        completed(Completion::Read, a, t(7)),
        exhausted(t(8)),
        MessageEvent::MessageExpired { at: t(9) },
        MessageEvent::MessageCancelled { at: t(10) },
        MessageEvent::StepDeferred {
            step_index: 0,
            until: t(11),
            reason: "quiet_hours".into(),
            at: t(10),
        },
        MessageEvent::StepResumed {
            step_index: 0,
            channel: Channel::Email,
            at: t(11),
        },
    ]
}

/// Which variant an event is. No wildcard arm: a new variant breaks the build here until it is
/// added to [`every_event`].
fn variant(e: &MessageEvent) -> usize {
    match e {
        MessageEvent::MessageAccepted { .. } => 0,
        MessageEvent::StepStarted { .. } => 1,
        MessageEvent::AttemptDispatched { .. } => 2,
        MessageEvent::AttemptInDoubt { .. } => 3,
        MessageEvent::AttemptSent { .. } => 4,
        MessageEvent::AttemptRejected { .. } => 5,
        MessageEvent::ReceiptRecorded { .. } => 6,
        MessageEvent::StepTimedOut { .. } => 7,
        MessageEvent::MessageCompleted { .. } => 8,
        MessageEvent::MessageFailed { .. } => 9,
        MessageEvent::MessageExpired { .. } => 10,
        MessageEvent::MessageCancelled { .. } => 11,
        MessageEvent::StepUnserved { .. } => 12,
        MessageEvent::RetryDue { .. } => 13,
        MessageEvent::StepDeferred { .. } => 14,
        MessageEvent::StepResumed { .. } => 15,
    }
}

#[test]
fn every_event_survives_a_round_trip_through_its_stored_form() {
    let events = every_event();
    let variants: BTreeSet<usize> = events.iter().map(variant).collect();
    assert_eq!(variants, (0..16).collect(), "one event of every variant");

    for e in events {
        let payload = e.to_payload();
        assert_eq!(
            payload["type"],
            serde_json::Value::from(e.event_type()),
            "the payload names its type"
        );
        let back = MessageEvent::from_stored(e.event_type(), SCHEMA_VERSION, payload)
            .unwrap_or_else(|err| panic!("{} does not decode: {err}", e.event_type()));
        assert_eq!(back, e);
    }
}

#[test]
fn event_types_are_distinct() {
    let names: BTreeSet<&str> = every_event().iter().map(|e| e.event_type()).collect();
    assert_eq!(names.len(), 16);
}

#[test]
fn a_stored_payload_with_an_unknown_shape_is_an_error_not_a_panic() {
    let payload = serde_json::json!({ "type": "StepStarted", "step_index": "zero" });
    assert!(MessageEvent::from_stored("StepStarted", SCHEMA_VERSION, payload).is_err());
}

#[test]
fn the_dedup_key_is_the_recipient_and_content_only() {
    let one = spec(vec![step(Channel::Sms, 30, Until::Delivered)], None);
    let mut other_extras = spec(vec![step(Channel::Email, 60, Until::Read)], Some(600));
    other_extras.reference = Some("order-43".into());
    assert_eq!(
        one.dedup_key(),
        other_extras.dedup_key(),
        "cascade, reference and TTL do not count"
    );
    let mut other_text = one.clone();
    other_text.content.text = Some("Your code is 654321".into());
    assert_ne!(one.dedup_key(), other_text.dedup_key());
    let mut other_phone = one.clone();
    other_phone.to.phone = Some("+37255512346".into());
    assert_ne!(one.dedup_key(), other_phone.dedup_key());
}
