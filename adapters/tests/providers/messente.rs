//! Messente Omnichannel API (`messente/openapi.yaml`).

use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::{CallbackError, Provider, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::{ChannelContent, ReceiptStatus};
use std::sync::Arc;

use crate::support::{self, attempt, callback, hmac_sha256_hex, only_receipt, prism, sms_text};

const SPEC: &str = "messente/openapi.yaml";
const PASSWORD: &str = "messente-api-password";

async fn plugin(base_url: &str) -> Arc<PluginProvider> {
    support::load(
        builtin::MESSENTE,
        "messente",
        &[
            ("base_url", base_url),
            ("username", "messente-api-user"),
            ("password", PASSWORD),
            ("sender", "Hermes"),
        ],
    )
    .await
}

fn sms(text: &str) -> SendRequest {
    attempt("messente", Channel::Sms, "+37255512345", sms_text(text))
}

#[tokio::test]
async fn sms_and_whatsapp_omnimessages_satisfy_messentes_spec() {
    let prism = prism::shared(SPEC);
    let messente = plugin(&prism.base_url).await;
    let accepted = support::send_accepted(prism, &messente, &sms("Your code is 1234")).await;
    assert!(accepted.provider_message_id.is_some());

    let template = attempt(
        "messente",
        Channel::Whatsapp,
        "+37255512345",
        ChannelContent::Whatsapp {
            text: String::new(),
            template: Some(hermes_domain::message::WhatsappTemplate {
                name: "order_shipped".to_owned(),
                language: "en".to_owned(),
                components: None,
            }),
        },
    );
    support::send_accepted(prism, &messente, &template).await;
}

/// Messente's documented delivery report, signed as its "API Setup / Security" page says:
/// hex(HMAC-SHA256(API password, raw body)) in `X-Messente-Signature`.
#[tokio::test]
async fn signed_delivery_reports_become_receipts_and_tampered_ones_are_refused() {
    let messente = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    // Messente stamps a report with its status's time (UTC, no zone) and posts it at once.
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let report = |status: &str, err: u32| report_at(status, err, &now);
    let signed = |body: Vec<u8>| signed_report(&request, body);

    let receipt = only_receipt(messente.parse_callback(&signed(report("DELIVRD", 0))).await);
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(
        (receipt.message_id, receipt.attempt_id),
        (request.message_id, request.attempt_id)
    );
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("3e28ec48-d620-4191-a96e-d91ba8ecc949")
    );

    let receipt = only_receipt(messente.parse_callback(&signed(report("UNDELIV", 3))).await);
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.error.map(|e| e.code).as_deref(), Some("messente_3"));

    let mut tampered = signed(report("DELIVRD", 0));
    tampered.body = report("FAILED", 1).into();
    assert_eq!(
        messente.parse_callback(&tampered).await,
        Err(CallbackError::InvalidSignature)
    );
    let unsigned = callback("messente", Some(&request), &[], report("DELIVRD", 0));
    assert_eq!(
        messente.parse_callback(&unsigned).await,
        Err(CallbackError::InvalidSignature)
    );
}

/// A captured report replayed later is refused by its signed `timestamp` (5 minutes plus 1 of
/// skew); replayed at once onto another attempt's URL, it still names its own provider message,
/// which Hermes compares with the attempt's (`tests/it`).
#[tokio::test]
async fn replayed_delivery_reports_go_stale() {
    let messente = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    let at = |ago: i64| {
        (chrono::Utc::now() - chrono::Duration::seconds(ago))
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string()
    };
    let fresh = messente
        .parse_callback(&signed_report(&request, report_at("DELIVRD", 0, &at(60))))
        .await;
    assert_eq!(only_receipt(fresh).status, ReceiptStatus::Delivered);
    for (ago, why) in [
        (6 * 60 + 2, "older than the window"),
        (-3 * 60, "from the future beyond the skew"),
    ] {
        assert_eq!(
            messente
                .parse_callback(&signed_report(&request, report_at("DELIVRD", 0, &at(ago))))
                .await,
            Err(CallbackError::InvalidSignature),
            "{why}"
        );
    }
    // The documented example is from 2020: far too old.
    assert_eq!(
        messente
            .parse_callback(&signed_report(
                &request,
                report_at("DELIVRD", 0, "2020-02-04T08:09:42.389630")
            ))
            .await,
        Err(CallbackError::InvalidSignature)
    );
}

/// The documented report's fields, for our message, stamped `timestamp`.
fn report_at(status: &str, err: u32, timestamp: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "status": status,
        "sender": "Hermes",
        "err": err,
        "message_id": "3e28ec48-d620-4191-a96e-d91ba8ecc949",
        "to": "+37255512345",
        "channel": "sms",
        "error": null,
        "omnimessage_id": "d7248cda-6c1a-4436-acf5-aaf249bb67d3",
        "timestamp": timestamp,
        "price_info": {"part_price": "0.1", "parts_count": 2, "total_price": "0.2"}
    }))
    .unwrap()
}

/// `body` signed with the account's password, posted to `request`'s callback URL.
fn signed_report(request: &SendRequest, body: Vec<u8>) -> hermes_adapters::CallbackRequest {
    let signature = hmac_sha256_hex(PASSWORD, &body);
    callback(
        "messente",
        Some(request),
        &[
            ("x-messente-signature", signature.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
}
