//! Dispatch backlog on Kafka (issue 12, items 1 and 5): what waits for dispatch is inside the saga
//! workers and behind their consumer positions, so the workers report it and the API's measure
//! reads their reports. With no worker running for over twice the step timeout, the door closes
//! (503 `overloaded`), nothing accepted fails unsent, and once a worker is back every message is
//! sent once and delivered, and the door opens again.

use crate::harness::{self, TestApp, WITHIN, message};
use crate::kafka::TestKafka;
use hermes::app::{self, Roles, RunningApp};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

const SECRET: &str = "kafka-backlog-test-secret";
const STEP_TIMEOUT_SECONDS: u32 = 1;
const MAX_BACKLOG_AGE_MS: u64 = 2_000;

/// The API, the relay, the timers and the projector, with the embedded mock provider; no saga.
async fn api_without_saga(kafka: &TestKafka) -> TestApp {
    TestApp::spawn_roles(
        Roles::parse("api,relay,timers,projector").unwrap(),
        |args| {
            kafka.configure(&mut args.kafka);
            args.mock_provider_secret = Some(SECRET.to_owned());
            args.max_backlog_age_ms = Some(MAX_BACKLOG_AGE_MS);
        },
    )
    .await
}

/// A saga worker process: it sends through the API's mock provider, whose receipts go to the API.
async fn saga_worker(api: &TestApp, kafka: &TestKafka) -> RunningApp {
    let mut args = harness::server_args(&api.database_url);
    kafka.configure(&mut args.kafka);
    args.mock_provider_url = Some(api.app.mock.as_ref().expect("the mock").base_url());
    args.mock_provider_secret = Some(SECRET.to_owned());
    args.public_url = Some(api.app.base_url.clone());
    app::start(&args, Roles::parse("saga").unwrap())
        .await
        .expect("the saga worker starts")
}

fn sms(i: usize) -> Value {
    message(
        json!({"phone": format!("+1415555{:04}", 4000 + i)}),
        &[("sms", STEP_TIMEOUT_SECONDS)],
    )
}

async fn statuses(api: &TestApp, ids: &[Uuid]) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM message_views WHERE message_id = ANY($1)")
        .bind(ids)
        .fetch_all(&api.app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_saga_worker_the_door_closes_and_queued_messages_are_sent_once_when_one_comes() {
    let kafka = TestKafka::start().await;
    let api = api_without_saga(&kafka).await;
    let first = saga_worker(&api, &kafka).await;
    let warm = api.send(&sms(0)).await;
    api.wait_for_status(&warm, "delivered", WITHIN).await;
    let reports: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_worker_backlog")
        .fetch_one(&api.app.pool)
        .await
        .unwrap();
    assert_eq!(reports, 1, "the worker reports what it holds");

    // The only worker goes. Messages keep coming until the door closes: the worker is silent,
    // none other reports, and events reached the topic since its last word.
    drop(first);
    let mut ids: Vec<Uuid> = Vec::new();
    let deadline = tokio::time::Instant::now() + WITHIN;
    let refused = loop {
        let r = api.post_message(&sms(1 + ids.len())).await;
        if r.status() == 503 {
            break r;
        }
        assert_eq!(r.status(), 202, "accepted until the backlog is too old");
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().parse().unwrap());
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!ids.is_empty(), "the door closed before any message waited");
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "overloaded", "{problem}");

    // No worker for over twice the step timeout: nothing ended, nothing was sent.
    let sends_before = api.mock_stats().sends;
    tokio::time::sleep(Duration::from_secs(u64::from(STEP_TIMEOUT_SECONDS) * 2 + 1)).await;
    let waiting = statuses(&api, &ids).await;
    assert_eq!(waiting.len(), ids.len());
    assert!(waiting.iter().all(|s| s == "accepted"), "{waiting:?}");
    assert_eq!(api.mock_stats().sends, sends_before);

    // A worker comes: every message is sent once and delivered, and the door opens again.
    let _second = saga_worker(&api, &kafka).await;
    for id in &ids {
        let m = api
            .wait_for_status(&id.to_string(), "delivered", WITHIN)
            .await;
        assert_eq!(m["attempts"].as_array().unwrap().len(), 1, "{m:#}");
    }
    let stats = api.mock_stats();
    assert_eq!(stats.sends, sends_before + ids.len() as u64);
    assert!(stats.duplicates.is_empty(), "{:?}", stats.duplicates);
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let r = api.post_message(&sms(1 + ids.len())).await;
        if r.status() == 202 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(tokio::time::Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
