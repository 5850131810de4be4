//! No receipt is lost to downtime (ARCHITECTURE.md, crash safety): receipt intake answers 2xx only
//! once a receipt is recorded, the mock provider retries what was not taken, and a step's timeout
//! first asks the provider about an attempt whose receipt never came (reconciliation).
//!
//! The kill test runs the real `hermes dev` binary (its embedded mock provider dies with it, like
//! the black-box run that found the loss) and kills it with SIGKILL while receipts are due.

use crate::crash::{Hermes, child_client};
use crate::harness::{self, TestApp, WITHIN};
use hermes_adapters::mock::{SIGNATURE_HEADER, sign};
use hermes_infra::{Secret, db, tenants};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `metadata.actor` of each event of that type in a message's audit trail.
fn actors(events: &[Value], event_type: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == event_type)
        .map(|e| {
            e["metadata"]["actor"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Receipts for this Hermes go to an address where nothing listens: the mock provider's receipts
/// never arrive (it keeps retrying them), yet it knows the message was delivered.
async fn app_whose_receipts_never_arrive() -> TestApp {
    TestApp::spawn_with(|args| {
        args.public_url = Some(format!("http://127.0.0.1:{}", crate::crash::free_port()));
    })
    .await
}

#[tokio::test]
async fn an_attempt_whose_receipt_never_came_is_delivered_by_its_providers_status_at_the_timeout() {
    let app = app_whose_receipts_never_arrive().await;
    let id = app
        .send(&harness::message(
            json!({"phone": "+14155550100", "email": "ada@example.com"}),
            &[("sms", 1), ("email", 30)],
        ))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    // Delivered by the SMS: the cascade never moved on to email.
    assert_eq!(harness::statuses(&m), [("sms".into(), "delivered".into())]);
    assert!(
        m["attempts"][0]["provider_message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("mock-"))
    );
    assert_eq!(
        app.mock_stats().receipts_delivered,
        0,
        "no receipt got through"
    );

    // The audit trail says where the receipt came from, and that the step never timed out.
    let events = app.events(&id).await;
    assert_eq!(
        actors(&events, "ReceiptRecorded"),
        ["reconciliation:mock"],
        "{events:#?}"
    );
    assert!(
        !types(&events).contains(&"StepTimedOut".to_owned()),
        "{events:#?}"
    );
    assert_eq!(actors(&events, "MessageCompleted"), ["reconciliation:mock"]);
}

#[tokio::test]
async fn a_provider_with_no_status_yet_lets_the_step_time_out_and_the_next_step_is_reconciled() {
    let app = app_whose_receipts_never_arrive().await;
    // 0008: the mock accepts the SMS and never has a status for it.
    let id = app
        .send(&harness::message(
            json!({"phone": "+14155550008", "email": "ada@example.com"}),
            &[("sms", 1), ("email", 1)],
        ))
        .await;
    let m = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(
        harness::statuses(&m),
        [
            ("sms".into(), "timed_out".into()),
            ("email".into(), "delivered".into())
        ]
    );
    let events = app.events(&id).await;
    assert_eq!(actors(&events, "StepTimedOut"), ["timer"]);
    assert_eq!(actors(&events, "ReceiptRecorded"), ["reconciliation:mock"]);
}

#[tokio::test]
async fn a_receipt_that_cannot_be_recorded_is_answered_5xx_and_the_provider_retries_it() {
    const SECRET: &str = "downtime-test-secret";
    let app = TestApp::spawn_with(|args| {
        args.mock_provider_secret = Some(SECRET.into());
        // Long enough to send our own receipt first, short enough for a quick test.
        args.mock_receipt_delay_ms = 300;
    })
    .await;
    let pool = db::connect(&Secret::new(app.database_url.clone()), 2)
        .await
        .unwrap();
    // The database refuses every receipt (as it would while full, failing over, ...).
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_receipts() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'receipts refused by the test'; END $$;
         CREATE TRIGGER refuse_receipts BEFORE INSERT ON events FOR EACH ROW
           WHEN (NEW.event_type = 'ReceiptRecorded') EXECUTE FUNCTION refuse_receipts();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let id = app
        .send(&harness::message(
            json!({"phone": "+14155550100"}),
            &[("sms", 60)],
        ))
        .await;
    let m = app
        .wait_for(&id, WITHIN, |m| m["attempts"][0]["status"] == "sent")
        .await;
    let attempt_id = m["attempts"][0]["id"].as_str().unwrap().to_owned();
    // The receipt must name the provider message its attempt was sent as (else it is refused).
    let provider_message_id = m["attempts"][0]["provider_message_id"].clone();

    // A correctly signed receipt, which Hermes cannot store: 5xx, so the provider tries again.
    let body = serde_json::to_vec(&json!({
        "message_id": id, "attempt_id": attempt_id, "provider_message_id": provider_message_id,
        "status": "delivered", "error_code": null, "error_message": null,
        "timestamp": "2026-12-02T00:00:00.000Z",
    }))
    .unwrap();
    let r = app
        .client
        .post(app.url(&format!("/v1/webhooks/mock/{id}/{attempt_id}")))
        .header(SIGNATURE_HEADER, sign(SECRET, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "answered {}", r.status());
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "internal", "{problem}");
    // Nothing was recorded.
    let m = app.message(&id).await.unwrap();
    assert_eq!(m["status"], "sending");
    assert_eq!(m["attempts"][0]["status"], "sent");

    // The mock's own receipt meets the same refusal and is retried; once the database takes
    // receipts again, it arrives.
    let deadline = Instant::now() + WITHIN;
    while app.mock_stats().receipt_retries == 0 {
        assert!(
            Instant::now() < deadline,
            "the mock never tried its receipt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::raw_sql("DROP TRIGGER refuse_receipts ON events")
        .execute(&pool)
        .await
        .unwrap();
    app.wait_for_status(&id, "delivered", WITHIN).await;
    let events = app.events(&id).await;
    assert_eq!(actors(&events, "ReceiptRecorded"), ["provider:mock"]);
    assert_eq!(app.mock_stats().receipts_delivered, 1);
    assert_eq!(app.mock_stats().receipts_abandoned, 0);
}

const ROUNDS: usize = 3;
const PER_ROUND: usize = 20;
/// The embedded mock's receipt delay and the SMS step's timeout: every kill lands after a round's
/// SMS were all accepted by the mock and before any of their receipts were due, and the timeout
/// leaves the saga 8 s to dispatch (on a loaded machine) before the lookup at the timeout would
/// find an SMS the mock has not delivered yet.
const RECEIPT_DELAY_MS: u64 = 2000;
const SMS_TIMEOUT_S: u32 = 10;
const EMAIL_TIMEOUT_S: u32 = 5;

/// POSTs one message until Hermes accepts it (it is up; the retry covers a slow start).
async fn submit(client: &reqwest::Client, base_url: &str, api_key: &str, body: &Value) -> Uuid {
    let deadline = Instant::now() + WITHIN;
    loop {
        let r = client
            .post(format!("{base_url}/v1/messages"))
            .bearer_auth(api_key)
            .json(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => {
                let v: Value = r.json().await.unwrap();
                return v["id"].as_str().unwrap().parse().unwrap();
            }
            Ok(r) if !r.status().is_server_error() => {
                panic!("{}: {}", r.status(), r.text().await.unwrap_or_default())
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "a message was never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many of `ids` have an attempt the provider accepted (`AttemptSent` recorded).
async fn sent(pool: &sqlx::PgPool, ids: &[Uuid]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT stream_id) FROM events
          WHERE event_type = 'AttemptSent' AND stream_id = ANY($1)",
    )
    .bind(ids)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The black-box run of the issue, as a test: 60 two-step cascades (SMS, then email) through
/// `hermes dev`, killed with SIGKILL and restarted after each round of 20, each time just after
/// the mock provider accepted the round's SMS and before their receipts were due. The embedded
/// mock dies with Hermes, so those receipts are never posted; each step's timeout asks the new
/// mock, which still knows (from the provider message id) that the SMS was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_hermes_dev_while_receipts_are_due_loses_no_delivery() {
    let started = Instant::now();
    let database_url = harness::fresh_database().await;
    let pool = db::connect(&Secret::new(database_url.clone()), 4)
        .await
        .unwrap();
    db::migrate(&pool).await.unwrap();
    let tenant = tenants::create_tenant(&pool, "downtime").await.unwrap();
    let mut hermes = Hermes::new(
        "dev",
        vec![
            ("DATABASE_URL", database_url),
            ("HERMES_DB_POOL_SIZE", "16".into()),
            ("HERMES_MOCK_RECEIPT_DELAY_MS", RECEIPT_DELAY_MS.to_string()),
        ],
    );
    let client = child_client();
    hermes.spawn();
    hermes.wait_ready(&client).await;

    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let mut round_ids = Vec::new();
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            let body = harness::message(
                json!({"phone": format!("+1415{n:06}7"), "email": format!("ada+{n}@example.com")}),
                &[("sms", SMS_TIMEOUT_S), ("email", EMAIL_TIMEOUT_S)],
            );
            round_ids.push(submit(&client, &hermes.base_url(), &tenant.api_key, &body).await);
        }
        // Kill as soon as the mock took every SMS of the round: their receipts are still due.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent(&pool, &round_ids).await < PER_ROUND as i64 {
            assert!(Instant::now() < deadline, "round {round}: SMS not all sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hermes.kill();
        hermes.spawn();
        hermes.wait_ready(&client).await;
        ids.extend(round_ids);
    }

    // Every message ends, delivered.
    let deadline = Instant::now() + WITHIN;
    let statuses = loop {
        let statuses: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT message_id, status FROM message_views WHERE message_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .unwrap();
        let open = statuses
            .iter()
            .filter(|(_, s)| s == "accepted" || s == "sending")
            .count();
        if statuses.len() == ids.len() && open == 0 {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} messages still open, {} in the read model",
            ids.len(),
            statuses.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &statuses {
        *by_status.entry(s.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_status,
        BTreeMap::from([("delivered", ROUNDS * PER_ROUND)]),
        "after {:?}",
        started.elapsed()
    );

    // Through the API: each delivered by its SMS, and the audit trail says how.
    let mut by_actor: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let r = client
            .get(format!("{}/v1/messages/{id}", hermes.base_url()))
            .bearer_auth(&tenant.api_key)
            .send()
            .await
            .unwrap();
        let m: Value = r.json().await.unwrap();
        assert_eq!(
            harness::statuses(&m),
            [("sms".into(), "delivered".into())],
            "{m:#}"
        );
        let r = client
            .get(format!("{}/v1/messages/{id}/events", hermes.base_url()))
            .bearer_auth(&tenant.api_key)
            .send()
            .await
            .unwrap();
        let events: Value = r.json().await.unwrap();
        for actor in actors(events["data"].as_array().unwrap(), "ReceiptRecorded") {
            *by_actor.entry(actor).or_default() += 1;
        }
    }
    eprintln!(
        "{} messages, {} starts of hermes dev, all delivered after {:?}; receipts by actor: {by_actor:?}",
        ids.len(),
        ROUNDS + 1,
        started.elapsed()
    );
    // Each round was killed before its receipts were due: they came from reconciliation.
    assert!(
        by_actor.get("reconciliation:mock").copied().unwrap_or(0) >= ROUNDS,
        "receipts by actor: {by_actor:?}"
    );
}
