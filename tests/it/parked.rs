//! A poison event is parked and the stream goes on (issue 12, item 2): an event the saga (or the
//! projector) cannot handle is stored with its error, listed by `hermes parked list`, tried again
//! on `hermes parked retry`, and never stops the messages behind it.

use crate::harness::{TestApp, WITHIN, message};
use crate::kafka::TestKafka;
use serde_json::{Value, json};
use uuid::Uuid;

/// A `StepStarted` whose payload cannot be decoded, on a stream of its own.
async fn write_poison(app: &TestApp) -> Uuid {
    let event_id = Uuid::new_v4();
    sqlx::query(
        r#"INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_id,
                              event_type, schema_version, payload)
           VALUES ($1, 'message', $2, 1, $3, 'StepStarted', 1, '{"step_index": "zero"}')"#,
    )
    .bind(app.tenant_id)
    .bind(Uuid::new_v4())
    .bind(event_id)
    .execute(&app.app.pool)
    .await
    .unwrap();
    event_id
}

/// `(attempts, retry_requested)` of the saga's parked row for `event_id`, once there is one.
async fn parked_row(app: &TestApp, event_id: Uuid) -> Option<(i32, bool, String)> {
    sqlx::query_as(
        "SELECT attempts, retry_requested, error FROM parked_events
          WHERE subscriber = 'cascade-saga' AND event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(&app.app.pool)
    .await
    .unwrap()
}

/// `hermes <args>` against the app's database; its stdout, asserting it succeeded.
async fn hermes(app: &TestApp, args: &[&str]) -> String {
    let out = crate::api::hermes_cli(&app.database_url, args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_listed_and_retried_while_messages_behind_it_are_delivered() {
    poison_event(None).await;
}

/// The same on Kafka: the relay streams the poison event, and both consumers park it and go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_listed_and_retried_while_messages_behind_it_are_delivered_on_kafka()
 {
    poison_event(Some(&TestKafka::start().await)).await;
}

async fn poison_event(kafka: Option<&TestKafka>) {
    let app = TestApp::spawn_over(kafka, |_| {}).await;
    let poison = write_poison(&app).await;
    let id = app
        .send(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    app.wait_for_status(&id, "delivered", WITHIN).await;

    let deadline = tokio::time::Instant::now() + WITHIN;
    let (attempts, _, error) = loop {
        if let Some(row) = parked_row(&app, poison).await {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "never parked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(attempts, 1);
    assert!(error.contains("decoded"), "{error}");
    // The projector parked it too, and the delivered message's view is current.
    let listed: Vec<Value> = hermes(&app, &["parked", "list"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut subscribers: Vec<&str> = listed
        .iter()
        .filter(|p| p["event_id"] == poison.to_string())
        .map(|p| p["subscriber"].as_str().unwrap())
        .collect();
    subscribers.sort_unstable();
    assert_eq!(
        subscribers,
        ["cascade-saga", "message-views"],
        "{listed:#?}"
    );

    // Retried on request: it still cannot be decoded, so it is parked again, counted.
    hermes(&app, &["parked", "retry", &poison.to_string()]).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (attempts, requested, _) = parked_row(&app, poison).await.expect("still parked");
        if attempts == 2 && !requested {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And the stream still goes on.
    let after = app
        .send(&message(json!({"phone": "+14155550101"}), &[("sms", 30)]))
        .await;
    app.wait_for_status(&after, "delivered", WITHIN).await;
}
