//! A provider account's health as seen from the sends it served: a circuit breaker plus the
//! rolling numbers the router shows in its decisions.
//!
//! - **Closed**: calls go through. It opens after [`FAILURES_IN_A_ROW`] provider failures in a row,
//!   or when at least [`MIN_CALLS`] of the last [`WINDOW`] calls were made and half or more of
//!   them failed, or at once for a provider's `Retry-After`.
//! - **Open**: the router passes the account over (unless no other account of the channel is
//!   left: trying beats failing the step outright) until its open time is up: [`OPEN_FOR`] at
//!   first, doubled by each failed probe up to [`MAX_OPEN_FOR`].
//! - **Half-open**: one probe at a time (a real send, claimed by the dispatch that makes it, for
//!   at most [`PROBE_CLAIM`]). A probe that succeeds closes the circuit; one that fails opens it
//!   again for twice as long.
//!
//! A provider failure is a retryable rejection, an in-doubt send or a plugin trap; a permanent
//! rejection (a bad number) says nothing against the provider and counts as a success. Time is
//! milliseconds on a monotonic clock the caller owns.

use std::collections::VecDeque;

/// Provider failures in a row that open a closed circuit.
pub const FAILURES_IN_A_ROW: u32 = 3;
/// Calls remembered for the error rate and success rate.
pub const WINDOW: usize = 20;
/// Calls in the window before the error rate can open the circuit.
pub const MIN_CALLS: usize = 10;
/// Failed share of the window that opens the circuit.
pub const ERROR_RATE: f64 = 0.5;
/// How long a circuit stays open the first time, in milliseconds, unless the deployment sets
/// another ([`Circuit::with_open_for`]).
pub const OPEN_FOR: u64 = 30_000;
/// The longest a circuit stays open (failed probes double the time), and the longest a
/// provider's `Retry-After` can keep it open, in milliseconds.
pub const MAX_OPEN_FOR: u64 = 3_600_000;
/// How long a probe's claim holds before another dispatch may probe (a send's deadline is 10 s),
/// in milliseconds.
pub const PROBE_CLAIM: u64 = 15_000;
/// Weight of the newest latency in the moving average.
const LATENCY_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// The value of the `hermes_provider_circuit_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// What one send said about the provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallOutcome {
    /// Sent, or refused for a reason of the message's own.
    Succeeded { latency_ms: u64 },
    /// A provider failure; `retry_after_ms` when the provider said when to come back.
    Failed { retry_after_ms: Option<u64> },
}

#[derive(Debug, Clone, Default)]
pub struct Circuit {
    /// Newest last: `true` for a success.
    window: VecDeque<bool>,
    failures_in_a_row: u32,
    /// Set while open or half-open: when the open time is (was) up.
    open_until: Option<u64>,
    /// How long the next opening lasts (doubles with each failed probe).
    next_open_for: u64,
    /// When a dispatch claimed the half-open probe.
    probe_claimed_at: Option<u64>,
    latency_ms: Option<f64>,
    /// How long the first opening lasts; [`OPEN_FOR`] when zero.
    first_open_for: u64,
}

impl Circuit {
    /// A closed circuit whose first opening lasts `open_for_ms` (an operator's choice; tests
    /// shorten it).
    pub fn with_open_for(open_for_ms: u64) -> Self {
        Self {
            first_open_for: open_for_ms.clamp(1, MAX_OPEN_FOR),
            ..Self::default()
        }
    }

    fn first_open_for(&self) -> u64 {
        if self.first_open_for == 0 {
            OPEN_FOR
        } else {
            self.first_open_for
        }
    }

    pub fn state(&self, now: u64) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(until) if now < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// Whether a dispatch may send through the account now without claiming anything: closed.
    /// A half-open account takes a send only through [`Circuit::claim_probe`].
    pub fn probe_free(&self, now: u64) -> bool {
        self.state(now) == CircuitState::HalfOpen
            && self
                .probe_claimed_at
                .is_none_or(|at| now.saturating_sub(at) >= PROBE_CLAIM)
    }

    /// Claims the half-open probe for one send; `false` when the circuit is not half-open or
    /// another dispatch holds the probe.
    pub fn claim_probe(&mut self, now: u64) -> bool {
        if !self.probe_free(now) {
            return false;
        }
        self.probe_claimed_at = Some(now);
        true
    }

    /// Share of the remembered calls that succeeded; `None` before the first call.
    pub fn success_rate(&self) -> Option<f64> {
        (!self.window.is_empty())
            .then(|| self.window.iter().filter(|ok| **ok).count() as f64 / self.window.len() as f64)
    }

    /// Moving average of successful sends' latency.
    pub fn latency_ms(&self) -> Option<u64> {
        self.latency_ms.map(|l| l.round() as u64)
    }

    /// Counts one send; returns the new state when it changed.
    pub fn record(&mut self, outcome: CallOutcome, now: u64) -> Option<CircuitState> {
        let before = self.state(now);
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        match outcome {
            CallOutcome::Succeeded { latency_ms } => {
                self.window.push_back(true);
                self.failures_in_a_row = 0;
                self.latency_ms = Some(match self.latency_ms {
                    None => latency_ms as f64,
                    Some(avg) => avg + LATENCY_ALPHA * (latency_ms as f64 - avg),
                });
                if before != CircuitState::Closed {
                    // A probe (or a last-resort send) went through: the provider is back. The
                    // failures that opened the circuit no longer speak for it.
                    self.open_until = None;
                    self.probe_claimed_at = None;
                    self.next_open_for = 0;
                    self.window.clear();
                    self.window.push_back(true);
                }
            }
            CallOutcome::Failed { retry_after_ms } => {
                self.window.push_back(false);
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                let by_rule = match before {
                    CircuitState::HalfOpen => Some(self.next_open_for.saturating_mul(2)),
                    CircuitState::Closed if self.tripped() => Some(self.first_open_for()),
                    _ => None,
                }
                .map(|ms| ms.min(MAX_OPEN_FOR));
                let by_provider = retry_after_ms.map(|ms| ms.min(MAX_OPEN_FOR));
                let open_for = match (by_rule, by_provider) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if let Some(open_for) = open_for {
                    let until = now.saturating_add(open_for);
                    if before == CircuitState::HalfOpen
                        || self.open_until.is_none_or(|current| current < until)
                    {
                        self.open_until = Some(until);
                    }
                    self.next_open_for =
                        by_rule.unwrap_or(self.next_open_for.max(self.first_open_for()));
                    self.probe_claimed_at = None;
                }
            }
        }
        let after = self.state(now);
        (after != before).then_some(after)
    }

    fn tripped(&self) -> bool {
        if self.failures_in_a_row >= FAILURES_IN_A_ROW {
            return true;
        }
        let failed = self.window.iter().filter(|ok| !**ok).count();
        self.window.len() >= MIN_CALLS && failed as f64 >= ERROR_RATE * self.window.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: CallOutcome = CallOutcome::Failed {
        retry_after_ms: None,
    };
    const OK: CallOutcome = CallOutcome::Succeeded { latency_ms: 100 };

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let mut c = Circuit::default();
        c.record(FAIL, 0);
        c.record(FAIL, 0);
        c.record(OK, 0);
        c.record(FAIL, 0);
        assert_eq!(c.record(FAIL, 0), None);
        assert_eq!(
            c.state(0),
            CircuitState::Closed,
            "two in a row are not enough"
        );
        assert_eq!(c.record(FAIL, 0), Some(CircuitState::Open));
        assert_eq!(c.state(OPEN_FOR - 1), CircuitState::Open);
        assert_eq!(c.state(OPEN_FOR), CircuitState::HalfOpen);
    }

    #[test]
    fn opens_on_the_error_rate_without_failures_in_a_row() {
        let mut c = Circuit::default();
        // ok, fail, fail, ok, ...: never three failures in a row, but two in three fail.
        let mut opened_at = None;
        for i in 0..WINDOW {
            let outcome = if i % 3 == 0 { OK } else { FAIL };
            if c.record(outcome, 0) == Some(CircuitState::Open) {
                opened_at = Some(i + 1);
                break;
            }
        }
        assert_eq!(
            opened_at,
            Some(MIN_CALLS + 1),
            "the 11th call: 7 of 11 failed"
        );
    }

    #[test]
    fn a_low_error_rate_keeps_it_closed() {
        let mut c = Circuit::default();
        for i in 0..100 {
            c.record(if i % 4 == 0 { FAIL } else { OK }, 0);
        }
        assert_eq!(c.state(0), CircuitState::Closed);
        assert_eq!(c.success_rate(), Some(0.75));
    }

    #[test]
    fn half_open_admits_one_probe_and_its_success_closes_the_circuit() {
        let mut c = Circuit::default();
        for _ in 0..3 {
            c.record(FAIL, 0);
        }
        assert!(!c.claim_probe(1_000), "open: no probe yet");
        let t = OPEN_FOR;
        assert!(c.probe_free(t));
        assert!(c.claim_probe(t));
        assert!(!c.claim_probe(t + 1), "one probe at a time");
        assert!(
            c.claim_probe(t + PROBE_CLAIM),
            "a probe that never reported frees its claim"
        );
        assert_eq!(
            c.record(OK, t + PROBE_CLAIM + 5),
            Some(CircuitState::Closed)
        );
        assert_eq!(
            c.success_rate(),
            Some(1.0),
            "the failures before are forgotten"
        );
        assert_eq!(
            c.record(FAIL, t + PROBE_CLAIM + 6),
            None,
            "one failure does not reopen"
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap() {
        let mut c = Circuit::default();
        for _ in 0..3 {
            c.record(FAIL, 0);
        }
        let mut now = OPEN_FOR;
        let mut open_for = OPEN_FOR;
        for _ in 0..12 {
            assert!(c.claim_probe(now));
            assert_eq!(c.record(FAIL, now), Some(CircuitState::Open));
            open_for = (open_for * 2).min(MAX_OPEN_FOR);
            assert_eq!(c.state(now + open_for - 1), CircuitState::Open);
            assert_eq!(c.state(now + open_for), CircuitState::HalfOpen);
            now += open_for;
        }
        assert_eq!(open_for, MAX_OPEN_FOR);
    }

    #[test]
    fn retry_after_opens_at_once_for_that_long_capped() {
        let mut c = Circuit::default();
        c.record(
            CallOutcome::Failed {
                retry_after_ms: Some(5_000),
            },
            0,
        );
        assert_eq!(c.state(4_999), CircuitState::Open);
        assert_eq!(c.state(5_000), CircuitState::HalfOpen);
        let mut c = Circuit::default();
        c.record(
            CallOutcome::Failed {
                retry_after_ms: Some(u64::MAX),
            },
            0,
        );
        assert_eq!(c.state(MAX_OPEN_FOR - 1), CircuitState::Open);
        assert_eq!(c.state(MAX_OPEN_FOR), CircuitState::HalfOpen);
    }

    #[test]
    fn a_last_resort_success_while_open_closes_it() {
        let mut c = Circuit::default();
        for _ in 0..3 {
            c.record(FAIL, 0);
        }
        assert_eq!(c.record(OK, 10), Some(CircuitState::Closed));
    }

    #[test]
    fn failures_while_open_do_not_extend_the_opening() {
        let mut c = Circuit::default();
        for _ in 0..3 {
            c.record(FAIL, 0);
        }
        c.record(FAIL, 20_000);
        assert_eq!(c.state(OPEN_FOR), CircuitState::HalfOpen);
    }

    #[test]
    fn the_first_opening_can_be_shortened() {
        let mut c = Circuit::with_open_for(2_000);
        for _ in 0..3 {
            c.record(FAIL, 0);
        }
        assert_eq!(c.state(1_999), CircuitState::Open);
        assert!(c.claim_probe(2_000));
        c.record(FAIL, 2_000);
        assert_eq!(
            c.state(5_999),
            CircuitState::Open,
            "a failed probe doubles it"
        );
        assert_eq!(c.state(6_000), CircuitState::HalfOpen);
    }

    #[test]
    fn latency_is_a_moving_average_of_successes() {
        let mut c = Circuit::default();
        assert_eq!(c.latency_ms(), None);
        c.record(CallOutcome::Succeeded { latency_ms: 100 }, 0);
        c.record(CallOutcome::Succeeded { latency_ms: 200 }, 0);
        assert_eq!(c.latency_ms(), Some(120));
    }
}
