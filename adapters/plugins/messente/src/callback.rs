//! Messente's delivery reports: JSON POSTs to the omnimessage's `dlr_url`, one per status update
//! (Omnichannel API documentation, "Delivery Report"), signed with `X-Messente-Signature` =
//! hex(HMAC-SHA256(password of the API key that sent the message, raw request body))
//! (documentation, "API Setup / Security": `HMAC_SHA256("$secret", "$http_request_body")`; the
//! documented example header is 64 hex digits).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-messente-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac_for(secret: &str, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac
}

/// The signature Messente computes for `body` (for tests).
#[cfg(test)]
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(mac_for(secret, body).finalize().into_bytes())
}

/// Whether `signature` (the header's value) signs `body`, compared in constant time. An empty
/// secret verifies nothing.
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Some(tag) = signature.and_then(|s| hex::decode(s.trim()).ok()) else {
        return false;
    };
    mac_for(secret, body).verify_slice(&tag).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// What one delivery report says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: Status,
    pub provider_message_id: Option<String>,
    /// `(code, message)` for a failure.
    pub error: Option<(String, String)>,
}

/// The fields of a report (the spec's `DeliveryResult`, plus `to` and `omnimessage_id`).
#[derive(Deserialize)]
struct Report {
    status: Option<String>,
    message_id: Option<String>,
    omnimessage_id: Option<String>,
    err: Option<serde_json::Value>,
    error: Option<String>,
}

/// The spec's `ErrorCodeOmnichannelMachine` meanings.
fn describe_err(err: &str) -> Option<&'static str> {
    Some(match err {
        "1" => "delivery failure",
        "2" => "sending message expired",
        "3" => "invalid number",
        "4" => "error crediting account",
        "5" => "invalid number format",
        "6" => "too many identical messages",
        "7" => "sender name not allowed",
        "8" => "operator blacklisted",
        "9" => "unroutable",
        "10" => "seen",
        "999" => "general temporary error",
        _ => return None,
    })
}

fn err_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    hermes_guest_kit::non_empty(&value).map(str::to_owned)
}

/// The receipt a verified report carries: `Ok(None)` for statuses that are not news to Hermes
/// (no status yet, `UNKNOWN`, statuses Messente adds later).
pub fn interpret(body: &[u8]) -> Result<Option<Parsed>, String> {
    let report: Report = serde_json::from_slice(body)
        .map_err(|err| format!("the delivery report is not the expected JSON: {err}"))?;
    let provider_message_id =
        non_empty(report.message_id).or_else(|| non_empty(report.omnimessage_id));
    // The spec: `status` is null while the message is still being processed.
    let Some(raw_status) = non_empty(report.status) else {
        return Ok(None);
    };
    let upper = raw_status.to_ascii_uppercase();
    let status = match upper.as_str() {
        "ACK" | "ACCEPTD" => Status::Sent,
        "DELIVRD" => Status::Delivered,
        "SEEN" => Status::Read,
        "UNDELIV" | "FAILED" | "REJECTD" | "DELETED" | "EXPIRED" | "NACK" => Status::Failed,
        _ => return Ok(None),
    };
    let error = (status == Status::Failed).then(|| {
        let err = report.err.as_ref().and_then(err_text).filter(|e| e != "0");
        let message = non_empty(report.error)
            .or_else(|| err.as_deref().and_then(describe_err).map(str::to_owned))
            .unwrap_or_else(|| format!("Messente reported the message {upper}"));
        let code = match err {
            Some(err) => format!("messente_{err}"),
            None => format!("messente_{}", upper.to_ascii_lowercase()),
        };
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

    /// The callback example of Messente's "Delivery Report" documentation, byte for byte.
    const DOCUMENTED_DLR: &str = r#"{
  "status": "DELIVRD",
  "sender": "MySender",
  "err": 0,
  "message_id": "3e28ec48-d620-4191-a96e-d91ba8ecc949",
  "to": "+3725555555",
  "channel": "sms",
  "error": null,
  "omnimessage_id": "d7248cda-6c1a-4436-acf5-aaf249bb67d3",
  "timestamp": "2020-02-04T08:09:42.389630",
  "price_info": {
    "part_price": "0.1",
    "parts_count": 2,
    "total_price": "0.2"
  }
}"#;

    /// hex(HMAC-SHA256("api-password", DOCUMENTED_DLR)), computed independently with Python's
    /// `hmac.new(key, body, hashlib.sha256).hexdigest()`.
    const DOCUMENTED_DLR_SIGNATURE: &str =
        "b0257de29fd114c435947218f2c2796843f1bf485173814ee9fdefa1e0c1ed81";

    fn report(status: &str, err: serde_json::Value, error: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "status": status,
            "sender": "MySender",
            "err": err,
            "message_id": "3e28ec48-d620-4191-a96e-d91ba8ecc949",
            "to": "+3725555555",
            "channel": "sms",
            "error": error,
            "omnimessage_id": "d7248cda-6c1a-4436-acf5-aaf249bb67d3",
            "timestamp": "2020-02-04T08:09:42.389630",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_documented_report_verifies_and_tampering_fails() {
        let body = DOCUMENTED_DLR.as_bytes();
        assert_eq!(sign("api-password", body), DOCUMENTED_DLR_SIGNATURE);
        assert!(verify("api-password", body, Some(DOCUMENTED_DLR_SIGNATURE)));
        // Upper-case hex and surrounding blanks are still the same signature.
        let upper = format!(" {} ", DOCUMENTED_DLR_SIGNATURE.to_ascii_uppercase());
        assert!(verify("api-password", body, Some(&upper)));
        // A changed body, key or signature fails; so do missing and malformed ones.
        let tampered = DOCUMENTED_DLR.replace("DELIVRD", "UNDELIV");
        assert!(!verify(
            "api-password",
            tampered.as_bytes(),
            Some(DOCUMENTED_DLR_SIGNATURE)
        ));
        assert!(!verify("other", body, Some(DOCUMENTED_DLR_SIGNATURE)));
        let mut flipped = DOCUMENTED_DLR_SIGNATURE.to_owned();
        flipped.replace_range(0..1, "c");
        assert!(!verify("api-password", body, Some(&flipped)));
        assert!(!verify(
            "api-password",
            body,
            Some(&DOCUMENTED_DLR_SIGNATURE[..32])
        ));
        assert!(!verify("api-password", body, None));
        assert!(!verify("api-password", body, Some("not hex!")));
        assert!(!verify("", body, Some(&sign("", body))));
    }

    #[test]
    fn the_documented_report_is_a_delivery() {
        let parsed = interpret(DOCUMENTED_DLR.as_bytes()).unwrap().unwrap();
        assert_eq!(
            parsed,
            Parsed {
                status: Status::Delivered,
                provider_message_id: Some("3e28ec48-d620-4191-a96e-d91ba8ecc949".to_owned()),
                error: None,
            }
        );
    }

    #[test]
    fn statuses_map_to_receipts() {
        let status_of = |s: &str| {
            interpret(&report(s, 0.into(), serde_json::Value::Null))
                .unwrap()
                .map(|p| p.status)
        };
        assert_eq!(status_of("ACK"), Some(Status::Sent));
        assert_eq!(status_of("ACCEPTD"), Some(Status::Sent));
        assert_eq!(status_of("DELIVRD"), Some(Status::Delivered));
        assert_eq!(status_of("SEEN"), Some(Status::Read));
        for failed in ["UNDELIV", "FAILED", "REJECTD", "DELETED", "EXPIRED", "NACK"] {
            assert_eq!(status_of(failed), Some(Status::Failed), "{failed}");
        }
        assert_eq!(status_of("UNKNOWN"), None);
        assert_eq!(status_of("ENROUTE"), None);
        // No status yet (null) is no news either.
        let body = br#"{"status":null,"message_id":"m1","err":null,"error":null}"#;
        assert_eq!(interpret(body).unwrap(), None);
        assert!(interpret(b"not json").is_err());
    }

    #[test]
    fn failures_carry_messentes_err_code() {
        let parsed = interpret(&report("UNDELIV", 3.into(), serde_json::Value::Null))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.error,
            Some(("messente_3".to_owned(), "invalid number".to_owned()))
        );
        let parsed = interpret(&report("FAILED", 999.into(), "Temporary error".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.error,
            Some(("messente_999".to_owned(), "Temporary error".to_owned()))
        );
        // Without an err code: the status names the failure.
        let parsed = interpret(&report("EXPIRED", 0.into(), serde_json::Value::Null))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.error,
            Some((
                "messente_expired".to_owned(),
                "Messente reported the message EXPIRED".to_owned()
            ))
        );
        // Only the omnimessage id: it names the message.
        let parsed = interpret(br#"{"status":"NACK","err":"7","omnimessage_id":"o1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.provider_message_id.as_deref(), Some("o1"));
        assert_eq!(
            parsed.error,
            Some((
                "messente_7".to_owned(),
                "sender name not allowed".to_owned()
            ))
        );
    }
}
