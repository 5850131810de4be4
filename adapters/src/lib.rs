//! Provider adapters.
//!
//! [`provider::Provider`] is the one interface every provider account implements; providers run
//! as WebAssembly plugins ([`plugin::PluginProvider`], the host in [`plugin`]). [`registry`] holds
//! the accounts Hermes routes to, swappable at run time, with their health. [`mock`] is the
//! built-in mock provider's server: a real HTTP service that decides outcomes by recipient and
//! sends signed receipts back; Hermes talks to it through the `mock` plugin.

pub mod http;
pub mod mock;
pub mod plugin;
pub mod provider;
pub mod registry;
pub mod tenant_error;

pub use provider::{
    CallbackError, CallbackOutcome, CallbackReply, CallbackRequest, LookupError, LookupRequest,
    Provider, Receipt, SendAccepted, SendError, SendRequest,
};
pub use registry::{AccountTerms, ProviderRegistry};
