//! Prices of attempts, and the billing lines of cascades driven through the aggregate.

use super::*;
use crate::message::decide::accept;
use crate::message::{
    AttemptError, CascadeStep, Content, MessageCommand, ReceiptStatus, Recipient, SendOutcome,
    TimerKind,
};
use crate::{Until, routing::PriceTable};
use chrono::Duration;
use uuid::Uuid;

const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e4a_0047));
const MESSAGE: MessageId = MessageId(Uuid::from_u128(0x4d5a_006e));

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid instant")
        + Duration::seconds(seconds)
}

fn prices(entries: &[(&str, f64)]) -> PriceTable {
    entries.iter().map(|(c, p)| (c.to_string(), *p)).collect()
}

/// An SMS (to an Estonian number) then an email, each waiting 60 s for delivery.
fn spec(text: &str) -> MessageSpec {
    MessageSpec {
        cascade_policy: None,
        suppressed_steps: Vec::new(),
        enrichment: None,
        to: Recipient {
            phone: Some("+37255512345".into()),
            email: Some("ada@example.com".into()),
            push_token: None,
            whatsapp: None,
        },
        content: Content {
            text: Some(text.into()),
            ..Default::default()
        },
        cascade: vec![
            CascadeStep {
                channel: Channel::Sms,
                timeout_seconds: 60,
                until: Until::Delivered,
            },
            CascadeStep {
                channel: Channel::Email,
                timeout_seconds: 60,
                until: Until::Delivered,
            },
        ],
        reference: None,
        metadata: None,
        ttl_seconds: None,
    }
}

#[test]
fn an_sms_is_billed_by_its_segments_and_other_channels_by_one_unit() {
    // GSM-7: 160 characters fit one segment, 161 take two (153 each).
    assert_eq!(billable_units(&spec(&"a".repeat(160)), Channel::Sms), 1);
    assert_eq!(billable_units(&spec(&"a".repeat(161)), Channel::Sms), 2);
    assert_eq!(billable_units(&spec(&"a".repeat(307)), Channel::Sms), 3);
    // UCS-2 (one character outside GSM-7): 70 fit one segment, 71 take two (67 each).
    assert_eq!(
        billable_units(&spec(&format!("ž{}", "a".repeat(69))), Channel::Sms),
        1
    );
    assert_eq!(
        billable_units(&spec(&format!("ž{}", "a".repeat(70))), Channel::Sms),
        2
    );
    // Other channels are one unit whatever their length.
    assert_eq!(billable_units(&spec(&"a".repeat(1000)), Channel::Email), 1);
    // The SMS's own text takes the place of the shared one.
    let mut own = spec(&"a".repeat(1000));
    own.content.sms = Some(crate::message::spec::SmsContent {
        text: Some("short".into()),
    });
    assert_eq!(billable_units(&own, Channel::Sms), 1);
}

#[test]
fn the_price_is_the_destination_country_s_times_the_units() {
    let table = prices(&[("EE", 0.0079), ("*", 0.05)]);
    let cost = attempt_cost(&spec(&"a".repeat(307)), Channel::Sms, &table).unwrap();
    assert_eq!(cost.units, 3);
    assert_eq!(cost.unit_price, 0.0079);
    // Rounded to a millionth: 3 × 0.0079 is 0.0237, not 0.023700000000000002.
    assert_eq!(cost.price, 0.0237);
    assert_eq!(cost.price.to_string(), "0.0237");
}

#[test]
fn a_country_the_table_does_not_list_takes_its_star_price_and_none_without_one() {
    let starred = prices(&[("US", 0.0079), ("*", 0.05)]);
    let cost = attempt_cost(&spec("hi"), Channel::Sms, &starred).unwrap();
    assert_eq!((cost.units, cost.unit_price, cost.price), (1, 0.05, 0.05));
    // Email has no country: only a `*` price applies.
    let cost = attempt_cost(&spec("hi"), Channel::Email, &starred).unwrap();
    assert_eq!(cost.price, 0.05);
    assert_eq!(
        attempt_cost(&spec("hi"), Channel::Sms, &prices(&[("US", 0.0079)])),
        None
    );
    assert_eq!(
        attempt_cost(&spec("hi"), Channel::Sms, &PriceTable::new()),
        None
    );
}

/// Drives a message through its aggregate: each command decided at its time.
struct Run {
    events: Vec<MessageEvent>,
}

impl Run {
    fn accepted(spec: MessageSpec) -> Self {
        Self {
            events: accept(TENANT, spec, t(0)),
        }
    }

    fn decide(&mut self, command: MessageCommand, at: i64) -> &mut Self {
        let m = Message::from_events(MESSAGE, &self.events).unwrap();
        let decided = m.decide(&command, t(at)).unwrap();
        assert!(!decided.is_empty(), "{command:?} decided nothing");
        self.events.extend(decided);
        self
    }

    fn dispatch(
        &mut self,
        step_index: usize,
        seq: usize,
        attempt: u128,
        table: &PriceTable,
        at: i64,
    ) -> &mut Self {
        let m = Message::from_events(MESSAGE, &self.events).unwrap();
        let channel = m.spec.cascade[step_index].channel;
        let cost = attempt_cost(&m.spec, channel, table);
        self.decide(
            MessageCommand::DispatchAttempt {
                step_index,
                attempt_seq: seq,
                attempt_id: id(attempt),
                provider: format!("account-{attempt}"),
                served_by: None,
                route: None,
                cost,
            },
            at,
        )
    }
}

fn id(n: u128) -> AttemptId {
    AttemptId(Uuid::from_u128(0xa77e_0000 + n))
}

#[test]
fn a_cascade_that_charged_two_steps_shows_both_and_the_late_receipt() {
    let table = prices(&[("EE", 0.0079), ("*", 0.001)]);
    let mut run = Run::accepted(spec(&"a".repeat(161)));
    // The SMS goes out, no receipt comes in its 60 s; the email goes out and is delivered;
    // then the SMS's receipt comes after all: the tenant paid for both.
    run.dispatch(0, 0, 1, &table, 1)
        .decide(
            MessageCommand::RecordSendOutcome {
                attempt_id: id(1),
                outcome: SendOutcome::Sent {
                    provider_message_id: Some("SM1".into()),
                },
            },
            2,
        )
        .decide(
            MessageCommand::FireTimer(TimerKind::StepTimeout { step_index: 0 }),
            61,
        )
        .dispatch(1, 0, 2, &table, 62)
        .decide(
            MessageCommand::RecordSendOutcome {
                attempt_id: id(2),
                outcome: SendOutcome::Sent {
                    provider_message_id: Some("ses-2".into()),
                },
            },
            63,
        )
        .decide(
            MessageCommand::RecordReceipt {
                attempt_id: id(2),
                status: ReceiptStatus::Delivered,
                provider_message_id: None,
                error: None,
            },
            64,
        )
        .decide(
            MessageCommand::RecordReceipt {
                attempt_id: id(1),
                status: ReceiptStatus::Delivered,
                provider_message_id: None,
                error: None,
            },
            70,
        );
    let lines = billing_lines(MESSAGE, &run.events);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.step_index,
                l.channel,
                l.account.as_str(),
                l.charged,
                l.provider_message_id.as_deref(),
                l.cost.as_ref().map(|c| (c.units, c.price)),
                l.late,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                0,
                Channel::Sms,
                "account-1",
                Charged::Yes,
                Some("SM1"),
                Some((2, 0.0158)),
                true
            ),
            (
                1,
                Channel::Email,
                "account-2",
                Charged::Yes,
                Some("ses-2"),
                Some((1, 0.001)),
                false
            ),
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.tenant_id == TENANT && l.message_id == MESSAGE)
    );
    assert_eq!(lines[0].dispatched_at, t(1));
}

#[test]
fn a_refused_attempt_is_not_charged_an_unanswered_one_may_be_and_one_in_flight_is_pending() {
    let table = prices(&[("*", 0.01)]);
    let mut run = Run::accepted(spec("hi"));
    run.dispatch(0, 0, 1, &table, 1)
        .decide(
            MessageCommand::RecordSendOutcome {
                attempt_id: id(1),
                outcome: SendOutcome::Rejected {
                    error: AttemptError::new("provider_unavailable", "503"),
                    retryable: true,
                    failover: true,
                    retry_later: true,
                },
            },
            2,
        )
        .dispatch(0, 1, 2, &table, 3)
        .decide(
            MessageCommand::RecordSendOutcome {
                attempt_id: id(2),
                outcome: SendOutcome::InDoubt {
                    reason: "timeout".into(),
                },
            },
            4,
        );
    let charged = |events: &[MessageEvent]| -> Vec<Charged> {
        billing_lines(MESSAGE, events)
            .iter()
            .map(|l| l.charged)
            .collect()
    };
    assert_eq!(charged(&run.events), [Charged::No, Charged::Maybe]);
    // The step times out: the attempt stays a "maybe" (no receipt ever said).
    run.decide(
        MessageCommand::FireTimer(TimerKind::StepTimeout { step_index: 0 }),
        61,
    );
    assert_eq!(charged(&run.events), [Charged::No, Charged::Maybe]);
    // The email step's attempt has not been answered yet.
    run.dispatch(1, 0, 3, &table, 62);
    assert_eq!(
        charged(&run.events),
        [Charged::No, Charged::Maybe, Charged::Pending]
    );
}

#[test]
fn an_attempt_status_is_spelled_as_the_api_spells_it() {
    use AttemptStatus::*;
    for status in [
        Dispatching,
        Sent,
        Delivered,
        Read,
        Failed,
        Rejected,
        TimedOut,
        InDoubt,
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
}

#[test]
fn no_events_give_no_lines() {
    assert!(billing_lines(MESSAGE, &[]).is_empty());
}
