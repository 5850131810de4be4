//! Quiet hours: a tenant's daily window, in the recipient's local time, in which a phone step
//! waits (`StepDeferred`) instead of starting, and starts when it ends (`StepResumed`).

use crate::harness::{TestApp, WITHIN};
use chrono::{DateTime, Duration as Span, SubsecRound, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A UK mobile: London's time, one zone, so the window below is exact.
const LONDON_PHONE: &str = "+447400123456";

/// `at` as London's wall clock, `HH:MM:SS`.
fn london_clock(at: DateTime<Utc>) -> String {
    let london = hermes_domain::quiet_hours::zones_of("GB")[0];
    at.with_timezone(&london).format("%H:%M:%S").to_string()
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn set_quiet_hours(app: &TestApp, window: Value) -> (u16, Value) {
    let tenant = app.tenant_id;
    app.admin(
        Method::PATCH,
        &format!("/admin/v1/tenants/{tenant}"),
        Some(json!({"settings": {"quiet_hours": window}})),
    )
    .await
}

fn sms(cascade_ttl: Option<u32>) -> Value {
    let mut body = json!({"to": {"phone": LONDON_PHONE}, "content": {"text": "Your order shipped"},
        "cascade": [{"channel": "sms", "timeout_seconds": 30}]});
    if let Some(ttl) = cascade_ttl {
        body["ttl_seconds"] = json!(ttl);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_the_recipients_quiet_hours_waits_for_their_end_and_then_sends() {
    let app = TestApp::spawn_with_admin().await;
    // Quiet in London from an hour ago until a few seconds from now.
    let now = Utc::now().trunc_subsecs(0);
    let ends = now + Span::seconds(4);
    let (status, tenant) = set_quiet_hours(
        &app,
        json!({"start": london_clock(now - Span::hours(1)), "end": london_clock(ends)}),
    )
    .await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(
        tenant["settings"]["quiet_hours"]["channels"],
        json!(["sms", "whatsapp"])
    );

    let id = app.send(&sms(None)).await;
    // An email is not held back: it goes at once, while the SMS waits.
    let email = app
        .send(
            &json!({"to": {"email": "ada@example.com"}, "content": {"text": "hi"},
                       "cascade": [{"channel": "email", "timeout_seconds": 30}]}),
        )
        .await;

    let waiting = app
        .wait_for(&id, WITHIN, |m| {
            m["current_step"]["deferred_until"].is_string()
        })
        .await;
    let deferred_until = at(&waiting["current_step"]["deferred_until"]);
    assert_eq!(deferred_until, ends, "{waiting:#}");
    assert_eq!(waiting["status"], "accepted", "{waiting:#}");
    assert_eq!(waiting["attempts"], json!([]), "nothing sent: {waiting:#}");
    assert!(
        waiting["current_step"]["timeout_at"].is_null(),
        "the step's clock does not run while it waits: {waiting:#}"
    );
    app.wait_for_status(&email, "delivered", WITHIN).await;

    let delivered = app
        .wait_for_status(&id, "delivered", WITHIN + Duration::from_secs(4))
        .await;
    let dispatched_at = at(&delivered["attempts"][0]["dispatched_at"]);
    assert!(
        dispatched_at >= ends,
        "sent at {dispatched_at}, before the quiet hours ended at {ends}"
    );
    assert!(delivered["current_step"]["deferred_until"].is_null());

    let events = app.events(&id).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let deferred = types.iter().position(|t| *t == "StepDeferred").unwrap();
    let resumed = types.iter().position(|t| *t == "StepResumed").unwrap();
    let dispatched = types
        .iter()
        .position(|t| *t == "AttemptDispatched")
        .unwrap();
    assert!(deferred < resumed && resumed < dispatched, "{types:?}");
    let deferral = &events[deferred]["data"];
    assert_eq!(deferral["reason"], "quiet_hours", "{deferral}");
    assert_eq!(at(&deferral["until"]), ends, "{deferral}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_ttl_ends_in_the_quiet_hours_expires_unsent() {
    let app = TestApp::spawn_with_admin().await;
    let now = Utc::now();
    let (status, body) = set_quiet_hours(
        &app,
        json!({"start": london_clock(now - Span::hours(1)), "end": london_clock(now + Span::hours(1)),
               "channels": ["sms"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = app.send(&sms(Some(2))).await;
    let expired = app.wait_for_status(&id, "expired", WITHIN).await;
    assert_eq!(
        expired["reason"], "ttl_expired_before_dispatch",
        "{expired:#}"
    );
    assert_eq!(expired["attempts"], json!([]), "{expired:#}");
}

#[tokio::test]
async fn a_window_that_is_not_one_is_refused_and_changes_nothing() {
    let app = TestApp::spawn_with_admin().await;
    for window in [
        json!({"start": "21:00", "end": "21:00"}),
        json!({"start": "9pm", "end": "08:00"}),
        json!({"start": "21:00", "end": "24:00"}),
        json!({"start": "21:00"}),
        json!({"start": "21:00", "end": "08:00", "channels": ["email"]}),
        json!({"start": "21:00", "end": "08:00", "channels": []}),
        json!({"start": "21:00", "end": "08:00", "zone": "UTC"}),
    ] {
        let (status, problem) = set_quiet_hours(&app, window.clone()).await;
        assert_eq!(status, 422, "{window}: {problem}");
        assert_eq!(problem["code"], "invalid_setting", "{window}: {problem}");
    }
    let (status, tenant) = app
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{}", app.tenant_id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(tenant["settings"].get("quiet_hours").is_none(), "{tenant}");
}
