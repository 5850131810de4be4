//! The write side: command handling, the command API (messages, cancel, provider receipts),
//! the cascade saga that calls providers, the timer poller, and reconciliation (asking a provider
//! before a step's timeout gives up on an attempt).

pub mod accept_batcher;
pub mod api;
pub mod command_batcher;
pub mod handler;
pub mod reconcile;
pub mod saga;
pub mod timer_poller;

pub use handler::{CommandError, CommandHandler};
