//! Characters a request may not carry. Two rules:
//!
//! - **Text that people read** (content, template fields and parameters, reference, addresses):
//!   no control characters (Unicode `Cc`: C0, DEL and C1) except tab, newline and carriage return.
//!   No channel renders them (GSM 7-bit SMS has no code for them, email forbids them in headers,
//!   phones show boxes), and DEL or C1 in text usually means mis-decoded bytes (e.g. Windows-1252
//!   read as Latin-1), which is better reported to the sender than delivered as garbage.
//! - **Opaque data** passed through as JSON (`metadata`, `push.data`), keys and values at every
//!   depth: no NUL, the one character Postgres cannot store in `jsonb` or `text`. Other controls
//!   travel escaped in JSON and are the tenant's business.

use super::ValidationError;
use serde_json::Value;

pub const CODE: &str = "invalid_characters";

/// Whether `c` may appear in text that a person reads.
fn readable(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// The first character of `s` that text a person reads may not hold.
pub fn first_unreadable(s: &str) -> Option<char> {
    s.chars().find(|&c| !readable(c))
}

fn refused(field: String, c: char, allowed: &str) -> ValidationError {
    ValidationError::new(
        CODE,
        field.clone(),
        format!(
            "{field} contains the control character U+{:04X}; {allowed}",
            c as u32
        ),
    )
}

const READABLE_RULE: &str = "text may hold no control characters except tab, newline and CR";
const OPAQUE_RULE: &str = "NUL (U+0000) cannot be stored";

/// Checks one readable text field; true when it is clean.
pub fn check_text(field: &str, value: &str, errors: &mut Vec<ValidationError>) -> bool {
    match first_unreadable(value) {
        None => true,
        Some(c) => {
            errors.push(refused(field.to_owned(), c, READABLE_RULE));
            false
        }
    }
}

/// Checks every string (object keys included) of a JSON value that people read, such as a
/// WhatsApp template's components.
pub fn check_readable_json(field: &str, value: &Value, errors: &mut Vec<ValidationError>) {
    walk(
        field,
        value,
        &|s| first_unreadable(s),
        READABLE_RULE,
        errors,
    );
}

/// Checks every string (object keys included) of opaque JSON data for NUL.
pub fn check_opaque_json(field: &str, value: &Value, errors: &mut Vec<ValidationError>) {
    walk(
        field,
        value,
        &|s| s.contains('\0').then_some('\0'),
        OPAQUE_RULE,
        errors,
    );
}

/// Same as [`check_opaque_json`] for a JSON object's members.
pub fn check_opaque_map(
    field: &str,
    map: &serde_json::Map<String, Value>,
    errors: &mut Vec<ValidationError>,
) {
    walk_map(
        field,
        map,
        &|s| s.contains('\0').then_some('\0'),
        OPAQUE_RULE,
        errors,
    );
}

type Finder = dyn Fn(&str) -> Option<char>;

fn walk(field: &str, value: &Value, bad: &Finder, rule: &str, errors: &mut Vec<ValidationError>) {
    match value {
        Value::String(s) => {
            if let Some(c) = bad(s) {
                errors.push(refused(field.to_owned(), c, rule));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{field}[{i}]"), item, bad, rule, errors);
            }
        }
        Value::Object(map) => walk_map(field, map, bad, rule, errors),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn walk_map(
    field: &str,
    map: &serde_json::Map<String, Value>,
    bad: &Finder,
    rule: &str,
    errors: &mut Vec<ValidationError>,
) {
    for (key, value) in map {
        // The path shows a bad key escaped, so the error itself carries no control character.
        let path = format!("{field}.{}", key.escape_debug());
        if let Some(c) = bad(key) {
            errors.push(refused(path.clone(), c, rule));
        }
        walk(&path, value, bad, rule, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tab_newline_and_cr_are_text_other_controls_are_not() {
        assert_eq!(first_unreadable("a\tb\r\nc é 🙂"), None);
        for bad in ['\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert_eq!(first_unreadable(&format!("ok{bad}")), Some(bad), "{bad:?}");
        }
        // Format characters (not controls) such as a zero-width joiner stay allowed.
        assert_eq!(first_unreadable("👩\u{200d}💻"), None);
    }

    #[test]
    fn opaque_data_refuses_nul_in_nested_keys_and_values_only() {
        let mut errors = vec![];
        check_opaque_json(
            "metadata",
            &json!({"ok": "\u{1b}[0m", "a": {"b": ["x", "y\u{0}"]}, "k\u{0}": 1}),
            &mut errors,
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.a.b[1]", "metadata.k\\0"]);
        assert!(errors.iter().all(|e| e.code == CODE));
        assert!(errors.iter().all(|e| !e.message.contains('\0')));
    }

    #[test]
    fn readable_json_refuses_every_control() {
        let mut errors = vec![];
        check_readable_json(
            "c",
            &json!([{"type": "body", "parameters": [{"text": "a\u{7}"}]}]),
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "c[0].parameters[0].text");
        assert!(
            errors[0].message.contains("U+0007"),
            "{}",
            errors[0].message
        );
    }
}
