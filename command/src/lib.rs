//! The write side: command handling, the command API (messages, cancel, provider receipts),
//! the cascade saga that calls providers, the timer poller, reconciliation (asking a provider
//! before a step's timeout gives up on an attempt), the provider accounts served (hot swap), and
//! the operators' admin API, and the dispatch backlog that refuses new messages under overload.

pub mod accept_batcher;
pub mod admin;
pub mod api;
pub mod backlog;
pub mod command_batcher;
pub mod handler;
pub mod provider_source;
pub mod reconcile;
pub mod saga;
pub mod suppression_lookups;
pub mod timer_poller;
pub mod webhooks;

pub use handler::{CommandError, CommandHandler};
