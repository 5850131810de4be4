//! The admin API's plugin versions: uploaded, validated, swapped in while Hermes runs, rolled back.

use crate::harness::{TestApp, fresh_database, server_args};
use crate::providers::{accepted_sms, served_by, wait_until_served_by};
use hermes::app::{self, Roles};
use hermes_adapters::plugin::builtin;
use hermes_infra::plugin_uploads::{self, UploadError};
use hermes_infra::provider_accounts::SealingKey;
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-the-tests-0123456789";

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("content-type", "application/wasm")
        .body(body.to_vec());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The built-in mock plugin, relabelled as another version: its version string is data in the
/// component, so a same-length replacement is a valid plugin that describes itself differently.
fn mock_version(version: &str) -> Vec<u8> {
    let needle = b"0.1.0";
    assert_eq!(version.len(), needle.len());
    let mut bytes = builtin::MOCK.to_vec();
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the mock's version appears once");
    bytes[at[0]..at[0] + needle.len()].copy_from_slice(version.as_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_versions_are_uploaded_validated_swapped_in_and_rolled_back() {
    let app = TestApp::spawn_with(|args| {
        args.admin_token = Some(TOKEN.to_owned());
        args.secret_key = Some(SealingKey::generate_hex());
    })
    .await;
    let first = app.send(&accepted_sms()).await;
    assert_eq!(served_by(&app, &first).await, "mock@0.1.0");
    let put = reqwest::Method::PUT;
    let new_version = mock_version("0.9.9");
    let too_large = vec![0u8; hermes_command::admin::MAX_PLUGIN_BYTES + 1];

    // Refused: no token, a wrong one, bytes that are no plugin, another plugin, a bad name.
    for (token, path, body, status, code) in [
        (
            None,
            "/admin/v1/plugins/mock",
            &new_version[..],
            401,
            "unauthorized",
        ),
        (
            Some("guess"),
            "/admin/v1/plugins/mock",
            &new_version[..],
            401,
            "unauthorized",
        ),
        (
            Some(TOKEN),
            "/admin/v1/plugins/mock",
            b"not a component",
            422,
            "invalid_plugin",
        ),
        (
            Some(TOKEN),
            "/admin/v1/plugins/mock",
            builtin::EVIL,
            422,
            "invalid_plugin",
        ),
        (
            Some(TOKEN),
            "/admin/v1/plugins/Mock",
            &new_version[..],
            422,
            "invalid_plugin_name",
        ),
        (
            Some(TOKEN),
            "/admin/v1/plugins/mock",
            &too_large[..],
            413,
            "payload_too_large",
        ),
    ] {
        let (got, problem) = admin(&app, put.clone(), path, token, body).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{problem}"
        );
    }

    // A valid new version: stored, listed, and serving new attempts within a reload.
    let (status, uploaded) = admin(
        &app,
        put.clone(),
        "/admin/v1/plugins/mock",
        Some(TOKEN),
        &new_version,
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["version"], "0.9.9");
    assert_eq!(uploaded["source"], "upload");
    wait_until_served_by(&app, "mock@0.9.9").await;
    let (_, listed) = admin(
        &app,
        reqwest::Method::GET,
        "/admin/v1/plugins",
        Some(TOKEN),
        b"",
    )
    .await;
    let mock = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mock")
        .unwrap();
    assert_eq!(
        (&mock["source"], &mock["version"]),
        (&"upload".into(), &"0.9.9".into())
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "twilio" && p["source"] == "builtin")
    );

    // Rolled back: the built-in serves again; with no upload left, a second rollback is a 404.
    let post = reqwest::Method::POST;
    let (status, rolled) = admin(
        &app,
        post.clone(),
        "/admin/v1/plugins/mock/rollback",
        Some(TOKEN),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["removed"]["version"], "0.9.9");
    wait_until_served_by(&app, "mock@0.1.0").await;
    let (status, problem) = admin(
        &app,
        post,
        "/admin/v1/plugins/mock/rollback",
        Some(TOKEN),
        b"",
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("no_upload")));
}

/// Someone who can write `plugin_uploads` but does not hold the secret key cannot make Hermes run
/// other code: bytes swapped under the same digest, a digest and bytes swapped together, a
/// version relabelled, a row without a MAC, and a row read with another key are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_plugin_is_served_only_while_its_mac_holds() {
    let pool = sqlx::PgPool::connect(&fresh_database().await)
        .await
        .unwrap();
    hermes_infra::db::migrate(&pool).await.unwrap();
    let key = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
    let good = mock_version("0.9.9");
    let other = mock_version("0.8.8");
    let upload = plugin_uploads::insert(&pool, &key, "mock", "0.9.9", &good)
        .await
        .unwrap();
    let read = |key: SealingKey| {
        let pool = pool.clone();
        let sha256 = upload.sha256.clone();
        async move { plugin_uploads::wasm(&pool, &key, "mock", &sha256).await }
    };
    assert_eq!(read(key.clone()).await.unwrap(), Some(good.clone()));

    let other_key = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
    assert!(matches!(
        read(other_key).await,
        Err(UploadError::Unauthentic { .. })
    ));

    let (version, wasm, mac): (String, Vec<u8>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT version, wasm, mac FROM plugin_uploads")
            .fetch_one(&pool)
            .await
            .unwrap();
    for (what, tamper) in [
        ("bytes swapped", "UPDATE plugin_uploads SET wasm = $1"),
        (
            "version relabelled",
            "UPDATE plugin_uploads SET version = '0.8.8'",
        ),
        ("MAC removed", "UPDATE plugin_uploads SET mac = NULL"),
    ] {
        let query = sqlx::query(tamper);
        let query = if tamper.contains("$1") {
            query.bind(&other)
        } else {
            query
        };
        query.execute(&pool).await.unwrap();
        let got = read(key.clone()).await;
        assert!(
            matches!(got, Err(UploadError::Unauthentic { .. })),
            "{what}: {got:?}"
        );
        sqlx::query("UPDATE plugin_uploads SET version = $1, wasm = $2, mac = $3")
            .bind(&version)
            .bind(&wasm)
            .bind(&mac)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(read(key.clone()).await.unwrap(), Some(good));

    // Bytes and digest swapped together: the MAC covers the digest.
    let other_sha = plugin_uploads::digest(&other);
    sqlx::query("UPDATE plugin_uploads SET wasm = $1, sha256 = $2")
        .bind(&other)
        .bind(&other_sha)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        plugin_uploads::wasm(&pool, &key, "mock", &other_sha).await,
        Err(UploadError::Unauthentic { .. })
    ));
}

/// A tampered upload is not served by a running Hermes, and uploads need the secret key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hermes_refuses_a_tampered_upload() {
    let app = TestApp::spawn_with(|args| {
        args.admin_token = Some(TOKEN.to_owned());
        args.secret_key = Some(SealingKey::generate_hex());
    })
    .await;
    let put = reqwest::Method::PUT;
    let (status, _) = admin(
        &app,
        put,
        "/admin/v1/plugins/mock",
        Some(TOKEN),
        &mock_version("0.9.9"),
    )
    .await;
    assert_eq!(status, 201);
    wait_until_served_by(&app, "mock@0.9.9").await;

    let other = mock_version("0.8.8");
    sqlx::query("UPDATE plugin_uploads SET wasm = $1, sha256 = $2, version = '0.8.8'")
        .bind(&other)
        .bind(plugin_uploads::digest(&other))
        .execute(&app.app.pool)
        .await
        .unwrap();
    // The account whose plugin cannot be authenticated is no longer served: new messages are
    // refused at the door rather than handed to code nobody uploaded.
    let deadline = tokio::time::Instant::now() + crate::harness::WITHIN;
    loop {
        let r = app.post_message(&crate::providers::accepted_sms()).await;
        if r.status() == 422 {
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["code"], "channel_unavailable", "{problem}");
            break;
        }
        // Accepted while the account was still loaded: it may end up sent by 0.9.9 or unserved,
        // never by the tampered bytes (checked below).
        assert_eq!(r.status(), 202);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tampered upload is still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let served: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT payload->>'served_by' FROM events WHERE event_type = 'AttemptDispatched'",
    )
    .fetch_all(&app.app.pool)
    .await
    .unwrap();
    assert!(!served.contains(&"mock@0.8.8".to_owned()), "{served:?}");

    // Without the key, uploads are refused with a clear problem.
    let keyless = TestApp::spawn_with(|args| args.admin_token = Some(TOKEN.to_owned())).await;
    let (status, problem) = admin(
        &keyless,
        reqwest::Method::PUT,
        "/admin/v1/plugins/mock",
        Some(TOKEN),
        &mock_version("0.9.9"),
    )
    .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (503, json!("no_secret_key")),
        "{problem}"
    );
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let app = TestApp::spawn().await;
    let (status, problem) = admin(
        &app,
        reqwest::Method::GET,
        "/admin/v1/plugins",
        Some("anything"),
        b"",
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("admin_disabled"))
    );
}

#[tokio::test]
async fn admin_tokens_under_32_characters_refuse_to_start() {
    let database_url = fresh_database().await;
    for token in ["", "short", &"x".repeat(31)] {
        let mut args = server_args(&database_url);
        args.admin_token = Some(token.to_owned());
        let err = match app::start(&args, Roles::all()).await {
            Ok(_) => panic!("started with a {}-character admin token", token.len()),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("HERMES_ADMIN_TOKEN") && err.contains("at least 32 characters"),
            "{err}"
        );
        assert!(!token.is_empty() || err.contains("it has 0"), "{err}");
    }
    // 32 characters are enough.
    let mut args = server_args(&database_url);
    args.admin_token = Some("x".repeat(32));
    drop(
        app::start(&args, Roles::all())
            .await
            .expect("a 32-character token starts"),
    );

    // From a file (its trailing newline is not part of it): the same rule.
    let file = std::env::temp_dir().join(format!("hermes-admin-{}", uuid::Uuid::now_v7()));
    std::fs::write(&file, format!("{}\n", "y".repeat(31))).unwrap();
    let mut args = server_args(&database_url);
    args.admin_token_file = Some(file.clone());
    let err = app::start(&args, Roles::all())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("it has 31"), "{err}");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let started = app::start(&args, Roles::all())
        .await
        .expect("a long token from a file starts");
    let listed = hermes_adapters::http::client()
        .get(format!("{}/admin/v1/plugins", started.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn the_admin_api_answers_only_the_exact_token() {
    let app = TestApp::spawn_with(|args| args.admin_token = Some(TOKEN.to_owned())).await;
    let get = reqwest::Method::GET;
    let same_length_wrong = "b".repeat(TOKEN.len());
    for (token, status) in [
        (None, 401),
        (Some(""), 401),
        (Some(&same_length_wrong[..]), 401),
        (Some(&TOKEN[..TOKEN.len() - 1]), 401),
        (Some(&format!("{TOKEN}x")[..]), 401),
        (Some(TOKEN), 200),
    ] {
        let (got, body) = admin(&app, get.clone(), "/admin/v1/plugins", token, b"").await;
        assert_eq!(got, status, "token {token:?}: {body}");
        if status == 401 {
            assert_eq!(body["code"], "unauthorized", "{body}");
        } else {
            assert!(body.as_array().is_some_and(|a| !a.is_empty()), "{body}");
        }
    }
}
