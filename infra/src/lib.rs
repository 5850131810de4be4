//! Infrastructure: the Postgres event store and what lives beside it (subscriptions, timers,
//! tenants and API keys, idempotency keys), the Kafka transport, configuration helpers and shared
//! HTTP plumbing.

pub mod content_dedup;
pub mod db;
pub mod event_chain;
pub mod event_store;
pub mod http;
pub mod idempotency;
pub mod kafka;
pub mod log_integrity;
pub mod parked;
pub mod plugin_uploads;
pub mod provider_accounts;
pub mod rate_limit;
pub mod secret;
pub mod subscription;
pub mod suppressions;
pub mod tenants;
pub mod timers;
pub mod trace_context;
pub mod webhooks;

pub use event_store::{AppendError, EventMetadata, NewEvent, StoredEvent};
pub use secret::Secret;
