//! A provider account's send rate (`hermes provider set --mps`, issue 9): dispatches wait their
//! turn, so a burst reaches the provider no faster than the rate and every message still goes.

use crate::front_door::{SECRET, start_front_door};
use crate::harness::{TestApp, WITHIN, message};
use crate::providers::{account, install_accounts};
use hermes_infra::provider_accounts::{ProviderAccount, SealingKey};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_provider_no_faster_than_the_account_s_send_rate() {
    const RATE: u32 = 5;
    const MESSAGES: usize = 20;
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let (url, door) = start_front_door(false).await;
    install_accounts(
        &app,
        &key,
        &[ProviderAccount {
            max_per_second: Some(RATE),
            ..account(
                "limited",
                "mock",
                10,
                &[("base_url", &url), ("secret", SECRET)],
            )
        }],
    )
    .await;

    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let to = json!({"phone": format!("+1415555{:04}", 1000 + i)});
        ids.push(app.send(&message(to, &[("sms", 60)])).await);
    }
    for id in &ids {
        app.wait_for_status(id, "delivered", WITHIN).await;
    }
    // GCRA with a burst of one second's worth: the first RATE go at once, then one every
    // 1/RATE s. So the last send comes at least (MESSAGES - RATE) / RATE after the first (a
    // millisecond of tolerance per send for timer rounding).
    let passed = door.passed_at.lock().unwrap().clone();
    assert_eq!(passed.len(), MESSAGES, "each message sent once");
    let span = *passed.last().unwrap() - passed[0];
    let least =
        Duration::from_millis(((MESSAGES as u64 - u64::from(RATE)) * 1000) / u64::from(RATE))
            - Duration::from_millis(MESSAGES as u64);
    assert!(
        span >= least,
        "{MESSAGES} sends in {span:?}, under {least:?}"
    );
    // And no window of one second saw more than the burst and a second's rate (one more for
    // the window's edges).
    for (i, start) in passed.iter().enumerate() {
        let within = passed[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(
            within <= 2 * RATE as usize + 1,
            "{within} sends within 1 s of send {i}"
        );
    }
    assert!(door.mock.stats().duplicates.is_empty());
}
