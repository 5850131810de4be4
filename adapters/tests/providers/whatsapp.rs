//! WhatsApp Cloud API (`whatsapp/business-messaging-api_v23.0.yaml`, served as derived by
//! `support::specs`).

use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::{CallbackError, CallbackReply, Provider, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::{ChannelContent, ReceiptStatus, WhatsappTemplate};
use serde_json::json;
use std::sync::Arc;

use crate::support::{self, attempt, callback, hmac_sha256_hex, only_receipt, prism};

const APP_SECRET: &str = "whatsapp-app-secret";
const VERIFY_TOKEN: &str = "hermes-verify-token";

async fn plugin(base_url: &str) -> Arc<PluginProvider> {
    support::load(
        builtin::WHATSAPP,
        "whatsapp",
        &[
            ("base_url", base_url),
            ("access_token", "EAAtesttoken"),
            ("phone_number_id", "106540352242922"),
            ("app_secret", APP_SECRET),
            ("verify_token", VERIFY_TOKEN),
        ],
    )
    .await
}

fn whatsapp(text: &str, template: Option<WhatsappTemplate>) -> SendRequest {
    attempt(
        "whatsapp",
        Channel::Whatsapp,
        "+16505551234",
        ChannelContent::Whatsapp {
            text: text.to_owned(),
            template,
        },
    )
}

#[tokio::test]
async fn text_and_template_messages_satisfy_the_cloud_apis_spec() {
    let prism = prism::shared(support::specs::whatsapp());
    let plugin = plugin(&prism.base_url).await;
    let accepted =
        support::send_accepted(prism, &plugin, &whatsapp("Your order shipped", None)).await;
    assert!(
        accepted
            .provider_message_id
            .is_some_and(|id| id.starts_with("wamid."))
    );
    let template = WhatsappTemplate {
        name: "order_shipped".to_owned(),
        language: "en_US".to_owned(),
        components: Some(vec![json!({
            "type": "body",
            "parameters": [{"type": "text", "text": "A-1042"}],
        })]),
    };
    support::send_accepted(prism, &plugin, &whatsapp("", Some(template))).await;
}

fn status_webhook(request: &SendRequest, status: &str, errors: serde_json::Value) -> Vec<u8> {
    support::whatsapp_status(request.message_id, request.attempt_id, status, errors)
}

fn signed(body: Vec<u8>) -> hermes_adapters::CallbackRequest {
    let signature = format!("sha256={}", hmac_sha256_hex(APP_SECRET, &body));
    callback(
        "whatsapp",
        None,
        &[
            ("x-hub-signature-256", signature.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
}

#[tokio::test]
async fn signed_status_webhooks_become_receipts_and_tampered_ones_are_refused() {
    let plugin = plugin("http://127.0.0.1:9").await;
    let request = whatsapp("hi", None);

    let read = only_receipt(
        plugin
            .parse_callback(&signed(status_webhook(&request, "read", json!(null))))
            .await,
    );
    assert_eq!(read.status, ReceiptStatus::Read);
    assert_eq!(
        (read.message_id, read.attempt_id),
        (request.message_id, request.attempt_id)
    );

    let failed = only_receipt(
        plugin
            .parse_callback(&signed(status_webhook(
                &request,
                "failed",
                json!([{"code": 131026, "title": "Message undeliverable"}]),
            )))
            .await,
    );
    assert_eq!(failed.status, ReceiptStatus::Failed);
    assert_eq!(
        failed.error.map(|e| e.code).as_deref(),
        Some("whatsapp_131026")
    );

    let mut tampered = signed(status_webhook(&request, "failed", json!(null)));
    tampered.body = status_webhook(&request, "read", json!(null)).into();
    assert_eq!(
        plugin.parse_callback(&tampered).await,
        Err(CallbackError::InvalidSignature)
    );
}

#[tokio::test]
async fn the_subscription_check_echoes_the_challenge_only_for_the_right_token() {
    let plugin = plugin("http://127.0.0.1:9").await;
    let check = |token: &str| {
        let mut request = callback("whatsapp", None, &[], Vec::new());
        request.method = http::Method::GET;
        request.url = format!(
            "{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            request.url
        );
        request
    };
    let outcome = plugin.parse_callback(&check(VERIFY_TOKEN)).await.unwrap();
    assert!(outcome.receipts.is_empty());
    let CallbackReply { status, body, .. } = outcome.reply.expect("the challenge is echoed");
    assert_eq!((status, &body[..]), (200, &b"1158201444"[..]));
    assert_eq!(
        plugin.parse_callback(&check("guessed")).await,
        Err(CallbackError::InvalidSignature)
    );
}
