//! Tenants' dispatch rules as the saga sees them (routing per channel, quiet hours): read from the
//! `tenants` read model and trusted for [`TRUST_FOR`], so a dispatch costs no query and a changed
//! rule applies within seconds on every process (like the API keys' cache).

use hermes_domain::TenantId;
use hermes_infra::tenants::{self, DispatchRules};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long rules read are used before they are read again.
pub(crate) const TRUST_FOR: Duration = Duration::from_secs(2);

pub(crate) type Rules = Arc<DispatchRules>;

pub(crate) struct TenantRules {
    pool: PgPool,
    read: Mutex<HashMap<TenantId, (Instant, Rules)>>,
}

impl TenantRules {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            read: Mutex::default(),
        }
    }

    /// The tenant's rules (no routing rule for a channel: every account, in priority order).
    pub(crate) async fn get(&self, tenant: TenantId) -> Result<Rules, sqlx::Error> {
        if let Some((at, rules)) = self.lock().get(&tenant)
            && at.elapsed() < TRUST_FOR
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(tenants::dispatch_rules(&self.pool, tenant.0).await?);
        let mut read = self.lock();
        // Tenants come and go; drop what has gone stale rather than grow without end.
        if read.len() >= 10_000 {
            read.retain(|_, (at, _)| at.elapsed() < TRUST_FOR);
        }
        read.insert(tenant, (Instant::now(), rules.clone()));
        Ok(rules)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, Rules)>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }
}
