//! Timers are due by the clock that computed their `due_at` (the app's), not the database's: an
//! app clock skewed from the database's neither fires a step timeout early nor late.

use crate::harness::fresh_database;
use chrono::{DateTime, Duration as Span, Utc};
use hermes_infra::timers::{self, NewTimer};
use hermes_infra::{Secret, db};
use std::time::Duration;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn timers_fire_by_the_app_clock_whatever_the_database_clock_says() {
    let pool = db::connect(&Secret::new(fresh_database().await), 2)
        .await
        .unwrap();
    db::migrate(&pool).await.unwrap();
    let db_now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&pool)
        .await
        .unwrap();

    for skew in [Span::hours(-1), Span::hours(1)] {
        // The app's clock is `skew` away from the database's; it arms a timer due in 60 s.
        let app_now = db_now + skew;
        let due_at = app_now + Span::seconds(60);
        let stream_id = Uuid::now_v7();
        let mut conn = pool.acquire().await.unwrap();
        timers::arm_many(
            &mut conn,
            &[NewTimer {
                tenant_id: Uuid::now_v7(),
                stream_id,
                kind: serde_json::json!({"kind": "ttl"}),
                due_at,
            }],
        )
        .await
        .unwrap();
        drop(conn);

        let ours = |claimed: Vec<timers::DueTimer>| {
            claimed
                .into_iter()
                .filter(|t| t.stream_id == stream_id)
                .count()
        };
        // Not due yet by the app's clock, whatever the database's says.
        let early = timers::claim_due(&pool, app_now, 100, LEASE).await.unwrap();
        assert_eq!(ours(early), 0, "fired early with skew {skew}");
        // Due by the app's clock.
        let due = timers::claim_due(&pool, due_at, 100, LEASE).await.unwrap();
        assert_eq!(ours(due), 1, "not fired when due with skew {skew}");
        // Leased: not claimed again until the lease ends, by the same clock.
        let again = timers::claim_due(&pool, due_at, 100, LEASE).await.unwrap();
        assert_eq!(ours(again), 0);
        let after_lease = due_at + Span::seconds(6);
        let reclaimed = timers::claim_due(&pool, after_lease, 100, LEASE)
            .await
            .unwrap();
        assert_eq!(ours(reclaimed), 1);
    }
}
