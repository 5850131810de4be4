//! Hermes's integration tests: one binary, each test against its own fresh Postgres database
//! and its own Hermes on port 0 (see `harness`).

mod harness;

mod accept_batch;
mod ack;
mod admin;
mod api;
mod cascade;
mod characters;
mod contract;
mod crash;
mod event_store;
mod metrics;
mod provider_cascade;
mod providers;
