//! Hermes's pure core.
//!
//! Everything here is deterministic: no I/O, no async, no clock (callers pass `now`), no SQL.
//! The write side (`command/`) loads a [`message::Message`] by folding its events, asks it to
//! `decide` a command, and appends the events it returns; the read side folds the same events
//! with the same `apply`, so both sides agree on what a message's state is.

pub mod billing;
pub mod channel;
pub mod circuit;
pub mod enrichment;
pub mod ids;
pub mod message;
pub mod opt_out;
pub mod phone;
pub mod quiet_hours;
pub mod rate_limit;
pub mod routing;
pub mod sms_segments;
pub mod suppression;
pub mod tenant;
pub mod timers;
pub mod validation;
pub mod webhook;

pub use channel::{Channel, Until};
pub use ids::{AttemptId, MessageId, TenantId};
