//! The tenants' suppression lists (`suppressions`): added by operators or from delivery outcomes
//! (`hermes_domain::suppression`), read at accept to skip a message's suppressed steps.

use chrono::{DateTime, Utc};
use hermes_domain::Channel;
use hermes_domain::message::MessageSpec;
use hermes_domain::suppression::normalized;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SuppressionEntry {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// Adds an address (an address already listed keeps its first reason; emails compare without
/// regard to case) and marks the tenant as having suppressions, so accepts look them up.
pub async fn add(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    channel: Channel,
    address: &str,
    reason: &str,
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH flag AS (UPDATE tenants SET has_suppressions = true
                        WHERE id = $1 AND NOT has_suppressions)
         INSERT INTO suppressions (tenant_id, channel, address, reason, source)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id)
    .bind(channel.as_str())
    .bind(normalized(channel, address))
    .bind(reason)
    .bind(source)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes an address; whether it was listed.
pub async fn remove(
    pool: &PgPool,
    tenant_id: Uuid,
    channel: Channel,
    address: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3",
    )
    .bind(tenant_id)
    .bind(channel.as_str())
    .bind(normalized(channel, address))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The reason of an entry a recipient's opt-out keyword (STOP) added; their opt-in (START)
/// removes only such entries, never one the tenant or an outcome added.
pub const OPT_OUT_REASON: &str = "opt_out";

/// Removes the tenant's opt-out entry for this phone number; whether there was one.
pub async fn remove_opt_out(
    pool: &PgPool,
    tenant_id: Uuid,
    phone: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM suppressions
          WHERE tenant_id = $1 AND channel = 'sms' AND address = $2 AND reason = $3",
    )
    .bind(tenant_id)
    .bind(normalized(Channel::Sms, phone))
    .bind(OPT_OUT_REASON)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// How far back a platform account's inbound message looks for the tenants that texted the
/// sender: an opt-out answers a recent message.
pub const TEXTED_WITHIN_DAYS: i32 = 30;

/// The tenants whose SMS went to `phone` through the (platform) account `account` in the last
/// [`TEXTED_WITHIN_DAYS`] days: the tenants a reply to that account's number may be meant for.
/// Reads the status read model without an index for it (a rare call: one per keyword reply).
pub async fn tenants_that_texted(
    pool: &PgPool,
    account: &str,
    phone: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM message_views
          WHERE created_at > now() - make_interval(days => $3)
            AND state->'spec'->'to'->>'phone' = $2
            AND state->'attempts' @> jsonb_build_array(jsonb_build_object('provider', $1::text, 'channel', 'sms'))",
    )
    .bind(account)
    .bind(phone)
    .bind(TEXTED_WITHIN_DAYS)
    .fetch_all(pool)
    .await
}

/// A tenant's list, newest first.
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<SuppressionEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT channel, address, reason, source, created_at FROM suppressions
          WHERE tenant_id = $1 ORDER BY created_at DESC, channel, address",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

/// Each step's channel and address as a list holds it (emails lower-cased); `None` for a step
/// whose channel has no address in `to`.
pub fn step_addresses(spec: &MessageSpec) -> Vec<Option<(Channel, String)>> {
    spec.cascade
        .iter()
        .map(|s| {
            let address = spec.to.address_for(s.channel)?;
            Some((s.channel, normalized(s.channel, address)))
        })
        .collect()
}

/// One address to look up on a tenant's list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe {
    pub tenant_id: Uuid,
    pub channel: Channel,
    /// As [`step_addresses`] gives it.
    pub address: String,
}

/// Which of `probes` are listed, in order, in one query (whatever tenants they are of).
pub async fn listed_many(pool: &PgPool, probes: &[Probe]) -> Result<Vec<bool>, sqlx::Error> {
    if probes.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = probes.iter().map(|p| p.tenant_id).collect();
    let channels: Vec<&str> = probes.iter().map(|p| p.channel.as_str()).collect();
    let addresses: Vec<&str> = probes.iter().map(|p| p.address.as_str()).collect();
    let listed: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT tenant_id, channel, address FROM suppressions
          WHERE (tenant_id, channel, address) IN
                (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]))",
    )
    .bind(&tenants)
    .bind(&channels)
    .bind(&addresses)
    .fetch_all(pool)
    .await?;
    Ok(probes
        .iter()
        .map(|p| {
            listed
                .iter()
                .any(|(t, c, a)| *t == p.tenant_id && c == p.channel.as_str() && *a == p.address)
        })
        .collect())
}
