//! The built-in mock provider, so Hermes runs and is tested end to end with no external account.
//!
//! Two halves that talk real HTTP to each other, as Hermes and a real provider do:
//! - [`server`]: the fake provider. It decides each send's outcome by recipient (like the
//!   providers' own test values) and POSTs signed delivery receipts to the attempt's callback URL,
//!   retrying them like a real provider.
//! - [`client`]: Hermes's [`Provider`](crate::provider::Provider) for it: sends attempts and
//!   verifies and normalizes the receipts.

pub mod client;
pub mod server;

pub use client::{MockProvider, SIGNATURE_HEADER, sign};
pub use server::{MockProviderConfig, MockProviderHandle, MockProviderStats, start};
