//! The public API contract (ARCHITECTURE.md, "Public API (v1)" and "Running"), as a client sees
//! it: status codes, problem+json with stable codes, idempotency, tenant isolation, pagination,
//! the audit trail, receipts, operational endpoints, projection replay and the CLI.

use crate::harness::{TestApp, message};
use chrono::{DateTime, Utc};
use hermes_adapters::mock::{SIGNATURE_HEADER, sign};
use hermes_command::api::body::MAX_BODY_BYTES;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::harness::WITHIN;

/// Counts what messages recorded (the tenant's own history is in the log too).
const MESSAGE_EVENTS: &str = "SELECT count(*) FROM events WHERE stream_type = 'message'";
const PROBLEM_JSON: &str = "application/problem+json";

/// A one-step SMS the mock provider delivers.
fn sms_to(phone: &str) -> Value {
    message(json!({ "phone": phone }), &[("sms", 30)])
}

fn delivered_sms() -> Value {
    sms_to("+14155550100")
}

/// An SMS the mock provider accepts but never sends a receipt for: it stays `sending`.
fn pending_sms() -> Value {
    message(json!({"phone": "+15005550008"}), &[("sms", 300)])
}

/// Asserts that `r` is an RFC 9457 problem with this status and code; returns its body.
async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    let got = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["code"], code, "{text}");
    assert_eq!(v["status"], status, "{text}");
    assert_eq!(v["type"], format!("urn:hermes:problem:{code}"), "{text}");
    assert!(v["title"].is_string() && v["detail"].is_string(), "{text}");
    v
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.app.pool)
        .await
        .unwrap()
}

async fn accepted_count(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM events WHERE event_type = 'MessageAccepted'",
    )
    .await
}

async fn event_types_in_store(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_all(&app.app.pool)
        .await
        .unwrap()
}

/// `POST /v1/messages` with a raw body (sent as `application/json`) and optional headers.
async fn post_raw(
    app: &TestApp,
    key: &str,
    body: impl Into<reqwest::Body>,
    idempotency_key: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("request")
}

async fn post_idempotent(app: &TestApp, key: &str, idem: &str, body: &Value) -> reqwest::Response {
    post_raw(app, key, serde_json::to_vec(body).unwrap(), Some(idem)).await
}

/// The id of a 202 answer, and whether it carried `idempotent-replayed: true`.
async fn accepted_id(r: reqwest::Response) -> (String, bool) {
    let status = r.status();
    let replayed = match r.headers().get("idempotent-replayed") {
        None => false,
        Some(v) => {
            assert_eq!(v, "true");
            true
        }
    };
    let text = r.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "accepted");
    (v["id"].as_str().unwrap().to_owned(), replayed)
}

async fn cancel_as(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/messages/{id}/cancel")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// The list once `done` holds: it reads the read model, which may be moments behind GET by id.
async fn list_when(app: &TestApp, key: &str, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let list = list_as(app, key, query).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "the list never got there: {list}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn list_as(app: &TestApp, key: &str, query: &str) -> Value {
    let r = app.get_as(key, &format!("/v1/messages{query}")).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Bad input

struct Refused {
    what: &'static str,
    body: Vec<u8>,
    idempotency_key: Option<String>,
    status: u16,
    code: &'static str,
    /// `errors[0].field`, for validation errors.
    field: Option<&'static str>,
}

fn refused(what: &'static str, body: &Value, status: u16, code: &'static str) -> Refused {
    Refused {
        what,
        body: serde_json::to_vec(body).unwrap(),
        idempotency_key: None,
        status,
        code,
        field: None,
    }
}

impl Refused {
    fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_stable_codes_and_store_nothing() {
    let app = TestApp::spawn().await;
    let valid = delivered_sms();
    let mut wrong_to = valid.clone();
    wrong_to["to"] = json!("+14155550100");
    let mut unknown_field = valid.clone();
    unknown_field["priority"] = json!("high");
    let mut unknown_recipient_field = valid.clone();
    unknown_recipient_field["to"]["fax"] = json!("+14155550100");
    let mut no_cascade = valid.clone();
    no_cascade.as_object_mut().unwrap().remove("cascade");
    let mut too_large = message(json!({"email": "ada@example.com"}), &[("email", 30)]);
    too_large["content"]["email"]["html"] = json!("x".repeat(MAX_BODY_BYTES));

    let mut long_shared_text = message(json!({"phone": "+14155550100"}), &[("sms", 30)]);
    long_shared_text["content"] = json!({"text": "x".repeat(250_000)});

    let cases = vec![
        Refused {
            what: "truncated JSON",
            body: br#"{"to": {"phone": "+14155550100"}, "cascade": ["#.to_vec(),
            idempotency_key: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Refused {
            what: "not JSON at all",
            body: b"to=+14155550100&text=hi".to_vec(),
            idempotency_key: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Refused {
            what: "empty body",
            body: Vec::new(),
            idempotency_key: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        refused("`to` is a string", &wrong_to, 422, "invalid_request"),
        refused(
            "unknown top-level field",
            &unknown_field,
            422,
            "invalid_request",
        ),
        refused(
            "unknown field in `to`",
            &unknown_recipient_field,
            422,
            "invalid_request",
        ),
        refused("a JSON array", &json!([valid]), 422, "invalid_request"),
        refused(
            "unknown channel",
            &message(json!({"phone": "+14155550100"}), &[("pigeon", 30)]),
            422,
            "unknown_channel",
        )
        .field("cascade[0].channel"),
        refused(
            "email step without to.email",
            &message(json!({"phone": "+14155550100"}), &[("email", 30)]),
            422,
            "missing_recipient",
        )
        .field("to.email"),
        refused(
            "push step without to.push_token",
            &message(
                json!({"phone": "+14155550100"}),
                &[("sms", 30), ("push", 30)],
            ),
            422,
            "missing_recipient",
        )
        .field("to.push_token"),
        refused(
            "phone not E.164",
            &sms_to("415-555-0100"),
            422,
            "invalid_phone",
        )
        .field("to.phone"),
        refused(
            "whatsapp not E.164",
            &message(json!({"whatsapp": "+0123"}), &[("whatsapp", 30)]),
            422,
            "invalid_phone",
        )
        .field("to.whatsapp"),
        refused(
            "invalid email",
            &message(json!({"email": "ada at example.com"}), &[("email", 30)]),
            422,
            "invalid_email",
        )
        .field("to.email"),
        refused(
            "whatsapp template without a name",
            &json!({
                "to": {"whatsapp": "+14155550100"},
                "content": {"whatsapp": {"template": {"name": "", "language": "en_US"}}},
                "cascade": [{"channel": "whatsapp"}],
            }),
            422,
            "invalid_template",
        )
        .field("content.whatsapp.template.name"),
        refused(
            "shared text too long for the SMS step that carries it",
            &long_shared_text,
            422,
            "content_too_long",
        )
        .field("content.text"),
        refused("no cascade", &no_cascade, 422, "missing_cascade").field("cascade"),
        refused("body over the limit", &too_large, 413, "payload_too_large"),
        Refused {
            idempotency_key: Some(String::new()),
            ..refused(
                "empty Idempotency-Key",
                &valid,
                400,
                "invalid_idempotency_key",
            )
        },
        Refused {
            idempotency_key: Some("k".repeat(256)),
            ..refused(
                "Idempotency-Key of 256 characters",
                &valid,
                400,
                "invalid_idempotency_key",
            )
        },
    ];
    assert!(too_large.to_string().len() > MAX_BODY_BYTES);

    for case in cases {
        let r = post_raw(
            &app,
            &app.api_key,
            case.body,
            case.idempotency_key.as_deref(),
        )
        .await;
        let problem = assert_problem(r, case.status, case.code).await;
        if let Some(field) = case.field {
            assert_eq!(
                problem["errors"][0]["field"], field,
                "{}: {problem}",
                case.what
            );
            assert_eq!(problem["errors"][0]["code"], case.code, "{}", case.what);
        }
    }

    // Nothing was stored: no events, no idempotency keys, no messages to list.
    assert_eq!(count(&app, MESSAGE_EVENTS).await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM idempotency_keys").await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM timers").await, 0);
    assert_eq!(
        list_as(&app, &app.api_key, "").await["data"],
        json!([]),
        "the tenant has no messages"
    );
}

/// Every object of a request has a fixed set of fields: a field misspelt anywhere (`content.sms.txt`)
/// is refused instead of dropped, and an array where an object belongs is refused too. The problem
/// says where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_arrays_are_refused_at_every_level_of_a_request() {
    let app = TestApp::spawn().await;
    let full = json!({
        "to": {"phone": "+14155550100", "email": "ada@example.com", "push_token": "t-1", "whatsapp": "+14155550100"},
        "content": {
            "text": "hi",
            "sms": {"text": "hi"},
            "email": {"subject": "s", "text": "hi", "html": "<p>hi</p>"},
            "push": {"title": "t", "body": "hi", "data": {"free": {"form": true}}},
            "whatsapp": {"text": "hi", "template": {"name": "n", "language": "en_US", "components": []}},
        },
        "cascade": [{"channel": "sms", "timeout_seconds": 30}],
        "metadata": {"also": ["free", "form"]},
    });
    // The full document itself is fine (free-form `metadata` and `push.data` included).
    let r = post_raw(&app, &app.api_key, serde_json::to_vec(&full).unwrap(), None).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    for (pointer, path) in [
        ("/content", "content"),
        ("/content/sms", "content.sms"),
        ("/content/email", "content.email"),
        ("/content/push", "content.push"),
        ("/content/whatsapp", "content.whatsapp"),
        ("/content/whatsapp/template", "content.whatsapp.template"),
    ] {
        let mut unknown = full.clone();
        unknown.pointer_mut(pointer).unwrap()["txt"] = json!("misspelt");
        let r = post_raw(
            &app,
            &app.api_key,
            serde_json::to_vec(&unknown).unwrap(),
            None,
        )
        .await;
        let problem = assert_problem(r, 422, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("shape: {path}")) && detail.contains("unknown field `txt`"),
            "{pointer}: {detail}"
        );

        let mut array = full.clone();
        *array.pointer_mut(pointer).unwrap() = json!(["hi"]);
        let r = post_raw(
            &app,
            &app.api_key,
            serde_json::to_vec(&array).unwrap(),
            None,
        )
        .await;
        let problem = assert_problem(r, 422, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!(
                "shape: {path}: invalid type: sequence, expected an object"
            )),
            "{pointer}: {detail}"
        );
    }
    assert_eq!(
        accepted_count(&app).await,
        1,
        "only the valid request was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_the_size_limit_is_accepted() {
    let app = TestApp::spawn().await;
    let mut body = message(json!({"email": "ada@example.com"}), &[("email", 30)]);
    body["content"]["email"]["html"] = json!("");
    let padding = MAX_BODY_BYTES - serde_json::to_vec(&body).unwrap().len();
    body["content"]["email"]["html"] = json!("x".repeat(padding));
    let raw = serde_json::to_vec(&body).unwrap();
    assert_eq!(raw.len(), MAX_BODY_BYTES);
    let (id, _) = accepted_id(post_raw(&app, &app.api_key, raw, None).await).await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_endpoint_needs_a_valid_bearer_key() {
    let app = TestApp::spawn().await;
    let id = app.send(&pending_sms()).await;
    // Sent and waiting for a receipt that never comes: only a cancel could change it now.
    app.wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let body = serde_json::to_vec(&delivered_sms()).unwrap();
    let endpoints: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::POST, "/v1/messages".into()),
        (reqwest::Method::GET, "/v1/messages".into()),
        (reqwest::Method::GET, format!("/v1/messages/{id}")),
        (reqwest::Method::GET, format!("/v1/messages/{id}/events")),
        (reqwest::Method::POST, format!("/v1/messages/{id}/cancel")),
    ];
    let no_key: Option<&str> = None;
    let authorizations = [
        no_key,
        Some("Bearer hms_0000000000000000000000000000000000000000000000000000000000000000"),
        Some("Bearer not-a-key"),
        Some("Bearer "),
        Some("Basic x"),
        Some(app.api_key.as_str()), // the key without the `Bearer ` scheme
    ];
    for (method, path) in &endpoints {
        for authorization in authorizations {
            let mut req = app
                .client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(a) = authorization {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let what = format!("{method} {path} with {authorization:?}");
            assert_problem(r, 401, "unauthorized").await;
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
        }
    }
    // The scheme is case-insensitive (RFC 9110): any spelling of `Bearer` with the key works.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .client
            .get(app.url(&format!("/v1/messages/{id}")))
            .header("authorization", format!("{scheme} {}", app.api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Nothing got through: still the one message, not cancelled.
    assert_eq!(accepted_count(&app).await, 1);
    assert!(
        !event_types_in_store(&app, &id)
            .await
            .contains(&"MessageCancelled".to_owned())
    );
    assert_eq!(app.message(&id).await.unwrap()["status"], "sending");
}

// ---------------------------------------------------------------------------------------------
// 3. Idempotency-Key

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_and_body_answer_with_the_first_message() {
    let app = TestApp::spawn().await;
    let body = delivered_sms();
    let first = post_idempotent(&app, &app.api_key, "order-42", &body).await;
    let location = first
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let (id, replayed) = accepted_id(first).await;
    assert!(!replayed, "the first answer is not a replay");
    assert_eq!(location, Some(format!("/v1/messages/{id}")));

    let (again, replayed) =
        accepted_id(post_idempotent(&app, &app.api_key, "order-42", &body).await).await;
    assert_eq!(again, id);
    assert!(replayed, "the second answer says it is a replay");

    // The same document with its keys (at every level) in another order and other whitespace.
    let reordered = r#"{
        "cascade": [{"timeout_seconds": 30, "channel": "sms"}],
        "content": {"email": {"subject": "Your code"}, "text": "Your code is 1234"},
        "to": {"phone": "+14155550100"}
    }"#;
    assert_eq!(
        serde_json::from_str::<Value>(reordered).unwrap(),
        body,
        "the test's two bodies are the same document"
    );
    let (again, replayed) =
        accepted_id(post_raw(&app, &app.api_key, reordered, Some("order-42")).await).await;
    assert_eq!(again, id);
    assert!(replayed);

    app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(accepted_count(&app).await, 1, "one message stored");
    assert_eq!(
        list_when(&app, &app.api_key, "", |l| l["data"][0]["status"]
            == "delivered")
        .await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.mock_stats().sends, 1, "sent once");

    // A key of 255 characters (the most allowed) is taken, and is another key.
    let long = "k".repeat(255);
    let (other, replayed) =
        accepted_id(post_idempotent(&app, &app.api_key, &long, &body).await).await;
    assert!(!replayed);
    assert_ne!(other, id);
    assert_eq!(accepted_count(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let (id, _) =
        accepted_id(post_idempotent(&app, &app.api_key, "k-1", &delivered_sms()).await).await;
    let mut other = delivered_sms();
    other["reference"] = json!("another request");
    let r = post_idempotent(&app, &app.api_key, "k-1", &other).await;
    assert_problem(r, 409, "idempotency_key_reused").await;

    assert_eq!(accepted_count(&app).await, 1, "nothing new stored");
    let (message_id,): (Uuid,) =
        sqlx::query_as("SELECT message_id FROM idempotency_keys WHERE key = 'k-1'")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    assert_eq!(
        message_id.to_string(),
        id,
        "the key still names the first message"
    );
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert!(m["reference"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_per_tenant() {
    let app = TestApp::spawn().await;
    let (_, key_b) = app.new_tenant("b").await;
    let body = delivered_sms();
    let (a, replayed_a) =
        accepted_id(post_idempotent(&app, &app.api_key, "same", &body).await).await;
    let (b, replayed_b) = accepted_id(post_idempotent(&app, &key_b, "same", &body).await).await;
    assert!(!replayed_a && !replayed_b);
    assert_ne!(a, b, "each tenant gets its own message");
    assert_eq!(accepted_count(&app).await, 2);
    // Each still replays its own.
    let (a2, _) = accepted_id(post_idempotent(&app, &app.api_key, "same", &body).await).await;
    let (b2, _) = accepted_id(post_idempotent(&app, &key_b, "same", &body).await).await;
    assert_eq!((a2, b2), (a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_idempotency_key_make_one_message() {
    let app = TestApp::spawn().await;
    let body = delivered_sms();
    let answers = futures::future::join_all(
        (0..10).map(|_| post_idempotent(&app, &app.api_key, "burst", &body)),
    )
    .await;
    let mut ids = HashSet::new();
    let mut replays = 0;
    for r in answers {
        let (id, replayed) = accepted_id(r).await;
        ids.insert(id);
        replays += usize::from(replayed);
    }
    assert_eq!(ids.len(), 1, "one id for all: {ids:?}");
    assert_eq!(replays, 9, "all but the first are replays");
    let id = ids.into_iter().next().unwrap();
    app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(accepted_count(&app).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(DISTINCT stream_id) FROM events WHERE stream_type = 'message'"
        )
        .await,
        1
    );
    assert_eq!(app.mock_stats().sends, 1);
}

/// What one `POST /v1/messages` answered: (status, id if accepted, replayed, problem code).
async fn outcome(r: reqwest::Response) -> (u16, Option<String>, bool, Option<String>) {
    let status = r.status().as_u16();
    if status == 202 {
        let (id, replayed) = accepted_id(r).await;
        (status, Some(id), replayed, None)
    } else {
        let v: Value = r.json().await.unwrap();
        (status, None, false, v["code"].as_str().map(str::to_owned))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_and_two_bodies_make_one_message() {
    let app = TestApp::spawn().await;
    let a = delivered_sms();
    let mut b = delivered_sms();
    b["reference"] = json!("b");
    let answers = futures::future::join_all((0..10).map(|i| {
        let body = if i % 2 == 0 { &a } else { &b };
        let app = &app;
        async move { outcome(post_idempotent(app, &app.api_key, "contested", body).await).await }
    }))
    .await;
    let accepted: Vec<usize> = (0..10).filter(|i| answers[*i].0 == 202).collect();
    let refused: Vec<usize> = (0..10).filter(|i| answers[*i].0 != 202).collect();
    assert_eq!(accepted.len(), 5, "{answers:?}");
    let winner = accepted[0] % 2;
    assert!(
        accepted.iter().all(|i| i % 2 == winner),
        "only the body that won the key is accepted: {answers:?}"
    );
    let ids: HashSet<&String> = accepted
        .iter()
        .map(|i| answers[*i].1.as_ref().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(
        accepted.iter().filter(|i| !answers[**i].2).count(),
        1,
        "exactly one answer is not a replay: {answers:?}"
    );
    for i in refused {
        assert_eq!(answers[i].0, 409, "{answers:?}");
        assert_eq!(answers[i].3.as_deref(), Some("idempotency_key_reused"));
    }
    assert_eq!(accepted_count(&app).await, 1);
    let id = ids.into_iter().next().unwrap().clone();
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(m["reference"].is_null(), winner == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_does_not_fail_requests_accepted_alongside_it() {
    let app = TestApp::spawn().await;
    let (first, _) =
        accepted_id(post_idempotent(&app, &app.api_key, "used", &delivered_sms()).await).await;
    let mut other_body = delivered_sms();
    other_body["reference"] = json!("other");
    let plain = delivered_sms();
    let reused = post_idempotent(&app, &app.api_key, "used", &other_body);
    let retried = post_idempotent(&app, &app.api_key, "used", &plain);
    let fresh = futures::future::join_all((0..8).map(|i| {
        let key = format!("fresh-{i}");
        let plain = &plain;
        let app = &app;
        async move { post_idempotent(app, &app.api_key, &key, plain).await }
    }));
    let (reused, retried, fresh) = tokio::join!(reused, retried, fresh);
    assert_problem(reused, 409, "idempotency_key_reused").await;
    let (again, replayed) = accepted_id(retried).await;
    assert_eq!(again, first);
    assert!(replayed);
    let mut ids = HashSet::new();
    for r in fresh {
        let (id, replayed) = accepted_id(r).await;
        assert!(!replayed);
        ids.insert(id);
    }
    assert_eq!(ids.len(), 8, "eight new messages: {ids:?}");
    assert!(!ids.contains(&first));
    assert_eq!(accepted_count(&app).await, 9);
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Tenant isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_see_or_cancel_another_tenants_message() {
    let app = TestApp::spawn().await;
    let (_, key_b) = app.new_tenant("b").await;
    let a_msg = app.send(&pending_sms()).await;
    app.wait_for(&a_msg, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let (b_msg, _) = accepted_id(app.post_message_as(&key_b, &delivered_sms()).await).await;

    for path in [
        format!("/v1/messages/{a_msg}"),
        format!("/v1/messages/{a_msg}/events"),
    ] {
        assert_problem(app.get_as(&key_b, &path).await, 404, "not_found").await;
    }
    assert_problem(cancel_as(&app, &key_b, &a_msg).await, 404, "not_found").await;
    // ... and A's message was not cancelled.
    assert!(
        !event_types_in_store(&app, &a_msg)
            .await
            .contains(&"MessageCancelled".to_owned())
    );
    assert_eq!(app.message(&a_msg).await.unwrap()["status"], "sending");

    // Each list shows only its own tenant's messages (wait for B's to be projected).
    let deadline = Instant::now() + WITHIN;
    loop {
        let listed = ids(&list_as(&app, &key_b, "").await);
        assert!(!listed.contains(&a_msg), "B's list shows A's message");
        if listed == [b_msg.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "B's list: {listed:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let listed = list_when(&app, &app.api_key, "", |l| !ids(l).is_empty()).await;
    assert_eq!(ids(&listed), std::slice::from_ref(&a_msg));
    // A reading B's message: the same 404.
    assert_problem(
        app.get_as(&app.api_key, &format!("/v1/messages/{b_msg}"))
            .await,
        404,
        "not_found",
    )
    .await;

    // The owner can still cancel it.
    assert_eq!(cancel_as(&app, &app.api_key, &a_msg).await.status(), 200);
    app.wait_for_status(&a_msg, "cancelled", WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_message_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let random = Uuid::now_v7().to_string();
    for id in ["not-a-uuid", "123", random.as_str()] {
        for path in [
            format!("/v1/messages/{id}"),
            format!("/v1/messages/{id}/events"),
        ] {
            assert_problem(app.get_as(&app.api_key, &path).await, 404, "not_found").await;
        }
        assert_problem(cancel_as(&app, &app.api_key, id).await, 404, "not_found").await;
    }
    assert_eq!(count(&app, MESSAGE_EVENTS).await, 0);
}

// ---------------------------------------------------------------------------------------------
// 5. List

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_status_newest_first_with_cursor_pagination() {
    let app = TestApp::spawn().await;
    // Oldest first: delivered, failed, delivered, sending, delivered.
    let mut sent = Vec::new();
    for body in [
        delivered_sms(),
        sms_to("+15005550001"),
        delivered_sms(),
        pending_sms(),
        delivered_sms(),
    ] {
        sent.push(app.send(&body).await);
    }
    app.wait_for_status(&sent[0], "delivered", WITHIN).await;
    app.wait_for_status(&sent[1], "failed", WITHIN).await;
    app.wait_for_status(&sent[2], "delivered", WITHIN).await;
    app.wait_for(&sent[3], WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    app.wait_for_status(&sent[4], "delivered", WITHIN).await;
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

    // The list reads the read model, which may be moments behind what GET by id (always
    // current) showed: wait until it has caught up.
    let deadline = Instant::now() + WITHIN;
    let all = loop {
        let all = list_as(&app, &app.api_key, "").await;
        let statuses: Vec<&str> = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["status"].as_str().unwrap())
            .collect();
        if statuses == ["delivered", "sending", "delivered", "failed", "delivered"] {
            break all;
        }
        assert!(Instant::now() < deadline, "the list never caught up: {all}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(ids(&all), newest_first);
    assert!(all["next_cursor"].is_null());
    let created: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");

    let delivered = list_as(&app, &app.api_key, "?status=delivered").await;
    assert_eq!(
        ids(&delivered),
        [sent[4].clone(), sent[2].clone(), sent[0].clone()]
    );
    assert!(
        delivered["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "delivered")
    );
    assert_eq!(
        ids(&list_as(&app, &app.api_key, "?status=failed").await),
        [sent[1].clone()]
    );
    assert_eq!(
        ids(&list_as(&app, &app.api_key, "?status=sending").await),
        [sent[3].clone()]
    );
    assert_eq!(
        ids(&list_as(&app, &app.api_key, "?status=cancelled").await),
        Vec::<String>::new()
    );

    // Pages of 2: 2 + 2 + 1, every message once, in order, then no cursor.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut query = "?limit=2".to_owned();
    loop {
        let page = list_as(&app, &app.api_key, &query).await;
        pages += 1;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2, "{page_ids:?}");
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);

    // Filters and pages combine.
    let first = list_as(&app, &app.api_key, "?status=delivered&limit=2").await;
    assert_eq!(ids(&first), [sent[4].clone(), sent[2].clone()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = list_as(
        &app,
        &app.api_key,
        &format!("?status=delivered&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), [sent[0].clone()]);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_together_are_paged_exactly_once() {
    // Sent at once, they are likely stored in one transaction, with the same `created_at`.
    let app = TestApp::spawn().await;
    let body = delivered_sms();
    let answers = futures::future::join_all((0..20).map(|_| app.post_message(&body))).await;
    let mut sent = HashSet::new();
    for r in answers {
        sent.insert(accepted_id(r).await.0);
    }
    assert_eq!(sent.len(), 20);
    let deadline = Instant::now() + WITHIN;
    let all = loop {
        let all = list_as(&app, &app.api_key, "?limit=200").await;
        if ids(&all).len() == 20 {
            break all;
        }
        assert!(Instant::now() < deadline, "not all listed: {all}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let order = ids(&all);
    assert_eq!(order.iter().cloned().collect::<HashSet<_>>(), sent);
    let created: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["created_at"].as_str().unwrap())
        .collect();
    let times: Vec<DateTime<Utc>> = created.iter().map(|c| c.parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{created:?}");

    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    for _ in 0..20 {
        let page = list_as(&app, &app.api_key, &query).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, order, "pages of 3 visit every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_parameters_are_refused() {
    let app = TestApp::spawn().await;
    for (query, code) in [
        ("?status=pending", "invalid_status"),
        ("?status=", "invalid_status"),
        ("?status=DELIVERED", "invalid_status"),
        ("?cursor=not-a-cursor", "invalid_cursor"),
        ("?cursor=", "invalid_cursor"),
        ("?limit=0", "invalid_limit"),
        ("?limit=201", "invalid_limit"),
        ("?limit=-1", "invalid_limit"),
        ("?limit=abc", "invalid_limit"),
        ("?limit=", "invalid_limit"),
        ("?status=sending&status=failed", "invalid_query"),
    ] {
        let r = app
            .get_as(&app.api_key, &format!("/v1/messages{query}"))
            .await;
        assert_problem(r, 400, code).await;
    }
    // The bounds themselves are fine.
    list_as(&app, &app.api_key, "?limit=1").await;
    list_as(&app, &app.api_key, "?limit=200").await;
}

// ---------------------------------------------------------------------------------------------
// 6. Events (audit trail)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_of_a_delivered_message() {
    let app = TestApp::spawn().await;
    let id = app.send(&delivered_sms()).await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let events = app.events(&id).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..3],
        ["MessageAccepted", "StepStarted", "AttemptDispatched"],
        "{types:?}"
    );
    assert_eq!(types.last(), Some(&"MessageCompleted"), "{types:?}");
    assert!(types.contains(&"ReceiptRecorded"), "{types:?}");

    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (1..=events.len() as i64).collect::<Vec<_>>());
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(events.len(), event_types_in_store(&app, &id).await.len());

    for e in &events {
        assert_eq!(e["metadata"]["correlation_id"], id.as_str(), "{e}");
        assert!(e["recorded_at"].is_string(), "{e}");
        assert!(e["data"].get("type").is_none(), "{e}");
    }
    let actor = |t: &str| {
        events
            .iter()
            .find(|e| e["type"] == t)
            .map(|e| e["metadata"]["actor"].clone())
            .unwrap()
    };
    assert_eq!(
        events[0]["metadata"]["actor"],
        format!("tenant:{}", app.tenant_id)
    );
    assert_eq!(actor("AttemptDispatched"), "saga");
    assert_eq!(actor("ReceiptRecorded"), "provider:mock");
    assert_eq!(events[0]["data"]["spec"]["to"]["phone"], "+14155550100");
}

// ---------------------------------------------------------------------------------------------
// 7. Receipts

const MOCK_SECRET: &str = "api-test-secret";

async fn post_receipt(
    app: &TestApp,
    path: &str,
    body: &[u8],
    signature: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header(SIGNATURE_HEADER, s);
    }
    req.send().await.unwrap()
}

async fn receipts_recorded(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM events WHERE event_type = 'ReceiptRecorded'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_verified_matched_and_deduplicated() {
    let app = TestApp::spawn_with(|a| a.mock_provider_secret = Some(MOCK_SECRET.into())).await;
    // 0008: the mock accepts the send and never sends a receipt; the test plays the provider.
    let id = app.send(&pending_sms()).await;
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let attempt = m["attempts"][0]["id"].as_str().unwrap().to_owned();
    let provider_message_id = m["attempts"][0]["provider_message_id"].clone();
    let receipt = |attempt: &str| {
        serde_json::to_vec(&json!({
            "message_id": id,
            "attempt_id": attempt,
            "provider_message_id": provider_message_id,
            "status": "delivered",
            "timestamp": Utc::now(),
        }))
        .unwrap()
    };
    let body = receipt(&attempt);
    let path = format!("/v1/webhooks/mock/{id}/{attempt}");

    // Not signed, or signed with another secret: refused, nothing recorded.
    for signature in [
        None,
        Some(sign("another-secret", &body)),
        Some(sign(MOCK_SECRET, b"another body")),
        Some("sha256=zz".to_owned()),
    ] {
        let r = post_receipt(&app, &path, &body, signature.as_deref()).await;
        assert_problem(r, 401, "invalid_signature").await;
    }
    assert_eq!(receipts_recorded(&app).await, 0);
    assert_eq!(app.message(&id).await.unwrap()["status"], "sending");

    // A provider Hermes does not know.
    let r = post_receipt(
        &app,
        &format!("/v1/webhooks/nope/{id}/{attempt}"),
        &body,
        Some(&sign(MOCK_SECRET, &body)),
    )
    .await;
    assert_problem(r, 404, "unknown_provider").await;

    // Signed, but for an attempt the message never made.
    let stranger = Uuid::now_v7().to_string();
    let unknown = receipt(&stranger);
    let r = post_receipt(
        &app,
        &format!("/v1/webhooks/mock/{id}/{stranger}"),
        &unknown,
        Some(&sign(MOCK_SECRET, &unknown)),
    )
    .await;
    assert_problem(r, 404, "unknown_attempt").await;

    // Signed, but for a message that does not exist.
    let nobody = Uuid::now_v7();
    let orphan = serde_json::to_vec(&json!({
        "message_id": nobody, "attempt_id": attempt, "status": "delivered",
    }))
    .unwrap();
    let r = post_receipt(
        &app,
        &format!("/v1/webhooks/mock/{nobody}/{attempt}"),
        &orphan,
        Some(&sign(MOCK_SECRET, &orphan)),
    )
    .await;
    assert_problem(r, 404, "not_found").await;

    // Signed, but not a receipt; or a receipt for another attempt than its URL names.
    let garbage = b"{\"status\": \"delivered\"}";
    let r = post_receipt(&app, &path, garbage, Some(&sign(MOCK_SECRET, garbage))).await;
    assert_problem(r, 400, "malformed_callback").await;
    let r = post_receipt(
        &app,
        &format!("/v1/webhooks/mock/{id}/{stranger}"),
        &body,
        Some(&sign(MOCK_SECRET, &body)),
    )
    .await;
    assert_problem(r, 400, "malformed_callback").await;

    assert_eq!(receipts_recorded(&app).await, 0);
    assert_eq!(app.message(&id).await.unwrap()["status"], "sending");

    // Signed and right: recorded once, the message is delivered.
    let signature = sign(MOCK_SECRET, &body);
    let r = post_receipt(&app, &path, &body, Some(&signature)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"recorded": 1}));
    app.wait_for_status(&id, "delivered", WITHIN).await;

    // The provider retries the same receipt: taken, not recorded again.
    let r = post_receipt(&app, &path, &body, Some(&signature)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"recorded": 0}));
    assert_eq!(receipts_recorded(&app).await, 1);
}

// ---------------------------------------------------------------------------------------------
// 8. Operational endpoints

/// Without its database Hermes is alive but not ready: a load balancer should stop sending to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_not_ready_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    // Every handle of the pool shares it: closing it is the database going away for this Hermes.
    // (The close itself waits for busy connections to come back; the pool refuses new work at once.)
    let pool = app.app.pool.clone();
    tokio::spawn(async move { pool.close().await });
    let deadline = tokio::time::Instant::now() + WITHIN;
    let r = loop {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        if r.status() != 200 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "not_ready");
    let alive = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "the process itself is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_and_docs() {
    let app = TestApp::spawn().await;
    let get = |path: &'static str| app.client.get(app.url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    let r = get("/openapi.json").await.unwrap();
    assert_eq!(r.status(), 200);
    let spec: Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with('3'));
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/messages/{id}/cancel",
        "/v1/messages/{id}/ack",
        "/v1/messages/{id}/events",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "openapi.json lacks {path}"
        );
    }
    assert!(spec["paths"]["/v1/messages"].get("post").is_some());
    assert!(spec["paths"]["/v1/messages"].get("get").is_some());
    assert!(
        spec["components"]["securitySchemes"]
            .get("api_key")
            .is_some()
    );
    let limit = spec["paths"]["/v1/messages"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("a limit parameter");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["schema"]["format"], "int64", "{limit}");

    for path in ["/docs", "/docs/"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let html = r.text().await.unwrap();
        assert!(html.to_lowercase().contains("swagger"), "{path}");
    }

    for path in ["/nope", "/v1/nope", "/v2/messages"] {
        assert_problem(get(path).await.unwrap(), 404, "not_found").await;
    }

    // A known path with a method it does not take.
    let r = app
        .client
        .delete(app.url("/v1/messages"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_problem(r, 405, "method_not_allowed").await;
    let allow = allow.expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

// ---------------------------------------------------------------------------------------------
// 9. Replay

pub(crate) type ViewRow = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    Value,
);

pub(crate) async fn snapshot_views(app: &TestApp) -> Vec<ViewRow> {
    sqlx::query_as(
        "SELECT message_id, tenant_id, status, reference, version, created_at, updated_at, state
         FROM message_views ORDER BY message_id",
    )
    .fetch_all(&app.app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_message_views_rebuilds_the_same_rows() {
    let app = TestApp::spawn().await;
    let (_, key_b) = app.new_tenant("b").await;
    let mut with_reference = delivered_sms();
    with_reference["reference"] = json!("order-7");
    with_reference["metadata"] = json!({"customer": 7});
    let delivered = app.send(&with_reference).await;
    let failed = app.send(&sms_to("+15005550001")).await;
    let fallback = app
        .send(&message(
            json!({"phone": "+15005550009", "email": "ada@example.com"}),
            &[("sms", 30), ("email", 30)],
        ))
        .await;
    let cancelled = app.send(&pending_sms()).await;
    let (other_tenant, _) = accepted_id(app.post_message_as(&key_b, &delivered_sms()).await).await;

    app.wait_for_status(&delivered, "delivered", WITHIN).await;
    app.wait_for_status(&failed, "failed", WITHIN).await;
    let m = app.wait_for_status(&fallback, "delivered", WITHIN).await;
    assert_eq!(m["attempts"][0]["status"], "failed");
    app.wait_for(&cancelled, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    assert_eq!(
        cancel_as(&app, &app.api_key, &cancelled).await.status(),
        200
    );
    app.wait_for_status(&cancelled, "cancelled", WITHIN).await;

    // Wait until every stream's last event is projected (B's message too).
    let deadline = Instant::now() + WITHIN;
    loop {
        let behind = count(
            &app,
            "SELECT (SELECT count(DISTINCT stream_id) FROM events WHERE stream_type = 'message')
                  - (SELECT count(*) FROM message_views v WHERE v.version =
                       (SELECT max(stream_version) FROM events e WHERE e.stream_id = v.message_id))",
        )
        .await;
        let b_done = sqlx::query_scalar::<_, String>(
            "SELECT status FROM message_views WHERE message_id = $1",
        )
        .bind(Uuid::parse_str(&other_tenant).unwrap())
        .fetch_optional(&app.app.pool)
        .await
        .unwrap()
        .is_some_and(|s| s == "delivered");
        if behind == 0 && b_done {
            break;
        }
        assert!(Instant::now() < deadline, "the projector did not catch up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let before = snapshot_views(&app).await;
    assert_eq!(before.len(), 5);
    let replayed = hermes_projections::message_views::replay(&app.app.pool)
        .await
        .unwrap();
    assert_eq!(
        replayed as i64,
        count(&app, "SELECT count(*) FROM events").await
    );
    let after = snapshot_views(&app).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "message {} differs after replay", b.0);
    }
    // Still served the same through the API.
    let m = app.message(&delivered).await.unwrap();
    assert_eq!(m["reference"], "order-7");
    assert_eq!(m["status"], "delivered");
}

// ---------------------------------------------------------------------------------------------
// 10. CLI

pub(crate) async fn hermes_cli(database_url: &str, args: &[&str]) -> Output {
    let database_url = database_url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hermes"))
            .args(&args)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the hermes binary")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_tenants_and_prints_audit_timelines() {
    let app = TestApp::spawn().await;
    let out = hermes_cli(
        &app.database_url,
        &["tenant", "create", "--name", "acme", "--json"],
    )
    .await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
    let tenant_id = Uuid::parse_str(created["tenant_id"].as_str().unwrap()).unwrap();
    let api_key = created["api_key"].as_str().unwrap();
    let name: String = sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
    assert_eq!(name, "acme");

    // The key works against the running Hermes, as that tenant.
    let (id, _) = accepted_id(app.post_message_as(api_key, &delivered_sms()).await).await;
    let deadline = Instant::now() + WITHIN;
    loop {
        let r = app.get_as(api_key, &format!("/v1/messages/{id}")).await;
        if r.status() == 200 && r.json::<Value>().await.unwrap()["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let events = app
        .get_as(api_key, &format!("/v1/messages/{id}/events"))
        .await;
    let events: Value = events.json().await.unwrap();
    assert_eq!(
        events["data"][0]["metadata"]["actor"],
        format!("tenant:{tenant_id}")
    );
    // ... and not as the harness's tenant.
    assert!(app.message(&id).await.is_none());

    let out = hermes_cli(&app.database_url, &["audit", &id]).await;
    let timeline = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{timeline}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        timeline.contains(&format!("message {id} (tenant {tenant_id})")),
        "{timeline}"
    );
    let accepted = timeline.find("MessageAccepted").expect(&timeline);
    let completed = timeline.find("MessageCompleted").expect(&timeline);
    assert!(accepted < completed, "{timeline}");
    assert!(
        timeline.trim_end().ends_with("status: delivered"),
        "{timeline}"
    );

    for missing in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let out = hermes_cli(&app.database_url, &["audit", &missing]).await;
        assert!(!out.status.success(), "audit {missing} succeeded");
        assert!(out.stdout.is_empty(), "audit {missing} printed a timeline");
    }
}
