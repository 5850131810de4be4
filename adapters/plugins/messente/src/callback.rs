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

/// How old a report's `timestamp` may be. Messente stamps a report with the time of the status
/// it reports and posts it at once, so an older report is a replay (or a report Messente held
/// back that long, which is refused too: the window is the price of refusing replays). Five
/// minutes, plus [`CLOCK_SKEW_SECS`] either way.
pub const MAX_AGE_SECS: u64 = 5 * 60;
/// How far Messente's clock and ours may disagree.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Whether a report stamped `at` (seconds since the epoch) is fresh at `now`.
pub fn fresh(at: Option<u64>, now: u64) -> bool {
    at.is_some_and(|t| t <= now + CLOCK_SKEW_SECS && now <= t + MAX_AGE_SECS + CLOCK_SKEW_SECS)
}

/// The report's `timestamp` in seconds since the epoch. Messente writes it as ISO 8601 without a
/// zone (`2020-02-04T08:09:42.389630`, UTC); a `Z` or a `±HH:MM` offset is understood too.
pub fn report_time(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Stamped {
        timestamp: Option<String>,
    }
    let stamped: Stamped = serde_json::from_slice(body).ok()?;
    parse_timestamp(stamped.timestamp?.trim())
}

fn parse_timestamp(value: &str) -> Option<u64> {
    let bytes = value.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = value.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &value[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = rest[1..].replace(':', "");
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m): (i64, i64) = (zone[..2].parse().ok()?, zone[2..].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

pub use hermes_guest_kit::Status;

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

    #[test]
    fn report_timestamps_parse_as_utc() {
        // `date -u -d 2020-02-04T08:09:42 +%s`
        assert_eq!(
            parse_timestamp("2020-02-04T08:09:42.389630"),
            Some(1_580_803_782)
        );
        assert_eq!(parse_timestamp("2020-02-04T08:09:42Z"), Some(1_580_803_782));
        assert_eq!(parse_timestamp("2020-02-04 08:09:42"), Some(1_580_803_782));
        assert_eq!(
            parse_timestamp("2020-02-04T10:09:42+02:00"),
            Some(1_580_803_782)
        );
        assert_eq!(
            parse_timestamp("2000-01-23T04:56:07.000+00:00"),
            Some(948_603_367)
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:00"), Some(0));
        for bad in [
            "",
            "2020-02-04",
            "2020-13-04T08:09:42",
            "2020-02-04T08:09:42.",
            "2020-02-04T08:09:42+2",
            "yesterday",
            "2020-02-04T08:09:42 UTC",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(report_time(DOCUMENTED_DLR.as_bytes()), Some(1_580_803_782));
        assert_eq!(report_time(br#"{"status": "DELIVRD"}"#), None);
    }

    #[test]
    fn only_fresh_reports_pass() {
        let at = 1_580_803_782;
        assert!(fresh(Some(at), at));
        assert!(fresh(Some(at), at + MAX_AGE_SECS + CLOCK_SKEW_SECS));
        assert!(!fresh(Some(at), at + MAX_AGE_SECS + CLOCK_SKEW_SECS + 1));
        assert!(fresh(Some(at), at - CLOCK_SKEW_SECS));
        assert!(!fresh(Some(at), at - CLOCK_SKEW_SECS - 1));
        assert!(!fresh(None, at));
    }

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
