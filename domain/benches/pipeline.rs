//! What the validation pipeline's pure layers cost per message, with the tenant's rules off and
//! on: `cargo bench -p hermes-domain --bench pipeline`. The I/O layers (the rate limit in Redis,
//! the suppression lookup, the commit) are measured end to end by `hermes bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use hermes_domain::enrichment::enrich;
use hermes_domain::message::{Content, Recipient};
use hermes_domain::rate_limit::{self, RateLimit};
use hermes_domain::routing::ProviderCandidate;
use hermes_domain::tenant::TenantSettings;
use hermes_domain::validation::{self, MessageDraft};
use hermes_domain::{Channel, TenantId};
use serde_json::json;
use std::hint::black_box;

fn draft() -> MessageDraft {
    MessageDraft {
        to: Recipient {
            phone: Some("+14155550100".into()),
            email: Some("ada@example.com".into()),
            ..Default::default()
        },
        content: Content {
            text: Some("Your code is 123456. It expires in 10 minutes. Do not share it.".into()),
            ..Default::default()
        },
        cascade: Some(json!([{"channel": "sms", "timeout_seconds": 30},
                             {"channel": "email", "timeout_seconds": 60}])),
        ..Default::default()
    }
}

fn every_rule() -> TenantSettings {
    serde_json::from_value(json!({
        "max_sms_segments": 3,
        "allowed_countries": ["US", "CA", "GB"],
        "rate_limit": {"per_second": 1000},
        "cascade_policies": {"otp": {"steps": [{"channel": "sms"}, {"channel": "email"}]}}
    }))
    .unwrap()
}

fn pipeline(c: &mut Criterion) {
    let off = TenantSettings::default();
    let on = every_rule();
    let mut group = c.benchmark_group("pipeline");
    group.bench_function("schema_and_content", |b| {
        b.iter(|| validation::validate(black_box(draft())).unwrap())
    });
    group.bench_function("tenant_rules_off", |b| {
        b.iter(|| {
            let spec = validation::validate(black_box(draft())).unwrap();
            validation::validate_for_tenant(&spec, &off).unwrap()
        })
    });
    group.bench_function("tenant_rules_on", |b| {
        b.iter(|| {
            let mut d = black_box(draft());
            d.cascade = Some(json!("otp"));
            let policy = validation::resolve_cascade_policy(&mut d, &on);
            let mut spec = validation::validate(d).unwrap();
            spec.cascade_policy = policy;
            validation::validate_for_tenant(&spec, &on).unwrap()
        })
    });
    let candidates = [
        ProviderCandidate::new("twilio", &[Channel::Sms]),
        ProviderCandidate::new("ses", &[Channel::Email]),
    ];
    let spec = validation::validate(draft()).unwrap();
    group.bench_function("enrich", |b| {
        b.iter(|| enrich(TenantId::new(), black_box(&spec), &candidates, &off.routing))
    });
    group.bench_function("schema_formatted_number", |b| {
        b.iter(|| {
            let mut d = black_box(draft());
            d.to.phone = Some("+1 (415) 555-0100".into());
            validation::validate(d).unwrap()
        })
    });
    let limit = RateLimit {
        per_second: 1000,
        burst: None,
    };
    group.bench_function("gcra_rule", |b| {
        let mut tat = None;
        let mut now = 0u64;
        b.iter(|| {
            now += 1_000;
            if let rate_limit::Verdict::Allow { new_tat } = rate_limit::check(&limit, tat, now) {
                tat = Some(new_tat);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
