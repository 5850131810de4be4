//! Vonage SMS delivery receipts (the spec's `delivery-receipt` callback, schema
//! `DeliveryReceipt`) and their signatures.
//!
//! Vonage calls the `callback` URL (or the account's default webhook) as a GET with the fields in
//! the query, or a POST with them form-encoded or as a JSON object, depending on the account's
//! webhook setting. With signed webhooks enabled the fields include `sig`, `timestamp` and `nonce`.
//!
//! The signature ("Signing messages", <https://developer.vonage.com/getting-started/concepts/signing-messages>,
//! and Vonage's SDKs, e.g. vonage-ruby-sdk `Vonage::Signature`): every parameter but `sig`, sorted
//! by name, each value with `&` and `=` replaced by `_`, concatenated as `&name=value...`; then
//! - `md5hash` (the dashboard's default, "MD5 hash"): hex(MD5(that string + signature secret));
//! - `md5`, `sha1`, `sha256`, `sha512`: hex(HMAC-<hash>(signature secret, that string)).
//!
//! Hex digits are compared case-insensitively (Vonage's HMAC signatures are upper case, MD5 hash
//! ones lower case), in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The parameter carrying the signature.
pub const SIG: &str = "sig";

/// The dashboard's signature methods, by the names Vonage's SDKs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// "MD5 hash": MD5 of the string followed by the secret (the documented default).
    Md5Hash,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl SignatureMethod {
    /// `signature_method` from config: `md5hash` (default when unset), `md5`, `sha1`, `sha256`,
    /// `sha512` (case-insensitive; `hmac-`/`hmac_` prefixes and `sha-256`-style spellings are
    /// accepted). `None` for anything else.
    pub fn from_config(value: Option<&str>) -> Option<Self> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Some(SignatureMethod::Md5Hash);
        };
        let value = value.to_ascii_lowercase();
        let value = value
            .strip_prefix("hmac-")
            .or_else(|| value.strip_prefix("hmac_"))
            .unwrap_or(&value)
            .replace('-', "");
        Some(match value.as_str() {
            "md5hash" | "md5_hash" => SignatureMethod::Md5Hash,
            "md5" => SignatureMethod::Md5,
            "sha1" => SignatureMethod::Sha1,
            "sha256" => SignatureMethod::Sha256,
            "sha512" => SignatureMethod::Sha512,
            _ => return None,
        })
    }
}

/// The string Vonage signs: `&name=value` for every parameter but `sig`, sorted by name, with `&`
/// and `=` in values replaced by `_`.
pub fn signing_string(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != SIG).collect();
    sorted.sort();
    let mut out = String::new();
    for (name, value) in sorted {
        out.push('&');
        out.push_str(name);
        out.push('=');
        out.extend(
            value
                .chars()
                .map(|c| if c == '&' || c == '=' { '_' } else { c }),
        );
    }
    out
}

fn hmac_tag<M: Mac + hmac::digest::KeyInit>(secret: &str, data: &str) -> M {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac
}

/// The signature Vonage computes for `params` (hex, upper case for HMACs as Vonage sends them,
/// lower case for `md5hash`): for the tests.
#[cfg(test)]
pub fn sign(secret: &str, method: SignatureMethod, params: &[(String, String)]) -> String {
    let data = signing_string(params);
    match method {
        SignatureMethod::Md5Hash => {
            let mut md5 = Md5::new();
            md5.update(data.as_bytes());
            md5.update(secret.as_bytes());
            hex::encode(md5.finalize())
        }
        SignatureMethod::Md5 => {
            hex::encode_upper(hmac_tag::<Hmac<Md5>>(secret, &data).finalize().into_bytes())
        }
        SignatureMethod::Sha1 => hex::encode_upper(
            hmac_tag::<Hmac<Sha1>>(secret, &data)
                .finalize()
                .into_bytes(),
        ),
        SignatureMethod::Sha256 => hex::encode_upper(
            hmac_tag::<Hmac<Sha256>>(secret, &data)
                .finalize()
                .into_bytes(),
        ),
        SignatureMethod::Sha512 => hex::encode_upper(
            hmac_tag::<Hmac<Sha512>>(secret, &data)
                .finalize()
                .into_bytes(),
        ),
    }
}

/// Whether `params` carry a `sig` that signs the others with `secret` by `method`, compared in
/// constant time. False without a secret, without a `sig`, or when a name appears twice (which
/// value was signed would be ambiguous).
pub fn verify(secret: &str, method: SignatureMethod, params: &[(String, String)]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return false;
    }
    let Some(tag) = params
        .iter()
        .find(|(k, _)| k == SIG)
        .and_then(|(_, v)| hex::decode(v.trim()).ok())
    else {
        return false;
    };
    let data = signing_string(params);
    match method {
        SignatureMethod::Md5Hash => {
            let mut md5 = Md5::new();
            md5.update(data.as_bytes());
            md5.update(secret.as_bytes());
            let expected = md5.finalize();
            // `ct_eq` on slices of different lengths is false (the length is not secret).
            bool::from(expected.as_slice().ct_eq(&tag))
        }
        SignatureMethod::Md5 => hmac_tag::<Hmac<Md5>>(secret, &data)
            .verify_slice(&tag)
            .is_ok(),
        SignatureMethod::Sha1 => hmac_tag::<Hmac<Sha1>>(secret, &data)
            .verify_slice(&tag)
            .is_ok(),
        SignatureMethod::Sha256 => hmac_tag::<Hmac<Sha256>>(secret, &data)
            .verify_slice(&tag)
            .is_ok(),
        SignatureMethod::Sha512 => hmac_tag::<Hmac<Sha512>>(secret, &data)
            .verify_slice(&tag)
            .is_ok(),
    }
}

/// The query of a URL (without its fragment), form-decoded.
fn query_params(url: &str) -> Vec<(String, String)> {
    let without_fragment = url.split('#').next().unwrap_or("");
    match without_fragment.split_once('?') {
        Some((_, query)) => form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        None => Vec::new(),
    }
}

fn is_json(headers: &[(String, String)], body: &[u8]) -> bool {
    let declared = hermes_guest_kit::header(headers, "content-type").map(str::to_ascii_lowercase);
    match declared {
        Some(ct) if ct.contains("json") => true,
        Some(ct) if ct.contains("x-www-form-urlencoded") => false,
        _ => matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        ),
    }
}

/// The receipt's fields: the query of a GET; the body of a POST (a JSON object or a form; the
/// query when the body is empty). `None` when a JSON body is not a flat object (nothing to
/// verify: the caller rejects it as unsigned).
pub fn callback_params(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    if !method.eq_ignore_ascii_case("POST") || body.iter().all(u8::is_ascii_whitespace) {
        return Some(query_params(url));
    }
    if !is_json(headers, body) {
        return Some(form_urlencoded::parse(body).into_owned().collect());
    }
    let serde_json::Value::Object(object) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    object
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => return None,
            };
            Some((name, value))
        })
        .collect()
}

pub use hermes_guest_kit::Status;

/// What one receipt says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: Status,
    /// `messageId`: the Vonage id of the (part of the) message.
    pub provider_message_id: Option<String>,
    /// `(code, message)` for a failure.
    pub error: Option<(String, String)>,
    /// `client-ref` split into `(message-id, attempt-id)`, when it has that shape.
    pub reference: Option<(String, String)>,
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `client-ref` as the plugin sets it: `<message-id>:<attempt-id>`.
pub fn parse_client_ref(value: &str) -> Option<(String, String)> {
    let (message_id, attempt_id) = value.trim().split_once(':')?;
    let ok =
        |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (ok(message_id) && ok(attempt_id)).then(|| (message_id.to_owned(), attempt_id.to_owned()))
}

/// The DLR `err-code` meanings (Vonage, "SMS Delivery Error Codes").
fn describe_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "1" => "Unknown: not delivered and no cause could be determined",
        "2" => "Absent Subscriber - Temporary",
        "3" => "Absent Subscriber - Permanent",
        "4" => "Call Barred by User",
        "5" => "Portability Error",
        "6" => "Anti-Spam Rejection",
        "7" => "Handset Busy",
        "8" => "Network Error",
        "9" => "Illegal Number",
        "10" => "Illegal Message",
        "11" => "Unroutable",
        "12" => "Destination Unreachable",
        "13" => "Subscriber Age Restriction",
        "14" => "Number Blocked by Carrier",
        "15" => "Pre-Paid Insufficient Funds",
        "99" => "General Error",
        _ => return None,
    })
}

/// The receipt a verified callback carries: `Ok(None)` for statuses that are not news to Hermes
/// (`accepted`, `buffered`, `unknown`, anything new).
pub fn interpret(params: &[(String, String)]) -> Result<Option<Parsed>, String> {
    let status = param(params, "status").ok_or("the delivery receipt has no status")?;
    let status = match status.to_ascii_lowercase().as_str() {
        "delivered" => Status::Delivered,
        "expired" | "failed" | "rejected" => Status::Failed,
        _ => return Ok(None),
    };
    let error = (status == Status::Failed).then(|| {
        let vonage_status = param(params, "status")
            .unwrap_or("failed")
            .to_ascii_lowercase();
        let code = param(params, "err-code").filter(|c| *c != "0");
        let message = match code.and_then(describe_error) {
            Some(what) => format!("{what} ({vonage_status})"),
            None => format!("Vonage reported the message {vonage_status}"),
        };
        let code = format!("vonage_{}", code.unwrap_or(&vonage_status));
        (code, message)
    });
    Ok(Some(Parsed {
        status,
        provider_message_id: param(params, "messageId").map(str::to_owned),
        error,
        reference: param(params, "client-ref").and_then(parse_client_ref),
    }))
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid signature (or no secret / an unknown method configured to check one).
    InvalidSignature,
    /// Signed, but the signature's `timestamp` is missing or outside the window: a replay.
    Stale,
    Malformed(String),
}

/// A verified receipt, with the attempt it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReceipt {
    pub message_id: String,
    pub attempt_id: String,
    pub parsed: Parsed,
}

/// A callback as the host hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// Now, in seconds since the Unix epoch (the host's clock).
    pub now_secs: u64,
}

/// How old a signed callback's `timestamp` may be: Vonage signs each request when it sends it,
/// so an older one is a replay. Five minutes, plus [`CLOCK_SKEW_SECS`] either way.
pub const MAX_AGE_SECS: u64 = 5 * 60;
/// How far Vonage's clock and ours may disagree.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Whether a signed `timestamp` (seconds since the epoch) is fresh at `now`.
pub fn fresh(timestamp: Option<&str>, now: u64) -> bool {
    timestamp
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t <= now + CLOCK_SKEW_SECS && now <= t + MAX_AGE_SECS + CLOCK_SKEW_SECS)
}

/// The whole callback: read the fields, verify the signature (before anything else is looked
/// at) and its freshness, then the receipt and the attempt it names. The attempt comes from the
/// signed `client-ref` only, never from the URL (its path is not signed: a captured receipt
/// could be replayed onto another attempt's URL); Hermes checks that a per-attempt URL's ids
/// are the receipt's. `Ok(None)` for a verified receipt with a status Hermes does not track.
/// The request's parameters, once its signature is checked (in constant time) and its signed
/// `timestamp` found fresh: what every signed webhook of Vonage's needs first.
pub fn verified_params(
    secret: &str,
    method: Option<SignatureMethod>,
    incoming: &Incoming<'_>,
) -> Result<Vec<(String, String)>, Refusal> {
    let method = method.ok_or(Refusal::InvalidSignature)?;
    let params = callback_params(
        incoming.method,
        incoming.url,
        incoming.headers,
        incoming.body,
    )
    .ok_or(Refusal::InvalidSignature)?;
    if !verify(secret.trim(), method, &params) {
        return Err(Refusal::InvalidSignature);
    }
    if !fresh(param(&params, "timestamp"), incoming.now_secs) {
        return Err(Refusal::Stale);
    }
    Ok(params)
}

pub fn handle(
    secret: &str,
    method: Option<SignatureMethod>,
    incoming: Incoming<'_>,
) -> Result<Option<AttemptReceipt>, Refusal> {
    let params = verified_params(secret, method, &incoming)?;
    let Some(parsed) = interpret(&params).map_err(Refusal::Malformed)? else {
        return Ok(None);
    };
    let (message_id, attempt_id) = parsed.reference.clone().ok_or_else(|| {
        Refusal::Malformed(
            "the delivery receipt names no attempt: its client-ref is not \
             <message-id>:<attempt-id>"
                .to_owned(),
        )
    })?;
    Ok(Some(AttemptReceipt {
        message_id,
        attempt_id,
        parsed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use hermes_guest_kit::pairs;

    fn with(params: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != name).cloned().collect();
        out.push((name.to_owned(), value.to_owned()));
        out
    }

    /// The test vectors of Vonage's Ruby SDK (`test/vonage/signature_test.rb`): an inbound-SMS
    /// webhook signed with every method.
    #[test]
    fn vonages_sdk_vectors_verify() {
        let secret = "my_secret_key_for_testing";
        let params = pairs(&[
            ("message-timestamp", "2013-11-21 15:27:30"),
            ("messageId", "020000001B0FE827"),
            ("msisdn", "14843472194"),
            ("text", "Test again"),
            ("timestamp", "1385047698"),
            ("to", "13239877404"),
            ("type", "text"),
        ]);
        let vectors = [
            (SignatureMethod::Md5Hash, "d2e7b1dc968737c5998ad624e02f90b7"),
            (SignatureMethod::Md5, "DDEBD46008C2D4E93CCE578A332A52D5"),
            (
                SignatureMethod::Sha1,
                "27D0D05C2876C7CB1720DBCDBA4D492E1E55C09A",
            ),
            (
                SignatureMethod::Sha256,
                "DDB8397C2B90AAC7F3882D306475C9A5058C92322EEF43C92B298B6E0FC0D330",
            ),
            (
                SignatureMethod::Sha512,
                "E0D3C650F8C9D1A5C174D10DDDBFB003E561F59B265616208B0487C5D819481CD3C311D59CF6165ECD1139622D5BA3A256C0D763AC4A9AD9144B5A426B94FE82",
            ),
        ];
        for (method, sig) in vectors {
            assert_eq!(sign(secret, method, &params), sig, "{method:?}");
            let signed = with(&params, SIG, sig);
            assert!(verify(secret, method, &signed), "{method:?}");
            // Case does not matter; the order the fields came in does not either.
            let mut lower = with(&params, SIG, &sig.to_ascii_lowercase());
            lower.reverse();
            assert!(verify(secret, method, &lower), "{method:?}");
            // Tampered value, wrong secret, wrong method, bad or missing sig: refused.
            let tampered = with(&signed, "text", "Test agaiN");
            assert!(!verify(secret, method, &tampered), "{method:?}");
            assert!(!verify("other", method, &signed), "{method:?}");
            assert!(!verify("", method, &signed), "{method:?}");
            assert!(
                !verify(secret, method, &with(&params, SIG, "xxx")),
                "{method:?}"
            );
            assert!(!verify(secret, method, &params), "{method:?}");
            let other = if method == SignatureMethod::Sha256 {
                SignatureMethod::Md5Hash
            } else {
                SignatureMethod::Sha256
            };
            assert!(!verify(secret, other, &signed), "{method:?}");
        }
    }

    /// The vector in Vonage's Python, Ruby and PHP SDK tests: `a=1`, `b=2`,
    /// `timestamp=1461605396`, secret `secret`, MD5 hash `6af838ef94998832dbfc29020b564830`.
    #[test]
    fn the_classic_md5hash_vector_verifies() {
        let params = pairs(&[
            ("a", "1"),
            ("b", "2"),
            ("timestamp", "1461605396"),
            ("sig", "6af838ef94998832dbfc29020b564830"),
        ]);
        assert_eq!(signing_string(&params), "&a=1&b=2&timestamp=1461605396");
        assert!(verify("secret", SignatureMethod::Md5Hash, &params));
        assert!(!verify(
            "secret",
            SignatureMethod::Md5Hash,
            &with(&params, "b", "3")
        ));
        // An extra field that was not signed breaks it too.
        assert!(!verify(
            "secret",
            SignatureMethod::Md5Hash,
            &with(&params, "c", "3")
        ));
    }

    #[test]
    fn ampersands_and_equals_in_values_become_underscores() {
        let params = pairs(&[("k", "a&b=c"), ("j", "_")]);
        assert_eq!(signing_string(&params), "&j=_&k=a_b_c");
        let sig = sign("s", SignatureMethod::Sha256, &params);
        let swapped = with(&with(&params, "k", "a_b_c"), SIG, &sig);
        assert!(verify("s", SignatureMethod::Sha256, &swapped));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let params = pairs(&[("status", "delivered"), ("timestamp", "1")]);
        let sig = sign("s", SignatureMethod::Sha256, &params);
        let mut doubled = with(&params, SIG, &sig);
        doubled.push(("status".to_owned(), "failed".to_owned()));
        assert!(!verify("s", SignatureMethod::Sha256, &doubled));
    }

    #[test]
    fn signature_methods_from_config() {
        assert_eq!(
            SignatureMethod::from_config(None),
            Some(SignatureMethod::Md5Hash)
        );
        assert_eq!(
            SignatureMethod::from_config(Some(" ")),
            Some(SignatureMethod::Md5Hash)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("md5hash")),
            Some(SignatureMethod::Md5Hash)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("md5")),
            Some(SignatureMethod::Md5)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("SHA1")),
            Some(SignatureMethod::Sha1)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("sha256")),
            Some(SignatureMethod::Sha256)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("HMAC-SHA256")),
            Some(SignatureMethod::Sha256)
        );
        assert_eq!(
            SignatureMethod::from_config(Some("sha-512")),
            Some(SignatureMethod::Sha512)
        );
        assert_eq!(SignatureMethod::from_config(Some("rsa")), None);
    }

    /// The spec's `DeliveryReceipt` example values, as a signed JSON POST, a form POST and a GET.
    #[test]
    fn the_documented_receipt_parses_from_every_transport() {
        let json = br#"{
            "api-key": "abcd1234",
            "client-ref": "my-personal-reference",
            "err-code": "0",
            "message-timestamp": "2025-10-15T13:51:56.361Z",
            "messageId": "0A0000001234567B",
            "msisdn": "447700900000",
            "network-code": "12345",
            "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
            "price": "0.03330000",
            "scts": "2001011400",
            "status": "delivered",
            "timestamp": "1582650446",
            "to": "AcmeInc"
        }"#;
        let json_headers = pairs(&[("Content-Type", "application/json")]);
        let from_json = callback_params("POST", "https://h/x", &json_headers, json).unwrap();
        assert_eq!(from_json.len(), 13);
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(from_json.iter())
            .finish();
        let form_headers = pairs(&[("content-type", "application/x-www-form-urlencoded")]);
        let mut from_form =
            callback_params("POST", "https://h/x", &form_headers, form.as_bytes()).unwrap();
        let mut from_get =
            callback_params("GET", &format!("https://h/x?{form}#frag"), &[], b"").unwrap();
        let mut sorted_json = from_json.clone();
        sorted_json.sort();
        from_form.sort();
        from_get.sort();
        assert_eq!(from_form, sorted_json);
        assert_eq!(from_get, sorted_json);
        // Without a content type, a JSON object is recognized.
        assert_eq!(
            callback_params("POST", "https://h/x", &[], json).unwrap(),
            from_json
        );

        // Signed with the dashboard's default method and with HMAC-SHA256.
        for method in [SignatureMethod::Md5Hash, SignatureMethod::Sha256] {
            let sig = sign("sig-secret", method, &from_json);
            let signed = with(&from_json, SIG, &sig);
            assert!(verify("sig-secret", method, &signed));
            assert!(!verify(
                "sig-secret",
                method,
                &with(&signed, "status", "failed")
            ));
        }

        let parsed = interpret(&from_json).unwrap().unwrap();
        assert_eq!(parsed.status, Status::Delivered);
        assert_eq!(
            parsed.provider_message_id.as_deref(),
            Some("0A0000001234567B")
        );
        assert_eq!(parsed.error, None);
        // "my-personal-reference" is not a Hermes reference.
        assert_eq!(parsed.reference, None);
    }

    #[test]
    fn nested_json_is_not_a_receipt() {
        assert_eq!(
            callback_params("POST", "https://h/x", &[], br#"{"a":{"b":1}}"#),
            None
        );
        assert_eq!(
            callback_params("POST", "https://h/x", &[], b"{not json"),
            None
        );
        assert_eq!(callback_params("POST", "https://h/x", &[], br#"[1]"#), None);
        // Numbers are read as their text.
        assert_eq!(
            callback_params("POST", "https://h/x", &[], br#"{"err-code":0}"#),
            Some(pairs(&[("err-code", "0")]))
        );
    }

    #[test]
    fn statuses_map_to_receipts() {
        let status_of = |s: &str| {
            interpret(&pairs(&[
                ("messageId", "M"),
                ("status", s),
                ("err-code", "0"),
            ]))
            .unwrap()
            .map(|p| p.status)
        };
        assert_eq!(status_of("delivered"), Some(Status::Delivered));
        assert_eq!(status_of("expired"), Some(Status::Failed));
        assert_eq!(status_of("failed"), Some(Status::Failed));
        assert_eq!(status_of("rejected"), Some(Status::Failed));
        assert_eq!(status_of("accepted"), None);
        assert_eq!(status_of("buffered"), None);
        assert_eq!(status_of("unknown"), None);
        assert_eq!(status_of("something-new"), None);
        assert!(interpret(&pairs(&[("messageId", "M")])).is_err());
    }

    #[test]
    fn failures_carry_the_err_code() {
        let parsed = interpret(&pairs(&[
            ("messageId", "0B00000127FDBC63"),
            ("status", "failed"),
            ("err-code", "3"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.error,
            Some((
                "vonage_3".to_owned(),
                "Absent Subscriber - Permanent (failed)".to_owned()
            ))
        );
        let parsed = interpret(&pairs(&[("status", "rejected"), ("err-code", "6")]))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.error.unwrap().0, "vonage_6");
        let parsed = interpret(&pairs(&[("status", "expired"), ("err-code", "77")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.error,
            Some((
                "vonage_77".to_owned(),
                "Vonage reported the message expired".to_owned()
            ))
        );
        // No (or a zero) err-code: the status names the failure.
        let parsed = interpret(&pairs(&[("status", "expired")]))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.error.unwrap().0, "vonage_expired");
    }

    #[test]
    fn client_refs_name_the_message_and_attempt() {
        let m = "0b5a2f4e-8a52-4a43-9d5e-6b8f1c2d3e4f";
        let a = "7c1d9e2a-3b4c-4d5e-8f60-718293a4b5c6";
        assert_eq!(
            parse_client_ref(&format!("{m}:{a}")),
            Some((m.to_owned(), a.to_owned()))
        );
        assert_eq!(parse_client_ref("my-personal-reference"), None);
        assert_eq!(parse_client_ref(":x"), None);
        assert_eq!(parse_client_ref("a:b:c"), None);
        let parsed = interpret(&pairs(&[
            ("status", "delivered"),
            ("client-ref", &format!("{m}:{a}")),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.reference, Some((m.to_owned(), a.to_owned())));
    }

    fn signed_form(secret: &str, method: SignatureMethod, fields: &[(&str, &str)]) -> Vec<u8> {
        let params = pairs(fields);
        let sig = sign(secret, method, &params);
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .append_pair(SIG, &sig)
            .finish()
            .into_bytes()
    }

    /// The signed `timestamp` of the test receipts, and a moment shortly after it.
    const SIGNED_AT: u64 = 1_582_650_446;
    const NOW: u64 = SIGNED_AT + 30;

    fn incoming<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            method: "POST",
            url: "https://hermes.example/v1/webhooks/vonage",
            headers,
            body,
            now_secs: NOW,
        }
    }

    #[test]
    fn only_fresh_timestamps_pass() {
        let at = SIGNED_AT.to_string();
        assert!(fresh(Some(&at), SIGNED_AT));
        assert!(fresh(Some(&at), SIGNED_AT + MAX_AGE_SECS + CLOCK_SKEW_SECS));
        assert!(!fresh(
            Some(&at),
            SIGNED_AT + MAX_AGE_SECS + CLOCK_SKEW_SECS + 1
        ));
        // Vonage's clock a little ahead of ours is fine; far ahead is not.
        assert!(fresh(Some(&at), SIGNED_AT - CLOCK_SKEW_SECS));
        assert!(!fresh(Some(&at), SIGNED_AT - CLOCK_SKEW_SECS - 1));
        assert!(!fresh(None, SIGNED_AT));
        assert!(!fresh(Some("yesterday"), SIGNED_AT));
        assert!(!fresh(Some("-1"), SIGNED_AT));
    }

    #[test]
    fn handle_verifies_first_then_correlates() {
        let m = "0b5a2f4e-8a52-4a43-9d5e-6b8f1c2d3e4f";
        let a = "7c1d9e2a-3b4c-4d5e-8f60-718293a4b5c6";
        let reference = format!("{m}:{a}");
        let fields = [
            ("msisdn", "447700900000"),
            ("to", "AcmeInc"),
            ("network-code", "12345"),
            ("messageId", "0A0000001234567B"),
            ("price", "0.03330000"),
            ("status", "failed"),
            ("scts", "2001011400"),
            ("err-code", "4"),
            ("api-key", "abcd1234"),
            ("client-ref", reference.as_str()),
            ("message-timestamp", "2025-10-15T13:51:56.361Z"),
            ("timestamp", "1582650446"),
            ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
        ];
        let md5hash = Some(SignatureMethod::Md5Hash);
        let body = signed_form("secret", SignatureMethod::Md5Hash, &fields);
        let headers = pairs(&[("content-type", "application/x-www-form-urlencoded")]);

        // The attempt comes from the signed client-ref, whatever URL the receipt came to.
        let receipt = handle("secret", md5hash, incoming(&headers, &body))
            .unwrap()
            .unwrap();
        assert_eq!(
            (receipt.message_id.as_str(), receipt.attempt_id.as_str()),
            (m, a)
        );
        assert_eq!(receipt.parsed.status, Status::Failed);
        assert_eq!(receipt.parsed.error.as_ref().unwrap().0, "vonage_4");
        let mut elsewhere = incoming(&headers, &body);
        elsewhere.url = "https://hermes.example/v1/webhooks/vonage/M/A";
        let receipt = handle("secret", md5hash, elsewhere).unwrap().unwrap();
        assert_eq!(
            (receipt.message_id.as_str(), receipt.attempt_id.as_str()),
            (m, a)
        );
        // The same signed receipt replayed after the window: refused.
        let mut later = incoming(&headers, &body);
        later.now_secs = SIGNED_AT + MAX_AGE_SECS + CLOCK_SKEW_SECS + 1;
        assert_eq!(handle("secret", md5hash, later), Err(Refusal::Stale));

        // No secret, another secret, another method, no method: refused.
        for (secret, method) in [
            ("", md5hash),
            ("other", md5hash),
            ("secret", Some(SignatureMethod::Sha256)),
            ("secret", None),
        ] {
            assert_eq!(
                handle(secret, method, incoming(&headers, &body)),
                Err(Refusal::InvalidSignature)
            );
        }
        // Tampered: the status changed after signing.
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("status=failed", "status=delivered");
        assert_eq!(
            handle("secret", md5hash, incoming(&headers, tampered.as_bytes())),
            Err(Refusal::InvalidSignature)
        );
        // Unsigned.
        let unsigned = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        assert_eq!(
            handle("secret", md5hash, incoming(&headers, unsigned.as_bytes())),
            Err(Refusal::InvalidSignature)
        );
        // Unparseable JSON is unsigned too: nothing unauthenticated gets a detailed answer.
        let json = pairs(&[("content-type", "application/json")]);
        assert_eq!(
            handle("secret", md5hash, incoming(&json, b"{oops")),
            Err(Refusal::InvalidSignature)
        );

        // Signed, but no attempt anywhere: malformed.
        let body = signed_form(
            "secret",
            SignatureMethod::Sha256,
            &[
                ("status", "delivered"),
                ("client-ref", "mine"),
                ("timestamp", "1582650446"),
            ],
        );
        assert!(matches!(
            handle(
                "secret",
                Some(SignatureMethod::Sha256),
                incoming(&headers, &body)
            ),
            Err(Refusal::Malformed(_))
        ));
        // Signed intermediate status: no receipt.
        let body = signed_form(
            "secret",
            SignatureMethod::Sha256,
            &[
                ("status", "accepted"),
                ("client-ref", &reference),
                ("timestamp", "1582650446"),
            ],
        );
        // Signed, fresh, but without a timestamp: refused as a possible replay.
        let undated = signed_form(
            "secret",
            SignatureMethod::Sha256,
            &[("status", "delivered"), ("client-ref", &reference)],
        );
        assert_eq!(
            handle(
                "secret",
                Some(SignatureMethod::Sha256),
                incoming(&headers, &undated)
            ),
            Err(Refusal::Stale)
        );
        assert_eq!(
            handle(
                "secret",
                Some(SignatureMethod::Sha256),
                incoming(&headers, &body)
            ),
            Ok(None)
        );
    }

    /// A signed JSON receipt (the spec's `DeliveryReceipt` examples) sent as a GET query works too.
    #[test]
    fn handle_reads_get_queries() {
        let m = "0b5a2f4e-8a52-4a43-9d5e-6b8f1c2d3e4f";
        let a = "7c1d9e2a-3b4c-4d5e-8f60-718293a4b5c6";
        let query = String::from_utf8(signed_form(
            "s3cr3t",
            SignatureMethod::Sha256,
            &[
                ("messageId", "0A0000001234567B"),
                ("status", "delivered"),
                ("err-code", "0"),
                ("client-ref", &format!("{m}:{a}")),
                ("timestamp", "1582650446"),
                ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
            ],
        ))
        .unwrap();
        let url = format!("https://hermes.example/v1/webhooks/vonage/{m}/{a}?{query}");
        let receipt = handle(
            "s3cr3t",
            Some(SignatureMethod::Sha256),
            Incoming {
                method: "GET",
                url: &url,
                headers: &[],
                body: b"",
                now_secs: NOW,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(receipt.parsed.status, Status::Delivered);
        assert_eq!(
            receipt.parsed.provider_message_id.as_deref(),
            Some("0A0000001234567B")
        );
    }
}
