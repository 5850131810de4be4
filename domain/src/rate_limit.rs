//! Rate limits as GCRA (the generic cell rate algorithm): each limited thing keeps one number, its
//! theoretical arrival time (TAT), the moment its budget is full again. A request is allowed when
//! taking one more emission interval keeps the TAT within the burst's reach of now. One number per
//! key means the state fits in one Redis string, updated atomically by a script, so every process
//! shares it (`infra/src/rate_limit.rs` holds the stores; this is the rule they all run).
//!
//! Times are microseconds on the clock of whoever holds the state (Redis's `TIME` when shared).

use serde::{Deserialize, Serialize};

/// Most requests per second a limit may name (above, the accept path is the limit anyway).
pub const MAX_PER_SECOND: u32 = 100_000;

/// A rate with a burst: `per_second` on average, up to `burst` at once after a quiet time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    /// Requests allowed at once; default `per_second` (one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn is_valid(&self) -> bool {
        (1..=MAX_PER_SECOND).contains(&self.per_second)
            && self.burst.is_none_or(|b| (1..=MAX_PER_SECOND).contains(&b))
    }

    /// Microseconds between two requests at the average rate.
    pub fn interval_us(&self) -> u64 {
        1_000_000 / u64::from(self.per_second.max(1))
    }

    /// How far ahead of now the TAT may run: the burst's worth of intervals.
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.burst.unwrap_or(self.per_second).max(1))
    }
}

/// What GCRA says about one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the key's TAT becomes `new_tat`.
    Allow { new_tat: u64 },
    /// Refused; one more fits in `retry_after_us`.
    Deny { retry_after_us: u64 },
}

/// The rule: from the stored TAT (`None`: never used, or expired), at `now`.
pub fn check(limit: &RateLimit, tat: Option<u64>, now: u64) -> Verdict {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + limit.interval_us();
    let reach = new_tat - now;
    if reach <= limit.tolerance_us() {
        Verdict::Allow { new_tat }
    } else {
        Verdict::Deny {
            retry_after_us: reach - limit.tolerance_us(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            burst: Some(burst),
        }
    }

    /// Runs `requests` at the given microsecond times; answers which were allowed.
    fn run(limit: &RateLimit, times: &[u64]) -> Vec<bool> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| match check(limit, tat, now) {
                Verdict::Allow { new_tat } => {
                    tat = Some(new_tat);
                    true
                }
                Verdict::Deny { .. } => false,
            })
            .collect()
    }

    #[test]
    fn a_burst_is_allowed_at_once_then_the_rate_holds() {
        // 10/s with a burst of 3: three at once, the fourth waits 100 ms.
        let l = limit(10, 3);
        assert_eq!(run(&l, &[0, 0, 0, 0]), [true, true, true, false]);
        assert_eq!(
            check(&l, Some(300_000), 0),
            Verdict::Deny {
                retry_after_us: 100_000
            }
        );
        assert_eq!(
            run(&l, &[0, 0, 0, 100_000, 100_000]),
            [true, true, true, true, false]
        );
    }

    #[test]
    fn over_a_long_run_the_allowed_count_is_burst_plus_rate_times_time() {
        // Requests every millisecond for 10 s at 50/s with a burst of 5.
        let l = limit(50, 5);
        let times: Vec<u64> = (0..10_000).map(|ms| ms * 1_000).collect();
        let allowed = run(&l, &times).iter().filter(|a| **a).count();
        // 5 at once, then one per 20 ms over the 9.999 s that follow.
        assert_eq!(allowed, 5 + 499);
    }

    #[test]
    fn a_quiet_key_regains_its_whole_burst_and_no_more() {
        let l = limit(10, 2);
        assert_eq!(
            run(&l, &[0, 0, 10_000_000, 10_000_000, 10_000_000]),
            [true, true, true, true, false]
        );
    }

    #[test]
    fn the_burst_defaults_to_one_seconds_worth_and_limits_are_checked() {
        let l = RateLimit {
            per_second: 4,
            burst: None,
        };
        assert_eq!(l.tolerance_us(), 1_000_000);
        assert!(l.is_valid());
        assert!(!limit(0, 1).is_valid());
        assert!(!limit(1, 0).is_valid());
        assert!(!limit(MAX_PER_SECOND + 1, 1).is_valid());
    }
}
