//! Provider accounts as stored: which plugin serves each, the hosts it may reach, and its
//! configuration, whose values (credentials among them) are sealed at rest with
//! ChaCha20-Poly1305 under the deployment's [`SealingKey`].

use crate::Secret;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::PgPool;
use std::collections::BTreeMap;

/// The key provider configurations are sealed with: 32 bytes, given as 64 hex characters
/// (`HERMES_SECRET_KEY`). Never printed.
#[derive(Clone)]
pub struct SealingKey(Secret<[u8; 32]>);

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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl SealingKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, AccountError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| AccountError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| AccountError::BadKey)?;
        Ok(Self(Secret::new(key)))
    }

    /// A fresh random key, as hex (for `hermes dev` and first setup).
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random source works");
        hex::encode(key)
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, self.0.expose()).expect("32 bytes is the key size"),
        )
    }

    /// `nonce || ciphertext || tag`; `aad` binds the blob to its account.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut in_out = plaintext.to_vec();
        self.aead()
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
        hmac::sign(&self.mac_key(purpose), message)
            .as_ref()
            .to_vec()
    }

    /// Whether `tag` is [`Self::mac`] of `message`, compared in constant time.
    pub fn verify_mac(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.mac_key(purpose), message, tag).is_ok()
    }

    fn mac_key(&self, purpose: &str) -> hmac::Key {
        let master = hmac::Key::new(hmac::HMAC_SHA256, self.0.expose());
        let derived = hmac::sign(&master, purpose.as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    pub fn open(&self, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The associated data a configuration is sealed with: everything that decides where its
/// credentials go (the account, the plugin that receives them, the hosts it may reach and
/// whether private addresses are allowed). Someone who can write the table but does not hold the
/// key cannot point sealed credentials at another plugin or host: the blob no longer opens.
fn binding(name: &str, plugin: &str, allowed_hosts: &[String], allow_private: bool) -> String {
    serde_json::to_string(&(
        "hermes-account/2",
        name,
        plugin,
        allowed_hosts,
        allow_private,
    ))
    .expect("strings and a bool always serialize")
}

/// One provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub name: String,
    /// The plugin that serves it (`twilio`, `ses`...).
    pub plugin: String,
    pub priority: i32,
    pub allowed_hosts: Vec<String>,
    pub allow_private: bool,
    /// Base URL, credentials...: what the plugin's `config` import returns.
    pub config: BTreeMap<String, Secret<String>>,
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
        ),
    );
    sqlx::query(
        "INSERT INTO provider_accounts (name, plugin, priority, allowed_hosts, allow_private, sealed_config)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET plugin = EXCLUDED.plugin, priority = EXCLUDED.priority,
             allowed_hosts = EXCLUDED.allowed_hosts, allow_private = EXCLUDED.allow_private,
             sealed_config = EXCLUDED.sealed_config, updated_at = clock_timestamp()",
    )
    .bind(&account.name)
    .bind(&account.plugin)
    .bind(account.priority)
    .bind(&account.allowed_hosts)
    .bind(account.allow_private)
    .bind(sealed)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<bool, AccountError> {
    let done = sqlx::query("DELETE FROM provider_accounts WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

type Row = (String, String, i32, Vec<String>, bool, Vec<u8>);

/// Every account, in priority order, configurations opened.
///
/// Rows sealed before the plugin, hosts and `allow_private` were bound (their associated data was
/// the name alone) still open, and are resealed with the full binding on the spot, so every row
/// is upgraded by the first reload of a process holding the key.
pub async fn list(pool: &PgPool, key: &SealingKey) -> Result<Vec<ProviderAccount>, AccountError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, plugin, priority, allowed_hosts, allow_private, sealed_config
         FROM provider_accounts ORDER BY priority, name",
    )
    .fetch_all(pool)
    .await?;
    let mut accounts = Vec::with_capacity(rows.len());
    for (name, plugin, priority, allowed_hosts, allow_private, sealed) in rows {
        let bound = binding(&name, &plugin, &allowed_hosts, allow_private);
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
        });
    }
    Ok(accounts)
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
    fn the_binding_covers_plugin_hosts_and_allow_private() {
        let key = SealingKey::from_hex(&SealingKey::generate_hex()).unwrap();
        let hosts = vec!["api.twilio.com".to_owned()];
        let sealed = key.seal(b"{}", &binding("sms", "twilio", &hosts, false));
        assert!(
            key.open(&sealed, &binding("sms", "twilio", &hosts, false))
                .is_some()
        );
        for other in [
            binding("sms", "evil", &hosts, false),
            binding("sms", "twilio", &["attacker.example".to_owned()], false),
            binding("sms", "twilio", &[], false),
            binding("sms", "twilio", &hosts, true),
            binding("sms2", "twilio", &hosts, false),
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
