//! Amazon SES v2 against moto with SigV4 authentication enforced (`support::moto`), and SES event
//! notifications through SNS, signed as SNS signs them.

use hermes_adapters::plugin::{PluginProvider, builtin};
use hermes_adapters::plugin::{StubRequest, StubResponse};
use hermes_adapters::{CallbackError, Provider, SendError, SendRequest};
use hermes_domain::Channel;
use hermes_domain::message::{ChannelContent, ReceiptStatus};
use std::sync::{Arc, Mutex};

use crate::support::{self, attempt, callback, moto, only_receipt};

async fn plugin(base_url: &str, key_id: &str, secret: &str, from: &str) -> Arc<PluginProvider> {
    let cert = std::fs::read_to_string(fixture("sns-test-cert.pem")).unwrap();
    support::load(
        builtin::SES,
        "ses",
        &[
            ("base_url", base_url),
            ("region", moto::REGION),
            ("access_key_id", key_id),
            ("secret_access_key", secret),
            ("from", from),
            ("sns_trusted_cert_pem", &cert),
            ("sns_topic_arns", TOPIC),
        ],
    )
    .await
}

/// The topic of the signed fixtures, on the test account's allow-list.
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

/// An SES account whose SNS fetches (the subscription confirmation) are answered by a stub that
/// records them, with `sns_topic_arns` as given.
async fn recording_plugin(topics: Option<&str>) -> (PluginProvider, Arc<Mutex<Vec<String>>>) {
    let fetched = Arc::new(Mutex::new(Vec::new()));
    let seen = fetched.clone();
    let engine = support::engine().with_fetch_stub(Arc::new(move |request: &StubRequest| {
        seen.lock().unwrap().push(request.url.clone());
        StubResponse {
            status: 200,
            headers: Vec::new(),
            body: b"<ConfirmSubscriptionResponse/>".to_vec(),
        }
    }));
    let cert = std::fs::read_to_string(fixture("sns-test-cert.pem")).unwrap();
    let mut config = vec![
        ("region", "us-east-1"),
        ("access_key_id", "AKID"),
        ("secret_access_key", "secret"),
        ("from", moto::SENDER),
        ("sns_trusted_cert_pem", cert.as_str()),
    ];
    if let Some(topics) = topics {
        config.push(("sns_topic_arns", topics));
    }
    let mut account = support::local_account("ses", &config);
    account.allowed_hosts = vec!["sns.us-east-1.amazonaws.com".to_owned()];
    (engine.load(builtin::SES, account).await.unwrap(), fetched)
}

fn sns_post(body: Vec<u8>, kind: &str) -> hermes_adapters::CallbackRequest {
    callback(
        "ses",
        None,
        &[
            ("content-type", "text/plain; charset=UTF-8"),
            ("x-amz-sns-message-type", kind),
        ],
        body,
    )
}

fn fixture(name: &str) -> std::path::PathBuf {
    support::repo_root()
        .join("adapters/plugins/ses/tests/fixtures")
        .join(name)
}

fn email(subject: &str) -> SendRequest {
    attempt(
        "ses",
        Channel::Email,
        "ada@example.org",
        ChannelContent::Email {
            subject: subject.to_owned(),
            text: Some("Your code is 1234".to_owned()),
            html: Some("<p>Your code is <b>1234</b></p>".to_owned()),
        },
    )
}

fn rejection(result: Result<hermes_adapters::SendAccepted, SendError>) -> (String, bool) {
    match result {
        Err(SendError::Rejected {
            error, retryable, ..
        }) => (error.code, retryable),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_sigv4_signed_send_email_is_accepted_and_a_wrongly_signed_one_refused() {
    let moto = moto::shared().await;
    let ses = plugin(
        &moto.base_url,
        &moto.access_key_id,
        &moto.secret_access_key,
        moto::SENDER,
    )
    .await;
    let accepted = ses
        .send(&email("Signed right"))
        .await
        .expect("moto accepts a correctly signed SendEmail");
    assert!(accepted.provider_message_id.is_some());
    assert!(moto.data().await.contains("Signed right"));

    // The same request signed with another secret: moto recomputes the signature and refuses it.
    let wrong = plugin(
        &moto.base_url,
        &moto.access_key_id,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        moto::SENDER,
    )
    .await;
    let (code, retryable) = rejection(wrong.send(&email("Signed wrong")).await);
    assert!(
        retryable,
        "a credentials problem is the account's, not the recipient's"
    );
    assert!(code.contains("403") || code.contains("Signature"), "{code}");
    assert!(
        !moto.data().await.contains("Signed wrong"),
        "nothing was sent"
    );

    // A sender SES has not verified: permanent, whatever the account does next.
    let unverified = plugin(
        &moto.base_url,
        &moto.access_key_id,
        &moto.secret_access_key,
        "nobody@unverified.test",
    )
    .await;
    assert_eq!(
        rejection(unverified.send(&email("Unverified")).await),
        ("ses_MessageRejected".to_owned(), false)
    );
}

/// SNS notifications signed with `openssl dgst -sha1|-sha256 -sign` (SignatureVersion 1 and 2,
/// see the fixtures' README) verify against the trusted certificate; altered ones do not.
#[tokio::test]
async fn sns_notifications_signed_by_snss_algorithm_become_receipts() {
    let ses = plugin("http://127.0.0.1:9", "AKID", "secret", moto::SENDER).await;
    for version in ["notification-v1.json", "notification-v2.json"] {
        let body = std::fs::read(fixture(version)).unwrap();
        let post = |body: Vec<u8>| {
            callback(
                "ses",
                None,
                &[
                    ("content-type", "text/plain; charset=UTF-8"),
                    ("x-amz-sns-message-type", "Notification"),
                ],
                body,
            )
        };
        let receipt = only_receipt(ses.parse_callback(&post(body.clone())).await);
        assert_eq!(receipt.status, ReceiptStatus::Delivered, "{version}");
        assert_eq!(
            receipt.message_id.to_string(),
            "0b6f3c52-8d1e-4a7b-9c55-1f2e3d4c5b6a"
        );
        assert_eq!(
            receipt.attempt_id.to_string(),
            "7c9e6679-7425-40de-944b-e07fc1f90ae7"
        );

        let tampered = String::from_utf8(body)
            .unwrap()
            .replace("Delivery", "Bounce");
        assert_eq!(
            ses.parse_callback(&post(tampered.into_bytes())).await,
            Err(CallbackError::InvalidSignature),
            "{version}"
        );
    }
}

/// Anyone can create an SNS topic and have SNS sign its messages: a genuinely signed notification
/// or subscription confirmation from a topic not in `sns_topic_arns` is refused, and the
/// subscription is not confirmed.
#[tokio::test]
async fn sns_messages_from_topics_not_on_the_accounts_list_are_refused() {
    let notification = std::fs::read(fixture("notification-v2.json")).unwrap();
    let confirmation = std::fs::read(fixture("subscription-confirmation.json")).unwrap();
    let foreign = std::fs::read(fixture("subscription-confirmation-foreign-topic.json")).unwrap();

    // The account's own topic: the confirmation is confirmed (one GET of its SubscribeURL).
    let (ses, fetched) = recording_plugin(Some(TOPIC)).await;
    let outcome = ses
        .parse_callback(&sns_post(confirmation.clone(), "SubscriptionConfirmation"))
        .await
        .unwrap();
    assert!(outcome.receipts.is_empty());
    let urls = fetched.lock().unwrap().clone();
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert!(urls[0].contains("Action=ConfirmSubscription"), "{urls:?}");
    assert!(urls[0].contains(TOPIC), "{urls:?}");

    // Another AWS account's topic, validly signed: refused, and nothing fetched.
    assert_eq!(
        ses.parse_callback(&sns_post(foreign, "SubscriptionConfirmation"))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    assert_eq!(
        fetched.lock().unwrap().len(),
        1,
        "the foreign topic was confirmed"
    );

    // An account whose list names other topics refuses the genuine Delivery of this topic.
    let (other, fetched) = recording_plugin(Some("arn:aws:sns:us-east-1:123456789012:other")).await;
    assert_eq!(
        other
            .parse_callback(&sns_post(notification.clone(), "Notification"))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    // Without a list, nothing is taken: neither notifications nor confirmations.
    let (unlisted, _) = recording_plugin(None).await;
    assert_eq!(
        unlisted
            .parse_callback(&sns_post(notification, "Notification"))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    assert_eq!(
        unlisted
            .parse_callback(&sns_post(confirmation, "SubscriptionConfirmation"))
            .await,
        Err(CallbackError::InvalidSignature)
    );
    assert!(fetched.lock().unwrap().is_empty());
}
