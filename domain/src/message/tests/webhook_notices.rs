//! Which notices a tenant's webhook endpoints get from a message's events
//! (`crate::webhook::notices`).

use super::*;
use crate::webhook::{NoticeType, notices};

/// Every notice of a stream, in order: (type, the message's status, the attempt's status).
fn notices_of(events: &[MessageEvent]) -> Vec<(NoticeType, String, Option<String>)> {
    let mut state: Option<Message> = None;
    let mut out = vec![];
    for e in events {
        let after = Message::apply(state.clone(), MESSAGE, e).expect("a message");
        for n in notices(state.as_ref(), &after, e) {
            assert_eq!(n.timestamp, e.at());
            assert_eq!(n.data.message_id, MESSAGE);
            assert_eq!(n.data.reference.as_deref(), Some("order-42"));
            let attempt = n.data.attempt.map(|a| format!("{:?}", a.status));
            out.push((n.notice_type, n.data.status, attempt));
        }
        state = Some(after);
    }
    out
}

fn types(events: &[MessageEvent]) -> Vec<NoticeType> {
    notices_of(events).into_iter().map(|n| n.0).collect()
}

#[test]
fn a_delivered_sms_gives_accepted_attempt_sent_and_delivered() {
    let fx = Fx::one_step(Until::Delivered);
    let mut events = fx.sent_first();
    events.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)));
    events.push(completed(Completion::Delivered, attempt(1), t(3)));
    let got = notices_of(&events);
    assert_eq!(
        got,
        [
            (NoticeType::Accepted, "accepted".into(), None),
            (
                NoticeType::AttemptSent,
                "sending".into(),
                Some("Sent".into())
            ),
            (
                NoticeType::Delivered,
                "sending".into(),
                Some("Delivered".into())
            ),
        ],
        "completion after the delivered receipt says nothing new"
    );
}

#[test]
fn a_read_receipt_without_a_delivered_one_gives_delivered_then_read() {
    let fx = Fx::one_step(Until::Read);
    let mut events = fx.sent_first();
    events.push(receipt(attempt(1), ReceiptStatus::Read, false, t(3)));
    events.push(completed(Completion::Read, attempt(1), t(3)));
    assert_eq!(
        types(&events),
        [
            NoticeType::Accepted,
            NoticeType::AttemptSent,
            NoticeType::Delivered,
            NoticeType::Read
        ]
    );
    // With the delivered receipt first, read comes alone when it does.
    let mut events = fx.sent_first();
    events.push(receipt(attempt(1), ReceiptStatus::Delivered, false, t(3)));
    events.push(receipt(attempt(1), ReceiptStatus::Read, false, t(4)));
    assert_eq!(
        types(&events)[2..],
        [NoticeType::Delivered, NoticeType::Read]
    );
}

#[test]
fn a_step_that_waits_only_for_the_send_is_delivered_on_completion() {
    let fx = Fx::one_step(Until::Accepted);
    let mut events = fx.dispatched_first();
    events.push(sent(attempt(1), t(2)));
    events.push(completed(Completion::Delivered, attempt(1), t(2)));
    let got = notices_of(&events);
    assert_eq!(
        got.last(),
        Some(&(
            NoticeType::Delivered,
            "delivered".into(),
            Some("Sent".into())
        ))
    );
}

#[test]
fn a_failed_cascade_gives_failed_with_its_reason_and_a_late_receipt_its_own_notice() {
    let fx = Fx::one_step(Until::Delivered);
    let mut events = fx.sent_first();
    events.push(timed_out(0, Some(attempt(1)), t(61)));
    events.push(exhausted(t(61)));
    events.push(receipt(attempt(1), ReceiptStatus::Delivered, true, t(70)));
    let mut state: Option<Message> = None;
    let mut all = vec![];
    for e in &events {
        let after = Message::apply(state.clone(), MESSAGE, e).unwrap();
        all.extend(notices(state.as_ref(), &after, e));
        state = Some(after);
    }
    let failed = all
        .iter()
        .find(|n| n.notice_type == NoticeType::Failed)
        .expect("a failed notice");
    assert_eq!(failed.data.status, "failed");
    assert_eq!(failed.data.reason.as_deref(), Some("exhausted"));
    let last = all.last().unwrap();
    assert_eq!(last.notice_type, NoticeType::LateReceipt);
    assert_eq!(last.data.attempt.as_ref().unwrap().id, attempt(1));
    assert!(
        !all.iter().any(|n| n.notice_type == NoticeType::Delivered),
        "a late receipt does not deliver a failed message"
    );
}

#[test]
fn suppressed_steps_are_told_as_skipped_right_after_accepted() {
    let mut fx = Fx::three_steps();
    fx.spec.suppressed_steps = vec![1];
    let all = notices(
        None,
        &Message::apply(None, MESSAGE, &fx.message_accepted(t(0))).unwrap(),
        &fx.message_accepted(t(0)),
    );
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].notice_type, NoticeType::StepSkipped);
    let step = all[1].data.step.as_ref().unwrap();
    assert_eq!((step.index, step.channel), (1, Channel::Email));
    assert_eq!(step.reason, "suppressed");
}

#[test]
fn a_notice_serializes_as_a_standard_webhooks_payload() {
    let fx = Fx::one_step(Until::Delivered);
    let accepted = fx.message_accepted(t(0));
    let m = Message::apply(None, MESSAGE, &accepted).unwrap();
    let json = serde_json::to_value(&notices(None, &m, &accepted)[0]).unwrap();
    assert_eq!(json["type"], "message.accepted");
    assert_eq!(json["data"]["message_id"], MESSAGE.0.to_string());
    assert_eq!(json["data"]["status"], "accepted");
    assert!(json["timestamp"].is_string());
    assert!(json["data"].get("attempt").is_none(), "absent, not null");
}
