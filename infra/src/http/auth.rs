//! Tenant authentication by `Authorization: Bearer <api key>`.

use super::problem::Problem;
use crate::tenants::{self, KeyOwner};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::Utc;
use hermes_domain::TenantId;
use hermes_domain::tenant::{TenantSettings, TenantStatus};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a key that was found valid is trusted without asking the database again. It bounds
/// how long a revoked key, or the key of a tenant just suspended, keeps working on a process that
/// saw it just before (Hermes promises 5 s), at the cost of one indexed lookup per key every 2 s.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_MAX: usize = 10_000;

/// SHA-256 of a key -> its owner and until when that may be trusted without asking again.
type KeyCache = Arc<Mutex<HashMap<Vec<u8>, (KeyOwner, Instant)>>>;

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    /// SHA-256 of the key -> owner, so a busy client costs no query per request.
    cache: KeyCache,
}

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
        }
    }

    /// The owner of a valid key (its tenant may be suspended or deactivated: the caller judges).
    pub async fn authenticate(&self, key: &str) -> Result<Option<KeyOwner>, sqlx::Error> {
        let hash = tenants::hash_key(key);
        if let Some((owner, trusted_until)) = self.cache.lock().expect("auth cache").get(&hash)
            && Instant::now() < *trusted_until
        {
            return Ok(Some(owner.clone()));
        }
        let found = tenants::authenticate(&self.pool, key).await?;
        let mut cache = self.cache.lock().expect("auth cache");
        if let Some(owner) = &found {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (owner.clone(), trusted_until(owner)));
        } else {
            // Revoked, expired (or never valid): forget it at once.
            cache.remove(&hash);
        }
        Ok(found)
    }
}

/// A key is trusted for [`AUTH_CACHE_TTL`], and never past the moment a rotation ends it.
fn trusted_until(owner: &KeyOwner) -> Instant {
    let now = Instant::now();
    let ttl = match owner.expires_at {
        Some(at) => (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(AUTH_CACHE_TTL),
        None => AUTH_CACHE_TTL,
    };
    now + ttl
}

/// The authenticated tenant of a request, with its settings (as of at most [`AUTH_CACHE_TTL`]
/// ago). Rejects with a 401 problem, or 403 when the tenant is not active.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId, pub TenantContext);

/// What the accept path needs to know of the tenant, read with its key.
#[derive(Debug, Clone)]
pub struct TenantContext {
    pub settings: Arc<TenantSettings>,
    /// Whether its suppression list has ever held an address.
    pub has_suppressions: bool,
}

impl<S> FromRequestParts<S> for Tenant
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized("send your API key as `Authorization: Bearer <key>`")
        })?;
        // The scheme is case-insensitive (RFC 9110, section 11.1): `bearer <key>` is fine too.
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <key>`")
            })?;
        let started = std::time::Instant::now();
        let found = Authenticator::from_ref(state).authenticate(key).await;
        // Layers 1 and 2 of the accept pipeline (and every other tenant request's first step).
        metrics::histogram!("hermes_auth_seconds").record(started.elapsed().as_secs_f64());
        let owner = match found {
            Ok(Some(owner)) => owner,
            Ok(None) => return Err(Problem::unauthorized("the API key is not valid")),
            Err(e) => return Err(Problem::internal(&e)),
        };
        if let Some(slot) = parts.extensions.get::<super::refusals::TenantSlot>() {
            slot.fill(owner.tenant_id);
        }
        match owner.status {
            TenantStatus::Active => Ok(Tenant(
                TenantId(owner.tenant_id),
                TenantContext {
                    settings: owner.settings,
                    has_suppressions: owner.has_suppressions,
                },
            )),
            TenantStatus::Suspended => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "this tenant is suspended: its keys are refused until an operator reactivates it",
            )),
            TenantStatus::Deactivated => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "tenant_deactivated",
                "this tenant is deactivated: its keys are refused",
            )),
        }
    }
}
