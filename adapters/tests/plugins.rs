//! The plugin host: the mock provider as a plugin against the real mock server (the same outcomes
//! as the native client), and a misbehaving plugin that must cost the host nothing but a typed
//! error.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use bytes::Bytes;
use hermes_adapters::mock::{
    MockProvider, MockProviderConfig, MockProviderHandle, SIGNATURE_HEADER, sign, start,
};
use hermes_adapters::plugin::{
    AccountConfig, PluginEngine, PluginError, PluginLimits, PluginProvider, ReceiptStyle, Secret,
    builtin,
};
use hermes_adapters::{
    CallbackError, CallbackRequest, Provider, SendAccepted, SendError, SendRequest,
};
use hermes_domain::message::{ChannelContent, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SECRET: &str = "plugin-test-secret";
const SEND_TIMEOUT: Duration = Duration::from_millis(800);
const CALLBACK_TIMEOUT: Duration = Duration::from_millis(300);
/// Generous bound on how long any misbehaving call may take before its typed error.
const BOUND: Duration = Duration::from_secs(5);

fn limits() -> PluginLimits {
    PluginLimits {
        send_timeout: SEND_TIMEOUT,
        callback_timeout: CALLBACK_TIMEOUT,
        max_memory_bytes: 16 << 20,
        max_instances: 16,
        ..PluginLimits::default()
    }
}

/// The receipts a [`Receiver`] got: headers and raw body.
type Hits = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// Receipts the mock server POSTs to the callback URL.
#[derive(Clone, Default)]
struct Receiver {
    hits: Hits,
    base_url: String,
}

async fn record(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) {
    hits.lock().unwrap().push((headers, body));
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            hits: Arc::default(),
            base_url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/{*rest}", post(record))
            .with_state(receiver.hits.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    async fn wait_for_one(&self) -> (HeaderMap, Bytes) {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(hit) = self.hits.lock().unwrap().first().cloned() {
                return hit;
            }
            assert!(Instant::now() < deadline, "no receipt came");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct Fixture {
    server: MockProviderHandle,
    engine: PluginEngine,
    plugin: PluginProvider,
    native: MockProvider,
}

fn mock_account(server: &MockProviderHandle, secret: &str) -> AccountConfig {
    AccountConfig {
        name: "mock-plugin".to_owned(),
        allowed_hosts: vec!["127.0.0.1".to_owned()],
        // The mock server listens on loopback.
        allow_private: true,
        config: HashMap::from([
            ("base_url".to_owned(), Secret::new(server.base_url())),
            ("secret".to_owned(), Secret::new(secret)),
        ]),
    }
}

async fn fixture() -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = start(
        listener,
        MockProviderConfig {
            receipt_delay: Duration::from_millis(20),
            secret: SECRET.to_owned(),
        },
    )
    .await;
    let engine = PluginEngine::new(limits()).unwrap();
    let plugin = engine
        .load(builtin::MOCK, mock_account(&server, SECRET))
        .unwrap();
    let native = MockProvider::new(server.base_url(), SECRET.to_owned());
    Fixture {
        server,
        engine,
        plugin,
        native,
    }
}

impl Fixture {
    fn evil(&self, allow_private: bool) -> PluginProvider {
        self.engine
            .load(
                builtin::EVIL,
                AccountConfig {
                    name: "evil".to_owned(),
                    allowed_hosts: vec![
                        "127.0.0.1".to_owned(),
                        "localhost".to_owned(),
                        "169.254.169.254".to_owned(),
                    ],
                    allow_private,
                    config: HashMap::from([("token".to_owned(), Secret::new("evil-token"))]),
                },
            )
            .unwrap()
    }

    /// The good plugin still works: a normal send is accepted.
    async fn assert_host_still_works(&self) {
        let result = self
            .plugin
            .send(&request(
                Channel::Sms,
                "+15550101234",
                "http://127.0.0.1:9/cb",
            ))
            .await;
        assert!(
            matches!(
                result,
                Ok(SendAccepted {
                    provider_message_id: Some(_)
                })
            ),
            "the good plugin failed after a bad one: {result:?}"
        );
    }
}

fn request(channel: Channel, to: &str, callback_base: &str) -> SendRequest {
    let message_id = MessageId::new();
    let attempt_id = AttemptId::new();
    SendRequest {
        tenant_id: TenantId::new(),
        message_id,
        attempt_id,
        channel,
        to: to.to_owned(),
        content: match channel {
            Channel::Email => ChannelContent::Email {
                subject: "Hello".into(),
                text: Some("hello".into()),
                html: None,
            },
            _ => ChannelContent::Sms {
                text: "hello".into(),
            },
        },
        callback_url: format!("{callback_base}/{message_id}/{attempt_id}"),
    }
}

/// Sends with the evil plugin; returns the rejection's code and retryability, and how long it took.
async fn evil_send(evil: &PluginProvider, to: &str) -> (String, bool, Duration) {
    let started = Instant::now();
    let result = evil
        .send(&request(Channel::Sms, to, "http://127.0.0.1:9/cb"))
        .await;
    let took = started.elapsed();
    assert!(took < BOUND, "{to}: took {took:?}");
    match result {
        Err(SendError::Rejected { error, retryable }) => (error.code, retryable, took),
        other => panic!("{to}: expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn mock_plugin_describes_itself() {
    let f = fixture().await;
    let info = f.plugin.info();
    assert_eq!(info.name, "mock");
    assert_eq!(info.receipt_style, ReceiptStyle::Callback);
    assert_eq!(f.plugin.channels(), &Channel::ALL);
    assert_eq!(f.plugin.name(), "mock-plugin");
}

#[tokio::test]
async fn mock_plugin_sends_with_the_same_outcomes_as_the_native_client() {
    let f = fixture().await;
    let cases = [
        (Channel::Sms, "+15550101234"),
        (Channel::Whatsapp, "+15550101234"),
        (Channel::Email, "someone@example.test"),
        (Channel::Sms, "+15550000001"),
        (Channel::Email, "a0001@x.test"),
    ];
    for (channel, to) in cases {
        let before = f.server.stats().sends;
        let plugin = f
            .plugin
            .send(&request(channel, to, "http://127.0.0.1:9/cb"))
            .await;
        let by_plugin = f.server.stats().sends - before;
        let native = f
            .native
            .send(&request(channel, to, "http://127.0.0.1:9/cb"))
            .await;
        // The server saw the plugin's request exactly as it saw the native client's.
        assert_eq!(
            by_plugin,
            f.server.stats().sends - before - by_plugin,
            "{to}"
        );
        match (&plugin, &native) {
            (Ok(p), Ok(n)) => {
                assert!(p.provider_message_id.is_some(), "{to}: {plugin:?}");
                assert!(n.provider_message_id.is_some(), "{to}: {native:?}");
            }
            (Err(p), Err(n)) => assert_eq!(p, n, "{to}"),
            _ => panic!("{to}: plugin {plugin:?}, native {native:?}"),
        }
    }
    // The permanent rejection, spelled out.
    match f
        .plugin
        .send(&request(
            Channel::Sms,
            "+15550000001",
            "http://127.0.0.1:9/cb",
        ))
        .await
    {
        Err(SendError::Rejected { error, retryable }) => {
            assert_eq!(error.code, "invalid_recipient");
            assert!(!retryable);
        }
        other => panic!("expected a permanent rejection, got {other:?}"),
    }
    assert!(f.plugin.metrics()["sends_accepted"] >= 3.0);
}

#[tokio::test]
async fn mock_plugin_verifies_and_parses_receipts_like_the_native_client() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let request = request(Channel::Sms, "+15550101234", &receiver.base_url);
    f.plugin.send(&request).await.unwrap();
    let (headers, body) = receiver.wait_for_one().await;
    let callback = CallbackRequest {
        ids: Some((request.message_id, request.attempt_id)),
        url: request.callback_url.clone(),
        headers,
        body,
    };

    let receipts = f.plugin.parse_callback(&callback).unwrap();
    assert_eq!(receipts, f.native.parse_callback(&callback).unwrap());
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].attempt_id, request.attempt_id);
    assert_eq!(receipts[0].status, ReceiptStatus::Delivered);

    // Tampered body: the signature no longer matches.
    let mut tampered = callback.clone();
    let mut body = tampered.body.to_vec();
    let at = body.iter().position(|b| *b == b'd').unwrap();
    body[at] = b'D';
    tampered.body = body.into();
    assert_eq!(
        f.plugin.parse_callback(&tampered),
        Err(CallbackError::InvalidSignature)
    );
    // No signature at all.
    let mut unsigned = callback.clone();
    unsigned.headers.remove(SIGNATURE_HEADER);
    assert_eq!(
        f.plugin.parse_callback(&unsigned),
        Err(CallbackError::InvalidSignature)
    );
    // Signed, but for another attempt than the URL's.
    let mut mismatched = callback.clone();
    mismatched.ids = Some((request.message_id, AttemptId::new()));
    assert!(matches!(
        f.plugin.parse_callback(&mismatched),
        Err(CallbackError::Malformed(_))
    ));
    // A failed receipt, signed the way the server signs.
    let failed = serde_json::to_vec(&serde_json::json!({
        "message_id": request.message_id,
        "attempt_id": request.attempt_id,
        "provider_message_id": "p-1",
        "status": "failed",
        "error_code": "undelivered",
        "error_message": "gone",
        "timestamp": "2026-01-01T00:00:00Z",
    }))
    .unwrap();
    let mut signed = callback.clone();
    signed
        .headers
        .insert(SIGNATURE_HEADER, sign(SECRET, &failed).parse().unwrap());
    signed.body = failed.into();
    let plugin = f.plugin.parse_callback(&signed).unwrap();
    assert_eq!(plugin, f.native.parse_callback(&signed).unwrap());
    assert_eq!(plugin[0].error.as_ref().unwrap().code, "undelivered");

    // The same receipt is refused by an account with another secret.
    let other = f
        .engine
        .load(builtin::MOCK, mock_account(&f.server, "another-secret"))
        .unwrap();
    assert_eq!(
        other.parse_callback(&callback),
        Err(CallbackError::InvalidSignature)
    );
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_deadline() {
    let f = fixture().await;
    let evil = f.evil(false);
    let (code, retryable, took) = evil_send(&evil, "loop").await;
    assert_eq!(code, "plugin_timeout");
    assert!(retryable, "nothing left the host: safe to fail over");
    assert!(took >= SEND_TIMEOUT, "stopped after {took:?}");
    f.assert_host_still_works().await;
    // The same plugin serves the next call.
    assert!(
        evil.send(&request(Channel::Sms, "fine", "http://x"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_endless_loop_does_not_starve_other_calls() {
    let f = fixture().await;
    let evil = f.evil(false);
    // Both on this test's single-threaded runtime: the spinning guest must yield.
    let (spun, good) = tokio::join!(evil_send(&evil, "loop"), async {
        let started = Instant::now();
        let result = f
            .plugin
            .send(&request(
                Channel::Sms,
                "+15550101234",
                "http://127.0.0.1:9/cb",
            ))
            .await;
        (result, started.elapsed())
    });
    assert_eq!(spun.0, "plugin_timeout");
    assert!(good.0.is_ok(), "{:?}", good.0);
    assert!(
        good.1 < SEND_TIMEOUT,
        "the good call waited for the loop: {:?}",
        good.1
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_cap() {
    let f = fixture().await;
    let evil = f.evil(false);
    let (code, retryable, _) = evil_send(&evil, "oom").await;
    assert_eq!(code, "plugin_out_of_memory");
    assert!(retryable);
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn a_panic_is_a_typed_error() {
    let f = fixture().await;
    let evil = f.evil(false);
    let (code, retryable, _) = evil_send(&evil, "panic").await;
    assert_eq!(code, "plugin_panic");
    assert!(retryable);
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn a_fetch_to_a_host_not_on_the_allow_list_is_denied() {
    let f = fixture().await;
    let evil = f.evil(true);
    let (code, retryable, _) = evil_send(&evil, "fetch:http://example.com/").await;
    assert_eq!(code, "plugin_denied");
    assert!(retryable);
    let (code, _, _) = evil_send(&evil, "fetch:http://127.0.0.1.nip.io/").await;
    assert_eq!(code, "plugin_denied");
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn a_fetch_to_a_private_address_is_denied_unless_the_account_allows_it() {
    let f = fixture().await;
    let messages = format!("{}/messages", f.server.base_url());
    let by_name = messages.replace("127.0.0.1", "localhost");
    let evil = f.evil(false);
    for url in [
        messages.as_str(),
        by_name.as_str(),
        "http://169.254.169.254/latest/meta-data/",
    ] {
        let (code, retryable, _) = evil_send(&evil, &format!("fetch:{url}")).await;
        assert_eq!(code, "plugin_denied", "{url}");
        assert!(retryable, "{url}");
    }
    assert_eq!(
        f.server.stats().sends,
        0,
        "a refused fetch reached the server"
    );
    f.assert_host_still_works().await;

    // The same request from an account that allows private addresses goes through (the mock server
    // answers a GET on /messages with 405; the evil plugin reports it as a rejection `fetched`).
    let allowed = f.evil(true);
    let (code, _, _) = evil_send(&allowed, &format!("fetch:{messages}")).await;
    assert_eq!(code, "fetched");
}

#[tokio::test]
async fn misbehaving_parse_callback_is_a_malformed_callback() {
    let f = fixture().await;
    let evil = f.evil(false);
    for (what, kind) in [
        ("loop", "plugin_timeout"),
        ("oom", "plugin_out_of_memory"),
        ("panic", "plugin_panic"),
    ] {
        let started = Instant::now();
        let result = evil.parse_callback(&CallbackRequest {
            ids: None,
            url: format!("http://hermes.test/v1/webhooks/evil/{what}"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        });
        assert!(started.elapsed() < BOUND);
        match result {
            Err(CallbackError::Malformed(reason)) => {
                assert!(reason.starts_with(kind), "{what}: {reason}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn garbage_is_refused_at_load() {
    let engine = PluginEngine::new(limits()).unwrap();
    let err = engine
        .load(
            b"not wasm",
            AccountConfig {
                name: "x".to_owned(),
                ..AccountConfig::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, PluginError::Load(_)), "{err:?}");
}

#[tokio::test]
async fn credentials_never_print() {
    let f = fixture().await;
    let account = mock_account(&f.server, SECRET);
    assert!(!format!("{account:?}").contains(SECRET));
    assert!(!format!("{:?}", f.plugin).contains(SECRET));
    assert_eq!(Secret::new(SECRET).to_string(), "<redacted>");
    assert_eq!(Secret::new(SECRET).expose(), SECRET);
}
