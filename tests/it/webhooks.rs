//! Tenant webhooks (issue 10): a tenant's endpoint hears about its messages, signed as Standard
//! Webhooks say (checked with the reference library), retried on schedule until the receiver
//! recovers, failed and redelivered when it does not, and a slow endpoint never holds up another.

use crate::harness::{TestApp, message};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path: String,
    pub(crate) headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A tenant's webhook receiver: `/ok` answers 204; `/flaky` answers 500 to the first
/// `flaky_failures` requests, then 204; `/dead` answers 500 while `dead` is set, then 204;
/// `/slow` waits 3 s, then 204.
#[derive(Default)]
pub(crate) struct Receiver {
    got: Mutex<Vec<Received>>,
    flaky_failures: Mutex<usize>,
    dead: Mutex<bool>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, &'static str) {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    r.got.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    match path.as_str() {
        "flaky" => {
            let mut left = r.flaky_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return (StatusCode::INTERNAL_SERVER_ERROR, "not now");
            }
        }
        "dead" if *r.dead.lock().unwrap() => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down for good");
        }
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    (StatusCode::NO_CONTENT, "")
}

/// Starts a receiver; answers it and its base URL.
pub(crate) async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

impl Receiver {
    pub(crate) fn got(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for what `path` got, for at most `within`.
    async fn wait(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got(path);
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "/{path} did not get what was expected within {within:?}; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The notices of one message among what a receiver got, by type.
fn types_for(got: &[Received], message_id: &str) -> Vec<String> {
    got.iter()
        .map(Received::json)
        .filter(|n| n["data"]["message_id"] == message_id)
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates an endpoint for the app's tenant; answers (id, secret).
async fn endpoint(app: &TestApp, key: &str, url: String, types: &[&str]) -> (String, String) {
    let (status, body) = app
        .call(
            key,
            reqwest::Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": url, "event_types": types, "description": "test"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// The reference library's verdict on each delivery (tools/standardwebhooks/verify.py).
fn verify_with_reference_library(secret: &str, got: &[Received]) -> Vec<String> {
    let tools = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let status = std::process::Command::new("python3")
        .arg(tools.join("ensure_venv.py"))
        .arg(tools.join("standardwebhooks"))
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "tools/ensure_venv.py tools/standardwebhooks failed"
    );
    let input = json!({
        "secret": secret,
        "deliveries": got.iter().map(|r| json!({"headers": r.headers, "body": r.body})).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(tools.join("standardwebhooks/.venv/bin/python"))
        .arg(tools.join("standardwebhooks/verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("verify.py starts");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_is_told_in_order_signed_as_standard_webhooks_verify() {
    let app = TestApp::spawn().await;
    let (receiver, url) = receiver().await;
    let (_, secret) = endpoint(&app, &app.api_key, format!("{url}/ok"), &[]).await;
    let (_, failed_only) = endpoint(
        &app,
        &app.api_key,
        format!("{url}/failures"),
        &["message.failed"],
    )
    .await;
    assert!(failed_only.starts_with("whsec_"));

    let id = app
        .send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let got = receiver
        .wait("ok", Duration::from_secs(20), |got| {
            types_for(got, &id).contains(&"message.delivered".to_owned())
        })
        .await;
    assert_eq!(
        types_for(&got, &id),
        [
            "message.accepted",
            "message.attempt_sent",
            "message.delivered"
        ]
    );
    let delivered = got
        .iter()
        .find(|r| r.json()["type"] == "message.delivered")
        .unwrap();
    let notice = delivered.json();
    assert_eq!(notice["data"]["status"], "sending");
    assert_eq!(notice["data"]["attempt"]["channel"], "sms");
    assert_eq!(notice["data"]["attempt"]["status"], "delivered");
    assert_eq!(delivered.headers["content-type"], "application/json");
    assert!(delivered.headers["webhook-signature"].starts_with("v1,"));

    // Every delivery verifies with the reference library; a tampered body does not.
    let verdicts = verify_with_reference_library(&secret, &got);
    assert_eq!(verdicts, vec!["ok"; got.len()], "{verdicts:?}");
    let mut tampered = delivered.clone();
    tampered.body = tampered.body.replace("delivered", "failed");
    assert!(verify_with_reference_library(&secret, &[tampered])[0].starts_with("invalid"));

    // The endpoint that wants failures only heard nothing.
    assert!(receiver.got("failures").is_empty());

    // The message shows its deliveries, each with its attempt.
    let (status, body) = app
        .call(
            &app.api_key,
            reqwest::Method::GET,
            &format!("/v1/messages/{id}/webhook-deliveries"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{body:#}");
    for d in deliveries {
        assert_eq!(d["status"], "succeeded", "{d:#}");
        assert_eq!(d["attempt_log"][0]["status_code"], 204);
        assert_eq!(
            got.iter()
                .filter(|r| r.headers["webhook-id"] == d["id"].as_str().unwrap())
                .count(),
            1,
            "the webhook-id is the delivery's id"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_on_the_schedule_until_it_recovers() {
    let app = TestApp::spawn_with(|args| args.webhooks.retry_base_ms = 100).await;
    let (receiver, url) = receiver().await;
    *receiver.flaky_failures.lock().unwrap() = 3;
    let (endpoint_id, _) = endpoint(
        &app,
        &app.api_key,
        format!("{url}/flaky"),
        &["message.accepted"],
    )
    .await;
    let id = app
        .send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let got = receiver
        .wait("flaky", Duration::from_secs(20), |got| got.len() >= 4)
        .await;
    // Waits of about 100, 400 and 1,600 ms (±20%): each longer than the last.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(80), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(320), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(1280), "{gaps:?}");
    assert!(gaps[2] > gaps[1] && gaps[1] > gaps[0], "{gaps:?}");
    let ids: Vec<&String> = got.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id on every attempt"
    );

    let (_, body) = app
        .call(
            &app.api_key,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
            None,
        )
        .await;
    let d = &body["deliveries"][0];
    assert_eq!(d["message_id"], id.as_str());
    assert_eq!(d["status"], "succeeded", "{body:#}");
    assert_eq!(d["attempts"], 4);
    assert_eq!(
        d["attempt_log"][0]["status_code"], 204,
        "the list shows the last attempt"
    );
    let (_, message) = app
        .call(
            &app.api_key,
            reqwest::Method::GET,
            &format!("/v1/messages/{id}/webhook-deliveries"),
            None,
        )
        .await;
    let codes: Vec<&Value> = message["deliveries"][0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [500, 500, 500, 204]);
    assert_eq!(
        message["deliveries"][0]["attempt_log"][0]["response"],
        "not now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_ends_failed_its_endpoint_is_disabled_and_redelivery_sends_again() {
    let app = TestApp::spawn_with(|args| {
        args.webhooks.retry_base_ms = 50;
        // Tries at about 0, 50, 250 and 1,050 ms, then fails (the next would be past 3 s).
        args.webhooks.give_up_ms = 3_000;
        args.webhooks.disable_after_ms = 1_500;
    })
    .await;
    let (receiver, url) = receiver().await;
    *receiver.dead.lock().unwrap() = true;
    let (endpoint_id, _) = endpoint(
        &app,
        &app.api_key,
        format!("{url}/dead"),
        &["message.accepted"],
    )
    .await;
    let first = app
        .send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let deliveries = |status: &'static str| {
        let app = &app;
        let endpoint_id = endpoint_id.clone();
        async move {
            let (code, body) = app
                .call(
                    &app.api_key,
                    reqwest::Method::GET,
                    &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries?status={status}"),
                    None,
                )
                .await;
            assert_eq!(code, 200, "{body}");
            body["deliveries"].as_array().unwrap().clone()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while deliveries("failed").await.is_empty() {
        assert!(Instant::now() < deadline, "the delivery never ended failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = deliveries("failed").await;
    assert_eq!(failed[0]["message_id"], first.as_str());
    let tries = failed[0]["attempts"].as_i64().unwrap();
    assert_eq!(tries, 4, "tried on the schedule within 3 s");
    assert_eq!(receiver.got("dead").len() as i64, tries);

    // A second message's delivery fails on past 1.5 s of nothing but failures: the endpoint is
    // disabled.
    app.send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let disabled = loop {
        let (_, e) = app
            .call(
                &app.api_key,
                reqwest::Method::GET,
                &format!("/v1/webhook-endpoints/{endpoint_id}"),
                None,
            )
            .await;
        if e["enabled"] == false {
            break e;
        }
        assert!(Instant::now() < deadline, "never disabled: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every delivery failed since"),
        "{disabled:#}"
    );

    // The receiver is back; the tenant enables the endpoint and redelivers what failed.
    *receiver.dead.lock().unwrap() = false;
    let (status, e) = app
        .call(
            &app.api_key,
            reqwest::Method::PATCH,
            &format!("/v1/webhook-endpoints/{endpoint_id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(e["disabled_reason"], Value::Null);
    let before = receiver.got("dead").len();
    let (status, body) = app
        .call(
            &app.api_key,
            reqwest::Method::POST,
            &format!("/v1/webhook-endpoints/{endpoint_id}/redeliver"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    assert!(body["redelivered"].as_u64().unwrap() >= 1, "{body}");
    let got = receiver
        .wait("dead", Duration::from_secs(20), |got| {
            got[before..]
                .iter()
                .any(|r| r.json()["data"]["message_id"] == first.as_str())
        })
        .await;
    assert!(got.len() > before);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !deliveries("failed").await.is_empty() || !deliveries("pending").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "redelivered deliveries did not succeed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One delivery again, by its id: it goes out once more with the same webhook-id.
    let one = deliveries("succeeded").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = receiver.got("dead").len();
    let (status, body) = app
        .call(
            &app.api_key,
            reqwest::Method::POST,
            &format!("/v1/webhook-deliveries/{one}/redeliver"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let got = receiver
        .wait("dead", Duration::from_secs(20), |got| got.len() > before)
        .await;
    assert_eq!(got.last().unwrap().headers["webhook-id"], one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_another_tenants_deliveries() {
    let app = TestApp::spawn().await;
    let (receiver, url) = receiver().await;
    let (_, other_key) = app.new_tenant("other").await;
    endpoint(
        &app,
        &app.api_key,
        format!("{url}/slow"),
        &["message.accepted"],
    )
    .await;
    endpoint(&app, &other_key, format!("{url}/ok"), &["message.accepted"]).await;
    // The slow endpoint's tenant sends 30 messages: 30 deliveries of 3 s each.
    for _ in 0..30 {
        app.send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
            .await;
    }
    // Then the other tenant sends one; its notice arrives while the slow ones still queue.
    let r = app
        .post_message_as(
            &other_key,
            &message(json!({"phone": "+15005550100"}), &[("sms", 30)]),
        )
        .await;
    assert_eq!(r.status(), 202);
    let other: Value = r.json().await.unwrap();
    let sent_at = Instant::now();
    receiver
        .wait("ok", Duration::from_secs(10), |got| {
            types_for(got, other["id"].as_str().unwrap()) == ["message.accepted"]
        })
        .await;
    let waited = sent_at.elapsed();
    let slow_started = receiver.got("slow").len();
    assert!(
        slow_started < 30,
        "the slow endpoint was not still busy ({slow_started} started)"
    );
    assert!(
        waited < Duration::from_secs(3),
        "the other tenant's notice waited {waited:?} behind the slow endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_alongside_the_new_one_for_the_overlap() {
    let app = TestApp::spawn().await;
    let (receiver, url) = receiver().await;
    let (endpoint_id, old) = endpoint(
        &app,
        &app.api_key,
        format!("{url}/ok"),
        &["message.accepted"],
    )
    .await;
    let (status, rotated) = app
        .call(
            &app.api_key,
            reqwest::Method::POST,
            &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
            Some(json!({"overlap_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_valid_until"].is_string());
    app.send(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .await;
    let got = receiver
        .wait("ok", Duration::from_secs(20), |got| !got.is_empty())
        .await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    // Receivers on either secret verify it.
    assert_eq!(verify_with_reference_library(&new, &got[..1]), ["ok"]);
    assert_eq!(verify_with_reference_library(&old, &got[..1]), ["ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_are_refused_and_tenants_never_see_each_others() {
    let app = TestApp::spawn_with(|args| args.webhooks.allow_private = false).await;
    let post = |key: String, body: Value| {
        let app = &app;
        async move {
            app.call(
                &key,
                reqwest::Method::POST,
                "/v1/webhook-endpoints",
                Some(body),
            )
            .await
        }
    };
    let key = app.api_key.clone();
    for (body, code) in [
        (
            json!({"url": "http://127.0.0.1:9/hooks"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "ftp://example.com/hooks"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "https://user:pw@example.com/"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "https://example.com/", "event_types": ["message.bounced"]}),
            "unknown_event_type",
        ),
        (
            json!({"url": "https://example.com/", "colour": "red"}),
            "invalid_request",
        ),
        (json!({}), "invalid_request"),
        (
            json!({"url": "https://example.com/", "description": "d".repeat(1025)}),
            "invalid_request",
        ),
    ] {
        let (status, problem) = post(key.clone(), body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some(code)),
            "{body}: {problem}"
        );
    }
    let (status, created) = post(key.clone(), json!({"url": "https://example.com/hooks"})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, problem) = app
        .call(
            &key,
            reqwest::Method::POST,
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            Some(json!({"overlap_seconds": 604_801})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_overlap"))
    );
    // JSON (and the OpenAPI document) calls 60.0 an integer; a fraction is no count of seconds.
    for (overlap, expected) in [(json!(60.0), 200), (json!(1.5), 422)] {
        let (status, answer) = app
            .call(
                &key,
                reqwest::Method::POST,
                &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
                Some(json!({ "overlap_seconds": overlap })),
            )
            .await;
        assert_eq!(status, expected, "{overlap}: {answer}");
    }
    let (status, problem) = app
        .call(
            &key,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{id}/deliveries?status=lost"),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_request"))
    );

    // Another tenant: no such endpoint, whatever it tries.
    let (_, other) = app.new_tenant("other").await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/webhook-endpoints/{id}")),
        (
            reqwest::Method::PATCH,
            format!("/v1/webhook-endpoints/{id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/webhook-endpoints/{id}"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/webhook-endpoints/{id}/deliveries"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{id}/redeliver"),
        ),
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"enabled": false}));
        let (status, problem) = app.call(&other, method.clone(), &path, body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}"
        );
    }
    let (_, list) = app
        .call(&other, reqwest::Method::GET, "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(list["endpoints"], json!([]));
    let (status, _) = app
        .call(
            &key,
            reqwest::Method::DELETE,
            &format!("/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, list) = app
        .call(&key, reqwest::Method::GET, "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(list["endpoints"], json!([]));

    // Twenty endpoints at most; the twenty-first is refused and not stored.
    for n in 0..20 {
        let (status, _) = post(
            key.clone(),
            json!({"url": format!("https://example.com/{n}")}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, problem) = post(key.clone(), json!({"url": "https://example.com/21"})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("too_many_endpoints"))
    );
    let (_, list) = app
        .call(&key, reqwest::Method::GET, "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 20);
}
