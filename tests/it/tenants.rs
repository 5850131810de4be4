//! Tenants as operators run them through `/admin/v1/tenants` and `hermes tenant ...`: created,
//! renamed, configured, suspended and reactivated, deactivated, their keys issued, rotated and
//! revoked, every change an event of the tenant's history, and every process refusing a
//! suspended tenant or an expired key within 5 s.

use crate::harness::{TestApp, fresh_database, server_args};
use hermes::app::{self, Roles};
use hermes_infra::{db, tenants};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How soon a suspension, a revocation or the end of a rotation holds on every process.
const DEADLINE: Duration = Duration::from_secs(5);

/// What `GET /v1/messages` answers a key on the Hermes at `base`: its status and problem code.
async fn key_status(app: &TestApp, base: &str, key: &str) -> (u16, String) {
    let response = app
        .client
        .get(format!("{base}/v1/messages"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Waits until `key` gets `want` from the Hermes at `base`; panics past `deadline` from `since`.
async fn wait_for_answer(
    app: &TestApp,
    base: &str,
    key: &str,
    want: (u16, &str),
    since: Instant,
    deadline: Duration,
) {
    loop {
        let (status, code) = key_status(app, base, key).await;
        if (status, code.as_str()) == want {
            return;
        }
        assert!(
            since.elapsed() < deadline,
            "{base} still answers {status} {code:?} {:?} after the change, not {want:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_tenant_is_created_changed_and_its_history_tells_each_change() {
    let app = TestApp::spawn_with_admin().await;
    let (status, created) = app
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "  Acme  "})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["tenant_id"].as_str().unwrap().to_owned();
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["tenant"]["name"], "Acme", "the name is trimmed");
    assert_eq!(created["tenant"]["status"], "active");
    assert_eq!(key_status(&app, &app.app.base_url, &key).await.0, 200);

    let (status, renamed) = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(json!({"name": "Acme Corp", "settings": {"max_sms_segments": 3}})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Acme Corp");
    assert_eq!(renamed["settings"], json!({"max_sms_segments": 3}));
    // The same change again records nothing.
    let (_, again) = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(json!({"name": "Acme Corp"})),
        )
        .await;
    assert_eq!(again["version"], renamed["version"]);

    let (status, suspended) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{id}/suspend"),
            Some(json!({"reason": "invoice overdue"})),
        )
        .await;
    assert_eq!(
        (status, suspended["status"].as_str()),
        (200, Some("suspended"))
    );
    let (_, list) = app
        .admin(Method::GET, "/admin/v1/tenants?status=suspended", None)
        .await;
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "only the suspended tenant: {list}");
    let (_, all) = app.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(all["tenants"].as_array().unwrap().len(), 2, "{all}");

    let (status, history) = app
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}/events"), None)
        .await;
    assert_eq!(status, 200);
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "TenantCreated",
            "ApiKeyIssued",
            "TenantRenamed",
            "TenantSettingsChanged",
            "TenantSuspended"
        ]
    );
    assert!(events.iter().all(|e| e["actor"] == "operator"));
    assert_eq!(events[4]["data"]["reason"], "invoice overdue");
    assert!(
        !history.to_string().contains("key_hash") && !history.to_string().contains(&key),
        "no key material in the history: {history}"
    );
    // The read model is the fold of the history.
    let row = tenants::get(&app.app.pool, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.version, events.len() as i64);
    assert_eq!(
        (row.name.as_str(), row.status.as_str()),
        ("Acme Corp", "suspended")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_is_refused_by_every_process_within_5_s_until_reactivated() {
    let app = TestApp::spawn_with_admin().await;
    let other = app::start(
        &server_args(&app.database_url),
        Roles::parse("api").unwrap(),
    )
    .await
    .expect("second hermes starts");
    let (_, bystander) = app.new_tenant("bystander").await;
    let bases = [app.app.base_url.clone(), other.base_url.clone()];
    // Both processes have the key in their caches.
    for base in &bases {
        assert_eq!(key_status(&app, base, &app.api_key).await.0, 200);
    }
    let tenant = app.tenant_id;

    let since = Instant::now();
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for base in &bases {
        wait_for_answer(
            &app,
            base,
            &app.api_key,
            (403, "tenant_suspended"),
            since,
            DEADLINE,
        )
        .await;
        assert_eq!(key_status(&app, base, &bystander).await.0, 200);
    }
    // Sending is refused as well, and nothing is accepted.
    let refused = app
        .post_message(&crate::harness::message(
            json!({"phone": "+15005550100"}),
            &[("sms", 30)],
        ))
        .await;
    assert_eq!(refused.status().as_u16(), 403);

    let since = Instant::now();
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/reactivate"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for base in &bases {
        wait_for_answer(&app, base, &app.api_key, (200, ""), since, DEADLINE).await;
    }

    let since = Instant::now();
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/deactivate"),
            Some(json!({"reason": "closed the account"})),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deactivated"))
    );
    for base in &bases {
        wait_for_answer(
            &app,
            base,
            &app.api_key,
            (403, "tenant_deactivated"),
            since,
            DEADLINE,
        )
        .await;
    }
    // Deactivation is final.
    for action in ["reactivate", "suspend"] {
        let (status, body) = app
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/{action}"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("tenant_deactivated"))
        );
    }
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("tenant_deactivated"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_works_during_the_overlap_only() {
    let app = TestApp::spawn_with_admin().await;
    let tenant = app.tenant_id;
    let (_, keys) = app
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            None,
        )
        .await;
    let old_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    // The old key is in the cache when the rotation happens.
    assert_eq!(
        key_status(&app, &app.app.base_url, &app.api_key).await.0,
        200
    );

    // Long enough for the two checks below to run inside it on a loaded machine.
    let overlap = 6;
    let (status, rotated) = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys/{old_id}/rotate"),
            Some(json!({"overlap_seconds": overlap})),
        )
        .await;
    let rotated_at = Instant::now();
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["replaces"], old_id.as_str());
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    let expires_at: chrono::DateTime<chrono::Utc> = rotated["replaced_key_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // During the overlap both keys work.
    assert_eq!(key_status(&app, &app.app.base_url, &new_key).await.0, 200);
    assert_eq!(
        key_status(&app, &app.app.base_url, &app.api_key).await.0,
        200
    );
    assert!(
        rotated_at.elapsed() < Duration::from_secs(overlap),
        "the check above ran inside the overlap"
    );
    // After it, only the new one; the cache does not carry the old one past its end.
    wait_for_answer(
        &app,
        &app.app.base_url,
        &app.api_key,
        (401, "unauthorized"),
        rotated_at,
        Duration::from_secs(overlap) + DEADLINE,
    )
    .await;
    assert!(
        chrono::Utc::now() >= expires_at,
        "the old key was refused before its overlap ended"
    );
    assert_eq!(key_status(&app, &app.app.base_url, &new_key).await.0, 200);

    let (_, keys) = app
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            None,
        )
        .await;
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0]["expires_at"]
            .as_str()
            .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(expires_at)
    );
    assert!(keys[1]["expires_at"].is_null());
}

#[tokio::test]
async fn tenant_commands_refuse_what_they_cannot_do_with_a_code() {
    let app = TestApp::spawn_with_admin().await;
    let (other_tenant, _) = app.new_tenant("other").await;
    let tenant = app.tenant_id;

    // No token, a wrong token.
    let response = app
        .client
        .get(app.url("/admin/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = app
        .client
        .get(app.url("/admin/v1/tenants"))
        .bearer_auth("x".repeat(40))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::GET,
            format!("/admin/v1/tenants/{}", uuid::Uuid::now_v7()),
            None,
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/admin/v1/tenants/not-a-uuid".into(),
            None,
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/admin/v1/tenants?status=gone".into(),
            None,
            400,
            "invalid_status",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": " "})),
            422,
            "invalid_name",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a\u{0}b"})),
            422,
            "invalid_name",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({})),
            422,
            "invalid_request",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "x", "plan": "gold"})),
            422,
            "invalid_request",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"settings": {"max_sms_segments": 0}})),
            422,
            "invalid_setting",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"settings": {"colour": "red"}})),
            422,
            "invalid_setting",
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{tenant}/suspend"),
            Some(json!({"reason": "r".repeat(1001)})),
            422,
            "invalid_reason",
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{tenant}/keys"),
            Some(json!({"name": ""})),
            422,
            "invalid_name",
        ),
        // Another tenant's key is not this tenant's: 404, and it is not revoked.
        (
            Method::DELETE,
            format!(
                "/admin/v1/tenants/{tenant}/keys/{}",
                first_key(&app, other_tenant).await
            ),
            None,
            404,
            "not_found",
        ),
        (
            Method::POST,
            format!(
                "/admin/v1/tenants/{tenant}/keys/{}/rotate",
                first_key(&app, tenant).await
            ),
            Some(json!({"overlap_seconds": 2_592_001})),
            422,
            "invalid_overlap",
        ),
        (
            Method::POST,
            format!(
                "/admin/v1/tenants/{tenant}/keys/{}/rotate",
                first_key(&app, tenant).await
            ),
            Some(json!({"overlap_seconds": -1})),
            422,
            "invalid_overlap",
        ),
        (
            Method::DELETE,
            format!("/admin/v1/tenants/{tenant}/keys/nope"),
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, problem) = app.admin(method.clone(), &path, body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str().unwrap_or_default()),
            (want_status, want_code),
            "{method} {path} {body:?}: {problem}"
        );
    }
    // Not JSON, and too large.
    let response = app
        .client
        .post(app.url("/admin/v1/tenants"))
        .bearer_auth(crate::harness::ADMIN_TOKEN)
        .body("{name")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "invalid_json"
    );
    let (status, problem) = app
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "x".repeat(20_000)})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A key rotated once is not rotated again; nothing above changed the tenants.
    let key = first_key(&app, tenant).await;
    let path = format!("/admin/v1/tenants/{tenant}/keys/{key}/rotate");
    assert_eq!(app.admin(Method::POST, &path, None).await.0, 201);
    let (status, problem) = app.admin(Method::POST, &path, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("key_not_rotatable"))
    );
    for id in [tenant, other_tenant] {
        let keys = tenants::list_keys(&app.app.pool, id).await.unwrap();
        assert!(keys.iter().all(|k| k.revoked_at.is_none()), "{keys:?}");
    }
    let row = tenants::get(&app.app.pool, tenant).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.settings.0.max_sms_segments),
        ("active", None)
    );
}

async fn first_key(app: &TestApp, tenant: uuid::Uuid) -> uuid::Uuid {
    tenants::list_keys(&app.app.pool, tenant).await.unwrap()[0].id
}

#[tokio::test]
async fn a_tenant_id_is_not_a_message_id() {
    // The tenant's own stream has the tenant's id: it is not a message the tenant can read.
    let app = TestApp::spawn().await;
    for path in [
        format!("/v1/messages/{}", app.tenant_id),
        format!("/v1/messages/{}/events", app.tenant_id),
    ] {
        let response = app.get_as(&app.api_key, &path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    let response = app
        .client
        .post(app.url(&format!("/v1/messages/{}/cancel", app.tenant_id)))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn tenants_made_before_their_history_was_recorded_get_one() {
    // A database at migration 0010, with a tenant, a revoked key and a live one, then upgraded.
    let url = fresh_database().await;
    let pool = db::connect(&hermes_infra::Secret::new(url.clone()), 2)
        .await
        .unwrap();
    db::MIGRATOR.run_to(10, &pool).await.unwrap();
    let tenant = uuid::Uuid::now_v7();
    let live = "hms_".to_owned() + &"ab".repeat(32);
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'old')")
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    for (key, revoked) in [
        ("hms_".to_owned() + &"cd".repeat(32), true),
        (live.clone(), false),
    ] {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, revoked_at)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant)
        .bind(tenants::hash_key(&key))
        .bind(&key[..12])
        .bind(revoked)
        .execute(&pool)
        .await
        .unwrap();
    }
    db::migrate(&pool).await.unwrap();

    let types: Vec<String> = tenants::history(&pool, tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "TenantCreated",
            "ApiKeyIssued",
            "ApiKeyRevoked",
            "ApiKeyIssued"
        ]
    );
    // Commands work on the upgraded tenant, and its live key still authenticates.
    let renamed = tenants::rename(&pool, tenant, "renamed").await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("renamed", 5));
    let owner = tenants::authenticate(&pool, &live).await.unwrap().unwrap();
    assert_eq!(owner.tenant_id, tenant);
}

#[tokio::test]
async fn the_cli_runs_the_same_commands() {
    let app = TestApp::spawn().await;
    let hermes = |args: &'static [&'static str], extra: Vec<String>| {
        let url = app.database_url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
                .args(args)
                .args(extra)
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("hermes runs");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let created: Value = serde_json::from_str(
        &hermes(&["tenant", "create", "--name", "cli", "--json"], vec![]).await,
    )
    .unwrap();
    let id = created["tenant_id"].as_str().unwrap().to_owned();
    hermes(
        &["tenant", "settings"],
        vec![id.clone(), r#"{"max_sms_segments": 2}"#.into()],
    )
    .await;
    hermes(
        &["tenant", "suspend", "--reason", "audit"],
        vec![id.clone()],
    )
    .await;
    let suspended = hermes(
        &["tenant", "list", "--status", "suspended", "--json"],
        vec![],
    )
    .await;
    let row: Value = serde_json::from_str(suspended.trim()).unwrap();
    assert_eq!(
        (
            row["id"].as_str(),
            row["settings"]["max_sms_segments"].as_i64()
        ),
        (Some(id.as_str()), Some(2))
    );
    hermes(&["tenant", "reactivate"], vec![id.clone()]).await;
    let rotated: Value = serde_json::from_str(
        &hermes(
            &[
                "tenant",
                "key",
                "rotate",
                "--overlap-seconds",
                "60",
                "--json",
            ],
            vec![created["api_key"].as_str().unwrap().to_owned()],
        )
        .await,
    )
    .unwrap();
    assert_eq!(rotated["replaces"], created["key_id"]);
    let shown = hermes(&["tenant", "show"], vec![id.clone()]).await;
    for event in [
        "TenantCreated",
        "TenantSettingsChanged",
        "TenantSuspended",
        "TenantReactivated",
        "ApiKeyExpiring",
    ] {
        assert!(shown.contains(event), "{event} missing from:\n{shown}");
    }
    assert!(
        shown.lines().next().unwrap().contains("status=active"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_sms_over_the_tenants_segment_cap_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    // Before the key's first use, so no process has the old settings cached.
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"max_sms_segments": 2}),
    )
    .await
    .unwrap();
    let sms = |text: String| {
        json!({"to": {"phone": "+15005550100"}, "content": {"text": text},
               "cascade": [{"channel": "sms", "timeout_seconds": 30}]})
    };
    // 307 GSM-7 characters are 3 segments; a '€' takes two septets, so 305 + '€' are 3 as well.
    for text in ["a".repeat(307), format!("{}€", "a".repeat(305))] {
        let response = app.post_message(&sms(text)).await;
        assert_eq!(response.status().as_u16(), 422);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "too_many_segments", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("3 SMS segments (gsm7, 307 septets)"),
            "{problem}"
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_type = 'message'")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    // Two segments fit; so does a longer email, which has no segments.
    assert_eq!(
        app.post_message(&sms("a".repeat(306)))
            .await
            .status()
            .as_u16(),
        202
    );
    let email = json!({"to": {"email": "ada@example.com"}, "content": {"text": "a".repeat(2000)},
                       "cascade": [{"channel": "email"}]});
    assert_eq!(app.post_message(&email).await.status().as_u16(), 202);
}

#[tokio::test]
async fn a_number_outside_the_tenants_countries_is_refused() {
    let app = TestApp::spawn().await;
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"allowed_countries": ["US"]}),
    )
    .await
    .unwrap();
    let sms = |phone: &str| {
        json!({"to": {"phone": phone}, "content": {"text": "hi"},
               "cascade": [{"channel": "sms", "timeout_seconds": 30}]})
    };
    // +1 416 is Toronto: Canada, though it shares +1 with the US.
    let response = app.post_message(&sms("+14165550100")).await;
    assert_eq!(response.status().as_u16(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "country_not_allowed", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("in CA"),
        "{problem}"
    );
    assert_eq!(
        app.post_message(&sms("+14155550100"))
            .await
            .status()
            .as_u16(),
        202
    );
}

#[tokio::test]
async fn a_message_may_name_a_cascade_policy_and_records_its_version() {
    let app = TestApp::spawn_with_admin().await;
    let tenant = app.tenant_id;
    let (status, updated) = app.admin(Method::PATCH,
        &format!("/admin/v1/tenants/{tenant}"),
        Some(json!({"settings": {"cascade_policies": {"otp": {"steps": [
            {"channel": "sms", "timeout_seconds": 30}, {"channel": "email", "timeout_seconds": 60}]}}}})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let version = updated["settings"]["cascade_policies"]["otp"]["version"]
        .as_i64()
        .unwrap();
    assert_eq!(version, updated["version"].as_i64().unwrap());

    // The SMS is undelivered (the mock's 0009): the policy's email step delivers.
    let id = app
        .send(
            &json!({"to": {"phone": "+15005550009", "email": "ada@example.com"},
                      "content": {"text": "Your code is 1234", "email": {"subject": "Your code"}},
                      "cascade": "otp"}),
        )
        .await;
    let done = app
        .wait_for_status(&id, "delivered", crate::harness::WITHIN)
        .await;
    let channels: Vec<&str> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["sms", "email"]);
    let events = app.events(&id).await;
    assert_eq!(
        events[0]["data"]["spec"]["cascade_policy"],
        json!({"name": "otp", "version": version}),
        "{}",
        events[0]
    );

    // A name the tenant has no policy for, and a policy the operator cannot define.
    let response = app
        .post_message(
            &json!({"to": {"phone": "+14155550100"}, "content": {"text": "hi"},
                              "cascade": "marketing"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "unknown_cascade_policy"
    );
    let (status, problem) = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(
                json!({"settings": {"cascade_policies": {"bad": {"steps": [{"channel": "fax"}]}}}}),
            ),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_cascade_policy"))
    );
}

#[tokio::test]
async fn a_message_passing_every_layer_is_enriched_as_its_preview_said_with_its_number_in_e164() {
    let app = TestApp::spawn().await;
    // Written as people write it: a Toronto number, a '€' (two GSM-7 septets) in 200 characters.
    let body = json!({"to": {"phone": "+1 (416) 555-0100", "email": "ada@example.com"},
                      "content": {"text": format!("{}€", "a".repeat(199))},
                      "cascade": [{"channel": "sms"}, {"channel": "email"}]});
    let enriched = json!({"steps": [
        {"country": "CA", "sms": {"encoding": "gsm7", "units": 201, "segments": 2},
         "account": "mock", "route_reason": "first_usable"},
        {"account": "mock", "route_reason": "first_usable"}
    ]});
    let (status, preview) = app.preview(&body).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["steps"][0]["country"], "CA", "{preview:#}");

    let id = app.send(&body).await;
    let message = app.message(&id).await.expect("shown right after its 202");
    assert_eq!(message["to"]["phone"], "+14165550100", "stored in E.164");
    assert_eq!(message["enrichment"], enriched, "{message:#}");
    for (i, step) in enriched["steps"].as_array().unwrap().iter().enumerate() {
        for field in ["country", "sms", "account", "route_reason"] {
            assert_eq!(
                step.get(field),
                preview["steps"][i].get(field),
                "step {i}: {field}"
            );
        }
    }
    // Recorded in the message's history, not computed when shown.
    let accepted = app.events(&id).await[0].clone();
    assert_eq!(accepted["type"], "MessageAccepted");
    assert_eq!(
        accepted["data"]["spec"]["enrichment"], enriched,
        "{accepted:#}"
    );
    assert_eq!(accepted["data"]["spec"]["to"]["phone"], "+14165550100");
    // Once the projector has it, the read model shows the same.
    let projected = app
        .wait_for(&id, Duration::from_secs(10), |m| m["status"] == "delivered")
        .await;
    assert_eq!(projected["enrichment"], enriched);

    // A number that says no country, or cannot be E.164, is refused.
    for bad in ["(416) 555-0100", "+0 416 555 0100", "+1 800 FLOWERS"] {
        let response = app
            .post_message(&json!({"to": {"phone": bad}, "content": {"text": "hi"},
                                  "cascade": [{"channel": "sms"}]}))
            .await;
        assert_eq!(response.status(), 422, "{bad}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["code"], "invalid_phone",
            "{bad}: {problem}"
        );
        assert_eq!(
            problem["errors"][0]["field"], "to.phone",
            "{bad}: {problem}"
        );
    }
}

#[tokio::test]
async fn a_preview_answers_route_country_and_segments_and_stores_and_spends_nothing() {
    let app = TestApp::spawn().await;
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"max_sms_segments": 2, "rate_limit": {"per_second": 1, "burst": 1},
                "cascade_policies": {"otp": {"steps": [{"channel": "sms", "timeout_seconds": 30},
                                                       {"channel": "email"}]}}}),
    )
    .await
    .unwrap();
    // 200 characters with a '€': 201 septets, two SMS parts.
    let body = json!({"to": {"phone": "+14165550100", "email": "ada@example.com"},
                      "content": {"text": format!("{}€", "a".repeat(199))}, "cascade": "otp"});
    for _ in 0..3 {
        let (status, answer) = app.preview(&body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({"cascade_policy": {"name": "otp", "version": answer["cascade_policy"]["version"]},
                   "steps": [
                {"channel": "sms", "timeout_seconds": 30, "until": "delivered", "account": "mock",
                 "route_reason": "first_usable", "suppressed": false, "country": "CA",
                 "sms": {"encoding": "gsm7", "units": 201, "segments": 2}},
                {"channel": "email", "timeout_seconds": 60, "until": "delivered", "account": "mock",
                 "route_reason": "first_usable", "suppressed": false}
            ]})
        );
    }
    // Refused as a send would be, with the same code.
    let (status, problem) = app
        .preview(&json!({"to": {"phone": "+14165550100"},
            "content": {"text": "a".repeat(307)}, "cascade": [{"channel": "sms"}]}))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("too_many_segments"))
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_type = 'message'")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "a preview stores nothing");
    // Three previews spent none of the tenant's one-message burst.
    assert_eq!(app.post_message(&body).await.status().as_u16(), 202);
}
