//! What a phone number says about where it is: its country, from libphonenumber's metadata (the
//! `phonenumber` crate), not from hand-written prefix rules (`+1` alone is twenty-five countries).

/// The ISO 3166-1 alpha-2 country of an E.164 number (`"US"`, `"GB"`); `None` when the number
/// belongs to no country (a non-geographic code such as `+800`) or cannot be parsed.
pub fn country_of(e164: &str) -> Option<String> {
    let number = phonenumber::parse(None, e164).ok()?;
    let id = number.country().id()?;
    Some(AsRef::<str>::as_ref(&id).to_owned())
}

/// Longest phone number accepted as written by people, separators included.
pub const MAX_WRITTEN_CHARS: usize = 32;

/// What may separate the digits of a number written for people.
const SEPARATORS: [char; 6] = [' ', '(', ')', '.', '/', '-'];

/// The E.164 form of a phone number in international format. A number already in E.164 is kept
/// as it is. A number written as people write it, its `+` first and then digits with spaces,
/// dashes, dots, slashes or parentheses (`+1 (415) 555-0100`), is read by libphonenumber, whose
/// reading drops a national prefix written in it (`+44 (0)20 7946 0958` is `+442079460958`);
/// a number libphonenumber does not know as valid (a new range, a test number) is taken as its
/// digits, as E.164 would be: like an E.164 number, the provider judges it. `None` for anything
/// else: a national number (without its `+` it names no country), letters (vanity numbers are
/// not guessed), or digits that cannot be E.164 (a leading 0, more than 15).
///
/// The OpenAPI document's pattern for phone numbers describes exactly what this accepts.
pub fn normalize(written: &str) -> Option<String> {
    if crate::validation::is_e164(written) {
        return Some(written.to_owned());
    }
    let readable = written.chars().count() <= MAX_WRITTEN_CHARS
        && written.strip_prefix('+').is_some_and(|rest| {
            rest.chars()
                .all(|c| c.is_ascii_digit() || SEPARATORS.contains(&c))
        });
    if !readable {
        return None;
    }
    if let Ok(number) = phonenumber::parse(None, written)
        && number.is_valid()
    {
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        if crate::validation::is_e164(&e164) {
            return Some(e164);
        }
    }
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let e164 = format!("+{digits}");
    crate::validation::is_e164(&e164).then_some(e164)
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
    fn numbers_written_for_people_become_e164() {
        for (written, e164) in [
            ("+1 (415) 555-0100", "+14155550100"),
            ("+1 415.555.0100", "+14155550100"),
            ("+44 20 7946 0958", "+442079460958"),
            // The UK's national prefix, often written in parentheses, is not part of the number.
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+372 612 3456", "+3726123456"),
            ("+49 30/1234567", "+49301234567"),
        ] {
            assert_eq!(normalize(written).as_deref(), Some(e164), "{written}");
            assert!(country_of(e164).is_some(), "{e164}");
        }
    }

    #[test]
    fn e164_is_kept_and_an_unknown_number_is_taken_as_its_digits() {
        // The provider is the judge of numbers libphonenumber does not know (test ranges, new
        // ranges), written either way.
        assert_eq!(normalize("+15550000001").as_deref(), Some("+15550000001"));
        assert_eq!(
            normalize("+1 555 000 0001").as_deref(),
            Some("+15550000001")
        );
        assert_eq!(normalize("+1 415 555").as_deref(), Some("+1415555"));
        assert_eq!(normalize("+)(635771").as_deref(), Some("+635771"));
    }

    #[test]
    fn what_is_not_an_international_number_is_not_guessed() {
        for bad in [
            "4155550100",      // national: no country
            "(415) 555-0100",  // national, formatted
            "+1 800 FLOWERS",  // letters
            "+0 415 555 0100", // no country code starts with 0
            "+44 20 7946 0958 ext 12",
            "+",
            "+ ( )",
            "++1 415 555 0100",
            "+1 415 555 0100 0000 0000", // 20 digits
            "+1  415  555  0100  (mobile phone)",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn country_codes_are_two_capitals() {
        assert!(is_country_code("US"));
        for bad in ["us", "USA", "U", "", "1A"] {
            assert!(!is_country_code(bad), "{bad}");
        }
    }
}
