//! The provider accounts Hermes routes to, replaceable while Hermes runs (hot swap), and how
//! healthy each one looks from the sends it has served.
//!
//! Health is a small circuit breaker per account: after [`FAILURES_BEFORE_REST`] provider failures
//! in a row (retryable rejections, in-doubt sends, plugin traps) the account rests for [`REST`];
//! a `Retry-After` from the provider rests it for that long at once. A resting account is offered
//! to the router as unhealthy: it is tried only when no healthy account of the channel is left.
//! A permanent rejection (a bad number) says nothing against the provider and counts as success.

use crate::provider::{Provider, SendAccepted, SendError};
use hermes_domain::routing::ProviderCandidate;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Provider failures in a row before an account rests.
pub const FAILURES_BEFORE_REST: u32 = 3;
/// How long an account rests after [`FAILURES_BEFORE_REST`] failures.
pub const REST: Duration = Duration::from_secs(30);
/// The longest rest a provider's `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct Health {
    failures_in_a_row: u32,
    resting_until: Option<Instant>,
}

impl Health {
    fn is_resting(&self, now: Instant) -> bool {
        self.resting_until.is_some_and(|until| now < until)
    }
}

#[derive(Clone)]
struct Entry {
    provider: Arc<dyn Provider>,
    health: Arc<Mutex<Health>>,
}

/// The provider accounts, in priority order. Cheap to clone; clones share the accounts, so a swap
/// is seen by every holder. A caller holds the `Arc<dyn Provider>` it got for the whole call, so a
/// call in flight finishes on the version it started with.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    entries: Arc<RwLock<Vec<Entry>>>,
}

impl ProviderRegistry {
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        let registry = Self::default();
        for provider in providers {
            registry.put(provider);
        }
        registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.read()
            .iter()
            .find(|e| e.provider.name() == name)
            .map(|e| e.provider.clone())
    }

    /// Every account's current provider, in priority order.
    pub fn snapshot(&self) -> Vec<Arc<dyn Provider>> {
        self.read().iter().map(|e| e.provider.clone()).collect()
    }

    /// Account names, in priority order.
    pub fn names(&self) -> Vec<String> {
        self.read()
            .iter()
            .map(|e| e.provider.name().to_owned())
            .collect()
    }

    /// Adds an account at the end, or atomically replaces the account of the same name (keeping
    /// its place and its health). Returns the replaced provider.
    pub fn put(&self, provider: Arc<dyn Provider>) -> Option<Arc<dyn Provider>> {
        let mut entries = self.write();
        match entries
            .iter_mut()
            .find(|e| e.provider.name() == provider.name())
        {
            Some(entry) => Some(std::mem::replace(&mut entry.provider, provider)),
            None => {
                entries.push(Entry {
                    provider,
                    health: Arc::default(),
                });
                None
            }
        }
    }

    /// Sets the whole list at once, in this (priority) order: accounts keep their health when their
    /// name stays; calls in flight on replaced or removed ones finish.
    pub fn set_all(&self, providers: Vec<Arc<dyn Provider>>) {
        let mut entries = self.write();
        let next = providers
            .into_iter()
            .map(|provider| {
                let health = entries
                    .iter()
                    .find(|e| e.provider.name() == provider.name())
                    .map_or_else(Arc::default, |e| e.health.clone());
                Entry { provider, health }
            })
            .collect();
        *entries = next;
    }

    /// Removes an account; calls in flight on it finish.
    pub fn remove(&self, name: &str) -> Option<Arc<dyn Provider>> {
        let mut entries = self.write();
        let index = entries.iter().position(|e| e.provider.name() == name)?;
        Some(entries.remove(index).provider)
    }

    /// What the router sees: every account, resting ones as unhealthy.
    pub fn candidates(&self) -> Vec<ProviderCandidate> {
        let now = Instant::now();
        self.read()
            .iter()
            .map(|e| ProviderCandidate {
                name: e.provider.name().to_owned(),
                channels: e.provider.channels().to_vec(),
                healthy: !e
                    .health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_resting(now),
            })
            .collect()
    }

    /// Counts one send's result against the account's health.
    pub fn record_send(&self, name: &str, result: &Result<SendAccepted, SendError>) {
        let Some(health) = self
            .read()
            .iter()
            .find(|e| e.provider.name() == name)
            .map(|e| e.health.clone())
        else {
            return;
        };
        let mut health = health.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (failed, retry_after) = match result {
            Ok(_)
            | Err(SendError::Rejected {
                retryable: false, ..
            }) => (false, None),
            Err(SendError::Rejected { retry_after, .. }) => (true, *retry_after),
            Err(SendError::InDoubt(_)) => (true, None),
        };
        if !failed {
            *health = Health::default();
            return;
        }
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        let rest = match retry_after {
            Some(wait) => Some(wait.min(MAX_RETRY_AFTER)),
            None => (health.failures_in_a_row >= FAILURES_BEFORE_REST).then_some(REST),
        };
        if let Some(rest) = rest {
            let until = now + rest;
            if health.resting_until.is_none_or(|current| current < until) {
                tracing::warn!(
                    provider = name,
                    rest_seconds = rest.as_secs(),
                    failures_in_a_row = health.failures_in_a_row,
                    "provider account resting"
                );
                health.resting_until = Some(until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{CallbackError, CallbackOutcome, CallbackRequest, SendRequest};
    use futures::future::BoxFuture;
    use hermes_domain::Channel;
    use hermes_domain::message::AttemptError;

    struct Fake(&'static str, &'static str);

    impl Provider for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn served_by(&self) -> String {
            self.1.to_owned()
        }
        fn channels(&self) -> &[Channel] {
            &[Channel::Sms]
        }
        fn send<'a>(
            &'a self,
            _: &'a SendRequest,
        ) -> BoxFuture<'a, Result<SendAccepted, SendError>> {
            unimplemented!("not called")
        }
        fn parse_callback<'a>(
            &'a self,
            _: &'a CallbackRequest,
        ) -> BoxFuture<'a, Result<CallbackOutcome, CallbackError>> {
            unimplemented!("not called")
        }
    }

    fn retryable(retry_after: Option<Duration>) -> Result<SendAccepted, SendError> {
        Err(SendError::Rejected {
            error: AttemptError::new("http_503", "down"),
            retryable: true,
            retry_after,
        })
    }

    fn healthy(registry: &ProviderRegistry, name: &str) -> bool {
        registry
            .candidates()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
            .healthy
    }

    #[test]
    fn an_account_rests_after_failures_in_a_row_and_a_success_resets_the_count() {
        let registry = ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1"))]);
        registry.record_send("a", &retryable(None));
        registry.record_send("a", &retryable(None));
        registry.record_send(
            "a",
            &Ok(SendAccepted {
                provider_message_id: None,
            }),
        );
        registry.record_send("a", &retryable(None));
        registry.record_send("a", &Err(SendError::InDoubt("lost".into())));
        assert!(
            healthy(&registry, "a"),
            "two failures in a row are not enough"
        );
        registry.record_send("a", &retryable(None));
        assert!(!healthy(&registry, "a"));
    }

    #[test]
    fn permanent_rejections_do_not_count_against_the_provider() {
        let registry = ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1"))]);
        for _ in 0..10 {
            registry.record_send(
                "a",
                &Err(SendError::rejected(
                    AttemptError::new("invalid_number", "no"),
                    false,
                )),
            );
        }
        assert!(healthy(&registry, "a"));
    }

    #[test]
    fn retry_after_rests_the_account_at_once() {
        let registry = ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1"))]);
        registry.record_send("a", &retryable(Some(Duration::from_secs(60))));
        assert!(!healthy(&registry, "a"));
    }

    #[test]
    fn put_replaces_in_place_and_keeps_health_while_holders_keep_the_old_one() {
        let registry =
            ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1")), Arc::new(Fake("b", "q@1"))]);
        registry.record_send("a", &retryable(Some(Duration::from_secs(60))));
        let in_flight = registry.get("a").unwrap();
        let old = registry.put(Arc::new(Fake("a", "p@2"))).unwrap();
        assert_eq!(old.served_by(), "p@1");
        assert_eq!(in_flight.served_by(), "p@1");
        assert_eq!(registry.get("a").unwrap().served_by(), "p@2");
        assert_eq!(registry.names(), ["a", "b"]);
        assert!(!healthy(&registry, "a"), "health survives a swap");
        registry.remove("a");
        assert_eq!(registry.names(), ["b"]);
    }
}
