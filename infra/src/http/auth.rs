//! Tenant authentication by `Authorization: Bearer <api key>`.

use super::problem::Problem;
use crate::tenants;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use hermes_domain::TenantId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a key that was found valid is trusted without asking the database again. It bounds
/// how long a revoked key keeps working on a process that saw it just before (`hermes tenant key
/// revoke` promises 5 s), at the cost of one indexed lookup per key every 2 s.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_MAX: usize = 10_000;

/// SHA-256 of a key -> its tenant and when that was last checked against the database.
type KeyCache = Arc<Mutex<HashMap<Vec<u8>, (TenantId, Instant)>>>;

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    /// SHA-256 of the key -> tenant, so a busy client costs no query per request.
    cache: KeyCache,
}

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
        }
    }

    pub async fn authenticate(&self, key: &str) -> Result<Option<TenantId>, sqlx::Error> {
        let hash = tenants::hash_key(key);
        if let Some((tenant, at)) = self.cache.lock().expect("auth cache").get(&hash)
            && at.elapsed() < AUTH_CACHE_TTL
        {
            return Ok(Some(*tenant));
        }
        let found = tenants::authenticate(&self.pool, key).await?.map(TenantId);
        let mut cache = self.cache.lock().expect("auth cache");
        if let Some(tenant) = found {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (tenant, Instant::now()));
        } else {
            // Revoked (or never valid): forget it at once.
            cache.remove(&hash);
        }
        Ok(found)
    }
}

/// The authenticated tenant of a request. Rejects with a 401 problem.
#[derive(Debug, Clone, Copy)]
pub struct Tenant(pub TenantId);

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
        match Authenticator::from_ref(state).authenticate(key).await {
            Ok(Some(tenant)) => Ok(Tenant(tenant)),
            Ok(None) => Err(Problem::unauthorized("the API key is not valid")),
            Err(e) => Err(Problem::internal(&e)),
        }
    }
}
