//! Billing (issue 13): every attempt records what it cost by its account's price table, and
//! `hermes billing export` writes each tenant's attempts as CSV that matches what the tenant sees
//! of its messages, including a cascade that paid for two steps.

use crate::front_door::{SECRET, start_front_door};
use crate::harness::{TestApp, WITHIN};
use crate::providers::{account, install_accounts};
use hermes_infra::provider_accounts::{ProviderAccount, SealingKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The US price of one SMS segment; everything else (other countries, email) costs `*`.
const US: f64 = 0.0079;
const STAR: f64 = 0.001;

fn sms_then_email(phone: &str, text: &str) -> Value {
    json!({
        "to": {"phone": phone, "email": "ada@example.com"},
        "content": {"text": text, "email": {"subject": "Your code"}},
        "cascade": [
            {"channel": "sms", "timeout_seconds": 2},
            {"channel": "email", "timeout_seconds": 30}
        ],
    })
}

/// The CSV as rows of named fields.
fn parse_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header.join(","), hermes_query::billing::CSV_HEADER);
    lines
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            assert_eq!(fields.len(), header.len(), "{l}");
            header
                .iter()
                .zip(fields)
                .map(|(h, f)| ((*h).to_owned(), f.to_owned()))
                .collect()
        })
        .collect()
}

fn export_args<'a>(from: &'a str, to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["billing", "export", "--from", from, "--to", to];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_of_a_run_matches_its_attempts_with_prices_and_the_cascade_that_paid_twice() {
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| args.secret_key = Some(key_hex.clone())).await;
    let key = SealingKey::from_hex(&key_hex).unwrap();
    let (door_url, _door) = start_front_door(false).await;
    install_accounts(
        &app,
        &key,
        &[ProviderAccount {
            prices: [("US".to_owned(), US), ("*".to_owned(), STAR)].into(),
            ..account(
                "priced",
                "mock",
                10,
                &[("base_url", &door_url), ("secret", SECRET)],
            )
        }],
    )
    .await;
    let started = chrono::Utc::now().to_rfc3339();

    // Delivered by SMS, 161 GSM-7 characters: two segments at the US price.
    let long = app
        .send(&sms_then_email("+14155550100", &"a".repeat(161)))
        .await;
    // No SMS receipt: the step times out and the email goes out too. Both were charged.
    let twice = app
        .send(&sms_then_email("+14155550008", "Your code is 1234"))
        .await;
    // The SMS is refused at send (nothing charged); the email delivers.
    let refused = app
        .send(&sms_then_email("+14155550001", "Your code is 1234"))
        .await;
    // Another tenant's message, to a number the table has no country price for (`*`).
    let (other_tenant, other_key) = app.new_tenant("other").await;
    let r = app
        .post_message_as(&other_key, &sms_then_email("+37255512345", "Hi"))
        .await;
    assert_eq!(r.status(), 202);
    let other: Value = r.json().await.unwrap();
    let other_id = other["id"].as_str().unwrap().to_owned();

    let mut seen = BTreeMap::new();
    for id in [&long, &twice, &refused] {
        seen.insert(
            id.clone(),
            app.wait_for_status(id, "delivered", WITHIN).await,
        );
    }
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let r = app
            .get_as(&other_key, &format!("/v1/messages/{other_id}"))
            .await;
        if r.status() == 200 && r.json::<Value>().await.unwrap()["status"] == "delivered" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other tenant's message"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ended = chrono::Utc::now().to_rfc3339();

    // One file per tenant.
    let dir = std::env::temp_dir().join(format!("hermes-billing-{}", uuid::Uuid::new_v4()));
    let out = app
        .hermes_cli(&export_args(
            &started,
            &ended,
            &["--out", dir.to_str().unwrap()],
        ))
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ours = std::fs::read_to_string(dir.join(format!("{}.csv", app.tenant_id))).unwrap();
    let theirs = std::fs::read_to_string(dir.join(format!("{other_tenant}.csv"))).unwrap();
    let rows = parse_csv(&ours);

    // Every attempt the tenant sees, and nothing else: ids, accounts, statuses and provider ids.
    let mut expected: Vec<(String, String, String, String, String)> = Vec::new();
    for (id, m) in &seen {
        for a in m["attempts"].as_array().unwrap() {
            expected.push((
                id.clone(),
                a["id"].as_str().unwrap().to_owned(),
                a["channel"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
                a["provider_message_id"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    let mut exported: Vec<(String, String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["message_id"].clone(),
                r["attempt_id"].clone(),
                r["channel"].clone(),
                r["status"].clone(),
                r["provider_message_id"].clone(),
            )
        })
        .collect();
    expected.sort();
    exported.sort();
    assert_eq!(exported, expected, "{ours}");
    assert!(
        rows.iter()
            .all(|r| r["tenant_id"] == app.tenant_id.to_string())
    );
    assert!(rows.iter().all(|r| r["account"] == "priced"));

    // What each attempt cost, and whether it was charged.
    let by_message = |id: &str| -> Vec<(String, String, String, String)> {
        rows.iter()
            .filter(|r| r["message_id"] == id)
            .map(|r| {
                (
                    r["channel"].clone(),
                    r["charged"].clone(),
                    r["segments"].clone(),
                    r["price"].clone(),
                )
            })
            .collect()
    };
    let row = |c: &str, charged: &str, segments: &str, price: f64| {
        (
            c.to_owned(),
            charged.to_owned(),
            segments.to_owned(),
            price.to_string(),
        )
    };
    assert_eq!(by_message(&long), [row("sms", "yes", "2", 2.0 * US)]);
    assert_eq!(
        by_message(&twice),
        [row("sms", "yes", "1", US), row("email", "yes", "1", STAR)]
    );
    assert_eq!(
        by_message(&refused),
        [row("sms", "no", "1", US), row("email", "yes", "1", STAR)]
    );
    assert!(
        rows.iter()
            .all(|r| r["late"] == "false" && !r["unit_price"].is_empty())
    );

    // The other tenant's file holds its one message: an Estonian number at the `*` price.
    let theirs = parse_csv(&theirs);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["message_id"], other_id);
    assert_eq!(theirs[0]["price"], STAR.to_string());

    // The totals an operator checks against the invoice.
    // 2 × 0.0079 + 0.0079 + 2 × 0.001.
    let summary = format!(
        "{}: 5 attempts, 4 charged (0.0257), 0 maybe (0), 0 unpriced, 1 messages charged more than once",
        app.tenant_id
    );
    assert!(stderr.contains(&summary), "{stderr}\nwanted: {summary}");

    // One tenant on standard output; a window before the run has nothing.
    let out = app
        .hermes_cli(&export_args(
            &started,
            &ended,
            &["--tenant", &other_tenant.to_string()],
        ))
        .await;
    assert!(out.status.success());
    let rows = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["tenant_id"], other_tenant.to_string());
    let out = app
        .hermes_cli(&export_args("2020-01-01", "2020-02-01", &[]))
        .await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        1,
        "the header only"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no attempts dispatched in the window"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_bad_window_is_refused_with_what_is_wrong() {
    let app = TestApp::spawn().await;
    for (args, wanted) in [
        (
            export_args("yesterday", "2026-12-01", &[]),
            &[
                "--from",
                "\"yesterday\" is neither an RFC 3339 time nor a YYYY-MM-DD date",
            ][..],
        ),
        (
            export_args("2026-12-01", "12/02/2026", &[]),
            &[
                "--to",
                "\"12/02/2026\" is neither an RFC 3339 time nor a YYYY-MM-DD date",
            ],
        ),
        (
            export_args("2026-12-02", "2026-12-01", &[]),
            &["--from must come before --to"],
        ),
    ] {
        let out = app.hermes_cli(&args).await;
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: {stderr}");
        }
    }
}
