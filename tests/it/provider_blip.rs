//! A provider blip does not fail messages (issue 12, item 2): a retryable refusal (here 503s) with
//! no other account to fail over to is retried with backoff within the step's time, on the same
//! step, and every message is sent once the provider is back.

use crate::front_door::{SECRET, start_front_door};
use crate::harness::{TestApp, WITHIN, message};
use crate::kafka::TestKafka;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    let (url, door) = start_front_door(true).await;
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
