//! Property tests: random cascades driven by random command sequences, as the saga, the receipt
//! intake, the timer poller and the tenant would send them (including redeliveries after a
//! restart), on a simulated clock that only moves forward.
//!
//! Checked after every event:
//! - (a) at most one attempt of the current step is awaited (pending and not late);
//! - (b) no `AttemptDispatched` or `StepStarted` once the message is terminal;
//! - (c) once terminal, the outcome (success, failed, expired, cancelled) never changes, and
//!   exactly one terminal event is ever written;
//! - (d) `version` is the number of events applied;
//! - (e) a recorded receipt moves its attempt strictly forward (monotone status, so however often
//!   callbacks are replayed an attempt records at most three receipts);
//! - (f) a step times out only once its clock runs (its first dispatch, or no provider could
//!   serve it): time spent waiting for a worker never fails a message;
//!
//! and after every command: delivering it again decides nothing new (a dispatch delivered again
//! may put its attempt in doubt, but never dispatches). Finally, firing the current step's
//! timeout drains any message to a terminal state, and folding the whole log from scratch gives
//! the same state as applying it event by event.

use super::*;
use crate::message::{AttemptStatus, MessageStatus};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

// --- generators ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Outcome {
    Sent { with_provider_id: bool },
    Rejected { retryable: bool, failover: bool },
    InDoubt,
}

#[derive(Debug, Clone)]
enum Action {
    /// The saga dispatches the next attempt of the current step.
    Dispatch,
    /// A restarted saga delivers again the dispatch of an attempt already made on the step.
    ReplayDispatch(Index),
    /// A dispatch for some other step (stale or not started yet).
    DispatchStep(usize),
    /// The provider's synchronous answer, for some existing attempt.
    Outcome(Index, Outcome),
    /// A delivery receipt for some existing attempt.
    Receipt(Index, ReceiptStatus, bool),
    /// The step timeout timer of some step fires.
    StepTimeout(usize),
    /// The saga finds no provider account for some step.
    NoProvider(usize),
    /// The retry timer of some attempt fires (due, early, stale or redelivered).
    RetryTimer(Index),
    Ttl,
    Cancel,
    /// The tenant acknowledges a push (delivered or read).
    AckPush(bool),
}

fn until() -> impl Strategy<Value = Until> {
    prop_oneof![
        Just(Until::Accepted),
        Just(Until::Delivered),
        Just(Until::Read)
    ]
}

fn cascade_step() -> impl Strategy<Value = CascadeStep> {
    (
        proptest::sample::select(Channel::ALL.to_vec()),
        1u32..=600,
        until(),
    )
        .prop_map(|(channel, timeout, until)| step(channel, timeout, until))
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    (
        proptest::collection::vec(cascade_step(), 1..=4),
        proptest::option::of(1u32..=3600),
    )
        .prop_map(|(cascade, ttl)| spec(cascade, ttl))
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        2 => any::<bool>().prop_map(|with_provider_id| Outcome::Sent { with_provider_id }),
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(retryable, failover)| Outcome::Rejected { retryable, failover }),
        1 => Just(Outcome::InDoubt),
    ]
}

fn receipt_status() -> impl Strategy<Value = ReceiptStatus> {
    prop_oneof![
        Just(ReceiptStatus::Sent),
        Just(ReceiptStatus::Delivered),
        Just(ReceiptStatus::Read),
        Just(ReceiptStatus::Failed),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => Just(Action::Dispatch),
        2 => any::<Index>().prop_map(Action::ReplayDispatch),
        1 => (0usize..5).prop_map(Action::DispatchStep),
        8 => (any::<Index>(), outcome()).prop_map(|(i, o)| Action::Outcome(i, o)),
        8 => (any::<Index>(), receipt_status(), any::<bool>())
            .prop_map(|(i, s, id)| Action::Receipt(i, s, id)),
        3 => (0usize..5).prop_map(Action::StepTimeout),
        1 => (0usize..5).prop_map(Action::NoProvider),
        2 => any::<Index>().prop_map(Action::RetryTimer),
        1 => Just(Action::Ttl),
        1 => Just(Action::Cancel),
        2 => any::<bool>().prop_map(Action::AckPush),
    ]
}

/// An action and how many seconds pass before it.
fn timed_actions() -> impl Strategy<Value = Vec<(i64, Action)>> {
    proptest::collection::vec((0i64..=120, action()), 0..40)
}

// --- the simulation --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Success,
    Failed,
    Expired,
    Cancelled,
}

fn class(status: MessageStatus) -> Option<Class> {
    match status {
        MessageStatus::Accepted | MessageStatus::Sending => None,
        MessageStatus::Delivered | MessageStatus::Read => Some(Class::Success),
        MessageStatus::Failed => Some(Class::Failed),
        MessageStatus::Expired => Some(Class::Expired),
        MessageStatus::Cancelled => Some(Class::Cancelled),
    }
}

struct Sim {
    state: Message,
    log: Vec<MessageEvent>,
    now: DateTime<Utc>,
    next_attempt: u128,
    outcome: Option<Class>,
    terminal_events: usize,
}

impl Sim {
    fn accept(spec: MessageSpec) -> Result<Self, TestCaseError> {
        let events = accept(TENANT, spec, t(0));
        let state = Message::from_events(MESSAGE, &events).expect("accepted");
        let sim = Sim {
            state,
            log: events,
            now: t(0),
            next_attempt: 0,
            outcome: None,
            terminal_events: 0,
        };
        sim.check_state()?;
        Ok(sim)
    }

    fn fresh_attempt(&mut self) -> AttemptId {
        self.next_attempt += 1;
        attempt(self.next_attempt)
    }

    /// An existing attempt, or (when there is none yet) one this message never saw.
    fn some_attempt(&mut self, i: &Index) -> AttemptId {
        if self.state.attempts.is_empty() {
            self.fresh_attempt()
        } else {
            self.state.attempts[i.index(self.state.attempts.len())].id
        }
    }

    fn current_step(&self) -> usize {
        self.state
            .current_step_index()
            .expect("a message starts on its first step")
    }

    /// Turns an action into the command it sends, moving the clock as a real timer would.
    fn command(&mut self, action: &Action) -> Option<MessageCommand> {
        Some(match action {
            Action::Dispatch => {
                let s = self.current_step();
                let seq = self.state.step_attempts(s).count();
                dispatch(s, seq, self.fresh_attempt())
            }
            Action::ReplayDispatch(i) => {
                let s = self.current_step();
                let made = self.state.step_attempts(s).count();
                dispatch(s, i.index(made.max(1)), self.fresh_attempt())
            }
            Action::DispatchStep(s) => {
                let seq = self.state.step_attempts(*s).count();
                dispatch(*s, seq, self.fresh_attempt())
            }
            Action::Outcome(i, o) => {
                let a = self.some_attempt(i);
                let outcome = match o {
                    Outcome::Sent { with_provider_id } => SendOutcome::Sent {
                        provider_message_id: with_provider_id.then(|| provider_id(a)),
                    },
                    Outcome::Rejected {
                        retryable,
                        failover,
                    } => SendOutcome::Rejected {
                        error: provider_error(),
                        retryable: *retryable,
                        failover: *failover,
                        retry_later: *retryable,
                    },
                    Outcome::InDoubt => SendOutcome::InDoubt {
                        reason: "provider call timed out".into(),
                    },
                };
                MessageCommand::RecordSendOutcome {
                    attempt_id: a,
                    outcome,
                }
            }
            Action::Receipt(i, status, with_provider_id) => {
                let a = self.some_attempt(i);
                MessageCommand::RecordReceipt {
                    attempt_id: a,
                    status: *status,
                    provider_message_id: with_provider_id.then(|| provider_id(a)),
                    error: (*status == ReceiptStatus::Failed).then(undeliverable),
                }
            }
            Action::StepTimeout(s) => {
                // The timer of the current step fires when due; others are stale deliveries.
                if let Some(cur) = &self.state.current_step
                    && cur.index == *s
                    && let Some(due) = cur.timeout_at
                {
                    self.now = self.now.max(due);
                }
                step_timer(*s)
            }
            Action::NoProvider(s) => MessageCommand::NoProvider { step_index: *s },
            Action::RetryTimer(i) => {
                let a = self.some_attempt(i);
                // A planned retry fires when due.
                if let Some(due) = self.state.attempt(a).and_then(|a| a.retry_at) {
                    self.now = self.now.max(due);
                }
                MessageCommand::FireTimer(TimerKind::Retry { after: a })
            }
            Action::Ttl => {
                // A TTL timer exists only when the message has a TTL, and fires when due.
                self.now = self.now.max(self.state.expires_at?);
                ttl_timer()
            }
            Action::Cancel => MessageCommand::Cancel,
            Action::AckPush(read) => MessageCommand::AcknowledgePush {
                status: if *read {
                    ReceiptStatus::Read
                } else {
                    ReceiptStatus::Delivered
                },
            },
        })
    }

    fn run(&mut self, command: &MessageCommand) -> Result<(), TestCaseError> {
        match self.state.decide(command, self.now) {
            Err(DomainError::UnknownAttempt(id)) => {
                prop_assert!(self.state.attempt(id).is_none(), "{id} is known");
            }
            Err(DomainError::NoPushAttempt) => {
                let is_ack = matches!(command, MessageCommand::AcknowledgePush { .. });
                prop_assert!(is_ack, "only an acknowledgement needs a push attempt");
                prop_assert!(
                    !self
                        .state
                        .attempts
                        .iter()
                        .any(|a| a.channel == Channel::Push)
                );
            }
            Err(
                e @ (DomainError::ReceiptFromAnotherAccount { .. }
                | DomainError::ReceiptForAnotherProviderMessage { .. }),
            ) => {
                prop_assert!(false, "decide never checks accounts: {:?}", e);
            }
            Err(DomainError::AlreadyTerminal(status)) => {
                prop_assert_eq!(command, &MessageCommand::Cancel);
                prop_assert_eq!(status, self.state.status);
                prop_assert!(status.is_terminal() && status != MessageStatus::Cancelled);
            }
            Ok(events) => {
                for e in &events {
                    self.apply(e)?;
                }
                self.check_redelivery(command)?;
            }
        }
        self.check_state()
    }

    fn apply(&mut self, e: &MessageEvent) -> Result<(), TestCaseError> {
        // (b)
        if self.state.is_terminal() {
            prop_assert!(
                !matches!(
                    e,
                    MessageEvent::AttemptDispatched { .. } | MessageEvent::StepStarted { .. }
                ),
                "{} after the message ended ({:?})",
                e.event_type(),
                self.state.status
            );
        }
        // (f)
        if let MessageEvent::StepTimedOut { step_index, .. } = e {
            prop_assert!(
                self.state
                    .current_step
                    .as_ref()
                    .is_some_and(|s| s.index == *step_index && s.timeout_at.is_some()),
                "step {} timed out before its clock started",
                step_index
            );
        }
        // (e)
        if let MessageEvent::ReceiptRecorded {
            attempt_id, status, ..
        } = e
        {
            let before = self.state.attempt(*attempt_id).map(|a| a.status);
            let after = AttemptStatus::from(*status);
            prop_assert!(
                before.is_some_and(|b| b.rank() < after.rank()),
                "a receipt moved {} from {:?} to {:?}, not forward",
                attempt_id,
                before,
                after
            );
        }
        if e.is_terminal() {
            self.terminal_events += 1;
            prop_assert_eq!(self.terminal_events, 1, "a second terminal event: {:?}", e);
        }
        self.state =
            Message::apply(Some(self.state.clone()), MESSAGE, e).expect("apply keeps the message");
        self.log.push(e.clone());
        // (c)
        match (self.outcome, class(self.state.status)) {
            (None, now) => self.outcome = now,
            (Some(before), Some(now)) => prop_assert_eq!(before, now, "the outcome changed"),
            (Some(before), None) => {
                prop_assert!(
                    false,
                    "left the terminal outcome {:?} after {:?}",
                    before,
                    e
                )
            }
        }
        self.check_state()
    }

    fn check_state(&self) -> Result<(), TestCaseError> {
        let m = &self.state;
        // (d)
        prop_assert_eq!(m.version, self.log.len() as u64);
        // (a)
        if !m.is_terminal() {
            // A late attempt may carry a pending status (its receipt came after the cascade
            // moved past it) but is not waited on: count the attempts the step may end by.
            let step = self.current_step();
            let awaited: Vec<_> = m.step_attempts(step).filter(|a| a.is_awaited()).collect();
            prop_assert!(
                awaited.len() <= 1,
                "{} attempts awaited on step {}: {:?}",
                awaited.len(),
                step,
                m.attempts
            );
            prop_assert_eq!(m.active_attempt(), awaited.first().copied());
        } else {
            prop_assert!(m.active_attempt().is_none());
        }
        Ok(())
    }

    /// The same command delivered again (the saga or the poller redelivers after a crash).
    fn check_redelivery(&self, command: &MessageCommand) -> Result<(), TestCaseError> {
        let again = self.state.decide(command, self.now);
        match command {
            MessageCommand::DispatchAttempt { .. } => {
                let events = again.unwrap_or_default();
                prop_assert!(
                    !events
                        .iter()
                        .any(|e| matches!(e, MessageEvent::AttemptDispatched { .. })),
                    "a redelivered dispatch sent again: {:?}",
                    events
                );
            }
            _ => prop_assert_eq!(again, Ok(vec![]), "redelivery of {:?}", command),
        }
        Ok(())
    }

    /// Fires the current step's timeout until the message ends.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..=self.state.spec.cascade.len() {
            let Some(cur) = self.state.current_step.clone() else {
                break;
            };
            if self.state.is_terminal() {
                break;
            }
            if cur.timeout_at.is_none() {
                // Nothing dispatched the step yet; a saga that finds no provider starts its clock.
                self.run(&MessageCommand::NoProvider {
                    step_index: cur.index,
                })?;
            }
            if let Some(due) = self.state.current_step.as_ref().and_then(|s| s.timeout_at) {
                self.now = self.now.max(due);
            }
            self.run(&step_timer(cur.index))?;
        }
        prop_assert!(
            self.state.is_terminal(),
            "still {:?} after draining",
            self.state.status
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn any_command_sequence_keeps_the_cascade_invariants_and_every_message_ends(
        spec in message_spec(),
        actions in timed_actions(),
    ) {
        let mut sim = Sim::accept(spec)?;
        for (seconds, action) in &actions {
            sim.now += Duration::seconds(*seconds);
            if let Some(command) = sim.command(action) {
                sim.run(&command)?;
            }
        }
        sim.drain()?;
        let refolded = Message::from_events(MESSAGE, &sim.log).expect("a message");
        prop_assert_eq!(&refolded, &sim.state);
    }
}
