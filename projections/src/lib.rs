//! Projectors: they follow the event log and keep read models, writing each batch and their
//! checkpoint in one transaction, so a read model is never ahead of or behind its checkpoint.

pub mod message_row;
pub mod message_views;
