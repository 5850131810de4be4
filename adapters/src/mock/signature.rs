//! How the mock provider signs its receipts: `X-Mock-Signature: sha256=<hex HMAC-SHA256(secret,
//! raw body)>`, as many real providers do. The `mock` plugin verifies it (in constant time).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "X-Mock-Signature";
const SIGNATURE_PREFIX: &str = "sha256=";

/// The `X-Mock-Signature` value for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}
