//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): a `whsec_` secret is base64
//! of the key; `webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! one per secret still valid, separated by spaces, so receivers verify with the spec's own
//! libraries, across a rotation too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";

/// A new secret: 32 random bytes, as `whsec_` + base64.
pub fn generate() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The key inside a `whsec_` secret.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(PREFIX)?)
        .ok()
        .filter(|k| !k.is_empty())
}

/// One `v1,` signature.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: a signature per key, the current one first.
pub fn header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference tests
    /// (standard-webhooks/libraries, `python/tests/test_webhooks.py`-style vector).
    #[test]
    fn signs_as_the_specification_does() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_generated_secret_holds_a_32_byte_key_and_a_bad_one_none() {
        let secret = generate();
        assert!(secret.starts_with(PREFIX));
        assert_eq!(key_of(&secret).unwrap().len(), 32);
        assert_eq!(key_of("whsec_"), None);
        assert_eq!(key_of("not-a-secret"), None);
        assert_eq!(key_of("whsec_***"), None);
    }

    #[test]
    fn a_rotation_sends_both_signatures_current_first() {
        let (a, b) = (vec![1u8; 32], vec![2u8; 32]);
        let h = header(&[a.clone(), b.clone()], "id", 1, b"{}");
        assert_eq!(
            h,
            format!("{} {}", sign(&a, "id", 1, b"{}"), sign(&b, "id", 1, b"{}"))
        );
    }
}
