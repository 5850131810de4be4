//! Tenant webhooks, the write side: signing secrets (sealed at rest when the server has a
//! `HERMES_SECRET_KEY`), the Standard Webhooks signature and the sender that delivers the
//! outbox (`hermes_infra::webhooks`, filled by `hermes_projections::webhook_outbox`). The
//! tenant-facing API is `crate::api::webhooks`.

pub mod sender;
pub mod signature;

use hermes_domain::webhook::RetrySchedule;
use hermes_infra::provider_accounts::SealingKey;
use hermes_infra::webhooks::StoredSecret;
use std::time::Duration;
use uuid::Uuid;

/// How webhooks are stored and delivered: shared by the API (which seals new secrets) and the
/// sender (which opens them).
#[derive(Clone)]
pub struct WebhookConfig {
    /// Seals signing secrets at rest; without one they are stored as they are (Hermes warns at
    /// start).
    pub key: Option<SealingKey>,
    /// Lets endpoints resolve to loopback, private and link-local addresses (tests, private
    /// networks). Off by default: a tenant's URL must not reach Hermes's own network.
    pub allow_private: bool,
    pub schedule: RetrySchedule,
    /// An endpoint whose every delivery has failed for this long is disabled.
    pub disable_after: Duration,
    /// Each delivery attempt's whole HTTP exchange.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// The production defaults: the standard schedule (24 h), disabled after 5 days of failures,
    /// 15 s per attempt.
    pub fn new(key: Option<SealingKey>) -> Self {
        Self {
            key,
            allow_private: false,
            schedule: RetrySchedule::STANDARD,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            timeout: Duration::from_secs(15),
        }
    }

    /// A secret as stored, sealed to its endpoint when a key is configured.
    pub fn store(&self, endpoint_id: Uuid, secret: &str) -> StoredSecret {
        match &self.key {
            Some(key) => StoredSecret {
                bytes: key.seal(secret.as_bytes(), &aad(endpoint_id)),
                sealed: true,
            },
            None => StoredSecret {
                bytes: secret.as_bytes().to_vec(),
                sealed: false,
            },
        }
    }

    /// The signing key inside a stored secret; `None` if it cannot be opened (sealed under
    /// another key, or with no key configured) or is not a `whsec_` secret.
    pub fn open(&self, endpoint_id: Uuid, stored: &StoredSecret) -> Option<Vec<u8>> {
        let plain = if stored.sealed {
            self.key.as_ref()?.open(&stored.bytes, &aad(endpoint_id))?
        } else {
            stored.bytes.clone()
        };
        signature::key_of(std::str::from_utf8(&plain).ok()?)
    }
}

/// A rotation's second step for the signing secrets: seals again, under the current key, every
/// endpoint secret the previous key sealed; answers how many. A current secret neither key opens
/// is an error (that endpoint could not be signed for); a previous one is skipped (it only signs
/// until its overlap ends).
pub async fn rekey(pool: &sqlx::PgPool, key: &SealingKey) -> anyhow::Result<usize> {
    let mut resealed = 0;
    for (id, secret, previous) in hermes_infra::webhooks::sealed_secrets(pool).await? {
        for (is_previous, sealed) in [(false, secret), (true, previous)] {
            let Some(sealed) = sealed else { continue };
            if key.open_current(&sealed, &aad(id)).is_some() {
                continue;
            }
            let Some(plain) = key.open(&sealed, &aad(id)) else {
                if is_previous {
                    continue;
                }
                anyhow::bail!("webhook endpoint {id}'s signing secret opens with neither key");
            };
            let again = key.seal(&plain, &aad(id));
            hermes_infra::webhooks::reseal_secret(pool, id, is_previous, &sealed, &again).await?;
            resealed += 1;
        }
    }
    Ok(resealed)
}

/// A sealed secret opens only for its own endpoint.
fn aad(endpoint_id: Uuid) -> String {
    format!("webhook-endpoint:{endpoint_id}")
}
