//! Provider accounts as stored: which plugin serves each, the hosts it may reach, and its
//! configuration, whose values (credentials among them) are sealed at rest with
//! ChaCha20-Poly1305 under the deployment's [`SealingKey`].

use crate::Secret;
use hermes_domain::rate_limit::MAX_PER_SECOND;
use hermes_domain::routing::PriceTable;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The key provider configurations are sealed with: 32 bytes, given as 64 hex characters
/// (`HERMES_SECRET_KEY`). Never printed.
///
/// During a rotation it also holds the key being rotated away from (`HERMES_SECRET_KEY_PREVIOUS`,
/// [`Self::with_previous`]): what that key sealed or signed still opens and verifies, and
/// everything new is sealed and signed with the current key. `hermes provider rekey` re-seals
/// what the previous key sealed ([`rekey`]).
#[derive(Clone)]
pub struct SealingKey {
    current: Secret<[u8; 32]>,
    previous: Option<Secret<[u8; 32]>>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the secret key must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error(
        "account {0}'s configuration cannot be opened with this secret key (wrong HERMES_SECRET_KEY, or tampered)"
    )]
    Unsealable(String),
    #[error(
        "invalid account name {0:?}: lowercase letters, digits, '-' and '_', at most 63, starting with a letter or digit"
    )]
    BadName(String),
    #[error(
        "invalid price {0:?}: COUNTRY=PRICE with an ISO 3166-1 alpha-2 country (or *) and a price of zero or more"
    )]
    BadPrice(String),
    #[error("the send rate (--mps) must be 1 to 100000 messages per second")]
    BadRate,
    #[error("no such tenant: a tenant's own account needs the tenant's id")]
    NoSuchTenant,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl SealingKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, AccountError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| AccountError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| AccountError::BadKey)?;
        Ok(Self {
            current: Secret::new(key),
            previous: None,
        })
    }

    /// This key, also opening and verifying what `previous` (its current key) sealed and signed.
    pub fn with_previous(self, previous: &SealingKey) -> Self {
        Self {
            previous: Some(previous.current.clone()),
            ..self
        }
    }

    /// Opens what the current key sealed, and only that (a rotation's [`rekey`] tells the two
    /// apart).
    pub fn open_current(&self, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
        open_with(&self.current, sealed, aad)
    }

    /// A fresh random key, as hex (for `hermes dev` and first setup).
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random source works");
        hex::encode(key)
    }

    /// `nonce || ciphertext || tag`; `aad` binds the blob to its account.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut in_out = plaintext.to_vec();
        aead(&self.current)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .expect("sealing cannot fail for in-memory sizes");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        sealed
    }

    /// An HMAC-SHA256 tag over `message`, under a key derived from this one for `purpose`, so a
    /// tag made for one use of the deployment's key is never valid for another.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> Vec<u8> {
        hmac::sign(&mac_key(&self.current, purpose), message)
            .as_ref()
            .to_vec()
    }

    /// Whether `tag` is [`Self::mac`] of `message` under the current key (or the previous one,
    /// during a rotation), compared in constant time.
    pub fn verify_mac(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        self.verify_mac_current(purpose, message, tag)
            || self
                .previous
                .as_ref()
                .is_some_and(|k| hmac::verify(&mac_key(k, purpose), message, tag).is_ok())
    }

    /// Whether `tag` is [`Self::mac`] of `message` under the current key only.
    pub fn verify_mac_current(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&mac_key(&self.current, purpose), message, tag).is_ok()
    }

    /// Opens what the current key sealed, or (during a rotation) the previous one.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
        open_with(&self.current, sealed, aad)
            .or_else(|| open_with(self.previous.as_ref()?, sealed, aad))
    }
}

fn aead(key: &Secret<[u8; 32]>) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, key.expose()).expect("32 bytes is the key size"),
    )
}

fn mac_key(key: &Secret<[u8; 32]>, purpose: &str) -> hmac::Key {
    let master = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let derived = hmac::sign(&master, purpose.as_bytes());
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

fn open_with(key: &Secret<[u8; 32]>, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = ciphertext.to_vec();
    let plain = aead(key)
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
        .ok()?;
    Some(plain.to_vec())
}

/// The associated data a configuration is sealed with: everything that decides where its
/// credentials go (the account, the plugin that receives them, the hosts it may reach and
/// whether private addresses are allowed). Someone who can write the table but does not hold the
/// key cannot point sealed credentials at another plugin or host: the blob no longer opens.
fn binding(
    name: &str,
    plugin: &str,
    allowed_hosts: &[String],
    allow_private: bool,
    tenant: Option<Uuid>,
) -> String {
    match tenant {
        // A platform account's binding is what it was before tenants owned accounts.
        None => serde_json::to_string(&(
            "hermes-account/2",
            name,
            plugin,
            allowed_hosts,
            allow_private,
        )),
        // A tenant's: moving it to another tenant in the database does not open it.
        Some(tenant) => serde_json::to_string(&(
            "hermes-account/3",
            name,
            plugin,
            allowed_hosts,
            allow_private,
            tenant,
        )),
    }
    .expect("strings, a bool and a uuid always serialize")
}

/// One provider account.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAccount {
    pub name: String,
    /// The plugin that serves it (`twilio`, `ses`...).
    pub plugin: String,
    pub priority: i32,
    pub allowed_hosts: Vec<String>,
    pub allow_private: bool,
    /// Base URL, credentials...: what the plugin's `config` import returns.
    pub config: BTreeMap<String, Secret<String>>,
    /// Price per message unit by destination country, `*` for the rest (the `cost` strategy).
    pub prices: PriceTable,
    /// The provider's send rate for this account (messages per second), kept at dispatch.
    pub max_per_second: Option<u32>,
    /// The tenant whose own account this is (for its messages only); `None`: the platform's.
    pub tenant_id: Option<Uuid>,
}

/// A price entry: a country code or `*`, and a finite price of zero or more.
pub fn valid_price(country: &str, price: f64) -> bool {
    (country == "*" || hermes_domain::phone::is_country_code(country))
        && price.is_finite()
        && price >= 0.0
}

pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Creates or replaces an account (Hermes processes pick the change up and swap it in).
pub async fn put(
    pool: &PgPool,
    key: &SealingKey,
    account: &ProviderAccount,
) -> Result<(), AccountError> {
    if !valid_name(&account.name) {
        return Err(AccountError::BadName(account.name.clone()));
    }
    if let Some((country, price)) = account.prices.iter().find(|(c, p)| !valid_price(c, **p)) {
        return Err(AccountError::BadPrice(format!("{country}={price}")));
    }
    if account
        .max_per_second
        .is_some_and(|n| !(1..=MAX_PER_SECOND).contains(&n))
    {
        return Err(AccountError::BadRate);
    }
    let plain: BTreeMap<&str, &str> = account
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose().as_str()))
        .collect();
    let plain = serde_json::to_vec(&plain).expect("a string map always serializes");
    let sealed = key.seal(
        &plain,
        &binding(
            &account.name,
            &account.plugin,
            &account.allowed_hosts,
            account.allow_private,
            account.tenant_id,
        ),
    );
    sqlx::query(
        "INSERT INTO provider_accounts
             (name, plugin, priority, allowed_hosts, allow_private, sealed_config, prices,
              max_per_second, tenant_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (name) DO UPDATE SET plugin = EXCLUDED.plugin, priority = EXCLUDED.priority,
             allowed_hosts = EXCLUDED.allowed_hosts, allow_private = EXCLUDED.allow_private,
             sealed_config = EXCLUDED.sealed_config, prices = EXCLUDED.prices,
             max_per_second = EXCLUDED.max_per_second, tenant_id = EXCLUDED.tenant_id,
             updated_at = clock_timestamp()",
    )
    .bind(&account.name)
    .bind(&account.plugin)
    .bind(account.priority)
    .bind(&account.allowed_hosts)
    .bind(account.allow_private)
    .bind(sealed)
    .bind(sqlx::types::Json(&account.prices))
    .bind(account.max_per_second.map(|n| n as i32))
    .bind(account.tenant_id)
    .execute(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("provider_accounts_tenant_fkey") => {
            AccountError::NoSuchTenant
        }
        _ => AccountError::Database(e),
    })?;
    Ok(())
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<bool, AccountError> {
    let done = sqlx::query("DELETE FROM provider_accounts WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

type Row = (
    String,
    String,
    i32,
    Vec<String>,
    bool,
    Vec<u8>,
    sqlx::types::Json<PriceTable>,
    Option<i32>,
    Option<Uuid>,
);

/// Every account, in priority order, configurations opened.
///
/// Rows sealed before the plugin, hosts and `allow_private` were bound (their associated data was
/// the name alone) still open, and are resealed with the full binding on the spot, so every row
/// is upgraded by the first reload of a process holding the key.
pub async fn list(pool: &PgPool, key: &SealingKey) -> Result<Vec<ProviderAccount>, AccountError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, plugin, priority, allowed_hosts, allow_private, sealed_config, prices,
                max_per_second, tenant_id
         FROM provider_accounts ORDER BY priority, name",
    )
    .fetch_all(pool)
    .await?;
    let mut accounts = Vec::with_capacity(rows.len());
    for (name, plugin, priority, allowed_hosts, allow_private, sealed, prices, mps, tenant_id) in
        rows
    {
        let bound = binding(&name, &plugin, &allowed_hosts, allow_private, tenant_id);
        let plain = match key.open(&sealed, &bound) {
            Some(plain) => plain,
            None => {
                let plain = key
                    .open(&sealed, &name)
                    .ok_or_else(|| AccountError::Unsealable(name.clone()))?;
                reseal(pool, &name, &sealed, &key.seal(&plain, &bound)).await?;
                plain
            }
        };
        let config: BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|_| AccountError::Unsealable(name.clone()))?;
        accounts.push(ProviderAccount {
            name,
            plugin,
            priority,
            allowed_hosts,
            allow_private,
            config: config
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            prices: prices.0,
            max_per_second: mps.map(|n| n as u32),
            tenant_id,
        });
    }
    Ok(accounts)
}

/// A rotation's second step (`hermes provider rekey`): seals again, under the current key,
/// every account configuration it does not open (sealed by the previous key, or the old way);
/// answers how many. A row that changed meanwhile is left to the writer that changed it, which
/// sealed with the current key. An account neither key opens stops it, named.
pub async fn rekey(pool: &PgPool, key: &SealingKey) -> Result<usize, AccountError> {
    /// name, plugin, allowed hosts, allow private, sealed configuration, tenant.
    type Row = (String, String, Vec<String>, bool, Vec<u8>, Option<Uuid>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, plugin, allowed_hosts, allow_private, sealed_config, tenant_id
         FROM provider_accounts ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut resealed = 0;
    for (name, plugin, allowed_hosts, allow_private, sealed, tenant_id) in rows {
        let bound = binding(&name, &plugin, &allowed_hosts, allow_private, tenant_id);
        if key.open_current(&sealed, &bound).is_some() {
            continue;
        }
        let plain = key
            .open(&sealed, &bound)
            .or_else(|| key.open(&sealed, &name))
            .ok_or_else(|| AccountError::Unsealable(name.clone()))?;
        sqlx::query(
            "UPDATE provider_accounts SET sealed_config = $3, updated_at = now()
              WHERE name = $1 AND sealed_config = $2",
        )
        .bind(&name)
        .bind(&sealed)
        .bind(key.seal(&plain, &bound))
        .execute(pool)
        .await?;
        resealed += 1;
    }
    Ok(resealed)
}

/// Replaces a row's old-style blob with `resealed`, unless the row changed meanwhile.
async fn reseal(
    pool: &PgPool,
    name: &str,
    old: &[u8],
    resealed: &[u8],
) -> Result<(), AccountError> {
    tracing::info!(
        account = name,
        "provider account sealed the old way (name only): resealed with its plugin and hosts bound"
    );
    sqlx::query(
        "UPDATE provider_accounts SET sealed_config = $3 WHERE name = $1 AND sealed_config = $2",
    )
    .bind(name)
    .bind(old)
    .bind(resealed)
    .execute(pool)
    .await?;
    Ok(())
}

/// Changes when any account changes: the count and the latest `updated_at`.
pub async fn version(
    pool: &PgPool,
) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), AccountError> {
    Ok(
        sqlx::query_as("SELECT count(*), max(updated_at) FROM provider_accounts")
            .fetch_one(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn during_a_rotation_both_keys_open_and_verify_and_only_the_new_one_seals() {
        let old = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let new = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let both = new.clone().with_previous(&old);
        let by_old = old.seal(b"credentials", "sms");
        assert_eq!(
            both.open(&by_old, "sms").as_deref(),
            Some(&b"credentials"[..])
        );
        assert_eq!(both.open_current(&by_old, "sms"), None);
        assert_eq!(
            both.open(&by_old, "email"),
            None,
            "still bound to its account"
        );
        let by_both = both.seal(b"credentials", "sms");
        assert!(new.open(&by_both, "sms").is_some() && old.open(&by_both, "sms").is_none());
        let tag = old.mac("plugin", b"twilio@1");
        assert!(both.verify_mac("plugin", b"twilio@1", &tag));
        assert!(!both.verify_mac_current("plugin", b"twilio@1", &tag));
        assert!(new.verify_mac("plugin", b"twilio@1", &both.mac("plugin", b"twilio@1")));
    }

    #[test]
    fn sealed_configs_open_only_with_the_same_key_and_account() {
        let key = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let other = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let sealed = key.seal(b"{\"auth_token\":\"t0ken\"}", "twilio");
        assert!(
            !sealed.windows(5).any(|w| w == b"t0ken"),
            "stored in the clear"
        );
        assert_eq!(
            key.open(&sealed, "twilio").as_deref(),
            Some(&b"{\"auth_token\":\"t0ken\"}"[..])
        );
        assert_eq!(
            key.open(&sealed, "vonage"),
            None,
            "moved to another account"
        );
        assert_eq!(other.open(&sealed, "twilio"), None, "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&tampered, "twilio"), None);
    }

    #[test]
    fn the_binding_covers_plugin_hosts_allow_private_and_the_owner() {
        let key = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let hosts = vec!["api.twilio.com".to_owned()];
        let sealed = key.seal(b"{}", &binding("sms", "twilio", &hosts, false, None));
        assert!(
            key.open(&sealed, &binding("sms", "twilio", &hosts, false, None))
                .is_some()
        );
        for other in [
            binding("sms", "evil", &hosts, false, None),
            binding(
                "sms",
                "twilio",
                &["attacker.example".to_owned()],
                false,
                None,
            ),
            binding("sms", "twilio", &[], false, None),
            binding("sms", "twilio", &hosts, true, None),
            binding("sms2", "twilio", &hosts, false, None),
            binding("sms", "twilio", &hosts, false, Some(Uuid::from_u128(7))),
            "sms".to_owned(),
        ] {
            assert_eq!(key.open(&sealed, &other), None, "{other}");
        }
    }

    #[test]
    fn keys_must_be_32_bytes_of_hex() {
        assert!(SealingKey::from_hex("abcd").is_err());
        assert!(SealingKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(SealingKey::from_hex(&"ab".repeat(32)).is_ok());
    }

    #[test]
    fn account_names_are_url_safe() {
        assert!(valid_name("twilio-eu_2"));
        assert!(!valid_name("Twilio"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
