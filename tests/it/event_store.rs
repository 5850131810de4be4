//! The event store and its subscriptions (ARCHITECTURE.md, "Event store" and "Subscriptions"):
//! the tail-safe read never skips an event whose transaction commits late, optimistic
//! concurrency reports a typed conflict, events are immutable, and only one consumer per
//! subscriber name is active at a time.

use crate::harness;
use futures::future::BoxFuture;
use hermes_infra::event_store::{
    self, AppendError, Checkpoint, EventMetadata, NewEvent, StoredEvent,
};
use hermes_infra::subscription::{self, Subscriber};
use hermes_infra::{Secret, db};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

const STREAM_TYPE: &str = "test";

/// A pool on a fresh, migrated database.
async fn migrated_pool(max_connections: u32) -> PgPool {
    let url = harness::fresh_database().await;
    let pool = db::connect(&Secret::new(url), max_connections)
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("migrate");
    pool
}

fn new_event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestHappened".into(),
        schema_version: 1,
        payload: json!({ "n": n }),
        metadata: EventMetadata::default(),
    }
}

/// The current version of a stream (0 when it has no events).
async fn stream_version(pool: &PgPool, stream_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_one(pool)
        .await
        .expect("stream version")
}

/// Every committed event, as the ground truth: (event_id, stream_id, stream_version).
async fn all_events(pool: &PgPool) -> Vec<(Uuid, Uuid, i64)> {
    sqlx::query_as("SELECT event_id, stream_id, stream_version FROM events ORDER BY position")
        .fetch_all(pool)
        .await
        .expect("all events")
}

/// A reader that trusts positions: what the tail-safe read exists to avoid.
async fn read_by_position(pool: &PgPool, after: i64) -> Vec<(i64, Uuid)> {
    sqlx::query_as("SELECT position, event_id FROM events WHERE position > $1 ORDER BY position")
        .bind(after)
        .fetch_all(pool)
        .await
        .expect("naive read")
}

/// Reads with `read_after` from `after` until `want` events came back or `within` passed.
/// (The snapshot's xmin is cluster-wide: a transaction open in another test's database can hold
/// the tail back for a moment, never make it skip.)
async fn read_until(
    pool: &PgPool,
    after: Checkpoint,
    want: usize,
    within: Duration,
) -> Vec<StoredEvent> {
    let deadline = Instant::now() + within;
    let mut conn = pool.acquire().await.unwrap();
    loop {
        let got = event_store::read_after(&mut conn, after, 100)
            .await
            .unwrap();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_transaction_commits_late_is_read_by_the_tail_not_skipped() {
    let pool = migrated_pool(4).await;
    let tenant = Uuid::new_v4();
    let (early_stream, late_stream) = (Uuid::new_v4(), Uuid::new_v4());
    let (early, late) = (new_event(1), new_event(2));

    // Transaction A takes the lower position and stays open...
    let mut a = pool.begin().await.unwrap();
    event_store::append(
        &mut a,
        tenant,
        STREAM_TYPE,
        early_stream,
        0,
        std::slice::from_ref(&early),
    )
    .await
    .unwrap();
    // ...while transaction B takes a higher position and commits first.
    let mut b = pool.begin().await.unwrap();
    event_store::append(
        &mut b,
        tenant,
        STREAM_TYPE,
        late_stream,
        0,
        std::slice::from_ref(&late),
    )
    .await
    .unwrap();
    b.commit().await.unwrap();

    // A reader by position sees B's event and moves its checkpoint past A's position.
    let naive = read_by_position(&pool, 0).await;
    assert_eq!(
        naive.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        [late.event_id]
    );
    let naive_checkpoint = naive[0].0;
    // The tail-safe read does not go past a transaction that could still commit.
    let mut conn = pool.acquire().await.unwrap();
    let held_back = event_store::read_after(&mut conn, Checkpoint::default(), 100)
        .await
        .unwrap();
    assert!(
        held_back.is_empty(),
        "read past a running transaction: {:?}",
        held_back.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    drop(conn);

    a.commit().await.unwrap();

    // A's event sits below the naive checkpoint: the naive reader has skipped it for good.
    let naive_after = read_by_position(&pool, naive_checkpoint).await;
    assert!(
        naive_after.is_empty(),
        "the naive reader was expected to skip A's event"
    );
    let positions = read_by_position(&pool, 0).await;
    assert_eq!(positions.len(), 2);
    assert_eq!(
        positions[0].1, early.event_id,
        "A's event has the lower position"
    );
    assert!(positions[0].0 < naive_checkpoint);

    // The tail-safe reader gets both, in commit-safe (tx_id, position) order, A's first.
    let read = read_until(&pool, Checkpoint::default(), 2, Duration::from_secs(20)).await;
    let ids: Vec<Uuid> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [early.event_id, late.event_id]);
    assert!(read[0].tx_id < read[1].tx_id);
    assert!(read[0].checkpoint() < read[1].checkpoint());

    // From its checkpoint it reads only what comes next.
    let checkpoint = read[1].checkpoint();
    let next = new_event(3);
    let mut conn = pool.acquire().await.unwrap();
    event_store::append(
        &mut conn,
        tenant,
        STREAM_TYPE,
        early_stream,
        1,
        std::slice::from_ref(&next),
    )
    .await
    .unwrap();
    drop(conn);
    let read = read_until(&pool, checkpoint, 1, Duration::from_secs(20)).await;
    assert_eq!(
        read.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [next.event_id]
    );
    assert_eq!(read[0].stream_version, 2);
}

const WRITERS: usize = 8;
const STREAMS: usize = 100;
const EVENTS_PER_WRITER: usize = 250;

/// One writer: appends 1-3 events at a time to random streams until it has written its share.
/// Versions are taken from a shared (possibly stale) cache, so writers collide; a conflict
/// reloads the stream's version and tries again. A third of the transactions stay open a few
/// milliseconds after their insert, so positions commit out of order.
async fn writer(
    pool: PgPool,
    tenant: Uuid,
    streams: Arc<Vec<Uuid>>,
    versions: Arc<Vec<std::sync::Mutex<i64>>>,
    seed: u64,
    conflicts: Arc<AtomicUsize>,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written = 0;
    while written < EVENTS_PER_WRITER {
        let s = rng.random_range(0..STREAMS);
        let n = rng.random_range(1..=3).min(EVENTS_PER_WRITER - written);
        let events: Vec<NewEvent> = (0..n).map(|i| new_event(written + i)).collect();
        let hold = rng
            .random_bool(0.35)
            .then(|| Duration::from_micros(rng.random_range(500..8000)));
        loop {
            let expected = *versions[s].lock().unwrap();
            let mut tx = pool.begin().await.unwrap();
            match event_store::append(&mut tx, tenant, STREAM_TYPE, streams[s], expected, &events)
                .await
            {
                Ok(()) => {
                    if let Some(hold) = hold {
                        tokio::time::sleep(hold).await;
                    }
                    tx.commit().await.unwrap();
                    let mut v = versions[s].lock().unwrap();
                    *v = (*v).max(expected + n as i64);
                    break;
                }
                Err(AppendError::Conflict) => {
                    tx.rollback().await.unwrap();
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    let current = stream_version(&pool, streams[s]).await;
                    let mut v = versions[s].lock().unwrap();
                    *v = (*v).max(current);
                }
                Err(AppendError::Db(e)) => panic!("append failed: {e}"),
            }
        }
        written += n;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_and_the_tail_reader_sees_every_event_exactly_once() {
    let pool = migrated_pool(WRITERS as u32 + 6).await;
    let tenant = Uuid::new_v4();
    let streams: Arc<Vec<Uuid>> = Arc::new((0..STREAMS).map(|_| Uuid::new_v4()).collect());
    let versions = Arc::new(
        (0..STREAMS)
            .map(|_| std::sync::Mutex::new(0))
            .collect::<Vec<_>>(),
    );
    let seed: u64 = rand::random();
    eprintln!("event store writers: seed {seed}");
    let conflicts = Arc::new(AtomicUsize::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));

    // The tail-safe reader, and (for information) a reader by position alongside it.
    let tail = tokio::spawn({
        let pool = pool.clone();
        let done = writers_done.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            let mut checkpoint = Checkpoint::default();
            let mut seen: Vec<StoredEvent> = Vec::new();
            let mut drained_at: Option<Instant> = None;
            loop {
                let batch = event_store::read_after(&mut conn, checkpoint, 100)
                    .await
                    .unwrap();
                for e in &batch {
                    assert!(
                        e.checkpoint() > checkpoint,
                        "read went backwards: {:?} after {checkpoint:?}",
                        e.checkpoint()
                    );
                    checkpoint = e.checkpoint();
                }
                let empty = batch.is_empty();
                seen.extend(batch);
                if empty {
                    if done.load(Ordering::SeqCst) {
                        // Drained once everything committed is visible: stop after a quiet spell.
                        let since = *drained_at.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(300) {
                            return seen;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    drained_at = None;
                }
            }
        }
    });
    let naive = tokio::spawn({
        let pool = pool.clone();
        let done = writers_done.clone();
        async move {
            let mut last = 0;
            let mut seen = HashSet::new();
            while !done.load(Ordering::SeqCst) {
                for (position, id) in read_by_position(&pool, last).await {
                    last = position;
                    seen.insert(id);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for (_, id) in read_by_position(&pool, last).await {
                seen.insert(id);
            }
            seen
        }
    });

    let started = Instant::now();
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                pool.clone(),
                tenant,
                streams.clone(),
                versions.clone(),
                seed.wrapping_add(w as u64),
                conflicts.clone(),
            ))
        })
        .collect();
    let mut written = 0;
    for h in handles {
        written += h.await.unwrap();
    }
    let write_time = started.elapsed();
    writers_done.store(true, Ordering::SeqCst);
    let committed = all_events(&pool).await;
    assert_eq!(written, WRITERS * EVENTS_PER_WRITER);
    assert_eq!(committed.len(), written);

    // Give the tail up to 30 s to drain (another test's open transaction may hold xmin back).
    let seen = tokio::time::timeout(Duration::from_secs(30), tail)
        .await
        .expect("the tail reader drains")
        .unwrap();
    let naive_seen = naive.await.unwrap();

    // Every committed event exactly once, nothing else.
    let mut count: HashMap<Uuid, usize> = HashMap::new();
    for e in &seen {
        *count.entry(e.event_id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events read more than once: {twice:?}");
    let missing: Vec<Uuid> = committed
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !count.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "the tail skipped {} events: {missing:?}",
        missing.len()
    );
    assert_eq!(seen.len(), committed.len());

    // Per stream, versions 1..n in order.
    let mut per_stream: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for e in &seen {
        per_stream
            .entry(e.stream_id)
            .or_default()
            .push(e.stream_version);
    }
    for (stream, versions) in &per_stream {
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, &expected, "stream {stream} read out of order");
    }

    let naive_skipped = committed
        .iter()
        .filter(|(id, _, _)| !naive_seen.contains(id))
        .count();
    eprintln!(
        "{written} events by {WRITERS} writers over {} streams in {write_time:?}; {} conflicts retried; \
         the tail read each once; a reader by position skipped {naive_skipped}",
        per_stream.len(),
        conflicts.load(Ordering::Relaxed),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_expected_version_is_a_conflict_and_events_cannot_be_changed() {
    let pool = migrated_pool(4).await;
    let tenant = Uuid::new_v4();
    let stream = Uuid::new_v4();
    let mut conn = pool.acquire().await.unwrap();
    event_store::append(
        &mut conn,
        tenant,
        STREAM_TYPE,
        stream,
        0,
        &[new_event(1), new_event(2)],
    )
    .await
    .unwrap();
    // 0 and 1 are stale; 5 is ahead of the stream (it would leave a gap, and there is no event
    // 5 whose hash to link to).
    for stale in [0, 1, 5] {
        let r = event_store::append(
            &mut conn,
            tenant,
            STREAM_TYPE,
            stream,
            stale,
            &[new_event(3)],
        )
        .await;
        assert!(
            matches!(r, Err(AppendError::Conflict)),
            "expected version {stale}: {r:?}"
        );
    }
    event_store::append(&mut conn, tenant, STREAM_TYPE, stream, 2, &[new_event(3)])
        .await
        .unwrap();

    // Two writers racing on the same version: the second waits for the first, then conflicts.
    let mut first = pool.begin().await.unwrap();
    event_store::append(&mut first, tenant, STREAM_TYPE, stream, 3, &[new_event(4)])
        .await
        .unwrap();
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            event_store::append(&mut tx, tenant, STREAM_TYPE, stream, 3, &[new_event(40)]).await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the second writer waits on the first"
    );
    first.commit().await.unwrap();
    let r = second.await.unwrap();
    assert!(matches!(r, Err(AppendError::Conflict)), "{r:?}");

    let before: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT stream_version, payload FROM events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        before.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(before[3].1, json!({"n": 4}));

    // Events are facts: the triggers refuse UPDATE, DELETE and TRUNCATE.
    for sql in [
        "UPDATE events SET payload = '{}' WHERE stream_id = $1",
        "UPDATE events SET stream_version = stream_version + 10 WHERE stream_id = $1",
        "DELETE FROM events WHERE stream_id = $1",
    ] {
        let e = sqlx::query(sql)
            .bind(stream)
            .execute(&pool)
            .await
            .expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let e = sqlx::query("TRUNCATE events")
        .execute(&pool)
        .await
        .expect_err("TRUNCATE");
    assert!(e.to_string().contains("append-only"), "{e}");
    let after: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT stream_version, payload FROM events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(after, before);
}

/// A subscriber that records, in the same transaction as its checkpoint, which instance handled
/// which event (into `handled`, which has no unique key so a re-handled event would show).
struct Recorder {
    name: String,
    instance: i32,
    polls: Arc<AtomicUsize>,
}

impl Subscriber for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll<'a>(&'a mut self, pool: &'a PgPool) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(async move {
            self.polls.fetch_add(1, Ordering::SeqCst);
            let mut tx = pool.begin().await?;
            let checkpoint = subscription::load_checkpoint(&mut tx, &self.name, true).await?;
            let batch = event_store::read_after(&mut tx, checkpoint, 7).await?;
            let Some(last) = batch.last().map(StoredEvent::checkpoint) else {
                tx.rollback().await?;
                return Ok(0);
            };
            for e in &batch {
                sqlx::query("INSERT INTO handled (event_id, instance) VALUES ($1, $2)")
                    .bind(e.event_id)
                    .bind(self.instance)
                    .execute(&mut *tx)
                    .await?;
            }
            subscription::save_checkpoint(&mut tx, &self.name, last).await?;
            tx.commit().await?;
            Ok(batch.len())
        })
    }
}

/// (event_id, instance) in the order they were handled.
async fn handled(pool: &PgPool) -> Vec<(Uuid, i32)> {
    sqlx::query_as("SELECT event_id, instance FROM handled ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_handled(pool: &PgPool, n: usize, within: Duration) -> Vec<(Uuid, i32)> {
    let deadline = Instant::now() + within;
    loop {
        let h = handled(pool).await;
        if h.len() >= n || Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn append_one(pool: &PgPool, tenant: Uuid, stream: Uuid, version: i64) {
    let mut conn = pool.acquire().await.unwrap();
    event_store::append(
        &mut conn,
        tenant,
        STREAM_TYPE,
        stream,
        version,
        &[new_event(version as usize)],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscriber_per_name_is_active_and_a_standby_takes_over_from_its_checkpoint() {
    const FIRST: usize = 60;
    const TOTAL: usize = 240;
    let url = harness::fresh_database().await;
    let connect = || async {
        let pool = db::connect(&Secret::new(url.clone()), 5)
            .await
            .expect("connect");
        db::migrate(&pool).await.expect("migrate");
        pool
    };
    // Each instance on its own pool, as two processes would be.
    let (pool, pool_1, pool_2) = (connect().await, connect().await, connect().await);
    sqlx::query(
        "CREATE TABLE handled (seq bigint GENERATED ALWAYS AS IDENTITY, event_id uuid NOT NULL, instance int NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let tenant = Uuid::new_v4();
    let stream = Uuid::new_v4();
    for v in 0..FIRST as i64 {
        append_one(&pool, tenant, stream, v).await;
    }

    let polls = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let start = |instance: i32, pool: PgPool| {
        tokio::spawn(subscription::run(
            pool,
            Recorder {
                name: "test-recorder".into(),
                instance,
                polls: polls[instance as usize].clone(),
            },
        ))
    };
    let mut tasks = vec![Some(start(0, pool_1)), Some(start(1, pool_2))];

    let h = wait_handled(&pool, FIRST, Duration::from_secs(10)).await;
    assert_eq!(h.len(), FIRST, "the first events were not handled in time");
    let leader = h[0].1;
    let standby = 1 - leader;
    assert!(
        h.iter().all(|(_, i)| *i == leader),
        "two instances handled events: {h:?}"
    );
    // Let the standby retry its lock a few times: it must not poll at all.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        polls[standby as usize].load(Ordering::SeqCst),
        0,
        "the standby polled"
    );

    // Events keep coming while the leader is killed in the middle of them.
    let writer = tokio::spawn({
        let pool = pool.clone();
        async move {
            for v in FIRST as i64..TOTAL as i64 {
                append_one(&pool, tenant, stream, v).await;
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        }
    });
    wait_handled(&pool, FIRST + 40, Duration::from_secs(10)).await;
    tasks[leader as usize].take().unwrap().abort();
    let aborted_at = Instant::now();
    let leader_polls = polls[leader as usize].load(Ordering::SeqCst);

    // The standby takes over within a few seconds.
    let took_over = loop {
        if polls[standby as usize].load(Ordering::SeqCst) > 0 {
            break aborted_at.elapsed();
        }
        assert!(
            aborted_at.elapsed() < Duration::from_secs(5),
            "the standby did not take over within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    writer.await.unwrap();
    let h = wait_handled(&pool, TOTAL, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h_final = handled(&pool).await;
    assert_eq!(h_final, h, "events handled after everything was handled");
    assert!(
        polls[leader as usize].load(Ordering::SeqCst) <= leader_polls + 1,
        "the aborted leader kept polling"
    );

    // Every event handled exactly once, in log order: the standby continued from the checkpoint.
    let log: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events ORDER BY tx_id, position")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(log.len(), TOTAL);
    let ids: Vec<Uuid> = h.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        log,
        "not every event handled exactly once, in order (handled {})",
        ids.len()
    );
    // The leader's share, then the standby's: never interleaved.
    let switch = h
        .iter()
        .position(|(_, i)| *i == standby)
        .expect("the standby handled the rest");
    assert!(switch >= FIRST + 40);
    assert!(h[..switch].iter().all(|(_, i)| *i == leader));
    assert!(h[switch..].iter().all(|(_, i)| *i == standby));
    eprintln!(
        "leader {leader} handled {switch}, standby {standby} took over after {took_over:?} and handled {}",
        TOTAL - switch
    );
    for t in tasks.into_iter().flatten() {
        t.abort();
    }
}

fn typed_event(event_type: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        ..new_event(0)
    }
}

/// The suppressions subscriber's read: only message receipts and rejections come back in full, the
/// log's last readable event comes after them while the batch is not full (so the checkpoint moves
/// past everything else), and nothing a running transaction may still commit is passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_evidence_read_returns_receipts_and_rejections_and_then_the_tail() {
    let pool = migrated_pool(4).await;
    let tenant = Uuid::new_v4();
    let message = Uuid::new_v4();
    let types = [
        "MessageAccepted",
        "ReceiptRecorded",
        "StepStarted",
        "AttemptRejected",
        "MessageFailed",
    ];
    let events: Vec<NewEvent> = types.iter().map(|t| typed_event(t)).collect();
    let mut conn = pool.acquire().await.unwrap();
    event_store::append(&mut conn, tenant, "message", message, 0, &events)
        .await
        .unwrap();
    // A receipt-named event of another stream type is not a message's receipt.
    let other = typed_event("ReceiptRecorded");
    event_store::append(
        &mut conn,
        tenant,
        STREAM_TYPE,
        Uuid::new_v4(),
        0,
        std::slice::from_ref(&other),
    )
    .await
    .unwrap();

    let read = event_store::read_suppression_evidence(&mut conn, Checkpoint::default(), 100)
        .await
        .unwrap();
    let ids: Vec<Uuid> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        [events[1].event_id, events[3].event_id, other.event_id],
        "the receipt and the rejection, then the tail (the last event) to checkpoint at"
    );
    let tail = read[2].checkpoint();
    let again = event_store::read_suppression_evidence(&mut conn, tail, 100)
        .await
        .unwrap();
    assert!(again.is_empty(), "nothing after the tail: {again:?}");

    // A full batch ends at its last wanted event: the tail would skip unread receipts.
    let first = event_store::read_suppression_evidence(&mut conn, Checkpoint::default(), 1)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [events[1].event_id]
    );

    // A receipt in a transaction still open holds the reader back, tail included.
    let mut open = pool.begin().await.unwrap();
    let pending = typed_event("ReceiptRecorded");
    event_store::append(
        &mut open,
        tenant,
        "message",
        message,
        types.len() as i64,
        std::slice::from_ref(&pending),
    )
    .await
    .unwrap();
    let later = typed_event("StepStarted");
    append_typed(&pool, tenant, Uuid::new_v4(), &later).await;
    let held = event_store::read_suppression_evidence(&mut conn, tail, 100)
        .await
        .unwrap();
    assert!(held.is_empty(), "read past a running transaction: {held:?}");
    open.commit().await.unwrap();
    let read = read_evidence_until(&pool, tail, 2).await;
    assert_eq!(
        read.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [pending.event_id, later.event_id]
    );
}

async fn append_typed(pool: &PgPool, tenant: Uuid, stream: Uuid, event: &NewEvent) {
    let mut conn = pool.acquire().await.unwrap();
    event_store::append(
        &mut conn,
        tenant,
        "message",
        stream,
        0,
        std::slice::from_ref(event),
    )
    .await
    .unwrap();
}

/// Reads suppression evidence from `after` until `want` rows came back (the horizon moves once
/// every older transaction has ended), for at most 20 s.
async fn read_evidence_until(pool: &PgPool, after: Checkpoint, want: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = pool.acquire().await.unwrap();
        let got = event_store::read_suppression_evidence(&mut conn, after, 100)
            .await
            .unwrap();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
