//! The cascade end to end through real provider plugins: WhatsApp (Prism serving the Cloud API's
//! spec) -> SMS through Twilio (Prism serving Twilio's spec) -> email through SES (moto, with SigV4
//! authentication enforced). The providers' callbacks are posted to Hermes signed as each provider
//! documents it; a tampered one is refused and changes nothing.

#[path = "../../adapters/tests/providers/support/mod.rs"]
pub(crate) mod support;

use crate::harness::{TestApp, statuses};
use crate::providers::{account, install_accounts};
use hermes_infra::provider_accounts::SealingKey;
use serde_json::{Value, json};
use support::{hmac_sha256_hex, moto, prism, twilio_signature, whatsapp_status};

use crate::harness::WITHIN;
const TWILIO_AUTH_TOKEN: &str = "twilio-e2e-auth-token";
const WHATSAPP_APP_SECRET: &str = "whatsapp-e2e-app-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_then_twilio_sms_then_ses_email_through_the_real_plugins() {
    let whatsapp_api = prism::shared(support::specs::whatsapp());
    let twilio_api = prism::shared("twilio/twilio_api_v2010.json");
    let ses_api = moto::shared().await;

    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    install_accounts(
        &app,
        &key,
        &[
            // Twilio could carry WhatsApp too: the Cloud API account comes first.
            account(
                "whatsapp",
                "whatsapp",
                10,
                &[
                    ("base_url", &whatsapp_api.base_url),
                    ("access_token", "EAAe2etoken"),
                    ("phone_number_id", "106540352242922"),
                    ("app_secret", WHATSAPP_APP_SECRET),
                ],
            ),
            account(
                "twilio",
                "twilio",
                20,
                &[
                    ("base_url", &twilio_api.base_url),
                    ("account_sid", "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
                    ("auth_token", TWILIO_AUTH_TOKEN),
                    ("from", "+15005550006"),
                ],
            ),
            account(
                "ses",
                "ses",
                30,
                &[
                    ("base_url", &ses_api.base_url),
                    ("region", moto::REGION),
                    ("access_key_id", &ses_api.access_key_id),
                    ("secret_access_key", &ses_api.secret_access_key),
                    ("from", moto::SENDER),
                ],
            ),
        ],
    )
    .await;

    let id = app
        .send(&json!({
            "to": {"whatsapp": "+16505551234", "phone": "+16505551234", "email": "ada@example.org"},
            "content": {"text": "Your order A-1042 shipped", "email": {"subject": "Order A-1042 shipped"}},
            "cascade": [
                {"channel": "whatsapp", "timeout_seconds": 60},
                {"channel": "sms", "timeout_seconds": 60},
                {"channel": "email", "timeout_seconds": 60, "until": "accepted"},
            ],
        }))
        .await;

    // 1. WhatsApp accepts (Prism answers with the spec's wamid), then reports a failure.
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let whatsapp_attempt = m["attempts"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(m["attempts"][0]["provider"], "whatsapp");
    assert!(
        m["attempts"][0]["provider_message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("wamid."))
    );
    let webhook = |body: Vec<u8>, signature: String| {
        app.client
            .post(app.url("/v1/webhooks/whatsapp"))
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // The status names the wamid the Cloud API answered the send with (Hermes refuses a receipt
    // about another provider message than its attempt's).
    let wamid = m["attempts"][0]["provider_message_id"].as_str().unwrap();
    let failed = String::from_utf8(whatsapp_status(
        &id,
        &whatsapp_attempt,
        "failed",
        json!([{"code": 131026, "title": "Message undeliverable"}]),
    ))
    .unwrap()
    .replace(
        "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        wamid,
    )
    .into_bytes();
    let forged = format!("sha256={}", hmac_sha256_hex("not-the-app-secret", &failed));
    let refused = webhook(failed.clone(), forged).await.unwrap();
    assert_eq!(refused.status(), 401, "a forged webhook is refused");
    let signature = format!("sha256={}", hmac_sha256_hex(WHATSAPP_APP_SECRET, &failed));
    let recorded: Value = webhook(failed, signature)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["recorded"], 1);

    // 2. SMS through Twilio, which reports it undelivered to the attempt's own callback URL.
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][1]["status"] == "sent")
        .await;
    assert_eq!(m["attempts"][0]["status"], "failed");
    assert_eq!(m["attempts"][0]["error"]["code"], "whatsapp_131026");
    assert_eq!(m["attempts"][1]["provider"], "twilio");
    let sms_attempt = m["attempts"][1]["id"].as_str().unwrap();
    let message_sid = m["attempts"][1]["provider_message_id"].as_str().unwrap();
    let callback_url = app.url(&format!("/v1/webhooks/twilio/{id}/{sms_attempt}"));
    let params = [
        ("AccountSid", "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        ("ErrorCode", "30003"),
        ("MessageSid", message_sid),
        ("MessageStatus", "undelivered"),
        ("To", "+16505551234"),
    ];
    let response = app
        .client
        .post(&callback_url)
        .header(
            "x-twilio-signature",
            twilio_signature(TWILIO_AUTH_TOKEN, &callback_url, &params),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // 3. Email through SES: moto checks the SigV4 signature and takes it; the step ends on accept.
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(
        statuses(&m),
        [("whatsapp", "failed"), ("sms", "failed"), ("email", "sent")]
            .map(|(c, s)| (c.to_owned(), s.to_owned()))
            .to_vec()
    );
    assert_eq!(m["attempts"][1]["error"]["code"], "twilio_30003");
    assert_eq!(m["attempts"][2]["provider"], "ses");
    assert!(ses_api.data().await.contains("Order A-1042 shipped"));

    // Every attempt records the plugin version that served it.
    let served: Vec<String> = app
        .events(&id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "AttemptDispatched")
        .map(|e| {
            e["data"]["served_by"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(served.len(), 3);
    for (served, plugin) in served.iter().zip(["whatsapp@", "twilio@", "ses@"]) {
        assert!(served.starts_with(plugin), "{served}");
    }
}
