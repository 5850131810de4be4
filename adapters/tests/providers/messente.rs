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
    let report = |status: &str, err: u32| {
        serde_json::to_vec(&serde_json::json!({
            "status": status,
            "sender": "Hermes",
            "err": err,
            "message_id": "3e28ec48-d620-4191-a96e-d91ba8ecc949",
            "to": "+37255512345",
            "channel": "sms",
            "error": null,
            "omnimessage_id": "d7248cda-6c1a-4436-acf5-aaf249bb67d3",
            "timestamp": "2020-02-04T08:09:42.389630",
            "price_info": {"part_price": "0.1", "parts_count": 2, "total_price": "0.2"}
        }))
        .unwrap()
    };
    let signed = |body: Vec<u8>| {
        let signature = hmac_sha256_hex(PASSWORD, &body);
        callback(
            "messente",
            Some(&request),
            &[
                ("x-messente-signature", signature.as_str()),
                ("content-type", "application/json"),
            ],
            body,
        )
    };

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
