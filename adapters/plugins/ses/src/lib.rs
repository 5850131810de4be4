//! Amazon SES (API v2) as a Hermes provider plugin: email, with delivery receipts from SES event
//! publishing through Amazon SNS.
//!
//! # Sending
//! SES v2 `SendEmail` (spec `sesv2-2019-09-27-service-2.json`, `operations.SendEmail`):
//! `POST {base_url}/v2/email/outbound-emails`, rest-json, body
//! `{"FromEmailAddress": from, "Destination": {"ToAddresses": [to]}, "Content": {"Simple":
//! {"Subject": {"Data", "Charset": "UTF-8"}, "Body": {"Text"?, "Html"?}}}, "EmailTags":
//! [{"Name": "hermes_message", "Value": <message id>}, {"Name": "hermes_attempt", "Value":
//! <attempt id>}], "ConfigurationSetName"?}`. The answer (200) is `{"MessageId"}`: the provider
//! message id. The request is signed with AWS Signature Version 4 (`sigv4.rs`, service `ses`, the
//! configured region; signed headers `content-type;host;x-amz-date` and `x-amz-security-token`
//! with a session token; the clock is `host::now-millis`). The tags carry Hermes's ids to the
//! event records SES publishes (`mail.tags`); the plugin also remembers `MessageId ->
//! message:attempt` in the host cache for 7 days (`ses_mid:<MessageId>`), to correlate the older
//! identity feedback notifications, which carry no tags.
//!
//! # Config keys
//! | key | meaning |
//! |---|---|
//! | `region` | AWS region of the SES account (`us-east-1`...); required |
//! | `access_key_id` | AWS access key id; required |
//! | `secret_access_key` | AWS secret access key; required |
//! | `session_token` | session token of temporary credentials (optional) |
//! | `from` | `FromEmailAddress`, a verified identity (`Name <addr@example.com>` allowed); required |
//! | `configuration_set` | `ConfigurationSetName`: the configuration set whose event destination publishes to SNS (optional, but receipts need it unless identity notifications are set up) |
//! | `base_url` | API root, default `https://email.{region}.amazonaws.com` |
//! | `sns_topic_arns` | the SNS topic ARNs this account takes notifications from, separated by commas or whitespace; required for receipts (without it every SNS message is refused) |
//! | `sns_trusted_cert_pem` | PEM certificate to verify SNS signatures with instead of fetching `SigningCertURL` (tests, pinned deployments) |
//!
//! # Error classification (send)
//! Codes are `ses_<ErrorType>` when SES names one (the `x-amzn-ErrorType` header, else the body's
//! `__type`, namespace and URL suffix stripped), else `http_<status>`; the message is the body's
//! `message`. Plugin-side codes: `plugin_config`, `invalid_content`, `unsupported_channel`,
//! `connect_failed`, `fetch_denied`.
//! - Permanent: `MessageRejected`, `MailFromDomainNotVerifiedException`, `BadRequestException`,
//!   any other 4xx not listed below, and content Hermes cannot send (`invalid_content`).
//! - Retryable: account problems `AccountSuspendedException`, `SendingPausedException`,
//!   `NotFoundException` (configuration set) and any 404; throttling `TooManyRequestsException`
//!   (429), `LimitExceededException`, `ThrottlingException`/`Throttling` (with `Retry-After`
//!   seconds as `retry-after-seconds` when sent, also on 503); 5xx; credential and signature
//!   errors (401/403, `SignatureDoesNotMatch`, `InvalidSignatureException`,
//!   `UnrecognizedClientException`, `ExpiredToken`, `AccessDeniedException`...); missing or invalid
//!   config (`plugin_config`).
//! - Fetch errors: Connect/Denied -> retryable rejection; Timeout/TooLarge/Transport -> in doubt.
//!
//! # Receipts (SES -> SNS -> `/v1/webhooks/ses`)
//! SNS POSTs JSON envelopes to Hermes's account-wide webhook (no ids in the URL). An envelope whose
//! `TopicArn` is not in `sns_topic_arns` is refused as `invalid-signature` before anything else
//! (no certificate fetched, no subscription confirmed): SNS signs for any AWS account, so a valid
//! signature alone would let anyone subscribe the webhook to their own topic and publish a
//! "Delivery" for a message id they know. Every other envelope's signature is then verified ("Verifying the signatures of Amazon SNS messages": the documented
//! fields per `Type` as `Name\nValue\n`, `SignatureVersion` 1 = SHA1withRSA, 2 = SHA256withRSA,
//! base64 `Signature`) against `sns_trusted_cert_pem` when configured, else against the
//! certificate at `SigningCertURL`, fetched only when it is `https://sns.<region>.amazonaws.com/...pem`
//! with `<region>` the region of the `TopicArn`, and cached (`host::cache-set`, 24 h). A bad or
//! unverifiable signature, or a certificate URL elsewhere, is `invalid-signature`; an
//! unreachable certificate is `malformed` (SNS retries).
//!
//! | SNS `Type` | action |
//! |---|---|
//! | `SubscriptionConfirmation` | GET the `SubscribeURL` (also required to be an SNS URL of the topic's region); no receipts |
//! | `UnsubscribeConfirmation` | nothing |
//! | `Notification` | the `Message` is an SES event record, mapped below |
//!
//! The record's kind is `eventType` (event publishing) or `notificationType` (identity feedback
//! notifications). Its attempt comes from `mail.tags.hermes_message[0]` /
//! `mail.tags.hermes_attempt[0]`, else from the cached `mail.messageId`; an event that names no
//! Hermes attempt gives no receipt (logged). The provider message id is `mail.messageId`.
//!
//! | SES event | Hermes receipt |
//! |---|---|
//! | `Delivery` | `delivered` |
//! | `Bounce`, `bounceType` `Permanent` | `failed`, `ses_bounce_permanent`, message `permanent bounce (<bounceSubType>): <diagnosticCode>` (the subtype, e.g. `Suppressed`, `NoEmail`, `General`, lets a suppression list decide) |
//! | `Bounce`, `Transient` or `Undetermined` | none: SES already retried (its retries show as `DeliveryDelay`), and a `General` transient bounce is typically an out-of-office auto-reply to a delivered message, so it does not prove the message was lost |
//! | `Complaint` | `failed`, `ses_complaint` (with `complaintFeedbackType`) |
//! | `Reject` | `failed`, `ses_reject` (with `reject.reason`) |
//! | `Rendering Failure` / `RenderingFailure` | `failed`, `ses_rendering_failure` |
//! | `Send`, `DeliveryDelay`, `Open`, `Click`, `Subscription`, others | none |
// The generated bindings pass records as flattened arguments.
#![allow(clippy::too_many_arguments)]

mod callback;
mod classify;
mod request;
mod sigv4;

wit_bindgen::generate!({
    path: "../../wit/provider.wit",
    world: "provider",
});

use hermes::provider::host::{self, Level};
use hermes::provider::http_client::{self, FetchError, Request, Response};
use hermes::provider::types::{
    Accepted, Channel, Receipt, ReceiptError, ReceiptStatus, ReceiptStyle, Rejection,
};

use hermes_guest_kit::Reject;
use request::{Attempt, Config};

/// How long a fetched SNS signing certificate is kept.
const CERT_TTL_SECONDS: u32 = 24 * 3600;
/// How long `MessageId -> message:attempt` is kept for identity notifications without tags.
const MESSAGE_ID_TTL_SECONDS: u32 = 7 * 24 * 3600;

struct SesPlugin;

export!(SesPlugin);

fn config() -> Config {
    Config {
        base_url: host::config("base_url"),
        region: host::config("region"),
        access_key_id: host::config("access_key_id"),
        secret_access_key: host::config("secret_access_key"),
        session_token: host::config("session_token"),
        from: host::config("from"),
        configuration_set: host::config("configuration_set"),
    }
}

hermes_guest_kit::wit_glue!();
hermes_guest_kit::receipt_glue!();

fn message_id_key(provider_message_id: &str) -> String {
    format!("ses_mid:{provider_message_id}")
}

fn cert_key(url: &str) -> String {
    format!("sns_cert:{url}")
}

fn get(url: &str) -> Result<Response, String> {
    match http_client::fetch(&Request {
        method: "GET".to_owned(),
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }) {
        Ok(response) if (200..300).contains(&response.status) => Ok(response),
        Ok(response) => Err(format!("HTTP {}", response.status)),
        Err(FetchError::Denied(err)) => Err(format!("denied: {err}")),
        Err(FetchError::Connect(err)) => Err(format!("could not connect: {err}")),
        Err(FetchError::Timeout) => Err("timed out".to_owned()),
        Err(FetchError::TooLarge) => Err("answer too large".to_owned()),
        Err(FetchError::Transport(err)) => Err(err),
    }
}

/// The key that must have signed `envelope`: the configured certificate, or SNS's certificate
/// (cached, else fetched from an SNS host of the topic's region).
fn signing_key(envelope: &callback::Envelope) -> Result<rsa::RsaPublicKey, CallbackError> {
    if let Some(pem) = hermes_guest_kit::non_empty(&host::config("sns_trusted_cert_pem")) {
        return callback::public_key_from_pem(pem).map_err(|err| {
            host::log(
                Level::Error,
                &format!("sns_trusted_cert_pem is unusable: {err}"),
            );
            CallbackError::InvalidSignature
        });
    }
    let url = envelope.signing_cert_url.trim();
    let Some(region) = callback::topic_region(&envelope.topic_arn) else {
        return Err(CallbackError::InvalidSignature);
    };
    if !callback::is_cert_url(url, Some(region)) {
        host::log(
            Level::Warn,
            "SNS message with a SigningCertURL outside sns.<region>.amazonaws.com: refused",
        );
        return Err(CallbackError::InvalidSignature);
    }
    if let Some(pem) = host::cache_get(&cert_key(url))
        && let Ok(key) = callback::public_key_from_pem(&pem)
    {
        return Ok(key);
    }
    let response = get(url).map_err(|err| {
        CallbackError::Malformed(format!(
            "could not fetch the SNS signing certificate: {err}"
        ))
    })?;
    let pem = String::from_utf8(response.body).map_err(|_| {
        CallbackError::Malformed("the SNS signing certificate is not PEM".to_owned())
    })?;
    let key = callback::public_key_from_pem(&pem).map_err(|err| {
        host::log(
            Level::Warn,
            &format!("SNS signing certificate unusable: {err}"),
        );
        CallbackError::InvalidSignature
    })?;
    host::cache_set(&cert_key(url), &pem, CERT_TTL_SECONDS);
    Ok(key)
}

fn outcome(receipts: Vec<Receipt>) -> Result<CallbackOutcome, CallbackError> {
    Ok(CallbackOutcome {
        receipts,
        reply: None,
    })
}

impl Guest for SesPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "ses".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: vec![Channel::Email],
            receipt_style: ReceiptStyle::Callback,
        }
    }

    fn send(request: SendRequest) -> SendResult {
        if request.channel != Channel::Email {
            return failed(Reject::unsupported_channel("SES serves the email channel only").into());
        }
        let http = match request::build(
            &config(),
            &Attempt {
                message_id: &request.message_id,
                attempt_id: &request.attempt_id,
                to: &request.to,
                content: &request.content,
                now_millis: host::now_millis(),
            },
        ) {
            Ok(http) => http,
            Err(reject) => return failed(reject.into()),
        };
        let result = post("SES", &request.attempt_id, http, |status, headers, body| {
            classify::classify(status, headers, body)
        });
        // Older SES notifications carry no tags: remember which attempt a MessageId is.
        if let SendResult::Accepted(Accepted {
            provider_message_id: Some(id),
        }) = &result
        {
            host::cache_set(
                &message_id_key(id),
                &format!("{}:{}", request.message_id, request.attempt_id),
                MESSAGE_ID_TTL_SECONDS,
            );
        }
        result
    }

    fn parse_callback(request: CallbackRequest) -> Result<CallbackOutcome, CallbackError> {
        if !request.method.eq_ignore_ascii_case("POST") {
            return Err(CallbackError::Malformed(
                "SNS delivers messages with POST".to_owned(),
            ));
        }
        // The envelope must be read to know what was signed; nothing in it is used before the
        // signature is verified.
        let envelope = callback::parse_envelope(&request.body).map_err(CallbackError::Malformed)?;
        // Only the account's own topics: checked first, as the topic is also what the signature
        // covers, so a forged TopicArn fails the signature check that follows.
        if !callback::topic_allowed(&host::config("sns_topic_arns"), &envelope.topic_arn) {
            host::log(
                Level::Warn,
                &format!(
                    "SNS {} from topic {} refused: not in sns_topic_arns",
                    envelope.kind, envelope.topic_arn
                ),
            );
            host::metric("callbacks_foreign_topic", 1.0);
            return Err(CallbackError::InvalidSignature);
        }
        let key = signing_key(&envelope).inspect_err(|err| {
            if matches!(err, CallbackError::InvalidSignature) {
                host::metric("callbacks_invalid_signature", 1.0);
            }
        })?;
        if !callback::verify(&envelope, &key) {
            host::metric("callbacks_invalid_signature", 1.0);
            return Err(CallbackError::InvalidSignature);
        }

        match envelope.kind.as_str() {
            "SubscriptionConfirmation" => {
                let url = envelope.subscribe_url.as_deref().unwrap_or_default().trim();
                if !callback::is_sns_url(url, callback::topic_region(&envelope.topic_arn)) {
                    return Err(CallbackError::Malformed(
                        "the SubscribeURL is not an SNS URL of the topic's region".to_owned(),
                    ));
                }
                get(url).map_err(|err| {
                    CallbackError::Malformed(format!("could not confirm the subscription: {err}"))
                })?;
                host::log(
                    Level::Info,
                    &format!("confirmed the SNS subscription to {}", envelope.topic_arn),
                );
                host::metric("sns_subscriptions_confirmed", 1.0);
                outcome(Vec::new())
            }
            "UnsubscribeConfirmation" => outcome(Vec::new()),
            "Notification" => {
                let Some(parsed) =
                    callback::interpret(&envelope.message).map_err(CallbackError::Malformed)?
                else {
                    return outcome(Vec::new());
                };
                let ids = parsed.ids.clone().or_else(|| {
                    let id = parsed.provider_message_id.as_deref()?;
                    let value = host::cache_get(&message_id_key(id))?;
                    let (message_id, attempt_id) = value.split_once(':')?;
                    Some(callback::Ids {
                        message_id: message_id.to_owned(),
                        attempt_id: attempt_id.to_owned(),
                    })
                });
                let Some(ids) = ids else {
                    host::log(
                        Level::Info,
                        &format!(
                            "SES event for {} names no Hermes attempt (no hermes_* tags): ignored",
                            parsed
                                .provider_message_id
                                .as_deref()
                                .unwrap_or("an unknown message")
                        ),
                    );
                    host::metric("callbacks_uncorrelated", 1.0);
                    return outcome(Vec::new());
                };
                host::metric("receipts_parsed", 1.0);
                outcome(vec![Receipt {
                    message_id: ids.message_id,
                    attempt_id: ids.attempt_id,
                    status: parsed.status.into(),
                    provider_message_id: parsed.provider_message_id,
                    error: parsed.error.map(Into::into),
                }])
            }
            other => Err(CallbackError::Malformed(format!(
                "unknown SNS message type {other:?}"
            ))),
        }
    }
}
