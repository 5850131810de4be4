//! The public contract, pinned: `/openapi.json` and the problem bodies clients code against.
//!
//! A change to either shows up as a snapshot diff in review (`cargo insta review`, or run the
//! tests with `INSTA_UPDATE=always` and read the diff of `tests/it/snapshots/`). Under CI
//! (`CI=true`) a difference fails the test and nothing is written.

use crate::harness::{TestApp, message};
use serde_json::{Map, Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_one_reviewed() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

/// One request per kind of refusal the public API gives, and the exact body it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_problem_bodies_are_the_ones_reviewed() {
    let app = TestApp::spawn().await;
    let sms = message(json!({"phone": "+14155550100"}), &[("sms", 30)]);
    let post = |key: Option<&str>, body: Vec<u8>, idempotency_key: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/v1/messages"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        req.send()
    };
    let get = |path: &str| {
        app.client
            .get(app.url(path))
            .bearer_auth(&app.api_key)
            .send()
    };
    let json = |v: &Value| serde_json::to_vec(v).unwrap();

    let mut unknown_field = sms.clone();
    unknown_field["content"]["sms"] = json!({"txt": "hi"});
    let invalid = json!({
        "to": {"phone": "415-555-0100", "email": "ada at example.com"},
        "content": {"text": "hi"},
        "cascade": [{"channel": "sms", "timeout_seconds": 0}, {"channel": "pigeon"}],
        "ttl_seconds": -1,
    });
    let mut other_body = sms.clone();
    other_body["content"]["text"] = json!("another text");
    let ok = post(
        Some(&app.api_key),
        json(&sms),
        Some("snapshot-idempotency-key"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 202);

    let mut problems = Map::new();
    for (case, response) in [
        ("no_api_key", post(None, json(&sms), None).await),
        (
            "unknown_api_key",
            post(Some("hk_live_unknown"), json(&sms), None).await,
        ),
        (
            "invalid_json",
            post(Some(&app.api_key), b"{\"to\": ".to_vec(), None).await,
        ),
        (
            "unknown_field",
            post(Some(&app.api_key), json(&unknown_field), None).await,
        ),
        (
            "validation_failed",
            post(Some(&app.api_key), json(&invalid), None).await,
        ),
        (
            "idempotency_conflict",
            post(
                Some(&app.api_key),
                json(&other_body),
                Some("snapshot-idempotency-key"),
            )
            .await,
        ),
        (
            "invalid_idempotency_key",
            post(Some(&app.api_key), json(&sms), Some("")).await,
        ),
        (
            "payload_too_large",
            post(Some(&app.api_key), vec![b' '; 300 * 1024], None).await,
        ),
        (
            "message_not_found",
            get("/v1/messages/0190f2a0-0000-7000-8000-000000000001").await,
        ),
        ("invalid_limit", get("/v1/messages?limit=0").await),
        ("invalid_status", get("/v1/messages?status=lost").await),
        ("invalid_cursor", get("/v1/messages?cursor=nope").await),
    ] {
        let response = response.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        problems.insert(
            case.into(),
            json!({"status": status, "content_type": content_type, "body": body}),
        );
    }
    insta::assert_json_snapshot!("problems", problems);
}
