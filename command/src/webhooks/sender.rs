//! The webhook sender: takes due deliveries from the outbox, signs them (Standard Webhooks) and
//! POSTs them to the tenants' endpoints, then records the attempt and what comes next: done, a
//! retry on the schedule, or failed.
//!
//! - Several senders may run (one per process with the `webhooks` role): a delivery is claimed
//!   with a lease before it is sent, so only one sends it; a sender that dies mid-send leaves it
//!   to be sent again when the lease ends (at least once, like every webhook: receivers dedupe on
//!   `webhook-id`).
//! - A slow or dead endpoint holds at most [`PER_ENDPOINT`] of the [`IN_FLIGHT`] slots, and each
//!   attempt ends at the configured timeout, so it never delays other endpoints' deliveries.
//! - Per endpoint, a message's notices go out in order (`webhooks::due`).
//! - Every address an endpoint's host resolves to must be public (unless configured for tests),
//!   and the connection goes to the addresses checked; redirects are not followed; only the
//!   first KiB of an answer is kept.

use super::WebhookConfig;
use super::signature;
use hermes_adapters::plugin::is_public_address;
use hermes_infra::trace_context;
use hermes_infra::webhooks::{self, AttemptRecord, Claimed, Outcome};
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;
use uuid::Uuid;

/// Deliveries in flight in one sender.
const IN_FLIGHT: usize = 128;
/// Of which one endpoint may hold at most this many.
const PER_ENDPOINT: usize = 16;
/// A claimed delivery is not taken by another sender for this long (longer than any attempt).
const LEASE: Duration = Duration::from_secs(60);
/// How often the outbox is looked at when nothing was due.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// The part of an answer's body kept with the attempt.
const RESPONSE_EXCERPT: usize = 1024;
/// How long an endpoint's URL and secrets are trusted before they are read again: a change
/// (a new URL, a rotated secret, a deletion) reaches the sender within this.
const ENDPOINT_TTL: Duration = Duration::from_secs(1);

pub async fn run(pool: PgPool, config: WebhookConfig) {
    if config.key.is_none() {
        tracing::warn!(
            "webhook signing secrets are stored unsealed: set HERMES_SECRET_KEY to seal them at rest"
        );
    }
    let sender = Arc::new(Sender {
        pool,
        config,
        busy: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        clients: Mutex::new(HashMap::new()),
        endpoints: Mutex::new(HashMap::new()),
        finished: Notify::new(),
    });
    tokio::spawn(report_pending(sender.pool.clone()));
    loop {
        match sender.clone().send_due().await {
            // Nothing could start: look again when a delivery ends (its endpoint may have room
            // now, or the next of its message may be due) or after a while (new notices).
            Ok(0) => {
                let _ = tokio::time::timeout(IDLE_POLL, sender.finished.notified()).await;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(e) => {
                tracing::warn!(error = %e, "webhook sender: cannot read the outbox");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Keeps `hermes_webhook_pending_deliveries` current (every 5 s).
async fn report_pending(pool: PgPool) {
    loop {
        if let Ok(n) = webhooks::pending_count(&pool).await {
            metrics::gauge!("hermes_webhook_pending_deliveries").set(n as f64);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// An endpoint's URL and secrets as read (`None`: deleted).
type Endpoint = Option<Arc<webhooks::SendingTo>>;

struct Sender {
    pool: PgPool,
    config: WebhookConfig,
    /// Deliveries in flight per endpoint.
    busy: Mutex<HashMap<Uuid, usize>>,
    slots: Arc<Semaphore>,
    /// One client per host and the addresses it was checked at, so connections are reused and
    /// always go where the check said.
    clients: Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>,
    /// Endpoints as last read, and when ([`ENDPOINT_TTL`]).
    endpoints: Mutex<HashMap<Uuid, (Instant, Endpoint)>>,
    /// Told when a delivery ends.
    finished: Notify,
}

impl Sender {
    /// Claims what is due and fits the free slots, and starts sending it; how many started.
    async fn send_due(self: Arc<Self>) -> anyhow::Result<usize> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let due = webhooks::due(&self.pool, (free * 2) as i64).await?;
        let picked: Vec<Uuid> = {
            let busy = self.busy.lock().expect("not poisoned");
            let mut taken: HashMap<Uuid, usize> = HashMap::new();
            due.iter()
                .filter(|d| {
                    let n = taken.entry(d.endpoint_id).or_default();
                    *n += 1;
                    busy.get(&d.endpoint_id).copied().unwrap_or(0) + *n <= PER_ENDPOINT
                })
                .take(free)
                .map(|d| d.id)
                .collect()
        };
        if picked.is_empty() {
            return Ok(0);
        }
        let claimed = webhooks::claim(&self.pool, &picked, LEASE).await?;
        let started = claimed.len();
        for delivery in claimed {
            let permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            *self
                .busy
                .lock()
                .expect("not poisoned")
                .entry(delivery.endpoint_id)
                .or_default() += 1;
            let sender = self.clone();
            tokio::spawn(async move {
                let endpoint = delivery.endpoint_id;
                if let Err(e) = sender.deliver(&delivery).await {
                    // Unrecorded: the lease ends and it is tried again.
                    tracing::warn!(delivery = %delivery.id, error = %e, "webhook delivery not recorded");
                }
                let mut busy = sender.busy.lock().expect("not poisoned");
                if let Some(n) = busy.get_mut(&endpoint) {
                    *n -= 1;
                    if *n == 0 {
                        busy.remove(&endpoint);
                    }
                }
                drop(busy);
                drop(permit);
                sender.finished.notify_one();
            });
        }
        Ok(started)
    }

    async fn deliver(&self, delivery: &Claimed) -> anyhow::Result<()> {
        let Some(to) = self.endpoint(delivery.endpoint_id).await? else {
            return Ok(()); // deleted, and its deliveries with it
        };
        // In the message's trace, under the event the notice is about.
        let span = trace_context::span_under(delivery.traceparent.as_deref(), || {
            tracing::info_span!(
                "webhook",
                otel.name = "webhook.deliver",
                trace_id = tracing::field::Empty,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = "POST",
                http.response.status_code = tracing::field::Empty,
                hermes.message_id = %delivery.message_id,
                hermes.tenant_id = %delivery.tenant_id,
                hermes.webhook.endpoint_id = %delivery.endpoint_id,
                hermes.webhook.delivery_id = %delivery.id,
                hermes.webhook.event_type = %delivery.event_type,
                hermes.webhook.attempt = delivery.attempts,
            )
        });
        let attempted_at = chrono::Utc::now();
        let started = Instant::now();
        let result = self.post(delivery, &to).instrument(span.clone()).await;
        match &result {
            Ok((status, _)) => {
                span.record("http.response.status_code", status);
                if !(200..300).contains(status) {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        metrics::histogram!("hermes_webhook_delivery_seconds")
            .record(started.elapsed().as_secs_f64());
        let (status_code, response, error) = match result {
            Ok((status, excerpt)) => (Some(i32::from(status)), excerpt, None),
            Err(error) => (None, String::new(), Some(error)),
        };
        let succeeded = status_code.is_some_and(|s| (200..300).contains(&s));
        let outcome = if succeeded {
            Outcome::Succeeded
        } else {
            match self.config.schedule.next_attempt(
                delivery.first_attempt_at,
                chrono::Utc::now(),
                delivery.attempts.max(1) as u32,
                rand::random::<f64>(),
            ) {
                Some(at) => Outcome::Retry(at),
                None => Outcome::Failed,
            }
        };
        let label = match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Retry(_) => "retried",
            Outcome::Failed => "failed",
        };
        metrics::counter!("hermes_webhook_deliveries_total", "outcome" => label).increment(1);
        let attempt = AttemptRecord {
            attempted_at,
            status_code,
            latency_ms,
            response,
            error,
        };
        let disabled = webhooks::record(
            &self.pool,
            delivery,
            &attempt,
            outcome,
            self.config.disable_after,
        )
        .await?;
        if disabled {
            metrics::counter!("hermes_webhook_endpoints_disabled_total").increment(1);
            tracing::warn!(endpoint = %delivery.endpoint_id, "webhook endpoint disabled: every delivery failed for too long");
        }
        Ok(())
    }

    /// The endpoint's URL and secrets, read at most once per [`ENDPOINT_TTL`].
    async fn endpoint(&self, id: Uuid) -> Result<Endpoint, sqlx::Error> {
        if let Some((read_at, to)) = self.endpoints.lock().expect("not poisoned").get(&id)
            && read_at.elapsed() < ENDPOINT_TTL
        {
            return Ok(to.clone());
        }
        let to = webhooks::sending_to(&self.pool, id).await?.map(Arc::new);
        let mut endpoints = self.endpoints.lock().expect("not poisoned");
        endpoints.retain(|_, (read_at, _)| read_at.elapsed() < ENDPOINT_TTL);
        endpoints.insert(id, (Instant::now(), to.clone()));
        Ok(to)
    }

    /// One POST: the answer's status and the start of its body, or why there was none.
    async fn post(
        &self,
        delivery: &Claimed,
        to: &webhooks::SendingTo,
    ) -> Result<(u16, String), String> {
        let keys: Vec<Vec<u8>> = std::iter::once(&to.secret)
            .chain(to.previous.as_ref())
            .filter_map(|s| self.config.open(delivery.endpoint_id, s))
            .collect();
        if keys.is_empty() {
            return Err(
                "the endpoint's signing secret cannot be opened with this server's key".into(),
            );
        }
        let url = reqwest::Url::parse(&to.url).map_err(|e| format!("invalid URL: {e}"))?;
        let client = self.client_for(&url).await?;
        let id = delivery.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let body = delivery.body.as_bytes();
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("Hermes-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature::header(&keys, &id, timestamp, body),
            )
            .body(delivery.body.clone());
        let exchange = async {
            let mut response = request.send().await.map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let mut excerpt = Vec::new();
            while excerpt.len() < RESPONSE_EXCERPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            excerpt.truncate(RESPONSE_EXCERPT);
            Ok((status, String::from_utf8_lossy(&excerpt).into_owned()))
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} s",
                    self.config.timeout.as_secs_f64()
                ))
            })
    }

    /// A client pinned to the addresses `url`'s host resolves to now, once they are checked.
    async fn client_for(&self, url: &reqwest::Url) -> Result<reqwest::Client, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let mut addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((bare.as_str(), port)),
            )
            .await
            .map_err(|_| format!("resolving {bare} took too long"))?
            .map_err(|e| format!("could not resolve {bare}: {e}"))?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{bare} has no address"));
        }
        if !self.config.allow_private
            && let Some(private) = addrs.iter().find(|a| !is_public_address(a.ip()))
        {
            return Err(format!(
                "{bare} resolves to the non-public address {}: refused",
                private.ip()
            ));
        }
        addrs.sort();
        let key = (bare.clone(), addrs.clone());
        if let Some(client) = self.clients.lock().expect("not poisoned").get(&key) {
            return Ok(client.clone());
        }
        let client = hermes_adapters::http::client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .resolve_to_addrs(&bare, &addrs)
            .build()
            .map_err(|e| format!("could not build the client: {e}"))?;
        let mut clients = self.clients.lock().expect("not poisoned");
        if clients.len() > 1000 {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("could not connect: {e}")
    } else if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    }
}
