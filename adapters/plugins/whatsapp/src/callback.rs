//! The Cloud API's webhooks (Meta's "Create a webhook endpoint" and "Status messages webhook
//! reference"; spec `WebhookPayload` / `StatusMessageValue` / `Statuses`):
//!
//! - GET verification requests: `?hub.mode=subscribe&hub.challenge=<C>&hub.verify_token=<T>`;
//!   when `<T>` is the configured verify token the endpoint answers `200` with `<C>`.
//! - POST event notifications, signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
//!   secret, raw body)>`. Statuses of sent messages arrive in
//!   `entry[].changes[]` with `field: "messages"`, as `value.statuses[]`.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::classify;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const SIGNATURE_PREFIX: &str = "sha256=";
/// Challenges are short numbers in practice; anything huge is not echoed.
const MAX_CHALLENGE: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex>` for `body`, as Meta signs it (for the tests).
#[cfg(test)]
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Whether `signature` (the `X-Hub-Signature-256` value) signs `body`, compared in constant time.
/// No secret configured: nothing verifies.
pub fn verify_signature(app_secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    if app_secret.is_empty() {
        return false;
    }
    let Some(signature) = signature.map(str::trim) else {
        return false;
    };
    // The prefix names the algorithm; Meta sends it in lower case.
    let hex_part = match signature.get(..SIGNATURE_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX) => {
            &signature[SIGNATURE_PREFIX.len()..]
        }
        _ => return false,
    };
    let Ok(tag) = hex::decode(hex_part) else {
        return false;
    };
    let mut mac =
        HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Constant-time equality of two secrets of any length (both are MACed under one fixed key and
/// the tags compared with `verify_slice`, so neither contents nor lengths leak through timing).
fn secrets_equal(given: &str, expected: &str) -> bool {
    let tag = |value: &str| {
        let mut mac = HmacSha256::new_from_slice(b"hermes-whatsapp-verify-token")
            .expect("HMAC takes a key of any length");
        mac.update(value.as_bytes());
        mac
    };
    let expected = tag(expected).finalize().into_bytes();
    tag(given).verify_slice(&expected).is_ok()
}

/// The query parameters of a URL, decoded.
fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A verification request: `Some(challenge)` to echo when the mode is `subscribe` and the verify
/// token matches the configured one (in constant time); `None` otherwise (reject it).
pub fn subscription_challenge(url: &str, verify_token: &str) -> Option<String> {
    if verify_token.is_empty() {
        return None;
    }
    let params = query_params(url);
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let token_ok = secrets_equal(param("hub.verify_token").unwrap_or(""), verify_token);
    if !token_ok || param("hub.mode") != Some("subscribe") {
        return None;
    }
    param("hub.challenge")
        .filter(|c| !c.is_empty() && c.len() <= MAX_CHALLENGE)
        .map(str::to_owned)
}

pub use hermes_guest_kit::Status;

/// One receipt from a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub message_id: String,
    pub attempt_id: String,
    pub status: Status,
    /// The status's `id` (the `wamid`).
    pub provider_message_id: Option<String>,
    /// `(code, message)` for a failure.
    pub error: Option<(String, String)>,
}

#[derive(Deserialize)]
struct Notification {
    object: Option<String>,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: Option<String>,
    value: Option<ChangeValue>,
}

#[derive(Deserialize)]
struct ChangeValue {
    // Inbound `messages` (and everything else in the value) are not read.
    #[serde(default)]
    statuses: Vec<StatusObject>,
}

#[derive(Deserialize)]
struct StatusObject {
    id: Option<String>,
    status: Option<String>,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    code: Option<serde_json::Value>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<StatusErrorData>,
}

#[derive(Deserialize)]
struct StatusErrorData {
    details: Option<String>,
}

fn is_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `<message-id>:<attempt-id>` as the plugin set it at send; anything else is not Hermes's.
pub fn parse_callback_data(data: &str) -> Option<(String, String)> {
    let (message_id, attempt_id) = data.trim().split_once(':')?;
    (is_id(message_id) && is_id(attempt_id)).then(|| (message_id.to_owned(), attempt_id.to_owned()))
}

fn failure(errors: &[StatusError]) -> (String, String) {
    let Some(first) = errors.first() else {
        return (
            "whatsapp_failed".to_owned(),
            "WhatsApp reported the message failed".to_owned(),
        );
    };
    let code = first.code.as_ref().and_then(classify::error_code);
    let mut message = first
        .message
        .as_deref()
        .or(first.title.as_deref())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| code.and_then(classify::describe).map(str::to_owned))
        .unwrap_or_else(|| "WhatsApp reported the message failed".to_owned());
    if let Some(details) = first
        .error_data
        .as_ref()
        .and_then(|d| d.details.as_deref())
        .map(str::trim)
        .filter(|d| !d.is_empty() && !message.contains(d))
    {
        message.push_str(": ");
        message.push_str(details);
    }
    let code = match code {
        Some(code) => format!("whatsapp_{code}"),
        None => "whatsapp_failed".to_owned(),
    };
    (code, message)
}

/// The receipts in a (verified) notification body. Statuses Hermes does not track (`played`...),
/// statuses without Hermes's `biz_opaque_callback_data`, inbound messages and other fields and
/// objects give none.
pub fn receipts(body: &[u8]) -> Result<Vec<Parsed>, String> {
    let notification: Notification = serde_json::from_slice(body)
        .map_err(|err| format!("the notification is not a WhatsApp webhook payload: {err}"))?;
    if notification.object.as_deref() != Some("whatsapp_business_account") {
        return Ok(Vec::new());
    }
    let mut receipts = Vec::new();
    for change in notification.entry.iter().flat_map(|e| &e.changes) {
        if change.field.as_deref() != Some("messages") {
            continue;
        }
        let Some(value) = &change.value else { continue };
        for status in &value.statuses {
            let Some((message_id, attempt_id)) = status
                .biz_opaque_callback_data
                .as_deref()
                .and_then(parse_callback_data)
            else {
                continue;
            };
            let kind = match status.status.as_deref() {
                Some("sent") => Status::Sent,
                Some("delivered") => Status::Delivered,
                Some("read") => Status::Read,
                Some("failed") => Status::Failed,
                _ => continue,
            };
            receipts.push(Parsed {
                message_id,
                attempt_id,
                status: kind,
                provider_message_id: status.id.clone().filter(|id| !id.trim().is_empty()),
                error: (kind == Status::Failed).then(|| failure(&status.errors)),
            });
        }
    }
    Ok(receipts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "app-secret";
    const M: &str = "0190a1b2-0000-7000-8000-000000000001";
    const A: &str = "0190a1b2-0000-7000-8000-0000000000aa";

    /// Meta's "Status messages webhook reference" example of a sent marketing message, with the
    /// `biz_opaque_callback_data` the syntax section documents for messages sent with one.
    fn documented_sent(callback_data: Option<&str>) -> String {
        let mut status = serde_json::json!({
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
            "status": "sent",
            "timestamp": "1750030073",
            "recipient_id": "16505551234",
            "conversation": {
                "id": "72b14d6bd5407799e66f64d1b338e567",
                "expiration_timestamp": "1750116480",
                "origin": {"type": "marketing"}
            },
            "pricing": {
                "billable": true,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "marketing"
            }
        });
        if let Some(data) = callback_data {
            status["biz_opaque_callback_data"] = data.into();
        }
        envelope(vec![status])
    }

    /// Meta's example of a message that failed to be sent (error 131049).
    fn documented_failed() -> serde_json::Value {
        serde_json::json!({
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA",
            "status": "failed",
            "timestamp": "1751142888",
            "recipient_id": "16505551234",
            "biz_opaque_callback_data": format!("{M}:{A}"),
            "errors": [{
                "code": 131049,
                "title": "This message was not delivered to maintain healthy ecosystem engagement.",
                "message": "This message was not delivered to maintain healthy ecosystem engagement.",
                "error_data": {
                    "details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."
                },
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
            }]
        })
    }

    fn envelope(statuses: Vec<serde_json::Value>) -> String {
        serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "102290129340398",
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922"
                        },
                        "statuses": statuses
                    },
                    "field": "messages"
                }]
            }]
        })
        .to_string()
    }

    #[test]
    fn signatures_follow_the_documented_algorithm() {
        // HMAC-SHA256("secret", "test"), as `openssl dgst -sha256 -hmac secret` computes it.
        assert_eq!(
            sign("secret", b"test"),
            "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
        );
        let body = documented_sent(Some(&format!("{M}:{A}")));
        let signature = sign(SECRET, body.as_bytes());
        assert!(verify_signature(SECRET, body.as_bytes(), Some(&signature)));
        assert!(verify_signature(
            SECRET,
            body.as_bytes(),
            Some(&signature.to_uppercase().replace("SHA256=", "sha256="))
        ));
        // Tampered body, wrong secret, missing/garbled header, no secret configured.
        let tampered = body.replace("\"sent\"", "\"read\"");
        assert!(!verify_signature(
            SECRET,
            tampered.as_bytes(),
            Some(&signature)
        ));
        assert!(!verify_signature(
            "other",
            body.as_bytes(),
            Some(&signature)
        ));
        assert!(!verify_signature(SECRET, body.as_bytes(), None));
        assert!(!verify_signature(
            SECRET,
            body.as_bytes(),
            Some("sha256=zz")
        ));
        assert!(!verify_signature(
            SECRET,
            body.as_bytes(),
            Some(&signature.replace("sha256=", "sha1="))
        ));
        assert!(!verify_signature(
            SECRET,
            body.as_bytes(),
            Some(signature.trim_start_matches("sha256="))
        ));
        assert!(!verify_signature(
            "",
            body.as_bytes(),
            Some(&sign("", body.as_bytes()))
        ));
        // A truncated tag is not a match.
        assert!(!verify_signature(
            SECRET,
            body.as_bytes(),
            Some(&signature[..40])
        ));
    }

    /// Meta's documented verification request syntax.
    #[test]
    fn the_subscription_check_echoes_the_challenge_only_for_the_right_token() {
        let url = "https://hermes.example/v1/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
        assert_eq!(
            subscription_challenge(url, "meatyhamhock").as_deref(),
            Some("1158201444")
        );
        assert_eq!(subscription_challenge(url, "meatyhamhocks"), None);
        assert_eq!(subscription_challenge(url, "meaty"), None);
        assert_eq!(subscription_challenge(url, ""), None);
        let url = "https://h/x?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=t";
        assert_eq!(subscription_challenge(url, "t"), None);
        let url = "https://h/x?hub.mode=subscribe&hub.verify_token=t";
        assert_eq!(subscription_challenge(url, "t"), None);
        let url = "https://h/x?hub.mode=subscribe&hub.challenge=1";
        assert_eq!(subscription_challenge(url, "t"), None);
        // Percent-encoded values are decoded.
        let url = "https://h/x?hub.verify_token=a%20b%26c&hub.challenge=x%2By&hub.mode=subscribe";
        assert_eq!(subscription_challenge(url, "a b&c").as_deref(), Some("x+y"));
    }

    #[test]
    fn the_documented_sent_status_gives_a_sent_receipt() {
        let body = documented_sent(Some(&format!("{M}:{A}")));
        let receipts = receipts(body.as_bytes()).unwrap();
        assert_eq!(
            receipts,
            vec![Parsed {
                message_id: M.to_owned(),
                attempt_id: A.to_owned(),
                status: Status::Sent,
                provider_message_id: Some(
                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=".to_owned()
                ),
                error: None,
            }]
        );
        // The example exactly as documented (no biz_opaque_callback_data) is not Hermes's.
        assert_eq!(receipts_of(&documented_sent(None)), vec![]);
        // Nor is someone else's opaque data.
        assert_eq!(receipts_of(&documented_sent(Some("1744434060"))), vec![]);
        assert_eq!(receipts_of(&documented_sent(Some("a:b:c"))), vec![]);
        assert_eq!(receipts_of(&documented_sent(Some(":b"))), vec![]);
    }

    fn receipts_of(body: &str) -> Vec<Parsed> {
        receipts(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_documented_failure_carries_its_error_code() {
        let receipts = receipts_of(&envelope(vec![documented_failed()]));
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].status, Status::Failed);
        assert_eq!(
            receipts[0].error,
            Some((
                "whatsapp_131049".to_owned(),
                "This message was not delivered to maintain healthy ecosystem engagement.: In \
                 order to maintain a healthy ecosystem engagement, the message failed to be \
                 delivered."
                    .to_owned()
            ))
        );
        // A failure without errors still fails.
        let mut bare = documented_failed();
        bare.as_object_mut().unwrap().remove("errors");
        let receipts = receipts_of(&envelope(vec![bare]));
        assert_eq!(receipts[0].error.as_ref().unwrap().0, "whatsapp_failed");
    }

    #[test]
    fn every_tracked_status_maps_and_others_are_skipped() {
        let status = |s: &str| {
            serde_json::json!({
                "id": "wamid.X", "status": s, "timestamp": "1", "recipient_id": "16505551234",
                "biz_opaque_callback_data": format!("{M}:{A}")
            })
        };
        let receipts = receipts_of(&envelope(
            ["sent", "delivered", "read", "played", "deleted", "failed"]
                .into_iter()
                .map(status)
                .collect(),
        ));
        let statuses: Vec<Status> = receipts.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            vec![
                Status::Sent,
                Status::Delivered,
                Status::Read,
                Status::Failed
            ]
        );
        assert!(receipts[..3].iter().all(|r| r.error.is_none()));
    }

    /// The spec's `/whatsapp/webhooks` "Text Message" example: an inbound message, no receipt.
    #[test]
    fn inbound_messages_and_other_fields_give_nothing() {
        let inbound = r#"{
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "419561257915477",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "messages": [{
                  "from": "16505551234",
                  "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                  "timestamp": "1749416383",
                  "type": "text",
                  "text": {"body": "Does it come in another color?"}
                }]
              },
              "field": "messages"
            }]
          }]
        }"#;
        assert_eq!(receipts_of(inbound), vec![]);
        let other_field = envelope(vec![documented_failed()]).replace(
            "\"field\":\"messages\"",
            "\"field\":\"message_template_status_update\"",
        );
        assert_eq!(receipts_of(&other_field), vec![]);
        let other_object =
            envelope(vec![documented_failed()]).replace("whatsapp_business_account", "page");
        assert_eq!(receipts_of(&other_object), vec![]);
        assert!(receipts(b"not json").is_err());
    }

    #[test]
    fn several_statuses_and_entries_each_give_a_receipt() {
        let second = format!("{M}:0190a1b2-0000-7000-8000-0000000000bb");
        let mut other = documented_failed();
        other["biz_opaque_callback_data"] = second.into();
        other["status"] = "delivered".into();
        let body = envelope(vec![documented_failed(), other]);
        let receipts = receipts_of(&body);
        assert_eq!(receipts.len(), 2);
        assert_eq!(
            receipts[1].attempt_id,
            "0190a1b2-0000-7000-8000-0000000000bb"
        );
        assert_eq!(receipts[1].status, Status::Delivered);
        assert_eq!(receipts[1].error, None);
    }
}
