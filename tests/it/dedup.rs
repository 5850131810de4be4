//! A tenant's duplicate window (issue 9, layer 8): a message to the same recipient with the same
//! content as one accepted within `dedup_window_seconds` is refused with 409 `duplicate_content`,
//! naming the first; a retry with the first's Idempotency-Key is still answered as a replay.

use crate::harness::{TestApp, WITHIN, message};
use hermes_infra::tenants;
use serde_json::{Value, json};
use std::time::Duration;

fn otp(phone: &str, code: &str) -> Value {
    let mut body = message(json!({ "phone": phone }), &[("sms", 60)]);
    body["content"]["text"] = json!(format!("Your code is {code}"));
    body
}

async fn post(app: &TestApp, body: &Value, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.api_key)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_to_the_same_recipient_within_the_window_is_refused() {
    let app = TestApp::spawn().await;
    const WINDOW: u64 = 3;
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"dedup_window_seconds": WINDOW}),
    )
    .await
    .unwrap();
    // The first message, once this process's key check has read the setting (2 s at most): each
    // try uses a new code, so only the try after the setting applies is refused.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut n = 0;
    let (first, body) = loop {
        n += 1;
        let body = otp("+14155550100", &format!("{n:04}"));
        let (status, accepted, _) = post(&app, &body, Some(&format!("k{n}"))).await;
        assert_eq!(status, 202, "{accepted}");
        let (status, problem, location) = post(&app, &body, None).await;
        if status == 409 {
            assert_eq!(problem["code"], "duplicate_content", "{problem}");
            let first = accepted["id"].as_str().unwrap().to_owned();
            assert_eq!(
                location.as_deref(),
                Some(format!("/v1/messages/{first}").as_str())
            );
            assert!(problem["detail"].as_str().unwrap().contains(&first));
            break (first, body);
        }
        assert_eq!(status, 202, "{problem}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the window never applied"
        );
    };
    let key = format!("k{n}");
    // The first's retry (same key, same body) is a replay, not a duplicate.
    let (status, replay, _) = post(&app, &body, Some(&key)).await;
    assert_eq!((status, replay["id"].as_str()), (202, Some(first.as_str())));
    // Other content, or another recipient: accepted.
    let (status, _, _) = post(&app, &otp("+14155550100", "other"), None).await;
    assert_eq!(status, 202);
    let (status, _, _) = post(&app, &otp("+14155550101", &format!("{n:04}")), None).await;
    assert_eq!(status, 202);
    // The preview answers what the send would.
    let (status, problem) = app.preview(&body).await;
    assert_eq!(status, 409, "{problem}");
    // Nothing of the refused requests was stored: one message per accepted request.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_type = 'message' AND event_type = 'MessageAccepted'
           AND payload->'spec'->'content'->>'text' = $1
           AND payload->'spec'->'to'->>'phone' = '+14155550100'",
    )
    .bind(format!("Your code is {n:04}"))
    .fetch_one(&app.app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1);

    // Concurrent identical requests (a fresh text): exactly one is accepted.
    let fresh = otp("+14155550100", "race");
    let answers = futures::future::join_all((0..8).map(|_| post(&app, &fresh, None))).await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 202).count();
    let refused = answers
        .iter()
        .filter(|(s, p, _)| *s == 409 && p["code"] == "duplicate_content")
        .count();
    assert_eq!((accepted, refused), (1, 7), "{answers:?}");

    // After the window, the same content goes again.
    tokio::time::sleep(Duration::from_secs(WINDOW)).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (status, _, _) = post(&app, &body, None).await;
        if status == 202 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_window_out_of_range_is_refused() {
    let app = TestApp::spawn().await;
    for bad in [json!(0), json!(86_401), json!("60")] {
        let r = tenants::change_settings(
            &app.app.pool,
            app.tenant_id,
            &json!({"dedup_window_seconds": bad}),
        )
        .await;
        assert!(
            matches!(
                r,
                Err(tenants::TenantCommandError::Refused(
                    hermes_domain::tenant::TenantError::InvalidSetting
                ))
            ),
            "{bad}: {r:?}"
        );
    }
}
