//! Causation in the audit trail (issue 10): every event names what made it happen, the request
//! (by the `X-Request-Id` its response carried), the event the saga acted on, the provider's
//! receipt or the timer, in `GET /v1/messages/{id}/events` and in `hermes audit`.

use crate::harness::{TestApp, WITHIN, message};
use serde_json::{Value, json};

/// The events, with the first whose type is `event_type`.
fn first<'a>(events: &'a [Value], event_type: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_names_its_request_event_receipt_or_timer() {
    let app = TestApp::spawn().await;
    let r = app
        .post_message(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    assert_eq!(r.status(), 202);
    let request_id = r
        .headers()
        .get("x-request-id")
        .expect("an X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let events = app.events(&id).await;

    assert_eq!(
        first(&events, "MessageAccepted")["metadata"]["cause"],
        json!({"type": "request", "request_id": request_id})
    );
    // The saga dispatched because the step started: that event, by id and type.
    let started = first(&events, "StepStarted");
    assert_eq!(
        first(&events, "AttemptDispatched")["metadata"]["cause"],
        json!({"type": "event", "event_id": started["id"], "event_type": "StepStarted"})
    );
    let receipt = events
        .iter()
        .find(|e| {
            e["metadata"]["cause"]["type"] == "receipt"
                && e["metadata"]["cause"]["status"] == "delivered"
        })
        .unwrap_or_else(|| panic!("no event caused by a delivered receipt in {events:#?}"));
    assert_eq!(receipt["metadata"]["cause"]["provider"], "mock");
    assert!(
        receipt["metadata"]["cause"]["provider_message_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("mock-")),
        "{receipt}"
    );

    // No receipt ever comes for this number: the step's timer ends the cascade.
    let silent = app
        .send(&message(json!({"phone": "+15005550008"}), &[("sms", 1)]))
        .await;
    app.wait_for_status(&silent, "failed", WITHIN).await;
    let events = app.events(&silent).await;
    let timed = events
        .iter()
        .find(|e| e["metadata"]["cause"]["type"] == "timer")
        .unwrap_or_else(|| panic!("no event caused by a timer in {events:#?}"));
    assert_eq!(
        timed["metadata"]["cause"]["timer"],
        json!({"kind": "step_timeout", "step_index": 0})
    );
    assert!(timed["metadata"]["cause"]["timer_id"].is_i64(), "{timed}");

    // What an operator reads.
    let out = app.hermes_cli(&["audit", &id]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for cause in [
        format!("<- request {request_id}"),
        "<- receipt from mock: delivered".to_owned(),
    ] {
        assert!(text.contains(&cause), "no {cause:?} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("AttemptDispatched") && l.contains("StepStarted]")),
        "the dispatch does not name the step's start:\n{text}"
    );
}
