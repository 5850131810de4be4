//! Tamper evidence (issue 10): `hermes verify` finds a log written by real cascades intact, then
//! catches an edited, a removed and a reordered event, and a stream's last event cut off (which
//! only the log checkpoints show), each changed by SQL with the append-only trigger disabled.

use crate::harness::{TestApp, WITHIN, message};
use hermes_infra::log_integrity;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `hermes verify --json` against the test's database: (exit code, report).
async fn verify(app: &TestApp) -> (i32, Value) {
    let out = app.hermes_cli(&["verify", "--json"]).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("an exit code"), report)
}

/// Checkpoints until every sealed event is covered (a background transaction still open holds
/// the horizon back for a moment).
async fn checkpoint_everything(pool: &PgPool) {
    let deadline = Instant::now() + WITHIN;
    loop {
        log_integrity::checkpoint(pool).await.expect("checkpoint");
        let (covered, sealed): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(sum(events), 0)::bigint FROM log_checkpoints),
                    (SELECT count(*) FROM events WHERE hash IS NOT NULL)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if covered == sealed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{covered} of {sealed} events checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `sql` (statements separated by `;`, each changing a row) on the events with the append-only trigger off, as someone with the database's
/// owner rights could.
async fn tamper(pool: &PgPool, sql: &str, stream: Uuid) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in sql.split(';') {
        let changed = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .bind(stream)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert!(changed > 0, "{statement} changed nothing");
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// The problems other than checkpoint mismatches, in a stable order.
fn problems(report: &Value) -> Vec<Value> {
    let mut problems: Vec<Value> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "checkpoint_mismatch")
        .cloned()
        .collect();
    problems.sort_by_key(|p| p.to_string());
    problems
}

/// How many fewer events the checkpoints find than they were written over.
fn checkpointed_events_gone(report: &Value) -> i64 {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "checkpoint_mismatch")
        .map(|p| p["events_expected"].as_i64().unwrap() - p["events_found"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_an_edited_a_removed_and_a_reordered_event() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for phone in [
        "+14155550101",
        "+14155550102",
        "+14155550103",
        "+14155550104",
    ] {
        // A reference and nested metadata, so the hashes cover more than flat fields.
        let mut body = message(json!({"phone": phone}), &[("sms", 30)]);
        body["reference"] = json!(format!("verify {phone} é ✓"));
        ids.push(app.send(&body).await);
    }
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    let [edited, removed, reordered, cut]: [Uuid; 4] = ids
        .iter()
        .map(|id| id.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let pool = &app.app.pool;
    let versions: i64 =
        sqlx::query_scalar("SELECT min(n) FROM (SELECT count(*) AS n FROM events WHERE stream_type = 'message' GROUP BY stream_id) s")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(versions >= 4, "a delivered message has {versions} events");
    checkpoint_everything(pool).await;

    // Untouched: intact, every event checked.
    let (code, report) = verify(&app).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["problems"], json!([]));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(report["events"], json!(events));
    assert_eq!(report["before_chain"], json!(0));
    assert!(report["checkpoints"].as_u64().unwrap() >= 1);

    // A stream's last event removed: no gap in its versions, so only the checkpoint shows it.
    tamper(
        pool,
        "DELETE FROM events WHERE stream_id = $1
          AND stream_version = (SELECT max(stream_version) FROM events WHERE stream_id = $1)",
        cut,
    )
    .await;
    let (code, report) = verify(&app).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(problems(&report), Vec::<Value>::new());
    assert_eq!(checkpointed_events_gone(&report), 1, "{report}");

    // An edit, a removal in the middle and two events swapped.
    tamper(
        pool,
        "UPDATE events SET payload = jsonb_set(payload, '{attempt_id}', '\"forged\"')
          WHERE stream_id = $1 AND stream_version = 2",
        edited,
    )
    .await;
    tamper(
        pool,
        "DELETE FROM events WHERE stream_id = $1 AND stream_version = 2",
        removed,
    )
    .await;
    tamper(
        pool,
        "UPDATE events SET stream_version = 1000 WHERE stream_id = $1 AND stream_version = 2;
         UPDATE events SET stream_version = 2 WHERE stream_id = $1 AND stream_version = 3;
         UPDATE events SET stream_version = 3 WHERE stream_id = $1 AND stream_version = 1000",
        reordered,
    )
    .await;
    let event_id = |stream: Uuid, version: i64| async move {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT event_id FROM events WHERE stream_id = $1 AND stream_version = $2",
        )
        .bind(stream)
        .bind(version)
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let altered = |stream: Uuid, version: i64, event: Uuid| json!({"kind": "altered", "stream_id": stream, "stream_version": version, "event_id": event});
    let (code, report) = verify(&app).await;
    assert_eq!(code, 1, "{report}");
    let mut expected = vec![
        altered(edited, 2, event_id(edited, 2).await),
        json!({"kind": "missing", "stream_id": removed, "from": 2, "to": 2}),
        altered(reordered, 2, event_id(reordered, 2).await),
        altered(reordered, 3, event_id(reordered, 3).await),
        // Its link is to the hash now at version 3, which is version 2's.
        altered(reordered, 4, event_id(reordered, 4).await),
    ];
    expected.sort_by_key(|p| p.to_string());
    assert_eq!(problems(&report), expected);
    // The removals change what the checkpoints cover; edits and swaps keep their hashes.
    assert_eq!(checkpointed_events_gone(&report), 2, "{report}");

    // What an operator reads.
    let out = app.hermes_cli(&["verify"]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        format!("ALTERED  stream {edited} version 2"),
        format!("MISSING  stream {removed} versions 2 to 2"),
        format!("ALTERED  stream {reordered} version 3"),
        "problems found".to_owned(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}
