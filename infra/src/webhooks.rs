//! Tenant webhooks' storage: endpoints (`webhook_endpoints`), the outbox of notices to deliver
//! (`webhook_deliveries`, filled by the `webhook-outbox` subscriber) and every delivery attempt
//! (`webhook_attempts`). Migration 0016. Every tenant-facing read and write names the tenant, so
//! a tenant never reaches another's endpoints or deliveries.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ENDPOINT: &str = "id, tenant_id, url, description, event_types, enabled, disabled_reason, \
                        previous_secret_until, failing_since, created_at, updated_at";

/// A signing secret as stored: sealed with the server's key, or not (no key configured).
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub bytes: Vec<u8>,
    pub sealed: bool,
}

/// An endpoint to add.
#[derive(Debug)]
pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: &'a [String],
    pub enabled: bool,
    pub secret: StoredSecret,
}

pub async fn create(pool: &PgPool, new: &NewEndpoint<'_>) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, enabled,
                                        secret, sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ENDPOINT}"
    )))
    .bind(new.id)
    .bind(new.tenant_id)
    .bind(new.url)
    .bind(new.description)
    .bind(new.event_types)
    .bind(new.enabled)
    .bind(&new.secret.bytes)
    .bind(new.secret.sealed)
    .fetch_one(pool)
    .await
}

/// The tenant's endpoints, oldest first.
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"
    )))
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a change to an endpoint sets (absent: unchanged).
#[derive(Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Changes an endpoint; enabling one clears why Hermes disabled it and its failing streak.
pub async fn update(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    change: &EndpointChange,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints
            SET url = coalesce($3, url),
                description = coalesce($4, description),
                event_types = coalesce($5, event_types),
                enabled = coalesce($6, enabled),
                disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END,
                updated_at = now()
          WHERE tenant_id = $1 AND id = $2
          RETURNING {ENDPOINT}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(&change.url)
    .bind(&change.description)
    .bind(&change.event_types)
    .bind(change.enabled)
    .fetch_optional(pool)
    .await
}

/// Deletes an endpoint and its deliveries; whether it existed.
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every endpoint's sealed secrets, for a key rotation: its id, its secret and its previous one
/// (each only when sealed).
pub async fn sealed_secrets(
    pool: &PgPool,
) -> Result<Vec<(Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, CASE WHEN sealed THEN secret END,
                CASE WHEN previous_sealed THEN previous_secret END
           FROM webhook_endpoints WHERE sealed OR coalesce(previous_sealed, false) ORDER BY id",
    )
    .fetch_all(pool)
    .await
}

/// Replaces an endpoint's sealed secret (its previous one when `previous`) with `resealed`,
/// unless it is no longer `old` (rotated meanwhile, sealed with the current key).
pub async fn reseal_secret(
    pool: &PgPool,
    id: Uuid,
    previous: bool,
    old: &[u8],
    resealed: &[u8],
) -> Result<(), sqlx::Error> {
    let sql = if previous {
        "UPDATE webhook_endpoints SET previous_secret = $3 WHERE id = $1 AND previous_secret = $2"
    } else {
        "UPDATE webhook_endpoints SET secret = $3 WHERE id = $1 AND secret = $2"
    };
    sqlx::query(sql)
        .bind(id)
        .bind(old)
        .bind(resealed)
        .execute(pool)
        .await?;
    Ok(())
}

/// Replaces the signing secret; the old one keeps signing (a second signature) until `until`.
pub async fn rotate_secret(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    secret: &StoredSecret,
    until: DateTime<Utc>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints
            SET previous_secret = secret, previous_sealed = sealed, previous_secret_until = $5,
                secret = $3, sealed = $4, updated_at = now()
          WHERE tenant_id = $1 AND id = $2
          RETURNING {ENDPOINT}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(&secret.bytes)
    .bind(secret.sealed)
    .bind(until)
    .fetch_optional(pool)
    .await
}

/// Where and how the sender signs for an endpoint.
#[derive(Debug, Clone)]
pub struct SendingTo {
    pub url: String,
    pub enabled: bool,
    pub secret: StoredSecret,
    /// The secret before the last rotation, while it still signs.
    pub previous: Option<StoredSecret>,
}

pub async fn sending_to(pool: &PgPool, id: Uuid) -> Result<Option<SendingTo>, sqlx::Error> {
    type Row = (
        String,
        bool,
        Vec<u8>,
        bool,
        Option<Vec<u8>>,
        Option<bool>,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT url, enabled, secret, sealed, previous_secret, previous_sealed,
                coalesce(previous_secret_until > now(), false)
           FROM webhook_endpoints WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(url, enabled, secret, sealed, previous, previous_sealed, previous_valid)| SendingTo {
            url,
            enabled,
            secret: StoredSecret {
                bytes: secret,
                sealed,
            },
            previous: previous
                .filter(|_| previous_valid)
                .map(|bytes| StoredSecret {
                    bytes,
                    sealed: previous_sealed.unwrap_or(false),
                }),
        },
    ))
}

/// Whether any endpoint is enabled at all: while none is, the outbox subscriber reads no event.
pub async fn any_enabled(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)")
        .fetch_one(conn)
        .await
}

/// An enabled endpoint as the outbox subscriber matches notices against it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub event_types: Vec<String>,
}

impl Subscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// The enabled endpoints of these tenants.
pub async fn subscriptions(
    conn: &mut PgConnection,
    tenant_ids: &[Uuid],
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, event_types FROM webhook_endpoints
          WHERE enabled AND tenant_id = ANY($1) ORDER BY id",
    )
    .bind(tenant_ids)
    .fetch_all(conn)
    .await
}

/// One notice to deliver to one endpoint.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub endpoint_id: Uuid,
    pub tenant_id: Uuid,
    pub message_id: Uuid,
    pub event_id: Uuid,
    pub notice_no: i32,
    pub event_type: String,
    pub body: String,
    /// The event's trace context, continued by the delivery's span.
    pub traceparent: Option<String>,
}

/// Adds deliveries, due now; one already there (the same event's notice for the same endpoint,
/// after a crash between the insert and the checkpoint) is left as it is.
pub async fn enqueue(
    conn: &mut PgConnection,
    deliveries: &[NewDelivery],
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deliveries.iter().map(|_| Uuid::now_v7()).collect();
    let col = |f: fn(&NewDelivery) -> Uuid| deliveries.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, message_id, event_id,
                                         notice_no, event_type, body, traceparent,
                                         next_attempt_at)
         SELECT *, now() FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                                     $6::int[], $7::text[], $8::text[], $9::text[])
         ON CONFLICT ON CONSTRAINT webhook_deliveries_notice_key DO NOTHING",
    )
    .bind(&ids)
    .bind(col(|d| d.endpoint_id))
    .bind(col(|d| d.tenant_id))
    .bind(col(|d| d.message_id))
    .bind(col(|d| d.event_id))
    .bind(deliveries.iter().map(|d| d.notice_no).collect::<Vec<_>>())
    .bind(
        deliveries
            .iter()
            .map(|d| d.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.body.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.traceparent.clone())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A due delivery: its endpoint is enabled and no earlier notice of the same message to the
/// same endpoint is still pending (per endpoint, a message's notices arrive in order).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    pub endpoint_id: Uuid,
}

pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.endpoint_id
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries b
                             WHERE b.status = 'pending' AND b.endpoint_id = d.endpoint_id
                               AND b.message_id = d.message_id AND b.seq < d.seq)
          ORDER BY d.next_attempt_at
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A delivery this sender claimed: no other sender takes it before `lease` ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub body: String,
    /// This attempt's number (from 1).
    pub attempts: i32,
    pub first_attempt_at: DateTime<Utc>,
    pub message_id: Uuid,
    pub tenant_id: Uuid,
    /// The notice's type (`message.delivered`).
    pub event_type: String,
    /// The trace context of the event the notice is about.
    pub traceparent: Option<String>,
}

/// Claims the deliveries among `ids` still due, counting the attempt about to be made.
pub async fn claim(
    pool: &PgPool,
    ids: &[Uuid],
    lease: std::time::Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE webhook_deliveries
            SET next_attempt_at = now() + make_interval(secs => $2),
                attempts = attempts + 1,
                first_attempt_at = coalesce(first_attempt_at, now()),
                updated_at = now()
          WHERE id = ANY($1) AND status = 'pending' AND next_attempt_at <= now()
          RETURNING id, endpoint_id, body, attempts, first_attempt_at, message_id, tenant_id,
                    event_type, traceparent",
    )
    .bind(ids)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
    pub error: Option<String>,
}

/// A delivery's outcome after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Tried again at this time.
    Retry(DateTime<Utc>),
    Failed,
}

/// Records an attempt and the delivery's outcome. A success clears the endpoint's failing
/// streak; a failure starts it. An endpoint failing for longer than `disable_after` is disabled:
/// the answer says so (once, when it happens).
pub async fn record(
    pool: &PgPool,
    claimed: &Claimed,
    attempt: &AttemptRecord,
    outcome: Outcome,
    disable_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    if outcome == Outcome::Succeeded {
        // The common case in one statement (atomic on its own): the attempt, the delivery done,
        // the endpoint's failing streak (if any) over.
        sqlx::query(
            "WITH attempt AS (
                 INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code,
                                               latency_ms, response, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING),
             delivery AS (
                 UPDATE webhook_deliveries
                    SET status = 'succeeded', next_attempt_at = NULL, updated_at = now()
                  WHERE id = $1)
             UPDATE webhook_endpoints SET failing_since = NULL
              WHERE id = $8 AND failing_since IS NOT NULL",
        )
        .bind(claimed.id)
        .bind(claimed.attempts)
        .bind(attempt.attempted_at)
        .bind(attempt.status_code)
        .bind(attempt.latency_ms)
        .bind(&attempt.response)
        .bind(&attempt.error)
        .bind(claimed.endpoint_id)
        .execute(pool)
        .await?;
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code,
                                       latency_ms, response, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(claimed.id)
    .bind(claimed.attempts)
    .bind(attempt.attempted_at)
    .bind(attempt.status_code)
    .bind(attempt.latency_ms)
    .bind(&attempt.response)
    .bind(&attempt.error)
    .execute(&mut *tx)
    .await?;
    // A failure from here on: tried again later, or failed for good.
    let (status, next) = match outcome {
        Outcome::Retry(at) => ("pending", Some(at)),
        _ => ("failed", None),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, next_attempt_at = $3, updated_at = now()
          WHERE id = $1",
    )
    .bind(claimed.id)
    .bind(status)
    .bind(next)
    .execute(&mut *tx)
    .await?;
    let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2)
          WHERE id = $1 RETURNING failing_since",
    )
    .bind(claimed.endpoint_id)
    .bind(attempt.attempted_at)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    let limit = chrono::Duration::from_std(disable_after).unwrap_or(chrono::Duration::MAX);
    let disabled = match failing_since {
        Some(since) if attempt.attempted_at - since >= limit => {
            let reason = format!(
                "disabled by Hermes: every delivery failed since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            sqlx::query(
                "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2,
                        updated_at = now()
                  WHERE id = $1 AND enabled",
            )
            .bind(claimed.endpoint_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
        _ => false,
    };
    tx.commit().await?;
    Ok(disabled)
}

/// A delivery as the tenant sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub message_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const DELIVERY: &str = "d.id, d.endpoint_id, d.message_id, d.event_type, d.status, d.attempts, \
                        d.next_attempt_at, d.created_at, d.updated_at";

/// An endpoint's deliveries, newest first, optionally of one status.
pub async fn deliveries_of_endpoint(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY} FROM webhook_deliveries d
          WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND ($3::text IS NULL OR d.status = $3)
          ORDER BY d.seq DESC LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A message's deliveries to every endpoint, in the order they were queued.
pub async fn deliveries_of_message(
    pool: &PgPool,
    tenant_id: Uuid,
    message_id: Uuid,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY} FROM webhook_deliveries d
          WHERE d.tenant_id = $1 AND d.message_id = $2 ORDER BY d.seq LIMIT 1000"
    )))
    .bind(tenant_id)
    .bind(message_id)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
    pub error: Option<String>,
}

/// The attempts of these deliveries (the tenant's own), in order.
pub async fn attempts_of(
    pool: &PgPool,
    tenant_id: Uuid,
    delivery_ids: &[Uuid],
) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.delivery_id, a.attempt, a.attempted_at, a.status_code, a.latency_ms,
                a.response, a.error
           FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
          WHERE d.tenant_id = $1 AND a.delivery_id = ANY($2)
          ORDER BY a.delivery_id, a.attempt",
    )
    .bind(tenant_id)
    .bind(delivery_ids)
    .fetch_all(pool)
    .await
}

/// Queues a delivery that ended (failed, or succeeded and wanted again) to go out now, on a fresh
/// retry schedule. `None` if the tenant has no such delivery; a pending one is left as it is.
pub async fn redeliver(
    pool: &PgPool,
    tenant_id: Uuid,
    delivery_id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH again AS (
             UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                    first_attempt_at = NULL, updated_at = now()
              WHERE tenant_id = $1 AND id = $2 AND status <> 'pending'
              RETURNING *)
         SELECT {DELIVERY} FROM again d
         UNION ALL
         SELECT {DELIVERY} FROM webhook_deliveries d
          WHERE d.tenant_id = $1 AND d.id = $2 AND NOT EXISTS (SELECT 1 FROM again)"
    )))
    .bind(tenant_id)
    .bind(delivery_id)
    .fetch_optional(pool)
    .await
}

/// Queues every failed delivery of an endpoint again; how many.
pub async fn redeliver_failed(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                first_attempt_at = NULL, updated_at = now()
          WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'failed'",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deliveries waiting to go out (the `hermes_webhook_pending_deliveries` gauge).
pub async fn pending_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
        .fetch_one(pool)
        .await
}
