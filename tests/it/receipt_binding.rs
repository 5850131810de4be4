//! A receipt counts only for the attempt and the account it belongs to: forged and replayed
//! callbacks, each genuinely signed, are refused (problem+json) and record nothing.

use crate::harness::{TestApp, WITHIN, message};
use crate::providers::{account, install_accounts};
use chrono::Utc;
use hermes_adapters::mock::{SIGNATURE_HEADER, sign};
use hermes_infra::provider_accounts::SealingKey;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use uuid::Uuid;

const MOCK_SECRET: &str = "mock-secret-for-receipt-binding";
const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret";

/// An SMS the mock accepts and never sends a receipt for (phone ending 0008): the test plays the
/// provider.
fn pending_sms() -> Value {
    message(json!({"phone": "+15005550008"}), &[("sms", 300)])
}

async fn post(app: &TestApp, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "a refusal is a problem"
        );
    }
    (status, r.json().await.unwrap())
}

/// A mock receipt, signed with the mock's secret.
fn mock_receipt(id: &str, attempt: &str, provider_message_id: &Value, status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "message_id": id,
        "attempt_id": attempt,
        "provider_message_id": provider_message_id,
        "status": status,
        "timestamp": Utc::now(),
    }))
    .unwrap()
}

async fn post_mock(app: &TestApp, path: &str, body: &[u8]) -> (u16, Value) {
    post(
        app,
        path,
        body,
        &[(SIGNATURE_HEADER, sign(MOCK_SECRET, body))],
    )
    .await
}

async fn receipts_recorded(app: &TestApp, id: &str) -> usize {
    app.events(id)
        .await
        .iter()
        .filter(|e| e["type"] == "ReceiptRecorded")
        .count()
}

/// The message's first attempt once it is `sent`: (attempt id, provider, provider message id).
async fn sent_attempt(app: &TestApp, id: &str) -> (String, String, Value) {
    let m = app
        .wait_for(id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let a = &m["attempts"][0];
    (
        a["id"].as_str().unwrap().to_owned(),
        a["provider"].as_str().unwrap().to_owned(),
        a["provider_message_id"].clone(),
    )
}

/// Two mock accounts sharing a secret, and a Vonage account: a receipt genuinely signed for one
/// account's attempt is refused at the other's webhook, and one whose signed ids are not its
/// URL's is refused whatever the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_refused_at_another_accounts_webhook_or_another_attempts_url() {
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| {
        args.secret_key = Some(key_hex.clone());
        args.mock_provider_secret = Some(MOCK_SECRET.to_owned());
    })
    .await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let mock_url = app.app.mock.as_ref().unwrap().base_url();
    install_accounts(
        &app,
        &key,
        &[
            account(
                "mock-a",
                "mock",
                10,
                &[("base_url", &mock_url), ("secret", MOCK_SECRET)],
            ),
            account(
                "mock-b",
                "mock",
                20,
                &[("base_url", &mock_url), ("secret", MOCK_SECRET)],
            ),
            account(
                "vonage",
                "vonage",
                30,
                &[
                    ("api_key", "abcd1234"),
                    ("api_secret", "abcdef123456"),
                    ("from", "Hermes"),
                    ("signature_secret", VONAGE_SIGNATURE_SECRET),
                    ("signature_method", "sha256"),
                ],
            ),
        ],
    )
    .await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    let (id, attempt, provider_message_id) = loop {
        let id = app.send(&pending_sms()).await;
        let (attempt, provider, provider_message_id) = sent_attempt(&app, &id).await;
        if provider == "mock-a" {
            break (id, attempt, provider_message_id);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still served by {provider}"
        );
    };
    let body = mock_receipt(&id, &attempt, &provider_message_id, "delivered");

    // mock-b verifies the signature (same secret) but did not send this attempt.
    let (status, problem) =
        post_mock(&app, &format!("/v1/webhooks/mock-b/{id}/{attempt}"), &body).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("receipt_account_mismatch")),
        "{problem}"
    );
    assert_eq!(receipts_recorded(&app, &id).await, 0);

    // A Vonage receipt, signed and fresh, whose client-ref names another attempt than the URL.
    let other_attempt = Uuid::now_v7().to_string();
    let (status, problem) = post(
        &app,
        &format!("/v1/webhooks/vonage/{id}/{attempt}"),
        &vonage_dlr(&id, &other_attempt),
        &[],
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("receipt_attempt_mismatch")),
        "{problem}"
    );
    // Naming the real attempt, at Vonage's webhook: mock-a sent it, not Vonage.
    let (status, problem) =
        post(&app, "/v1/webhooks/vonage", &vonage_dlr(&id, &attempt), &[]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("receipt_account_mismatch")),
        "{problem}"
    );
    assert_eq!(receipts_recorded(&app, &id).await, 0);
    assert_eq!(app.message(&id).await.unwrap()["status"], "sending");

    // At its own account's webhook the receipt is recorded.
    let (status, answer) =
        post_mock(&app, &format!("/v1/webhooks/mock-a/{id}/{attempt}"), &body).await;
    assert_eq!((status, answer), (200, json!({"recorded": 1})));
    app.wait_for_status(&id, "delivered", WITHIN).await;
}

/// A receipt signed for this attempt's URL but about another provider message (a captured receipt
/// of another attempt, replayed where only the provider's own ids are signed) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_about_another_provider_message_is_refused() {
    let app = TestApp::spawn_with(|a| a.mock_provider_secret = Some(MOCK_SECRET.into())).await;
    let id = app.send(&pending_sms()).await;
    let (attempt, _, provider_message_id) = sent_attempt(&app, &id).await;
    assert!(
        provider_message_id.is_string(),
        "the mock names its message"
    );
    let path = format!("/v1/webhooks/mock/{id}/{attempt}");

    let forged = mock_receipt(&id, &attempt, &json!("mock-someone-elses"), "delivered");
    let (status, problem) = post_mock(&app, &path, &forged).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("receipt_provider_id_mismatch")),
        "{problem}"
    );
    assert_eq!(receipts_recorded(&app, &id).await, 0);
    assert_eq!(app.message(&id).await.unwrap()["status"], "sending");

    let genuine = mock_receipt(&id, &attempt, &provider_message_id, "delivered");
    let (status, answer) = post_mock(&app, &path, &genuine).await;
    assert_eq!((status, answer), (200, json!({"recorded": 1})));
}

/// Callbacks replayed in alternation (failed, sent, failed, delivered...) cannot make an attempt
/// oscillate: after `failed` nothing is recorded, and the stream stops growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_alternating_receipts_do_not_grow_the_message() {
    let app = TestApp::spawn_with(|a| a.mock_provider_secret = Some(MOCK_SECRET.into())).await;
    let id = app.send(&pending_sms()).await;
    let (attempt, _, provider_message_id) = sent_attempt(&app, &id).await;
    let path = format!("/v1/webhooks/mock/{id}/{attempt}");
    let receipt = |status: &str| mock_receipt(&id, &attempt, &provider_message_id, status);

    let (status, answer) = post_mock(&app, &path, &receipt("failed")).await;
    assert_eq!((status, answer), (200, json!({"recorded": 1})));
    app.wait_for_status(&id, "failed", WITHIN).await;
    let events = app.events(&id).await.len();
    for _ in 0..3 {
        for replayed in ["sent", "failed", "delivered", "read"] {
            let (status, answer) = post_mock(&app, &path, &receipt(replayed)).await;
            assert_eq!(
                (status, answer),
                (200, json!({"recorded": 0})),
                "{replayed}"
            );
        }
    }
    assert_eq!(app.events(&id).await.len(), events);
    assert_eq!(receipts_recorded(&app, &id).await, 1);
    let m = app.message(&id).await.unwrap();
    assert_eq!(m["attempts"][0]["status"], "failed");
}

/// A Vonage delivery receipt for `message:attempt`, signed now with HMAC-SHA256 as Vonage's
/// "Signing messages" documents (the fields sorted, `&name=value`, `&` and `=` in values as `_`).
fn vonage_dlr(message: &str, attempt: &str) -> Vec<u8> {
    let client_ref = format!("{message}:{attempt}");
    let now = Utc::now().timestamp().to_string();
    let mut fields = [
        ("messageId", "0A0000001234567B"),
        ("status", "delivered"),
        ("err-code", "0"),
        ("client-ref", client_ref.as_str()),
        ("timestamp", now.as_str()),
        ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
    ];
    fields.sort();
    let signing: String = fields
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(VONAGE_SIGNATURE_SECRET.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes()).to_uppercase();
    let mut dlr: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    dlr.insert("sig".to_owned(), json!(sig));
    serde_json::to_vec(&dlr).unwrap()
}
