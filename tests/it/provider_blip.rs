//! A provider blip does not fail messages (issue 12, item 2): a retryable refusal (here 503s) with
//! no other account to fail over to is retried with backoff within the step's time, on the same
//! step, and every message is sent once the provider is back.

use crate::harness::{TestApp, WITHIN, message};
use crate::kafka::TestKafka;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use hermes_adapters::mock::{self, MockProviderConfig, MockProviderHandle};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const SECRET: &str = "provider-blip-test-secret";

/// The provider's front door: answers 503 while `down`, else passes sends to the mock.
struct FrontDoor {
    mock: MockProviderHandle,
    http: reqwest::Client,
    down: AtomicBool,
    refused: AtomicUsize,
}

async fn send(
    State(door): State<Arc<FrontDoor>>,
    body: Bytes,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    Bytes,
) {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    if door.down.load(Ordering::SeqCst) {
        door.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            Bytes::from_static(b"{}"),
        );
    }
    let r = door
        .http
        .post(format!("{}/messages", door.mock.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the mock answers");
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (status, json, r.bytes().await.unwrap())
}

async fn start_front_door() -> (String, Arc<FrontDoor>) {
    let mock = mock::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockProviderConfig {
            receipt_delay: Duration::from_millis(20),
            secret: SECRET.into(),
        },
    )
    .await;
    let door = Arc::new(FrontDoor {
        mock,
        http: hermes_adapters::http::client(),
        down: AtomicBool::new(true),
        refused: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/messages", axum::routing::post(send))
        .with_state(door.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, door)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_refused_during_a_provider_outage_are_retried_on_their_step_and_delivered() {
    provider_outage(None).await;
}

/// The same on Kafka: the retries are the saga's, whichever transport hands it the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_refused_during_a_provider_outage_are_retried_on_their_step_and_delivered_on_kafka()
 {
    provider_outage(Some(&TestKafka::start().await)).await;
}

async fn provider_outage(kafka: Option<&TestKafka>) {
    const MESSAGES: usize = 10;
    let (url, door) = start_front_door().await;
    let app = TestApp::spawn_over(kafka, |args| {
        args.mock_provider_url = Some(url.clone());
        args.mock_provider_secret = Some(SECRET.into());
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let to = json!({"phone": format!("+1415555{:04}", 3000 + i), "email": "ada@example.com"});
        ids.push(app.send(&message(to, &[("sms", 60), ("email", 60)])).await);
    }
    // The outage lasts until every message was refused twice: each has been retried once.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while door.refused.load(Ordering::SeqCst) < 2 * MESSAGES {
        assert!(tokio::time::Instant::now() < deadline, "sends never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    door.down.store(false, Ordering::SeqCst);

    for id in &ids {
        let m = app.wait_for_status(id, "delivered", WITHIN).await;
        let attempts = m["attempts"].as_array().unwrap();
        let (last, refused) = attempts.split_last().unwrap();
        // Every attempt on the SMS step: the cascade never moved on to email.
        assert!(attempts.iter().all(|a| a["channel"] == "sms"), "{m:#}");
        assert_eq!(last["status"], "delivered", "{m:#}");
        assert!(!refused.is_empty(), "{m:#}");
        for a in refused {
            assert_eq!(a["status"], "rejected", "{m:#}");
            assert_eq!(a["error"]["code"], "http_503", "{m:#}");
        }
        let events = app.events(id).await;
        let retries = events.iter().filter(|e| e["type"] == "RetryDue").count();
        assert_eq!(retries, refused.len(), "{events:#?}");
    }
    // Sent once each, as the provider counts them.
    let stats = door.mock.stats();
    assert_eq!(stats.sends, MESSAGES as u64);
    assert!(stats.duplicates.is_empty(), "{:?}", stats.duplicates);
}
