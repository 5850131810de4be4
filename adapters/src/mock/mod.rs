//! The built-in mock provider, so Hermes runs and is tested end to end with no external account.
//!
//! [`server`] is the fake provider: a real HTTP service that decides each send's outcome by
//! recipient (like the providers' own test values) and POSTs signed delivery receipts to the
//! attempt's callback URL, retrying them like a real provider. Hermes talks to it through the
//! `mock` provider plugin (`adapters/plugins/mock`), exactly as it talks to real providers.

pub mod server;
pub mod signature;

pub use server::{MockProviderConfig, MockProviderHandle, MockProviderStats, start};
pub use signature::{SIGNATURE_HEADER, sign};
