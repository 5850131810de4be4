//! A W3C `traceparent` is kept in the events' metadata; anything else in that header is dropped.

use crate::harness::{TestApp, message};
use serde_json::{Value, json};
use std::time::Duration;

async fn traceparent_stored(app: &TestApp, header: &str) -> Value {
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.api_key)
        .header("traceparent", header)
        .json(&message(json!({"phone": "+15550101234"}), &[("sms", 30)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "a bad traceparent never refuses a message");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for(&id, Duration::from_secs(10), |_| true).await;
    let events = app.events(&id).await;
    let accepted = events.first().expect("the accept event");
    accepted["metadata"]["traceparent"].clone()
}

#[tokio::test]
async fn only_a_valid_traceparent_is_stored() {
    let app = TestApp::spawn().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(traceparent_stored(&app, valid).await, valid);
    for invalid in [
        "not a trace",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    ] {
        let stored = traceparent_stored(&app, invalid).await;
        assert!(stored.is_null(), "{invalid:?} stored as {stored}");
    }
}
