//! Provider adapters.
//!
//! [`provider::Provider`] is the one interface every provider implements (the built-in mock today,
//! the wasmtime plugins next). [`mock`] is the built-in mock provider: a real HTTP server that
//! decides outcomes by recipient and sends signed receipts back, plus the client that talks to it.

pub mod mock;
pub mod provider;

pub use provider::{
    CallbackError, CallbackRequest, Provider, ProviderRegistry, Receipt, SendAccepted, SendError,
    SendRequest,
};
