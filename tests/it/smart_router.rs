//! The smart router (issue 9): a provider account's circuit opens when it keeps failing, traffic
//! moves to the backup and comes back after recovery; the `cost` strategy picks the cheapest
//! healthy account per destination country; every `AttemptDispatched` says why.

use crate::front_door::{FrontDoor, SECRET, start_front_door};
use crate::harness::{TestApp, WITHIN, message};
use crate::providers::{account, install_accounts};
use hermes_infra::provider_accounts::{self, AccountError, ProviderAccount, SealingKey};
use hermes_infra::tenants;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a circuit stays open the first time in these tests (30 s in production).
const OPEN_MS: u64 = 1_500;

async fn spawn() -> (TestApp, SealingKey) {
    let key_hex = SealingKey::generate_hex();
    let app = TestApp::spawn_with(|args| {
        args.secret_key = Some(key_hex.clone());
        args.circuit_open_ms = OPEN_MS;
    })
    .await;
    (app, SealingKey::from_hex(&key_hex).unwrap())
}

/// A mock-plugin account sending through `door`, with `prices`.
fn mock_account(name: &str, priority: i32, url: &str, prices: &[(&str, f64)]) -> ProviderAccount {
    ProviderAccount {
        prices: prices.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
        ..account(
            name,
            "mock",
            priority,
            &[("base_url", url), ("secret", SECRET)],
        )
    }
}

fn sms_to(phone: &str) -> Value {
    message(json!({ "phone": phone }), &[("sms", 60)])
}

/// The message's `AttemptDispatched` events, in order: (account, route record).
async fn dispatches(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    app.events(id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "AttemptDispatched")
        .map(|e| {
            (
                e["data"]["provider"].as_str().unwrap().to_owned(),
                e["data"]["route"].clone(),
            )
        })
        .collect()
}

/// Sends one SMS to `phone`, waits for its delivery, and answers its dispatches.
async fn deliver(app: &TestApp, phone: &str) -> Vec<(String, Value)> {
    let id = app.send(&sms_to(phone)).await;
    app.wait_for_status(&id, "delivered", WITHIN).await;
    dispatches(app, &id).await
}

fn circuit_of(route: &Value, account: &str) -> String {
    route["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["account"] == account)
        .map(|c| c["circuit"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{account} not among the candidates: {route:#}"))
}

async fn circuit_gauge(app: &TestApp, account: &str) -> Option<f64> {
    let text = app.metrics_text().await;
    let prefix = format!("hermes_provider_circuit_state{{account=\"{account}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_account_s_circuit_opens_traffic_moves_to_the_backup_and_returns_after_recovery()
{
    let (app, key) = spawn().await;
    let (primary_url, primary): (String, Arc<FrontDoor>) = start_front_door(false).await;
    let (backup_url, backup) = start_front_door(false).await;
    install_accounts(
        &app,
        &key,
        &[
            mock_account("primary", 10, &primary_url, &[]),
            mock_account("backup", 20, &backup_url, &[]),
        ],
    )
    .await;

    // Healthy: the primary serves, first in priority order.
    let d = deliver(&app, "+14155550100").await;
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].0, "primary");
    assert_eq!(d[0].1["strategy"], "priority");
    assert_eq!(d[0].1["reason"], "first_usable");
    assert_eq!(circuit_of(&d[0].1, "primary"), "closed");

    // The primary starts failing (503). Each message still gets through, failing over to the
    // backup; after three failures in a row the primary's circuit opens and the router stops
    // trying it first.
    primary.down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let d = deliver(&app, &format!("+1415555{:04}", 200 + i)).await;
        let accounts: Vec<&str> = d.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(accounts, ["primary", "backup"], "message {i}: {d:#?}");
    }
    assert_eq!(primary.refused.load(Ordering::SeqCst), 3);
    let d = deliver(&app, "+14155550300").await;
    assert_eq!(d.len(), 1, "the open primary is passed over: {d:#?}");
    assert_eq!(d[0].0, "backup");
    assert_eq!(circuit_of(&d[0].1, "primary"), "open");
    assert_eq!(circuit_gauge(&app, "primary").await, Some(2.0));
    assert_eq!(circuit_gauge(&app, "backup").await, Some(0.0));

    // While it stays down, its half-open probes fail and the backup carries every message.
    // Then it recovers: a probe goes through and closes the circuit, and traffic returns.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut probes_refused = 0;
    while probes_refused == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no probe came");
        let d = deliver(&app, "+14155550400").await;
        assert_eq!(d.last().unwrap().0, "backup", "{d:#?}");
        probes_refused = primary.refused.load(Ordering::SeqCst) - 3;
        if probes_refused > 0 {
            assert_eq!(d[0].0, "primary");
            assert_eq!(d[0].1["reason"], "probe", "{d:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    primary.down.store(false, Ordering::SeqCst);
    let probe = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic never returned"
        );
        let d = deliver(&app, "+14155550500").await;
        if d[0].0 == "primary" {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(probe.len(), 1, "{probe:#?}");
    assert_eq!(probe[0].1["reason"], "probe");
    assert_eq!(circuit_of(&probe[0].1, "primary"), "half_open");
    let backup_sends = backup.passed_at.lock().unwrap().len();
    let d = deliver(&app, "+14155550600").await;
    assert_eq!(d[0].0, "primary");
    assert_eq!(d[0].1["reason"], "first_usable");
    assert_eq!(circuit_of(&d[0].1, "primary"), "closed");
    assert_eq!(circuit_gauge(&app, "primary").await, Some(0.0));
    assert_eq!(
        backup.passed_at.lock().unwrap().len(),
        backup_sends,
        "once closed, the backup takes nothing"
    );
    // Nothing was sent twice by either provider.
    assert!(primary.mock.stats().duplicates.is_empty());
    assert!(backup.mock.stats().duplicates.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_routing_picks_the_cheapest_healthy_account_per_country() {
    let (app, key) = spawn().await;
    let (a_url, _a) = start_front_door(false).await;
    let (b_url, b) = start_front_door(false).await;
    let (c_url, _c) = start_front_door(false).await;
    install_accounts(
        &app,
        &key,
        &[
            mock_account("a", 10, &a_url, &[("US", 0.0079), ("*", 0.05)]),
            mock_account("b", 20, &b_url, &[("US", 0.0070), ("GB", 0.04)]),
            mock_account("c", 30, &c_url, &[("*", 0.03)]),
        ],
    )
    .await;
    const US: &str = "+14155550100";
    const GB: &str = "+447400123456";

    // Without a rule: priority order, whatever the price.
    assert_eq!(deliver(&app, US).await[0].0, "a");

    tenants::change_settings(
        &app.app.pool,
        app.tenant_id,
        &json!({"routing": {"sms": {"strategy": "cost"}}}),
    )
    .await
    .unwrap();
    // The saga trusts the rules it read for 2 s.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let d = loop {
        let d = deliver(&app, US).await;
        if d[0].0 != "a" {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rule never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(d[0].0, "b", "{d:#?}");
    let route = &d[0].1;
    assert_eq!(route["strategy"], "cost");
    assert_eq!(route["reason"], "cheapest");
    assert_eq!(route["country"], "US");
    assert_eq!(route["rule"], "tenant:sms");
    let prices: Vec<(&str, Option<f64>)> = route["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["account"].as_str().unwrap(), c["price"].as_f64()))
        .collect();
    assert_eq!(
        prices,
        [("a", Some(0.0079)), ("b", Some(0.0070)), ("c", Some(0.03))]
    );
    // Great Britain: c's price for every country beats b's for GB.
    assert_eq!(deliver(&app, GB).await[0].0, "c");

    // The preview says the same, with the price of the message's segments (once this process's
    // key check, trusted for 2 s, has read the new settings).
    let step = loop {
        let (_, preview) = app.preview(&sms_to(US)).await;
        let step = preview["steps"][0].clone();
        if step["account"] == "b" {
            break step;
        }
        assert!(tokio::time::Instant::now() < deadline, "{preview:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(step["route_reason"], "cheapest");
    assert_eq!(step["price_estimate"], 0.0070);
    // A send records the same with the message (layer 9), written as people write numbers.
    let id = app.send(&sms_to("+1 (415) 555-0100")).await;
    let message = app
        .message(&id)
        .await
        .expect("a message is shown right after its 202");
    assert_eq!(message["to"]["phone"], US, "stored in E.164");
    assert_eq!(
        message["enrichment"]["steps"][0]["account"], "b",
        "{message:#}"
    );
    assert_eq!(
        message["enrichment"]["steps"][0]["route_reason"],
        "cheapest"
    );
    assert_eq!(message["enrichment"]["steps"][0]["country"], "US");
    assert_eq!(message["enrichment"]["price_estimate"], 0.0070);
    // Delivered through b before b fails below (its failures are counted from then on).
    let delivered = app.wait_for_status(&id, "delivered", WITHIN).await;
    assert_eq!(delivered["attempts"][0]["provider"], "b");

    // b fails: each US message fails over from b to the next cheapest, a, until b's circuit
    // opens; then US messages go to a first.
    b.down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let d = deliver(&app, &format!("+1415555{:04}", 700 + i)).await;
        let accounts: Vec<&str> = d.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(accounts, ["b", "a"], "message {i}: {d:#?}");
    }
    let d = deliver(&app, US).await;
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].0, "a", "the cheapest healthy account");
    assert_eq!(circuit_of(&d[0].1, "b"), "open");
}

#[tokio::test]
async fn a_tenant_rule_that_names_no_account_of_the_channel_leaves_the_step_unserved_and_bad_rules_are_refused()
 {
    let app = TestApp::spawn_with_admin().await;
    let path = format!("/admin/v1/tenants/{}", app.tenant_id);
    for bad in [
        json!({"routing": {"sms": {"strategy": "fastest"}}}),
        json!({"routing": {"sms": {"accounts": ["Not An Account"]}}}),
        json!({"routing": {"sms": {"countries": {"gb": {}}}}}),
        json!({"routing": {"fax": {}}}),
    ] {
        let (status, body) = app
            .admin(
                reqwest::Method::PATCH,
                &path,
                Some(json!({ "settings": bad })),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_setting", "{bad}: {body}");
    }
    // Only an account that does not exist: nothing serves the tenant's SMS, which moves on to
    // the next step by its timeout.
    let (status, body) = app
        .admin(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"settings": {"routing": {"sms": {"accounts": ["nowhere"]}}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let id = app
            .send(&message(
                json!({"phone": "+14155550100", "email": "ada@example.com"}),
                &[("sms", 1), ("email", 60)],
            ))
            .await;
        let m = app.wait_for_status(&id, "delivered", WITHIN).await;
        let channels: Vec<&str> = m["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["channel"].as_str().unwrap())
            .collect();
        if channels == ["email"] {
            let events = app.events(&id).await;
            assert!(
                events.iter().any(|e| e["type"] == "StepUnserved"),
                "{events:#?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rule never applied: {m:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_own_account_serves_that_tenant_only_and_before_the_platform_s() {
    let (app, key) = spawn().await;
    let (own_url, own) = start_front_door(false).await;
    let (platform_url, platform) = start_front_door(false).await;
    let (_, other_key) = app.new_tenant("other").await;
    let own_account = ProviderAccount {
        tenant_id: Some(app.tenant_id),
        ..mock_account("acme-own", 50, &own_url, &[])
    };
    install_accounts(&app, &key, std::slice::from_ref(&own_account)).await;

    // Only the tenant's own account: it serves the tenant; another tenant has no SMS at all.
    assert_eq!(deliver(&app, "+14155550100").await[0].0, "acme-own");
    let r = app
        .post_message_as(&other_key, &sms_to("+14155550101"))
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "channel_unavailable", "{body}");

    // A platform account of higher priority: the owner's messages still go to its own account
    // first; the other tenant's go to the platform's.
    install_accounts(
        &app,
        &key,
        &[
            own_account,
            mock_account("platform", 10, &platform_url, &[]),
        ],
    )
    .await;
    assert_eq!(deliver(&app, "+14155550102").await[0].0, "acme-own");
    let r = app
        .post_message_as(&other_key, &sms_to("+14155550103"))
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let r = app.get_as(&other_key, &format!("/v1/messages/{id}")).await;
        if r.status() == 200 {
            let m: Value = r.json().await.unwrap();
            if m["status"] == "delivered" {
                assert_eq!(m["attempts"][0]["provider"], "platform", "{m:#}");
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        own.passed_at.lock().unwrap().len(),
        2,
        "the owner's two only"
    );
    assert_eq!(platform.passed_at.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_account_with_a_bad_price_rate_or_tenant_is_refused() {
    let (app, key) = spawn().await;
    let put = |account: ProviderAccount| {
        let (pool, key) = (app.app.pool.clone(), key.clone());
        async move { provider_accounts::put(&pool, &key, &account).await }
    };
    let base = || mock_account("acct", 10, "http://127.0.0.1:1", &[]);
    for (country, price) in [("us", 0.01), ("US", -0.01), ("*", f64::NAN)] {
        let r = put(ProviderAccount {
            prices: [(country.to_owned(), price)].into(),
            ..base()
        })
        .await;
        assert!(
            matches!(r, Err(AccountError::BadPrice(_))),
            "{country}={price}: {r:?}"
        );
    }
    for mps in [0, 100_001] {
        let r = put(ProviderAccount {
            max_per_second: Some(mps),
            ..base()
        })
        .await;
        assert!(matches!(r, Err(AccountError::BadRate)), "{mps}: {r:?}");
    }
    let r = put(ProviderAccount {
        tenant_id: Some(uuid::Uuid::nil()),
        ..base()
    })
    .await;
    assert!(matches!(r, Err(AccountError::NoSuchTenant)), "{r:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM provider_accounts")
        .fetch_one(&app.app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");
}
