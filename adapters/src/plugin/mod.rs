//! Provider plugins: providers as WebAssembly components, run by wasmtime.
//!
//! A plugin implements the world in `adapters/wit/provider.wit`: it exports `describe`, `send` and
//! `parse-callback`, and imports only what the host grants: `http-client.fetch`, `log`, `metric`,
//! `config` and the current time. Plugins are Rust crates under `adapters/plugins/`, built for
//! `wasm32-unknown-unknown` by `adapters/build.rs` and wrapped as components (no WASI).
//!
//! The host ([`PluginEngine`], [`PluginProvider`]) bounds every call:
//! - a fresh `Store` per call, instantiated from a pre-instantiated component with the pooling
//!   allocator;
//! - a wall-clock deadline enforced by epoch interruption (a ticker thread bumps the epoch every
//!   [`EPOCH_TICK`]; a guest that spins yields to the executor at each tick and is stopped at the
//!   deadline);
//! - a memory cap (`StoreLimits`, growth failure traps);
//! - `fetch` only to the account's allowed hosts, never to private, loopback or link-local
//!   addresses unless the account allows it, with a timeout and a response size cap
//!   ([`fetch`](self::fetch));
//! - credentials only through the plugin's own account config ([`Secret`] never prints), and
//!   redacted from the plugin's log lines.
//!
//! A misbehaving plugin (endless loop, memory bomb, panic, a request the host refuses) yields a
//! typed [`PluginError`], which [`PluginProvider`] reports as a provider failure.
//!
//! A plugin failure in `send` is a retryable rejection (or in doubt, once a request may have left),
//! which the [`ProviderRegistry`](crate::ProviderRegistry) counts against the account's health.

mod fetch;
mod host;
mod limits;

pub use fetch::{FetchStub, StubRequest, StubResponse, is_public_address};
pub use host::{FreeSlots, PluginEngine, PluginInfo, PluginProvider, ReceiptStyle};
pub use limits::{EPOCH_TICK, PluginLimits};

use hermes_domain::message::AttemptError;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::provider::{CallbackError, SendError};

/// The plugins built with Hermes (`adapters/plugins/*`), as components: one constant per plugin
/// (`MOCK`, `TWILIO`...) and [`builtin::ALL`]. `EVIL` misbehaves on purpose, for the host's tests.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

    /// The built-in plugin of that name (`mock`, `twilio`...). `evil` is not offered.
    pub fn by_name(name: &str) -> Option<&'static [u8]> {
        ALL.iter()
            .find(|(n, _)| *n == name && *n != "evil")
            .map(|(_, bytes)| *bytes)
    }
}

/// A configuration value. It never prints (`Debug` and `Display` show `<redacted>`): credentials
/// must not reach logs or events.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that hands it to the plugin.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// One provider account: what a plugin instance may see and reach.
#[derive(Debug, Clone, Default)]
pub struct AccountConfig {
    /// The account's name in Hermes (routing, webhooks, attempt events).
    pub name: String,
    /// Hosts `fetch` may reach: exact names (`api.example.com`, `127.0.0.1`) or `*.example.com`
    /// for any subdomain. Case-insensitive; the port is not checked.
    pub allowed_hosts: Vec<String>,
    /// Lets `fetch` reach private, loopback and link-local addresses (tests, sandboxes).
    pub allow_private: bool,
    /// What the plugin's `config` import returns: base URL, credentials...
    pub config: HashMap<String, Secret>,
}

/// How a plugin call failed: always a provider failure, never the host's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// Ran past its deadline (an endless loop, or too slow).
    #[error("the plugin ran past its {0:?} deadline")]
    Timeout(Duration),
    /// Tried to grow its memory past the cap.
    #[error("the plugin exceeded its memory cap of {0} bytes")]
    OutOfMemory(usize),
    /// Panicked (or aborted): an `unreachable` trap.
    #[error("the plugin panicked")]
    Panic,
    /// Any other trap (stack overflow, out-of-bounds access, a host call it may not make here).
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// Made a request the host refused (a host not on the allow-list, a private address).
    #[error("the plugin made a request the host refused: {0}")]
    Denied(String),
    /// No instance could be made for the call.
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// Every slot for calls of this kind stayed taken for the whole wait: nothing was run.
    #[error("every plugin slot for {0} stayed busy")]
    Busy(&'static str),
    /// Loading failed: not a valid component, not our world, or `describe` said nonsense.
    #[error("the plugin could not be loaded: {0}")]
    Load(String),
    /// Returned something Hermes cannot use (an id that is not a UUID...).
    #[error("the plugin returned something invalid: {0}")]
    Invalid(String),
}

impl PluginError {
    /// Short name, used in error codes (`plugin_<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Timeout(_) => "timeout",
            PluginError::OutOfMemory(_) => "out_of_memory",
            PluginError::Panic => "panic",
            PluginError::Trap(_) => "trap",
            PluginError::Denied(_) => "denied",
            PluginError::Instantiate(_) => "instantiate",
            PluginError::Busy(_) => "busy",
            PluginError::Load(_) => "load",
            PluginError::Invalid(_) => "invalid",
        }
    }

    /// As a send outcome. `request_left`: a `fetch` of this call may have reached the provider,
    /// so the message may be on its way and the attempt is in doubt, not safely retryable.
    pub fn into_send_error(self, request_left: bool) -> SendError {
        if request_left {
            SendError::InDoubt(format!(
                "plugin_{}: {self} after a request to the provider left",
                self.kind()
            ))
        } else {
            SendError::rejected(
                AttemptError::new(format!("plugin_{}", self.kind()), self.to_string()),
                true,
            )
        }
    }
}

impl From<PluginError> for CallbackError {
    fn from(err: PluginError) -> Self {
        match err {
            PluginError::Busy(_) => CallbackError::Busy,
            err => CallbackError::Malformed(format!("plugin_{}: {err}", err.kind())),
        }
    }
}
