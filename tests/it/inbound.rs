//! Layer 5, SMS opt-out (issue 9): a recipient's STOP, through the account's signed
//! inbound-message webhook, blocks the tenant's next SMS to that number; START lifts it. Through
//! the real Vonage plugin, its sends answered by Prism serving Vonage's spec.

use crate::front_door::{SECRET, start_front_door};
use crate::harness::{TestApp, WITHIN};
use crate::provider_cascade::support::{hmac_sha256_hex, prism, specs};
use crate::providers::{account, install_accounts};
use crate::suppressions::wait_until_preview_suppresses;
use hermes_infra::provider_accounts::{ProviderAccount, SealingKey};
use reqwest::Method;
use serde_json::{Value, json};

const SIGNATURE_SECRET: &str = "vonage-inbound-secret";
const RECIPIENT: &str = "+447700900001";
/// The tenant's Vonage number.
const NUMBER: &str = "447700900000";

/// An inbound SMS as Vonage posts it (the spec's `InboundMessage`), signed with `secret` by
/// Vonage's documented scheme: every field but `sig`, sorted, as `&name=value` (`&` and `=` in
/// values made `_`), HMAC-SHA256, upper-case hex.
fn inbound(from: &str, text: &str, secret: &str) -> Value {
    signed(inbound_fields(from, text), secret)
}

/// The fields of an inbound SMS from `from`, as Vonage sends them, unsigned.
fn inbound_fields(from: &str, text: &str) -> Vec<(&'static str, String)> {
    let now = chrono::Utc::now();
    vec![
        ("api-key", "abcd1234".to_owned()),
        ("msisdn", from.trim_start_matches('+').to_owned()),
        ("to", NUMBER.to_owned()),
        ("messageId", format!("0A00000{}", now.timestamp_micros())),
        ("text", text.to_owned()),
        ("type", "text".to_owned()),
        (
            "keyword",
            text.split_whitespace().next().unwrap_or("").to_uppercase(),
        ),
        (
            "message-timestamp",
            now.format("%Y-%m-%d %H:%M:%S").to_string(),
        ),
        ("timestamp", now.timestamp().to_string()),
        ("nonce", uuid::Uuid::new_v4().to_string()),
    ]
}

/// `fields` with their `sig`, as a JSON body.
fn signed(mut fields: Vec<(&'static str, String)>, secret: &str) -> Value {
    fields.sort();
    let signing: String = fields
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let mut body: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    body.insert(
        "sig".to_owned(),
        hmac_sha256_hex(secret, signing.as_bytes())
            .to_uppercase()
            .into(),
    );
    Value::Object(body)
}

/// A Vonage account sending from [`NUMBER`] through `base_url`, its webhooks signed with
/// [`SIGNATURE_SECRET`] (the spec's formats: an 8-character key, a 6 to 32-character secret).
fn vonage_account(name: &str, base_url: &str) -> ProviderAccount {
    account(
        name,
        "vonage",
        10,
        &[
            ("base_url", base_url),
            ("api_key", "abcd1234"),
            ("api_secret", "abcdef0123456789"),
            ("from", NUMBER),
            ("signature_secret", SIGNATURE_SECRET),
            ("signature_method", "sha256"),
        ],
    )
}

async fn post_inbound(app: &TestApp, account: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/v1/inbound/{account}")))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn suppressions(app: &TestApp) -> Vec<Value> {
    let r = app.get_as(&app.api_key, "/v1/suppressions").await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["suppressions"]
        .as_array()
        .unwrap()
        .clone()
}

fn sms_then_email(phone: &str) -> Value {
    json!({"to": {"phone": phone, "email": "ada@example.com"},
           "content": {"text": "Your code is 1234", "email": {"subject": "Your code"}},
           "cascade": [{"channel": "sms", "timeout_seconds": 2, "until": "accepted"},
                       {"channel": "email", "timeout_seconds": 30}]})
}

/// The channels of the message's attempts, once it has ended.
async fn attempted(app: &TestApp, id: &str) -> Vec<String> {
    let m = app
        .wait_for(id, WITHIN, |m| {
            !matches!(m["status"].as_str(), Some("accepted" | "sending"))
        })
        .await;
    m["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["channel"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stop_blocks_the_tenant_s_next_sms_and_start_lifts_it() {
    let vonage_api = prism::shared(specs::vonage_sms());
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let (mail_url, _door) = start_front_door(false).await;
    install_accounts(
        &app,
        &key,
        &[
            // The tenant's own Vonage number: its SMS, and its recipients' replies.
            ProviderAccount {
                tenant_id: Some(app.tenant_id),
                ..vonage_account("acme-vonage", &vonage_api.base_url)
            },
            // The platform's account for email (the mock plugin takes no inbound messages).
            account(
                "mail",
                "mock",
                20,
                &[("base_url", &mail_url), ("secret", SECRET)],
            ),
        ],
    )
    .await;

    // Before: the SMS goes out through Vonage.
    let first = app.send(&sms_then_email(RECIPIENT)).await;
    assert_eq!(attempted(&app, &first).await, ["sms"]);

    // Refused, and nothing recorded: an unsigned or forged STOP, an unknown account, an account
    // whose plugin takes no inbound messages.
    let forged = inbound(RECIPIENT, "STOP", "not-the-secret");
    let (status, problem) = post_inbound(&app, "acme-vonage", &forged).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("invalid_signature")),
        "{problem}"
    );
    let (status, problem) = post_inbound(
        &app,
        "nobody",
        &inbound(RECIPIENT, "STOP", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("unknown_provider")),
        "{problem}"
    );
    let (status, problem) =
        post_inbound(&app, "mail", &inbound(RECIPIENT, "STOP", SIGNATURE_SECRET)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("inbound_not_supported")),
        "{problem}"
    );
    let r = app
        .client
        .get(app.url("/v1/inbound/mail"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the GET form is routed and refused the same way"
    );
    // Signed, but without the sender: nothing to record.
    let mut fields = inbound_fields(RECIPIENT, "STOP");
    fields.retain(|(k, _)| *k != "msisdn");
    let (status, problem) =
        post_inbound(&app, "acme-vonage", &signed(fields, SIGNATURE_SECRET)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("malformed_callback")),
        "{problem}"
    );
    assert!(suppressions(&app).await.is_empty());

    // A reply that is not a keyword changes nothing.
    let (status, body) = post_inbound(
        &app,
        "acme-vonage",
        &inbound(RECIPIENT, "Stop sending me these please", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"messages": 1, "opted_out": 0, "opted_in": 0}))
    );
    assert!(suppressions(&app).await.is_empty());

    // STOP: the number is on the tenant's list, and the next message skips its SMS step.
    let (status, body) = post_inbound(
        &app,
        "acme-vonage",
        &inbound(RECIPIENT, "Stop", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"messages": 1, "opted_out": 1, "opted_in": 0}))
    );
    let listed = suppressions(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            &listed[0]["channel"],
            &listed[0]["address"],
            &listed[0]["reason"],
            &listed[0]["source"]
        ),
        (
            &json!("sms"),
            &json!(RECIPIENT),
            &json!("opt_out"),
            &json!("inbound:acme-vonage")
        )
    );
    wait_until_preview_suppresses(&app, &sms_then_email(RECIPIENT), &[true, false]).await;
    let blocked = app.send(&sms_then_email(RECIPIENT)).await;
    assert_eq!(attempted(&app, &blocked).await, ["email"]);
    // An SMS-only message has no step left: refused.
    let sms_only = json!({"to": {"phone": RECIPIENT}, "content": {"text": "hi"},
                          "cascade": [{"channel": "sms", "timeout_seconds": 2}]});
    let r = app.post_message(&sms_only).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "recipient_suppressed"
    );

    // The tenant's own listing of another number is not an opt-out: START does not lift it.
    let other = "+447700900002";
    let r = app
        .client
        .request(
            Method::PUT,
            app.url(&format!(
                "/v1/suppressions/sms/{}",
                other.replace('+', "%2B")
            )),
        )
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let (status, body) = post_inbound(
        &app,
        "acme-vonage",
        &inbound(other, "START", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"messages": 1, "opted_out": 0, "opted_in": 0}))
    );

    // START: the opt-out is gone, and the SMS goes out again.
    let (status, body) = post_inbound(
        &app,
        "acme-vonage",
        &inbound(RECIPIENT, "START", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"messages": 1, "opted_out": 0, "opted_in": 1}))
    );
    let listed: Vec<Value> = suppressions(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["address"], other);
    wait_until_preview_suppresses(&app, &sms_then_email(RECIPIENT), &[false, false]).await;
    let lifted = app.send(&sms_then_email(RECIPIENT)).await;
    assert_eq!(attempted(&app, &lifted).await, ["sms"]);
}

/// A platform account's number is shared: a STOP to it opts out of every tenant whose SMS
/// reached the sender through it, and of no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_to_a_platform_number_opts_out_of_the_tenants_that_texted_through_it() {
    let vonage_api = prism::shared(specs::vonage_sms());
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    install_accounts(
        &app,
        &key,
        &[vonage_account("platform-vonage", &vonage_api.base_url)],
    )
    .await;
    let sms = json!({"to": {"phone": RECIPIENT}, "content": {"text": "hi"},
                     "cascade": [{"channel": "sms", "timeout_seconds": 2, "until": "accepted"}]});
    // This tenant texted the recipient; the other texted someone else.
    let texted = app.send(&sms).await;
    assert_eq!(attempted(&app, &texted).await, ["sms"]);
    let (other_tenant, other_key) = app.new_tenant("other").await;
    let mut elsewhere = sms.clone();
    elsewhere["to"]["phone"] = "+447700900003".into();
    let r = app.post_message_as(&other_key, &elsewhere).await;
    assert_eq!(r.status(), 202);

    let (status, body) = post_inbound(
        &app,
        "platform-vonage",
        &inbound(RECIPIENT, "STOP", SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"messages": 1, "opted_out": 1, "opted_in": 0}))
    );
    assert_eq!(suppressions(&app).await.len(), 1);
    let r = app.get_as(&other_key, "/v1/suppressions").await;
    let theirs: Value = r.json().await.unwrap();
    assert_eq!(
        theirs["suppressions"],
        json!([]),
        "tenant {other_tenant} never texted the sender"
    );
}
