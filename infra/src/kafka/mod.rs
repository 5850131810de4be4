//! The Kafka transport (when `KAFKA_BROKERS` is set): the relay streams the event log to a topic
//! keyed by stream id, and the saga and the projectors consume it in consumer groups, so that
//! worker processes share the work by partition. Without Kafka, everything tails the Postgres log
//! (`crate::subscription`).
//!
//! - [`config`]: topic, partitions, client settings;
//! - [`record`]: the record format (key, value, headers);
//! - [`relay`]: log to topic, the checkpoint moving only after the broker's acks;
//! - [`stream`]: a consumer on its own thread, with the rebalance handshake that keeps two workers
//!   from acting on one message at once;
//! - [`progress`]: per-partition commit points for consumers that finish records out of order;
//! - [`admin`]: `hermes kafka init` and the readiness probe.

pub mod admin;
pub mod config;
pub mod progress;
pub mod record;
pub mod relay;
pub mod stream;

pub use config::KafkaConfig;
pub use stream::{Delivery, KafkaStream, Record};
