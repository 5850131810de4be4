//! Layer 9 read off validated requests, and the country later decisions take from it.

use super::*;
use crate::TenantId;
use crate::message::Recipient;
use crate::message::spec::Content;
use crate::routing::{PriceTable, Strategy};
use crate::validation::{MessageDraft, validate};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e4a_0009));

fn spec(to: Recipient, text: &str, cascade: serde_json::Value) -> MessageSpec {
    validate(MessageDraft {
        to,
        content: Content {
            text: Some(text.into()),
            ..Default::default()
        },
        cascade: Some(cascade),
        ..Default::default()
    })
    .expect("a valid request")
}

fn priced(name: &str, channels: &[Channel], entries: &[(&str, f64)]) -> ProviderCandidate {
    let table: PriceTable = entries.iter().map(|(c, p)| (c.to_string(), *p)).collect();
    ProviderCandidate {
        prices: Arc::new(table),
        ..ProviderCandidate::new(name, channels)
    }
}

fn phone_and_email() -> Recipient {
    Recipient {
        phone: Some("+372 5551 2345".into()),
        email: Some("ada@example.com".into()),
        ..Recipient::default()
    }
}

#[test]
fn every_step_gets_its_country_parts_route_and_price() {
    let spec = spec(
        phone_and_email(),
        // 161 GSM-7 septets: two parts of 153.
        &"a".repeat(161),
        json!([{"channel": "sms"}, {"channel": "email"}]),
    );
    assert_eq!(
        spec.to.phone.as_deref(),
        Some("+37255512345"),
        "stored in E.164"
    );
    let candidates = [
        priced("dear-sms", &[Channel::Sms], &[("EE", 0.05)]),
        priced("cheap-sms", &[Channel::Sms], &[("EE", 0.0321), ("*", 0.1)]),
        priced("ses", &[Channel::Email], &[("*", 0.0001)]),
    ];
    let rules = [(
        Channel::Sms,
        RoutingRule {
            strategy: Strategy::Cost,
            ..RoutingRule::default()
        },
    )]
    .into_iter()
    .collect();
    let e = enrich(TENANT, &spec, &candidates, &rules);
    let [sms, email] = e.steps.as_slice() else {
        panic!("one entry per step: {e:?}")
    };
    assert_eq!(sms.country.as_deref(), Some("EE"));
    let parts = sms.sms.expect("an SMS step counts its parts");
    assert_eq!(
        (parts.encoding.as_str(), parts.units, parts.segments),
        ("gsm7", 161, 2)
    );
    assert_eq!(sms.account.as_deref(), Some("cheap-sms"));
    assert_eq!(sms.route_reason.as_deref(), Some("cheapest"));
    assert_eq!(sms.price_estimate, Some(0.0642), "two parts at 0.0321");
    assert_eq!(email.country, None, "an email has no country");
    assert_eq!(email.sms, None);
    assert_eq!(email.account.as_deref(), Some("ses"));
    assert_eq!(email.route_reason.as_deref(), Some("first_usable"));
    assert_eq!(
        email.price_estimate,
        Some(0.0001),
        "the `*` price, one unit"
    );
    assert_eq!(e.price_estimate(), Some(0.0643));
}

#[test]
fn a_step_no_account_serves_has_no_route_and_no_price() {
    let spec = spec(
        Recipient {
            whatsapp: Some("+447400123456".into()),
            ..Recipient::default()
        },
        "hi",
        json!([{"channel": "whatsapp"}]),
    );
    let e = enrich(TENANT, &spec, &[], &BTreeMap::new());
    assert_eq!(e.steps.len(), 1);
    assert_eq!(e.steps[0].country.as_deref(), Some("GB"));
    assert_eq!(e.steps[0].account, None);
    assert_eq!(e.steps[0].price_estimate, None);
    assert_eq!(e.price_estimate(), None);
}

#[test]
fn later_decisions_take_the_country_recorded_at_accept() {
    let mut spec = spec(
        phone_and_email(),
        "hi",
        json!([{"channel": "email"}, {"channel": "sms"}]),
    );
    assert_eq!(
        spec.destination_country(Channel::Sms).as_deref(),
        Some("EE"),
        "read from the number when nothing was recorded"
    );
    assert_eq!(spec.sms_parts().map(|p| p.segments), Some(1), "counted");
    spec.enrichment = Some(Enrichment {
        steps: vec![
            StepEnrichment::default(),
            StepEnrichment {
                country: Some("LV".into()),
                sms: Some(SmsSegments {
                    encoding: crate::sms_segments::SmsEncoding::Ucs2,
                    units: 600,
                    segments: 9,
                }),
                ..StepEnrichment::default()
            },
        ],
    });
    assert_eq!(
        spec.sms_parts().map(|p| p.segments),
        Some(9),
        "the parts recorded at accept, not a new count of \"hi\""
    );
    assert_eq!(
        spec.destination_country(Channel::Sms).as_deref(),
        Some("LV"),
        "what accept recorded wins over today's reading"
    );
    assert_eq!(spec.destination_country(Channel::Email), None);
}
