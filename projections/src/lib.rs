//! Projectors: they follow the event log and keep read models, writing each batch and their
//! checkpoint in one transaction, so a read model is never ahead of or behind its checkpoint. They
//! follow the Postgres log, or Kafka when it is configured ([`kafka`]).

pub mod kafka;
pub mod message_row;
pub mod message_views;
pub mod suppressions;
pub mod webhook_outbox;
