//! Outbound HTTP clients. reqwest is built with `rustls-no-provider` (TLS on ring, like sqlx,
//! without aws-lc's C build), so a client must be given its TLS setup: `reqwest::Client::new()`
//! would panic on its first use. Every client in Hermes, and in its tests, starts from
//! [`client_builder`].

use std::sync::{Arc, LazyLock};

/// rustls on ring, trusting the Mozilla root certificates (not the machine's store, so Hermes
/// trusts the same servers everywhere). Built once; each client gets a copy.
pub fn tls_config() -> rustls::ClientConfig {
    static CONFIG: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    });
    CONFIG.clone()
}

/// A reqwest client builder with Hermes's TLS setup.
#[allow(clippy::disallowed_methods)] // the one place that may
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls_config())
}

/// A client with Hermes's TLS setup and reqwest's defaults otherwise.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("a client with a preconfigured TLS backend builds")
}
