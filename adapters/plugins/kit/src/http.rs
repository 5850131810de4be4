//! Reading a provider's HTTP answer: headers, `Retry-After`, an error body for a message, and the
//! generic meaning of an error status.

/// How much of an unexpected error body ends up in an attempt's error message (characters).
pub const MAX_ERROR_BODY: usize = 200;

/// The value of the first header called `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Owned `(name, value)` pairs from borrowed ones: headers or form parameters written as
/// literals (`pairs(&[("Retry-After", "30")])`).
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// `Retry-After` in seconds (delta-seconds; an HTTP date is not understood: no wait rather than a
/// wrong one), capped at `u32::MAX`.
pub fn retry_after(headers: &[(String, String)]) -> Option<u32> {
    header(headers, "retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|secs| secs.min(u64::from(u32::MAX)) as u32)
}

/// The start of an unexpected body, for an error message: trimmed, at most [`MAX_ERROR_BODY`]
/// characters (empty for an empty or blank body).
pub fn body_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(MAX_ERROR_BODY)
        .collect()
}

/// [`body_excerpt`], or `<provider> answered HTTP <status>` when the body is blank.
pub fn body_or_status(provider: &str, status: u16, body: &[u8]) -> String {
    let excerpt = body_excerpt(body);
    if excerpt.is_empty() {
        format!("{provider} answered HTTP {status}")
    } else {
        excerpt
    }
}

/// Whether an HTTP error status is worth trying again, when nothing more specific is known:
/// 401/403 (credentials, permissions), 404 (a wrong base URL or account id), 408, 429 and 5xx are;
/// any other 4xx is about this request. Anything else says nothing about the recipient: retryable.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 408 | 429) || !(400..500).contains(&status)
}

/// 429 and 503: the statuses whose `Retry-After` is passed on.
pub fn throttling_status(status: u16) -> bool {
    status == 429 || status == 503
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_whatever_their_case() {
        let list = pairs(&[("Content-Type", "text/plain"), ("content-type", "second")]);
        assert_eq!(header(&list, "content-type"), Some("text/plain"));
        assert_eq!(header(&list, "CONTENT-TYPE"), Some("text/plain"));
        assert_eq!(header(&list, "x-missing"), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        assert_eq!(retry_after(&pairs(&[("Retry-After", "30")])), Some(30));
        assert_eq!(retry_after(&pairs(&[("retry-after", " 7 ")])), Some(7));
        assert_eq!(
            retry_after(&pairs(&[("retry-after", "99999999999")])),
            Some(u32::MAX)
        );
        assert_eq!(
            retry_after(&pairs(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            None
        );
        assert_eq!(retry_after(&pairs(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn body_excerpts_are_trimmed_and_capped_in_characters() {
        assert_eq!(body_excerpt(b"  <html>oops</html>\n"), "<html>oops</html>");
        assert_eq!(body_excerpt(b" \n "), "");
        let long = "é".repeat(1000);
        let excerpt = body_excerpt(long.as_bytes());
        assert_eq!(excerpt.chars().count(), MAX_ERROR_BODY);
        assert!(long.starts_with(&excerpt));
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(body_excerpt(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn a_blank_body_gives_the_status() {
        assert_eq!(
            body_or_status("Twilio", 400, b""),
            "Twilio answered HTTP 400"
        );
        assert_eq!(body_or_status("Twilio", 500, b" busy "), "busy");
    }

    #[test]
    fn status_fallback() {
        for status in [401, 403, 404, 408, 429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [400, 402, 405, 409, 410, 413, 415, 422, 499] {
            assert!(!retryable_status(status), "{status}");
        }
        assert!(throttling_status(429) && throttling_status(503));
        assert!(!throttling_status(500) && !throttling_status(502));
    }
}
