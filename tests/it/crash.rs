//! Crash safety (ARCHITECTURE.md, "The Message aggregate and the cascade"): `hermes serve` runs as
//! a real child process and is killed with SIGKILL at random moments while cascades are submitted
//! and running, then restarted. Every message still reaches a terminal state, and the mock
//! provider (in this process, so its counters outlive the kills) never saw an attempt twice.
//!
//! Hermes reaches the mock provider through a "slow road" in this process that delays each send
//! and its answer, so that kills often land between `AttemptDispatched` and the recorded outcome:
//! the in-doubt path. A second test cuts one send short on purpose, deterministically.
//!
//! If the test process itself is killed (not a panic), the child is not: look for a stray
//! `hermes serve` then.

use crate::harness;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use hermes_adapters::mock::{self, MockProviderConfig, MockProviderHandle};
use hermes_infra::{Secret, db, tenants};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const MESSAGES: usize = 200;
const SUBMITTERS: usize = 4;
pub(crate) const SECRET: &str = "crash-test-mock-secret";
pub(crate) const TERMINAL: [&str; 5] = ["delivered", "read", "failed", "expired", "cancelled"];

/// The `hermes serve` (or `dev`) child process. Dropping it kills the process (also when a test
/// panics, in which case the tail of its log is printed).
pub(crate) struct Hermes {
    child: Option<Child>,
    port: u16,
    env: Vec<(&'static str, String)>,
    dir: PathBuf,
    starts: usize,
    /// `serve` or `dev`.
    subcommand: &'static str,
}

impl Hermes {
    /// Not started yet: [`Self::spawn`] starts it, on a fixed free port with a log in a fresh
    /// temporary directory. `HERMES_ROLES` in `env` picks its roles (all of them otherwise); a
    /// `HERMES_PUBLIC_URL` in `env` wins over its own address (a worker's receipts go to the API
    /// process).
    pub(crate) fn new(subcommand: &'static str, env: Vec<(&'static str, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!("hermes-crash-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut own = vec![
            ("HERMES_LISTEN", format!("127.0.0.1:{port}")),
            // Stable across restarts, so receipts for earlier attempts reach the new process.
            ("HERMES_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            (
                "RUST_LOG",
                std::env::var("HERMES_CRASH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        // Later entries win in `Command::envs`: the caller's come last.
        own.retain(|(k, _)| !env.iter().any(|(given, _)| given == k));
        let env = own.into_iter().chain(env).collect();
        Hermes {
            child: None,
            port,
            env,
            dir,
            starts: 0,
            subcommand,
        }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("hermes.log")
    }

    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "hermes is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        use std::io::Write;
        writeln!(&log, "==== start {} ====", self.starts + 1).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hermes"))
            .arg(self.subcommand)
            // No provider account is configured: `serve` must be asked for the mock.
            .args((self.subcommand == "serve").then_some("--mock-provider"))
            .env_remove("HERMES_ROLES")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // What it prints (`hermes dev`'s banner) apart from what it logs.
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("hermes.out"))
                    .expect("stdout file"),
            )
            .stderr(log)
            .spawn()
            .expect("start hermes");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no shutdown hook, no flush, no goodbye.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/healthz", self.base_url());
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("hermes exited while starting: {status}");
            }
            assert!(Instant::now() < deadline, "hermes did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything it logged to stderr (every start), with `==== start N ====` lines between starts.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The lines of its log (every start) that contain one of `needles`, for a panic message.
    pub(crate) fn log_lines_with(&self, needles: &[&str]) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect();
        lines.join("\n")
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Hermes {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ----\n{}\n----",
                self.log_path().display(),
                self.log_tail(80)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The road from Hermes to the mock provider. Each send waits up to 150 ms before it is
/// forwarded and up to 150 ms before its answer comes back, so kills often land while a send is
/// in flight. The forward runs in its own task: a send that left Hermes reaches the provider even
/// if Hermes dies before the answer (the attempt is then in doubt, and its receipt still comes).
/// While `hold` is set, sends are parked instead: they never reach the provider.
pub(crate) struct SlowRoad {
    http: reqwest::Client,
    target: String,
    rng: Mutex<StdRng>,
    pub(crate) hold: AtomicBool,
    pub(crate) held: AtomicUsize,
    /// Sends that came while not held (forwarded to the provider).
    pub(crate) passed: AtomicUsize,
}

pub(crate) async fn start_slow_road(target: String, seed: u64) -> (String, Arc<SlowRoad>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let road = Arc::new(SlowRoad {
        http: hermes_adapters::http::client_builder()
            .no_proxy()
            .build()
            .unwrap(),
        target,
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        hold: AtomicBool::new(false),
        held: AtomicUsize::new(0),
        passed: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/messages", axum::routing::post(forward_slowly))
        .with_state(road.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), road)
}

async fn forward_slowly(
    State(road): State<Arc<SlowRoad>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Bytes) {
    if road.hold.load(Ordering::SeqCst) {
        road.held.fetch_add(1, Ordering::SeqCst);
        return std::future::pending().await;
    }
    road.passed.fetch_add(1, Ordering::SeqCst);
    let (before, after) = {
        let mut rng = road.rng.lock().unwrap();
        (rng.random_range(0..150), rng.random_range(0..150))
    };
    let forwarded = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(before)).await;
        let r = road
            .http
            .post(format!("{}/messages", road.target))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the mock provider answers");
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        let body = r.bytes().await.expect("the mock provider's answer");
        tokio::time::sleep(Duration::from_millis(after)).await;
        (status, body)
    });
    let (status, body) = forwarded.await.unwrap();
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Everything a crash test needs: a fresh database with a tenant, the mock provider and the road
/// to it in this process, and `hermes serve` as a child process on a fixed port.
struct Rig {
    pool: PgPool,
    tenant: tenants::CreatedTenant,
    mock: MockProviderHandle,
    road: Arc<SlowRoad>,
    hermes: Hermes,
    client: reqwest::Client,
}

impl Rig {
    async fn start(seed: u64) -> Rig {
        let (database_url, pool, tenant) = migrated_database_with_tenant("crash").await;
        let mock = mock_provider().await;
        let (provider_url, road) = start_slow_road(mock.base_url(), seed).await;
        let mut hermes = Hermes::new(
            "serve",
            vec![
                ("DATABASE_URL", database_url),
                ("HERMES_DB_POOL_SIZE", "16".into()),
                ("HERMES_MOCK_PROVIDER_URL", provider_url),
                ("HERMES_MOCK_PROVIDER_SECRET", SECRET.into()),
            ],
        );
        let client = hermes_adapters::http::client_builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .unwrap();
        hermes.spawn();
        hermes.wait_ready(&client).await;
        Rig {
            pool,
            tenant,
            mock,
            road,
            hermes,
            client,
        }
    }

    /// Kills Hermes with SIGKILL, starts it again and waits until it is healthy.
    async fn crash_and_restart(&mut self) {
        self.hermes.kill();
        self.hermes.spawn();
        self.hermes.wait_ready(&self.client).await;
    }

    /// `GET path`; `None` on 404 (the read model has not caught up yet).
    async fn try_get(&self, path: &str) -> Option<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.hermes.base_url()))
            .bearer_auth(&self.tenant.api_key)
            .send()
            .await
            .expect("GET");
        match r.status().as_u16() {
            200 => Some(r.json().await.unwrap()),
            404 => None,
            s => panic!("GET {path} answered {s}: {}", r.text().await.unwrap()),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let found = self.try_get(path).await;
        found.unwrap_or_else(|| panic!("GET {path}: not found"))
    }

    async fn event_types(&self, message_id: &str) -> Vec<String> {
        self.get(&format!("/v1/messages/{message_id}/events")).await["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A client for a child Hermes: no proxy, 5 s for each request.
pub(crate) fn child_client() -> reqwest::Client {
    hermes_adapters::http::client_builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("a client builds")
}

/// A fresh database, migrated (no Hermes has run on it yet), with one tenant: its URL, a pool,
/// and the tenant.
pub(crate) async fn migrated_database_with_tenant(
    name: &str,
) -> (String, PgPool, tenants::CreatedTenant) {
    let database_url = harness::fresh_database().await;
    let pool = db::connect(&Secret::new(database_url.clone()), 4)
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("migrate");
    let tenant = tenants::create_tenant(&pool, name).await.expect("tenant");
    (database_url, pool, tenant)
}

/// The mock provider in this process (its counters outlive the Hermes processes killed), with
/// receipts 50 ms after each send.
pub(crate) async fn mock_provider() -> MockProviderHandle {
    mock::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockProviderConfig {
            receipt_delay: Duration::from_millis(50),
            secret: SECRET.into(),
        },
    )
    .await
}

/// Polls the read model until `expected` messages of `tenant` are there and all terminal, saying
/// every 5 s how far it got (since `started`). `Err` with the last statuses at `deadline`.
pub(crate) async fn wait_until_terminal(
    pool: &PgPool,
    tenant: Uuid,
    expected: usize,
    deadline: Instant,
    started: Instant,
) -> Result<Vec<(Uuid, String)>, Vec<(Uuid, String)>> {
    let mut last_report = Instant::now();
    loop {
        let views = view_statuses(pool, tenant).await;
        let terminal = terminal_count(&views);
        if views.len() >= expected && terminal == views.len() {
            return Ok(views);
        }
        if Instant::now() > deadline {
            return Err(views);
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "waiting: {terminal} of {} messages terminal after {:?}",
                views.len(),
                started.elapsed()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn terminal_count(views: &[(Uuid, String)]) -> usize {
    views
        .iter()
        .filter(|(_, s)| TERMINAL.contains(&s.as_str()))
        .count()
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A number that is delivered (it ends in neither 0001, 0008 nor 0009).
pub(crate) fn good_phone(i: usize) -> String {
    format!("+1415{i:06}7")
}

/// Message `i` of the mix: plain SMS, SMS undelivered then email, SMS without receipt timing out
/// then email, SMS rejected then email, WhatsApp (delivered, or undelivered then SMS), email.
fn body(i: usize, rng: &mut StdRng) -> Value {
    let step = 8;
    let mut body = match i % 10 {
        0 | 1 => harness::message(json!({"phone": good_phone(i)}), &[("sms", step)]),
        2 | 3 => harness::message(
            json!({"phone": "+15005550009", "email": format!("ada+{i}@example.com")}),
            &[("sms", step), ("email", step)],
        ),
        4 => harness::message(
            json!({"phone": "+15005550008", "email": format!("bob+{i}@example.com")}),
            &[("sms", rng.random_range(1..=2)), ("email", step)],
        ),
        5 => harness::message(
            json!({"phone": "+15005550001", "email": format!("cy+{i}@example.com")}),
            &[("sms", step), ("email", step)],
        ),
        6 | 7 => harness::message(
            json!({"whatsapp": good_phone(i), "phone": good_phone(i)}),
            &[("whatsapp", step), ("sms", step)],
        ),
        8 => harness::message(
            json!({"email": format!("dee+{i}@example.com")}),
            &[("email", step)],
        ),
        _ => harness::message(
            json!({"whatsapp": "+15005550009", "phone": good_phone(i)}),
            &[("whatsapp", step), ("sms", step)],
        ),
    };
    body["reference"] = json!(format!("crash-{i}"));
    body
}

/// POSTs one message with its Idempotency-Key until Hermes accepts it, riding out the kills.
/// Returns the message id and whether the answer was an idempotent replay.
pub(crate) async fn submit(
    client: &reqwest::Client,
    base_url: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> (String, bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        assert!(Instant::now() < deadline, "{key} was never accepted");
        let r = client
            .post(format!("{base_url}/v1/messages"))
            .bearer_auth(api_key)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => {
                let replayed = r.headers().contains_key("idempotent-replayed");
                // The process may die between the headers and the body: then ask again.
                if let Ok(v) = r.json::<Value>().await {
                    return (v["id"].as_str().expect("an id").to_owned(), replayed);
                }
            }
            Ok(r) if r.status().is_server_error() || r.status() == 429 => {}
            Ok(r) => {
                let status = r.status();
                panic!("{key}: {status} {}", r.text().await.unwrap_or_default());
            }
            Err(_) => {} // refused, reset or timed out while Hermes is down or dying
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn view_statuses(pool: &PgPool, tenant: Uuid) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT message_id, status FROM message_views WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(pool)
        .await
        .expect("message_views")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_hermes_repeatedly_loses_no_message_and_sends_no_attempt_twice() {
    let started = Instant::now();
    let seed: u64 = std::env::var("HERMES_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (set HERMES_CRASH_SEED to replay the same kill schedule)");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut rig = Rig::start(seed).await;
    let (pool, client) = (rig.pool.clone(), rig.client.clone());
    let (tenant_id, api_key) = (rig.tenant.tenant_id, rig.tenant.api_key.clone());

    // Submitters: each takes the next message, POSTs it until accepted, pauses a little.
    let bodies: Arc<Vec<Value>> = Arc::new((0..MESSAGES).map(|i| body(i, &mut rng)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
            let base_url = rig.hermes.base_url();
            let api_key = api_key.clone();
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1 + s as u64));
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        return accepted;
                    }
                    let key = format!("crash-{seed}-{i}");
                    let (id, replayed) =
                        submit(&client, &base_url, &api_key, &key, &bodies[i]).await;
                    accepted.push((i, id, replayed));
                    tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
                }
            })
        })
        .collect();

    // Meanwhile: kill -9 at random moments, restart each time.
    let kills = rng.random_range(4..=5);
    let mut kill_log = Vec::new();
    for _ in 0..kills {
        let wait = rng.random_range(100..=800);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        kill_log.push((
            wait,
            next.load(Ordering::SeqCst).min(MESSAGES),
            started.elapsed(),
        ));
        rig.crash_and_restart().await;
    }
    let restarted = Instant::now();
    eprintln!(
        "killed {kills} times (wait ms, messages taken so far, at): {kill_log:?}; all restarted after {:?}",
        started.elapsed()
    );

    let mut accepted = Vec::new();
    for s in submitters {
        accepted.extend(s.await.expect("submitter"));
    }
    let submitted_at = started.elapsed();
    assert_eq!(accepted.len(), MESSAGES);
    let ids: HashSet<Uuid> = accepted
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), MESSAGES, "two submissions got the same id");
    let replays = accepted.iter().filter(|(_, _, r)| *r).count();

    // Every message reaches a terminal state.
    let deadline = restarted + Duration::from_secs(60);
    let views = match wait_until_terminal(&pool, tenant_id, MESSAGES, deadline, started).await {
        Ok(views) => views,
        Err(views) => {
            let pending: Vec<_> = views
                .iter()
                .filter(|(_, s)| !TERMINAL.contains(&s.as_str()))
                .take(10)
                .collect();
            let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM timers")
                .fetch_one(&pool)
                .await
                .unwrap();
            panic!(
                "{} of {MESSAGES} messages not terminal 60 s after the last restart \
                 ({} in the read model, {timers} timers armed); e.g. {pending:?}",
                MESSAGES.max(views.len()) - terminal_count(&views),
                views.len()
            );
        }
    };
    let terminal_at = started.elapsed();

    // Idempotency kept the retried POSTs from creating extra messages.
    assert_eq!(views.len(), MESSAGES, "messages in the read model");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'MessageAccepted' AND tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, MESSAGES as i64, "messages in the event store");
    let view_ids: HashSet<Uuid> = views.iter().map(|(id, _)| *id).collect();
    assert_eq!(view_ids, ids);

    // Through the API: terminal, every attempt resolved, none sent twice or unknown to Hermes.
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_attempt_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempt_ids = HashSet::new();
    let mut sends_of_known_attempts = 0;
    for id in &ids {
        let m = rig.get(&format!("/v1/messages/{id}")).await;
        let status = m["status"].as_str().unwrap().to_owned();
        assert!(TERMINAL.contains(&status.as_str()), "{m:#}");
        for a in m["attempts"].as_array().unwrap() {
            let attempt_status = a["status"].as_str().unwrap();
            assert_ne!(
                attempt_status, "dispatching",
                "an attempt was never resolved: {m:#}"
            );
            let attempt_id = a["id"].as_str().unwrap();
            assert!(attempt_ids.insert(attempt_id.to_owned()));
            let sends = rig.mock.sends_for(attempt_id);
            assert!(sends <= 1, "attempt {attempt_id} sent {sends} times: {m:#}");
            sends_of_known_attempts += sends;
            *by_attempt_status
                .entry(attempt_status.to_owned())
                .or_default() += 1;
        }
        *by_status.entry(status).or_default() += 1;
    }
    let stats = rig.mock.stats();
    assert!(
        stats.duplicates.is_empty(),
        "attempts sent twice: {:?}",
        stats.duplicates
    );
    assert_eq!(
        sends_of_known_attempts, stats.sends,
        "the provider saw sends for attempts Hermes has no record of"
    );
    let went_in_doubt: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'AttemptInDoubt' AND tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!(
        "{MESSAGES} messages ({replays} answers were idempotent replays) submitted by {submitted_at:?}, \
         all terminal by {terminal_at:?}; {} starts of hermes\n  messages: {by_status:?}\n  attempts: \
         {by_attempt_status:?}\n  attempts that went in doubt: {went_in_doubt}; ended in_doubt: {}, timed_out: {}\n  \
         mock provider: {stats:?}",
        rig.hermes.starts,
        by_attempt_status.get("in_doubt").unwrap_or(&0),
        by_attempt_status.get("timed_out").unwrap_or(&0),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cut_short_by_a_crash_is_put_in_doubt_and_never_sent_again() {
    let mut rig = Rig::start(rand::random()).await;
    // The provider is unreachable in a way Hermes cannot see: its sends hang.
    rig.road.hold.store(true, Ordering::SeqCst);
    let r = rig
        .client
        .post(format!("{}/v1/messages", rig.hermes.base_url()))
        .bearer_auth(&rig.tenant.api_key)
        .json(&harness::message(
            json!({"phone": "+14155550100", "email": "ada@example.com"}),
            &[("sms", 3), ("email", 30)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The saga recorded the dispatch and is waiting for the provider's answer: kill it there.
    let deadline = Instant::now() + Duration::from_secs(15);
    while rig.road.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the send never left Hermes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.road.hold.store(false, Ordering::SeqCst);
    rig.crash_and_restart().await;

    // The restarted saga reads the step again: the attempt it finds dispatched but unanswered is
    // in doubt, not sent again; the step's timeout then moves the cascade on to email.
    let deadline = Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = rig.try_get(&format!("/v1/messages/{id}")).await;
        if let Some(m) = m.as_ref().filter(|m| m["status"] == "delivered") {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "not delivered: {m:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts = m["attempts"].as_array().unwrap();
    let statuses: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("sms", "timed_out"), ("email", "delivered")]);
    // Settled by its timeout, the SMS still shows it was in doubt (it may have been delivered).
    assert!(attempts[0]["in_doubt_at"].is_string(), "{m:#}");
    assert!(attempts[1]["in_doubt_at"].is_null(), "{m:#}");
    let sms = attempts[0]["id"].as_str().unwrap();
    assert_eq!(rig.mock.sends_for(sms), 0, "the in-doubt SMS was sent");
    assert_eq!(rig.mock.stats().sends, 1);
    assert!(rig.mock.stats().duplicates.is_empty());
    let types = rig.event_types(&id).await;
    let position = |t: &str| types.iter().position(|x| x == t);
    assert!(
        position("AttemptInDoubt").is_some(),
        "the interrupted attempt was never marked in doubt: {types:?}"
    );
    assert!(
        position("AttemptInDoubt") < position("StepTimedOut"),
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "AttemptDispatched").count(),
        2,
        "{types:?}"
    );
}
