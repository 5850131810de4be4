//! `POST /v1/messages/{id}/ack`: the app confirms a push that its provider never will.

use crate::harness::{TestApp, statuses};
use serde_json::{Value, json};

use crate::harness::WITHIN;

/// A push (to a token the mock accepts and never confirms, like FCM) until delivered, then SMS.
fn push_then_sms() -> Value {
    json!({
        "to": {"push_token": "silent-device-1", "phone": "+14155550100"},
        "content": {"text": "Your code is 1234"},
        "cascade": [
            {"channel": "push", "timeout_seconds": 30, "until": "delivered"},
            {"channel": "sms", "timeout_seconds": 30},
        ],
    })
}

async fn ack(app: &TestApp, key: &str, id: &str, body: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/messages/{id}/ack")))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    request.send().await.unwrap()
}

async fn problem_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_push_completes_without_falling_back() {
    let app = TestApp::spawn().await;
    let id = app.send(&push_then_sms()).await;
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    assert_eq!(
        m["status"], "sending",
        "accepted is not delivered: it waits"
    );

    let response = ack(&app, &app.api_key, &id, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["recorded"], true);

    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(statuses(&m), vec![("push".into(), "delivered".into())]);
    assert_eq!(app.mock_stats().sends, 1, "no SMS was needed");

    // The same acknowledgement again changes nothing; `read` still moves it on.
    let again: Value = ack(&app, &app.api_key, &id, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["recorded"], false);
    let read: Value = ack(&app, &app.api_key, &id, Some(r#"{"status":"read"}"#))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["recorded"], true);
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "read")
        .await;
    assert!(m["attempts"][0]["read_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_that_cannot_apply_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let sms_only = app
        .send(&json!({
            "to": {"phone": "+15005550008"},
            "content": {"text": "hi"},
            "cascade": [{"channel": "sms", "timeout_seconds": 30}],
        }))
        .await;
    app.wait_for(&sms_only, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    assert_eq!(
        problem_code(ack(&app, &app.api_key, &sms_only, None).await).await,
        (409, "no_push_attempt".into())
    );

    let push = app.send(&push_then_sms()).await;
    app.wait_for(&push, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    assert_eq!(
        problem_code(ack(&app, &app.api_key, &push, Some(r#"{"status":"sent"}"#)).await).await,
        (422, "invalid_request".into())
    );
    assert_eq!(
        problem_code(ack(&app, &app.api_key, &push, Some("{not json")).await).await,
        (400, "invalid_json".into())
    );
    let huge = format!(
        r#"{{"status": "delivered", "pad": "{}"}}"#,
        "x".repeat(300 * 1024)
    );
    assert_eq!(
        problem_code(ack(&app, &app.api_key, &push, Some(&huge)).await).await,
        (413, "payload_too_large".into())
    );
    // Another tenant cannot see, let alone acknowledge, this message.
    let (_, other_key) = app.new_tenant("other").await;
    assert_eq!(
        problem_code(ack(&app, &other_key, &push, None).await).await,
        (404, "not_found".into())
    );
    assert_eq!(
        problem_code(ack(&app, &app.api_key, "not-a-message-id", None).await).await,
        (404, "not_found".into())
    );
    // None of that touched the message.
    let m = app.message(&push).await.unwrap();
    assert_eq!(m["status"], "sending");
    assert_eq!(m["attempts"][0]["status"], "sent");
}
