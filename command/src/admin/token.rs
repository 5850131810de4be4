//! The operator token of the admin API (`HERMES_ADMIN_TOKEN`).
//!
//! Whoever holds it can upload a plugin that receives every account's credentials and every
//! tenant's content, so a token that could be guessed is refused at startup, and the comparison
//! leaks nothing through timing: both sides are hashed to SHA-256 first, so the bytes compared in
//! constant time always have the same length whatever was presented.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fewest characters an admin token may have.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The configured token, kept only as its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "HERMES_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LEN} characters, it has {len}: \
     use a long random value (e.g. `openssl rand -hex 32`), or unset it to turn the admin API off"
)]
pub struct AdminTokenTooShort {
    pub len: usize,
}

impl AdminToken {
    /// Refuses a token shorter than [`MIN_ADMIN_TOKEN_LEN`] characters (an empty one included).
    pub fn new(token: &str) -> Result<Self, AdminTokenTooShort> {
        let len = token.chars().count();
        if len < MIN_ADMIN_TOKEN_LEN {
            return Err(AdminTokenTooShort { len });
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token, in time independent of how much of it matches.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_tokens_are_refused() {
        assert_eq!(
            AdminToken::new("").unwrap_err(),
            AdminTokenTooShort { len: 0 }
        );
        let short = "x".repeat(MIN_ADMIN_TOKEN_LEN - 1);
        assert_eq!(
            AdminToken::new(&short).unwrap_err(),
            AdminTokenTooShort {
                len: MIN_ADMIN_TOKEN_LEN - 1
            }
        );
        let message = AdminToken::new("").unwrap_err().to_string();
        assert!(message.contains("HERMES_ADMIN_TOKEN") && message.contains("32"));
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = "t".repeat(MIN_ADMIN_TOKEN_LEN);
        let admin = AdminToken::new(&token).unwrap();
        assert!(admin.matches(&token));
        assert!(!admin.matches(""));
        assert!(!admin.matches(&token[1..]));
        assert!(!admin.matches(&format!("{token}t")));
        assert!(!admin.matches(&"u".repeat(MIN_ADMIN_TOKEN_LEN)));
    }
}
