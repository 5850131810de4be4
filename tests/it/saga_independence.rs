//! Independent saga work (issue 12, item 3): one message's slow provider call holds up that
//! message only. The mock provider hangs on numbers ending in `0006` (the call ends at the
//! plugin's fetch deadline, 10 s, in doubt); other messages go on meanwhile, and the dispatch
//! backlog does not count the hanging call as overload.

use crate::harness::{TestApp, WITHIN, message};
use crate::kafka::TestKafka;
use crate::providers::{account, install_accounts};
use chrono::{DateTime, Utc};
use hermes_command::backlog;
use hermes_infra::provider_accounts::SealingKey;
use serde_json::{Value, json};
use std::time::Duration;

const OTHERS: usize = 20;

fn recorded_at(events: &[Value], event_type: &str) -> Option<DateTime<Utc>> {
    events
        .iter()
        .find(|e| e["type"] == event_type)
        .map(|e| e["recorded_at"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_call_holds_up_only_its_own_message() {
    let app = TestApp::spawn().await;
    let hanging = app
        .send(&message(json!({"phone": "+14155550006"}), &[("sms", 60)]))
        .await;
    // Its attempt is dispatched, and the provider call under way.
    app.wait_for(&hanging, WITHIN, |m| {
        m["attempts"]
            .as_array()
            .is_some_and(|a| a.first().is_some_and(|a| a["status"] == "dispatching"))
    })
    .await;

    // Messages accepted while it hangs are sent and delivered; with a saga that waited for its
    // whole batch they would wait for the hanging call's deadline.
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let phone = format!("+1415555{:04}", 2000 + i);
        others.push(
            app.send(&message(json!({ "phone": phone }), &[("sms", 60)]))
                .await,
        );
    }
    let mut delivered_at = Vec::new();
    for id in &others {
        app.wait_for_status(id, "delivered", WITHIN).await;
        let events = app.events(id).await;
        delivered_at.push(recorded_at(&events, "MessageCompleted").expect("completed"));
    }

    // The hanging call ends in doubt at its deadline; meanwhile the backlog stays small, since
    // nothing waits for a worker.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut worst_backlog = Duration::ZERO;
    let in_doubt_at = loop {
        let events = app.events(&hanging).await;
        if let Some(at) = recorded_at(&events, "AttemptInDoubt") {
            break at;
        }
        worst_backlog = worst_backlog.max(
            backlog::oldest_unhandled_age(&app.app.pool, hermes_command::saga::STARTED_NAME)
                .await
                .unwrap(),
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (id, at) in others.iter().zip(&delivered_at) {
        assert!(
            *at < in_doubt_at,
            "{id} was delivered at {at}, after the hanging call ended at {in_doubt_at}"
        );
    }
    assert!(
        worst_backlog < Duration::from_secs(5),
        "the hanging call counted as backlog: {worst_backlog:?}"
    );
}

/// The bulkhead per account: an SMS account whose every call hangs holds at most its share of
/// the saga's workers, so an email account's messages, accepted after more hanging SMS than
/// there are workers, are still sent at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_account_does_not_delay_another_accounts_messages() {
    hanging_account(None).await;
}

/// The same on Kafka: the worker's window and bulkheads are the same behind a consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_account_does_not_delay_another_accounts_messages_on_kafka() {
    hanging_account(Some(&TestKafka::start().await)).await;
}

async fn hanging_account(kafka: Option<&TestKafka>) {
    const SECRET: &str = "bulkhead-test-mock-secret";
    // More hanging messages than the saga has workers (240).
    const HANGING: usize = 260;
    const EMAILS: usize = 10;
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_over(kafka, |args| {
        args.secret_key = Some(key_hex.clone());
        args.mock_provider_secret = Some(SECRET.to_owned());
    })
    .await;
    let base_url = app.app.mock.as_ref().expect("the mock").base_url();
    let config = |channels| {
        [
            ("base_url", base_url.as_str()),
            ("secret", SECRET),
            ("channels", channels),
        ]
    };
    install_accounts(
        &app,
        &SealingKey::from_hex(&key_hex).unwrap(),
        &[
            account("sms-hanging", "mock", 10, &config("sms")),
            account("email-fast", "mock", 20, &config("email")),
        ],
    )
    .await;

    let mut hanging = Vec::new();
    for i in 0..HANGING {
        let phone = format!("+1415{i:06}0006");
        hanging.push(
            app.send(&message(json!({ "phone": phone }), &[("sms", 60)]))
                .await,
        );
    }
    // The saga has taken up the hanging account's messages (as many as it lets it have).
    let deadline = tokio::time::Instant::now() + WITHIN;
    while app.mock_stats().sends < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hanging sends never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut emails = Vec::new();
    for i in 0..EMAILS {
        let email = format!("ada+{i}@example.com");
        emails.push(
            app.send(&message(json!({ "email": email }), &[("email", 60)]))
                .await,
        );
    }
    let mut delivered_at = Vec::new();
    for id in &emails {
        app.wait_for_status(id, "delivered", WITHIN).await;
        delivered_at.push(recorded_at(&app.events(id).await, "MessageCompleted").unwrap());
    }
    // The first hanging calls end at their deadline; every email was delivered before.
    let first_in_doubt = loop {
        let at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(recorded_at) FROM events WHERE event_type = 'AttemptInDoubt'",
        )
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
        if let Some(at) = at {
            break at;
        }
        assert!(
            tokio::time::Instant::now() < deadline + WITHIN,
            "no hanging call ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (id, at) in emails.iter().zip(&delivered_at) {
        assert!(
            *at < first_in_doubt,
            "{id} was delivered at {at}, after the first hanging call ended at {first_in_doubt}"
        );
    }
}
