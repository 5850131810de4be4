//! The cascade, end to end through the mock provider over real HTTP.

use crate::harness::{TestApp, message, statuses};
use hermes_adapters::mock::{SIGNATURE_HEADER, sign};
use serde_json::json;
use std::time::Duration;

use crate::harness::WITHIN;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_is_delivered_with_one_attempt() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(statuses(&m), pairs(&[("sms", "delivered")]));
    let a = &m["attempts"][0];
    assert_eq!(a["provider"], "mock");
    assert!(
        a["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("mock-")
    );
    assert!(
        a["dispatched_at"].is_string() && a["sent_at"].is_string() && a["delivered_at"].is_string()
    );
    assert_eq!(a["late"], false);
    assert_eq!(app.mock_stats().sends, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_sms_falls_back_to_email() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(
            json!({"phone": "+15005550009", "email": "ada@example.com"}),
            &[("sms", 30), ("email", 30)],
        ))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(
        statuses(&m),
        pairs(&[("sms", "failed"), ("email", "delivered")])
    );
    assert_eq!(m["attempts"][0]["error"]["code"], "undelivered");
    assert_eq!(m["attempts"][0]["step_index"], 0);
    assert_eq!(m["attempts"][1]["step_index"], 1);
    assert_eq!(m["current_step"]["index"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_without_receipt_times_out_and_falls_back_to_email() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(
            json!({"phone": "+15005550008", "email": "ada@example.com"}),
            &[("sms", 1), ("email", 30)],
        ))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(
        statuses(&m),
        pairs(&[("sms", "timed_out"), ("email", "delivered")])
    );
    let types: Vec<String> = app
        .events(&id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.contains(&"StepTimedOut".to_owned()), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_failing_exhausts_the_message() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(
            json!({"phone": "+15005550001", "email": "bounce@example.com", "push_token": "unregistered-abc"}),
            &[("sms", 30), ("email", 30), ("push", 30)],
        ))
        .await;
    let m = app.wait_for_status(&id, "failed", WITHIN).await;
    assert_eq!(m["reason"], "exhausted");
    assert_eq!(
        statuses(&m),
        pairs(&[
            ("sms", "rejected"),
            ("email", "failed"),
            ("push", "rejected")
        ])
    );
    assert_eq!(m["attempts"][0]["error"]["code"], "invalid_recipient");
    assert_eq!(m["attempts"][1]["error"]["code"], "bounce");
    assert_eq!(m["attempts"][2]["error"]["code"], "UNREGISTERED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_its_ttl_expires() {
    let app = TestApp::spawn().await;
    let mut body = message(json!({"phone": "+15005550008"}), &[("sms", 60)]);
    body["ttl_seconds"] = json!(1);
    let id = app.send(&body).await;
    let m = app.wait_for_status(&id, "expired", WITHIN).await;
    // Usually dispatched within the second; on a loaded machine the TTL may come first.
    let expected = if m["attempts"].as_array().unwrap().is_empty() {
        "ttl_expired_before_dispatch"
    } else {
        "ttl_expired"
    };
    assert_eq!(m["reason"], expected, "{m}");
    assert!(m["expires_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_in_the_middle_of_a_cascade_stops_it() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(
            json!({"phone": "+15005550008", "email": "ada@example.com"}),
            &[("sms", 2), ("email", 30)],
        ))
        .await;
    app.wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let cancel = || async {
        app.client
            .post(app.url(&format!("/v1/messages/{id}/cancel")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap()
    };
    let r = cancel().await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(cancel().await.status(), 200, "cancelling twice is harmless");
    let m = app.wait_for_status(&id, "cancelled", WITHIN).await;
    // The step timeout (2 s) passes: no email is tried after the cancel.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m2 = app.message(&id).await.unwrap();
    assert_eq!(m2["status"], "cancelled");
    assert_eq!(statuses(&m2), statuses(&m));
    assert_eq!(m2["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_delivered_message_is_a_conflict() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let r = app
        .client
        .post(app.url(&format!("/v1/messages/{id}/cancel")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "message_terminal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_after_the_cascade_moved_on_is_recorded_as_late() {
    // 0008: the mock accepts the SMS and never sends its receipt; the test plays the provider and
    // posts it only once the SMS step (1 s) has timed out, so the order does not depend on timing.
    const SECRET: &str = "late-receipt-secret";
    let app = TestApp::spawn_with(|a| a.mock_provider_secret = Some(SECRET.into())).await;
    let id = app
        .send(&message(
            json!({"phone": "+15005550008", "email": "ada@example.com"}),
            &[("sms", 1), ("email", 30)],
        ))
        .await;
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "timed_out")
        .await;
    let sms = &m["attempts"][0];
    let attempt = sms["id"].as_str().unwrap();
    let receipt = serde_json::to_vec(&json!({
        "message_id": id,
        "attempt_id": attempt,
        "provider_message_id": sms["provider_message_id"],
        "status": "delivered",
        "timestamp": chrono::Utc::now(),
    }))
    .unwrap();
    let r = app
        .client
        .post(app.url(&format!("/v1/webhooks/mock/{id}/{attempt}")))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(SECRET, &receipt))
        .body(receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let m = app
        .wait_for(&id, WITHIN, |m| {
            m["status"] == "delivered" && m["attempts"][0]["late"] == true
        })
        .await;
    assert_eq!(
        statuses(&m),
        pairs(&[("sms", "delivered"), ("email", "delivered")])
    );
    assert_eq!(m["attempts"][1]["late"], false);
    let late = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["type"] == "ReceiptRecorded" && e["data"]["late"] == true);
    assert!(late.is_some(), "the audit trail shows the late receipt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_until_read_ends_read() {
    let app = TestApp::spawn().await;
    let body = json!({
        "to": {"whatsapp": "+14155550100"},
        "content": {"whatsapp": {"text": "hi"}},
        "cascade": [{"channel": "whatsapp", "timeout_seconds": 30, "until": "read"}],
    });
    let id = app.send(&body).await;
    let m = app.wait_for_status(&id, "read", WITHIN).await;
    assert_eq!(statuses(&m), pairs(&[("whatsapp", "read")]));
    assert!(m["attempts"][0]["read_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_accepted_completes_when_the_provider_takes_it() {
    // 0008 never gets a receipt: only the provider's acceptance can end the step.
    let app = TestApp::spawn().await;
    let body = json!({
        "to": {"phone": "+15005550008"},
        "content": {"text": "hi"},
        "cascade": [{"channel": "sms", "timeout_seconds": 30, "until": "accepted"}],
    });
    let id = app.send(&body).await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(statuses(&m), pairs(&[("sms", "sent")]));
}
