//! The plugin host: the mock provider's plugin as the well-behaved one (its behaviour is tested in
//! `mock_provider.rs`), and a misbehaving plugin that must cost the host nothing but a typed
//! error.

use axum::http::HeaderMap;
use bytes::Bytes;
use hermes_adapters::mock::{MockProviderConfig, MockProviderHandle, start};
use hermes_adapters::plugin::{
    AccountConfig, PluginEngine, PluginError, PluginLimits, PluginProvider, ReceiptStyle, Secret,
    StubRequest, StubResponse, builtin,
};
use hermes_adapters::{
    CallbackError, CallbackRequest, Provider, SendAccepted, SendError, SendRequest,
};
use hermes_domain::message::ChannelContent;
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use std::collections::HashMap;
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

struct Fixture {
    server: MockProviderHandle,
    engine: PluginEngine,
    plugin: PluginProvider,
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
    fixture_with(limits()).await
}

async fn fixture_with(limits: PluginLimits) -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = start(
        listener,
        MockProviderConfig {
            receipt_delay: Duration::from_millis(20),
            secret: SECRET.to_owned(),
        },
    )
    .await;
    let engine = PluginEngine::new(limits).unwrap();
    let plugin = engine
        .load(builtin::MOCK, mock_account(&server, SECRET))
        .await
        .unwrap();
    Fixture {
        server,
        engine,
        plugin,
    }
}

impl Fixture {
    async fn evil(&self, allow_private: bool) -> PluginProvider {
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
            .await
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
        Err(SendError::Rejected {
            error, retryable, ..
        }) => (error.code, retryable, took),
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
async fn an_endless_loop_is_stopped_by_the_deadline() {
    let f = fixture().await;
    let evil = f.evil(false).await;
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
    let evil = f.evil(false).await;
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
    let evil = f.evil(false).await;
    let (code, retryable, _) = evil_send(&evil, "oom").await;
    assert_eq!(code, "plugin_out_of_memory");
    assert!(retryable);
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn a_panic_is_a_typed_error() {
    let f = fixture().await;
    let evil = f.evil(false).await;
    let (code, retryable, _) = evil_send(&evil, "panic").await;
    assert_eq!(code, "plugin_panic");
    assert!(retryable);
    f.assert_host_still_works().await;
}

#[tokio::test]
async fn a_fetch_to_a_host_not_on_the_allow_list_is_denied() {
    let f = fixture().await;
    let evil = f.evil(true).await;
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
    let evil = f.evil(false).await;
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
    let allowed = f.evil(true).await;
    let (code, _, _) = evil_send(&allowed, &format!("fetch:{messages}")).await;
    assert_eq!(code, "fetched");
}

/// `https` URLs are fetched over TLS; a handshake that fails is a connect error (nothing was sent,
/// so the saga may fail over at once).
#[tokio::test]
async fn an_https_fetch_speaks_tls_and_a_failed_handshake_sends_nothing() {
    use tokio::io::AsyncReadExt;
    let f = fixture().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first_byte = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        byte[0] // the socket drops here: the handshake cannot finish
    });
    let evil = f.evil(true).await;
    let to = format!("fetch:https://127.0.0.1:{port}/messages");
    let result = evil
        .send(&request(Channel::Sms, &to, "http://127.0.0.1:9/cb"))
        .await;
    assert_eq!(
        first_byte.await.unwrap(),
        0x16,
        "the client opened with a TLS handshake record"
    );
    match result {
        Err(SendError::Rejected { error, .. }) => assert!(
            error.message.starts_with("Err(FetchError::Connect("),
            "expected a connect error, got {}",
            error.message
        ),
        other => panic!("expected the plugin's report, got {other:?}"),
    }
    f.assert_host_still_works().await;
}

/// A stubbed `fetch` (benchmarks) still enforces the account's allow-list, and answers only
/// what the account may reach.
#[tokio::test]
async fn a_fetch_stub_answers_allowed_hosts_only() {
    let engine = PluginEngine::new(limits())
        .unwrap()
        .with_fetch_stub(std::sync::Arc::new(|request: &StubRequest| StubResponse {
            status: if request.url.ends_with("/teapot") {
                418
            } else {
                200
            },
            headers: Vec::new(),
            body: Vec::new(),
        }));
    let evil = engine
        .load(
            builtin::EVIL,
            AccountConfig {
                name: "evil".to_owned(),
                allowed_hosts: vec!["api.example.com".to_owned()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let send = |to: &'static str| {
        let request = request(Channel::Sms, to, "http://127.0.0.1:9/cb");
        let evil = &evil;
        async move {
            match evil.send(&request).await {
                Err(SendError::Rejected { error, .. }) => (error.code, error.message),
                other => panic!("{to}: expected the plugin's report, got {other:?}"),
            }
        }
    };
    assert_eq!(
        send("fetch:https://api.example.com/teapot").await,
        ("fetched".to_owned(), "Ok(418)".to_owned())
    );
    let (code, _) = send("fetch:https://elsewhere.example.com/").await;
    assert_eq!(code, "plugin_denied");
}

#[tokio::test]
async fn misbehaving_parse_callback_is_a_malformed_callback() {
    let f = fixture().await;
    let evil = f.evil(false).await;
    for (what, kind) in [
        ("loop", "plugin_timeout"),
        ("oom", "plugin_out_of_memory"),
        ("panic", "plugin_panic"),
    ] {
        let started = Instant::now();
        let result = evil
            .parse_callback(&CallbackRequest {
                ids: None,
                method: http::Method::POST,
                url: format!("http://hermes.test/v1/webhooks/evil/{what}"),
                headers: HeaderMap::new(),
                body: Bytes::new(),
            })
            .await;
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
        .await
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

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn callback_to(what: &str) -> CallbackRequest {
    CallbackRequest {
        ids: None,
        method: http::Method::POST,
        url: format!("http://hermes.test/v1/webhooks/evil/{what}"),
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// A provider endpoint that answers only once released: a send fetching it holds its slot.
async fn held_endpoint() -> (String, tokio::sync::watch::Sender<bool>) {
    let (release, released) = tokio::sync::watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hold", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hold",
        axum::routing::get(move || {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                "released"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_callback_pool_answers_busy_and_leaves_sends_their_own_slots() {
    // 8 instances: 6 slots for sends, 1 for callbacks; a call waits 50 ms for a slot. The hog's
    // deadline (2 s) is far past that wait.
    let f = fixture_with(PluginLimits {
        max_instances: 8,
        slot_wait: Duration::from_millis(50),
        callback_timeout: Duration::from_secs(2),
        ..limits()
    })
    .await;
    let evil = std::sync::Arc::new(f.evil(false).await);
    // An endless callback holds the only callback slot until its deadline.
    let hog = tokio::spawn({
        let evil = evil.clone();
        async move { evil.parse_callback(&callback_to("loop")).await }
    });
    until("the hog never took the slot", || {
        f.engine.free_slots().callbacks == 0
    })
    .await;
    match evil.parse_callback(&callback_to("fine")).await {
        Err(CallbackError::Busy) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    // Sends have slots of their own.
    f.assert_host_still_works().await;
    assert!(matches!(
        hog.await.unwrap(),
        Err(CallbackError::Malformed(reason)) if reason.starts_with("plugin_timeout")
    ));
    assert_eq!(f.engine.free_slots().callbacks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_finds_no_slot_is_a_retryable_refusal_and_sends_nothing() {
    let f = fixture_with(PluginLimits {
        max_instances: 8,
        slot_wait: Duration::from_millis(50),
        send_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let evil = std::sync::Arc::new(f.evil(true).await);
    let (held, release) = held_endpoint().await;
    // Six sends wait on a provider that does not answer: every send slot is taken.
    let hogs: Vec<_> = (0..6)
        .map(|_| {
            let evil = evil.clone();
            let to = format!("fetch:{held}");
            tokio::spawn(async move {
                evil.send(&request(Channel::Sms, &to, "http://127.0.0.1:9/cb"))
                    .await
            })
        })
        .collect();
    until("the sends never took every slot", || {
        f.engine.free_slots().sends == 0
    })
    .await;
    let sent_before = f.server.stats().sends;
    match f
        .plugin
        .send(&request(
            Channel::Sms,
            "+15550101234",
            "http://127.0.0.1:9/cb",
        ))
        .await
    {
        Err(SendError::Rejected {
            error, retryable, ..
        }) => {
            assert_eq!(error.code, "plugin_busy");
            assert!(retryable);
        }
        other => panic!("expected plugin_busy, got {other:?}"),
    }
    assert_eq!(
        f.server.stats().sends,
        sent_before,
        "nothing reached the provider"
    );
    release.send_replace(true);
    for hog in hogs {
        // The evil plugin reports what its fetch got as a rejection.
        assert!(
            matches!(hog.await.unwrap(), Err(SendError::Rejected { error, .. }) if error.code == "fetched")
        );
    }
    assert_eq!(f.engine.free_slots().sends, 6);
    f.assert_host_still_works().await;
}
