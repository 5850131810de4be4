//! Native TLS (issue 13): the API over HTTPS from PEM files, a renewed certificate served without
//! a restart, a renewal that cannot be used refused while the current certificate keeps serving,
//! and the expiry metric the alert reads.

use crate::harness::{TestApp, fresh_database, server_args};
use hermes::app::{self, Roles};
use hermes_infra::http::tls::{EXPIRY_METRIC, RELOADS_METRIC};
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the test servers check their certificate files.
const RELOAD_MS: u64 = 100;
const WITHIN: Duration = Duration::from_secs(10);

/// A self-signed certificate for 127.0.0.1 and localhost, valid until `not_after` (y, m, d).
struct Cert {
    pem: String,
    key_pem: String,
    der: Vec<u8>,
    not_after: i64,
}

fn self_signed((y, m, d): (i32, u8, u8)) -> Cert {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::DnsName("localhost".try_into().unwrap()),
        rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
    ];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        not_after: params.not_after.unix_timestamp(),
    }
}

struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("hermes-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            dir,
        }
    }

    /// Writes each file whole (a rename), as a renewal tool does.
    fn write(&self, cert_pem: &str, key_pem: &str) {
        for (path, content) in [(&self.key, key_pem), (&self.cert, cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, content).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn client_config(trusted: &[&Cert]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(CertificateDer::from(c.der.clone())).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client that trusts only `trusted`.
fn https_client(trusted: &[&Cert]) -> reqwest::Client {
    hermes_adapters::http::client_builder()
        .tls_backend_preconfigured(client_config(trusted))
        .build()
        .unwrap()
}

/// The certificate the server presents to a new connection.
async fn served_cert(addr: std::net::SocketAddr, trusted: &[&Cert]) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(trusted)))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("a TLS handshake with a trusted certificate");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A metric of this server's certificate file, from its `/metrics`.
async fn metric(
    client: &reqwest::Client,
    app: &TestApp,
    name: &str,
    cert: &Path,
    extra: &str,
) -> Option<f64> {
    let text = client
        .get(format!("{}/metrics", app.app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name}{{cert=\"{}\"{extra}}} ", cert.display());
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

async fn spawn_tls(files: &Files) -> TestApp {
    TestApp::spawn_with(|args| {
        args.tls_cert_file = Some(files.cert.clone());
        args.tls_key_file = Some(files.key.clone());
        args.tls_reload_ms = RELOAD_MS;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls_and_a_renewed_certificate_is_served_without_a_restart() {
    let files = Files::new();
    let old = self_signed((2030, 1, 1));
    files.write(&old.pem, &old.key_pem);
    let app = spawn_tls(&files).await;
    assert!(
        app.app.base_url.starts_with("https://"),
        "{}",
        app.app.base_url
    );

    // HTTPS with the certificate; a plain-HTTP request gets no answer.
    let client = https_client(&[&old]);
    let r = client
        .get(format!("{}/healthz", app.app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain = hermes_adapters::http::client()
        .get(format!("http://{}/healthz", app.app.addr))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    assert_eq!(served_cert(app.app.addr, &[&old]).await, old.der);
    assert_eq!(
        metric(&client, &app, EXPIRY_METRIC, &files.cert, "").await,
        Some(old.not_after as f64)
    );

    // The certificate is renewed in place: new connections get the new one, the metric follows.
    let new = self_signed((2031, 6, 1));
    files.write(&new.pem, &new.key_pem);
    let both = https_client(&[&old, &new]);
    let deadline = Instant::now() + WITHIN;
    while served_cert(app.app.addr, &[&old, &new]).await != new.der {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&both, &app, EXPIRY_METRIC, &files.cert, "").await,
        Some(new.not_after as f64)
    );
    assert!(metric(&both, &app, RELOADS_METRIC, &files.cert, ",result=\"ok\"").await >= Some(1.0));
    // A client that trusts only the new certificate gets through.
    let r = https_client(&[&new])
        .get(format!("{}/healthz", app.app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_cannot_be_used_is_refused_and_the_current_certificate_keeps_serving() {
    let files = Files::new();
    let good = self_signed((2030, 1, 1));
    files.write(&good.pem, &good.key_pem);
    let app = spawn_tls(&files).await;
    let client = https_client(&[&good]);
    let failed = || {
        metric(
            &client,
            &app,
            RELOADS_METRIC,
            &files.cert,
            ",result=\"failed\"",
        )
    };

    let other = self_signed((2032, 1, 1));
    for (what, cert_pem, key_pem) in [
        ("not PEM", "garbage".to_owned(), good.key_pem.clone()),
        (
            "another certificate's key",
            other.pem.clone(),
            good.key_pem.clone(),
        ),
    ] {
        let before = failed().await.unwrap_or(0.0);
        files.write(&cert_pem, &key_pem);
        let deadline = Instant::now() + WITHIN;
        while failed().await.unwrap_or(0.0) <= before {
            assert!(
                Instant::now() < deadline,
                "{what}: the failed reload is not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            served_cert(app.app.addr, &[&good]).await,
            good.der,
            "{what}"
        );
        assert_eq!(
            metric(&client, &app, EXPIRY_METRIC, &files.cert, "").await,
            Some(good.not_after as f64),
            "{what}"
        );
    }
}

#[tokio::test]
async fn hermes_refuses_to_start_with_tls_files_it_cannot_use() {
    let files = Files::new();
    let cert = self_signed((2030, 1, 1));
    let other = self_signed((2030, 1, 1));
    let missing = files.dir.join("missing.key");
    let garbage = files.dir.join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let cases: [(&str, Option<&Path>, Option<&Path>, &str); 4] = [
        (
            "a cert without its key",
            Some(&files.cert),
            None,
            "TLS needs both HERMES_TLS_CERT_FILE",
        ),
        (
            "a missing key file",
            Some(&files.cert),
            Some(&missing),
            "cannot read the TLS key",
        ),
        (
            "a key that is not PEM",
            Some(&files.cert),
            Some(&garbage),
            "holds no private key",
        ),
        (
            "another certificate's key",
            Some(&files.cert),
            Some(&files.key),
            "is not the key of the certificate",
        ),
    ];
    files.write(&cert.pem, &other.key_pem);
    let database_url = fresh_database().await;
    for (what, cert_file, key_file, wanted) in cases {
        let mut args = server_args(&database_url);
        args.tls_cert_file = cert_file.map(Path::to_path_buf);
        args.tls_key_file = key_file.map(Path::to_path_buf);
        let err = match app::start(&args, Roles::all()).await {
            Ok(_) => panic!("{what}: Hermes started"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains(wanted), "{what}: {err}");
    }
}
