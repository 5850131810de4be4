//! The service-account JWT (RS256) that Google's OAuth 2.0 token endpoint exchanges for an access
//! token: "Using OAuth 2.0 for Server to Server Applications", section "Preparing to make an
//! authorized API call" / "Creating a JWT"
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
//!
//! - header `{"alg":"RS256","typ":"JWT","kid":<private_key_id>}`
//! - claim set `{"iss":<client_email>,"scope":<scopes>,"aud":<token_uri>,"iat":now,"exp":now+3600}`
//!   (the token endpoint refuses an `exp` more than an hour after `iat`)
//! - `base64url(header) "." base64url(claims) "." base64url(RSASSA-PKCS1-v1_5-SHA256(signing input))`,
//!   base64url without padding (RFC 7515).
//!
//! Pure: the time comes in as an argument. PKCS#1 v1.5 signatures are deterministic, so no random
//! number generator is needed (nor available on `wasm32-unknown-unknown`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Serialize;
use sha2::Sha256;

/// The scope FCM HTTP v1 asks for (the spec's `security` of `fcm.projects.messages.send`).
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The longest lifetime Google accepts for the assertion.
pub const LIFETIME_SECONDS: u64 = 3600;

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// What the assertion says.
#[derive(Debug, Clone, Copy)]
pub struct AssertionInput<'a> {
    /// The service account's `client_email`.
    pub client_email: &'a str,
    /// The service account's `private_key_id` (the JWT header's `kid`; left out without one).
    pub private_key_id: Option<&'a str>,
    /// The service account's `token_uri` (the `aud` claim).
    pub token_uri: &'a str,
    pub scope: &'a str,
    /// Seconds since the Unix epoch.
    pub now_seconds: u64,
}

/// Reads the service account's `private_key`: PKCS#8 PEM (`BEGIN PRIVATE KEY`, what Google issues);
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`) is accepted too.
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let pem = pem.trim();
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        // The error names the encoding problem only, never the key's content.
        .map_err(|err| format!("the service account's private_key is not an RSA PEM key: {err}"))
}

/// `base64url(header) "." base64url(claims)`: the part the signature covers.
pub fn signing_input(input: &AssertionInput<'_>) -> String {
    let header = Header {
        alg: "RS256",
        typ: "JWT",
        kid: input.private_key_id,
    };
    let claims = Claims {
        iss: input.client_email,
        scope: input.scope,
        aud: input.token_uri,
        iat: input.now_seconds,
        exp: input.now_seconds + LIFETIME_SECONDS,
    };
    // Serializing these plain structs cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let claims = serde_json::to_vec(&claims).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// The signed JWT (RS256). Fails only if the key cannot sign (a key `parse_private_key` accepted
/// always can).
pub fn assertion(input: &AssertionInput<'_>, key: &RsaPrivateKey) -> Result<String, String> {
    let signing_input = signing_input(input);
    let signature = SigningKey::<Sha256>::new(key.clone())
        .try_sign(signing_input.as_bytes())
        .map_err(|err| format!("cannot sign the token request with the private_key: {err}"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPublicKey;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::signature::Verifier as _;

    pub const TEST_KEY: &str = include_str!("../tests/fixtures/test-service-account-key.pem");
    const TEST_PUBLIC_KEY: &str =
        include_str!("../tests/fixtures/test-service-account-key.pub.pem");
    /// Signed by `openssl dgst -sha256 -sign` over the signing input of `input()`.
    const EXPECTED: &str = include_str!("../tests/fixtures/expected-assertion.jwt");

    fn input() -> AssertionInput<'static> {
        AssertionInput {
            client_email: "hermes-test@example-project.iam.gserviceaccount.com",
            private_key_id: Some("0123456789abcdef0123456789abcdef01234567"),
            token_uri: "https://oauth2.googleapis.com/token",
            scope: FCM_SCOPE,
            now_seconds: 1_700_000_000,
        }
    }

    fn decode_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn verify(jwt: &str) -> bool {
        let public = RsaPublicKey::from_public_key_pem(TEST_PUBLIC_KEY).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(public);
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(signature.as_slice()) else {
            return false;
        };
        verifier.verify(signed.as_bytes(), &signature).is_ok()
    }

    #[test]
    fn the_assertion_has_googles_header_and_claims() {
        let key = parse_private_key(TEST_KEY).unwrap();
        let jwt = assertion(&input(), &key).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='), "base64url without padding");
        assert_eq!(
            decode_json(parts[0]),
            serde_json::json!({
                "alg": "RS256",
                "typ": "JWT",
                "kid": "0123456789abcdef0123456789abcdef01234567",
            })
        );
        assert_eq!(
            decode_json(parts[1]),
            serde_json::json!({
                "iss": "hermes-test@example-project.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/firebase.messaging",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        // A 2048-bit key gives a 256-byte signature.
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
    }

    #[test]
    fn the_signature_verifies_with_the_public_key() {
        let key = parse_private_key(TEST_KEY).unwrap();
        let jwt = assertion(&input(), &key).unwrap();
        assert!(verify(&jwt));
    }

    #[test]
    fn the_signature_matches_openssls() {
        let key = parse_private_key(TEST_KEY).unwrap();
        assert_eq!(assertion(&input(), &key).unwrap(), EXPECTED.trim());
    }

    #[test]
    fn a_tampered_assertion_does_not_verify() {
        let key = parse_private_key(TEST_KEY).unwrap();
        let jwt = assertion(&input(), &key).unwrap();
        let (_, signature) = jwt.rsplit_once('.').unwrap();
        // Other claims under the same signature.
        let other = AssertionInput {
            client_email: "attacker@example.com",
            ..input()
        };
        assert!(!verify(&format!("{}.{signature}", signing_input(&other))));
        // A flipped signature bit.
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 1;
        let (signed, _) = jwt.rsplit_once('.').unwrap();
        assert!(!verify(&format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )));
        // A later time changes the claims, and so the signature.
        let later = AssertionInput {
            now_seconds: 1_700_000_001,
            ..input()
        };
        assert_ne!(assertion(&later, &key).unwrap(), jwt);
    }

    #[test]
    fn without_a_key_id_the_header_has_no_kid() {
        let input = AssertionInput {
            private_key_id: None,
            ..input()
        };
        let signing_input = signing_input(&input);
        let (header, _) = signing_input.split_once('.').unwrap();
        assert_eq!(
            decode_json(header),
            serde_json::json!({"alg": "RS256", "typ": "JWT"})
        );
    }

    #[test]
    fn a_bad_key_is_an_error_that_does_not_echo_it() {
        let err = parse_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .unwrap_err();
        assert!(err.contains("private_key"));
        assert!(!err.contains("AAAA"));
        assert!(parse_private_key("").is_err());
    }
}
