//! What a phone number says about where it is: its country, from libphonenumber's metadata (the
//! `phonenumber` crate), not from hand-written prefix rules (`+1` alone is twenty-five countries).

/// The ISO 3166-1 alpha-2 country of an E.164 number (`"US"`, `"GB"`); `None` when the number
/// belongs to no country (a non-geographic code such as `+800`) or cannot be parsed.
pub fn country_of(e164: &str) -> Option<String> {
    let number = phonenumber::parse(None, e164).ok()?;
    let id = number.country().id()?;
    Some(AsRef::<str>::as_ref(&id).to_owned())
}

/// Whether `code` looks like an ISO 3166-1 alpha-2 code: two ASCII capitals.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_come_from_the_numbering_plan_not_the_prefix() {
        assert_eq!(country_of("+14155550100").as_deref(), Some("US"));
        // +1 is shared: Toronto is Canada, Kingston is Jamaica.
        assert_eq!(country_of("+14165550100").as_deref(), Some("CA"));
        assert_eq!(country_of("+18765550100").as_deref(), Some("JM"));
        // +44 is shared too: 7400 is a UK mobile range, 7911 one of Guernsey's.
        assert_eq!(country_of("+447400123456").as_deref(), Some("GB"));
        assert_eq!(country_of("+447911123456").as_deref(), Some("GG"));
        assert_eq!(country_of("+3726123456").as_deref(), Some("EE"));
        assert_eq!(country_of("+80012345678"), None, "a non-geographic code");
        assert_eq!(country_of("not a number"), None);
    }

    #[test]
    fn country_codes_are_two_capitals() {
        assert!(is_country_code("US"));
        for bad in ["us", "USA", "U", "", "1A"] {
            assert!(!is_country_code(bad), "{bad}");
        }
    }
}
