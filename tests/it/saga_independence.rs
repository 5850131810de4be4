//! Independent saga work (issue 12, item 3): one message's slow provider call holds up that
//! message only. The mock provider hangs on numbers ending in `0006` (the call ends at the
//! plugin's fetch deadline, 10 s, in doubt); other messages go on meanwhile, and the dispatch
//! backlog does not count the hanging call as overload.

use crate::harness::{TestApp, WITHIN, message};
use chrono::{DateTime, Utc};
use hermes_command::backlog;
use serde_json::{Value, json};
use std::time::Duration;

const OTHERS: usize = 20;

fn recorded_at(events: &[Value], event_type: &str) -> Option<DateTime<Utc>> {
    events
        .iter()
        .find(|e| e["type"] == event_type)
        .map(|e| e["recorded_at"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_call_holds_up_only_its_own_message() {
    let app = TestApp::spawn().await;
    let hanging = app
        .send(&message(json!({"phone": "+14155550006"}), &[("sms", 60)]))
        .await;
    // Its attempt is dispatched, and the provider call under way.
    app.wait_for(&hanging, WITHIN, |m| {
        m["attempts"]
            .as_array()
            .is_some_and(|a| a.first().is_some_and(|a| a["status"] == "dispatching"))
    })
    .await;

    // Messages accepted while it hangs are sent and delivered; with a saga that waited for its
    // whole batch they would wait for the hanging call's deadline.
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let phone = format!("+1415555{:04}", 2000 + i);
        others.push(
            app.send(&message(json!({ "phone": phone }), &[("sms", 60)]))
                .await,
        );
    }
    let mut delivered_at = Vec::new();
    for id in &others {
        app.wait_for_status(id, "delivered", WITHIN).await;
        let events = app.events(id).await;
        delivered_at.push(recorded_at(&events, "MessageCompleted").expect("completed"));
    }

    // The hanging call ends in doubt at its deadline; meanwhile the backlog stays small, since
    // nothing waits for a worker.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut worst_backlog = Duration::ZERO;
    let in_doubt_at = loop {
        let events = app.events(&hanging).await;
        if let Some(at) = recorded_at(&events, "AttemptInDoubt") {
            break at;
        }
        worst_backlog =
            worst_backlog.max(backlog::oldest_unhandled_age(&app.app.pool).await.unwrap());
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (id, at) in others.iter().zip(&delivered_at) {
        assert!(
            *at < in_doubt_at,
            "{id} was delivered at {at}, after the hanging call ended at {in_doubt_at}"
        );
    }
    assert!(
        worst_backlog < Duration::from_secs(5),
        "the hanging call counted as backlog: {worst_backlog:?}"
    );
}
