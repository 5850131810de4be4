//! Shared by the provider plugin tests: the providers' official specifications, and Prism, the
//! spec-driven mock server that checks each request a plugin makes against them.
//!
//! Each test file is its own binary and declares `mod support;`; not every binary uses everything.
#![allow(dead_code)]

pub mod prism;

use std::path::PathBuf;
use std::sync::Arc;

use hermes_adapters::plugin::{AccountConfig, PluginEngine, PluginLimits, PluginProvider, Secret};

/// The repository's root (the main workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("adapters/ has a parent")
        .to_path_buf()
}

/// The providers' specifications (`provider-specs/`, see its SOURCES.md): `HERMES_PROVIDER_SPECS`,
/// else `../shared/provider-specs` next to the repository, else `/work/shared/provider-specs`.
pub fn specs_dir() -> PathBuf {
    let candidates = std::env::var_os("HERMES_PROVIDER_SPECS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo_root().join("../shared/provider-specs"),
            PathBuf::from("/work/shared/provider-specs"),
        ]);
    for dir in candidates {
        if dir.join("SOURCES.md").is_file() {
            return dir;
        }
    }
    panic!(
        "the providers' specifications were not found: set HERMES_PROVIDER_SPECS to the \
         provider-specs directory"
    )
}

/// One spec file, e.g. `spec("twilio/twilio_api_v2010.json")`.
pub fn spec(relative: &str) -> PathBuf {
    let path = specs_dir().join(relative);
    assert!(path.is_file(), "no spec at {}", path.display());
    path
}

/// A plugin engine with the default limits.
pub fn engine() -> PluginEngine {
    PluginEngine::new(PluginLimits::default()).expect("the plugin engine starts")
}

/// An account for `name` that may reach the local test servers, with the given config.
pub fn local_account(name: &str, config: &[(&str, &str)]) -> AccountConfig {
    AccountConfig {
        name: name.to_owned(),
        allowed_hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        allow_private: true,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
            .collect(),
    }
}

/// Loads a built-in plugin for a local test account.
pub async fn load(bytes: &[u8], name: &str, config: &[(&str, &str)]) -> Arc<PluginProvider> {
    Arc::new(
        engine()
            .load(bytes, local_account(name, config))
            .await
            .unwrap_or_else(|err| panic!("plugin {name} loads: {err}")),
    )
}
