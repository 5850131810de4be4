//! The mock provider itself: a real HTTP server that plays an SMS/email/push/WhatsApp provider.
//!
//! It is a separate HTTP service (not an in-process fake) so that Hermes exercises exactly the code
//! paths a real provider does: a network send that can be refused, time out or fail to connect, and
//! delivery receipts that arrive later, signed, on Hermes's public webhook endpoint, retried the way
//! real providers retry them.
//!
//! Outcomes are decided by the recipient, like the providers' own test values (Twilio's magic
//! numbers, SES's mailbox simulator, FCM's error codes), so a test or a demo picks an outcome just
//! by choosing an address:
//!
//! | channel | recipient | send answer | receipts |
//! |---|---|---|---|
//! | sms, whatsapp | ends with `0001` | 400 `invalid_recipient` | none |
//! | sms, whatsapp | ends with `0009` | 202 | `failed` (`undelivered`) |
//! | sms, whatsapp | ends with `0008` | 202 | none, ever |
//! | sms, whatsapp | ends with `0006` | none: the request hangs (5 min), so the caller's deadline ends it | none |
//! | email | local part `bounce` | 202 | `failed` (`bounce`) |
//! | email | local part `complaint` | 202 | `failed` (`complaint`) |
//! | email | local part `silent` | 202 | none, ever |
//! | email | local part `suppressed` | 400 `suppressed` | none |
//! | push | token starts with `unregistered` | 404 `UNREGISTERED` | none |
//! | push | token starts with `silent` | 202 | none, ever (as FCM: only the app can acknowledge) |
//! | any | anything else | 202 `{"id":"mock-<uuid>"}` | `delivered` after `receipt_delay`; WhatsApp also `read` after twice that |
//!
//! Email local parts may carry a `+label` (`bounce+42@example.com`), as SES's simulator allows, so
//! concurrent tests can use distinct addresses with the same outcome.
//!
//! Receipts the callback URL does not take (no connection, a timeout, 5xx, 408, 429) are retried
//! with exponential backoff and jitter for up to ten minutes, each receipt on its own (one that
//! keeps failing never holds up another).
//!
//! Like a real provider's Message resource, `GET /messages/{id}` answers a message's current
//! status (`queued` until its first receipt is due, then that receipt's status), and
//! `GET /attempts/{attempt_id}` finds a message by the attempt it was sent for. The status is
//! derived from the provider message id itself, which encodes the message's fate and when it was
//! accepted: a mock started again (the one embedded in `hermes dev` dies with it) still answers
//! for the messages its previous run accepted, as a provider that outlives Hermes would.

use crate::mock::signature::{SIGNATURE_HEADER, sign};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use hermes_domain::Channel;
use hermes_domain::message::ChannelContent;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// First wait before re-sending a receipt the receiver did not take.
const RECEIPT_BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between two tries of one receipt.
const RECEIPT_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// How long a receipt is retried before the provider gives up on it, as real providers do
/// (they retry for minutes to hours; ten minutes rides out a Hermes restart or deploy).
const RECEIPT_RETRY_FOR: Duration = Duration::from_secs(600);
/// Hermes's webhook endpoint is local and fast; a receipt POST slower than this is retried.
const RECEIPT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RECEIPT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts whose provider message id `GET /attempts/{id}` remembers (the oldest are forgotten).
const REMEMBERED_ATTEMPTS: usize = 100_000;

/// How the mock provider behaves.
#[derive(Debug, Clone)]
pub struct MockProviderConfig {
    /// Time between accepting a send and its `delivered` (or failure) receipt. WhatsApp's `read`
    /// receipt comes after twice this. Short in tests, a few seconds in demos so the cascade is
    /// visible.
    pub receipt_delay: Duration,
    /// Key for the HMAC-SHA256 signature on receipts (`X-Mock-Signature`); Hermes's
    /// [`MockProvider`](crate::mock::MockProvider) must be given the same one.
    pub secret: String,
}

/// Counters for what the mock provider saw, so tests can prove Hermes never sent an attempt twice
/// and wait until every receipt is out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockProviderStats {
    /// Every well-formed `POST /messages`, accepted or rejected.
    pub sends: u64,
    /// Distinct attempt ids among them.
    pub attempts: u64,
    /// Attempt ids sent more than once (sorted): a double send, which Hermes must never do.
    pub duplicates: Vec<String>,
    /// Receipts planned by accepted sends (a silent recipient plans none).
    pub receipts_scheduled: u64,
    /// Receipts the callback URL answered with 2xx.
    pub receipts_delivered: u64,
    /// Tries of a receipt that were not taken (no connection, a timeout, 5xx, 408, 429) and are
    /// retried.
    #[serde(default)]
    pub receipt_retries: u64,
    /// Receipts given up on: a 3xx/4xx other than 408/429, or ten minutes of failures. Receipts
    /// still pending at shutdown are in neither counter.
    pub receipts_abandoned: u64,
}

/// A running mock provider. Dropping it (or [`shutdown`](Self::shutdown)) stops the server and
/// abandons receipts not yet delivered, as a provider that went away would.
#[derive(Debug)]
pub struct MockProviderHandle {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl MockProviderHandle {
    /// `http://127.0.0.1:PORT`: what [`MockProvider::new`](crate::mock::MockProvider::new) takes.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same numbers as `GET /stats`.
    pub fn stats(&self) -> MockProviderStats {
        self.state.stats()
    }

    /// How many times one attempt id was sent.
    pub fn sends_for(&self, attempt_id: &str) -> u64 {
        let sends = self.state.sends.lock().expect("stats lock poisoned");
        sends.get(attempt_id).copied().unwrap_or(0)
    }

    /// How many times anything was sent to one recipient (`to`), whatever the attempt.
    ///
    /// Counting by attempt id ([`Self::sends_for`]) cannot see a step sent twice under two
    /// attempts: a second attempt for the same step has a new attempt id. A test that gives each
    /// message, and each step of it, a recipient of its own catches that here.
    pub fn sends_to(&self, to: &str) -> u64 {
        let sends_to = self.state.sends_to.lock().expect("stats lock poisoned");
        sends_to.get(to).copied().unwrap_or(0)
    }

    /// Recipients sent to more than once (sorted), under one attempt id or several: with one
    /// recipient per message and step (see [`Self::sends_to`]), a step the provider got twice.
    pub fn destinations_sent_twice(&self) -> Vec<String> {
        let sends_to = self.state.sends_to.lock().expect("stats lock poisoned");
        let mut twice: Vec<String> = sends_to
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(to, _)| to.clone())
            .collect();
        twice.sort();
        twice
    }

    /// Stops accepting connections, lets requests in flight finish, and abandons pending receipts.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for MockProviderHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Serves the mock provider on `listener` in a spawned task.
///
/// Taking a bound listener (rather than an address) lets callers bind `127.0.0.1:0` and learn the
/// port before anything is sent, with no race for the port.
///
/// # Panics
/// If the listener has no local address (it is always bound, so this does not happen).
pub async fn start(
    listener: tokio::net::TcpListener,
    config: MockProviderConfig,
) -> MockProviderHandle {
    let addr = listener
        .local_addr()
        .expect("a bound listener has a local address");
    let (stop, stop_rx) = watch::channel(false);
    let state = Arc::new(ServerState {
        http: receipt_client(),
        config,
        stop: stop_rx.clone(),
        sends: Mutex::new(HashMap::new()),
        sends_to: Mutex::new(HashMap::new()),
        attempts: Mutex::default(),
        receipts_scheduled: AtomicU64::new(0),
        receipts_delivered: AtomicU64::new(0),
        receipt_retries: AtomicU64::new(0),
        receipts_abandoned: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/messages", post(send_message))
        .route("/messages/{id}", get(get_message))
        .route("/attempts/{attempt_id}", get(get_attempt))
        .route("/stats", get(get_stats))
        .with_state(state.clone());
    let mut signal = stop_rx;
    let server = tokio::spawn(async move {
        let stopped = async move {
            // Err means the handle is gone: stop as well.
            let _ = signal.wait_for(|stop| *stop).await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %err, "mock provider server failed");
        }
    });
    MockProviderHandle {
        addr,
        state,
        stop,
        server: Some(server),
    }
}

fn receipt_client() -> reqwest::Client {
    crate::http::client_builder()
        .timeout(RECEIPT_REQUEST_TIMEOUT)
        .connect_timeout(RECEIPT_CONNECT_TIMEOUT)
        // A webhook is answered where it was sent; following a redirect would turn the POST into
        // a GET. The mock and Hermes are local: never route them through an environment proxy.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("a plain-HTTP reqwest client always builds")
}

#[derive(Debug)]
struct ServerState {
    config: MockProviderConfig,
    http: reqwest::Client,
    /// Becomes `true` (or closes) when the handle stops the server; receipt tasks watch it.
    stop: watch::Receiver<bool>,
    /// Sends per attempt id.
    sends: Mutex<HashMap<String, u64>>,
    /// Sends per recipient (`to`): a step sent twice under two attempt ids shows here, not in
    /// `sends`.
    sends_to: Mutex<HashMap<String, u64>>,
    /// Provider message ids of accepted attempts, for `GET /attempts/{id}`.
    attempts: Mutex<RememberedAttempts>,
    receipts_scheduled: AtomicU64,
    receipts_delivered: AtomicU64,
    receipt_retries: AtomicU64,
    receipts_abandoned: AtomicU64,
}

impl ServerState {
    fn stats(&self) -> MockProviderStats {
        let sends = self.sends.lock().expect("stats lock poisoned");
        let mut duplicates: Vec<String> = sends
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect();
        duplicates.sort();
        MockProviderStats {
            sends: sends.values().sum(),
            attempts: sends.len() as u64,
            duplicates,
            receipts_scheduled: self.receipts_scheduled.load(Ordering::SeqCst),
            receipts_delivered: self.receipts_delivered.load(Ordering::SeqCst),
            receipt_retries: self.receipt_retries.load(Ordering::SeqCst),
            receipts_abandoned: self.receipts_abandoned.load(Ordering::SeqCst),
        }
    }
}

/// Attempt id -> provider message id, bounded: the oldest are forgotten first.
#[derive(Debug, Default)]
struct RememberedAttempts {
    ids: HashMap<String, String>,
    order: VecDeque<String>,
}

impl RememberedAttempts {
    fn insert(&mut self, attempt_id: String, provider_message_id: String) {
        if self.ids.len() >= REMEMBERED_ATTEMPTS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        if self
            .ids
            .insert(attempt_id.clone(), provider_message_id)
            .is_none()
        {
            self.order.push_back(attempt_id);
        }
    }
}

/// The `POST /messages` body. Ids are opaque strings to the provider: it only echoes them.
#[derive(Debug, Deserialize)]
struct SendBody {
    message_id: String,
    attempt_id: String,
    channel: Channel,
    to: String,
    content: ChannelContent,
    callback_url: String,
}

/// The receipt body POSTed to the callback URL.
#[derive(Debug, Clone, Serialize)]
struct ReceiptBody<'a> {
    message_id: &'a str,
    attempt_id: &'a str,
    provider_message_id: &'a str,
    status: &'static str,
    error_code: Option<&'static str>,
    error_message: Option<&'static str>,
    timestamp: String,
}

/// One receipt the provider will send, `after` this long from acceptance.
#[derive(Debug, Clone, Copy)]
struct PlannedReceipt {
    after: Duration,
    status: &'static str,
    error: Option<(&'static str, &'static str)>,
}

/// What happens to an accepted message. It is written into the provider message id, so the
/// status of any message this provider accepted can be told from its id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delivered,
    /// Delivered, then read after twice the delay (WhatsApp).
    Read,
    Undelivered,
    Bounce,
    Complaint,
    /// No receipt, ever.
    Silent,
}

impl Fate {
    const ALL: [Fate; 6] = [
        Fate::Delivered,
        Fate::Read,
        Fate::Undelivered,
        Fate::Bounce,
        Fate::Complaint,
        Fate::Silent,
    ];

    fn letter(self) -> char {
        match self {
            Fate::Delivered => 'd',
            Fate::Read => 'r',
            Fate::Undelivered => 'u',
            Fate::Bounce => 'b',
            Fate::Complaint => 'c',
            Fate::Silent => 's',
        }
    }

    fn receipts(self, delay: Duration) -> Vec<PlannedReceipt> {
        let failed = |code, message| {
            vec![PlannedReceipt {
                after: delay,
                status: "failed",
                error: Some((code, message)),
            }]
        };
        let delivered = PlannedReceipt {
            after: delay,
            status: "delivered",
            error: None,
        };
        match self {
            Fate::Delivered => vec![delivered],
            Fate::Read => vec![
                delivered,
                PlannedReceipt {
                    after: delay * 2,
                    status: "read",
                    error: None,
                },
            ],
            Fate::Undelivered => failed("undelivered", "the carrier could not deliver the message"),
            Fate::Bounce => failed("bounce", "the recipient's mail server rejected the message"),
            Fate::Complaint => failed("complaint", "the recipient marked the message as spam"),
            Fate::Silent => Vec::new(),
        }
    }
}

/// A provider message id: `mock-<fate letter>-<accepted at, Unix ms>-<delay ms>-<uuid>`.
fn provider_message_id(fate: Fate, accepted_at_ms: i64, delay: Duration) -> String {
    format!(
        "mock-{}-{accepted_at_ms}-{}-{}",
        fate.letter(),
        delay.as_millis(),
        uuid::Uuid::new_v4()
    )
}

/// The fate, acceptance time (Unix ms) and receipt delay a provider message id encodes.
fn parse_provider_message_id(id: &str) -> Option<(Fate, i64, Duration)> {
    let mut parts = id.strip_prefix("mock-")?.splitn(4, '-');
    let letter = parts.next()?;
    let fate = Fate::ALL
        .into_iter()
        .find(|f| letter.len() == 1 && letter.starts_with(f.letter()))?;
    let accepted_at_ms = parts.next()?.parse().ok()?;
    let delay = Duration::from_millis(parts.next()?.parse().ok()?);
    uuid::Uuid::parse_str(parts.next()?).ok()?;
    Some((fate, accepted_at_ms, delay))
}

/// The status the provider reports for a message at `now_ms`: the last receipt due by then.
fn status_at(fate: Fate, accepted_at_ms: i64, delay: Duration, now_ms: i64) -> StatusBody {
    let elapsed = Duration::from_millis(u64::try_from(now_ms - accepted_at_ms).unwrap_or(0));
    let due = fate
        .receipts(delay)
        .into_iter()
        .take_while(|r| r.after <= elapsed)
        .last();
    match due {
        Some(r) => StatusBody {
            status: r.status,
            error_code: r.error.map(|(code, _)| code),
            error_message: r.error.map(|(_, message)| message),
        },
        None => StatusBody {
            status: "queued",
            error_code: None,
            error_message: None,
        },
    }
}

#[derive(Debug, Serialize)]
struct StatusBody {
    status: &'static str,
    error_code: Option<&'static str>,
    error_message: Option<&'static str>,
}

/// What the provider does with one send.
#[derive(Debug)]
enum Outcome {
    Reject {
        status: StatusCode,
        code: &'static str,
        message: &'static str,
    },
    Accept(Fate),
    /// A provider that takes the request and never answers: the caller's deadline ends the call,
    /// which leaves the attempt in doubt.
    Hang,
}

/// How long a hanging send is held before the mock gives up on it (far past any caller's deadline).
const HANG_FOR: Duration = Duration::from_secs(300);

fn decide(channel: Channel, to: &str) -> Outcome {
    let failed = |fate| Outcome::Accept(fate);
    match channel {
        Channel::Sms | Channel::Whatsapp => {
            if to.ends_with("0001") {
                Outcome::Reject {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_recipient",
                    message: "the number is not a valid mobile number",
                }
            } else if to.ends_with("0009") {
                failed(Fate::Undelivered)
            } else if to.ends_with("0008") {
                Outcome::Accept(Fate::Silent)
            } else if to.ends_with("0006") {
                Outcome::Hang
            } else if channel == Channel::Whatsapp {
                Outcome::Accept(Fate::Read)
            } else {
                Outcome::Accept(Fate::Delivered)
            }
        }
        Channel::Email => {
            let local = to.split('@').next().unwrap_or("");
            let local = local.split('+').next().unwrap_or("").to_ascii_lowercase();
            match local.as_str() {
                "bounce" => failed(Fate::Bounce),
                "complaint" => failed(Fate::Complaint),
                "silent" => Outcome::Accept(Fate::Silent),
                "suppressed" => Outcome::Reject {
                    status: StatusCode::BAD_REQUEST,
                    code: "suppressed",
                    message: "the address is on the suppression list",
                },
                _ => Outcome::Accept(Fate::Delivered),
            }
        }
        Channel::Push => {
            if to.starts_with("unregistered") {
                Outcome::Reject {
                    status: StatusCode::NOT_FOUND,
                    code: "UNREGISTERED",
                    message: "the registration token is not registered",
                }
            } else if to.starts_with("silent") {
                // Like FCM: accepted, and no receipt ever (the app acknowledges, or nobody does).
                Outcome::Accept(Fate::Silent)
            } else {
                Outcome::Accept(Fate::Delivered)
            }
        }
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// One more send counted under `key`.
fn count(counts: &Mutex<HashMap<String, u64>>, key: &str) {
    *counts
        .lock()
        .expect("stats lock poisoned")
        .entry(key.to_owned())
        .or_insert(0) += 1;
}

/// Takes raw bytes rather than `Json<_>` so a malformed body gets the provider's own error shape
/// (400 `invalid_request`), not axum's plain-text 415/422.
async fn send_message(State(state): State<Arc<ServerState>>, body: Bytes) -> Response {
    let send: SendBody = match serde_json::from_slice(&body) {
        Ok(send) => send,
        Err(err) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string());
        }
    };
    let content_channel = match &send.content {
        ChannelContent::Sms { .. } => Channel::Sms,
        ChannelContent::Email { .. } => Channel::Email,
        ChannelContent::Push { .. } => Channel::Push,
        ChannelContent::Whatsapp { .. } => Channel::Whatsapp,
    };
    if content_channel != send.channel {
        let message = format!(
            "content is for {content_channel}, the message is for {}",
            send.channel
        );
        return error_response(StatusCode::BAD_REQUEST, "invalid_request", &message);
    }
    // Receipts go out over plain HTTP only (this build has no TLS): refuse what could never arrive.
    match reqwest::Url::parse(&send.callback_url) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => {}
        _ => {
            let message = "callback_url must be an absolute http:// URL";
            return error_response(StatusCode::BAD_REQUEST, "invalid_request", message);
        }
    }

    // Counted before deciding: a repeated attempt is a double send even if both were rejected.
    count(&state.sends, &send.attempt_id);
    count(&state.sends_to, &send.to);

    match decide(send.channel, &send.to) {
        Outcome::Reject {
            status,
            code,
            message,
        } => {
            tracing::debug!(attempt_id = %send.attempt_id, code, "mock provider rejected a send");
            error_response(status, code, message)
        }
        Outcome::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the mock provider hung on purpose",
            )
        }
        Outcome::Accept(fate) => {
            let delay = state.config.receipt_delay;
            let provider_message_id =
                provider_message_id(fate, Utc::now().timestamp_millis(), delay);
            state
                .attempts
                .lock()
                .expect("attempts lock poisoned")
                .insert(send.attempt_id.clone(), provider_message_id.clone());
            let receipts = fate.receipts(delay);
            if !receipts.is_empty() {
                state
                    .receipts_scheduled
                    .fetch_add(receipts.len() as u64, Ordering::SeqCst);
                // Spawned, so the send is answered at once, as a provider does.
                tokio::spawn(send_receipts(
                    state.clone(),
                    send,
                    provider_message_id.clone(),
                    receipts,
                ));
            }
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"id": provider_message_id})),
            )
                .into_response()
        }
    }
}

async fn get_stats(State(state): State<Arc<ServerState>>) -> axum::Json<MockProviderStats> {
    axum::Json(state.stats())
}

/// `GET /messages/{id}`: the message's current status, told from its id.
async fn get_message(Path(id): Path<String>) -> Response {
    message_status(&id)
}

/// `GET /attempts/{attempt_id}`: the message sent for that attempt, if this run accepted one.
async fn get_attempt(
    State(state): State<Arc<ServerState>>,
    Path(attempt_id): Path<String>,
) -> Response {
    let id = state
        .attempts
        .lock()
        .expect("attempts lock poisoned")
        .ids
        .get(&attempt_id)
        .cloned();
    match id {
        Some(id) => message_status(&id),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no message for that attempt",
        ),
    }
}

fn message_status(id: &str) -> Response {
    let Some((fate, accepted_at_ms, delay)) = parse_provider_message_id(id) else {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such message");
    };
    let status = status_at(fate, accepted_at_ms, delay, Utc::now().timestamp_millis());
    let mut body = serde_json::to_value(&status).expect("a status always serializes");
    body["id"] = json!(id);
    axum::Json(body).into_response()
}

/// Sends one accepted message's receipts in order (a `read` never overtakes its `delivered`),
/// until done or the server stops.
async fn send_receipts(
    state: Arc<ServerState>,
    send: SendBody,
    provider_message_id: String,
    receipts: Vec<PlannedReceipt>,
) {
    let accepted_at = Instant::now();
    let mut stop = state.stop.clone();
    let work = async {
        for planned in receipts {
            tokio::time::sleep_until(accepted_at + planned.after).await;
            let body = ReceiptBody {
                message_id: &send.message_id,
                attempt_id: &send.attempt_id,
                provider_message_id: &provider_message_id,
                status: planned.status,
                error_code: planned.error.map(|(code, _)| code),
                error_message: planned.error.map(|(_, message)| message),
                timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            };
            let body = serde_json::to_vec(&body).expect("a receipt always serializes");
            let counter =
                if deliver_receipt(&state, &send.callback_url, &send.attempt_id, body).await {
                    &state.receipts_delivered
                } else {
                    &state.receipts_abandoned
                };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    };
    tokio::select! {
        () = work => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}

/// POSTs one signed receipt, retrying what a real provider retries: connection failures and
/// timeouts, 5xx, 408 and 429, with exponential backoff and jitter for up to ten minutes. Any
/// other answer is final. Returns whether the receiver took it.
async fn deliver_receipt(state: &ServerState, url: &str, attempt_id: &str, body: Vec<u8>) -> bool {
    let signature = sign(&state.config.secret, &body);
    let body = Bytes::from(body);
    let give_up_at = Instant::now() + RECEIPT_RETRY_FOR;
    let mut backoff = RECEIPT_BACKOFF_START;
    loop {
        let result = state
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                let status = response.status();
                let retryable = status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    tracing::warn!(%url, attempt_id, %status, "receipt refused; giving up on it");
                    return false;
                }
                tracing::debug!(%url, attempt_id, %status, "receipt not taken; will retry");
            }
            Err(err) => {
                tracing::debug!(%url, attempt_id, error = %err, "receipt not delivered; will retry");
            }
        }
        let wait = jittered(backoff);
        if Instant::now() + wait > give_up_at {
            tracing::warn!(%url, attempt_id, "receipt not delivered after ten minutes; giving up on it");
            return false;
        }
        state.receipt_retries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(RECEIPT_BACKOFF_CAP);
    }
}

/// Between half and all of `backoff` ("equal jitter"): receipts that failed together (Hermes went
/// down) do not all come back at the same instant when it is up again.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(10);

    fn codes(outcome: Outcome) -> Vec<(&'static str, Option<&'static str>)> {
        match outcome {
            Outcome::Reject { code, .. } => vec![("rejected", Some(code))],
            Outcome::Hang => vec![("hang", None)],
            Outcome::Accept(fate) => fate
                .receipts(D)
                .into_iter()
                .map(|r| (r.status, r.error.map(|(code, _)| code)))
                .collect(),
        }
    }

    #[test]
    fn email_local_part_ignores_plus_label_and_case() {
        assert_eq!(
            codes(decide(Channel::Email, "Bounce+7@x.test")),
            [("failed", Some("bounce"))]
        );
        assert_eq!(codes(decide(Channel::Email, "silent+a@x.test")), []);
        // Only the local part counts.
        assert_eq!(
            codes(decide(Channel::Email, "ann@bounce.test")),
            [("delivered", None)]
        );
    }

    #[test]
    fn whatsapp_read_comes_after_delivered() {
        match decide(Channel::Whatsapp, "+15550001234") {
            Outcome::Accept(fate) => {
                let r = fate.receipts(D);
                assert_eq!((r[0].status, r[0].after), ("delivered", D));
                assert_eq!((r[1].status, r[1].after), ("read", D * 2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn phone_rules_apply_to_whatsapp_but_not_push_or_email() {
        assert_eq!(
            codes(decide(Channel::Whatsapp, "+15550009")),
            [("failed", Some("undelivered"))]
        );
        assert_eq!(
            codes(decide(Channel::Push, "tok0001")),
            [("delivered", None)]
        );
        assert_eq!(
            codes(decide(Channel::Email, "a0001@x.test")),
            [("delivered", None)]
        );
    }

    #[test]
    fn a_provider_message_id_tells_its_fate_and_time() {
        for fate in Fate::ALL {
            let id = provider_message_id(fate, 1_700_000_000_123, Duration::from_millis(250));
            assert_eq!(
                parse_provider_message_id(&id),
                Some((fate, 1_700_000_000_123, Duration::from_millis(250))),
                "{id}"
            );
        }
        for bad in [
            "mock-00000000-0000-0000-0000-000000000000",
            "mock-x-1-2-00000000-0000-0000-0000-000000000000",
            "mock-d-1-2-not-a-uuid",
            "mock-dd-1-2-00000000-0000-0000-0000-000000000000",
            "SM123",
        ] {
            assert_eq!(parse_provider_message_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_follows_the_receipts_due_so_far() {
        let d = Duration::from_millis(100);
        let at = |fate, ms: i64| {
            let s = status_at(fate, 1_000, d, 1_000 + ms);
            (s.status, s.error_code)
        };
        assert_eq!(at(Fate::Delivered, 99), ("queued", None));
        assert_eq!(at(Fate::Delivered, 100), ("delivered", None));
        assert_eq!(at(Fate::Read, 150), ("delivered", None));
        assert_eq!(at(Fate::Read, 200), ("read", None));
        assert_eq!(at(Fate::Bounce, 500), ("failed", Some("bounce")));
        assert_eq!(at(Fate::Silent, 10_000), ("queued", None));
        // A clock that went backwards reads as "not yet".
        assert_eq!(at(Fate::Delivered, -5), ("queued", None));
    }

    #[test]
    fn backoff_is_jittered_within_half_to_all_of_it() {
        let backoff = Duration::from_millis(800);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(backoff)).collect();
        assert!(waits.iter().all(|w| *w >= backoff / 2 && *w <= backoff));
        // Not all the same: retries that failed together spread out.
        assert!(waits.iter().any(|w| *w != waits[0]));
    }

    /// Two attempts for one recipient are two attempt ids, each sent once: only the count per
    /// recipient shows the recipient got two sends.
    #[tokio::test]
    async fn sends_are_counted_per_recipient_across_attempt_ids() {
        let server = start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            MockProviderConfig {
                receipt_delay: D,
                secret: "s".into(),
            },
        )
        .await;
        let http = crate::http::client_builder().no_proxy().build().unwrap();
        // 0008: accepted and silent (no receipt to deliver); 0001: rejected, still a send.
        let sends = [
            ("a1", "+14155550008"),
            ("a2", "+14155550008"),
            ("a3", "+14155550001"),
            ("a4", "+14155551237"),
        ];
        for (attempt_id, to) in sends {
            let body = json!({
                "message_id": "m",
                "attempt_id": attempt_id,
                "channel": Channel::Sms,
                "to": to,
                "content": ChannelContent::Sms { text: "hi".into() },
                "callback_url": "http://127.0.0.1:1/receipts",
            });
            let r = http
                .post(format!("{}/messages", server.base_url()))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status() == 202 || r.status() == 400, "{}", r.status());
        }
        assert!(server.stats().duplicates.is_empty());
        assert_eq!(server.sends_for("a1"), 1);
        assert_eq!(server.sends_to("+14155550008"), 2);
        assert_eq!(server.sends_to("+14155550001"), 1);
        assert_eq!(server.sends_to("+14155559999"), 0);
        assert_eq!(server.destinations_sent_twice(), ["+14155550008"]);
    }

    #[test]
    fn remembered_attempts_forget_the_oldest_first() {
        let mut remembered = RememberedAttempts::default();
        for i in 0..=REMEMBERED_ATTEMPTS {
            remembered.insert(format!("a{i}"), format!("p{i}"));
        }
        assert_eq!(remembered.ids.len(), REMEMBERED_ATTEMPTS);
        assert!(!remembered.ids.contains_key("a0"));
        assert_eq!(
            remembered.ids.get(&format!("a{REMEMBERED_ATTEMPTS}")),
            Some(&format!("p{REMEMBERED_ATTEMPTS}"))
        );
    }
}
