//! Where GCRA's state lives (the rule is `hermes_domain::rate_limit`): in Redis when `REDIS_URL`
//! is set, so the limits hold across every Hermes process; in this process otherwise.
//!
//! A request takes one unit from each of several limits (the tenant's, each channel's) or from
//! none: the Redis script checks them all and writes only when every one allows, in one atomic
//! step, on Redis's clock (`TIME`), so processes with skewed clocks agree.
//!
//! When Redis does not answer in time, the request is allowed (and counted in
//! `hermes_rate_limit_errors_total`): a rate limit protects the platform, and refusing every
//! message because its store is down would be the bigger outage.

use crate::Secret;
use hermes_domain::rate_limit::{self, RateLimit, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a check may wait for Redis before the request is let through.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// In-process keys kept before the expired ones are swept.
const LOCAL_SWEEP_AT: usize = 10_000;

/// One limit a request must fit: its key and its rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub limit: RateLimit,
}

/// The request does not fit `key`'s limit; one more fits after `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub key: String,
    pub retry_after: Duration,
}

#[derive(Clone)]
pub enum RateLimiter {
    Local(Arc<LocalStore>),
    Redis(Arc<RedisStore>),
}

pub struct LocalStore {
    started: Instant,
    tats: Mutex<HashMap<String, u64>>,
}

pub struct RedisStore {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
}

/// KEYS: the limits' keys. ARGV: per key, its interval and tolerance in microseconds. Returns
/// `{0, 0}` when allowed (and records it), else `{index of the key that refuses (1-based),
/// microseconds until one more fits}`.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_tats = {}
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local reach = new_tat - now
  if reach > tolerance and reach - tolerance > wait then
    refused, wait = i, reach - tolerance
  end
  new_tats[i] = new_tat
end
if refused > 0 then return {refused, wait} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', new_tats[i]),
    'PX', math.ceil((new_tats[i] - now) / 1000) + 1)
end
return {0, 0}
";

impl RateLimiter {
    /// Redis when a URL is given (connected now: a URL that does not answer is a configuration
    /// error, reported at start), else in process.
    pub async fn connect(redis_url: Option<&Secret<String>>) -> anyhow::Result<Self> {
        let Some(url) = redis_url else {
            return Ok(RateLimiter::Local(Arc::new(LocalStore {
                started: Instant::now(),
                tats: Mutex::default(),
            })));
        };
        let client = redis::Client::open(url.expose().as_str())
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis at REDIS_URL did not answer within 5 s"))?
        .map_err(|e| anyhow::anyhow!("Redis at REDIS_URL cannot be reached: {e}"))?;
        Ok(RateLimiter::Redis(Arc::new(RedisStore {
            connection,
            script: redis::Script::new(GCRA_SCRIPT),
        })))
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, RateLimiter::Redis(_))
    }

    /// Whether Redis answers a PING within `within`; `None` when the limits are kept in process.
    pub async fn redis_answers(&self, within: Duration) -> Option<bool> {
        let RateLimiter::Redis(store) = self else {
            return None;
        };
        let mut connection = store.connection.clone();
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut connection);
        Some(matches!(
            tokio::time::timeout(within, ping).await,
            Ok(Ok(_))
        ))
    }

    /// Takes one unit from every check's limit, or from none when one refuses.
    pub async fn acquire(&self, checks: &[Check]) -> Result<(), Limited> {
        if checks.is_empty() {
            return Ok(());
        }
        match self {
            RateLimiter::Local(store) => store.acquire(checks),
            RateLimiter::Redis(store) => store.acquire(checks).await,
        }
    }
}

impl LocalStore {
    fn acquire(&self, checks: &[Check]) -> Result<(), Limited> {
        let now = self.started.elapsed().as_micros() as u64;
        let mut tats = self.tats.lock().expect("rate limit store");
        if tats.len() >= LOCAL_SWEEP_AT {
            tats.retain(|_, tat| *tat > now);
        }
        let mut new_tats = Vec::with_capacity(checks.len());
        let mut refused: Option<Limited> = None;
        for check in checks {
            match rate_limit::check(&check.limit, tats.get(&check.key).copied(), now) {
                Verdict::Allow { new_tat } => new_tats.push(new_tat),
                Verdict::Deny { retry_after_us } => {
                    let retry_after = Duration::from_micros(retry_after_us);
                    if refused.as_ref().is_none_or(|r| r.retry_after < retry_after) {
                        refused = Some(Limited {
                            key: check.key.clone(),
                            retry_after,
                        });
                    }
                }
            }
        }
        if let Some(limited) = refused {
            return Err(limited);
        }
        for (check, tat) in checks.iter().zip(new_tats) {
            tats.insert(check.key.clone(), tat);
        }
        Ok(())
    }
}

impl RedisStore {
    async fn acquire(&self, checks: &[Check]) -> Result<(), Limited> {
        let mut invocation = self.script.prepare_invoke();
        for check in checks {
            invocation
                .key(&check.key)
                .arg(check.limit.interval_us())
                .arg(check.limit.tolerance_us());
        }
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(usize, u64)>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok((0, _))) => Ok(()),
            Ok(Ok((refused, wait_us))) => Err(Limited {
                key: checks
                    .get(refused - 1)
                    .map_or_else(String::new, |c| c.key.clone()),
                retry_after: Duration::from_micros(wait_us),
            }),
            Ok(Err(e)) => {
                metrics::counter!("hermes_rate_limit_errors_total").increment(1);
                tracing::warn!(error = %e, "rate limit check failed in Redis; the request is let through");
                Ok(())
            }
            Err(_) => {
                metrics::counter!("hermes_rate_limit_errors_total").increment(1);
                tracing::warn!(
                    "Redis did not answer a rate limit check in time; the request is let through"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, per_second: u32, burst: u32) -> Check {
        Check {
            key: key.into(),
            limit: RateLimit {
                per_second,
                burst: Some(burst),
            },
        }
    }

    #[tokio::test]
    async fn a_refusal_takes_nothing_from_the_limits_that_allowed() {
        let limiter = RateLimiter::connect(None).await.unwrap();
        let tenant = check("t", 1, 2);
        let sms = check("t:sms", 1, 1);
        assert_eq!(
            limiter.acquire(&[tenant.clone(), sms.clone()]).await,
            Ok(())
        );
        // The SMS limit refuses; the tenant's second unit is not spent.
        let refused = limiter
            .acquire(&[tenant.clone(), sms.clone()])
            .await
            .unwrap_err();
        assert_eq!(refused.key, "t:sms");
        assert!(refused.retry_after > Duration::from_millis(900));
        assert_eq!(limiter.acquire(std::slice::from_ref(&tenant)).await, Ok(()));
        assert!(limiter.acquire(&[tenant]).await.is_err());
    }
}
