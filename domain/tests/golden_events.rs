//! Golden fixtures of the stored events (`fixtures/events/v1/<EventType>[.<variant>].json`).
//!
//! Every event ever written must decode forever. Each fixture is decoded through the same path the
//! event store's readers use and compared with the domain event it means, then encoded back to
//! the byte-identical JSON (so the audit endpoint shows what was stored). Fixtures are never
//! edited: a change of shape adds a new fixture next to the old ones.

use chrono::{DateTime, Utc};
use hermes_domain::billing::AttemptCost;
use hermes_domain::circuit::CircuitState;
use hermes_domain::enrichment::{Enrichment, StepEnrichment};
use hermes_domain::message::events::{Completion, SCHEMA_VERSION};
use hermes_domain::message::spec::{
    CascadeStep, Content, EmailContent, MessageSpec, PushContent, Recipient, SmsContent,
    WhatsappContent, WhatsappTemplate,
};
use hermes_domain::message::{AttemptError, MessageEvent, ReceiptStatus};
use hermes_domain::routing::{CandidateRecord, RouteRecord, Strategy};
use hermes_domain::sms_segments::{SmsEncoding, SmsSegments};
use hermes_domain::{AttemptId, Channel, TenantId, Until};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events/v1");

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a fixture timestamp")
}

fn tenant() -> TenantId {
    "00000000-0000-7000-8000-00000000000a".parse().unwrap()
}

fn attempt_a() -> AttemptId {
    "0190f2a0-0000-7000-8000-000000000001".parse().unwrap()
}

fn attempt_b() -> AttemptId {
    "0190f2a0-0000-7000-8000-000000000002".parse().unwrap()
}

fn object(v: Value) -> serde_json::Map<String, Value> {
    let Value::Object(m) = v else {
        panic!("an object")
    };
    m
}

/// What each fixture means, in domain terms.
fn expected(fixture: &str) -> MessageEvent {
    match fixture {
        "MessageAccepted" => MessageEvent::MessageAccepted {
            tenant_id: tenant(),
            spec: Box::new(MessageSpec {
                cascade_policy: None,
                suppressed_steps: Vec::new(),
                enrichment: None,
                to: Recipient {
                    phone: Some("+14155550100".into()),
                    email: Some("ada@example.com".into()),
                    push_token: Some("fcm-token-1".into()),
                    whatsapp: Some("+14155550101".into()),
                },
                content: Content {
                    text: Some("Your code is 123456".into()),
                    sms: Some(SmsContent {
                        text: Some("Code: 123456".into()),
                    }),
                    email: Some(EmailContent {
                        subject: Some("Your code".into()),
                        text: Some("Your code is 123456".into()),
                        html: Some("<p>Your code is <b>123456</b></p>".into()),
                    }),
                    push: Some(PushContent {
                        title: Some("Code".into()),
                        body: Some("123456".into()),
                        data: Some(object(json!({"kind": "otp", "ttl": 300}))),
                    }),
                    whatsapp: Some(WhatsappContent {
                        text: Some("Your code is 123456".into()),
                        template: Some(WhatsappTemplate {
                            name: "otp_code".into(),
                            language: "en_US".into(),
                            components: Some(vec![json!(
                                {"type": "body", "parameters": [{"type": "text", "text": "123456"}]}
                            )]),
                        }),
                    }),
                },
                cascade: vec![
                    step(Channel::Push, 10, Until::Read),
                    step(Channel::Sms, 60, Until::Delivered),
                    step(Channel::Email, 300, Until::Accepted),
                    step(Channel::Whatsapp, 120, Until::Delivered),
                ],
                reference: Some("order-42".into()),
                metadata: Some(object(
                    json!({"customer": "c-17", "tags": ["otp", "login"]}),
                )),
                ttl_seconds: Some(3600),
            }),
            expires_at: Some(at("2026-01-01T01:00:00Z")),
            at: at("2026-01-01T00:00:00Z"),
        },
        "MessageAccepted.enriched" => MessageEvent::MessageAccepted {
            tenant_id: tenant(),
            spec: Box::new(MessageSpec {
                cascade_policy: None,
                suppressed_steps: Vec::new(),
                enrichment: Some(Enrichment {
                    steps: vec![
                        StepEnrichment {
                            country: Some("US".into()),
                            sms: Some(SmsSegments {
                                encoding: SmsEncoding::Gsm7,
                                units: 19,
                                segments: 1,
                            }),
                            account: Some("twilio-us".into()),
                            route_reason: Some("cheapest".into()),
                            price_estimate: Some(0.0079),
                        },
                        StepEnrichment {
                            account: Some("ses".into()),
                            route_reason: Some("first_usable".into()),
                            ..StepEnrichment::default()
                        },
                    ],
                }),
                to: Recipient {
                    phone: Some("+14155550100".into()),
                    email: Some("ada@example.com".into()),
                    ..Default::default()
                },
                content: Content {
                    text: Some("Your code is 123456".into()),
                    ..Default::default()
                },
                cascade: vec![
                    step(Channel::Sms, 60, Until::Delivered),
                    step(Channel::Email, 300, Until::Delivered),
                ],
                reference: None,
                metadata: None,
                ttl_seconds: None,
            }),
            expires_at: None,
            at: at("2026-01-01T00:00:00Z"),
        },
        "MessageAccepted.minimal" => MessageEvent::MessageAccepted {
            tenant_id: tenant(),
            spec: Box::new(MessageSpec {
                cascade_policy: None,
                suppressed_steps: Vec::new(),
                enrichment: None,
                to: Recipient {
                    phone: Some("+14155550100".into()),
                    ..Default::default()
                },
                content: Content {
                    text: None,
                    sms: Some(SmsContent { text: None }),
                    email: Some(EmailContent {
                        subject: None,
                        text: Some("hi".into()),
                        html: None,
                    }),
                    push: Some(PushContent::default()),
                    whatsapp: Some(WhatsappContent::default()),
                },
                cascade: vec![step(Channel::Sms, 60, Until::Delivered)],
                reference: None,
                metadata: None,
                ttl_seconds: None,
            }),
            expires_at: None,
            at: at("2026-01-01T00:00:00Z"),
        },
        "StepStarted" => MessageEvent::StepStarted {
            step_index: 1,
            channel: Channel::Sms,
            until: Until::Delivered,
            timeout_at: None,
            at: at("2026-01-01T00:00:10Z"),
        },
        "StepStarted.with-timeout" => MessageEvent::StepStarted {
            step_index: 0,
            channel: Channel::Push,
            until: Until::Read,
            timeout_at: Some(at("2026-01-01T00:00:20Z")),
            at: at("2026-01-01T00:00:10Z"),
        },
        "AttemptDispatched" => MessageEvent::AttemptDispatched {
            attempt_id: attempt_a(),
            step_index: 1,
            channel: Channel::Sms,
            provider: "twilio-us".into(),
            served_by: Some("twilio@0.2.0".into()),
            route: None,
            cost: None,
            step_timeout_at: Some(at("2026-01-01T00:01:11Z")),
            at: at("2026-01-01T00:00:11Z"),
        },
        "AttemptDispatched.routed" => MessageEvent::AttemptDispatched {
            attempt_id: attempt_a(),
            step_index: 1,
            channel: Channel::Sms,
            provider: "vonage".into(),
            served_by: Some("vonage@0.2.0".into()),
            route: Some(RouteRecord {
                strategy: Strategy::Cost,
                rule: Some("tenant:sms".into()),
                country: Some("US".into()),
                reason: "cheapest".into(),
                candidates: vec![
                    CandidateRecord {
                        account: "twilio-us".into(),
                        circuit: CircuitState::Open,
                        success_rate: Some(0.25),
                        latency_ms: Some(812),
                        price: Some(0.0079),
                    },
                    CandidateRecord {
                        account: "vonage".into(),
                        circuit: CircuitState::Closed,
                        success_rate: Some(1.0),
                        latency_ms: Some(95),
                        price: Some(0.0081),
                    },
                    CandidateRecord {
                        account: "messente".into(),
                        circuit: CircuitState::HalfOpen,
                        success_rate: None,
                        latency_ms: None,
                        price: None,
                    },
                ],
            }),
            cost: None,
            step_timeout_at: Some(at("2026-01-01T00:01:11Z")),
            at: at("2026-01-01T00:00:11Z"),
        },
        "AttemptDispatched.before-plugins" => MessageEvent::AttemptDispatched {
            attempt_id: attempt_a(),
            step_index: 1,
            channel: Channel::Sms,
            provider: "twilio-us".into(),
            served_by: None,
            route: None,
            cost: None,
            step_timeout_at: None,
            at: at("2026-01-01T00:00:11Z"),
        },
        "AttemptDispatched.priced" => MessageEvent::AttemptDispatched {
            attempt_id: attempt_a(),
            step_index: 0,
            channel: Channel::Sms,
            provider: "twilio-us".into(),
            served_by: Some("twilio@0.2.0".into()),
            route: None,
            cost: Some(AttemptCost {
                units: 3,
                unit_price: 0.0079,
                price: 0.0237,
            }),
            step_timeout_at: Some(at("2026-01-01T00:01:11Z")),
            at: at("2026-01-01T00:00:11Z"),
        },
        "StepUnserved" => MessageEvent::StepUnserved {
            step_index: 2,
            timeout_at: at("2026-01-01T00:05:12Z"),
            at: at("2026-01-01T00:00:12Z"),
        },
        "StepDeferred" => MessageEvent::StepDeferred {
            step_index: 1,
            until: at("2026-01-01T08:00:00Z"),
            reason: "quiet_hours".into(),
            at: at("2026-01-01T00:00:12Z"),
        },
        "StepResumed" => MessageEvent::StepResumed {
            step_index: 1,
            channel: Channel::Sms,
            at: at("2026-01-01T08:00:01Z"),
        },
        "AttemptInDoubt" => MessageEvent::AttemptInDoubt {
            attempt_id: attempt_a(),
            reason: "the provider did not answer within 15 s".into(),
            at: at("2026-01-01T00:00:26Z"),
        },
        "AttemptSent" => MessageEvent::AttemptSent {
            attempt_id: attempt_a(),
            provider_message_id: Some("SM0123456789abcdef0123456789abcdef".into()),
            at: at("2026-01-01T00:00:12Z"),
        },
        "AttemptRejected" => MessageEvent::AttemptRejected {
            attempt_id: attempt_a(),
            error: AttemptError::new("provider_unavailable", "503 from the provider"),
            retryable: true,
            failover: false,
            retry_at: Some(at("2026-01-01T00:00:13Z")),
            at: at("2026-01-01T00:00:12Z"),
        },
        "AttemptRejected.before-retries" => MessageEvent::AttemptRejected {
            attempt_id: attempt_a(),
            error: AttemptError::new("invalid_number", "21211: not a valid phone number"),
            retryable: false,
            failover: true,
            retry_at: None,
            at: at("2026-01-01T00:00:12Z"),
        },
        "RetryDue" => MessageEvent::RetryDue {
            step_index: 1,
            after: attempt_a(),
            at: at("2026-01-01T00:00:13Z"),
        },
        "ReceiptRecorded" => MessageEvent::ReceiptRecorded {
            attempt_id: attempt_a(),
            status: ReceiptStatus::Failed,
            provider_message_id: Some("SM0123456789abcdef0123456789abcdef".into()),
            error: Some(AttemptError::new(
                "30003",
                "Unreachable destination handset",
            )),
            late: true,
            at: at("2026-01-01T00:00:40Z"),
        },
        "StepTimedOut" => MessageEvent::StepTimedOut {
            step_index: 1,
            attempt_id: Some(attempt_a()),
            at: at("2026-01-01T00:01:11Z"),
        },
        "MessageCompleted" => MessageEvent::MessageCompleted {
            status: Completion::Read,
            attempt_id: attempt_b(),
            at: at("2026-01-01T00:02:00Z"),
        },
        "MessageFailed" => MessageEvent::MessageFailed {
            reason: "exhausted".into(),
            at: at("2026-01-01T00:06:00Z"),
        },
        "MessageExpired" => MessageEvent::MessageExpired {
            at: at("2026-01-01T01:00:00Z"),
        },
        "MessageCancelled" => MessageEvent::MessageCancelled {
            at: at("2026-01-01T00:00:30Z"),
        },
        other => panic!("fixture {other} has no expected event: add it here"),
    }
}

fn step(channel: Channel, timeout_seconds: u32, until: Until) -> CascadeStep {
    CascadeStep {
        channel,
        timeout_seconds,
        until,
    }
}

/// Every variant, by name: a new variant does not compile until it is named here (and then the
/// test below asks for its fixture).
fn variant_name(e: &MessageEvent) -> &'static str {
    match e {
        MessageEvent::MessageAccepted { .. } => "MessageAccepted",
        MessageEvent::StepStarted { .. } => "StepStarted",
        MessageEvent::AttemptDispatched { .. } => "AttemptDispatched",
        MessageEvent::StepUnserved { .. } => "StepUnserved",
        MessageEvent::StepDeferred { .. } => "StepDeferred",
        MessageEvent::StepResumed { .. } => "StepResumed",
        MessageEvent::AttemptInDoubt { .. } => "AttemptInDoubt",
        MessageEvent::AttemptSent { .. } => "AttemptSent",
        MessageEvent::AttemptRejected { .. } => "AttemptRejected",
        MessageEvent::RetryDue { .. } => "RetryDue",
        MessageEvent::ReceiptRecorded { .. } => "ReceiptRecorded",
        MessageEvent::StepTimedOut { .. } => "StepTimedOut",
        MessageEvent::MessageCompleted { .. } => "MessageCompleted",
        MessageEvent::MessageFailed { .. } => "MessageFailed",
        MessageEvent::MessageExpired { .. } => "MessageExpired",
        MessageEvent::MessageCancelled { .. } => "MessageCancelled",
    }
}

const EVERY_VARIANT: [&str; 16] = [
    "MessageAccepted",
    "StepStarted",
    "AttemptDispatched",
    "StepUnserved",
    "StepDeferred",
    "StepResumed",
    "AttemptInDoubt",
    "AttemptSent",
    "AttemptRejected",
    "RetryDue",
    "ReceiptRecorded",
    "StepTimedOut",
    "MessageCompleted",
    "MessageFailed",
    "MessageExpired",
    "MessageCancelled",
];

/// (fixture name, event type, stored JSON) of every fixture file.
fn fixtures() -> Vec<(String, String, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("the fixtures directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p: PathBuf| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let event_type = name.split('.').next().unwrap().to_owned();
            let json = read(&p);
            (name, event_type, json)
        })
        .collect()
}

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).expect("a readable fixture");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_fixture_decodes_to_the_event_it_means_and_encodes_back_to_the_same_json() {
    let all = fixtures();
    assert!(all.len() >= EVERY_VARIANT.len(), "the fixtures are there");
    for (name, event_type, stored) in all {
        let decoded = MessageEvent::from_stored(&event_type, SCHEMA_VERSION, stored.clone())
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(decoded, expected(&name), "{name} decodes to another event");
        assert_eq!(decoded.event_type(), event_type, "{name}: its type");
        assert_eq!(
            decoded.to_payload(),
            stored,
            "{name} encodes to other JSON than was stored"
        );
    }
}

#[test]
fn every_event_type_has_a_fixture() {
    let covered: BTreeSet<String> = fixtures().into_iter().map(|(_, t, _)| t).collect();
    let every: BTreeSet<String> = EVERY_VARIANT.iter().map(|s| s.to_string()).collect();
    assert_eq!(covered, every);
    for name in EVERY_VARIANT {
        assert_eq!(variant_name(&expected(name)), name);
    }
}

/// A stored field that nothing reads is a field someone renamed: decoding says so instead of
/// reading the renamed value as absent.
#[test]
fn an_unknown_field_at_any_level_is_refused() {
    for (name, event_type, stored) in fixtures() {
        let mut top = stored.clone();
        top["renamed_field"] = json!(1);
        assert!(
            MessageEvent::from_stored(&event_type, SCHEMA_VERSION, top).is_err(),
            "{name}: an unknown top-level field was accepted"
        );
    }
    let accepted = read(&Path::new(DIR).join("MessageAccepted.json"));
    for pointer in [
        "/spec",
        "/spec/to",
        "/spec/content",
        "/spec/content/sms",
        "/spec/content/email",
        "/spec/content/push",
        "/spec/content/whatsapp",
        "/spec/content/whatsapp/template",
        "/spec/cascade/0",
    ] {
        let mut doc = accepted.clone();
        doc.pointer_mut(pointer).unwrap()["renamed_field"] = json!("x");
        assert!(
            MessageEvent::from_stored("MessageAccepted", SCHEMA_VERSION, doc).is_err(),
            "an unknown field in {pointer} was accepted"
        );
    }
    let rejected = read(&Path::new(DIR).join("AttemptRejected.json"));
    let mut doc = rejected;
    doc["error"]["renamed_field"] = json!("x");
    assert!(MessageEvent::from_stored("AttemptRejected", SCHEMA_VERSION, doc).is_err());
}

#[test]
fn free_form_tenant_json_keeps_whatever_it_holds() {
    let mut doc = read(&Path::new(DIR).join("MessageAccepted.json"));
    doc["spec"]["metadata"]["anything"] = json!({"nested": [1, 2]});
    doc["spec"]["content"]["push"]["data"]["deep"] = json!({"x": null});
    let decoded = MessageEvent::from_stored("MessageAccepted", SCHEMA_VERSION, doc.clone())
        .expect("metadata and push data are the tenant's own JSON");
    assert_eq!(decoded.to_payload(), doc);
}
