//! Layer 6: suppression lists. Hermes lists an address by itself after a hard bounce, a
//! complaint or an unregistered push token; an operator lists and unlists addresses; a message's
//! steps to a listed address are skipped (recorded in its `MessageAccepted`), and a message with
//! no step left is refused.

use crate::harness::{TestApp, WITHIN};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Waits until a preview of `body` says which steps are suppressed (each process reads a
/// tenant's "has a list" flag with its key, trusted for up to 2 s).
pub(crate) async fn wait_until_preview_suppresses(app: &TestApp, body: &Value, want: &[bool]) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, answer) = app.preview(body).await;
        if status == 200 {
            let got: Vec<bool> = answer["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["suppressed"].as_bool().unwrap())
                .collect();
            if got == want {
                return;
            }
        } else if status == 422 && want.iter().all(|s| *s) {
            assert_eq!(answer["code"], "recipient_suppressed", "{answer}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "preview still answers {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listed(app: &TestApp) -> Vec<Value> {
    let (status, list) = app
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{}/suppressions", app.tenant_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["suppressions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_suppresses_the_address_and_the_next_message_skips_its_email_step() {
    let app = TestApp::spawn_with_admin().await;
    // The mock bounces `bounce@` addresses and refuses `unregistered` push tokens for good.
    let bounced = app
        .send(
            &json!({"to": {"email": "bounce@example.com"}, "content": {"text": "hi"},
                      "cascade": [{"channel": "email", "timeout_seconds": 30}]}),
        )
        .await;
    app.wait_for_status(&bounced, "failed", WITHIN).await;
    let dead_token = app
        .send(
            &json!({"to": {"push_token": "unregistered-1"}, "content": {"text": "hi"},
                      "cascade": [{"channel": "push", "timeout_seconds": 30}]}),
        )
        .await;
    app.wait_for_status(&dead_token, "failed", WITHIN).await;
    let deadline = Instant::now() + WITHIN;
    let entries = loop {
        let entries = listed(&app).await;
        if entries.len() == 2 {
            break entries;
        }
        assert!(Instant::now() < deadline, "listed so far: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut found: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["channel"].as_str().unwrap(),
                e["address"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("email", "bounce@example.com", "hard_bounce"),
            ("push", "unregistered-1", "unregistered")
        ]
    );
    assert!(
        entries
            .iter()
            .any(|e| e["source"] == format!("message:{bounced}")),
        "{entries:?}"
    );

    // The next message to that address skips its email step and is delivered by SMS.
    let next = json!({"to": {"email": "bounce@example.com", "phone": "+14155550100"},
                      "content": {"text": "hi"},
                      "cascade": [{"channel": "email", "timeout_seconds": 30},
                                  {"channel": "sms", "timeout_seconds": 30}]});
    wait_until_preview_suppresses(&app, &next, &[true, false]).await;
    let id = app.send(&next).await;
    let done = app.wait_for_status(&id, "delivered", WITHIN).await;
    let channels: Vec<&str> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["sms"]);
    let events = app.events(&id).await;
    assert_eq!(events[0]["data"]["spec"]["suppressed_steps"], json!([0]));
    assert_eq!(
        app.app
            .mock
            .as_ref()
            .unwrap()
            .sends_to("bounce@example.com"),
        1,
        "only the first message reached the bounced address"
    );
}

#[tokio::test]
async fn an_operator_lists_and_unlists_and_a_message_with_no_step_left_is_refused() {
    let app = TestApp::spawn_with_admin().await;
    let path = format!(
        "/admin/v1/tenants/{}/suppressions/email/ada@example.com",
        app.tenant_id
    );
    let (status, _) = app
        .admin(
            Method::PUT,
            &path,
            Some(json!({"reason": "asked by phone"})),
        )
        .await;
    assert_eq!(status, 204);
    let entries = listed(&app).await;
    assert_eq!(
        (entries[0]["reason"].as_str(), entries[0]["source"].as_str()),
        (Some("asked by phone"), Some("operator"))
    );
    let email = json!({"to": {"email": "ada@example.com"}, "content": {"text": "hi"},
                       "cascade": [{"channel": "email"}]});
    wait_until_preview_suppresses(&app, &email, &[true]).await;
    let refused = app.post_message(&email).await;
    assert_eq!(refused.status().as_u16(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "recipient_suppressed");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_type = 'message'")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);

    assert_eq!(app.admin(Method::DELETE, &path, None).await.0, 204);
    assert_eq!(app.post_message(&email).await.status().as_u16(), 202);

    // What cannot be listed or unlisted.
    let tenant = app.tenant_id;
    for (method, path, status, code) in [
        (Method::DELETE, path.clone(), 404, "not_found"),
        (
            Method::PUT,
            format!("/admin/v1/tenants/{tenant}/suppressions/fax/x"),
            422,
            "invalid_suppression",
        ),
        (
            Method::PUT,
            format!("/admin/v1/tenants/{tenant}/suppressions/email/not-an-address"),
            422,
            "invalid_suppression",
        ),
        (
            Method::PUT,
            format!("/admin/v1/tenants/{tenant}/suppressions/sms/12345"),
            422,
            "invalid_suppression",
        ),
        (
            Method::PUT,
            format!(
                "/admin/v1/tenants/{}/suppressions/email/a@example.com",
                uuid::Uuid::now_v7()
            ),
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/admin/v1/tenants/nope/suppressions".into(),
            404,
            "not_found",
        ),
    ] {
        let (got, problem) = app.admin(method.clone(), &path, None).await;
        assert_eq!(
            (got, problem["code"].as_str().unwrap_or_default()),
            (status, code),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_tenant_keeps_its_own_list_and_sees_no_other() {
    let app = TestApp::spawn().await;
    let (_, other_key) = app.new_tenant("other").await;
    let call = |method: Method, path: &str, key: &str, body: Option<Value>| {
        let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let path = "/v1/suppressions/sms/+14155550100";
    let (status, _) = call(
        Method::PUT,
        path,
        &app.api_key,
        Some(json!({"reason": "STOP by mail"})),
    )
    .await;
    assert_eq!(status, 204);
    let (_, mine) = call(Method::GET, "/v1/suppressions", &app.api_key, None).await;
    assert_eq!(mine["suppressions"][0]["address"], "+14155550100");
    assert_eq!(mine["suppressions"][0]["source"], "tenant");
    assert_eq!(mine["suppressions"][0]["reason"], "STOP by mail");
    // The other tenant neither sees it nor can remove it, and its messages are not skipped.
    let (_, theirs) = call(Method::GET, "/v1/suppressions", &other_key, None).await;
    assert_eq!(theirs["suppressions"], json!([]));
    assert_eq!(call(Method::DELETE, path, &other_key, None).await.0, 404);
    let sms = json!({"to": {"phone": "+14155550100"}, "content": {"text": "hi"},
                     "cascade": [{"channel": "sms"}]});
    assert_eq!(
        app.post_message_as(&other_key, &sms)
            .await
            .status()
            .as_u16(),
        202
    );

    let (status, problem) = call(
        Method::PUT,
        "/v1/suppressions/fax/12345",
        &app.api_key,
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_suppression"))
    );
    // Emails compare without regard to case.
    let (status, _) = call(
        Method::PUT,
        "/v1/suppressions/email/Ada@Example.COM",
        &app.api_key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let email = json!({"to": {"email": "ada@example.com"}, "content": {"text": "hi"},
                       "cascade": [{"channel": "email"}]});
    wait_until_preview_suppresses(&app, &email, &[true]).await;
    assert_eq!(call(Method::DELETE, path, &app.api_key, None).await.0, 204);
    assert_eq!(call(Method::DELETE, path, &app.api_key, None).await.0, 404);
}

/// A lookup batch the database cannot answer fails every request in it (the API answers 500 and
/// stores nothing), and the next batch is tried afresh.
#[tokio::test]
async fn a_suppression_lookup_the_database_cannot_answer_is_an_error_for_its_request() {
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let lookups = hermes_command::suppression_lookups::SuppressionLookups::start(&unreachable, 1);
    let spec = crate::accept_batch::valid_spec();
    let tenant = hermes_domain::TenantId(uuid::Uuid::nil());
    for _ in 0..2 {
        // It answers within the pool's own acquire timeout (500 ms), not sqlx's default 30 s
        // during which an accept request would hang.
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            lookups.suppressed_steps(tenant, &spec),
        )
        .await
        .expect("an answer well within the default 30 s");
        assert!(answer.is_err());
    }
}
