//! `GET /v1/messages/{id}` never goes back in time: a read model row behind its message's events
//! (the projector runs moments behind the writes) is not served; the events are.

use crate::harness::{TestApp, WITHIN, message};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_behind_the_events_is_not_served() {
    let app = TestApp::spawn().await;
    let id = app
        .send(&message(json!({"phone": "+14155550100"}), &[("sms", 30)]))
        .await;
    let delivered = app.wait_for_status(&id, "delivered", WITHIN).await;
    // Wait until the projector has the last event too, then put its row back in time, as a
    // projector lagging behind the writes would have it.
    let uuid: uuid::Uuid = id.parse().unwrap();
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let (version, latest): (i64, i64) = sqlx::query_as(
            "SELECT v.version, (SELECT max(stream_version) FROM events WHERE stream_id = $1)
               FROM message_views v WHERE v.message_id = $1",
        )
        .bind(uuid)
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
        if version == latest {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never projected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (mut state,): (Value,) =
        sqlx::query_as("SELECT state FROM message_views WHERE message_id = $1")
            .bind(uuid)
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
    state["status"] = json!("accepted");
    state["attempts"] = json!([]);
    state["version"] = json!(1);
    sqlx::query("UPDATE message_views SET state = $2, version = 1, status = 'accepted' WHERE message_id = $1")
        .bind(uuid)
        .bind(&state)
        .execute(&app.app.pool)
        .await
        .unwrap();

    let m = app.message(&id).await.expect("found");
    assert_eq!(m["status"], "delivered", "the stale row was served");
    assert_eq!(m["attempts"], delivered["attempts"]);
}
