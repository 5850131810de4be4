//! Hermes's integration tests: one binary, each test against its own fresh Postgres database
//! and its own Hermes on port 0 (see `harness`).

mod front_door;
mod harness;

mod accept_batch;
mod ack;
mod admin;
mod api;
mod api_keys;
mod cascade;
mod causation;
mod characters;
mod contract;
mod crash;
mod dedup;
mod downtime;
mod early_refusal;
mod event_store;
mod kafka;
mod kafka_backlog;
mod kafka_crash;
mod metrics;
mod parked;
mod provider_blip;
mod provider_cascade;
mod providers;
mod rate_limits;
mod read_model;
mod receipt_binding;
mod saga_backlog;
mod saga_independence;
mod sealed_accounts;
mod secrets_argv;
mod send_rate;
mod server_limits;
mod smart_router;
mod snapshots;
mod suppressions;
mod tenant_api;
mod tenant_errors;
mod tenants;
mod timer_clock;
mod traceparent;
mod traces;
mod verify;
mod webhooks;
