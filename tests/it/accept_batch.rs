//! Group commit of accepts (command/src/accept_batcher.rs): a request the database refuses
//! fails only its own caller; the others of its batch are written and answered (issue 8,
//! item 2, defence in depth behind validation).

use crate::harness;
use hermes_command::CommandHandler;
use hermes_command::accept_batcher::AcceptBatcher;
use hermes_command::handler::{AcceptRequest, CommandError};
use hermes_domain::TenantId;
use hermes_domain::message::{Content, MessageSpec, Recipient};
use hermes_domain::validation::{self, MessageDraft};
use hermes_infra::event_store::EventMetadata;
use hermes_infra::{Secret, db};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn migrated_pool() -> PgPool {
    let url = harness::fresh_database().await;
    let pool = db::connect(&Secret::new(url), 5).await.expect("connect");
    db::migrate(&pool).await.expect("migrate");
    pool
}

pub(crate) fn valid_spec() -> MessageSpec {
    validation::validate(MessageDraft {
        to: Recipient {
            phone: Some("+14155550100".into()),
            ..Default::default()
        },
        content: Content {
            text: Some("hello".into()),
            ..Default::default()
        },
        cascade: Some(json!([{"channel": "sms"}])),
        ..Default::default()
    })
    .expect("valid")
}

fn request(tenant: TenantId, poisoned: bool) -> AcceptRequest {
    let mut spec = valid_spec();
    if poisoned {
        // Slips past validation (a spec built by hand): Postgres refuses NUL in jsonb.
        spec.content.text = Some("a\u{0}b".into());
    }
    AcceptRequest {
        tenant_id: tenant,
        spec,
        idempotency: None,
        dedup: None,
        metadata: EventMetadata::default(),
    }
}

/// The transaction (`tx_id`) each stream's events were written in.
async fn tx_of(pool: &PgPool, stream: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT DISTINCT tx_id::text FROM events WHERE stream_id = $1")
        .bind(stream)
        .fetch_optional(pool)
        .await
        .unwrap()
}

// A current-thread runtime: the writer task runs only when the test awaits, so every request
// below is queued before the writer takes them, and they form one batch.
#[tokio::test]
async fn a_request_the_database_refuses_fails_alone_and_its_batch_is_written() {
    let pool = migrated_pool().await;
    let batcher = AcceptBatcher::start(CommandHandler::new(pool.clone()), 1, 64);
    let tenant = TenantId::new();
    let poisoned = [2usize, 7];
    let answers = futures::future::join_all((0..10).map(|i| {
        let batcher = batcher.clone();
        async move { batcher.accept(request(tenant, poisoned.contains(&i))).await }
    }))
    .await;

    let mut txs = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        if poisoned.contains(&i) {
            assert!(
                matches!(answer, Err(CommandError::Db(_))),
                "request {i}: {answer:?}"
            );
            continue;
        }
        let accepted = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(!accepted.replayed);
        let tx = tx_of(&pool, accepted.message_id.0).await;
        txs.push(tx.unwrap_or_else(|| panic!("request {i} was answered but not stored")));
    }
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT stream_id) FROM events WHERE stream_type = 'message'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored, 8,
        "the eight good requests, nothing of the poisoned ones"
    );
    // The batch is split around the bad requests, not redone one request at a time: requests
    // 0 and 1 (left of the first bad one) share a transaction, as do 8 and 9.
    assert_eq!(txs[0], txs[1]);
    assert_eq!(txs[6], txs[7]);
    let distinct: std::collections::HashSet<_> = txs.iter().collect();
    assert!(distinct.len() < 8, "written in groups: {txs:?}");
}
