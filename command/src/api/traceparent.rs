//! The W3C Trace Context `traceparent` header (<https://www.w3.org/TR/trace-context/>), checked
//! before it is stored in event metadata: a client's free text never lands in the event log.

/// `traceparent` as stored, if `value` is a valid one: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
/// the trace and parent ids not all zeros. A later version (not `ff`) is read as the spec says,
/// by its first 55 characters followed by nothing or `-`; only those 55 are kept.
pub fn parse(value: &str) -> Option<&str> {
    let head = value.get(..55)?;
    let rest = &value[55..];
    let mut parts = head.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && (rest.is_empty() || (version != "00" && rest.starts_with('-')))
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(head)
}

#[cfg(test)]
mod tests {
    use super::parse;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_is_kept() {
        assert_eq!(parse(VALID), Some(VALID));
        assert_eq!(
            parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
            Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }

    #[test]
    fn anything_else_is_dropped() {
        for bad in [
            "",
            "hello",
            "<script>alert(1)</script>",
            &VALID.to_uppercase(),
            &format!("{VALID}-"),
            &format!("{VALID}x"),
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
