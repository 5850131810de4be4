//! What running a provider as a sandboxed plugin costs: one Twilio `send` through the plugin host
//! (fresh store and instance from the pooling allocator, marshalling across the component
//! boundary, the guest building the request and classifying the answer) against the same work
//! done natively. `fetch` is answered in memory on both sides, so the network is not measured.
//!
//! `cargo bench -p hermes-adapters --bench plugin_call`

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use hermes_adapters::plugin::{
    AccountConfig, PluginEngine, PluginLimits, Secret, StubRequest, StubResponse, builtin,
};
use hermes_adapters::{Provider, SendAccepted, SendError, SendRequest};
use hermes_domain::message::{AttemptError, ChannelContent};
use hermes_domain::{AttemptId, Channel, MessageId, TenantId};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const AUTH_TOKEN: &str = "bench-auth-token";
const BASE_URL: &str = "https://api.twilio.com";

/// Twilio's answer to Messages.json (trimmed from the API reference's example).
fn twilio_answer(_: &StubRequest) -> StubResponse {
    StubResponse {
        status: 201,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: br#"{"account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","api_version":"2010-04-01","body":"Your code is 1234","date_created":"Thu, 24 Aug 2023 05:01:45 +0000","direction":"outbound-api","error_code":null,"error_message":null,"from":"+15005550006","num_segments":"1","price":null,"sid":"SM3f9b5cf1b1e84c7a9a6c2c4bc7d2b1a0","status":"queued","to":"+37255512345","uri":"/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SM3f9b5cf1b1e84c7a9a6c2c4bc7d2b1a0.json"}"#.to_vec(),
    }
}

fn request() -> SendRequest {
    let message_id = MessageId::new();
    let attempt_id = AttemptId::new();
    SendRequest {
        tenant_id: TenantId::new(),
        message_id,
        attempt_id,
        channel: Channel::Sms,
        to: "+37255512345".to_owned(),
        content: ChannelContent::Sms {
            text: "Your code is 1234".to_owned(),
        },
        callback_url: format!(
            "https://hermes.example.com/v1/webhooks/twilio/{message_id}/{attempt_id}"
        ),
    }
}

/// The plugin's work, done natively: the same form body, Basic auth and JSON reading.
fn native_send(request: &SendRequest) -> Result<SendAccepted, SendError> {
    let ChannelContent::Sms { text } = &request.content else {
        return Err(SendError::rejected(
            AttemptError::new("invalid_content", "not sms"),
            false,
        ));
    };
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("To", &request.to)
        .append_pair("From", "+15005550006")
        .append_pair("Body", text)
        .append_pair("StatusCallback", &request.callback_url)
        .finish();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    let answer = twilio_answer(&StubRequest {
        method: "POST".to_owned(),
        url: format!("{BASE_URL}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"),
        headers: vec![
            ("authorization".to_owned(), format!("Basic {auth}")),
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        body: body.into_bytes(),
    });
    if !(200..300).contains(&answer.status) {
        return Err(SendError::rejected(
            AttemptError::new(format!("http_{}", answer.status), "refused"),
            true,
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|err| SendError::InDoubt(format!("unreadable answer: {err}")))?;
    Ok(SendAccepted {
        provider_message_id: json["sid"].as_str().map(str::to_owned),
    })
}

fn plugin_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = PluginEngine::new(PluginLimits::default())
        .unwrap()
        .with_fetch_stub(Arc::new(twilio_answer));
    let account = AccountConfig {
        name: "twilio".to_owned(),
        allowed_hosts: vec!["api.twilio.com".to_owned()],
        allow_private: false,
        config: HashMap::from([
            ("base_url".to_owned(), Secret::new(BASE_URL)),
            ("account_sid".to_owned(), Secret::new(ACCOUNT_SID)),
            ("auth_token".to_owned(), Secret::new(AUTH_TOKEN)),
            ("from".to_owned(), Secret::new("+15005550006")),
        ]),
    };
    let twilio = runtime
        .block_on(engine.load(builtin::TWILIO, account))
        .unwrap();
    let request = request();
    // Both sides must do the same thing before they are compared.
    let by_plugin = runtime.block_on(twilio.send(&request)).unwrap();
    assert_eq!(by_plugin, native_send(&request).unwrap());

    let mut group = c.benchmark_group("twilio_send");
    group.bench_function("plugin", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(twilio.send(black_box(&request)).await) })
    });
    group.bench_function("native", |b| {
        b.iter(|| black_box(native_send(black_box(&request))))
    });
    group.finish();
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
