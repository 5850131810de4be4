//! Crash safety on the Kafka transport (issue 12, item 5), with real processes: one API process
//! (`api,relay,timers`) and two workers (`saga,projector`), all `hermes serve` children sharing
//! one database and one topic. Cascades are submitted at a steady pace; a third of the way one
//! worker is killed with SIGKILL and not restarted, so the other must take its partitions over
//! (after the consumer groups' session timeout) and finish its messages.
//!
//! What must hold afterwards: every message is terminal; the provider got no message twice,
//! counted by recipient (each message has a phone number of its own and one SMS step, so a second
//! attempt for a step, under a new attempt id, would show) as well as by attempt id; every send
//! the provider got belongs to an attempt Hermes recorded; a message failed only if its attempt
//! went in doubt and never reached the provider; and the read model equals a replay of the log.
//!
//! Each worker reaches the mock provider (in this process, so its counters outlive the kill)
//! through a "slow road" of its own that delays sends, so the kill lands with sends in flight. To
//! exercise the in-doubt path every time, not only when the timing is lucky, the killed worker's
//! road is held at the kill: the worker is killed once at least one of its sends is parked there,
//! dispatched and unanswered. Those sends never reach the provider; the surviving worker finds
//! their attempts dispatched without an outcome, marks them in doubt (never sends them again), and
//! their steps time out: those messages fail. The steps' timeout is long enough for the survivor
//! to get there first (see [`STEP_TIMEOUT_SECONDS`]), which makes the test take about 37 s in a
//! debug build on two cores. The API process reaches the mock directly, so its timer-side status
//! lookups (reconciliation) get real answers.
//!
//! Against librdkafka's `MockCluster` in this process (its address is a TCP port the children
//! reach too), whatever `HERMES_TEST_KAFKA` says: see the test for why not Tansu. 1,000 messages,
//! as the issue asks.

use crate::crash::{
    Hermes, SECRET, TERMINAL, good_phone, migrated_database_with_tenant, mock_provider,
    start_slow_road, submit, terminal_count, wait_until_terminal,
};
use crate::harness::{self, WITHIN};
use crate::kafka::{PARTITIONS, TestKafka};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

const MESSAGES: usize = 1000;
/// Submitters, each POSTing at most one message per `PACE`: about 200 messages a second.
const SUBMITTERS: usize = 4;
const PACE: Duration = Duration::from_millis(20);
/// The step's timeout, counted from its dispatch. An attempt the killed worker left dispatched is
/// put in doubt only when the survivor reads its event again, after the session timeout and the
/// rebalance: about 9.5 s after the kill here (6 s session). If the step timed out first, the
/// attempt would just time out, never marked in doubt. 30 s leaves a wide margin over that, and
/// the attempts in doubt still settle within the test.
const STEP_TIMEOUT_SECONDS: u32 = 30;
/// How long the dead worker keeps its partitions before the survivor gets them.
const SESSION_TIMEOUT_MS: u32 = 6000;
/// The reason the saga gives an attempt it finds dispatched with no outcome recorded.
const CRASH_REASON: &str = "the process stopped before the provider's answer was recorded";

/// What a worker's log says of its partitions and its consumer's troubles.
const KAFKA_NEWS: &[&str] = &[
    "partitions",
    "kafka consumer error",
    "did not finish in time",
];

fn kafka_env(kafka: &TestKafka) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", kafka.brokers.clone()),
        ("HERMES_KAFKA_TOPIC", kafka.topic.clone()),
        ("HERMES_KAFKA_PARTITIONS", PARTITIONS.to_string()),
        ("HERMES_KAFKA_GROUP_PREFIX", kafka.group_prefix.clone()),
        (
            "HERMES_KAFKA_SESSION_TIMEOUT_MS",
            SESSION_TIMEOUT_MS.to_string(),
        ),
    ]
}

/// Message `i`: one SMS step to a number of its own.
fn body(i: usize) -> Value {
    let mut body = harness::message(
        json!({"phone": good_phone(i)}),
        &[("sms", STEP_TIMEOUT_SECONDS)],
    );
    body["reference"] = json!(format!("kafka-crash-{i}"));
    body
}

async fn scalar(pool: &PgPool, sql: &'static str, tenant: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Streams whose last event the read model has not projected (or has no row for).
async fn behind(pool: &PgPool, tenant: Uuid) -> i64 {
    scalar(
        pool,
        "SELECT (SELECT count(DISTINCT stream_id) FROM events
                   WHERE tenant_id = $1 AND stream_type = 'message')
              - (SELECT count(*) FROM message_views v WHERE v.tenant_id = $1 AND v.version =
                   (SELECT max(stream_version) FROM events e WHERE e.stream_id = v.message_id))",
        tenant,
    )
    .await
}

async fn snapshot_views(pool: &PgPool) -> Vec<crate::api::ViewRow> {
    sqlx::query_as(
        "SELECT message_id, tenant_id, status, reference, version, created_at, updated_at, state
         FROM message_views ORDER BY message_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A message's events, with when each was recorded, in seconds after `kill`.
async fn timeline(pool: &PgPool, id: Uuid, kill: DateTime<Utc>) -> String {
    let events: Vec<(String, f64)> = sqlx::query_as(
        "SELECT event_type, extract(epoch FROM recorded_at - $2)::float8 FROM events
          WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(id)
    .bind(kill)
    .fetch_all(pool)
    .await
    .unwrap();
    let events: Vec<String> = events
        .into_iter()
        .map(|(t, s)| format!("{t} {s:+.2}"))
        .collect();
    events.join(", ")
}

/// For a panic message: the events of a few messages that are not terminal, and what else might
/// explain why.
async fn why_not_terminal(pool: &PgPool, views: &[(Uuid, String)]) -> String {
    let mut out = String::new();
    for (id, status) in views
        .iter()
        .filter(|(_, s)| !TERMINAL.contains(&s.as_str()))
        .take(5)
    {
        let events: Vec<String> = sqlx::query_scalar(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        out.push_str(&format!("\n  {id} ({status}): {events:?}"));
    }
    let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM timers")
        .fetch_one(pool)
        .await
        .unwrap();
    let offsets: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT consumer, partition, next_offset FROM kafka_offsets ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    out.push_str(&format!(
        "\n  timers armed: {timers}; projector offsets: {offsets:?}"
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_run_loses_nothing_and_sends_nothing_twice() {
    let started = Instant::now();
    let seed: u64 = rand::random();
    // Always librdkafka's MockCluster, which expires a dead member as Kafka does. Tansu 0.6.0
    // (what `.ci/run` starts) does not: when a member misses its session, the group keeps its
    // generation and the survivor's SyncGroup is answered with its old assignment, ignoring the
    // new one it sent as leader, so the killed worker's partitions stay with no owner (seen in
    // Tansu's coordinator log: `missed heartbeat for <member>` and the leader's SyncGroup
    // assigning all partitions, then `partitions assigned [2, 3]` on the survivor). A worker that
    // stops cleanly leaves the group and is covered on Tansu by `kafka::two_workers_share_...`.
    let kafka = TestKafka::mock();
    let (database_url, pool, tenant) = migrated_database_with_tenant("kafka-crash").await;
    let mock = mock_provider().await;
    let (doomed_road_url, doomed_road) = start_slow_road(mock.base_url(), seed).await;
    let (survivor_road_url, survivor_road) =
        start_slow_road(mock.base_url(), seed.wrapping_add(1)).await;

    let common = |roles: &str, provider_url: String| {
        let mut env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("HERMES_DB_POOL_SIZE", "12".into()),
            ("HERMES_ROLES", roles.to_owned()),
            ("HERMES_MOCK_PROVIDER_URL", provider_url),
            ("HERMES_MOCK_PROVIDER_SECRET", SECRET.into()),
            // Partition moves are logged at info: a failure shows who owned what, when.
            (
                "RUST_LOG",
                "warn,hermes_infra::kafka=info,hermes_command::saga=info".into(),
            ),
        ];
        env.extend(kafka_env(&kafka));
        env
    };
    let mut api = Hermes::new("serve", common("api,relay,timers", mock.base_url()));
    let worker = |road_url: String| {
        let mut env = common("saga,projector", road_url);
        // Receipts go to the API process.
        env.push(("HERMES_PUBLIC_URL", api.base_url()));
        Hermes::new("serve", env)
    };
    let mut doomed = worker(doomed_road_url);
    let mut survivor = worker(survivor_road_url);
    let client = hermes_adapters::http::client_builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .unwrap();
    for hermes in [&mut api, &mut doomed, &mut survivor] {
        hermes.spawn();
    }
    for hermes in [&mut api, &mut doomed, &mut survivor] {
        hermes.wait_ready(&client).await;
    }
    let ready_at = started.elapsed();

    // Submitters at a steady pace, each taking the next message.
    let next = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            let (base_url, api_key) = (api.base_url(), tenant.api_key.clone());
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(PACE);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut accepted = Vec::new();
                loop {
                    pace.tick().await;
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        return accepted;
                    }
                    let key = format!("kafka-crash-{seed}-{i}");
                    let (id, _) = submit(&client, &base_url, &api_key, &key, &body(i)).await;
                    accepted.push((i, id.parse::<Uuid>().expect("a uuid")));
                }
            })
        })
        .collect();

    // A third of the way (submitted: two thirds still to come, so both workers have sends
    // ahead of them), once both workers are sending, the doomed worker goes, with a send of its
    // own parked on the road: dispatched, unanswered, and never to reach the provider.
    let deadline = Instant::now() + Duration::from_secs(90);
    while next.load(Ordering::SeqCst) < MESSAGES / 3
        || doomed_road.passed.load(Ordering::SeqCst) == 0
        || survivor_road.passed.load(Ordering::SeqCst) == 0
    {
        assert!(
            Instant::now() < deadline,
            "no kill point within 90 s: {} submitted, sends per worker {} and {}",
            next.load(Ordering::SeqCst).min(MESSAGES),
            doomed_road.passed.load(Ordering::SeqCst),
            survivor_road.passed.load(Ordering::SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed_road.hold.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + WITHIN;
    while doomed_road.held.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker to be killed sent nothing more in {WITHIN:?} (the other sent {} in all); \
             partition moves, to be killed:\n{}\nthe other:\n{}",
            survivor_road.passed.load(Ordering::SeqCst),
            doomed.log_lines_with(KAFKA_NEWS),
            survivor.log_lines_with(KAFKA_NEWS),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.kill();
    let killed_at = started.elapsed();
    let killed_wall = Utc::now();
    let held = doomed_road.held.load(Ordering::SeqCst);
    doomed_road.hold.store(false, Ordering::SeqCst);
    let taken_at_kill = next.load(Ordering::SeqCst).min(MESSAGES);
    let delivered_at_kill = scalar(
        &pool,
        "SELECT count(*) FROM message_views WHERE tenant_id = $1 AND status = 'delivered'",
        tenant.tenant_id,
    )
    .await;
    eprintln!(
        "killed a worker at {killed_at:?} with {held} send(s) held on its road \
         ({taken_at_kill} messages taken by the submitters, {delivered_at_kill} delivered)"
    );

    let mut accepted = Vec::new();
    for s in submitters {
        accepted.extend(s.await.expect("submitter"));
    }
    let submitted_at = started.elapsed();
    assert_eq!(accepted.len(), MESSAGES);
    let index_of: HashMap<Uuid, usize> = accepted.iter().map(|(i, id)| (*id, *i)).collect();
    assert_eq!(index_of.len(), MESSAGES, "two submissions got the same id");

    // Every message reaches a terminal state.
    let deadline = Instant::now() + Duration::from_secs(120);
    let views =
        match wait_until_terminal(&pool, tenant.tenant_id, MESSAGES, deadline, started).await {
            Ok(views) => views,
            Err(views) => panic!(
                "{} of {MESSAGES} messages not terminal 120 s after the worker was killed \
             ({} in the read model); e.g.{}",
                MESSAGES.max(views.len()) - terminal_count(&views),
                views.len(),
                why_not_terminal(&pool, &views).await
            ),
        };
    let terminal_at = started.elapsed();
    assert_eq!(views.len(), MESSAGES, "messages in the read model");
    let ids: HashSet<Uuid> = views.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        index_of.keys().copied().collect(),
        "the read model holds other messages than those accepted"
    );

    // What the provider got: nothing twice, by attempt or by recipient; nothing Hermes did not
    // record.
    let stats = mock.stats();
    assert!(
        stats.duplicates.is_empty(),
        "attempts sent twice: {:?}",
        stats.duplicates
    );
    let twice = mock.destinations_sent_twice();
    assert!(
        twice.is_empty(),
        "messages the provider got twice (by recipient): {twice:?}"
    );
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'attempt_id' FROM events
          WHERE event_type = 'AttemptDispatched' AND tenant_id = $1",
    )
    .bind(tenant.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let sends_of_recorded: u64 = recorded.iter().map(|a| mock.sends_for(a)).sum();
    assert_eq!(
        sends_of_recorded, stats.sends,
        "the provider got sends for attempts Hermes has no record of ({stats:?})"
    );
    assert!(stats.attempts <= MESSAGES as u64, "{stats:?}");
    let dispatched_twice: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*) FROM events
          WHERE event_type = 'AttemptDispatched' AND tenant_id = $1
          GROUP BY stream_id, payload->>'step_index' HAVING count(*) > 1",
    )
    .bind(tenant.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        dispatched_twice.is_empty(),
        "steps dispatched twice: {dispatched_twice:?}"
    );

    // Every message is delivered, sent once, or failed, never sent. A failed one's attempt was
    // dispatched by the killed worker and never reached the provider (a send parked on its road,
    // or one the kill came before): the survivor must have found it dispatched with no outcome
    // and put it in doubt, never sent it again. That is the in-doubt path, taken every time.
    let in_doubt: HashMap<Uuid, String> = sqlx::query_as(
        "SELECT stream_id, payload->>'reason' FROM events
          WHERE event_type = 'AttemptInDoubt' AND tenant_id = $1",
    )
    .bind(tenant.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let in_doubt_by_crash = in_doubt.values().filter(|r| *r == CRASH_REASON).count();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut failed_not_in_doubt = Vec::new();
    for (id, status) in &views {
        *by_status.entry(status.as_str()).or_default() += 1;
        let sends = mock.sends_to(&good_phone(index_of[id]));
        match (status.as_str(), sends) {
            ("delivered", 1) => {}
            ("failed", 0) if in_doubt.contains_key(id) => {}
            ("failed", 0) => failed_not_in_doubt.push(*id),
            _ => wrong.push(format!("{id}: {status}, sent {sends} time(s)")),
        }
    }
    assert!(
        wrong.is_empty(),
        "messages neither delivered once nor failed unsent: {wrong:#?}"
    );
    if !failed_not_in_doubt.is_empty() {
        let mut timelines = String::new();
        for id in failed_not_in_doubt.iter().take(5) {
            timelines.push_str(&format!(
                "\n  {id}: {}",
                timeline(&pool, *id, killed_wall).await
            ));
        }
        panic!(
            "{} message(s) failed unsent without their attempt going in doubt (seconds after \
             the kill):{timelines}",
            failed_not_in_doubt.len()
        );
    }
    let failed = by_status.get("failed").copied().unwrap_or(0);
    assert!(
        failed >= held,
        "{held} sends were held and never reached the provider, but only {failed} messages failed"
    );
    assert!(
        in_doubt_by_crash >= held.max(1),
        "{held} sends were held at the kill, {in_doubt_by_crash} attempts put in doubt for it: \
         {in_doubt:?}"
    );
    let marked_after_kill: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(recorded_at) - $2)::float8 FROM events
          WHERE event_type = 'AttemptInDoubt' AND tenant_id = $1",
    )
    .bind(tenant.tenant_id)
    .bind(killed_wall)
    .fetch_one(&pool)
    .await
    .unwrap();

    // The read model equals a replay of the log. Stop the writers first: the API (receipts,
    // timers), then, once its projector has caught up, the survivor.
    api.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while behind(&pool, tenant.tenant_id).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the projector did not catch up with the log"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let events = scalar(
        &pool,
        "SELECT count(*) FROM events WHERE tenant_id = $1",
        tenant.tenant_id,
    )
    .await;
    survivor.kill();
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            tenant.tenant_id
        )
        .await,
        events,
        "events were appended after every message was terminal and the read model caught up"
    );
    let live = snapshot_views(&pool).await;
    let out = crate::api::hermes_cli(&database_url, &["replay", "message-views"]).await;
    assert!(
        out.status.success(),
        "hermes replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = snapshot_views(&pool).await;
    assert_eq!(live.len(), replayed.len(), "rows after the replay");
    for (l, r) in live.iter().zip(&replayed) {
        assert_eq!(l, r, "message {} differs after the replay", l.0);
    }

    eprintln!(
        "{MESSAGES} messages: workers ready at {ready_at:?}, all submitted by {submitted_at:?}, \
         worker killed at {killed_at:?}, all terminal by {terminal_at:?}, checked by {:?}\n  \
         messages: {by_status:?}\n  attempts held on the killed worker's road: {held}; \
         went in doubt: {} ({in_doubt_by_crash} found by the survivor after the kill, the last \
         {marked_after_kill:.1?} s after it; steps time out {STEP_TIMEOUT_SECONDS} s after \
         dispatch)\n  mock provider: {stats:?}",
        started.elapsed(),
        in_doubt.len(),
    );
}
