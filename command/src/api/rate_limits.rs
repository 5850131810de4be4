//! Layer 7 of the accept path: the tenant's rate limits. A message takes one unit from the
//! tenant's `rate_limit` and one from the `channel_rate_limits` of each channel its cascade may
//! use (it may send on any of them), all or none; refused with `429 rate_limited` and
//! `Retry-After`.

use hermes_domain::TenantId;
use hermes_domain::message::MessageSpec;
use hermes_domain::tenant::TenantSettings;
use hermes_infra::rate_limit::{Check, Limited, RateLimiter};

/// The limits a message must fit. Keys share the `{tenant}` hash tag, so a Redis cluster keeps
/// one tenant's keys on one node (the script touches several at once).
pub fn checks_for(tenant: TenantId, settings: &TenantSettings, spec: &MessageSpec) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(limit) = settings.rate_limit {
        checks.push(Check {
            key: format!("hermes:rl:{{{tenant}}}"),
            limit,
        });
    }
    let mut channels: Vec<_> = spec.cascade.iter().map(|s| s.channel).collect();
    channels.sort();
    channels.dedup();
    for channel in channels {
        if let Some(limit) = settings.channel_rate_limits.get(&channel) {
            checks.push(Check {
                key: format!("hermes:rl:{{{tenant}}}:{channel}"),
                limit: *limit,
            });
        }
    }
    checks
}

/// Takes the message's units, or says which limit refused and when to come back.
pub async fn admit(
    limiter: &RateLimiter,
    tenant: TenantId,
    settings: &TenantSettings,
    spec: &MessageSpec,
) -> Result<(), Limited> {
    let checks = checks_for(tenant, settings, spec);
    let refused = limiter.acquire(&checks).await;
    if let Err(limited) = &refused {
        let scope = if limited.key.ends_with('}') {
            "tenant"
        } else {
            "channel"
        };
        metrics::counter!("hermes_rate_limited_total", "scope" => scope).increment(1);
    }
    refused
}
