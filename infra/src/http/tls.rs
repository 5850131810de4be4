//! Native TLS for the API: a certificate chain and its key from PEM files, read again while
//! Hermes runs so a renewed certificate (cert-manager, certbot, a mounted Secret) is served
//! without a restart.
//!
//! The files are compared by content, not by modification time: a Kubernetes Secret volume swaps
//! a symlink, and certbot may keep the times. A renewal that cannot be used (unreadable, not PEM,
//! a key that does not match) is refused and the current certificate keeps serving; the failure
//! is logged and counted. Providers post receipts to this endpoint, so an expired certificate
//! stops them: `hermes_tls_certificate_expiry_timestamp_seconds` says when, for the alert.

use anyhow::{Context, anyhow};
use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// The gauge: the serving certificate's `notAfter`, in seconds since the Unix epoch, labelled
/// `cert` with the certificate file's path.
pub const EXPIRY_METRIC: &str = "hermes_tls_certificate_expiry_timestamp_seconds";
/// The counter of reloads, by `cert` and `result` (`ok`, `failed`).
pub const RELOADS_METRIC: &str = "hermes_tls_reloads_total";

/// Where the certificate chain (leaf first) and its private key are, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate the API serves, swapped when its files change.
pub struct ServingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents the current certificate was made from.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Reads the files; an error says which file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let (cert_pem, key_pem) = read(&files)?;
        let (key, not_after) = certified_key(&files, &cert_pem, &key_pem)?;
        metrics::gauge!(EXPIRY_METRIC, "cert" => cert_label(&files)).set(not_after as f64);
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new((cert_pem, key_pem)),
        }))
    }

    /// The acceptor for the server loop: HTTP/1.1 over TLS 1.2 or 1.3, with this certificate.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .context("ring supports the default TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the files again and swaps in what changed; `Ok(false)` when nothing did. On an
    /// error the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let (cert_pem, key_pem) = read(&self.files)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let (key, not_after) = certified_key(&self.files, &cert_pem, &key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        *loaded = (cert_pem, key_pem);
        metrics::gauge!(EXPIRY_METRIC, "cert" => cert_label(&self.files)).set(not_after as f64);
        Ok(true)
    }

    /// Checks the files every `every` until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            match self.reload() {
                Ok(false) => {}
                Ok(true) => {
                    metrics::counter!(RELOADS_METRIC, "cert" => cert_label(&self.files), "result" => "ok").increment(1);
                    tracing::info!(cert = %self.files.cert.display(), "serving the renewed TLS certificate");
                }
                Err(err) => {
                    metrics::counter!(RELOADS_METRIC, "cert" => cert_label(&self.files), "result" => "failed").increment(1);
                    tracing::error!(
                        error = format!("{err:#}"),
                        "the TLS certificate's files changed but cannot be used; the current certificate keeps serving"
                    );
                }
            }
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn cert_label(files: &TlsFiles) -> String {
    files.cert.display().to_string()
}

fn read(files: &TlsFiles) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cert = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read the TLS certificate {}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .with_context(|| format!("cannot read the TLS key {}", files.key.display()))?;
    Ok((cert, key))
}

/// The chain and key as rustls serves them, and the leaf's `notAfter` (Unix seconds).
fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<(CertifiedKey, i64)> {
    let cert_path = files.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the TLS certificate {cert_path} is not PEM: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| anyhow!("the TLS certificate {cert_path} holds no certificate"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow!("the TLS certificate {cert_path} cannot be parsed: {e}"))?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        anyhow!(
            "the TLS key {} holds no private key: {e}",
            files.key.display()
        )
    })?;
    let signing = any_supported_type(&key)
        .map_err(|e| anyhow!("the TLS key {} cannot sign: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        anyhow!(
            "the TLS key {} is not the key of the certificate {cert_path}",
            files.key.display()
        )
    })?;
    Ok((certified, not_after))
}
