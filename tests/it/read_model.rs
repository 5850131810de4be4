//! `GET /v1/messages/{id}` never goes back in time: a read model row behind its message's events
//! (the projector runs moments behind the writes) is not served; the events are.

use crate::harness::{TestApp, WITHIN, message};
use crate::kafka::TestKafka;
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
        // No row yet is lagging too: GET by id read the events, the projector has not written.
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT v.version, (SELECT max(stream_version) FROM events WHERE stream_id = $1)
               FROM message_views v WHERE v.message_id = $1",
        )
        .bind(uuid)
        .fetch_optional(&app.app.pool)
        .await
        .unwrap();
        if row.is_some_and(|(version, latest)| version == latest) {
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

/// A replay rebuilds in short transactions beside the live projector (issue 12, item 3): cascades
/// keep running through it, and what it swaps in ends equal to a rebuild made with nothing
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_while_cascades_run_swaps_in_the_same_rows_as_a_quiet_one() {
    replay_while_running(None).await;
}

/// The same on Kafka: the Kafka projector waits while the rebuilt table is swapped in, then skips what the replay already projected (its rows are versioned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_while_cascades_run_swaps_in_the_same_rows_as_a_quiet_one_on_kafka() {
    replay_while_running(Some(&TestKafka::start().await)).await;
}

async fn replay_while_running(kafka: Option<&TestKafka>) {
    let app = TestApp::spawn_over(kafka, |_| {}).await;
    let sms = |i: usize| {
        message(
            json!({"phone": format!("+1415555{:04}", 2000 + i)}),
            &[("sms", 30)],
        )
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.send(&sms(i)).await);
    }
    let pool = app.app.pool.clone();
    let replay =
        tokio::spawn(async move { hermes_projections::message_views::replay(&pool).await });
    for i in 20..40 {
        ids.push(app.send(&sms(i)).await);
    }
    replay.await.unwrap().expect("the replay swaps in");
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    // The live projector goes on from the replay's checkpoint: wait until every row is current.
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM message_views v
              WHERE v.version < (SELECT max(stream_version) FROM events e WHERE e.stream_id = v.message_id)",
        )
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM message_views")
            .fetch_one(&app.app.pool)
            .await
            .unwrap();
        if behind == 0 && rows == ids.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the projector did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let live = crate::api::snapshot_views(&app).await;
    hermes_projections::message_views::replay(&app.app.pool)
        .await
        .unwrap();
    let quiet = crate::api::snapshot_views(&app).await;
    assert_eq!(live.len(), quiet.len());
    for (l, q) in live.iter().zip(&quiet) {
        assert_eq!(l, q, "message {} differs", l.0);
    }
    // The swapped-in table has the live one's indexes, under their own names.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'message_views' ORDER BY indexname",
    )
    .fetch_all(&app.app.pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "message_views_pkey",
            "message_views_tenant_created_idx",
            "message_views_tenant_status_idx"
        ]
    );
}
