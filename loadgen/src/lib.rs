//! The load generator behind `hermes bench`: drives a running Hermes over HTTP and reports
//! what it measured. (Starting a Hermes in-process for `--spawn` is the binary's part.)
//!
//! Two modes, both driving `POST /v1/messages` from N concurrent clients (one request in flight
//! each, one shared connection pool):
//!
//! - `accept`: accepted messages per second, and the latency of the POST as the client sees it
//!   (request sent to response fully read).
//! - `e2e`: the same load; then it waits until every measured message reached a final status
//!   and reads each message's own timestamps. Accept-to-delivered is the delivering attempt's
//!   `delivered_at` minus the message's `created_at`, both from Hermes's clock, so how often the
//!   bench looks adds no error. Throughput is delivered messages / (last `delivered_at` - first
//!   `created_at`). Waiting costs the server little: the last message of each client is awaited
//!   with `GET /v1/messages/{id}`, then `GET /v1/messages?status=accepted|sending&limit=1` is
//!   polled, and only then are the results read once, 200 to a page.
//!
//! Messages sent during `--warmup` are not measured. With `--rate`, requests follow a fixed
//! schedule and latency is counted from the scheduled send time, so a stalled server is not
//! hidden by clients that stop sending (coordinated omission).

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Accept path: msgs/s and latency of `POST /v1/messages`.
    Accept,
    /// End to end: msgs/s and accept-to-delivered latency through the provider.
    E2e,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Accept => "accept",
            Mode::E2e => "e2e",
        }
    }
}

/// What load to drive and what to measure.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Accept)]
    pub mode: Mode,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// How long to load after the warmup (10s, 500ms, 2m; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Send this many measured messages instead of loading for --duration.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Load before measuring; what is sent meanwhile is not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Messages per second across all clients (default: as fast as the clients go).
    #[arg(long)]
    pub rate: Option<f64>,
    /// e2e: how long to wait, after the load, for the measured messages to finish.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// The channel every message goes over (one step): sms, email, push or whatsapp.
    #[arg(long, value_enum, default_value_t = BenchChannel::Sms)]
    pub channel: BenchChannel,
    /// Recipient phone (sms, whatsapp). The mock provider delivers any number not ending in 0001,
    /// 0006, 0008 or 0009.
    #[arg(long, default_value = "+14155550100")]
    pub phone: String,
    /// Recipient address (email).
    #[arg(long, default_value = "bench@example.com")]
    pub email: String,
    /// Recipient device token (push).
    #[arg(long, default_value = "bench-device-token-0123456789")]
    pub push_token: String,
    /// Print one JSON object with every number instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The Hermes to load, and what it shares the machine with.
#[derive(Debug, Clone)]
pub struct Server {
    pub base_url: String,
    pub api_key: String,
    /// It runs in this process (`--spawn`): server and load share its CPUs.
    pub spawned: bool,
    /// The embedded mock's receipt delay, when spawned.
    pub receipt_delay_ms: Option<u64>,
}

impl LoadArgs {
    /// Refuses arguments that cannot make a run.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.messages == Some(0) {
            bail!("--messages must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of messages per second");
        }
        if self.messages.is_none() && self.duration.is_zero() {
            bail!("--duration must be more than 0");
        }
        Ok(())
    }
}

/// `10s`, `500ms`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit '{other}' in '{text}' (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// Drives `server` with the load `args` describes and answers what it measured.
pub async fn measure(server: &Server, args: &LoadArgs) -> anyhow::Result<Report> {
    args.check()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let target = Arc::new(Target::new(
        &server.base_url,
        &server.api_key,
        args.clients,
    )?);

    // Messages created before this are not ours (the tenant may have older ones).
    let not_before = Utc::now() - chrono::TimeDelta::seconds(1);
    preflight(&target, &message_body(args)).await?;

    progress(&format!(
        "hermes bench: {} mode, {} clients, {}; warming up for {}",
        args.mode.name(),
        args.clients,
        load_description(args),
        fmt_duration(args.warmup),
    ));
    let load = run_load(&target, args).await;
    let e2e = match args.mode {
        Mode::Accept => None,
        Mode::E2e => {
            progress(&format!(
                "waiting (at most {}) for {} measured messages to finish",
                fmt_duration(args.drain_timeout),
                load.ids.len()
            ));
            Some(collect_e2e(&target, &load, not_before, args.drain_timeout).await?)
        }
    };
    Ok(Report {
        mode: args.mode,
        url: server.base_url.clone(),
        spawned: server.spawned,
        cores,
        channel: args.channel,
        clients: args.clients,
        warmup: args.warmup,
        duration: args.messages.is_none().then_some(args.duration),
        messages: args.messages,
        rate: args.rate,
        receipt_delay_ms: server.receipt_delay_ms,
        load,
        e2e,
    })
}

/// Waits (at most `within`) until none of the tenant's messages has been `accepted` or `sending`
/// for a second: the cascades a run started are done, and no longer load the next run.
pub async fn wait_until_settled(server: &Server, within: Duration) -> anyhow::Result<()> {
    let target = Target::new(&server.base_url, &server.api_key, 1)?;
    let deadline = Instant::now() + within;
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        let mut pending = false;
        for status in ["accepted", "sending"] {
            let page: Option<Page> = target
                .get_json(&format!("/v1/messages?status={status}&limit=1"))
                .await?;
            pending |= page.is_some_and(|p| !p.data.is_empty());
        }
        match (pending, quiet_since) {
            (true, _) => quiet_since = None,
            (false, None) => quiet_since = Some(Instant::now()),
            (false, Some(since)) if since.elapsed() >= Duration::from_secs(1) => return Ok(()),
            (false, Some(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the run's messages were still on their way after {within:?}")
}

/// A line on standard error, where it does not mix with the report.
pub fn progress(line: &str) {
    eprintln!("{line}");
}

fn load_description(args: &LoadArgs) -> String {
    let amount = match args.messages {
        Some(n) => format!("{n} messages"),
        None => format!("for {}", fmt_duration(args.duration)),
    };
    match args.rate {
        Some(r) => format!("{amount} at {r} msg/s"),
        None => format!("{amount} as fast as the clients go"),
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A channel `hermes bench` can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchChannel {
    Sms,
    Email,
    Push,
    Whatsapp,
}

impl BenchChannel {
    fn name(self) -> &'static str {
        match self {
            BenchChannel::Sms => "sms",
            BenchChannel::Email => "email",
            BenchChannel::Push => "push",
            BenchChannel::Whatsapp => "whatsapp",
        }
    }
}

/// One message over the bench's channel, a single step: what each channel needs, and no more.
pub fn message_body(args: &LoadArgs) -> String {
    let text = "Your hermes bench code is 123456";
    let (channel, to, content) = match args.channel {
        BenchChannel::Sms => ("sms", json!({"phone": args.phone}), json!({"text": text})),
        BenchChannel::Whatsapp => (
            "whatsapp",
            json!({"whatsapp": args.phone}),
            json!({"text": text}),
        ),
        BenchChannel::Email => (
            "email",
            json!({"email": args.email}),
            json!({"text": text, "email": {"subject": "Your hermes bench code"}}),
        ),
        BenchChannel::Push => (
            "push",
            json!({"push_token": args.push_token}),
            json!({"text": text, "push": {"title": "Hermes bench"}}),
        ),
    };
    json!({
        "to": to,
        "content": content,
        "cascade": [{"channel": channel, "timeout_seconds": 30}],
    })
    .to_string()
}

/// Where and as whom to send.
struct Target {
    client: reqwest::Client,
    base_url: String,
    auth: HeaderValue,
}

impl Target {
    fn new(base_url: &str, api_key: &str, clients: usize) -> anyhow::Result<Self> {
        let client = hermes_adapters::http::client_builder()
            .pool_max_idle_per_host(clients + 16)
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .context("the API key is not a valid header value")?;
        auth.set_sensitive(true);
        Ok(Self {
            client,
            base_url: base_url.to_owned(),
            auth,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn post_message(&self, body: &str) -> Result<Posted, String> {
        let response = self
            .client
            .post(self.url("/v1/messages"))
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| error_chain(&e))?;
        if status == StatusCode::ACCEPTED {
            let id = serde_json::from_slice::<AcceptedBody>(&bytes)
                .ok()
                .map(|b| b.id);
            Ok(Posted::Accepted { id })
        } else {
            Ok(Posted::Refused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            })
        }
    }

    /// GETs `path` as JSON; `None` on 404.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let response = self
            .client
            .get(self.url(path))
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        match response.status() {
            StatusCode::OK => Ok(Some(
                response
                    .json()
                    .await
                    .with_context(|| format!("GET {path}: unexpected body"))?,
            )),
            StatusCode::NOT_FOUND => Ok(None),
            status => {
                let text = response.text().await.unwrap_or_default();
                bail!("GET {path} answered {status}: {text}")
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

enum Posted {
    Accepted { id: Option<String> },
    Refused { status: u16, body: String },
}

#[derive(Deserialize)]
struct AcceptedBody {
    id: String,
}

/// One message, before the load starts: fails fast on a wrong URL or key.
async fn preflight(target: &Target, body: &str) -> anyhow::Result<()> {
    match target.post_message(body).await {
        Ok(Posted::Accepted { .. }) => Ok(()),
        Ok(Posted::Refused { status: 401, .. }) => {
            bail!("Hermes at {} rejected the API key (401)", target.base_url)
        }
        Ok(Posted::Refused { status, body }) => bail!(
            "Hermes at {} did not accept a test message ({status}): {body}",
            target.base_url
        ),
        Err(e) => bail!("cannot reach Hermes at {}: {e}", target.base_url),
    }
}

// ---- the load ----

enum Stop {
    At(Instant),
    /// Measured messages still to send.
    After(AtomicU64),
}

struct Plan {
    body: String,
    /// When measuring starts (the warmup ends).
    measure_from: Instant,
    stop: Stop,
    /// With --rate: the schedule's start and rate, and the next slot to take.
    schedule: Option<(Instant, f64)>,
    slots: AtomicU64,
    keep_ids: bool,
}

impl Plan {
    /// Takes a measured message from the budget; false when the load is over.
    fn take(&self, now: Instant) -> bool {
        match &self.stop {
            Stop::At(end) => now < *end,
            Stop::After(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// With --rate: the next send time, or `None` past the end.
    fn next_slot(&self) -> Option<Option<Instant>> {
        let Some((start, rate)) = self.schedule else {
            return Some(None);
        };
        let k = self.slots.fetch_add(1, Ordering::Relaxed);
        let at = start + Duration::from_secs_f64(k as f64 / rate);
        match self.stop {
            Stop::At(end) if at >= end => None,
            _ => Some(Some(at)),
        }
    }
}

/// What the clients saw, merged.
struct LoadResult {
    sent: u64,
    accepted: u64,
    errors: u64,
    errors_by_status: BTreeMap<String, u64>,
    first_error: Option<String>,
    warmup_sent: u64,
    /// Microseconds, of accepted requests only.
    latency: Histogram<u64>,
    /// From the end of the warmup to the last measured response.
    elapsed: Duration,
    /// e2e: the ids of the measured accepted messages, and each client's last one.
    ids: Vec<String>,
    last_ids: Vec<String>,
    /// When the load stopped (for the drain time).
    finished: Instant,
}

struct ClientResult {
    sent: u64,
    accepted: u64,
    errors: u64,
    errors_by_status: BTreeMap<String, u64>,
    first_error: Option<String>,
    warmup_sent: u64,
    latency: Histogram<u64>,
    last_done: Option<Instant>,
    ids: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

async fn run_load(target: &Arc<Target>, args: &LoadArgs) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let stop = match args.messages {
        Some(n) => Stop::After(AtomicU64::new(n)),
        None => Stop::At(measure_from + args.duration),
    };
    let plan = Arc::new(Plan {
        body: message_body(args),
        measure_from,
        stop,
        schedule: args.rate.map(|r| (start, r)),
        slots: AtomicU64::new(0),
        keep_ids: args.mode == Mode::E2e,
    });
    let announcer = {
        let measure_from = plan.measure_from;
        let what = match args.messages {
            Some(n) => format!("measuring {n} messages"),
            None => format!("measuring for {}", fmt_duration(args.duration)),
        };
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from).await;
            progress(&what);
        })
    };
    let clients: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(client_loop(Arc::clone(target), Arc::clone(&plan))))
        .collect();
    let mut merged = LoadResult {
        sent: 0,
        accepted: 0,
        errors: 0,
        errors_by_status: BTreeMap::new(),
        first_error: None,
        warmup_sent: 0,
        latency: histogram(),
        elapsed: Duration::ZERO,
        ids: Vec::new(),
        last_ids: Vec::new(),
        finished: start,
    };
    let mut last_done = measure_from;
    for client in clients {
        let r = client.await.expect("bench client panicked");
        merged.sent += r.sent;
        merged.accepted += r.accepted;
        merged.errors += r.errors;
        merged.warmup_sent += r.warmup_sent;
        for (k, v) in r.errors_by_status {
            *merged.errors_by_status.entry(k).or_default() += v;
        }
        if merged.first_error.is_none() {
            merged.first_error = r.first_error;
        }
        merged
            .latency
            .add(&r.latency)
            .expect("histograms with the same bounds");
        if let Some(done) = r.last_done {
            last_done = last_done.max(done);
        }
        if let Some(last) = r.ids.last() {
            merged.last_ids.push(last.clone());
        }
        merged.ids.extend(r.ids);
    }
    announcer.abort();
    merged.elapsed = last_done.saturating_duration_since(measure_from);
    merged.finished = Instant::now();
    merged
}

async fn client_loop(target: Arc<Target>, plan: Arc<Plan>) -> ClientResult {
    let mut r = ClientResult {
        sent: 0,
        accepted: 0,
        errors: 0,
        errors_by_status: BTreeMap::new(),
        first_error: None,
        warmup_sent: 0,
        latency: histogram(),
        last_done: None,
        ids: Vec::new(),
    };
    while let Some(slot) = plan.next_slot() {
        if let Some(at) = slot {
            tokio::time::sleep_until(at).await;
        }
        let now = Instant::now();
        let measured = now >= plan.measure_from;
        if measured && !plan.take(now) {
            break;
        }
        // With a schedule, latency counts from when the request should have gone out.
        let sent_at = slot.unwrap_or(now);
        let outcome = target.post_message(&plan.body).await;
        let done = Instant::now();
        if !measured {
            r.warmup_sent += 1;
            if outcome.is_err() {
                // Do not spin on a server that is down.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        r.sent += 1;
        r.last_done = Some(done);
        match outcome {
            Ok(Posted::Accepted { id }) => {
                r.accepted += 1;
                let micros = done.saturating_duration_since(sent_at).as_micros();
                r.latency
                    .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                if plan.keep_ids
                    && let Some(id) = id
                {
                    r.ids.push(id);
                }
            }
            Ok(Posted::Refused { status, body }) => {
                r.errors += 1;
                *r.errors_by_status.entry(status.to_string()).or_default() += 1;
                r.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {body}"));
            }
            Err(e) => {
                r.errors += 1;
                *r.errors_by_status.entry("transport".into()).or_default() += 1;
                r.first_error.get_or_insert(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    r
}

// ---- end to end ----

#[derive(Deserialize)]
struct View {
    id: String,
    status: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    attempts: Vec<AttemptTimes>,
}

#[derive(Deserialize)]
struct AttemptTimes {
    delivered_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<View>,
    next_cursor: Option<String>,
}

const FINAL: [&str; 5] = ["delivered", "read", "failed", "expired", "cancelled"];

impl View {
    fn is_final(&self) -> bool {
        FINAL.contains(&self.status.as_str())
    }

    /// When the message was first delivered (receipt recorded by Hermes).
    fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.attempts.iter().filter_map(|a| a.delivered_at).min()
    }
}

struct E2eResult {
    measured: usize,
    delivered: u64,
    by_status: BTreeMap<String, u64>,
    /// Accepted, but never seen by the read model within the drain timeout.
    missing: usize,
    /// Microseconds from `created_at` to `delivered_at`.
    latency: Histogram<u64>,
    /// First `created_at` to last `delivered_at`, of the measured messages.
    span: Duration,
    /// From the end of the load until everything was final (or the timeout).
    drain: Duration,
    timed_out: bool,
}

async fn collect_e2e(
    target: &Target,
    load: &LoadResult,
    not_before: DateTime<Utc>,
    timeout: Duration,
) -> anyhow::Result<E2eResult> {
    let deadline = Instant::now() + timeout;
    let poll = Duration::from_millis(200);

    // 1. The read model has caught up with each client's last message (the projector
    //    follows the log in order, so everything before it is there too).
    for id in &load.last_ids {
        while Instant::now() < deadline
            && target
                .get_json::<View>(&format!("/v1/messages/{id}"))
                .await?
                .is_none()
        {
            tokio::time::sleep(poll).await;
        }
    }
    // 2. Nothing of ours is still on its way: the newest accepted or sending message of the
    //    tenant is older than this run.
    while Instant::now() < deadline {
        let mut pending = false;
        for status in ["accepted", "sending"] {
            let page: Option<Page> = target
                .get_json(&format!("/v1/messages?status={status}&limit=1"))
                .await?;
            pending |= page
                .and_then(|p| p.data.into_iter().next())
                .is_some_and(|m| m.created_at >= not_before);
        }
        if !pending {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    // 3. Read the results once, newest first, 200 to a page.
    let wanted: HashSet<&str> = load.ids.iter().map(String::as_str).collect();
    let mut seen: HashMap<String, View> = HashMap::with_capacity(wanted.len());
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/messages?limit=200&cursor={c}"),
            None => "/v1/messages?limit=200".to_owned(),
        };
        let Some(page) = target.get_json::<Page>(&path).await? else {
            break;
        };
        let oldest = page.data.last().map(|m| m.created_at);
        for view in page.data {
            if wanted.contains(view.id.as_str()) {
                seen.insert(view.id.clone(), view);
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() || seen.len() == wanted.len() || oldest.is_none_or(|t| t < not_before) {
            break;
        }
    }
    // 4. Stragglers (not final, or not seen): one GET each, a few at a time, until the deadline.
    let mut left: Vec<String> = load
        .ids
        .iter()
        .filter(|id| !seen.get(id.as_str()).is_some_and(View::is_final))
        .cloned()
        .collect();
    while !left.is_empty() && Instant::now() < deadline {
        let fetched: Vec<(String, anyhow::Result<Option<View>>)> =
            futures::stream::iter(left.iter().cloned())
                .map(|id| async move {
                    let view = target.get_json(&format!("/v1/messages/{id}")).await;
                    (id, view)
                })
                .buffer_unordered(8)
                .collect()
                .await;
        left.clear();
        for (id, view) in fetched {
            match view? {
                Some(v) if v.is_final() => {
                    seen.insert(id, v);
                }
                Some(v) => {
                    seen.insert(id.clone(), v);
                    left.push(id);
                }
                None => left.push(id),
            }
        }
        if !left.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
    let drain = load.finished.elapsed();

    let mut latency = histogram();
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut delivered = 0u64;
    let mut first_created: Option<DateTime<Utc>> = None;
    let mut last_delivered: Option<DateTime<Utc>> = None;
    for view in seen.values() {
        *by_status.entry(view.status.clone()).or_default() += 1;
        first_created = Some(first_created.map_or(view.created_at, |t| t.min(view.created_at)));
        if let Some(at) = view.delivered_at() {
            delivered += 1;
            last_delivered = Some(last_delivered.map_or(at, |t| t.max(at)));
            let micros = (at - view.created_at)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            latency.saturating_record(u64::try_from(micros).unwrap_or(0));
        }
    }
    let span = match (first_created, last_delivered) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    Ok(E2eResult {
        measured: load.ids.len(),
        delivered,
        by_status,
        missing: load.ids.len() - seen.len(),
        latency,
        span,
        drain,
        timed_out: !left.is_empty(),
    })
}

// ---- the report ----

/// What one run measured.
pub struct Report {
    mode: Mode,
    url: String,
    spawned: bool,
    cores: usize,
    channel: BenchChannel,
    clients: usize,
    warmup: Duration,
    duration: Option<Duration>,
    messages: Option<u64>,
    rate: Option<f64>,
    receipt_delay_ms: Option<u64>,
    load: LoadResult,
    e2e: Option<E2eResult>,
}

fn per_second(count: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 1000.0 * 100.0).round() / 100.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": ms(h.mean().round() as u64),
    })
}

fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  max {}  mean {}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        ms(h.mean().round() as u64),
    )
}

impl Report {
    /// Accepted messages per second, and the POST's p50 and p99 in milliseconds.
    pub fn accept_numbers(&self) -> (f64, f64, f64) {
        let l = &self.load;
        let quantile = |q| {
            if l.latency.is_empty() {
                0.0
            } else {
                ms(l.latency.value_at_quantile(q))
            }
        };
        (
            round1(per_second(l.accepted, l.elapsed)),
            quantile(0.50),
            quantile(0.99),
        )
    }

    fn sharing_note(&self) -> String {
        if self.spawned {
            format!(
                "Hermes ran in-process: server and load generator shared this process and its {} CPU(s)",
                self.cores
            )
        } else {
            format!(
                "the load generator ran on this machine ({} CPU(s)); on loopback it shares them with Hermes and Postgres",
                self.cores
            )
        }
    }

    pub fn to_json(&self) -> Value {
        let l = &self.load;
        let mut out = json!({
            "mode": self.mode.name(),
            "url": self.url,
            "spawned": self.spawned,
            "cores": self.cores,
            "channel": self.channel,
            "clients": self.clients,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.map(|d| d.as_secs_f64()),
            "messages": self.messages,
            "rate": self.rate,
            "receipt_delay_ms": self.receipt_delay_ms,
            "note": self.sharing_note(),
            "accept": {
                "sent": l.sent,
                "accepted": l.accepted,
                "errors": l.errors,
                "errors_by_status": l.errors_by_status,
                "first_error": l.first_error,
                "warmup_sent": l.warmup_sent,
                "elapsed_s": round3(l.elapsed.as_secs_f64()),
                "msgs_per_s": round1(per_second(l.accepted, l.elapsed)),
                "latency_ms": latency_json(&l.latency),
            },
        });
        if let Some(e) = &self.e2e {
            out["e2e"] = json!({
                "measured": e.measured,
                "delivered": e.delivered,
                "by_status": e.by_status,
                "missing": e.missing,
                "timed_out": e.timed_out,
                "span_s": round3(e.span.as_secs_f64()),
                "msgs_per_s": round1(per_second(e.delivered, e.span)),
                "latency_ms": latency_json(&e.latency),
                "drain_s": round3(e.drain.as_secs_f64()),
            });
        }
        out
    }

    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let l = &self.load;
        let mut s = String::new();
        let amount = match (self.messages, self.duration) {
            (Some(n), _) => format!("{n} messages"),
            (None, Some(d)) => fmt_duration(d),
            (None, None) => String::new(),
        };
        let rate = self
            .rate
            .map_or_else(|| "unpaced".to_owned(), |r| format!("paced at {r} msg/s"));
        let _ = writeln!(
            s,
            "\nhermes bench: {} mode against {}\n  {} messages, {} clients, {} after {} warmup, {}",
            self.mode.name(),
            self.url,
            self.channel.name(),
            self.clients,
            amount,
            fmt_duration(self.warmup),
            rate
        );
        if let Some(d) = self.receipt_delay_ms {
            let _ = writeln!(s, "  mock provider receipt delay {d} ms");
        }
        let _ = writeln!(s, "  note: {}", self.sharing_note());
        let _ = writeln!(s, "\naccept (POST /v1/messages, client-measured)");
        let _ = writeln!(s, "  sent         {}", l.sent);
        let _ = writeln!(s, "  accepted     {}", l.accepted);
        let errors = if l.errors == 0 {
            "0".to_owned()
        } else {
            let by: Vec<String> = l
                .errors_by_status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            format!("{} ({})", l.errors, by.join(", "))
        };
        let _ = writeln!(s, "  errors       {errors}");
        if let Some(first) = &l.first_error {
            let _ = writeln!(s, "  first error  {first}");
        }
        let _ = writeln!(
            s,
            "  throughput   {:.1} msg/s over {:.2}s",
            per_second(l.accepted, l.elapsed),
            l.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "  latency ms   {}", latency_line(&l.latency));
        if let Some(e) = &self.e2e {
            let _ = writeln!(
                s,
                "\nend to end (created_at -> delivered_at, Hermes's clock)"
            );
            let statuses: Vec<String> = e
                .by_status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "  measured     {}", e.measured);
            let _ = writeln!(
                s,
                "  delivered    {}  ({}{})",
                e.delivered,
                statuses.join(", "),
                if e.missing > 0 {
                    format!(", never seen: {}", e.missing)
                } else {
                    String::new()
                }
            );
            let _ = writeln!(
                s,
                "  throughput   {:.1} msg/s (delivered over {:.2}s, first accept to last delivery)",
                per_second(e.delivered, e.span),
                e.span.as_secs_f64()
            );
            let _ = writeln!(s, "  latency ms   {}", latency_line(&e.latency));
            let _ = writeln!(
                s,
                "  drain        {:.2}s after the load stopped{}",
                e.drain.as_secs_f64(),
                if e.timed_out {
                    " (timed out: some messages did not finish)"
                } else {
                    ""
                }
            );
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
