//! The Message aggregate: one delivery request and its cascade.
//!
//! - [`spec`]: what the tenant asked for (recipient, content, cascade steps).
//! - [`events`]: the facts the aggregate records.
//! - [`stored`]: the stored JSON of those facts, versioned, converted explicitly.
//! - [`state`]: the state folded from those facts (`apply`).
//! - [`decide`]: commands and the decisions the aggregate takes on them.
//! - [`observe`]: what decisions show the operator (fallbacks, dispatch waits, receipt times).
//! - [`reconcile`]: which attempt a step's timeout asks its provider about first.

pub mod decide;
pub mod events;
pub mod observe;
pub mod reconcile;
pub mod spec;
pub mod state;
pub mod stored;

pub use decide::{DomainError, MessageCommand, SendOutcome, TimerKind};
pub use events::{AttemptError, MessageEvent, ReceiptStatus};
pub use spec::{CascadeStep, ChannelContent, Content, MessageSpec, Recipient, WhatsappTemplate};
pub use state::{Attempt, AttemptStatus, Message, MessageStatus};

#[cfg(test)]
mod tests;
