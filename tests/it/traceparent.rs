//! A W3C `traceparent` is kept in the events' metadata, every event of the message carrying it;
//! anything else in that header is dropped.

use crate::harness::{TestApp, message};
use hermes_infra::trace_context;
use serde_json::{Value, json};
use std::time::Duration;

async fn traceparent_stored(app: &TestApp, header: &str) -> Vec<Value> {
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
    app.wait_for_status(&id, "delivered", Duration::from_secs(30))
        .await;
    app.events(&id)
        .await
        .iter()
        .map(|e| e["metadata"]["traceparent"].clone())
        .collect()
}

/// While traces are exported (`tests/it/traces.rs` installs an exporter in this process), the
/// events carry Hermes's own spans' contexts; otherwise the client's, as it came.
#[tokio::test]
async fn a_valid_traceparent_is_carried_by_every_event_of_the_message() {
    let app = TestApp::spawn().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let stored = traceparent_stored(&app, valid).await;
    assert!(
        stored.len() >= 4,
        "accepted, dispatched, sent, delivered: {stored:?}"
    );
    for traceparent in &stored {
        if trace_context::active() {
            let context = traceparent
                .as_str()
                .and_then(trace_context::parse)
                .unwrap_or_else(|| panic!("{traceparent} is not a traceparent"));
            assert_eq!(
                context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        } else {
            assert_eq!(traceparent, valid);
        }
    }
}

#[tokio::test]
async fn anything_else_in_the_header_is_never_stored() {
    let app = TestApp::spawn().await;
    for invalid in [
        "not a trace",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    ] {
        for stored in traceparent_stored(&app, invalid).await {
            // Exported, the request starts a trace of its own.
            let own =
                trace_context::active() && stored.as_str().and_then(trace_context::parse).is_some();
            assert!(stored.is_null() || own, "{invalid:?} stored as {stored}");
        }
    }
}
