//! The Kafka transport: the relay streams the log to the topic (keyed by message, with headers),
//! the saga and the projector consume it, several worker processes share the partitions, and
//! `/readyz` reports brokers that do not answer.
//!
//! Against a real Kafka-protocol broker when `HERMES_TEST_KAFKA` names one (`.ci/run` starts
//! Tansu; each test then makes its own topic with `hermes kafka init`'s code), otherwise against
//! librdkafka's mock broker (`MockCluster`) in this process.

use crate::harness::{self, TestApp, WITHIN};
use hermes::app::{self, Roles, RunningApp};
use hermes_adapters::mock::{self, MockProviderConfig, MockProviderHandle};
use hermes_infra::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const PARTITIONS: i32 = 4;
/// A process that only answers the API: events are appended, nothing reads them.
const API_ONLY: Roles = Roles {
    api: true,
    saga: false,
    projector: false,
    timers: false,
    relay: false,
    webhooks: false,
};
const SECRET: &str = "kafka-test-mock-secret";

/// The test's broker and topic (and consumer groups of its own, on a shared broker).
pub(crate) struct TestKafka {
    /// The mock broker, when there is no real one. Not `Send`: it stays in the test's future.
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) group_prefix: String,
}

impl TestKafka {
    pub(crate) async fn start() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let topic = format!("hermes.events.{id}");
        let group_prefix = format!("hermes-test-{id}");
        match std::env::var("HERMES_TEST_KAFKA") {
            Ok(brokers) => {
                let kafka = TestKafka {
                    mock: None,
                    brokers,
                    topic,
                    group_prefix,
                };
                let created = hermes_infra::kafka::admin::init(&kafka.config())
                    .await
                    .expect("kafka init");
                assert_eq!(created, hermes_infra::kafka::admin::Init::Created);
                kafka
            }
            Err(_) => Self::mock(),
        }
    }

    /// On librdkafka's mock broker whatever `HERMES_TEST_KAFKA` says: for faults only it can
    /// inject (a broker going down).
    pub(crate) fn mock() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let topic = format!("hermes.events.{id}");
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(&topic, PARTITIONS, 1).expect("topic");
        TestKafka {
            brokers: mock.bootstrap_servers(),
            mock: Some(mock),
            topic,
            group_prefix: format!("hermes-test-{id}"),
        }
    }

    fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        self.mock.as_ref().expect("a mock broker")
    }

    fn config(&self) -> KafkaConfig {
        let mut args = hermes::config::KafkaArgs::off();
        self.configure(&mut args);
        args.config().expect("brokers given")
    }

    /// Points a Hermes at this broker and topic, with a session short enough for a test.
    pub(crate) fn configure(&self, args: &mut hermes::config::KafkaArgs) {
        args.kafka_brokers = Some(self.brokers.clone());
        args.kafka_topic = self.topic.clone();
        args.kafka_partitions = PARTITIONS;
        args.kafka_group_prefix = self.group_prefix.clone();
        args.kafka_session_timeout_ms = 6000;
    }
}

fn delivered_sms(i: usize) -> Value {
    // 1000 and up: none of the mock's special endings (0001 rejected, 0006 hangs, 0008, 0009).
    harness::message(
        json!({"phone": format!("+1415555{:04}", 1000 + i)}),
        &[("sms", 60)],
    )
}

fn falls_back_to_email(i: usize) -> Value {
    // 0009: the SMS is undelivered, the email is delivered.
    harness::message(
        json!({"phone": "+15005550009", "email": format!("user{i}@example.com")}),
        &[("sms", 60), ("email", 60)],
    )
}

/// Dispatches per step of a message, from its audit trail.
fn dispatches_per_step(events: &[Value]) -> HashMap<u64, usize> {
    let mut per_step = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "AttemptDispatched") {
        let step = e["data"]["step_index"].as_u64().expect("step_index");
        *per_step.entry(step).or_insert(0) += 1;
    }
    per_step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_run_over_kafka_and_the_topic_holds_every_event_keyed_by_message() {
    let kafka = TestKafka::start().await;
    let app = TestApp::spawn_roles(Roles::all_for(true), |a| kafka.configure(&mut a.kafka)).await;

    let mut ids = Vec::new();
    for i in 0..24 {
        let body = if i % 3 == 0 {
            falls_back_to_email(i)
        } else {
            delivered_sms(i)
        };
        ids.push(app.send(&body).await);
    }
    // Delivered means the saga dispatched from Kafka and the projector projected from Kafka.
    for id in &ids {
        let m = app.wait_for_status(id, "delivered", WITHIN).await;
        let events = app.events(id).await;
        for (step, n) in dispatches_per_step(&events) {
            assert_eq!(n, 1, "message {id} step {step} dispatched {n} times: {m}");
        }
    }
    let stats = app.mock_stats();
    assert!(
        stats.duplicates.is_empty(),
        "sent twice: {:?}",
        stats.duplicates
    );

    // Every event of the log is on the topic, keyed by its message, with its headers.
    let logged: Vec<(Uuid, Uuid, String, Uuid)> = sqlx::query_as(
        "SELECT event_id, stream_id, event_type, tenant_id FROM events ORDER BY position",
    )
    .fetch_all(&app.app.pool)
    .await
    .unwrap();
    let on_topic = read_topic(&kafka, logged.len()).await;
    for (event_id, stream_id, event_type, tenant_id) in &logged {
        let record = on_topic
            .get(event_id)
            .unwrap_or_else(|| panic!("event {event_id} ({event_type}) is not on the topic"));
        assert_eq!(record.key, stream_id.to_string());
        assert_eq!(record.headers["event_type"], *event_type);
        assert_eq!(record.headers["tenant_id"], tenant_id.to_string());
        assert_eq!(record.headers["schema_version"], "1");
        assert_eq!(record.headers["event_id"], event_id.to_string());
    }
    // One message's events all went to one partition, in log order.
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for r in on_topic.values() {
        let p = *partition_of.entry(r.key.as_str()).or_insert(r.partition);
        assert_eq!(p, r.partition, "message {} spans partitions", r.key);
    }
    // The projector's offsets are in the database, next to its rows: past every record.
    let deadline = Instant::now() + WITHIN;
    loop {
        let stored: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM kafka_offsets
              WHERE consumer = 'message-views'",
        )
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
        if stored >= logged.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offsets stored: {stored}, events: {}",
            logged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

struct TopicRecord {
    partition: i32,
    key: String,
    headers: HashMap<String, String>,
}

/// Reads the topic from the start until `expected` distinct events were seen, by event id.
async fn read_topic(kafka: &TestKafka, expected: usize) -> HashMap<Uuid, TopicRecord> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("{}.reader", kafka.group_prefix))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&[kafka.topic.as_str()]).unwrap();
    let deadline = Instant::now() + WITHIN;
    let mut seen = HashMap::new();
    while seen.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events on the topic",
            seen.len()
        );
        let next = tokio::task::block_in_place(|| {
            consumer.poll(Duration::from_millis(200)).map(|r| {
                let m = r.expect("record");
                let headers: HashMap<String, String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value =
                                    h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                (h.key.to_owned(), value.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                (m.partition(), key, headers)
            })
        });
        if let Some((partition, key, headers)) = next {
            let event_id: Uuid = headers["event_id"].parse().unwrap();
            seen.insert(
                event_id,
                TopicRecord {
                    partition,
                    key,
                    headers,
                },
            );
        }
    }
    seen
}

/// A Hermes process on an existing database, with `roles`, its receipts and sends going through
/// the shared mock provider, and receipts addressed to `public_url` (the API process).
async fn process(
    database_url: &str,
    kafka: &TestKafka,
    roles: Roles,
    mock: &MockProviderHandle,
    public_url: Option<String>,
) -> RunningApp {
    let mut args = harness::server_args(database_url);
    kafka.configure(&mut args.kafka);
    args.mock_provider_url = Some(mock.base_url());
    args.mock_provider_secret = Some(SECRET.to_owned());
    args.public_url = public_url;
    app::start(&args, roles).await.expect("hermes starts")
}

/// One API process and two workers; one worker stops mid-run (its tasks and consumer dropped, as
/// in a crash). The other takes its partitions: every message ends, none failed but through the
/// in-doubt path, and the provider got each attempt once and each step of a message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_one_may_stop_mid_run() {
    const MESSAGES: usize = 150;
    const STEP_TIMEOUT_SECONDS: u64 = 15;
    let kafka = TestKafka::start().await;
    let mock = mock::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockProviderConfig {
            receipt_delay: Duration::from_millis(20),
            secret: SECRET.to_owned(),
        },
    )
    .await;
    let database_url = harness::fresh_database().await;
    let api_roles = Roles {
        api: true,
        relay: true,
        timers: true,
        saga: false,
        projector: false,
        webhooks: false,
    };
    let workers = Roles {
        saga: true,
        projector: true,
        api: false,
        relay: false,
        timers: false,
        webhooks: false,
    };
    let api = process(&database_url, &kafka, api_roles, &mock, None).await;
    let tenant = hermes_infra::tenants::create_tenant(&api.pool, "t")
        .await
        .unwrap();
    let first = process(
        &database_url,
        &kafka,
        workers,
        &mock,
        Some(api.base_url.clone()),
    )
    .await;
    let second = process(
        &database_url,
        &kafka,
        workers,
        &mock,
        Some(api.base_url.clone()),
    )
    .await;
    let client = hermes_adapters::http::client();

    for i in 0..MESSAGES {
        // A short step: an attempt the stopped worker left in doubt settles at its timeout.
        let mut body = delivered_sms(i);
        body["cascade"][0]["timeout_seconds"] = json!(STEP_TIMEOUT_SECONDS);
        let r = client
            .post(format!("{}/v1/messages", api.base_url))
            .bearer_auth(&tenant.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // A third of the way, the first worker goes.
    let pool = api.pool.clone();
    let count = |status: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM message_views WHERE status = $1")
                .bind(status)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + WITHIN;
    while count("delivered").await < (MESSAGES / 3) as i64 {
        assert!(
            Instant::now() < deadline,
            "a third was not delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);

    // Every message ends: delivered, or failed because its only attempt was in flight at the
    // stop (in doubt, never sent again) and its step timed out.
    let deadline = Instant::now() + WITHIN + Duration::from_secs(STEP_TIMEOUT_SECONDS);
    loop {
        let (delivered, failed) = (count("delivered").await, count("failed").await);
        if delivered + failed == MESSAGES as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} delivered, {failed} failed of {MESSAGES}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A failed message's only attempt was in flight at the stop, and the tenant sees it in doubt:
    // marked when the other worker read its dispatch again, or at its step's timeout when that
    // came first (a slow takeover), since no answer was ever recorded.
    let failed: Vec<Uuid> =
        sqlx::query_scalar("SELECT message_id FROM message_views WHERE status = 'failed'")
            .fetch_all(&api.pool)
            .await
            .unwrap();
    for id in failed {
        let view: Value = client
            .get(format!("{}/v1/messages/{id}", api.base_url))
            .bearer_auth(&tenant.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let attempts = view["attempts"].as_array().expect("attempts");
        assert!(
            attempts.len() == 1 && attempts[0]["in_doubt_at"].is_string(),
            "failed with no attempt in doubt: {view}"
        );
    }
    let stats = mock.stats();
    assert!(
        stats.duplicates.is_empty(),
        "sent twice: {:?}",
        stats.duplicates
    );
    // Per message and step, one dispatch recorded: no second attempt reached the provider.
    let twice: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*) FROM events WHERE event_type = 'AttemptDispatched'
          GROUP BY stream_id, payload->>'step_index' HAVING count(*) > 1",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert!(twice.is_empty(), "steps dispatched twice: {twice:?}");
    assert!(stats.attempts <= MESSAGES as u64, "{stats:?}");
    assert!(
        stats.attempts >= count("delivered").await as u64,
        "{stats:?}"
    );
    drop(second);
}

/// The broker goes down mid-run: the API goes on accepting (the log is the source of truth),
/// `/readyz` says the broker is gone, and once it is back every message is delivered, none sent
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_delays_messages_and_loses_none() {
    const OUTAGE: Duration = Duration::from_secs(8);
    let kafka = TestKafka::mock();
    let app = TestApp::spawn_roles(Roles::all_for(true), |a| kafka.configure(&mut a.kafka)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(app.send(&delivered_sms(i)).await);
    }
    app.wait_for_status(&ids[0], "delivered", WITHIN).await;

    kafka.cluster().broker_down(1).expect("broker down");
    let down_at = Instant::now();
    for i in 10..40 {
        ids.push(app.send(&delivered_sms(i)).await);
    }
    // Ready no more, within the probe's own timeout.
    let deadline = Instant::now() + WITHIN;
    loop {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The outage lasts as long as the scenario says, whatever happens meanwhile.
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    kafka.cluster().broker_up(1).expect("broker up");

    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    let stats = app.mock_stats();
    assert!(
        stats.duplicates.is_empty(),
        "sent twice: {:?}",
        stats.duplicates
    );
    assert_eq!(stats.attempts, ids.len() as u64, "{stats:?}");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_brokers_that_do_not_answer() {
    // Nothing listens on port 1.
    let app = TestApp::spawn_roles(API_ONLY, |a| {
        a.kafka.kafka_brokers = Some("127.0.0.1:1".to_owned());
    })
    .await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "not_ready");
    assert!(
        problem["detail"].as_str().unwrap().contains("Kafka"),
        "{problem}"
    );
    // The API still takes messages: the log is the source of truth, the relay catches up later.
    let r = app.post_message(&delivered_sms(1)).await;
    assert_eq!(r.status(), 202);
}

/// A topic nobody created is reported (and the probe does not create it on the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_missing_topic() {
    let kafka = TestKafka::start().await;
    let app = TestApp::spawn_roles(API_ONLY, |a| {
        kafka.configure(&mut a.kafka);
        a.kafka.kafka_topic = format!("{}.never-created", kafka.topic);
    })
    .await;
    for _ in 0..2 {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["code"], "not_ready");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("hermes kafka init"),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn the_relay_role_without_kafka_is_refused_at_start() {
    let database_url = harness::fresh_database().await;
    let args = harness::server_args(&database_url);
    let err = app::start(
        &args,
        Roles {
            relay: true,
            ..Roles::all()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("KAFKA_BROKERS"), "{err}");
}

/// A record on the topic that is not an event (another producer's, a corrupted one) is skipped:
/// every partition moves on past it, for the saga and for the projector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_is_not_an_event_is_skipped_and_its_partition_moves_on() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let kafka = TestKafka::start().await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()
        .unwrap();
    for partition in 0..PARTITIONS {
        producer
            .send(
                FutureRecord::<str, str>::to(&kafka.topic)
                    .partition(partition)
                    .payload("not an event"),
                Duration::from_secs(5),
            )
            .await
            .expect("produced");
    }
    let app = TestApp::spawn_roles(Roles::all_for(true), |a| kafka.configure(&mut a.kafka)).await;
    // Enough messages that every partition gets some (the key spreads them).
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(app.send(&delivered_sms(i)).await);
    }
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    let partitions: HashSet<i32> = sqlx::query_scalar(
        "SELECT partition FROM kafka_offsets WHERE consumer = 'message-views' AND next_offset > 1",
    )
    .fetch_all(&app.app.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "partitions past their first record: {partitions:?}"
    );
}

/// A record the broker refuses sends the relay back to its checkpoint: the checkpoint does not
/// pass the refused batch, and once the broker takes records again every event of the log is on
/// the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_sends_the_relay_back_to_its_checkpoint_and_no_event_is_lost() {
    // Permanent (librdkafka does not retry it): the records of these produce requests fail.
    relay_recovers_from(
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        3,
    )
    .await;
}

/// An answer that breaks the idempotent producer's sequence makes it fail for good (librdkafka's
/// fatal error: every later send fails too). The relay builds a new producer and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_fails_for_good_is_replaced_and_no_event_is_lost() {
    relay_recovers_from(
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        1,
    )
    .await;
}

/// The broker answers the relay's first `times` produce requests with `error`: the relay (run by
/// hand here, so the test sees the failure it surfaces) must report it without moving its
/// checkpoint to the head of the log, then catch up once the broker takes records again, with
/// every event of the log on the topic.
async fn relay_recovers_from(error: RDKafkaRespErr, times: usize) {
    use hermes_infra::kafka::relay::{self, Relay};
    use hermes_infra::subscription::Subscriber;
    let kafka = TestKafka::mock();
    let app = TestApp::spawn_roles(API_ONLY, |a| kafka.configure(&mut a.kafka)).await;
    for i in 0..20 {
        app.send(&delivered_sms(i)).await;
    }
    let pool = &app.app.pool;
    let logged: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT event_id, position FROM events ORDER BY position")
            .fetch_all(pool)
            .await
            .unwrap();
    let head = logged.last().expect("events").1;
    let checkpoint = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT position FROM subscription_checkpoints WHERE name = $1",
        )
        .bind(relay::NAME)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
    };

    kafka
        .cluster()
        .request_errors(RDKafkaApiKey::Produce, &vec![error; times]);
    let mut relay = Relay::new(&kafka.config()).expect("relay");
    let deadline = Instant::now() + WITHIN;
    let failure = loop {
        match relay.poll(pool).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    checkpoint().await < head,
                    "the relay's checkpoint reached the head of the log with records refused"
                );
                assert!(Instant::now() < deadline, "no refused record surfaced");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(
        failure.to_string().contains("did not take an event"),
        "{failure:#}"
    );
    assert!(
        checkpoint().await < head,
        "the checkpoint passed the refused batch"
    );

    // The broker takes records again: from the checkpoint, everything reaches the topic.
    kafka.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let deadline = Instant::now() + WITHIN;
    while checkpoint().await < head {
        let polled = relay.poll(pool).await;
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up (last poll: {polled:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_topic = read_topic(&kafka, logged.len()).await;
    for (event_id, _) in &logged {
        assert!(
            on_topic.contains_key(event_id),
            "event {event_id} is not on the topic"
        );
    }
}
