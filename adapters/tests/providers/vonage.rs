//! Vonage SMS API (`vonage/sms-1.2.0.openapi.json`, served as derived by `support::specs`).

use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::{CallbackError, Provider, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::ReceiptStatus;
use std::sync::Arc;

use crate::support::{self, attempt, callback, hmac_sha256_hex, only_receipt, prism, sms_text};

const SIGNATURE_SECRET: &str = "vonage-signature-secret";

async fn plugin(base_url: &str) -> Arc<PluginProvider> {
    support::load(
        builtin::VONAGE,
        "vonage",
        &[
            ("base_url", base_url),
            // The spec's formats: an 8-character key, a 6 to 32-character secret.
            ("api_key", "abcd1234"),
            ("api_secret", "abcdef0123456789"),
            ("from", "Hermes"),
            ("signature_secret", SIGNATURE_SECRET),
            ("signature_method", "sha256"),
        ],
    )
    .await
}

fn sms(text: &str) -> SendRequest {
    attempt("vonage", Channel::Sms, "+447700900000", sms_text(text))
}

#[tokio::test]
async fn sms_requests_satisfy_vonages_spec() {
    let prism = prism::shared(support::specs::vonage_sms());
    let vonage = plugin(&prism.base_url).await;
    let accepted = support::send_accepted(prism, &vonage, &sms("Your code is 1234")).await;
    assert!(
        accepted.provider_message_id.is_some(),
        "status \"0\" with the spec's message-id"
    );
    // Unicode text is sent with `type=unicode`, which the spec allows too.
    support::send_accepted(prism, &vonage, &sms("Ваш код 1234")).await;
}

/// Vonage's signed-webhook scheme ("Signing messages"): every parameter but `sig`, sorted, as
/// `&name=value` with `&` and `=` in values replaced by `_`; here with the HMAC-SHA256 method.
fn signed_receipt(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let signing: String = sorted
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let mut body: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    body.insert(
        "sig".to_owned(),
        hmac_sha256_hex(SIGNATURE_SECRET, signing.as_bytes())
            .to_uppercase()
            .into(),
    );
    serde_json::to_vec(&body).unwrap()
}

/// Delivery receipts come to the account's webhook (Hermes's per-attempt URL is longer than the
/// 100 characters Vonage's `callback` allows) and find their attempt by `client-ref`.
#[tokio::test]
async fn signed_delivery_receipts_find_their_attempt_by_client_ref() {
    let vonage = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    let client_ref = format!("{}:{}", request.message_id, request.attempt_id);
    // Vonage signs each request as it sends it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signed_at: &str = &now;
    // The fields of the spec's `DeliveryReceipt` example, for our message.
    let receipt = |status: &'static str, err: &'static str| {
        vec![
            ("msisdn", "447700900000"),
            ("to", "AcmeInc"),
            ("network-code", "12345"),
            ("messageId", "0A0000001234567B"),
            ("price", "0.03330000"),
            ("status", status),
            ("scts", "2001011400"),
            ("err-code", err),
            ("api-key", "abcd1234"),
            ("message-timestamp", "2020-01-01 12:00:00"),
            ("timestamp", signed_at),
            ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
        ]
    };
    let post = |fields: Vec<(&str, &str)>| {
        let mut fields = fields;
        fields.push(("client-ref", client_ref.as_str()));
        callback(
            "vonage",
            None,
            &[("content-type", "application/json")],
            signed_receipt(&fields),
        )
    };

    let delivered = only_receipt(
        vonage
            .parse_callback(&post(receipt("delivered", "0")))
            .await,
    );
    assert_eq!(delivered.status, ReceiptStatus::Delivered);
    assert_eq!(
        (delivered.message_id, delivered.attempt_id),
        (request.message_id, request.attempt_id)
    );
    // The part's `messageId` is not the attempt's (a long text has one per part).
    assert_eq!(delivered.provider_message_id, None);

    let failed = only_receipt(vonage.parse_callback(&post(receipt("failed", "6"))).await);
    assert_eq!(failed.status, ReceiptStatus::Failed);
    assert_eq!(failed.error.map(|e| e.code).as_deref(), Some("vonage_6"));

    // An intermediate status is no receipt.
    let buffered = vonage
        .parse_callback(&post(receipt("buffered", "0")))
        .await
        .unwrap();
    assert!(buffered.receipts.is_empty());

    let mut tampered = post(receipt("delivered", "0"));
    tampered.body = String::from_utf8(tampered.body.to_vec())
        .unwrap()
        .replace("\"delivered\"", "\"failed\"")
        .into();
    assert_eq!(
        vonage.parse_callback(&tampered).await,
        Err(CallbackError::InvalidSignature)
    );
}

/// A captured receipt is bound to its attempt by the signed `client-ref` and to its moment by the
/// signed `timestamp`: replayed onto another attempt's URL it still names its own attempt (which
/// Hermes then refuses as not the URL's), and replayed later it is refused.
#[tokio::test]
async fn replayed_delivery_receipts_keep_their_attempt_and_go_stale() {
    let vonage = plugin("http://127.0.0.1:9").await;
    let captured = sms("hi");
    let victim = sms("hello");
    let client_ref = format!("{}:{}", captured.message_id, captured.attempt_id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let receipt = |signed_at: u64| {
        let signed_at = signed_at.to_string();
        signed_receipt(&[
            ("messageId", "0A0000001234567B"),
            ("status", "delivered"),
            ("err-code", "0"),
            ("client-ref", client_ref.as_str()),
            ("timestamp", signed_at.as_str()),
            ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
        ])
    };
    let headers = [("content-type", "application/json")];

    // Onto the victim attempt's own URL: the receipt still names the captured attempt.
    let onto_victim = only_receipt(
        vonage
            .parse_callback(&callback("vonage", Some(&victim), &headers, receipt(now)))
            .await,
    );
    assert_eq!(
        (onto_victim.message_id, onto_victim.attempt_id),
        (captured.message_id, captured.attempt_id)
    );

    // Six minutes and a second after it was signed (5 min + 1 min skew): stale.
    let stale = receipt(now - 6 * 60 - 1);
    assert_eq!(
        vonage
            .parse_callback(&callback("vonage", None, &headers, stale))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    // Dated in the future beyond the skew: refused too.
    let future = receipt(now + 5 * 60);
    assert_eq!(
        vonage
            .parse_callback(&callback("vonage", None, &headers, future))
            .await,
        Err(CallbackError::InvalidSignature)
    );
}

/// An inbound SMS built from the spec's `InboundMessage` schema (every property's example), signed
/// as Vonage signs it: the plugin gives its sender, number and text.
#[tokio::test]
async fn a_signed_inbound_sms_from_the_spec_s_example_is_read() {
    let vonage = plugin("http://127.0.0.1:9").await;
    assert!(vonage.takes_inbound());
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(support::specs_dir().join("vonage/sms-1.2.0.openapi.json")).unwrap(),
    )
    .unwrap();
    let schema = &spec["components"]["schemas"]["InboundMessage"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The required fields, from the spec's examples; a text message has no binary fields.
    let mut fields: Vec<(String, String)> = required
        .iter()
        .map(|name| {
            let example = schema["properties"][name]["example"].as_str().unwrap();
            ((*name).to_owned(), example.to_owned())
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    fields.push(("timestamp".to_owned(), now));
    fields.push((
        "nonce".to_owned(),
        "aaaaaaaa-bbbb-cccc-dddd-0123456789ab".to_owned(),
    ));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = signed_receipt(&borrowed);
    let mut request = callback(
        "vonage",
        None,
        &[("content-type", "application/json")],
        body.clone(),
    );
    request.url = "https://hermes.example.com/v1/inbound/vonage".to_owned();
    let outcome = vonage.parse_inbound(&request).await.unwrap();
    assert_eq!(outcome.messages.len(), 1, "{outcome:?}");
    let m = &outcome.messages[0];
    assert_eq!(
        m.from,
        format!(
            "+{}",
            schema["properties"]["msisdn"]["example"].as_str().unwrap()
        )
    );
    assert_eq!(
        m.to,
        format!(
            "+{}",
            schema["properties"]["to"]["example"].as_str().unwrap()
        )
    );
    assert_eq!(
        m.text,
        schema["properties"]["text"]["example"].as_str().unwrap()
    );
    assert_eq!(
        m.provider_message_id.as_deref(),
        schema["properties"]["messageId"]["example"].as_str()
    );

    // Signed with another secret: refused.
    let mut forged: serde_json::Value = serde_json::from_slice(&body).unwrap();
    forged["text"] = "START".into();
    let mut request = callback(
        "vonage",
        None,
        &[("content-type", "application/json")],
        serde_json::to_vec(&forged).unwrap(),
    );
    request.url = "https://hermes.example.com/v1/inbound/vonage".to_owned();
    assert_eq!(
        vonage.parse_inbound(&request).await,
        Err(CallbackError::InvalidSignature)
    );
}
