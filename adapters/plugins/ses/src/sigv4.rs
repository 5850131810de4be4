//! AWS Signature Version 4 for HTTP request headers (pure: no host calls).
//!
//! Follows AWS's "Create a signed AWS API request" (IAM user guide, `reference_sigv-create-signed-request`):
//! 1. canonical request = `METHOD\nCanonicalURI\nCanonicalQuery\nCanonicalHeaders\n\nSignedHeaders\nhex(SHA256(payload))`
//!    (header names lowercased, values trimmed with inner runs of spaces collapsed, sorted by name;
//!    query parameters URI-encoded and sorted; each path segment URI-encoded, the unreserved set
//!    `A-Za-z0-9-_.~` left as is);
//! 2. string to sign = `AWS4-HMAC-SHA256\n<x-amz-date>\n<date>/<region>/<service>/aws4_request\nhex(SHA256(canonical request))`;
//! 3. signing key = HMAC chain `"AWS4"+secret` -> date -> region -> service -> `aws4_request`;
//! 4. `Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<scope>, SignedHeaders=<names>, Signature=<hex>`.
//!
//! The unit tests reproduce AWS's published SigV4 test-suite vectors (`aws-sig-v4-test-suite`,
//! as kept in `awslabs/aws-c-auth` `tests/aws-signing-test-suite/v4/`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The credentials to sign with.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// A temporary credential's session token: sent and signed as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
}

/// One request to sign.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The absolute URL (`scheme://host[:port]/path[?query]`).
    pub url: &'a str,
    /// Headers to send and sign, besides `host`, `x-amz-date` and `x-amz-security-token`, which
    /// `sign` adds.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// What `sign` produced (the intermediate strings are kept for tests and diagnosis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Every header to send: the request's own plus `host`, `x-amz-date`, optionally
    /// `x-amz-security-token`, and `authorization`.
    pub headers: Vec<(String, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub signature: String,
    pub authorization: String,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signing key: `HMAC("AWS4"+secret, date)` -> region -> service -> `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// `YYYYMMDDTHHMMSSZ` (the `x-amz-date` format) for milliseconds since the Unix epoch.
pub fn amz_date(millis: u64) -> String {
    let secs = millis / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// URI-encodes every byte outside the unreserved set (`A-Z a-z 0-9 - _ . ~`), uppercase hex.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(input: &str) -> Vec<u8> {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Splits an absolute URL into (host[:port], path, query).
pub fn split_url(url: &str) -> Option<(String, String, String)> {
    let (_, rest) = url.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or_default();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() {
        return None;
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    Some((host.to_owned(), path.to_owned(), query.to_owned()))
}

/// The canonical URI: each segment URI-encoded (for services other than S3 the path as sent is
/// encoded once more, which is what encoding the raw segments does).
fn canonical_uri(path: &str) -> String {
    path.split('/')
        .map(|segment| uri_encode(segment.as_bytes(), false))
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn normalize_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Signs `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`) for `region` and `service`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Option<Signed> {
    let (host, path, query) = split_url(request.url)?;
    let date = amz_date.get(..8)?;

    let mut headers: Vec<(String, String)> = request.headers.to_vec();
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        headers.push(("host".to_owned(), host));
    }
    headers.push(("x-amz-date".to_owned(), amz_date.to_owned()));
    if let Some(token) = credentials.session_token.filter(|t| !t.is_empty()) {
        headers.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }

    // Lowercased names, sorted; repeated names joined with ',' in the order they came.
    let mut canonical: Vec<(String, String)> = Vec::new();
    for (name, value) in &headers {
        let name = name.to_ascii_lowercase();
        let value = normalize_value(value);
        match canonical.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => canonical.push((name, value)),
        }
    }
    canonical.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = canonical
        .iter()
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect();
    let signed_headers = canonical
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(&path),
        canonical_query(&query),
        canonical_headers,
        signed_headers,
        sha256_hex(request.body),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key, date, region, service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    headers.push(("authorization".to_owned(), authorization.clone()));
    Some(Signed {
        headers,
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
        authorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials, date, region and service of AWS's SigV4 test suite.
    const CREDS: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    const DATE: &str = "20150830T123600Z";

    use hermes_guest_kit::pairs as h;

    fn suite(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> Signed {
        sign(
            &Request {
                method,
                url,
                headers,
                body,
            },
            &CREDS,
            "us-east-1",
            "service",
            DATE,
        )
        .unwrap()
    }

    fn authz(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    #[test]
    fn amz_date_formats_the_clock() {
        // 2015-08-30T12:36:00Z, the test suite's date.
        assert_eq!(amz_date(1_440_938_160_000), DATE);
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400_999), "20000229T000000Z");
        assert_eq!(amz_date(1_735_689_599_000), "20241231T235959Z");
    }

    /// get-vanilla: `GET /` with `Host` and `X-Amz-Date`.
    #[test]
    fn get_vanilla() {
        let signed = suite("GET", "https://example.amazonaws.com/", &[], b"");
        assert_eq!(
            signed.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            signed.authorization,
            authz(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    /// post-vanilla: `POST /`, no body.
    #[test]
    fn post_vanilla() {
        let signed = suite("POST", "https://example.amazonaws.com/", &[], b"");
        assert_eq!(
            signed.authorization,
            authz(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    /// post-x-www-form-urlencoded: a signed content type and a body.
    #[test]
    fn post_x_www_form_urlencoded() {
        let headers = h(&[("Content-Type", "application/x-www-form-urlencoded")]);
        let signed = suite(
            "POST",
            "https://example.amazonaws.com/",
            &headers,
            b"Param1=value1",
        );
        assert_eq!(
            signed.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            signed.authorization,
            authz(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    /// aws-c-auth's variant of post-x-www-form-urlencoded, which also signs `Content-Length` and
    /// `x-amz-content-sha256`.
    #[test]
    fn post_x_www_form_urlencoded_with_content_sha256() {
        let headers = h(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "13"),
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
        ]);
        let signed = suite(
            "POST",
            "https://example.amazonaws.com/",
            &headers,
            b"Param1=value1",
        );
        assert_eq!(
            signed.authorization,
            authz(
                "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
                "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
            )
        );
    }

    /// get-vanilla-query-order-key-case: the query is sorted before signing.
    #[test]
    fn get_vanilla_query_order_key_case() {
        let signed = suite(
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            &[],
            b"",
        );
        assert_eq!(
            signed.signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    /// get-vanilla-with-session-token: the token is sent and signed as `x-amz-security-token`.
    #[test]
    fn get_vanilla_with_session_token() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let creds = Credentials {
            session_token: Some(token),
            ..CREDS
        };
        let signed = sign(
            &Request {
                method: "GET",
                url: "https://example.amazonaws.com/",
                headers: &[],
                body: b"",
            },
            &creds,
            "us-east-1",
            "service",
            DATE,
        )
        .unwrap();
        assert_eq!(
            signed.authorization,
            authz(
                "host;x-amz-date;x-amz-security-token",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
        assert!(
            signed
                .headers
                .contains(&("x-amz-security-token".to_owned(), token.to_owned()))
        );
    }

    #[test]
    fn a_changed_body_or_key_changes_the_signature() {
        let a = suite("POST", "https://example.amazonaws.com/", &[], b"a");
        let b = suite("POST", "https://example.amazonaws.com/", &[], b"b");
        assert_ne!(a.signature, b.signature);
        assert_eq!(
            hex::encode(signing_key(
                CREDS.secret_access_key,
                "20150830",
                "us-east-1",
                "service"
            )),
            // The derived key of AWS's documentation example for these inputs.
            "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75"
        );
    }

    #[test]
    fn urls_split_and_encode() {
        assert_eq!(
            split_url("http://127.0.0.1:4010/v2/email/outbound-emails"),
            Some((
                "127.0.0.1:4010".to_owned(),
                "/v2/email/outbound-emails".to_owned(),
                String::new()
            ))
        );
        assert_eq!(
            split_url("https://h.example"),
            Some(("h.example".to_owned(), "/".to_owned(), String::new()))
        );
        assert_eq!(split_url("nope"), None);
        assert_eq!(canonical_uri("/a b/c"), "/a%20b/c");
        assert_eq!(canonical_query("b=2&a=x%2Fy&a=1"), "a=1&a=x%2Fy&b=2");
    }
}
