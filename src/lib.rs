//! The `hermes` binary's library half: wiring the crates into a running server ([`app`]), and
//! the operator commands ([`audit`], [`bench`], [`tenant_cli`]). `main.rs` is only the CLI.

pub mod app;
pub mod audit;
pub mod bench;
pub mod config;
pub mod http;
pub mod telemetry;
pub mod tenant_cli;
pub mod traces;
