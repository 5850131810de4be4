//! SES events delivered by Amazon SNS: SNS message signature verification and the mapping of SES
//! event records to Hermes receipts (pure: no host calls).
//!
//! SNS signature ("Verifying the signatures of Amazon SNS messages", SNS developer guide): the
//! string to sign is `Name\nValue\n` for each of these fields, in this order, skipping absent
//! optional ones:
//! - `Notification`: `Message`, `MessageId`, `Subject` (only when present), `Timestamp`,
//!   `TopicArn`, `Type`;
//! - `SubscriptionConfirmation` / `UnsubscribeConfirmation`: `Message`, `MessageId`,
//!   `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type`.
//!
//! `Signature` is base64 of an RSA PKCS#1 v1.5 signature, `SignatureVersion` `1` = SHA1withRSA,
//! `2` = SHA256withRSA, by the key of the X.509 certificate at `SigningCertURL`.
//!
//! SES event records ("Contents of event data that Amazon SES publishes to Amazon SNS"): a
//! top-level `eventType` (event publishing through a configuration set) or `notificationType`
//! (feedback notifications set on the identity), a `mail` object (`messageId`, `tags` = map of
//! tag name to list of values, present with event publishing only) and one object per type
//! (`bounce`, `complaint`, `delivery`, `reject`, `failure`, `deliveryDelay`...).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::request::{TAG_ATTEMPT, TAG_MESSAGE};

/// The SNS message envelope (the JSON body SNS POSTs to an HTTP(S) subscription).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    #[serde(rename = "Subject")]
    pub subject: Option<String>,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL", alias = "SigningCertUrl")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL", alias = "SubscribeUrl")]
    pub subscribe_url: Option<String>,
    #[serde(rename = "Token")]
    pub token: Option<String>,
}

pub fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    serde_json::from_slice(body).map_err(|err| format!("not an SNS message: {err}"))
}

/// The string SNS signed, or why it cannot be built (an unknown `Type`, a missing field).
pub fn string_to_sign(envelope: &Envelope) -> Result<String, String> {
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    };
    match envelope.kind.as_str() {
        "Notification" => {
            field("Message", &envelope.message);
            field("MessageId", &envelope.message_id);
            if let Some(subject) = &envelope.subject {
                field("Subject", subject);
            }
            field("Timestamp", &envelope.timestamp);
            field("TopicArn", &envelope.topic_arn);
            field("Type", &envelope.kind);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let subscribe_url = envelope
                .subscribe_url
                .as_deref()
                .ok_or("the confirmation has no SubscribeURL")?;
            let token = envelope
                .token
                .as_deref()
                .ok_or("the confirmation has no Token")?;
            field("Message", &envelope.message);
            field("MessageId", &envelope.message_id);
            field("SubscribeURL", subscribe_url);
            field("Timestamp", &envelope.timestamp);
            field("Token", token);
            field("TopicArn", &envelope.topic_arn);
            field("Type", &envelope.kind);
        }
        other => return Err(format!("unknown SNS message type {other:?}")),
    }
    Ok(out)
}

/// The RSA public key of the (first) PEM certificate.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, String> {
    use der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
        .map_err(|err| format!("not a PEM certificate: {err}"))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|err| format!("unreadable public key: {err}"))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|err| format!("the certificate's key is not RSA: {err}"))
}

/// Whether `envelope` carries a valid signature by `key`.
pub fn verify(envelope: &Envelope, key: &RsaPublicKey) -> bool {
    let Ok(text) = string_to_sign(envelope) else {
        return false;
    };
    let Ok(signature) = STANDARD.decode(envelope.signature.trim()) else {
        return false;
    };
    match envelope.signature_version.trim() {
        "1" => key
            .verify(
                Pkcs1v15Sign::new::<Sha1>(),
                &Sha1::digest(text.as_bytes()),
                &signature,
            )
            .is_ok(),
        "2" => key
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(text.as_bytes()),
                &signature,
            )
            .is_ok(),
        _ => false,
    }
}

/// An AWS region name in a host (`us-east-1`, `eu-central-2`...).
fn is_region_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && label.contains('-')
}

/// A `SigningCertURL` (or `SubscribeURL`) Hermes may fetch: `https://sns.<region>.amazonaws.com/...`
/// with no user info or port, per the documentation's advice to check the certificate comes
/// from Amazon SNS over HTTPS. The region must be `expected_region` when given.
pub fn is_sns_url(url: &str, expected_region: Option<&str>) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..authority_end];
    let Some(region) = host
        .strip_prefix("sns.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
    else {
        return false;
    };
    is_region_label(region) && expected_region.is_none_or(|r| r == region)
}

/// The certificate URL must also be a `.pem` file.
pub fn is_cert_url(url: &str, expected_region: Option<&str>) -> bool {
    is_sns_url(url, expected_region)
        && url
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.ends_with(".pem"))
}

/// Whether `topic_arn` is one of the account's topics (`sns_topic_arns`: ARNs separated by commas
/// or whitespace, compared exactly; ARNs are case-sensitive). No list allows no topic.
pub fn topic_allowed(allowed: &Option<String>, topic_arn: &str) -> bool {
    allowed.as_deref().is_some_and(|list| {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .any(|arn| !arn.is_empty() && arn == topic_arn)
    })
}

/// The region named in a topic ARN (`arn:aws:sns:<region>:<account>:<name>`).
pub fn topic_region(topic_arn: &str) -> Option<&str> {
    let mut parts = topic_arn.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.next()?;
    (parts.next() == Some("sns")).then_some(())?;
    parts.next().filter(|r| is_region_label(r))
}

pub use hermes_guest_kit::Status;

/// Which Hermes attempt an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub message_id: String,
    pub attempt_id: String,
}

/// What one SES event says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: Status,
    /// SES's `mail.messageId` (the `MessageId` `SendEmail` answered).
    pub provider_message_id: Option<String>,
    /// From the `hermes_message`/`hermes_attempt` tags, when SES published them.
    pub ids: Option<Ids>,
    /// `(code, message)` for a failure.
    pub error: Option<(String, String)>,
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn tag<'a>(mail: &'a Value, name: &str) -> Option<&'a str> {
    mail.get("tags")?
        .get(name)?
        .as_array()?
        .first()?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The event's kind: `eventType` (event publishing) or `notificationType` (identity feedback).
pub fn event_type(event: &Value) -> Option<&str> {
    str_at(event, &["eventType"]).or_else(|| str_at(event, &["notificationType"]))
}

/// The first bounced recipient's diagnostic, when SES reported one.
fn first_diagnostic(bounce: &Value) -> Option<&str> {
    bounce
        .get("bouncedRecipients")?
        .as_array()?
        .iter()
        .find_map(|r| str_at(r, &["diagnosticCode"]).or_else(|| str_at(r, &["status"])))
}

/// Interprets the SES event record in an SNS `Notification`'s `Message`: `Ok(None)` for events
/// that are not news to Hermes (Send, DeliveryDelay, Open, Click, Subscription, transient and
/// undetermined bounces, new types).
pub fn interpret(message: &str) -> Result<Option<Parsed>, String> {
    let event: Value =
        serde_json::from_str(message).map_err(|err| format!("the SES event is not JSON: {err}"))?;
    let kind = event_type(&event).ok_or("the SES event has no eventType or notificationType")?;
    let mail = event.get("mail").cloned().unwrap_or(Value::Null);
    let provider_message_id = str_at(&mail, &["messageId"]).map(str::to_owned);
    let ids = match (tag(&mail, TAG_MESSAGE), tag(&mail, TAG_ATTEMPT)) {
        (Some(message_id), Some(attempt_id)) => Some(Ids {
            message_id: message_id.to_owned(),
            attempt_id: attempt_id.to_owned(),
        }),
        _ => None,
    };
    let failed =
        |code: &str, message: String| Some((Status::Failed, Some((code.to_owned(), message))));
    let outcome = match kind {
        "Delivery" => Some((Status::Delivered, None)),
        "Bounce" => {
            let bounce = event.get("bounce").cloned().unwrap_or(Value::Null);
            let bounce_type = str_at(&bounce, &["bounceType"]).unwrap_or("Undetermined");
            let sub_type = str_at(&bounce, &["bounceSubType"]).unwrap_or("General");
            if bounce_type.eq_ignore_ascii_case("Permanent") {
                let mut message = format!("permanent bounce ({sub_type})");
                if let Some(diagnostic) = first_diagnostic(&bounce) {
                    message.push_str(": ");
                    message.push_str(diagnostic);
                }
                failed("ses_bounce_permanent", message)
            } else {
                // Transient: SES already retried, and a General transient bounce is usually an
                // out-of-office auto-reply to a delivered message. Undetermined: SES could not
                // tell. Neither says the message was lost.
                None
            }
        }
        "Complaint" => {
            let feedback = str_at(&event, &["complaint", "complaintFeedbackType"])
                .or_else(|| str_at(&event, &["complaint", "complaintSubType"]));
            let message = match feedback {
                Some(feedback) => format!("the recipient complained ({feedback})"),
                None => "the recipient marked the message as spam".to_owned(),
            };
            failed("ses_complaint", message)
        }
        "Reject" => {
            let reason = str_at(&event, &["reject", "reason"]).unwrap_or("rejected");
            failed("ses_reject", format!("SES rejected the message: {reason}"))
        }
        "Rendering Failure" | "RenderingFailure" => {
            let reason =
                str_at(&event, &["failure", "errorMessage"]).unwrap_or("template rendering failed");
            failed("ses_rendering_failure", reason.to_owned())
        }
        // Send, DeliveryDelay (SES still retrying), Open, Click, Subscription, AmazonSnsSubscriptionSucceeded...
        _ => None,
    };
    Ok(outcome.map(|(status, error)| Parsed {
        status,
        provider_message_id,
        ids,
        error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use serde_json::json;

    const CERT: &str = include_str!("../tests/fixtures/sns-test-cert.pem");
    const KEY: &str = include_str!("../tests/fixtures/sns-test-key.pem");
    const CERT_URL: &str =
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

    /// Signs like SNS does (tests only).
    fn sign(envelope: &mut Envelope) {
        let key = RsaPrivateKey::from_pkcs8_pem(KEY).unwrap();
        let text = string_to_sign(envelope).unwrap();
        let signature = match envelope.signature_version.as_str() {
            "1" => key
                .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(text.as_bytes()))
                .unwrap(),
            _ => key
                .sign(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(text.as_bytes()),
                )
                .unwrap(),
        };
        envelope.signature = STANDARD.encode(signature);
    }

    fn notification(version: &str, message: &str, subject: Option<&str>) -> Envelope {
        let mut envelope = Envelope {
            kind: "Notification".to_owned(),
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".to_owned(),
            topic_arn: TOPIC.to_owned(),
            subject: subject.map(str::to_owned),
            message: message.to_owned(),
            timestamp: "2012-05-02T00:54:06.655Z".to_owned(),
            signature_version: version.to_owned(),
            signature: String::new(),
            signing_cert_url: CERT_URL.to_owned(),
            subscribe_url: None,
            token: None,
        };
        sign(&mut envelope);
        envelope
    }

    fn key() -> RsaPublicKey {
        public_key_from_pem(CERT).unwrap()
    }

    #[test]
    fn the_test_certificate_gives_its_rsa_key() {
        let private = RsaPrivateKey::from_pkcs8_pem(KEY).unwrap();
        assert_eq!(key(), private.to_public_key());
        assert!(public_key_from_pem("not a cert").is_err());
    }

    #[test]
    fn notifications_signed_with_either_version_verify_and_tampering_fails() {
        for version in ["1", "2"] {
            for subject in [None, Some("Amazon SES Email Event Notification")] {
                let envelope = notification(version, r#"{"eventType":"Send"}"#, subject);
                assert!(verify(&envelope, &key()), "{version} {subject:?}");

                let mut tampered = envelope.clone();
                tampered.message = r#"{"eventType":"Delivery"}"#.to_owned();
                assert!(!verify(&tampered, &key()));
                let mut tampered = envelope.clone();
                tampered.topic_arn = "arn:aws:sns:us-east-1:999999999999:evil".to_owned();
                assert!(!verify(&tampered, &key()));
                let mut tampered = envelope.clone();
                tampered.subject = Some("other".to_owned());
                assert!(!verify(&tampered, &key()));
                // Another version means another hash: no longer valid.
                let mut tampered = envelope.clone();
                tampered.signature_version = if version == "1" { "2" } else { "1" }.to_owned();
                assert!(!verify(&tampered, &key()));
                let mut tampered = envelope.clone();
                tampered.signature_version = "3".to_owned();
                assert!(!verify(&tampered, &key()));
                let mut tampered = envelope.clone();
                tampered.signature = "not base64!".to_owned();
                assert!(!verify(&tampered, &key()));
            }
        }
    }

    /// A signature made by the `openssl` CLI (not by this crate), over the string to sign of the
    /// fixture notification: `openssl dgst -sha256 -sign sns-test-key.pem | base64 -w0`.
    #[test]
    fn a_signature_made_by_openssl_verifies() {
        let body = include_bytes!("../tests/fixtures/notification-v2.json");
        let envelope = parse_envelope(body).unwrap();
        assert_eq!(envelope.signature_version, "2");
        assert!(verify(&envelope, &key()));
        let body = include_bytes!("../tests/fixtures/notification-v1.json");
        let envelope = parse_envelope(body).unwrap();
        assert_eq!(envelope.signature_version, "1");
        assert!(verify(&envelope, &key()));
    }

    #[test]
    fn the_string_to_sign_follows_the_documented_field_order() {
        let envelope = notification("1", "hi", Some("subj"));
        assert_eq!(
            string_to_sign(&envelope).unwrap(),
            format!(
                "Message\nhi\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nsubj\n\
                 Timestamp\n2012-05-02T00:54:06.655Z\nTopicArn\n{TOPIC}\nType\nNotification\n"
            )
        );
        let mut confirmation = Envelope {
            kind: "SubscriptionConfirmation".to_owned(),
            subscribe_url: Some("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=t".to_owned()),
            token: Some("t".to_owned()),
            ..envelope.clone()
        };
        assert_eq!(
            string_to_sign(&confirmation).unwrap(),
            format!(
                "Message\nhi\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubscribeURL\n\
                 https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=t\n\
                 Timestamp\n2012-05-02T00:54:06.655Z\nToken\nt\nTopicArn\n{TOPIC}\n\
                 Type\nSubscriptionConfirmation\n"
            )
        );
        sign(&mut confirmation);
        assert!(verify(&confirmation, &key()));
        let mut tampered = confirmation.clone();
        tampered.subscribe_url = Some("https://sns.us-east-1.amazonaws.com/?evil".to_owned());
        assert!(!verify(&tampered, &key()));
        confirmation.token = None;
        assert!(string_to_sign(&confirmation).is_err());
        let unknown = Envelope {
            kind: "Other".to_owned(),
            ..envelope
        };
        assert!(string_to_sign(&unknown).is_err());
    }

    /// The SubscriptionConfirmation example of the SNS developer guide ("HTTP/HTTPS
    /// subscription confirmation JSON format") parses.
    #[test]
    fn the_documented_subscription_confirmation_parses() {
        let body = br#"{
  "Type" : "SubscriptionConfirmation",
  "MessageId" : "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
  "Token" : "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
  "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
  "Message" : "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
  "SubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...",
  "Timestamp" : "2012-04-26T20:45:04.751Z",
  "SignatureVersion" : "1",
  "Signature" : "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
  "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
}"#;
        let envelope = parse_envelope(body).unwrap();
        assert_eq!(envelope.kind, "SubscriptionConfirmation");
        assert!(string_to_sign(&envelope).is_ok());
        assert!(is_cert_url(
            &envelope.signing_cert_url,
            topic_region(&envelope.topic_arn)
        ));
        assert!(is_sns_url(
            envelope.subscribe_url.as_deref().unwrap(),
            Some("us-west-2")
        ));
        // Its example signature is not a signature by our test key.
        assert!(!verify(&envelope, &key()));
    }

    #[test]
    fn only_sns_hosts_are_fetched() {
        assert!(is_cert_url(CERT_URL, None));
        assert!(is_cert_url(CERT_URL, Some("us-east-1")));
        assert!(!is_cert_url(CERT_URL, Some("eu-west-1")));
        for url in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sqs.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
        ] {
            assert!(!is_cert_url(url, None), "{url}");
        }
        assert_eq!(topic_region(TOPIC), Some("us-east-1"));
        assert_eq!(topic_region("arn:aws:sqs:us-east-1:1:q"), None);
        assert_eq!(topic_region("nope"), None);
    }

    #[test]
    fn only_the_listed_topics_are_allowed() {
        let list = Some(format!(
            " {TOPIC}, arn:aws:sns:eu-west-1:123456789012:other\n"
        ));
        assert!(topic_allowed(&list, TOPIC));
        assert!(topic_allowed(
            &list,
            "arn:aws:sns:eu-west-1:123456789012:other"
        ));
        assert!(!topic_allowed(
            &list,
            "arn:aws:sns:us-east-1:999999999999:ses-events"
        ));
        assert!(!topic_allowed(&list, &TOPIC.to_uppercase()));
        assert!(!topic_allowed(&list, ""));
        assert!(!topic_allowed(&None, TOPIC));
        assert!(!topic_allowed(&Some(" , ".to_owned()), ""));
    }

    fn with_hermes_tags(mut event: Value) -> String {
        event["mail"]["tags"]["hermes_message"] = json!(["0b6f3c52-8d1e-4a7b-9c55-1f2e3d4c5b6a"]);
        event["mail"]["tags"]["hermes_attempt"] = json!(["7c9e6679-7425-40de-944b-e07fc1f90ae7"]);
        event.to_string()
    }

    fn hermes_ids() -> Option<Ids> {
        Some(Ids {
            message_id: "0b6f3c52-8d1e-4a7b-9c55-1f2e3d4c5b6a".to_owned(),
            attempt_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".to_owned(),
        })
    }

    /// The mail object of AWS's examples ("Examples of event data that Amazon SES publishes to
    /// Amazon SNS"), headers shortened.
    fn doc_mail() -> Value {
        json!({
            "timestamp": "2017-08-05T00:40:02.012Z",
            "source": "Sender Name <sender@example.com>",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
            "sendingAccountId": "123456789012",
            "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "destination": ["recipient@example.com"],
            "headersTruncated": false,
            "headers": [
                {"name": "From", "value": "Sender Name <sender@example.com>"},
                {"name": "To", "value": "recipient@example.com"},
                {"name": "Subject", "value": "Message sent from Amazon SES"}
            ],
            "commonHeaders": {
                "from": ["Sender Name <sender@example.com>"],
                "to": ["recipient@example.com"],
                "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                "subject": "Message sent from Amazon SES"
            },
            "tags": {
                "ses:configuration-set": ["ConfigSet"],
                "ses:source-ip": ["192.0.2.0"],
                "ses:from-domain": ["example.com"],
                "ses:caller-identity": ["ses_user"]
            }
        })
    }

    #[test]
    fn the_documented_bounce_record_fails_the_attempt() {
        let event = json!({
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{
                    "emailAddress": "recipient@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                }],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
                "reportingMTA": "dsn; mta.example.com"
            },
            "mail": doc_mail()
        });
        let parsed = interpret(&with_hermes_tags(event.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.status, Status::Failed);
        assert_eq!(parsed.ids, hermes_ids());
        assert_eq!(
            parsed.provider_message_id.as_deref(),
            Some("EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000")
        );
        assert_eq!(
            parsed.error,
            Some((
                "ses_bounce_permanent".to_owned(),
                "permanent bounce (General): smtp; 550 5.1.1 user unknown".to_owned()
            ))
        );
        // Without Hermes's tags (not sent by Hermes, or identity feedback): no ids.
        assert_eq!(interpret(&event.to_string()).unwrap().unwrap().ids, None);
        // A transient bounce is not news.
        let mut transient = event.clone();
        transient["bounce"]["bounceType"] = json!("Transient");
        assert_eq!(interpret(&with_hermes_tags(transient)).unwrap(), None);
        let mut undetermined = event;
        undetermined["bounce"]["bounceType"] = json!("Undetermined");
        assert_eq!(interpret(&with_hermes_tags(undetermined)).unwrap(), None);
    }

    #[test]
    fn the_documented_delivery_record_delivers() {
        let event = json!({
            "eventType": "Delivery",
            "mail": doc_mail(),
            "delivery": {
                "timestamp": "2016-10-19T23:21:04.133Z",
                "processingTimeMillis": 11893,
                "recipients": ["recipient@example.com"],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "mta.example.com"
            }
        });
        let parsed = interpret(&with_hermes_tags(event)).unwrap().unwrap();
        assert_eq!(parsed.status, Status::Delivered);
        assert_eq!(parsed.error, None);
        assert_eq!(parsed.ids, hermes_ids());
    }

    #[test]
    fn the_documented_complaint_reject_and_rendering_failure_records_fail() {
        let complaint = json!({
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36",
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2017-08-05T00:41:02.669Z"
            },
            "mail": doc_mail()
        });
        let parsed = interpret(&with_hermes_tags(complaint)).unwrap().unwrap();
        assert_eq!(parsed.status, Status::Failed);
        assert_eq!(
            parsed.error,
            Some((
                "ses_complaint".to_owned(),
                "the recipient complained (abuse)".to_owned()
            ))
        );

        let reject = json!({
            "eventType": "Reject",
            "mail": doc_mail(),
            "reject": {"reason": "Bad content"}
        });
        let parsed = interpret(&with_hermes_tags(reject)).unwrap().unwrap();
        assert_eq!(
            parsed.error,
            Some((
                "ses_reject".to_owned(),
                "SES rejected the message: Bad content".to_owned()
            ))
        );

        let failure = json!({
            "eventType": "Rendering Failure",
            "mail": doc_mail(),
            "failure": {
                "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
                "templateName": "MyTemplate"
            }
        });
        let parsed = interpret(&with_hermes_tags(failure)).unwrap().unwrap();
        assert_eq!(parsed.status, Status::Failed);
        assert_eq!(parsed.error.unwrap().0, "ses_rendering_failure");
    }

    #[test]
    fn send_delay_open_and_click_give_nothing() {
        for event in [
            json!({"eventType": "Send", "mail": doc_mail(), "send": {}}),
            json!({
                "eventType": "DeliveryDelay",
                "mail": doc_mail(),
                "deliveryDelay": {
                    "timestamp": "2020-06-16T00:15:40.641Z",
                    "delayType": "TransientCommunicationFailure",
                    "expirationTime": "2020-06-16T00:25:40.914Z",
                    "delayedRecipients": [{
                        "emailAddress": "recipient@example.com",
                        "status": "4.4.1",
                        "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host"
                    }]
                }
            }),
            json!({"eventType": "Open", "mail": doc_mail(), "open": {"ipAddress": "192.0.2.1"}}),
            json!({"eventType": "Click", "mail": doc_mail(), "click": {"link": "https://example.com"}}),
        ] {
            assert_eq!(interpret(&with_hermes_tags(event)).unwrap(), None);
        }
        assert!(interpret("not json").is_err());
        assert!(interpret(r#"{"mail":{}}"#).is_err());
    }

    /// The older format (feedback notifications on the identity, "Amazon SNS notification
    /// contents for Amazon SES"): `notificationType`, and no tags.
    #[test]
    fn identity_feedback_notifications_are_understood() {
        let bounce = json!({
            "notificationType": "Bounce",
            "bounce": {
                "feedbackId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                "bounceType": "Permanent",
                "bounceSubType": "Suppressed",
                "bouncedRecipients": [{
                    "emailAddress": "recipient@example.com",
                    "action": "failed",
                    "status": "5.0.0",
                    "diagnosticCode": "smtp; 550 user unknown"
                }],
                "timestamp": "2012-05-25T14:59:38.605Z",
                "remoteMtaIp": "127.0.2.0",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
            },
            "mail": {
                "timestamp": "2012-05-25T14:59:38.605Z",
                "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                "source": "sender@example.com",
                "destination": ["recipient@example.com"]
            }
        });
        let parsed = interpret(&bounce.to_string()).unwrap().unwrap();
        assert_eq!(parsed.status, Status::Failed);
        assert_eq!(parsed.ids, None);
        assert_eq!(
            parsed.provider_message_id.as_deref(),
            Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000")
        );
        assert_eq!(
            parsed.error.unwrap().1,
            "permanent bounce (Suppressed): smtp; 550 user unknown"
        );
        let delivery = json!({
            "notificationType": "Delivery",
            "mail": {"messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000"},
            "delivery": {"recipients": ["recipient@example.com"], "smtpResponse": "250 ok"}
        });
        assert_eq!(
            interpret(&delivery.to_string()).unwrap().unwrap().status,
            Status::Delivered
        );
    }
}
