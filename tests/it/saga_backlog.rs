//! No message fails unsent (issue 12, item 1): a step's timeout counts from its attempt's dispatch,
//! so a message that waits for a worker (the saga stopped, or behind under a burst) is sent when
//! the worker comes, however long that took. Only its TTL ends it unsent, and its reason says so.
//!
//! Hermes runs here as two processes would: one with the API, the projector and the timers, and,
//! later, one with the saga.

use crate::harness::{TestApp, WITHIN, message, server_args};
use hermes::app::{self, Roles, RunningApp};
use hermes::config::ServerArgs;
use serde_json::{Value, json};
use std::time::Duration;

const MOCK_SECRET: &str = "saga-backlog-test-secret";
const STEP_TIMEOUT_S: u32 = 1;

/// Hermes without its saga: messages are accepted, projected and timed, but nobody sends them.
async fn without_saga(configure: impl FnOnce(&mut ServerArgs)) -> TestApp {
    TestApp::spawn_roles(Roles::parse("api,projector,timers").unwrap(), |args| {
        args.mock_provider_secret = Some(MOCK_SECRET.to_owned());
        configure(args);
    })
    .await
}

/// A saga worker for `api`'s database; its mock provider posts receipts to `api`.
async fn saga_worker(api: &TestApp) -> RunningApp {
    let mut args = server_args(&api.database_url);
    args.mock_provider_secret = Some(MOCK_SECRET.to_owned());
    args.public_url = Some(api.app.base_url.clone());
    app::start(&args, Roles::parse("saga").unwrap())
        .await
        .expect("the saga worker starts")
}

fn event_types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_while_the_saga_is_stopped_are_sent_once_and_delivered() {
    const MESSAGES: usize = 40;
    let api = without_saga(|_| {}).await;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let phone = format!("+1415555{:04}", 1000 + i);
        ids.push(
            api.send(&message(
                json!({ "phone": phone }),
                &[("sms", STEP_TIMEOUT_S)],
            ))
            .await,
        );
    }
    // The saga stays away for over twice the step timeout: the timers role runs all along.
    tokio::time::sleep(Duration::from_secs(u64::from(STEP_TIMEOUT_S) * 2 + 1)).await;
    for id in &ids {
        let m = api.message(id).await.expect("the message");
        assert_eq!(m["status"], "accepted", "{m}");
        assert!(m["current_step"]["timeout_at"].is_null(), "{m}");
        assert_eq!(
            event_types(&api.events(id).await),
            ["MessageAccepted", "StepStarted"]
        );
    }

    let worker = saga_worker(&api).await;
    for id in &ids {
        let m = api.wait_for_status(id, "delivered", WITHIN).await;
        let attempts = m["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{m}");
        // The step's clock started at its dispatch: its timeout is a step's length after it.
        let dispatched: chrono::DateTime<chrono::Utc> = attempts[0]["dispatched_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let events = api.events(id).await;
        let step_timeout_at = events
            .iter()
            .find(|e| e["type"] == "AttemptDispatched")
            .and_then(|e| e["data"]["step_timeout_at"].as_str())
            .expect("the dispatch starts the step's clock");
        let step_timeout_at: chrono::DateTime<chrono::Utc> = step_timeout_at.parse().unwrap();
        assert_eq!(
            step_timeout_at - dispatched,
            chrono::Duration::seconds(i64::from(STEP_TIMEOUT_S))
        );
    }
    // Sent once each, as the provider counts them.
    let stats = worker.mock.as_ref().expect("the worker's mock").stats();
    assert_eq!(stats.sends, MESSAGES as u64);
    assert_eq!(stats.attempts, MESSAGES as u64);
    assert!(stats.duplicates.is_empty(), "{:?}", stats.duplicates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_ttl_ends_a_message_no_worker_took_and_its_reason_says_so() {
    let api = without_saga(|_| {}).await;
    let mut body = message(json!({"phone": "+14155550100"}), &[("sms", STEP_TIMEOUT_S)]);
    body["ttl_seconds"] = json!(2);
    let id = api.send(&body).await;
    let m = api.wait_for_status(&id, "expired", WITHIN).await;
    assert_eq!(m["reason"], "ttl_expired_before_dispatch");
    assert_eq!(m["attempts"], json!([]));
    assert_eq!(
        event_types(&api.events(&id).await),
        ["MessageAccepted", "StepStarted", "MessageExpired"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_messages_are_refused_while_accepted_ones_wait_too_long_for_their_dispatch() {
    let api = without_saga(|args| args.max_backlog_age_ms = Some(1_000)).await;
    let sms = message(json!({"phone": "+14155550100"}), &[("sms", 30)]);
    let first = api.send(&sms).await;
    // No saga: the backlog ages, and once it is over a second old the door closes.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let refused = loop {
        let r = api.post_message(&sms).await;
        if r.status() == 503 {
            break r;
        }
        assert_eq!(r.status(), 202, "accepted until the backlog is too old");
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "overloaded");
    let metrics = api.metrics_text().await;
    assert!(metrics.contains("hermes_dispatch_backlog_age_seconds"));

    // A worker comes: the backlog drains, what was accepted is delivered, the door opens again.
    let _worker = saga_worker(&api).await;
    api.wait_for_status(&first, "delivered", WITHIN).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let r = api.post_message(&sms).await;
        if r.status() == 202 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(tokio::time::Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
