//! Unit tests of the Message aggregate, written given/when/then in the style of cqrs-es's
//! `TestFramework`: *given* the events already in the stream, *when* a command arrives at `now`,
//! *then* the aggregate decides these events (or refuses with this error).
//!
//! - [`transitions`]: one test per transition of the cascade state machine.
//! - [`wire`]: timer effects and the stored (JSON) form of every event.
//! - [`properties`]: property tests over random cascades and random command sequences.
//! - [`webhook_notices`]: which notices a tenant's webhook gets from each event.
//! - [`observations`]: what the operator's metrics read from decisions.

mod observations;
mod properties;
mod quiet_hours;
mod transitions;
mod webhook_notices;
mod wire;

use crate::channel::{Channel, Until};
use crate::ids::{AttemptId, MessageId, TenantId};
use crate::message::decide::accept;
use crate::message::events::Completion;
use crate::message::{
    AttemptError, CascadeStep, Content, DomainError, Message, MessageCommand, MessageEvent,
    MessageSpec, ReceiptStatus, Recipient, SendOutcome, TimerKind,
};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The given/when/then framework
// ---------------------------------------------------------------------------------------------

/// The stream a test starts from (`given`).
pub(super) struct MessageTest {
    id: MessageId,
    given: Vec<MessageEvent>,
}

/// What the aggregate decided (`when`), ready to be checked (`then`).
pub(super) struct Decided {
    id: MessageId,
    given: Vec<MessageEvent>,
    result: Result<Vec<MessageEvent>, DomainError>,
}

impl MessageTest {
    pub(super) fn given_no_previous_events() -> Self {
        Self::given(Vec::new())
    }

    pub(super) fn given(events: impl IntoIterator<Item = MessageEvent>) -> Self {
        Self {
            id: MESSAGE,
            given: events.into_iter().collect(),
        }
    }

    /// A command reaches the message at `now`.
    #[track_caller]
    pub(super) fn when(self, command: MessageCommand, now: DateTime<Utc>) -> Decided {
        let state = Message::from_events(self.id, &self.given)
            .expect("`given` must start with MessageAccepted");
        assert_eq!(
            state.version,
            self.given.len() as u64,
            "`given` folded to the wrong version"
        );
        let result = state.decide(&command, now);
        Decided {
            id: self.id,
            given: self.given,
            result,
        }
    }

    /// A new message is accepted at `now` (the stream must be empty).
    #[track_caller]
    pub(super) fn when_accepted(self, spec: MessageSpec, now: DateTime<Utc>) -> Decided {
        assert!(self.given.is_empty(), "a message is accepted only once");
        Decided {
            id: self.id,
            given: self.given,
            result: Ok(accept(TENANT, spec, now)),
        }
    }
}

impl Decided {
    /// The events decided; panics if the command was refused.
    #[track_caller]
    pub(super) fn events(&self) -> &[MessageEvent] {
        match &self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events, the command was refused: {e:?}"),
        }
    }

    #[track_caller]
    pub(super) fn then_expect_events(self, expected: Vec<MessageEvent>) -> Self {
        assert_eq!(self.events(), expected.as_slice(), "decided events");
        self
    }

    /// The command was accepted but there was nothing to do (stale, duplicate, already done).
    #[track_caller]
    pub(super) fn then_expect_no_events(self) -> Self {
        self.then_expect_events(Vec::new())
    }

    #[track_caller]
    pub(super) fn then_expect_error(self, expected: DomainError) {
        match self.result {
            Err(e) => assert_eq!(e, expected, "refusal"),
            Ok(events) => panic!("expected {expected:?}, the aggregate decided {events:?}"),
        }
    }

    /// Checks the decided events by hand (for payloads a test should not spell out in full).
    #[track_caller]
    pub(super) fn then_events(self, check: impl FnOnce(&[MessageEvent])) -> Self {
        check(self.events());
        self
    }

    /// Checks the state folded from the given events followed by the decided ones.
    #[track_caller]
    pub(super) fn then_state(self, check: impl FnOnce(&Message)) -> Self {
        let all: Vec<MessageEvent> = self
            .given
            .iter()
            .chain(self.events().iter())
            .cloned()
            .collect();
        let state = Message::from_events(self.id, &all).expect("a message");
        assert_eq!(state.version, all.len() as u64, "one version per event");
        check(&state);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: ids, clock, specs, events and commands
// ---------------------------------------------------------------------------------------------

pub(super) const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e4a_0047));
pub(super) const MESSAGE: MessageId = MessageId(Uuid::from_u128(0x4d5a_006e));
pub(super) const PROVIDER: &str = "twilio";
pub(super) const SERVED_BY: &str = "twilio@0.1.0";

/// Attempt ids that read well in assertion failures.
pub(super) fn attempt(n: u128) -> AttemptId {
    AttemptId(Uuid::from_u128(0xa77e_0000 + n))
}

/// The simulated clock: `t(s)` is `s` seconds after the message was accepted.
pub(super) fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid instant")
        + Duration::seconds(seconds)
}

pub(super) fn step(channel: Channel, timeout_seconds: u32, until: Until) -> CascadeStep {
    CascadeStep {
        channel,
        timeout_seconds,
        until,
    }
}

pub(super) fn spec(cascade: Vec<CascadeStep>, ttl_seconds: Option<u32>) -> MessageSpec {
    MessageSpec {
        cascade_policy: None,
        suppressed_steps: Vec::new(),
        enrichment: None,
        to: Recipient {
            phone: Some("+37255512345".into()),
            email: Some("ada@example.com".into()),
            push_token: Some("fcm-token-1".into()),
            whatsapp: Some("+37255512345".into()),
        },
        content: Content {
            text: Some("Your code is 123456".into()),
            ..Default::default()
        },
        cascade,
        reference: Some("order-42".into()),
        metadata: None,
        ttl_seconds,
    }
}

/// A message and the events of its cascade, built against its own spec.
#[derive(Clone)]
pub(super) struct Fx {
    pub spec: MessageSpec,
}

impl Fx {
    pub(super) fn new(cascade: Vec<CascadeStep>) -> Self {
        Self {
            spec: spec(cascade, None),
        }
    }

    pub(super) fn with_ttl(cascade: Vec<CascadeStep>, ttl_seconds: u32) -> Self {
        Self {
            spec: spec(cascade, Some(ttl_seconds)),
        }
    }

    /// SMS until delivered (60 s), then email until accepted (300 s), then push until read (30 s).
    pub(super) fn three_steps() -> Self {
        Self::new(vec![
            step(Channel::Sms, 60, Until::Delivered),
            step(Channel::Email, 300, Until::Accepted),
            step(Channel::Push, 30, Until::Read),
        ])
    }

    /// One SMS step that waits for `until`.
    pub(super) fn one_step(until: Until) -> Self {
        Self::new(vec![step(Channel::Sms, 60, until)])
    }

    /// `MessageAccepted` + `StepStarted(0)` at `t(0)`.
    pub(super) fn accepted(&self) -> Vec<MessageEvent> {
        vec![self.message_accepted(t(0)), self.started(0, t(0))]
    }

    /// Accepted, then attempt 1 of step 0 dispatched at `t(1)`.
    pub(super) fn dispatched_first(&self) -> Vec<MessageEvent> {
        let mut e = self.accepted();
        e.push(self.dispatched(attempt(1), 0, t(1)));
        e
    }

    /// Accepted, then attempt 1 of step 0 dispatched at `t(1)` and sent at `t(2)`.
    pub(super) fn sent_first(&self) -> Vec<MessageEvent> {
        let mut e = self.dispatched_first();
        e.push(sent(attempt(1), t(2)));
        e
    }

    pub(super) fn message_accepted(&self, at: DateTime<Utc>) -> MessageEvent {
        MessageEvent::MessageAccepted {
            tenant_id: TENANT,
            spec: Box::new(self.spec.clone()),
            expires_at: self
                .spec
                .ttl_seconds
                .map(|s| at + Duration::seconds(i64::from(s))),
            at,
        }
    }

    pub(super) fn started(&self, step_index: usize, at: DateTime<Utc>) -> MessageEvent {
        let s = self.spec.cascade[step_index];
        MessageEvent::StepStarted {
            step_index,
            channel: s.channel,
            until: s.until,
            timeout_at: None,
            at,
        }
    }

    /// The first attempt of a step dispatched at `at`: the step's clock starts.
    pub(super) fn dispatched(
        &self,
        attempt_id: AttemptId,
        step_index: usize,
        at: DateTime<Utc>,
    ) -> MessageEvent {
        let timeout = self.spec.cascade[step_index].timeout_seconds;
        MessageEvent::AttemptDispatched {
            attempt_id,
            step_index,
            channel: self.spec.cascade[step_index].channel,
            provider: PROVIDER.into(),
            served_by: Some(SERVED_BY.into()),
            route: Some(route()),
            cost: None,
            step_timeout_at: Some(at + Duration::seconds(i64::from(timeout))),
            at,
        }
    }

    /// A further attempt of a step (a failover): the step's clock runs already.
    pub(super) fn failover_dispatched(
        &self,
        attempt_id: AttemptId,
        step_index: usize,
        at: DateTime<Utc>,
    ) -> MessageEvent {
        match self.dispatched(attempt_id, step_index, at) {
            MessageEvent::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                at,
                ..
            } => MessageEvent::AttemptDispatched {
                attempt_id,
                step_index,
                channel,
                provider,
                served_by,
                route,
                cost: None,
                step_timeout_at: None,
                at,
            },
            _ => unreachable!(),
        }
    }

    /// No provider could serve the step at `at`: its clock starts without an attempt.
    pub(super) fn unserved(&self, step_index: usize, at: DateTime<Utc>) -> MessageEvent {
        let timeout = self.spec.cascade[step_index].timeout_seconds;
        MessageEvent::StepUnserved {
            step_index,
            timeout_at: at + Duration::seconds(i64::from(timeout)),
            at,
        }
    }
}

pub(super) fn provider_id(a: AttemptId) -> String {
    format!("pm-{a}")
}

pub(super) fn sent(attempt_id: AttemptId, at: DateTime<Utc>) -> MessageEvent {
    MessageEvent::AttemptSent {
        attempt_id,
        provider_message_id: Some(provider_id(attempt_id)),
        at,
    }
}

pub(super) fn provider_error() -> AttemptError {
    AttemptError::new("http_503", "the provider is unavailable")
}

pub(super) fn rejected(
    attempt_id: AttemptId,
    retryable: bool,
    failover: bool,
    at: DateTime<Utc>,
) -> MessageEvent {
    MessageEvent::AttemptRejected {
        attempt_id,
        error: provider_error(),
        retryable,
        failover,
        retry_at: None,
        at,
    }
}

/// A retryable refusal at `at` with nothing to fail over to: the step retries at `retry_at`.
pub(super) fn retry_planned(
    attempt_id: AttemptId,
    retry_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> MessageEvent {
    MessageEvent::AttemptRejected {
        attempt_id,
        error: provider_error(),
        retryable: true,
        failover: false,
        retry_at: Some(retry_at),
        at,
    }
}

pub(super) fn in_doubt(attempt_id: AttemptId, at: DateTime<Utc>) -> MessageEvent {
    MessageEvent::AttemptInDoubt {
        attempt_id,
        reason: "provider call timed out".into(),
        at,
    }
}

pub(super) fn undeliverable() -> AttemptError {
    AttemptError::new("30003", "unreachable handset")
}

/// A receipt as recorded; a failed one carries [`undeliverable`].
pub(super) fn receipt(
    attempt_id: AttemptId,
    status: ReceiptStatus,
    late: bool,
    at: DateTime<Utc>,
) -> MessageEvent {
    MessageEvent::ReceiptRecorded {
        attempt_id,
        status,
        provider_message_id: None,
        error: (status == ReceiptStatus::Failed).then(undeliverable),
        late,
        at,
    }
}

pub(super) fn completed(
    status: Completion,
    attempt_id: AttemptId,
    at: DateTime<Utc>,
) -> MessageEvent {
    MessageEvent::MessageCompleted {
        status,
        attempt_id,
        at,
    }
}

pub(super) fn timed_out(
    step_index: usize,
    attempt_id: Option<AttemptId>,
    at: DateTime<Utc>,
) -> MessageEvent {
    MessageEvent::StepTimedOut {
        step_index,
        attempt_id,
        at,
    }
}

pub(super) fn exhausted(at: DateTime<Utc>) -> MessageEvent {
    MessageEvent::MessageFailed {
        reason: "exhausted".into(),
        at,
    }
}

pub(super) fn dispatch(step_index: usize, attempt_seq: usize, a: AttemptId) -> MessageCommand {
    MessageCommand::DispatchAttempt {
        step_index,
        attempt_seq,
        attempt_id: a,
        provider: PROVIDER.into(),
        served_by: Some(SERVED_BY.into()),
        route: Some(route()),
        cost: None,
    }
}

/// The router's record the test saga hands over: the aggregate keeps it on the event as given.
pub(super) fn route() -> crate::routing::RouteRecord {
    crate::routing::RouteRecord {
        strategy: crate::routing::Strategy::Cost,
        rule: Some("tenant:sms".into()),
        country: Some("US".into()),
        reason: "cheapest".into(),
        candidates: vec![crate::routing::CandidateRecord {
            account: PROVIDER.into(),
            circuit: crate::circuit::CircuitState::Closed,
            success_rate: Some(1.0),
            latency_ms: Some(12),
            price: Some(0.0079),
        }],
    }
}

pub(super) fn outcome_sent(a: AttemptId) -> MessageCommand {
    MessageCommand::RecordSendOutcome {
        attempt_id: a,
        outcome: SendOutcome::Sent {
            provider_message_id: Some(provider_id(a)),
        },
    }
}

pub(super) fn outcome_rejected(a: AttemptId, retryable: bool, failover: bool) -> MessageCommand {
    MessageCommand::RecordSendOutcome {
        attempt_id: a,
        outcome: SendOutcome::Rejected {
            error: provider_error(),
            retryable,
            failover,
            retry_later: retryable,
        },
    }
}

pub(super) fn outcome_in_doubt(a: AttemptId) -> MessageCommand {
    MessageCommand::RecordSendOutcome {
        attempt_id: a,
        outcome: SendOutcome::InDoubt {
            reason: "provider call timed out".into(),
        },
    }
}

/// A receipt command; a failed one carries [`undeliverable`].
pub(super) fn receipt_cmd(a: AttemptId, status: ReceiptStatus) -> MessageCommand {
    MessageCommand::RecordReceipt {
        attempt_id: a,
        status,
        provider_message_id: None,
        error: (status == ReceiptStatus::Failed).then(undeliverable),
    }
}

pub(super) fn step_timer(step_index: usize) -> MessageCommand {
    MessageCommand::FireTimer(TimerKind::StepTimeout { step_index })
}

pub(super) fn ttl_timer() -> MessageCommand {
    MessageCommand::FireTimer(TimerKind::Ttl)
}
