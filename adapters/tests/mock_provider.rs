//! The mock provider end to end: a real mock server on 127.0.0.1, the `mock` plugin talking to it
//! (as Hermes does), and a small receiver standing in for Hermes's webhook endpoint that records receipts.
//!
//! Nothing here sleeps and hopes: every wait polls a condition with a deadline. Where a test shows
//! that a receipt never comes, it checks the server planned none and then sends a normal message
//! after it and waits for that one's receipt, which is due later than the silent one's would be.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hermes_adapters::mock::{
    MockProviderConfig, MockProviderHandle, SIGNATURE_HEADER, sign, start,
};
use hermes_adapters::plugin::{AccountConfig, PluginEngine, PluginLimits, PluginProvider, builtin};
use hermes_adapters::{
    CallbackError, CallbackRequest, LookupError, LookupRequest, Provider, Receipt, SendAccepted,
    SendError, SendRequest,
};
use hermes_domain::message::{AttemptError, ChannelContent, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

const SECRET: &str = "test-secret";
const RECEIPT_DELAY: Duration = Duration::from_millis(20);
const DEADLINE: Duration = Duration::from_secs(10);

/// One POST the receiver got, with what it answered.
#[derive(Debug, Clone)]
struct Hit {
    mode: String,
    answered: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Stands in for Hermes's webhook endpoint. `POST /{mode}/...`: `ok` answers 200, `flaky` answers
/// 503 to its first POST and 200 after, `down` always answers 503, `refuse` always answers 400.
#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    base_url: String,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            hits: Arc::default(),
            base_url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/{mode}/{*rest}", post(record))
            .with_state(receiver.hits.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self, mode: &str, message_id: MessageId, attempt_id: AttemptId) -> String {
        format!("{}/{mode}/{message_id}/{attempt_id}", self.base_url)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Receipts for one attempt that the receiver took (answered 2xx), in arrival order.
    fn taken(&self, attempt_id: AttemptId) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| {
                h.answered.is_success() && json_of(&h.body)["attempt_id"] == attempt_id.to_string()
            })
            .collect()
    }
}

async fn record(
    State(hits): State<Arc<Mutex<Vec<Hit>>>>,
    Path((mode, _rest)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut hits = hits.lock().unwrap();
    let earlier = hits.iter().filter(|h| h.body == body).count();
    let answered = match mode.as_str() {
        "flaky" if earlier == 0 => StatusCode::SERVICE_UNAVAILABLE,
        "down" => StatusCode::SERVICE_UNAVAILABLE,
        "refuse" => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    hits.push(Hit {
        mode,
        answered,
        headers,
        body,
    });
    answered
}

struct Fixture {
    server: MockProviderHandle,
    receiver: Receiver,
    provider: PluginProvider,
}

async fn fixture() -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = start(
        listener,
        MockProviderConfig {
            receipt_delay: RECEIPT_DELAY,
            secret: SECRET.to_owned(),
        },
    )
    .await;
    let provider = mock_plugin(&server.base_url(), SECRET).await;
    Fixture {
        server,
        receiver: Receiver::start().await,
        provider,
    }
}

fn content_for(channel: Channel) -> ChannelContent {
    match channel {
        Channel::Sms => ChannelContent::Sms {
            text: "hello".into(),
        },
        Channel::Whatsapp => ChannelContent::Whatsapp {
            text: "hello".into(),
            template: None,
        },
        Channel::Email => ChannelContent::Email {
            subject: "Hello".into(),
            text: Some("hello".into()),
            html: None,
        },
        Channel::Push => ChannelContent::Push {
            title: Some("Hello".into()),
            body: None,
            data: None,
        },
    }
}

impl Fixture {
    fn request(&self, channel: Channel, to: &str, mode: &str) -> SendRequest {
        let message_id = MessageId::new();
        let attempt_id = AttemptId::new();
        SendRequest {
            tenant_id: TenantId::new(),
            message_id,
            attempt_id,
            channel,
            to: to.to_owned(),
            content: content_for(channel),
            callback_url: self.receiver.url(mode, message_id, attempt_id),
        }
    }

    async fn send(
        &self,
        channel: Channel,
        to: &str,
    ) -> (SendRequest, Result<SendAccepted, SendError>) {
        self.send_with(channel, to, "ok").await
    }

    async fn send_with(
        &self,
        channel: Channel,
        to: &str,
        mode: &str,
    ) -> (SendRequest, Result<SendAccepted, SendError>) {
        let request = self.request(channel, to, mode);
        let result = self.provider.send(&request).await;
        (request, result)
    }

    /// Waits for `n` taken receipts of the request's attempt and parses them as Hermes would.
    async fn receipts(&self, request: &SendRequest, n: usize) -> Vec<Receipt> {
        let hits = wait_for(&format!("{n} receipt(s) for {}", request.to), || {
            let taken = self.receiver.taken(request.attempt_id);
            (taken.len() >= n).then_some(taken)
        })
        .await;
        assert_eq!(
            hits.len(),
            n,
            "more receipts than expected for {}",
            request.to
        );
        let mut parsed = Vec::new();
        for hit in &hits {
            let mut receipts = self
                .provider
                .parse_callback(&callback(request, hit))
                .await
                .unwrap()
                .receipts;
            assert_eq!(receipts.len(), 1);
            parsed.push(receipts.remove(0));
        }
        parsed
    }

    /// Shows that `silent` never gets a receipt: the server planned none, and a normal message sent
    /// after it gets its receipt (due later than the silent one's would have been) while the silent
    /// one still has none.
    async fn assert_never_receipted(&self, silent: &SendRequest) {
        assert_eq!(
            self.server.stats().receipts_scheduled,
            0,
            "{} had receipts planned",
            silent.to
        );
        let (sentinel, result) = self.send(Channel::Sms, "+15550101234").await;
        result.unwrap();
        self.receipts(&sentinel, 1).await;
        assert!(
            self.receiver.taken(silent.attempt_id).is_empty(),
            "{} got a receipt",
            silent.to
        );
    }
}

/// The `mock` plugin for an account pointed at `base_url`.
async fn mock_plugin(base_url: &str, secret: &str) -> PluginProvider {
    let engine = PluginEngine::new(PluginLimits::default()).unwrap();
    let account = AccountConfig {
        name: "mock".to_owned(),
        allowed_hosts: vec!["127.0.0.1".to_owned()],
        allow_private: true,
        config: [
            ("base_url".to_owned(), base_url.into()),
            ("secret".to_owned(), secret.into()),
        ]
        .into(),
    };
    engine.load(builtin::MOCK, account).await.unwrap()
}

fn callback(request: &SendRequest, hit: &Hit) -> CallbackRequest {
    CallbackRequest {
        ids: Some((request.message_id, request.attempt_id)),
        method: http::Method::POST,
        url: request.callback_url.clone(),
        headers: hit.headers.clone(),
        body: hit.body.clone(),
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Polls `check` every few milliseconds until it yields a value; panics after [`DEADLINE`].
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rejected(result: Result<SendAccepted, SendError>) -> (AttemptError, bool) {
    match result {
        Err(SendError::Rejected {
            error, retryable, ..
        }) => (error, retryable),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn accepted_id(result: Result<SendAccepted, SendError>) -> String {
    let id = result
        .expect("accepted")
        .provider_message_id
        .expect("a provider message id");
    assert!(id.starts_with("mock-"), "{id}");
    id
}

#[tokio::test]
async fn provider_is_named_mock_and_serves_every_channel() {
    let f = fixture().await;
    assert_eq!(f.provider.name(), "mock");
    assert_eq!(f.provider.channels(), Channel::ALL);
}

#[tokio::test]
async fn ordinary_sms_is_accepted_then_delivered_with_a_signed_receipt() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Sms, "+15551234567").await;
    let id = accepted_id(result);

    let receipts = f.receipts(&request, 1).await;
    assert_eq!(
        receipts[0],
        Receipt {
            message_id: request.message_id,
            attempt_id: request.attempt_id,
            status: ReceiptStatus::Delivered,
            provider_message_id: Some(id.clone()),
            error: None,
        }
    );

    // The wire format, field by field, as other crates' tests craft it.
    let hit = &f.receiver.taken(request.attempt_id)[0];
    assert_eq!(hit.mode, "ok");
    let body = json_of(&hit.body);
    assert_eq!(body["message_id"], request.message_id.to_string());
    assert_eq!(body["attempt_id"], request.attempt_id.to_string());
    assert_eq!(body["provider_message_id"], id);
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["error_code"], Value::Null);
    assert_eq!(body["error_message"], Value::Null);
    chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(hit.headers[SIGNATURE_HEADER], sign(SECRET, &hit.body));
    assert_eq!(hit.headers["content-type"], "application/json");
}

#[tokio::test]
async fn ordinary_email_and_push_are_delivered() {
    let f = fixture().await;
    for (channel, to) in [
        (Channel::Email, "ann@example.com"),
        (Channel::Push, "device-token-1"),
    ] {
        let (request, result) = f.send(channel, to).await;
        let id = accepted_id(result);
        let receipts = f.receipts(&request, 1).await;
        assert_eq!(receipts[0].status, ReceiptStatus::Delivered, "{to}");
        assert_eq!(
            receipts[0].provider_message_id.as_deref(),
            Some(id.as_str())
        );
    }
}

#[tokio::test]
async fn whatsapp_is_delivered_then_read() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Whatsapp, "+15551234567").await;
    accepted_id(result);
    let statuses: Vec<_> = f
        .receipts(&request, 2)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [ReceiptStatus::Delivered, ReceiptStatus::Read]);
}

#[tokio::test]
async fn phone_ending_0001_is_rejected_permanently_at_send() {
    for channel in [Channel::Sms, Channel::Whatsapp] {
        let f = fixture().await;
        let (request, result) = f.send(channel, "+15550000001").await;
        let (error, retryable) = rejected(result);
        assert_eq!(error.code, "invalid_recipient", "{channel}");
        assert!(!error.message.is_empty());
        assert!(!retryable, "{channel}");
        f.assert_never_receipted(&request).await;
    }
}

#[tokio::test]
async fn phone_ending_0009_gets_an_undelivered_receipt() {
    let f = fixture().await;
    for channel in [Channel::Sms, Channel::Whatsapp] {
        let (request, result) = f.send(channel, "+15550000009").await;
        accepted_id(result);
        let receipts = f.receipts(&request, 1).await;
        assert_eq!(receipts[0].status, ReceiptStatus::Failed, "{channel}");
        assert_eq!(
            receipts[0].error.as_ref().unwrap().code,
            "undelivered",
            "{channel}"
        );
    }
}

#[tokio::test]
async fn phone_ending_0008_is_accepted_and_never_receipted() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Sms, "+15550000008").await;
    accepted_id(result);
    f.assert_never_receipted(&request).await;
}

#[tokio::test]
async fn email_bounce_and_complaint_get_failed_receipts() {
    let f = fixture().await;
    for (to, code) in [
        ("bounce@simulator.test", "bounce"),
        ("complaint@simulator.test", "complaint"),
        ("bounce+label@simulator.test", "bounce"),
    ] {
        let (request, result) = f.send(Channel::Email, to).await;
        accepted_id(result);
        let receipts = f.receipts(&request, 1).await;
        assert_eq!(receipts[0].status, ReceiptStatus::Failed, "{to}");
        let error = receipts[0].error.as_ref().unwrap();
        assert_eq!(error.code, code, "{to}");
        assert!(!error.message.is_empty(), "{to}");
    }
}

#[tokio::test]
async fn email_silent_is_accepted_and_never_receipted() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Email, "silent@simulator.test").await;
    accepted_id(result);
    f.assert_never_receipted(&request).await;
}

#[tokio::test]
async fn email_suppressed_is_rejected_permanently_at_send() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Email, "suppressed@simulator.test").await;
    let (error, retryable) = rejected(result);
    assert_eq!(error.code, "suppressed");
    assert!(!retryable);
    f.assert_never_receipted(&request).await;
}

#[tokio::test]
async fn unregistered_push_token_is_rejected_permanently_like_fcm() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Push, "unregistered-device-42").await;
    let (error, retryable) = rejected(result);
    assert_eq!(error.code, "UNREGISTERED");
    assert!(!retryable);
    f.assert_never_receipted(&request).await;

    // The raw answer is FCM-like: 404 with the code in the error object.
    let body = json!({
        "message_id": MessageId::new(), "attempt_id": AttemptId::new(), "channel": "push",
        "to": "unregistered-x", "content": {"channel": "push", "title": "t", "body": null, "data": null},
        "callback_url": f.receiver.url("ok", MessageId::new(), AttemptId::new()),
    });
    let response = hermes_adapters::http::client()
        .post(format!("{}/messages", f.server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "UNREGISTERED"
    );
}

#[tokio::test]
async fn malformed_send_body_is_invalid_request_and_not_counted() {
    let f = fixture().await;
    let http = hermes_adapters::http::client();
    let url = format!("{}/messages", f.server.base_url());
    let good = json!({
        "message_id": "m", "attempt_id": "a", "channel": "sms", "to": "+15551234567",
        "content": {"channel": "sms", "text": "hi"},
        "callback_url": f.receiver.url("ok", MessageId::new(), AttemptId::new()),
    });
    let mut wrong_content = good.clone();
    wrong_content["content"] = json!({"channel": "whatsapp", "text": "hi"});
    let mut bad_callback = good.clone();
    bad_callback["callback_url"] = json!("not a url");
    let mut unknown_channel = good.clone();
    unknown_channel["channel"] = json!("pigeon");
    let mut missing_to = good.clone();
    missing_to.as_object_mut().unwrap().remove("to");

    let bodies = [
        b"{not json".to_vec(),
        serde_json::to_vec(&wrong_content).unwrap(),
        serde_json::to_vec(&bad_callback).unwrap(),
        serde_json::to_vec(&unknown_channel).unwrap(),
        serde_json::to_vec(&missing_to).unwrap(),
    ];
    for body in bodies {
        let response = http.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(&body));
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "invalid_request");
        assert!(answer["error"]["message"].is_string());
    }
    assert_eq!(f.server.stats().sends, 0);

    // The well-formed one is accepted, so the failures above are down to what was broken.
    let response = http.post(&url).json(&good).send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert!(
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .starts_with("mock-")
    );
}

#[tokio::test]
async fn stats_count_a_repeated_attempt_as_a_duplicate() {
    let f = fixture().await;
    let (once, result) = f.send(Channel::Sms, "+15551234567").await;
    accepted_id(result);
    let twice = f.request(Channel::Sms, "+15550000001", "ok");
    for _ in 0..2 {
        // Rejected sends count too: sending an attempt twice is the fault, whatever the answer.
        rejected(f.provider.send(&twice).await);
    }

    let stats = f.server.stats();
    assert_eq!(stats.sends, 3);
    assert_eq!(stats.attempts, 2);
    assert_eq!(stats.duplicates, [twice.attempt_id.to_string()]);
    assert_eq!(f.server.sends_for(&once.attempt_id.to_string()), 1);
    assert_eq!(f.server.sends_for(&twice.attempt_id.to_string()), 2);

    let over_http: Value = hermes_adapters::http::client()
        .get(format!("{}/stats", f.server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["sends"], 3);
    assert_eq!(over_http["attempts"], 2);
    assert_eq!(
        over_http["duplicates"],
        json!([twice.attempt_id.to_string()])
    );
}

#[tokio::test]
async fn receipt_answered_503_is_retried_and_arrives() {
    let f = fixture().await;
    let (request, result) = f.send_with(Channel::Sms, "+15551234567", "flaky").await;
    accepted_id(result);
    let receipts = f.receipts(&request, 1).await;
    assert_eq!(receipts[0].status, ReceiptStatus::Delivered);

    let answers: Vec<_> = f.receiver.hits().iter().map(|h| h.answered).collect();
    assert_eq!(answers, [StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK]);
    let hits = f.receiver.hits();
    assert_eq!(
        hits[0].body, hits[1].body,
        "a retry re-sends the same signed receipt"
    );
    // The receiver answered before the mock counted the answer: wait for the count.
    let stats = wait_for("the receipt to count as delivered", || {
        let s = f.server.stats();
        (s.receipts_delivered == 1).then_some(s)
    })
    .await;
    assert_eq!(stats.receipts_abandoned, 0);
}

#[tokio::test]
async fn receipt_answered_400_is_given_up_without_retry() {
    let f = fixture().await;
    let (_request, result) = f.send_with(Channel::Sms, "+15551234567", "refuse").await;
    accepted_id(result);
    wait_for("the receipt to be abandoned", || {
        (f.server.stats().receipts_abandoned == 1).then_some(())
    })
    .await;
    // Abandoned after exactly one try; nothing can follow once it is abandoned.
    assert_eq!(f.receiver.hits().len(), 1);
    assert_eq!(f.server.stats().receipts_delivered, 0);
}

#[tokio::test]
async fn receipt_whose_connection_fails_is_retried_and_arrives() {
    // A receiver that hangs up on its first connection without answering, then serves normally:
    // the first try is a transport failure, not an HTTP answer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let app = Router::new()
        .route("/{mode}/{*rest}", post(record))
        .with_state(hits.clone());
    tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        drop(first);
        axum::serve(listener, app).await.unwrap();
    });

    let f = fixture().await;
    let mut request = f.request(Channel::Sms, "+15551234567", "ok");
    request.callback_url = format!(
        "http://{addr}/ok/{}/{}",
        request.message_id, request.attempt_id
    );
    accepted_id(f.provider.send(&request).await);

    let hit = wait_for("the retried receipt", || {
        hits.lock().unwrap().first().cloned()
    })
    .await;
    let receipts = f
        .provider
        .parse_callback(&callback(&request, &hit))
        .await
        .map(|outcome| outcome.receipts)
        .unwrap();
    assert_eq!(receipts[0].status, ReceiptStatus::Delivered);
    wait_for("the receipt to count as delivered", || {
        (f.server.stats().receipts_delivered == 1).then_some(())
    })
    .await;
    assert_eq!(hits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn tampered_or_unsigned_receipts_are_refused() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Sms, "+15551234567").await;
    accepted_id(result);
    f.receipts(&request, 1).await;
    let hit = f.receiver.taken(request.attempt_id)[0].clone();
    let genuine = callback(&request, &hit);
    assert!(
        f.provider
            .parse_callback(&genuine)
            .await
            .map(|outcome| outcome.receipts)
            .is_ok()
    );

    // Body changed after signing.
    let mut tampered = genuine.clone();
    tampered.body = Bytes::from(
        String::from_utf8(hit.body.to_vec())
            .unwrap()
            .replace("delivered", "failed"),
    );
    assert_eq!(
        f.provider
            .parse_callback(&tampered)
            .await
            .map(|outcome| outcome.receipts),
        Err(CallbackError::InvalidSignature)
    );

    // A provider configured with another secret refuses the genuine receipt.
    let other = mock_plugin(&f.server.base_url(), "another-secret").await;
    assert_eq!(
        other
            .parse_callback(&genuine)
            .await
            .map(|outcome| outcome.receipts),
        Err(CallbackError::InvalidSignature)
    );

    // Missing, garbled and re-keyed signatures.
    let mut unsigned = genuine.clone();
    unsigned.headers.remove(SIGNATURE_HEADER);
    assert_eq!(
        f.provider
            .parse_callback(&unsigned)
            .await
            .map(|outcome| outcome.receipts),
        Err(CallbackError::InvalidSignature)
    );
    for bad in [
        "sha256=",
        "sha256=nothex",
        "md5=abcd",
        &sign("another-secret", &hit.body),
    ] {
        let mut garbled = genuine.clone();
        garbled
            .headers
            .insert(SIGNATURE_HEADER, bad.parse().unwrap());
        assert_eq!(
            f.provider
                .parse_callback(&garbled)
                .await
                .map(|outcome| outcome.receipts),
            Err(CallbackError::InvalidSignature),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_account_without_a_secret_refuses_every_receipt() {
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let body = serde_json::to_vec(&json!({
        "message_id": request.message_id, "attempt_id": request.attempt_id,
        "provider_message_id": "mock-1", "status": "delivered",
        "error_code": null, "error_message": null, "timestamp": "2026-01-01T00:00:00Z",
    }))
    .unwrap();
    // A forger signs with the empty key, which anyone can compute.
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, sign("", &body).parse().unwrap());
    let forged = CallbackRequest {
        ids: Some((request.message_id, request.attempt_id)),
        method: http::Method::POST,
        url: request.callback_url.clone(),
        headers,
        body: body.into(),
    };
    let keyless = mock_plugin(&f.server.base_url(), "").await;
    assert_eq!(
        keyless
            .parse_callback(&forged)
            .await
            .map(|outcome| outcome.receipts),
        Err(CallbackError::InvalidSignature)
    );
}

/// A receipt crafted with `sign`, as other crates' tests will.
fn crafted(request: &SendRequest, body: Value) -> CallbackRequest {
    let body = serde_json::to_vec(&body).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, sign(SECRET, &body).parse().unwrap());
    CallbackRequest {
        ids: Some((request.message_id, request.attempt_id)),
        method: http::Method::POST,
        url: request.callback_url.clone(),
        headers,
        body: body.into(),
    }
}

#[tokio::test]
async fn signed_but_malformed_receipts_are_refused() {
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let base = json!({
        "message_id": request.message_id, "attempt_id": request.attempt_id,
        "provider_message_id": "mock-1", "status": "delivered",
        "error_code": null, "error_message": null, "timestamp": "2026-01-01T00:00:00Z",
    });
    assert!(
        f.provider
            .parse_callback(&crafted(&request, base.clone()))
            .await
            .map(|outcome| outcome.receipts)
            .is_ok()
    );

    let mut unknown_status = base.clone();
    unknown_status["status"] = json!("exploded");
    let mut other_attempt = base.clone();
    other_attempt["attempt_id"] = json!(AttemptId::new());
    let mut other_message = base.clone();
    other_message["message_id"] = json!(MessageId::new());
    let mut not_a_uuid = base.clone();
    not_a_uuid["attempt_id"] = json!("attempt-1");
    for body in [
        unknown_status,
        other_attempt,
        other_message,
        not_a_uuid,
        json!([1, 2]),
    ] {
        assert!(
            matches!(
                f.provider
                    .parse_callback(&crafted(&request, body.clone()))
                    .await
                    .map(|outcome| outcome.receipts),
                Err(CallbackError::Malformed(_))
            ),
            "{body}"
        );
    }

    // Without ids in the URL the body's ids are taken as they are.
    let mut no_ids = crafted(&request, base.clone());
    no_ids.ids = None;
    let receipts = f
        .provider
        .parse_callback(&no_ids)
        .await
        .map(|outcome| outcome.receipts)
        .unwrap();
    assert_eq!(
        (receipts[0].message_id, receipts[0].attempt_id),
        (request.message_id, request.attempt_id)
    );
}

#[tokio::test]
async fn failed_receipt_without_details_gets_defaults() {
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let receipt = |status: &str| {
        json!({
            "message_id": request.message_id, "attempt_id": request.attempt_id,
            "provider_message_id": null, "status": status,
            "error_code": null, "error_message": null, "timestamp": "2026-01-01T00:00:00Z",
        })
    };
    let failed = f
        .provider
        .parse_callback(&crafted(&request, receipt("failed")))
        .await
        .map(|outcome| outcome.receipts)
        .unwrap();
    assert_eq!(failed[0].status, ReceiptStatus::Failed);
    assert_eq!(failed[0].error, Some(AttemptError::new("failed", "")));
    assert_eq!(failed[0].provider_message_id, None);
    let sent = f
        .provider
        .parse_callback(&crafted(&request, receipt("sent")))
        .await
        .map(|outcome| outcome.receipts)
        .unwrap();
    assert_eq!(
        (sent[0].status, sent[0].error.clone()),
        (ReceiptStatus::Sent, None)
    );
}

/// A stand-in provider that answers every send with one fixed status and body.
async fn fixed_answer(status: StatusCode, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/messages", post(move || async move { (status, body) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn client_classifies_provider_errors() {
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let cases = [
        (StatusCode::INTERNAL_SERVER_ERROR, "", "http_500", true),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":{"code":"overloaded","message":"later"}}"#,
            "overloaded",
            true,
        ),
        (StatusCode::TOO_MANY_REQUESTS, "slow down", "http_429", true),
        (StatusCode::REQUEST_TIMEOUT, "", "http_408", true),
        (StatusCode::FORBIDDEN, "", "http_403", false),
        (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"invalid_recipient","message":"no"}}"#,
            "invalid_recipient",
            false,
        ),
    ];
    for (status, body, code, retryable) in cases {
        let provider = mock_plugin(&fixed_answer(status, body).await, SECRET).await;
        let (error, got_retryable) = rejected(provider.send(&request).await);
        assert_eq!(
            (error.code.as_str(), got_retryable),
            (code, retryable),
            "{status}"
        );
    }

    // 2xx without a readable id is still accepted: the status decides.
    let provider = mock_plugin(&fixed_answer(StatusCode::ACCEPTED, "").await, SECRET).await;
    assert_eq!(
        provider.send(&request).await,
        Ok(SendAccepted {
            provider_message_id: None
        })
    );
}

#[tokio::test]
async fn connect_failure_is_a_retryable_rejection() {
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let base_url = f.server.base_url();
    f.server.shutdown().await;
    let provider = mock_plugin(&base_url, SECRET).await;
    let (error, retryable) = rejected(provider.send(&request).await);
    assert_eq!(error.code, "connect_failed");
    assert!(retryable);
}

#[tokio::test]
async fn connection_dropped_after_the_request_left_is_in_doubt() {
    // A provider that reads the request and hangs up without answering: it may have sent it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut seen = Vec::new();
            // Read up to the end of the JSON body, then close.
            while !seen.ends_with(b"}") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            drop(socket);
        }
    });
    let f = fixture().await;
    let request = f.request(Channel::Sms, "+15551234567", "ok");
    let provider = mock_plugin(&base, SECRET).await;
    match provider.send(&request).await {
        Err(SendError::InDoubt(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected in doubt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_receipt_that_keeps_failing_does_not_hold_up_the_others() {
    let f = fixture().await;
    let (stuck, result) = f.send_with(Channel::Sms, "+15551234567", "down").await;
    accepted_id(result);
    // Retried more than once, and still being retried...
    wait_for("the stuck receipt to be retried", || {
        let tries = f
            .receiver
            .hits()
            .iter()
            .filter(|h| json_of(&h.body)["attempt_id"] == stuck.attempt_id.to_string())
            .count();
        (tries >= 2 && f.server.stats().receipt_retries >= 2).then_some(())
    })
    .await;
    // ...while receipts of later sends go through.
    for _ in 0..3 {
        let (request, result) = f.send(Channel::Sms, "+15551234568").await;
        accepted_id(result);
        f.receipts(&request, 1).await;
    }
    assert!(f.receiver.taken(stuck.attempt_id).is_empty());
    assert_eq!(
        f.server.stats().receipts_abandoned,
        0,
        "still retrying, not given up"
    );
}

#[tokio::test]
async fn receipts_posted_while_the_receiver_is_down_arrive_once_it_is_up() {
    // Nothing listens at first: connection refused, as while Hermes restarts.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let f = fixture().await;
    let mut requests = Vec::new();
    for _ in 0..5 {
        let mut request = f.request(Channel::Sms, "+15551234567", "ok");
        request.callback_url = format!(
            "http://127.0.0.1:{port}/ok/{}/{}",
            request.message_id, request.attempt_id
        );
        accepted_id(f.provider.send(&request).await);
        requests.push(request);
    }
    wait_for("failed tries of the receipts", || {
        (f.server.stats().receipt_retries >= 5).then_some(())
    })
    .await;
    // The receiver comes up on that port.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let app = Router::new()
        .route("/{mode}/{*rest}", post(record))
        .with_state(hits.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    wait_for("every receipt", || {
        (f.server.stats().receipts_delivered == 5).then_some(())
    })
    .await;
    let hits = hits.lock().unwrap().clone();
    for request in &requests {
        let taken: Vec<_> = hits
            .iter()
            .filter(|h| json_of(&h.body)["attempt_id"] == request.attempt_id.to_string())
            .collect();
        assert_eq!(
            taken.len(),
            1,
            "one receipt per attempt, once it could arrive"
        );
        let receipts = f
            .provider
            .parse_callback(&callback(request, taken[0]))
            .await
            .unwrap()
            .receipts;
        assert_eq!(receipts[0].status, ReceiptStatus::Delivered);
    }
}

fn lookup_for(request: &SendRequest, provider_message_id: Option<String>) -> LookupRequest {
    LookupRequest {
        message_id: request.message_id,
        attempt_id: request.attempt_id,
        channel: request.channel,
        provider_message_id,
    }
}

#[tokio::test]
async fn the_status_lookup_answers_what_the_provider_knows_so_far() {
    let f = fixture().await;
    assert!(f.provider.info().status_lookup);
    let (request, result) = f.send(Channel::Sms, "+15551234567").await;
    let id = accepted_id(result);
    f.receipts(&request, 1).await;
    let receipt = f
        .provider
        .lookup_status(&lookup_for(&request, Some(id.clone())))
        .await
        .unwrap()
        .expect("a status");
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(
        (receipt.message_id, receipt.attempt_id),
        (request.message_id, request.attempt_id)
    );
    assert_eq!(receipt.provider_message_id, Some(id));
    // Without the provider's id (the attempt is in doubt): found by the attempt id.
    let by_attempt = f
        .provider
        .lookup_status(&lookup_for(&request, None))
        .await
        .unwrap()
        .expect("a status");
    assert_eq!(by_attempt.status, ReceiptStatus::Delivered);

    let (bounce, result) = f.send(Channel::Email, "bounce+lookup@example.com").await;
    let id = accepted_id(result);
    f.receipts(&bounce, 1).await;
    let failed = f
        .provider
        .lookup_status(&lookup_for(&bounce, Some(id)))
        .await
        .unwrap()
        .expect("a status");
    assert_eq!(failed.status, ReceiptStatus::Failed);
    assert_eq!(failed.error.map(|e| e.code).as_deref(), Some("bounce"));

    // Accepted but never receipted: no status to tell.
    let (silent, result) = f.send(Channel::Sms, "+15551230008").await;
    let id = accepted_id(result);
    assert_eq!(
        f.provider
            .lookup_status(&lookup_for(&silent, Some(id)))
            .await,
        Ok(None)
    );
    // Never sent: unknown to the provider.
    let never = f.request(Channel::Sms, "+15551234567", "ok");
    assert_eq!(
        f.provider.lookup_status(&lookup_for(&never, None)).await,
        Ok(None)
    );
    assert_eq!(
        f.provider
            .lookup_status(&lookup_for(&never, Some("mock-nonsense".into())))
            .await,
        Ok(None)
    );
}

#[tokio::test]
async fn a_mock_started_again_still_knows_what_its_previous_run_delivered() {
    let f = fixture().await;
    let (request, result) = f.send(Channel::Sms, "+15551234567").await;
    let id = accepted_id(result);
    f.receipts(&request, 1).await;
    f.server.shutdown().await;

    let again = start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockProviderConfig {
            receipt_delay: RECEIPT_DELAY,
            secret: SECRET.to_owned(),
        },
    )
    .await;
    let provider = mock_plugin(&again.base_url(), SECRET).await;
    let receipt = provider
        .lookup_status(&lookup_for(&request, Some(id)))
        .await
        .unwrap()
        .expect("a status");
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    // What it cannot know: an attempt id it never saw (in doubt, sent to the previous run).
    assert_eq!(
        provider.lookup_status(&lookup_for(&request, None)).await,
        Ok(None)
    );
}

#[tokio::test]
async fn a_plugin_without_the_lookup_export_loads_and_has_no_lookup() {
    // The vonage plugin is of the plain `provider` world.
    let engine = PluginEngine::new(PluginLimits::default()).unwrap();
    let vonage = engine
        .load(
            builtin::VONAGE,
            AccountConfig {
                name: "vonage".to_owned(),
                ..AccountConfig::default()
            },
        )
        .await
        .unwrap();
    assert!(!vonage.info().status_lookup);
    let request = SendRequest {
        tenant_id: TenantId::new(),
        message_id: MessageId::new(),
        attempt_id: AttemptId::new(),
        channel: Channel::Sms,
        to: "+15551234567".to_owned(),
        content: content_for(Channel::Sms),
        callback_url: "http://127.0.0.1:9/x".to_owned(),
    };
    assert_eq!(
        vonage
            .lookup_status(&lookup_for(&request, Some("x".into())))
            .await,
        Err(LookupError::Unsupported)
    );
}

#[tokio::test]
async fn a_lookup_when_the_provider_is_unreachable_fails_without_a_status() {
    let provider = mock_plugin("http://127.0.0.1:9", SECRET).await;
    let request = SendRequest {
        tenant_id: TenantId::new(),
        message_id: MessageId::new(),
        attempt_id: AttemptId::new(),
        channel: Channel::Sms,
        to: "+15551234567".to_owned(),
        content: content_for(Channel::Sms),
        callback_url: "http://127.0.0.1:9/x".to_owned(),
    };
    let answer = provider.lookup_status(&lookup_for(&request, None)).await;
    assert!(matches!(answer, Err(LookupError::Failed(_))), "{answer:?}");
}
