//! A tenant manages its own keys and cascade policies with its API key (issue 9): what operators
//! do under `/admin/v1/tenants/{id}`, scoped to the key's tenant.

use crate::harness::{TestApp, WITHIN};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Waits until `key` gets `status` on `GET /v1/keys` (keys are trusted for 2 s per process).
async fn wait_until_key_answers(app: &TestApp, key: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (got, _) = app.call(key, Method::GET, "/v1/keys", None).await;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_tenant_issues_rotates_and_revokes_its_own_keys() {
    let app = TestApp::spawn().await;
    let key = app.api_key.clone();

    let (status, issued) = app
        .call(&key, Method::POST, "/v1/keys", Some(json!({"name": "ci"})))
        .await;
    assert_eq!(status, 201, "{issued}");
    let ci_key = issued["api_key"].as_str().unwrap().to_owned();
    let ci_id = issued["key_id"].as_str().unwrap().to_owned();
    assert!(ci_key.starts_with(issued["prefix"].as_str().unwrap()));
    // The new key works; the list shows both by prefix, never a key.
    let (status, list) = app.call(&ci_key, Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200, "{list}");
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{list}");
    assert!(
        !list.to_string().contains(&ci_key),
        "a listed key is never shown"
    );
    assert!(keys.iter().any(|k| k["id"] == ci_id && k["name"] == "ci"));

    // Rotating: a new key; the old one works for the overlap only.
    let (status, rotated) = app
        .call(
            &key,
            Method::POST,
            &format!("/v1/keys/{ci_id}/rotate"),
            Some(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["replaces"], ci_id.as_str());
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    wait_until_key_answers(&app, &ci_key, 401).await;
    let (status, _) = app.call(&new_key, Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200);
    // A rotated key is not rotated again.
    let (status, problem) = app
        .call(
            &key,
            Method::POST,
            &format!("/v1/keys/{ci_id}/rotate"),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("key_not_rotatable")),
        "{problem}"
    );

    // Revoking: refused within 5 s.
    let new_id = rotated["key_id"].as_str().unwrap();
    let (status, revoked) = app
        .call(&key, Method::DELETE, &format!("/v1/keys/{new_id}"), None)
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    wait_until_key_answers(&app, &new_key, 401).await;

    // The history says the tenant did it.
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE stream_type = 'tenant' AND stream_id = $1
          AND event_type IN ('ApiKeyIssued', 'ApiKeyRevoked', 'ApiKeyExpiring') ORDER BY position",
    )
    .bind(app.tenant_id)
    .fetch_all(&app.app.pool)
    .await
    .unwrap();
    assert_eq!(
        actors.iter().filter(|a| *a == "tenant").count(),
        4,
        "{actors:?}"
    );

    // Errors: a bad name, a bad overlap, an unknown or malformed key id.
    let (status, problem) = app
        .call(&key, Method::POST, "/v1/keys", Some(json!({"name": ""})))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_name")),
        "{problem}"
    );
    let (status, problem) = app
        .call(&key, Method::POST, "/v1/keys", Some(json!({"nom": "x"})))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_request")),
        "{problem}"
    );
    let (_, issued) = app.call(&key, Method::POST, "/v1/keys", None).await;
    let id = issued["key_id"].as_str().unwrap();
    // Past 30 days, and a fraction (no whole number of seconds; 60.0 is 60).
    for overlap in [json!(40 * 86_400), json!(1.5)] {
        let (status, problem) = app
            .call(
                &key,
                Method::POST,
                &format!("/v1/keys/{id}/rotate"),
                Some(json!({ "overlap_seconds": overlap })),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("invalid_overlap")),
            "{overlap}: {problem}"
        );
    }
    let (status, rotated) = app
        .call(
            &key,
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(json!({"overlap_seconds": 60.0})),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    for missing in ["00000000-0000-7000-8000-000000000000", "not-a-uuid"] {
        let (status, problem) = app
            .call(&key, Method::DELETE, &format!("/v1/keys/{missing}"), None)
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn a_tenant_never_sees_or_touches_another_tenant_s_keys_or_policies() {
    let app = TestApp::spawn().await;
    let (_, other) = app.new_tenant("other").await;
    let (_, theirs) = app.call(&other, Method::GET, "/v1/keys", None).await;
    let their_key_id = theirs["keys"][0]["id"].as_str().unwrap().to_owned();
    let (_, mine) = app.call(&app.api_key, Method::GET, "/v1/keys", None).await;
    assert_eq!(mine["keys"].as_array().unwrap().len(), 1);
    assert_ne!(mine["keys"][0]["id"], their_key_id.as_str());
    // Their key id answers 404 to us, as a key that does not exist, and stays valid.
    for (method, path) in [
        (Method::DELETE, format!("/v1/keys/{their_key_id}")),
        (Method::POST, format!("/v1/keys/{their_key_id}/rotate")),
    ] {
        let (status, problem) = app.call(&app.api_key, method, &path, None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {problem}"
        );
    }
    let (status, _) = app.call(&other, Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200);
    // Their policy is theirs only.
    let steps = json!({"steps": [{"channel": "sms", "timeout_seconds": 30}]});
    let (status, _) = app
        .call(&other, Method::PUT, "/v1/cascade-policies/otp", Some(steps))
        .await;
    assert_eq!(status, 200);
    let (_, ours) = app
        .call(&app.api_key, Method::GET, "/v1/cascade-policies", None)
        .await;
    assert_eq!(ours, json!({"policies": []}));
    let (status, _) = app
        .call(
            &app.api_key,
            Method::DELETE,
            "/v1/cascade-policies/otp",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_tenant_defines_its_cascade_policies_and_its_messages_use_them() {
    let app = TestApp::spawn().await;
    let key = app.api_key.clone();
    let steps = json!([{"channel": "sms", "timeout_seconds": 30}, {"channel": "email"}]);
    let (status, put) = app
        .call(
            &key,
            Method::PUT,
            "/v1/cascade-policies/otp",
            Some(json!({"steps": steps})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"], "otp");
    assert_eq!(put["steps"], steps);
    let version = put["version"].as_i64().unwrap();
    // The same steps again: the version stays.
    let (_, again) = app
        .call(
            &key,
            Method::PUT,
            "/v1/cascade-policies/otp",
            Some(json!({"steps": steps})),
        )
        .await;
    assert_eq!(again["version"], version);
    let (status, list) = app
        .call(&key, Method::GET, "/v1/cascade-policies", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"policies": [{"name": "otp", "steps": steps, "version": version}]})
    );

    // A message names it (once this process's key check has read the new settings).
    let body = json!({"to": {"phone": "+14155550100", "email": "ada@example.com"},
                      "content": {"text": "Your code is 1234", "email": {"subject": "Code"}},
                      "cascade": "otp"});
    let deadline = tokio::time::Instant::now() + WITHIN;
    let id = loop {
        let r = app.post_message(&body).await;
        if r.status() == 202 {
            break r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let accepted = app.events(&id).await.remove(0);
    assert_eq!(
        accepted["data"]["spec"]["cascade_policy"],
        json!({"name": "otp", "version": version})
    );

    // Refusals: steps a message could not have, a bad name, a body of another shape.
    for (path, body, code) in [
        (
            "/v1/cascade-policies/otp",
            json!({"steps": []}),
            "invalid_cascade_policy",
        ),
        (
            "/v1/cascade-policies/otp",
            json!({"steps": [{"channel": "fax"}]}),
            "invalid_cascade_policy",
        ),
        (
            "/v1/cascade-policies/Not%20Valid",
            json!({"steps": steps}),
            "invalid_cascade_policy",
        ),
        (
            "/v1/cascade-policies/otp",
            json!({"cascade": steps}),
            "invalid_request",
        ),
    ] {
        let (status, problem) = app.call(&key, Method::PUT, path, Some(body)).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some(code)),
            "{path}: {problem}"
        );
    }
    // Removed: new messages naming it are refused; the one that ran it keeps its record.
    let (status, _) = app
        .call(&key, Method::DELETE, "/v1/cascade-policies/otp", None)
        .await;
    assert_eq!(status, 204);
    let (status, problem) = app
        .call(&key, Method::DELETE, "/v1/cascade-policies/otp", None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("not_found")),
        "{problem}"
    );
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let r = app.post_message(&body).await;
        if r.status() == 422 {
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["code"], "unknown_cascade_policy");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
