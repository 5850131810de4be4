//! Twilio's status callbacks: form-encoded POSTs to the `StatusCallback` URL, signed with
//! `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, full URL + every POST parameter's name and
//! value, sorted by name)).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

type HmacSha1 = Hmac<Sha1>;

/// The form parameters of a callback body, in order.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The URL Twilio signed may carry the default port or not, depending on how it was configured
/// and how the request reached Hermes: like Twilio's helper libraries, both forms are accepted.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // The port follows the last ':' unless that is inside an IPv6 literal.
    let port_at = hostport
        .rfind(':')
        .filter(|&colon| !hostport[colon..].contains(']'));
    let variant = match port_at {
        Some(colon) => format!("{scheme}://{userinfo}{}{tail}", &hostport[..colon]),
        None => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" => 443,
                "http" => 80,
                _ => return variants,
            };
            format!("{scheme}://{userinfo}{hostport}:{port}{tail}")
        }
    };
    variants.push(variant);
    variants
}

fn mac_for(auth_token: &str, url: &str, sorted: &[&(String, String)]) -> HmacSha1 {
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio computes for `url` and `params`.
#[cfg(test)]
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    STANDARD.encode(mac_for(auth_token, url, &sorted).finalize().into_bytes())
}

/// Whether `signature` (the header's value) signs `url` and `params`, compared in constant time.
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> bool {
    if auth_token.is_empty() {
        return false;
    }
    let Some(tag) = signature.and_then(|s| STANDARD.decode(s.trim()).ok()) else {
        return false;
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // Twilio may sign the StatusCallback URL as configured, connection-override fragment
    // included, though the fragment never reaches Hermes: accept both.
    let with_overrides = format!("{url}{}", crate::request::CONNECTION_OVERRIDES);
    url_variants(url)
        .into_iter()
        .chain(url_variants(&with_overrides))
        .any(|url| {
            mac_for(auth_token, &url, &sorted)
                .verify_slice(&tag)
                .is_ok()
        })
}

pub use hermes_guest_kit::Status;

/// What one callback says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: Status,
    pub provider_message_id: Option<String>,
    /// `(code, message)` for a failure.
    pub error: Option<(String, String)>,
}

/// A parameter's value, trimmed; `None` when it is missing or blank.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Descriptions of the delivery errors Twilio reports most, for when no `ErrorMessage` came.
fn describe_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "message filtered by the carrier",
        "30008" => "unknown error",
        "63016" => "outside the WhatsApp 24-hour session window",
        _ => return None,
    })
}

/// The receipt a verified callback carries: `Ok(None)` for statuses that are not news to Hermes
/// (queued, accepted, sending, scheduled; inbound statuses; statuses Twilio adds later).
pub fn interpret(params: &[(String, String)]) -> Result<Option<Parsed>, String> {
    let status = param(params, "MessageStatus")
        .or_else(|| param(params, "SmsStatus"))
        .ok_or("the callback has no MessageStatus")?;
    let provider_message_id = param(params, "MessageSid")
        .or_else(|| param(params, "SmsSid"))
        .map(str::to_owned);
    let status = match status {
        "sent" => Status::Sent,
        "delivered" | "partially_delivered" => Status::Delivered,
        "read" => Status::Read,
        "undelivered" | "failed" | "canceled" => Status::Failed,
        _ => return Ok(None),
    };
    let error = (status == Status::Failed).then(|| {
        let twilio_status = param(params, "MessageStatus")
            .or_else(|| param(params, "SmsStatus"))
            .unwrap_or("failed");
        let code = param(params, "ErrorCode").filter(|c| *c != "0");
        let message = param(params, "ErrorMessage")
            .map(str::to_owned)
            .or_else(|| code.and_then(describe_error).map(str::to_owned))
            .unwrap_or_else(|| format!("Twilio reported the message {twilio_status}"));
        let code = format!("twilio_{}", code.unwrap_or(twilio_status));
        (code, message)
    });
    Ok(Some(Parsed {
        status,
        provider_message_id,
        error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use hermes_guest_kit::pairs;

    /// The example in Twilio's request-validation documentation (twilio-php's `validation.rst`).
    #[test]
    fn twilios_documented_example_verifies() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let signature = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(sign("12345", url, &params), signature);
        assert!(verify("12345", url, &params, Some(signature)));
        // The order the parameters came in does not matter; their values do.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(verify("12345", url, &reversed, Some(signature)));
        let mut tampered = params.clone();
        tampered[2].1 = "1235".to_owned();
        assert!(!verify("12345", url, &tampered, Some(signature)));
        assert!(!verify("54321", url, &params, Some(signature)));
        assert!(!verify("12345", url, &params, None));
        assert!(!verify("12345", url, &params, Some("not base64!")));
        assert!(!verify("", url, &params, Some(signature)));
    }

    #[test]
    fn a_signature_over_the_url_with_its_connection_overrides_verifies() {
        let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let url = "https://h.example/v1/webhooks/twilio/m/a";
        let configured = format!("{url}{}", crate::request::CONNECTION_OVERRIDES);
        let signed = sign("t", &configured, &params);
        assert!(verify("t", url, &params, Some(&signed)));
        // Only our own overrides: another fragment is another URL.
        let other = sign("t", &format!("{url}#rc=1"), &params);
        assert!(!verify("t", url, &params, Some(&other)));
    }

    #[test]
    fn the_default_port_may_be_there_or_not() {
        let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "sent")]);
        let signed = sign("t", "https://h.example:443/v1/webhooks/a?x=1", &params);
        assert!(verify(
            "t",
            "https://h.example/v1/webhooks/a?x=1",
            &params,
            Some(&signed)
        ));
        let signed = sign("t", "https://h.example/v1/webhooks/a", &params);
        assert!(verify(
            "t",
            "https://h.example:443/v1/webhooks/a",
            &params,
            Some(&signed)
        ));
        // Another host is another URL.
        assert!(!verify(
            "t",
            "https://evil.example/v1/webhooks/a",
            &params,
            Some(&signed)
        ));
        assert_eq!(
            url_variants("http://[::1]:8080/x"),
            vec![
                "http://[::1]:8080/x".to_owned(),
                "http://[::1]/x".to_owned()
            ]
        );
        assert_eq!(
            url_variants("http://u:p@h/x"),
            vec!["http://u:p@h/x".to_owned(), "http://u:p@h:80/x".to_owned()]
        );
    }

    #[test]
    fn form_bodies_are_decoded_before_signing() {
        let params = form_params(b"From=%2B14155552345&Body=hi+there");
        assert_eq!(
            params,
            pairs(&[("From", "+14155552345"), ("Body", "hi there")])
        );
    }

    #[test]
    fn statuses_map_to_receipts() {
        let status_of = |s: &str| {
            interpret(&pairs(&[("MessageSid", "SM1"), ("MessageStatus", s)]))
                .unwrap()
                .map(|p| p.status)
        };
        assert_eq!(status_of("queued"), None);
        assert_eq!(status_of("accepted"), None);
        assert_eq!(status_of("sending"), None);
        assert_eq!(status_of("scheduled"), None);
        assert_eq!(status_of("sent"), Some(Status::Sent));
        assert_eq!(status_of("delivered"), Some(Status::Delivered));
        assert_eq!(status_of("read"), Some(Status::Read));
        assert_eq!(status_of("undelivered"), Some(Status::Failed));
        assert_eq!(status_of("failed"), Some(Status::Failed));
        assert!(interpret(&pairs(&[("MessageSid", "SM1")])).is_err());
    }

    #[test]
    fn failures_carry_twilios_error_code() {
        let parsed = interpret(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.provider_message_id.as_deref(), Some("SM1"));
        assert_eq!(
            parsed.error,
            Some((
                "twilio_30003".to_owned(),
                "unreachable destination handset".to_owned()
            ))
        );
        let parsed = interpret(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "failed"),
            ("ErrorCode", "21610"),
            ("ErrorMessage", "Unsubscribed recipient"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.error,
            Some((
                "twilio_21610".to_owned(),
                "Unsubscribed recipient".to_owned()
            ))
        );
        let parsed = interpret(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "failed"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.error.unwrap().0, "twilio_failed");
        // Not a failure: no error even if an ErrorCode came along.
        let parsed = interpret(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("ErrorCode", "0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.error, None);
    }
}
