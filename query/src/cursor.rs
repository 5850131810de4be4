//! Opaque list cursors: the (created_at, id) of the last row shown, as 47 lowercase hex digits:
//! 15 for the microseconds since 1970 (enough for 36,000 years) and 32 for the id. The OpenAPI
//! document states that pattern, and every string matching it decodes, so a client (or a
//! schema-driven fuzzer) that follows the document never gets `invalid_cursor`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The cursor's shape, as the OpenAPI document states it.
pub const PATTERN: &str = "^[0-9a-f]{47}$";
const MICROS_DIGITS: usize = 15;

pub fn encode(created_at: DateTime<Utc>, id: Uuid) -> String {
    // Times before 1970 do not occur (rows are stamped by the database's clock).
    let micros = created_at.timestamp_micros().max(0);
    format!("{micros:015x}{}", id.simple())
}

pub fn decode(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    if cursor.len() != MICROS_DIGITS + 32
        || !cursor
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let (micros, id) = cursor.split_at(MICROS_DIGITS);
    Some((
        DateTime::from_timestamp_micros(i64::from_str_radix(micros, 16).ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
        let id = Uuid::now_v7();
        let c = encode(at, id);
        assert_eq!(c.len(), 47);
        assert_eq!(decode(&c), Some((at, id)));
        assert_eq!(decode("not-a-cursor"), None);
        assert_eq!(decode(""), None);
        assert_eq!(decode(&c.to_uppercase()), None);
    }

    #[test]
    fn every_string_of_the_documented_pattern_decodes() {
        for c in [
            "0".repeat(47),
            "f".repeat(47),
            format!("{}{}", "9".repeat(15), "a".repeat(32)),
        ] {
            assert!(decode(&c).is_some(), "{c}");
        }
    }
}
