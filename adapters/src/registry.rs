//! The provider accounts Hermes routes to, replaceable while Hermes runs (hot swap), how healthy
//! each one looks from the sends it has served, and its price table.
//!
//! Health is a circuit breaker per account (`hermes_domain::circuit`): provider failures
//! (retryable rejections, in-doubt sends, plugin traps) in a row or an error rate open it, a
//! provider's `Retry-After` opens it for that long, a half-open account takes one probe send at a
//! time. The gauge `hermes_provider_circuit_state{account}` shows it (0 closed, 1 half-open,
//! 2 open). A permanent rejection (a bad number) says nothing against the provider and counts as
//! a success.

use crate::provider::{Provider, SendAccepted, SendError};
use hermes_domain::TenantId;
use hermes_domain::circuit::{CallOutcome, Circuit, CircuitState};
use hermes_domain::routing::{PriceTable, ProviderCandidate};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The longest a provider's `Retry-After` keeps an account's circuit open.
pub const MAX_RETRY_AFTER: Duration = Duration::from_millis(hermes_domain::circuit::MAX_OPEN_FOR);

/// Milliseconds on the registry's monotonic clock.
fn millis_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// What an account's operator set for the router and the dispatch, besides the plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountTerms {
    /// Price per message unit by destination country (the `cost` strategy).
    pub prices: PriceTable,
    /// The provider's own send rate for the account (messages per second), kept at dispatch.
    pub max_per_second: Option<u32>,
    /// The tenant whose own account it is; `None` for a platform account.
    pub owner: Option<TenantId>,
}

#[derive(Clone)]
struct Entry {
    provider: Arc<dyn Provider>,
    health: Arc<Mutex<Circuit>>,
    prices: Arc<PriceTable>,
    max_per_second: Option<u32>,
    owner: Option<TenantId>,
}

/// The provider accounts, in priority order. Cheap to clone; clones share the accounts, so a swap
/// is seen by every holder. A caller holds the `Arc<dyn Provider>` it got for the whole call, so a
/// call in flight finishes on the version it started with.
#[derive(Clone)]
pub struct ProviderRegistry {
    entries: Arc<RwLock<Vec<Entry>>>,
    clock: Instant,
    /// How long a circuit opens the first time.
    open_for: Duration,
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::with_circuit_open_for(Duration::from_millis(hermes_domain::circuit::OPEN_FOR))
    }
}

impl ProviderRegistry {
    /// An empty registry whose accounts' circuits open for `open_for` the first time.
    pub fn with_circuit_open_for(open_for: Duration) -> Self {
        Self {
            entries: Arc::default(),
            clock: Instant::now(),
            open_for,
        }
    }

    fn new_circuit(&self) -> Arc<Mutex<Circuit>> {
        Arc::new(Mutex::new(Circuit::with_open_for(
            self.open_for.as_millis() as u64,
        )))
    }

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
                set_gauge(provider.name(), CircuitState::Closed);
                entries.push(Entry {
                    provider,
                    health: self.new_circuit(),
                    prices: Arc::default(),
                    max_per_second: None,
                    owner: None,
                });
                None
            }
        }
    }

    /// Sets the whole list at once, in this (priority) order, each account with its terms:
    /// accounts keep their health when their name stays; calls in flight on replaced or removed
    /// ones finish.
    pub fn set_all(&self, providers: Vec<(Arc<dyn Provider>, AccountTerms)>) {
        let mut entries = self.write();
        let next = providers
            .into_iter()
            .map(|(provider, terms)| {
                let health = entries
                    .iter()
                    .find(|e| e.provider.name() == provider.name())
                    .map_or_else(
                        || {
                            set_gauge(provider.name(), CircuitState::Closed);
                            self.new_circuit()
                        },
                        |e| e.health.clone(),
                    );
                Entry {
                    provider,
                    health,
                    prices: Arc::new(terms.prices),
                    max_per_second: terms.max_per_second,
                    owner: terms.owner,
                }
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

    /// What the router sees: every account in priority order, with its circuit and prices.
    pub fn candidates(&self) -> Vec<ProviderCandidate> {
        let now = millis_since(self.clock);
        self.read()
            .iter()
            .map(|e| {
                let health = e.health.lock().unwrap_or_else(|e| e.into_inner());
                ProviderCandidate {
                    name: e.provider.name().to_owned(),
                    channels: e.provider.channels().to_vec(),
                    owner: e.owner,
                    circuit: health.state(now),
                    probe_free: health.probe_free(now),
                    success_rate: health.success_rate(),
                    latency_ms: health.latency_ms(),
                    prices: e.prices.clone(),
                }
            })
            .collect()
    }

    /// The provider's send rate for the account, when its operator set one.
    pub fn max_per_second(&self, name: &str) -> Option<u32> {
        self.read()
            .iter()
            .find(|e| e.provider.name() == name)
            .and_then(|e| e.max_per_second)
    }

    fn health(&self, name: &str) -> Option<Arc<Mutex<Circuit>>> {
        self.read()
            .iter()
            .find(|e| e.provider.name() == name)
            .map(|e| e.health.clone())
    }

    /// Claims a half-open account's probe for one send: `false` when another dispatch holds it
    /// or the account is not half-open (any more).
    pub fn claim_probe(&self, name: &str) -> bool {
        let Some(health) = self.health(name) else {
            return false;
        };
        let claimed = health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .claim_probe(millis_since(self.clock));
        if claimed {
            tracing::info!(provider = name, "probing a half-open provider account");
        }
        claimed
    }

    /// Counts one send's result, which took `latency`, against the account's health.
    pub fn record_send(
        &self,
        name: &str,
        result: &Result<SendAccepted, SendError>,
        latency: Duration,
    ) {
        let Some(health) = self.health(name) else {
            return;
        };
        let outcome = match result {
            Ok(_)
            | Err(SendError::Rejected {
                retryable: false, ..
            }) => CallOutcome::Succeeded {
                latency_ms: latency.as_millis() as u64,
            },
            Err(SendError::Rejected { retry_after, .. }) => CallOutcome::Failed {
                retry_after_ms: retry_after.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
            },
            Err(SendError::InDoubt(_)) => CallOutcome::Failed {
                retry_after_ms: None,
            },
        };
        let mut health = health.lock().unwrap_or_else(|e| e.into_inner());
        let now = millis_since(self.clock);
        if let Some(state) = health.record(outcome, now) {
            match state {
                CircuitState::Open => tracing::warn!(
                    provider = name,
                    success_rate = ?health.success_rate(),
                    "provider account circuit open: the router passes it over"
                ),
                _ => tracing::info!(
                    provider = name,
                    state = state.as_str(),
                    "provider account circuit"
                ),
            }
            set_gauge(name, state);
        }
    }
}

impl ProviderRegistry {
    /// Sets `hermes_provider_circuit_state` for every account: an open circuit turns half-open
    /// by time alone, with no send to report it.
    pub fn publish_circuit_states(&self) {
        let now = millis_since(self.clock);
        for e in self.read().iter() {
            let state = e
                .health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .state(now);
            set_gauge(e.provider.name(), state);
        }
    }
}

fn set_gauge(account: &str, state: CircuitState) {
    metrics::gauge!("hermes_provider_circuit_state", "account" => account.to_owned())
        .set(state.gauge());
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
            .circuit
            == CircuitState::Closed
    }

    const FAST: Duration = Duration::from_millis(5);

    #[test]
    fn a_circuit_opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let registry = ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1"))]);
        registry.record_send("a", &retryable(None), FAST);
        registry.record_send("a", &retryable(None), FAST);
        registry.record_send(
            "a",
            &Ok(SendAccepted {
                provider_message_id: None,
            }),
            FAST,
        );
        registry.record_send("a", &retryable(None), FAST);
        registry.record_send("a", &Err(SendError::InDoubt("lost".into())), FAST);
        assert!(
            healthy(&registry, "a"),
            "two failures in a row are not enough"
        );
        registry.record_send("a", &retryable(None), FAST);
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
                FAST,
            );
        }
        assert!(healthy(&registry, "a"));
    }

    #[test]
    fn retry_after_opens_the_circuit_at_once() {
        let registry = ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1"))]);
        registry.record_send("a", &retryable(Some(Duration::from_secs(60))), FAST);
        assert!(!healthy(&registry, "a"));
    }

    #[test]
    fn put_replaces_in_place_and_keeps_health_while_holders_keep_the_old_one() {
        let registry =
            ProviderRegistry::new(vec![Arc::new(Fake("a", "p@1")), Arc::new(Fake("b", "q@1"))]);
        registry.record_send("a", &retryable(Some(Duration::from_secs(60))), FAST);
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
