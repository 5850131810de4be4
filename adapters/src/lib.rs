//! Provider adapters.
//!
//! [`provider::Provider`] is the one interface every provider implements (the built-in mock, and
//! [`plugin::PluginProvider`] for providers running as WebAssembly plugins). [`mock`] is the
//! built-in mock provider: a real HTTP server that decides outcomes by recipient and sends signed
//! receipts back, plus the client that talks to it. [`plugin`] is the plugin host.

pub mod mock;
pub mod plugin;
pub mod provider;

pub use provider::{
    CallbackError, CallbackRequest, Provider, ProviderRegistry, Receipt, SendAccepted, SendError,
    SendRequest,
};
