//! `/metrics`: what an operator scrapes to see the cascade at work.

use crate::harness::{TestApp, message};
use serde_json::json;
use std::time::Duration;

/// The value of the first sample line starting with `series` (counters are per process, so
/// other tests' messages may add to them: only "at least" can be asserted).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_events_provider_sends_and_subscriber_lag() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    app.wait_for_status(&id, "delivered", crate::harness::WITHIN)
        .await;
    // An SMS the handset never gets, then email: the cascade falls back.
    let fell_back = app
        .send(&message(
            json!({"phone": "+14155550009", "email": "ada@example.com"}),
            &[("sms", 30), ("email", 30)],
        ))
        .await;
    app.wait_for_status(&fell_back, "delivered", crate::harness::WITHIN)
        .await;
    // The lag gauge is set by each active subscriber about once a second: wait for both.
    let lag = |s: &str| format!("hermes_subscriber_lag_events{{subscriber=\"{s}\"}}");
    let deadline = std::time::Instant::now() + crate::harness::WITHIN;
    loop {
        let text = app.metrics_text().await;
        if ["cascade-saga", "message-views"]
            .iter()
            .all(|s| sample(&text, &lag(s)).is_some())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no lag gauge in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for series in [
        "hermes_events_total{type=\"MessageAccepted\"}",
        "hermes_events_total{type=\"AttemptDispatched\"}",
        "hermes_events_total{type=\"MessageCompleted\"}",
        "hermes_provider_sends_total{provider=\"mock\",outcome=\"sent\"}",
        // What each layer of the accept pipeline cost this message.
        "hermes_auth_seconds_count",
        "hermes_accept_layer_seconds_count{layer=\"schema\"}",
        "hermes_accept_layer_seconds_count{layer=\"tenant_rules\"}",
        "hermes_accept_layer_seconds_count{layer=\"rate_limit\"}",
        "hermes_accept_layer_seconds_count{layer=\"dedup_and_store\"}",
        // The API's requests by route, and the message's whole cascade.
        "hermes_http_requests_total{route=\"POST /v1/messages\",status_class=\"2xx\"}",
        "hermes_http_request_seconds_count{route=\"POST /v1/messages\"}",
        "hermes_message_end_to_end_seconds_count{channel=\"sms\",status=\"delivered\"}",
        // Histograms have buckets, so quantiles add up across processes.
        "hermes_message_end_to_end_seconds_bucket{channel=\"sms\",status=\"delivered\",le=\"+Inf\"}",
        "hermes_dependency_up{dependency=\"postgres\"}",
        // The cascade's inner timings, and the fallback with its reason.
        "hermes_dispatch_wait_seconds_count{channel=\"sms\"}",
        "hermes_receipt_seconds_count{provider=\"mock\",status=\"delivered\"}",
        "hermes_receipt_seconds_count{provider=\"mock\",status=\"failed\"}",
        "hermes_event_store_append_seconds_count",
        "hermes_cascade_fallbacks_total{channel=\"email\",reason=\"undelivered\"}",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v >= 1.0),
            "{series} missing in:\n{text}"
        );
    }
    assert!(text.contains("hermes_accept_batch_size"));
    // This tenant's messages, accepted and delivered.
    for outcome in ["accepted", "delivered"] {
        let series = format!(
            "hermes_tenant_messages_total{{tenant=\"{}\",outcome=\"{outcome}\"}}",
            app.tenant_id
        );
        assert!(
            sample(&text, &series).is_some_and(|v| v >= 1.0),
            "{series} missing"
        );
    }
    // A refusal, counted for its tenant by its code.
    let r = app
        .post_message(&json!({"to": {"phone": "+14155550100"}, "cascade": []}))
        .await;
    assert_eq!(r.status(), 422);
    let code = r.json::<serde_json::Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = app.metrics_text().await;
    let series = format!(
        "hermes_tenant_refusals_total{{tenant=\"{}\",code=\"{code}\"}}",
        app.tenant_id
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{series} missing");
    for gauge in [
        "hermes_timers_overdue_seconds",
        "hermes_parked_events{subscriber=\"cascade-saga\"}",
    ] {
        assert!(sample(&text, gauge).is_some(), "{gauge} missing");
    }
}
