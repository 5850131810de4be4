//! Layer 7: the tenant's rate limits. Held in Redis, they hold across processes: two Hermes
//! sharing one Redis accept together no more than the limit allows.

use crate::harness::{TestApp, server_args};
use hermes::app::{self, Roles};
use hermes_infra::tenants;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The Redis the tests use (`redis-server` on these machines; `.ci/run` starts it if down).
fn redis_url() -> String {
    std::env::var("HERMES_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn sms() -> Value {
    json!({"to": {"phone": "+15005550100"}, "content": {"text": "hi"},
           "cascade": [{"channel": "sms", "timeout_seconds": 30}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_sharing_redis_accept_no_more_than_the_limit_together() {
    const PER_SECOND: u32 = 20;
    const BURST: u32 = 10;
    let app = TestApp::spawn_with(|args| args.redis_url = Some(redis_url())).await;
    // Set before the key's first use, so neither process has older settings cached.
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"rate_limit": {"per_second": PER_SECOND, "burst": BURST}}),
    )
    .await
    .unwrap();
    let mut args = server_args(&app.database_url);
    args.redis_url = Some(redis_url());
    let other = app::start(&args, Roles::parse("api").unwrap())
        .await
        .expect("second hermes starts");
    let bases = [app.app.base_url.clone(), other.base_url.clone()];

    // Eight clients, four on each process, as fast as they are answered, for 3 s.
    let started = Instant::now();
    let window = Duration::from_secs(3);
    let mut clients = Vec::new();
    for i in 0..8 {
        let (client, base, key) = (
            app.client.clone(),
            bases[i % 2].clone(),
            app.api_key.clone(),
        );
        clients.push(tokio::spawn(async move {
            let (mut accepted, mut limited) = (0u32, 0u32);
            while started.elapsed() < window {
                let response = client
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(&key)
                    .json(&sms())
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    202 => accepted += 1,
                    429 => {
                        let retry_after: u64 = response.headers()["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!(retry_after >= 1);
                        let problem: Value = response.json().await.unwrap();
                        assert_eq!(problem["code"], "rate_limited");
                        limited += 1;
                    }
                    other => panic!("{base} answered {other}"),
                }
            }
            (accepted, limited)
        }));
    }
    let (mut accepted, mut limited) = (0, 0);
    for c in clients {
        let (a, l) = c.await.unwrap();
        accepted += a;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{accepted} accepted and {limited} limited in {elapsed:.2} s");
    // GCRA allows the burst, then the rate: at most BURST + PER_SECOND × elapsed. One more is
    // tolerated for the request in flight when the client's clock read the window's end.
    let most = BURST as f64 + PER_SECOND as f64 * elapsed + 1.0;
    assert!(
        (accepted as f64) <= most,
        "{accepted} accepted in {elapsed:.2} s, at most {most:.0} allowed ({limited} limited)"
    );
    // And the limit is not refusing what it should allow: at least the rate over the window
    // less a second's worth (two processes, one shared budget).
    let least = PER_SECOND as f64 * (elapsed - 1.0);
    assert!(
        (accepted as f64) >= least,
        "only {accepted} accepted in {elapsed:.2} s, at least {least:.0} expected"
    );
    assert!(limited > 0, "the clients asked for more than the limit");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'MessageAccepted' AND tenant_id = $1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.app.pool)
    .await
    .unwrap();
    assert_eq!(stored, i64::from(accepted), "a refused message was stored");
}

#[tokio::test]
async fn a_channels_limit_refuses_only_messages_that_may_use_the_channel() {
    let app = TestApp::spawn().await;
    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"channel_rate_limits": {"sms": {"per_second": 1, "burst": 1}}}),
    )
    .await
    .unwrap();
    assert_eq!(app.post_message(&sms()).await.status().as_u16(), 202);
    let refused = app.post_message(&sms()).await;
    assert_eq!(refused.status().as_u16(), 429);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("sms rate limit"),
        "{problem}"
    );
    // An email-only message is not the SMS limit's; a cascade that may fall back to SMS is.
    let email = json!({"to": {"email": "ada@example.com"}, "content": {"text": "hi"},
                       "cascade": [{"channel": "email"}]});
    assert_eq!(app.post_message(&email).await.status().as_u16(), 202);
    let email_then_sms = json!({"to": {"email": "ada@example.com", "phone": "+15005550100"},
        "content": {"text": "hi"}, "cascade": [{"channel": "email"}, {"channel": "sms"}]});
    assert_eq!(
        app.post_message(&email_then_sms).await.status().as_u16(),
        429
    );
}

#[tokio::test]
async fn a_redis_url_that_does_not_answer_stops_the_start() {
    let mut args = server_args(&crate::harness::fresh_database().await);
    args.redis_url = Some("redis://127.0.0.1:1".into());
    let error = app::start(&args, Roles::all())
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("REDIS_URL"), "{error:#}");
}
