//! Twilio Programmable Messaging (`twilio/twilio_api_v2010.json`).

use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::{CallbackError, Provider, SendError, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::{ChannelContent, ReceiptStatus};
use std::sync::Arc;

use crate::support::{self, attempt, callback, only_receipt, prism, sms_text};

const SPEC: &str = "twilio/twilio_api_v2010.json";
const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const AUTH_TOKEN: &str = "twilio-test-auth-token";

async fn plugin(base_url: &str) -> Arc<PluginProvider> {
    support::load(
        builtin::TWILIO,
        "twilio",
        &[
            ("base_url", base_url),
            ("account_sid", ACCOUNT_SID),
            ("auth_token", AUTH_TOKEN),
            ("from", "+15005550006"),
            ("whatsapp_from", "+14155238886"),
        ],
    )
    .await
}

fn sms(text: &str) -> SendRequest {
    attempt("twilio", Channel::Sms, "+37255512345", sms_text(text))
}

#[tokio::test]
async fn sms_and_whatsapp_requests_satisfy_twilios_spec() {
    let prism = prism::shared(SPEC);
    let twilio = plugin(&prism.base_url).await;
    support::send_accepted(prism, &twilio, &sms("Your code is 1234")).await;
    let whatsapp = attempt(
        "twilio",
        Channel::Whatsapp,
        "+37255512345",
        ChannelContent::Whatsapp {
            text: "Your order shipped".to_owned(),
            template: None,
        },
    );
    support::send_accepted(prism, &twilio, &whatsapp).await;
}

/// The other side of the check above: Prism does refuse what the spec does not allow.
#[tokio::test]
async fn prism_refuses_a_request_without_credentials() {
    let prism = prism::shared(SPEC);
    let response = hermes_adapters::http::client()
        .post(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            prism.base_url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("To=%2B37255512345&From=%2B15005550006&Body=hi")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "Prism enforces the spec's Basic auth"
    );
}

#[tokio::test]
async fn an_unreachable_twilio_is_a_retryable_rejection() {
    // Nothing listens on port 9 of the loopback: the connection is refused before anything left.
    let twilio = plugin("http://127.0.0.1:9").await;
    match twilio.send(&sms("hi")).await {
        Err(SendError::Rejected {
            error, retryable, ..
        }) => {
            assert!(retryable);
            assert_eq!(error.code, "connect_failed");
        }
        other => panic!("expected a retryable rejection, got {other:?}"),
    }
}

fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    support::twilio_signature(AUTH_TOKEN, url, params)
}

fn status_callback(
    to: &SendRequest,
    params: &[(&str, &str)],
    signature: &str,
) -> hermes_adapters::CallbackRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    callback(
        "twilio",
        Some(to),
        &[
            ("x-twilio-signature", signature),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
}

#[tokio::test]
async fn status_callbacks_signed_by_twilios_algorithm_become_receipts() {
    let twilio = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    let url = &request.callback_url;
    // The parameters of Twilio's documented outbound message status callback.
    let delivered = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
        ("MessageStatus", "delivered"),
        ("SmsSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
        ("SmsStatus", "delivered"),
        ("To", "+37255512345"),
    ];
    let receipt = only_receipt(
        twilio
            .parse_callback(&status_callback(
                &request,
                &delivered,
                &twilio_signature(url, &delivered),
            ))
            .await,
    );
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(
        (receipt.message_id, receipt.attempt_id),
        (request.message_id, request.attempt_id)
    );
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("SM1342fe1b2c904d1ab04f0fc7a58abca9")
    );

    let undelivered = [
        ("AccountSid", ACCOUNT_SID),
        ("ErrorCode", "30003"),
        ("MessageSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
        ("MessageStatus", "undelivered"),
        ("To", "+37255512345"),
    ];
    let receipt = only_receipt(
        twilio
            .parse_callback(&status_callback(
                &request,
                &undelivered,
                &twilio_signature(url, &undelivered),
            ))
            .await,
    );
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(
        receipt.error.map(|e| e.code).as_deref(),
        Some("twilio_30003")
    );

    // Tampered: signed for "delivered", claims "failed".
    let signature = twilio_signature(url, &delivered);
    let mut tampered = delivered;
    tampered[4] = ("MessageStatus", "failed");
    assert_eq!(
        twilio
            .parse_callback(&status_callback(&request, &tampered, &signature))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    // Signed for another attempt's URL.
    let other = sms("hi");
    assert_eq!(
        twilio
            .parse_callback(&status_callback(
                &request,
                &delivered,
                &twilio_signature(&other.callback_url, &delivered)
            ))
            .await,
        Err(CallbackError::InvalidSignature)
    );
}

/// Reconciliation: the Message resource (`GET .../Messages/{Sid}.json`) as Twilio's spec defines
/// it. Prism answers the spec's example (a `sent` message), and refuses any request the spec does
/// not allow (wrong path, missing Basic auth).
#[tokio::test]
async fn the_status_lookup_reads_twilios_message_resource() {
    use hermes_adapters::LookupRequest;
    let prism = prism::shared(SPEC);
    let twilio = plugin(&prism.base_url).await;
    assert!(twilio.info().status_lookup, "twilio exports lookup-status");
    let request = sms("hi");
    let example: serde_json::Value = {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(support::spec(SPEC)).unwrap()).unwrap();
        spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"]["get"]["responses"]
            ["200"]["content"]["application/json"]["examples"]["fetch"]["value"]
            .clone()
    };
    let sid = example["sid"].as_str().unwrap();
    let mark = prism.mark();
    let receipt = twilio
        .lookup_status(&LookupRequest {
            message_id: request.message_id,
            attempt_id: request.attempt_id,
            channel: Channel::Sms,
            provider_message_id: Some(sid.to_owned()),
        })
        .await
        .unwrap_or_else(|err| {
            panic!(
                "lookup failed ({err}); Prism's violations: {:#?}",
                prism.violations_since(mark)
            )
        })
        .expect("the example message has a status");
    assert!(prism.violations_since(mark).is_empty());
    // The example's status is `sent`: a `sent` receipt for the attempt asked about.
    assert_eq!(example["status"], "sent");
    assert_eq!(receipt.status, ReceiptStatus::Sent);
    assert_eq!(
        (receipt.message_id, receipt.attempt_id),
        (request.message_id, request.attempt_id)
    );
    assert_eq!(receipt.provider_message_id.as_deref(), Some(sid));

    // An attempt in doubt has no SID: nothing Twilio could find it by.
    let in_doubt = twilio
        .lookup_status(&LookupRequest {
            message_id: request.message_id,
            attempt_id: request.attempt_id,
            channel: Channel::Sms,
            provider_message_id: None,
        })
        .await;
    assert_eq!(in_doubt, Ok(None));
}

#[tokio::test]
async fn a_status_lookup_twilio_cannot_answer_is_a_failure_not_a_status() {
    use hermes_adapters::{LookupError, LookupRequest};
    // Nothing listens on port 9.
    let twilio = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    let answer = twilio
        .lookup_status(&LookupRequest {
            message_id: request.message_id,
            attempt_id: request.attempt_id,
            channel: Channel::Sms,
            provider_message_id: Some("SMb7c0a2ce80504485a6f653a7110836f5".to_owned()),
        })
        .await;
    assert!(matches!(answer, Err(LookupError::Failed(_))), "{answer:?}");
}

#[tokio::test]
async fn the_status_callback_asks_twilio_to_retry_and_its_signature_still_verifies() {
    let twilio = plugin("http://127.0.0.1:9").await;
    let request = sms("hi");
    // Twilio signs the StatusCallback as configured, overrides included.
    let configured = format!("{}#rc=5&rp=5xx,ct,rt&tt=15000", request.callback_url);
    let delivered = [
        ("MessageSid", "SM1342fe1b2c904d1ab04f0fc7a58abca9"),
        ("MessageStatus", "delivered"),
    ];
    let receipt = only_receipt(
        twilio
            .parse_callback(&status_callback(
                &request,
                &delivered,
                &twilio_signature(&configured, &delivered),
            ))
            .await,
    );
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
}

/// An incoming SMS as Twilio's incoming-message webhook sends it (the parameters of "Twilio's
/// request to your incoming message Webhook URL", with the documented example SIDs), signed with
/// the account's auth token: the plugin gives its sender, number and text, and answers Twilio
/// with empty TwiML.
#[tokio::test]
async fn a_signed_incoming_sms_from_twilios_webhook_is_read() {
    let twilio = plugin("http://127.0.0.1:9").await;
    assert!(twilio.takes_inbound());
    assert!(
        twilio.info().status_lookup,
        "lookup-status is still exported"
    );
    let url = "https://hermes.example.com/v1/inbound/twilio";
    let params = [
        ("MessageSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("SmsSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("AccountSid", ACCOUNT_SID),
        ("MessagingServiceSid", "MGXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("From", "+37255512345"),
        ("To", "+15005550006"),
        ("Body", "STOP"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
    ];
    let inbound = |params: &[(&str, &str)], signature: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut request = callback(
            "twilio",
            None,
            &[
                ("x-twilio-signature", signature),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        );
        request.url = url.to_owned();
        request
    };
    let signature = twilio_signature(url, &params);
    let outcome = twilio
        .parse_inbound(&inbound(&params, &signature))
        .await
        .unwrap();
    assert_eq!(outcome.messages.len(), 1, "{outcome:?}");
    let m = &outcome.messages[0];
    assert_eq!(
        (m.from.as_str(), m.to.as_str(), m.text.as_str()),
        ("+37255512345", "+15005550006", "STOP")
    );
    assert_eq!(
        m.provider_message_id.as_deref(),
        Some("SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
    );
    let reply = outcome.reply.expect("Twilio is answered with TwiML");
    assert_eq!(
        (reply.status, reply.content_type.as_str()),
        (200, "text/xml")
    );
    assert_eq!(
        &reply.body[..],
        br#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
    );

    // Forged: signed for "STOP", claims "START".
    let mut forged = params;
    forged[6] = ("Body", "START");
    assert_eq!(
        twilio.parse_inbound(&inbound(&forged, &signature)).await,
        Err(CallbackError::InvalidSignature)
    );
    // Signed with another token.
    let other = support::twilio_signature("another-token", url, &params);
    assert_eq!(
        twilio.parse_inbound(&inbound(&params, &other)).await,
        Err(CallbackError::InvalidSignature)
    );
}
