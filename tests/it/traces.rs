//! One trace per message (issue 10): the request that sends a message, the saga's dispatch, the
//! provider call and its HTTP request, the receipt and the tenant's webhook are spans of one
//! OpenTelemetry trace, under the client's `traceparent`. Recorded here by an in-memory exporter
//! in this process; a second test runs `hermes dev` with `OTEL_EXPORTER_OTLP_ENDPOINT` set and
//! reads what reaches a collector over OTLP.

use crate::crash::{Hermes, child_client, migrated_database_with_tenant};
use crate::harness::{TestApp, WITHIN, message};
use axum::body::Bytes;
use axum::extract::State;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

/// The spans that ended, as exported.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Recorder {
    fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .cloned()
            .collect()
    }
}

/// Installs this process's subscriber once: Hermes's OpenTelemetry layer (`hermes::traces`)
/// over a recorder. Only traces a test starts with a sampled `traceparent` are recorded: the
/// other tests running in this process make spans too, unsampled.
fn recorder() -> &'static Recorder {
    static INSTALLED: OnceLock<(Recorder, SdkTracerProvider)> = OnceLock::new();
    &INSTALLED
        .get_or_init(|| {
            let recorder = Recorder::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(recorder.clone())
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
                .build();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(hermes::traces::layer(&provider)),
            )
            .expect("no other test installs a global subscriber");
            hermes_infra::trace_context::set_active();
            (recorder, provider)
        })
        .0
}

/// A client's `traceparent`, sampled, in a trace of its own.
fn client_traceparent() -> (TraceId, SpanId, String) {
    let trace_id = TraceId::from_bytes(rand::random());
    let span_id = SpanId::from_bytes(rand::random());
    (trace_id, span_id, format!("00-{trace_id}-{span_id}-01"))
}

/// Sends `body` as the app's tenant with a `traceparent`; answers the message's id.
async fn send_traced(app: &TestApp, traceparent: &str, body: &Value) -> String {
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.api_key)
        .header("traceparent", traceparent)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_one_trace_from_its_request_to_the_tenants_webhook() {
    let recorder = recorder();
    let app = TestApp::spawn().await;
    let (notices, hook) = crate::webhooks::receiver().await;
    let hook = format!("{hook}/ok");
    let (status, body) = app
        .call(
            &app.api_key,
            reqwest::Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": hook, "event_types": ["message.delivered"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (trace_id, client_span, traceparent) = client_traceparent();
    let id = send_traced(
        &app,
        &traceparent,
        &message(json!({"phone": "+15005550100"}), &[("sms", 30)]),
    )
    .await;
    app.wait_for_status(&id, "delivered", WITHIN).await;

    // The webhook's span ends once its POST was answered: wait for it.
    let deadline = Instant::now() + WITHIN;
    let spans = loop {
        let spans = recorder.trace(trace_id);
        if spans.iter().any(|s| s.name == "webhook.deliver") {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook span in the trace; notices {:?}, spans {:?}",
            notices.got("ok"),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    let one = |name: &str| {
        let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name:?} span expected in {names:?}");
        found[0]
    };
    let id_of = |s: &SpanData| s.span_context.span_id();

    let request = one("POST /v1/messages");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(
        (request.parent_span_id, request.parent_span_is_remote),
        (client_span, true),
        "the request's span continues the client's"
    );
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("202")
    );

    let dispatch = one("cascade.dispatch");
    assert_eq!(dispatch.parent_span_id, id_of(request));
    assert_eq!(attribute(dispatch, "hermes.message_id"), Some(id.clone()));

    let sends: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("provider.send "))
        .collect();
    assert_eq!(sends.len(), 1, "{names:?}");
    let send = sends[0];
    assert_eq!(send.parent_span_id, id_of(dispatch));
    assert_eq!(attribute(send, "hermes.outcome").as_deref(), Some("sent"));

    // The plugin's request to the provider (the mock, on this machine).
    let calls: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == id_of(send))
        .collect();
    assert_eq!(calls.len(), 1, "one HTTP request per send: {names:?}");
    assert_eq!(calls[0].span_kind, SpanKind::Client);
    assert_eq!(calls[0].name, "POST");
    assert_eq!(
        attribute(calls[0], "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert!(
        attribute(calls[0], "http.response.status_code").is_some_and(|s| s.starts_with('2')),
        "{calls:?}"
    );

    // The receipt came in a request of the provider's own (its own trace), and is recorded in
    // the message's, under the dispatch that sent the attempt.
    let receipt = one("receipt.record");
    assert_eq!(receipt.parent_span_id, id_of(dispatch));
    assert_eq!(
        attribute(receipt, "hermes.receipt_status").as_deref(),
        Some("delivered")
    );
    assert!(
        receipt
            .links
            .links
            .iter()
            .any(|l| l.span_context.trace_id() != trace_id),
        "the receipt links the provider's request"
    );

    // The delivered notice went out under the receipt that delivered the message.
    let deliver = one("webhook.deliver");
    assert_eq!(deliver.parent_span_id, id_of(receipt));
    assert_eq!(deliver.span_kind, SpanKind::Client);
    assert_eq!(
        attribute(deliver, "http.response.status_code").as_deref(),
        Some("204")
    );
    assert_eq!(
        attribute(deliver, "hermes.webhook.event_type").as_deref(),
        Some("message.delivered")
    );

    // One tree: every span hangs from the client's span or another span of the trace.
    for span in &spans {
        assert!(
            span.parent_span_id == client_span
                || spans.iter().any(|p| id_of(p) == span.parent_span_id),
            "{:?} hangs from no span of the trace",
            span.name
        );
    }

    // The events carry the trace: each one's `traceparent` names a span of it.
    for event in app.events(&id).await {
        let stored = event["metadata"]["traceparent"]
            .as_str()
            .unwrap_or_default();
        let context = hermes_infra::trace_context::parse(stored)
            .unwrap_or_else(|| panic!("{} has no traceparent", event["type"]));
        assert_eq!(context.trace_id(), trace_id, "{}", event["type"]);
        assert!(
            spans.iter().any(|s| id_of(s) == context.span_id()),
            "{} names a span not in the trace",
            event["type"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timeout_continues_the_message_trace() {
    let recorder = recorder();
    let app = TestApp::spawn().await;
    let (trace_id, _, traceparent) = client_traceparent();
    // No receipt ever comes for this number: the SMS step times out, then email delivers.
    let id = send_traced(
        &app,
        &traceparent,
        &message(
            json!({"phone": "+15005550008", "email": "ada@example.com"}),
            &[("sms", 1), ("email", 30)],
        ),
    )
    .await;
    app.wait_for_status(&id, "delivered", WITHIN).await;

    let deadline = Instant::now() + WITHIN;
    let spans = loop {
        let spans = recorder.trace(trace_id);
        if spans
            .iter()
            .filter(|s| s.name == "cascade.dispatch")
            .count()
            == 2
            && spans.iter().any(|s| s.name == "timer.fire")
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let timer = spans.iter().find(|s| s.name == "timer.fire").unwrap();
    let first = spans
        .iter()
        .find(|s| s.name == "cascade.dispatch" && s.parent_span_id != timer.span_context.span_id())
        .expect("the first step's dispatch");
    assert_eq!(
        timer.parent_span_id,
        first.span_context.span_id(),
        "the timer continues the message's latest traced work: the SMS dispatch"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "cascade.dispatch"
                && s.parent_span_id == timer.span_context.span_id()),
        "the email step's dispatch follows the timer"
    );
}

/// What an OTLP/HTTP collector got: (service name, trace id, span name) of each span.
type Collected = Arc<Mutex<Vec<(String, Vec<u8>, String)>>>;

async fn collector() -> (Collected, String) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let got: Collected = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(|State(got): State<Collected>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        got.lock()
                            .unwrap()
                            .push((service.clone(), span.trace_id, span.name));
                    }
                }
                axum::http::StatusCode::OK
            }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_out_over_otlp_when_an_endpoint_is_set() {
    let (collected, endpoint) = collector().await;
    let (database_url, _pool, tenant) = migrated_database_with_tenant("otlp").await;
    let mut hermes = Hermes::new(
        "dev",
        vec![
            ("DATABASE_URL", database_url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", "hermes-otlp-test".into()),
            // The batch goes out every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let client = child_client();
    hermes.spawn();
    hermes.wait_ready(&client).await;

    let (trace_id, _, traceparent) = client_traceparent();
    let r = client
        .post(format!("{}/v1/messages", hermes.base_url()))
        .bearer_auth(&tenant.api_key)
        .header("traceparent", &traceparent)
        .json(&message(json!({"phone": "+15005550100"}), &[("sms", 30)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let wanted = ["POST /v1/messages", "cascade.dispatch", "receipt.record"];
    let deadline = Instant::now() + WITHIN;
    loop {
        let names: Vec<String> = collected
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, trace, _)| trace.as_slice() == trace_id.to_bytes())
            .map(|(service, _, name)| {
                assert!(service.contains("hermes-otlp-test"), "service {service}");
                name.clone()
            })
            .collect();
        if wanted.iter().all(|w| names.iter().any(|n| n == w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector got {names:?} of the trace, not all of {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
