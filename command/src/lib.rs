//! The write side: command handling, the command API (messages, cancel, provider receipts),
//! the cascade saga that calls providers, and the timer poller.

pub mod accept_batcher;
pub mod api;
pub mod command_batcher;
pub mod handler;
pub mod saga;
pub mod timer_poller;

pub use handler::{CommandError, CommandHandler};
