//! What bounds a plugin call: time, memory, network.

use std::time::Duration;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// How often the epoch advances; a spinning guest yields to the executor this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Wall-clock budget of one `send`, `fetch` included.
    pub send_timeout: Duration,
    /// Budget of one `parse-callback` or `describe` (no network, runs on the caller's thread).
    pub callback_timeout: Duration,
    /// Budget of one `lookup-status` (a provider API call, `fetch` included). Short: it runs
    /// before a step's timeout moves the cascade on, and a lookup that fails only means the step
    /// times out as it would have without one.
    pub lookup_timeout: Duration,
    /// One `fetch`, connect to last byte (also never past the call's deadline).
    pub fetch_timeout: Duration,
    /// Largest response body a `fetch` returns.
    pub max_response_bytes: usize,
    /// Linear memory of one instance.
    pub max_memory_bytes: usize,
    /// Concurrent calls per engine (pool slots). Three quarters are for sends and an eighth for
    /// callbacks, so a flood of (unauthenticated) webhook calls can never take the slots sends
    /// need, nor sends those of receipts; the rest serves `describe` and status lookups.
    pub max_instances: u32,
    /// How long a call waits for a slot of its kind before it gives up (`plugin_busy`: a send is
    /// then refused retryably, having sent nothing; a callback is answered 503 so the provider
    /// retries it).
    pub slot_wait: Duration,
    /// Log lines a plugin may write per call; more are dropped.
    pub max_log_lines_per_call: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            send_timeout: Duration::from_secs(15),
            callback_timeout: Duration::from_millis(500),
            lookup_timeout: Duration::from_secs(3),
            fetch_timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            max_memory_bytes: 32 << 20,
            max_instances: 320,
            slot_wait: Duration::from_secs(1),
            max_log_lines_per_call: 32,
        }
    }
}

/// [`StoreLimits`] that also remembers whether it refused a growth, so a trap can be told apart
/// as out-of-memory.
pub(crate) struct CallLimiter {
    inner: StoreLimits,
    pub(crate) refused: bool,
}

impl CallLimiter {
    pub(crate) fn new(max_memory_bytes: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(max_memory_bytes)
                .instances(16)
                .tables(16)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            refused: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let answer = self.inner.memory_growing(current, desired, maximum);
        if !matches!(answer, Ok(true)) {
            self.refused = true;
        }
        answer
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl PluginLimits {
    /// Slots for sends (at least one).
    pub fn send_slots(&self) -> usize {
        (self.max_instances as usize * 3 / 4).max(1)
    }

    /// Slots for callbacks (at least one).
    pub fn callback_slots(&self) -> usize {
        (self.max_instances as usize / 8).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_and_callbacks_have_their_own_share_of_the_pool() {
        let default = PluginLimits::default();
        assert_eq!((default.send_slots(), default.callback_slots()), (240, 40));
        let tiny = PluginLimits {
            max_instances: 1,
            ..PluginLimits::default()
        };
        assert_eq!((tiny.send_slots(), tiny.callback_slots()), (1, 1));
    }
}
