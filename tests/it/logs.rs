//! Logs (issue 13): with `HERMES_LOG_FORMAT=json` every line is one JSON object, and a line
//! written about a message names the message, its tenant and its trace; no secret and no
//! message content ever reaches the log.

use crate::crash::{Hermes, child_client, migrated_database_with_tenant};
use crate::harness::{WITHIN, message};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MOCK_SECRET: &str = "mock-secret-never-logged-7f3a";
const CONTENT: &str = "the launch code is 4-8-15-16-23-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_message_and_its_trace_and_never_a_secret_or_the_content() {
    let (database_url, _pool, tenant) = migrated_database_with_tenant("logs").await;
    let mut hermes = Hermes::new(
        "dev",
        vec![
            ("DATABASE_URL", database_url),
            ("HERMES_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            ("HERMES_MOCK_PROVIDER_SECRET", MOCK_SECRET.into()),
        ],
    );
    let client = child_client();
    hermes.spawn();
    hermes.wait_ready(&client).await;

    // The provider refuses this number: Hermes logs the refusal, within the dispatch's span.
    let trace_id = "5c1d19c0a894a5d88e420c0be16c4b74";
    let send = |phone: &'static str| {
        let mut body = message(json!({"phone": phone}), &[("sms", 30)]);
        body["content"]["text"] = json!(CONTENT);
        client
            .post(format!("{}/v1/messages", hermes.base_url()))
            .bearer_auth(&tenant.api_key)
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&body)
            .send()
    };
    let refused = send("+15005550001").await.unwrap();
    assert_eq!(refused.status(), 202);
    let id = refused.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(send("+15005550100").await.unwrap().status(), 202);

    let wanted = |line: &Value| {
        line["message"] == "provider rejected the attempt"
            && line["spans"].as_array().is_some_and(|spans| {
                spans.iter().any(|s| {
                    s["hermes.message_id"] == id.as_str()
                        && s["hermes.tenant_id"] == tenant.tenant_id.to_string().as_str()
                        && s["trace_id"] == trace_id
                })
            })
    };
    let deadline = Instant::now() + WITHIN;
    let log = loop {
        let log = hermes.log();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| !l.starts_with("==== start"))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines.iter().any(wanted) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no line names message {id} and trace {trace_id}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    for secret in [MOCK_SECRET, CONTENT, tenant.api_key.as_str()] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
