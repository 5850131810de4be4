//! A bulkhead per provider account: at most [`PER_ACCOUNT`] of the saga's workers call one account
//! at a time. An account whose calls take their full deadline (a provider that hangs) then holds
//! that many workers and no more; the rest serve the other accounts' messages. A message whose
//! account is full waits in the window, without a dispatch recorded (nothing is in doubt because
//! of the wait) and without holding a worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Calls in flight per account: three quarters of the saga's workers (`super::CONCURRENCY`).
pub const PER_ACCOUNT: usize = super::CONCURRENCY * 3 / 4;

#[derive(Default)]
pub struct Bulkheads {
    accounts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Bulkheads {
    fn semaphore(&self, account: &str) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().expect("bulkheads lock poisoned");
        accounts
            .entry(account.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_ACCOUNT)))
            .clone()
    }

    /// Whether the account has no room now (a cheap look before loading the message).
    pub fn is_full(&self, account: &str) -> bool {
        self.semaphore(account).available_permits() == 0
    }

    /// A place for one call to the account, if it has room; the call holds it until it returns.
    pub fn try_enter(&self, account: &str) -> Option<OwnedSemaphorePermit> {
        self.semaphore(account).try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_holds_at_most_its_share_and_others_are_unaffected() {
        let b = Bulkheads::default();
        let held: Vec<_> = (0..PER_ACCOUNT)
            .map(|_| b.try_enter("slow").expect("room"))
            .collect();
        assert!(b.is_full("slow"));
        assert!(b.try_enter("slow").is_none());
        assert!(!b.is_full("fast"));
        assert!(b.try_enter("fast").is_some());
        drop(held);
        assert!(b.try_enter("slow").is_some());
    }
}
