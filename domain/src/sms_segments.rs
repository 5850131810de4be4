//! How many SMS parts ("segments") a text costs, and in which encoding it goes out.
//!
//! Providers bill SMS per segment, so the count must match what a carrier does, not a naive
//! `len / 160`:
//!
//! - A text goes out in the GSM 7-bit default alphabet when every character is in its basic
//!   character set or its extension table (3GPP TS 23.038 §6.2.1 and §6.2.1.1); otherwise the
//!   whole text goes out as UCS-2 (in practice UTF-16: a character outside the BMP, such as most
//!   emoji, takes two 16-bit units, the way Twilio and Telnyx count it).
//! - One SMS carries 140 octets of user data: 160 septets, or 70 UCS-2 units.
//! - A longer text is sent as a concatenated SMS whose parts each start with a 6-octet user data
//!   header (UDHL, IEI 0x00, IEDL, reference, total, sequence: 3GPP TS 23.040 §9.2.3.24.1). For
//!   GSM-7 the header is padded to a septet boundary, 7 septets, leaving 160 − 7 = 153 per part;
//!   for UCS-2 (140 − 6) / 2 = 67 per part.
//! - TS 23.040 §9.2.3.24.1 also forbids splitting an escape sequence (an extension character's
//!   ESC + code) or a UCS-2 character across parts, and a UTF-16 surrogate pair is kept whole for
//!   the same reason. A part may therefore end one unit short, so parts are counted by packing
//!   characters greedily, never by dividing.
//!
//! National language shift tables (TS 23.038 §6.2.1.2) are not used: providers send with the
//! default tables, so a character found only in a national table (such as `ç`) means UCS-2.
//!
//! Pure: no I/O, no allocation.

/// Septets in one SMS without a user data header: 140 octets × 8 / 7.
pub const GSM7_SINGLE_SEPTETS: usize = 160;
/// Septets in one part of a concatenated SMS: 160 less the 6-octet header padded to 7 septets.
pub const GSM7_PART_SEPTETS: usize = 153;
/// UCS-2 (UTF-16) units in one SMS without a user data header: 140 octets / 2.
pub const UCS2_SINGLE_UNITS: usize = 70;
/// UCS-2 (UTF-16) units in one part of a concatenated SMS: (140 − 6) octets / 2.
pub const UCS2_PART_UNITS: usize = 67;

/// The data coding a text is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsEncoding {
    /// GSM 7-bit default alphabet, with the default extension table.
    Gsm7,
    /// 16-bit units; counted as UTF-16, as carriers and providers do.
    Ucs2,
}

impl SmsEncoding {
    /// A stable lowercase name: `"gsm7"` or `"ucs2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        }
    }
}

/// What a text costs as SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSegments {
    pub encoding: SmsEncoding,
    /// Septets for [`SmsEncoding::Gsm7`] (an extension character counts 2: ESC + code);
    /// UTF-16 code units for [`SmsEncoding::Ucs2`] (a character outside the BMP counts 2).
    pub units: usize,
    /// Parts the text is sent as; 0 for an empty text, which sends nothing.
    pub segments: usize,
}

/// The septets `c` takes in the GSM 7-bit default alphabet: `Some(1)` for the basic character
/// set, `Some(2)` for the default extension table (ESC + code), `None` when `c` has no GSM-7
/// encoding (the text must then go as UCS-2).
///
/// Tables of 3GPP TS 23.038 §6.2.1 (basic) and §6.2.1.1 (extension). 0x09 is the capital `Ç`,
/// as the spec's table shows and Twilio's segment calculator maps it; the Unicode Consortium's
/// GSM0338.TXT maps it to the small `ç` instead, which is not followed here. The ESC code (0x1B)
/// itself is not a character, so U+001B in a text is not GSM-7.
pub fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        // Basic character set, by row of the code (0x00-0x7F), ESC (0x1B) left out.
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
        | 'Å' | 'å'
        // Δ _ Φ Γ Λ Ω Π Ψ Σ Θ Ξ (Greek capitals U+0394, U+03A6, U+0393, U+039B, U+03A9, U+03A0,
        // U+03A8, U+03A3, U+0398, U+039E), then Æ æ ß É.
        | 'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß'
        | 'É'
        | ' ' | '!' | '"' | '#' | '¤' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-'
        | '.' | '/'
        | '0'..='9' | ':' | ';' | '<' | '=' | '>' | '?'
        | '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§'
        | '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        // Default extension table: form feed, ^ { } \ [ ~ ] | and €.
        '\u{0C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// Encoding, units and segments of `text`.
///
/// GSM-7 when every character has a GSM-7 encoding ([`gsm7_septets`]), else UCS-2. An empty
/// text is GSM-7 with 0 units and 0 segments: there is nothing to send.
pub fn count(text: &str) -> SmsSegments {
    let septets: Option<usize> = text.chars().map(gsm7_septets).sum();
    match septets {
        Some(units) => SmsSegments {
            encoding: SmsEncoding::Gsm7,
            units,
            // Every char has a cost here, so `filter_map` drops nothing.
            segments: pack(
                text.chars().filter_map(gsm7_septets),
                units,
                GSM7_SINGLE_SEPTETS,
                GSM7_PART_SEPTETS,
            ),
        },
        None => {
            let units = text.chars().map(char::len_utf16).sum();
            SmsSegments {
                encoding: SmsEncoding::Ucs2,
                units,
                segments: pack(
                    text.chars().map(char::len_utf16),
                    units,
                    UCS2_SINGLE_UNITS,
                    UCS2_PART_UNITS,
                ),
            }
        }
    }
}

/// Parts needed for characters of the given unit `costs` (summing to `total`): one when all fit
/// in a single SMS, else as many `part`-sized parts as greedy packing fills, a character never
/// straddling two parts.
fn pack(costs: impl Iterator<Item = usize>, total: usize, single: usize, part: usize) -> usize {
    if total == 0 {
        return 0;
    }
    if total <= single {
        return 1;
    }
    let mut parts = 1;
    let mut used = 0;
    for cost in costs {
        if used + cost > part {
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gsm(units: usize, segments: usize) -> SmsSegments {
        SmsSegments {
            encoding: SmsEncoding::Gsm7,
            units,
            segments,
        }
    }

    fn ucs2(units: usize, segments: usize) -> SmsSegments {
        SmsSegments {
            encoding: SmsEncoding::Ucs2,
            units,
            segments,
        }
    }

    /// 3GPP TS 23.038 §6.2.1 basic table in code order 0x00..=0x7F; 0x1B (ESC) is a placeholder.
    const BASIC: [char; 128] = [
        '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
        'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß',
        'É', //
        ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
        '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
        'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
        '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
        'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
    ];
    const ESC: usize = 0x1B;

    /// 3GPP TS 23.038 §6.2.1.1 default extension table: (code after ESC, character).
    const EXTENSION: [(u8, char); 10] = [
        (0x0A, '\u{0C}'),
        (0x14, '^'),
        (0x28, '{'),
        (0x29, '}'),
        (0x2F, '\\'),
        (0x3C, '['),
        (0x3D, '~'),
        (0x3E, ']'),
        (0x40, '|'),
        (0x65, '€'),
    ];

    fn rep(c: char, n: usize) -> String {
        std::iter::repeat_n(c, n).collect()
    }

    #[test]
    fn gsm7_septets_matches_the_spec_tables_exactly() {
        // Every table entry has its cost...
        for (code, &c) in BASIC.iter().enumerate().filter(|&(code, _)| code != ESC) {
            assert_eq!(gsm7_septets(c), Some(1), "basic 0x{code:02X} {c:?}");
        }
        for (code, c) in EXTENSION {
            assert_eq!(
                gsm7_septets(c),
                Some(2),
                "extension 0x1B 0x{code:02X} {c:?}"
            );
        }
        // ...and no other char has one: 127 basic (128 codes less ESC) and 10 extension chars,
        // all distinct, are all of them.
        let mut distinct: Vec<char> = BASIC.iter().copied().filter(|&c| c != '\u{1B}').collect();
        distinct.extend(EXTENSION.iter().map(|&(_, c)| c));
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 137);
        let all = (0..=u32::from(char::MAX)).filter_map(char::from_u32);
        let basic = all.clone().filter(|&c| gsm7_septets(c) == Some(1)).count();
        let extension = all.filter(|&c| gsm7_septets(c) == Some(2)).count();
        assert_eq!((basic, extension), (127, 10));
    }

    #[test]
    fn escape_itself_is_not_a_gsm7_character() {
        assert_eq!(gsm7_septets('\u{1B}'), None);
        assert_eq!(count("a\u{1B}b").encoding, SmsEncoding::Ucs2);
    }

    #[test]
    fn encoding_names() {
        assert_eq!(SmsEncoding::Gsm7.as_str(), "gsm7");
        assert_eq!(SmsEncoding::Ucs2.as_str(), "ucs2");
    }

    #[test]
    fn empty_text_is_zero_segments() {
        assert_eq!(count(""), gsm(0, 0));
    }

    #[test]
    fn one_character_is_one_segment() {
        assert_eq!(count("a"), gsm(1, 1));
        assert_eq!(count("ж"), ucs2(1, 1));
    }

    #[test]
    fn gsm7_single_and_concatenated_limits() {
        assert_eq!(count(&rep('a', 160)), gsm(160, 1));
        assert_eq!(count(&rep('a', 161)), gsm(161, 2));
        assert_eq!(count(&rep('a', 306)), gsm(306, 2));
        assert_eq!(count(&rep('a', 307)), gsm(307, 3));
        assert_eq!(count(&rep('a', 459)), gsm(459, 3));
        assert_eq!(count(&rep('a', 460)), gsm(460, 4));
    }

    #[test]
    fn ucs2_single_and_concatenated_limits() {
        assert_eq!(count(&rep('ж', 70)), ucs2(70, 1));
        assert_eq!(count(&rep('ж', 71)), ucs2(71, 2));
        assert_eq!(count(&rep('ж', 134)), ucs2(134, 2));
        assert_eq!(count(&rep('ж', 135)), ucs2(135, 3));
        assert_eq!(count(&rep('中', 201)), ucs2(201, 3));
        assert_eq!(count(&rep('中', 202)), ucs2(202, 4));
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(count("€"), gsm(2, 1));
        for (_, c) in EXTENSION {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(count("{a}"), gsm(5, 1));
        assert_eq!(count(&rep('€', 80)), gsm(160, 1));
        // 162 septets: 76 euros (152 septets) fill part 1, 5 go to part 2.
        assert_eq!(count(&rep('€', 81)), gsm(162, 2));
    }

    #[test]
    fn extension_character_is_not_split_across_parts() {
        // 154 septets fit a single SMS: no parts, nothing to split.
        let short = format!("{}{{", rep('a', 152));
        assert_eq!(count(&short), gsm(154, 1));
        // 306 septets would divide into 2 × 153, but '{' (ESC + code) cannot take the one septet
        // left in part 1: it opens part 2, which then holds 2 + 151 and leaves 1 'a' for part 3.
        let text = format!("{}{{{}", rep('a', 152), rep('a', 152));
        assert_eq!(count(&text), gsm(306, 3));
        // One 'a' fewer and part 2 is exactly full.
        let text = format!("{}{{{}", rep('a', 152), rep('a', 151));
        assert_eq!(count(&text), gsm(305, 2));
        // The same at the second part boundary: 459 septets would divide into 3 × 153, but '€'
        // cannot take septet 306, so part 3 opens with it and 1 'a' spills into part 4.
        let text = format!("{}€{}", rep('a', 305), rep('a', 152));
        assert_eq!(count(&text), gsm(459, 4));
    }

    #[test]
    fn accents_in_the_basic_table_stay_gsm7() {
        assert_eq!(count("é"), gsm(1, 1));
        assert_eq!(count("É"), gsm(1, 1));
        assert_eq!(count("Ç"), gsm(1, 1), "0x09 is the capital C-cedilla");
        assert_eq!(count("café à Malmö, Ñu"), gsm(16, 1));
    }

    #[test]
    fn accents_outside_the_tables_force_ucs2() {
        assert_eq!(count("ê"), ucs2(1, 1));
        // Not in the default table (only in national shift tables): UCS-2.
        assert_eq!(count("ç"), ucs2(1, 1));
        assert_eq!(count("façade"), ucs2(6, 1));
        // 'Ñ' is in the basic table, 'ú' is not.
        assert_eq!(count("Ñandú"), ucs2(5, 1));
        // One such character makes the whole text UCS-2, with the UCS-2 limits.
        let text = format!("{}ê", rep('a', 100));
        assert_eq!(count(&text), ucs2(101, 2));
    }

    #[test]
    fn greek_capitals_of_the_basic_table_are_gsm7() {
        assert_eq!(count("ΔΦΓΛΩΠΨΣΘΞ"), gsm(10, 1));
        // Other Greek letters are not: capital alpha (U+0391), small omega, the Ohm sign.
        for c in ['Α', 'ω', '\u{2126}'] {
            assert_eq!(count(&c.to_string()).encoding, SmsEncoding::Ucs2, "{c:?}");
        }
    }

    #[test]
    fn ascii_outside_the_gsm7_tables_forces_ucs2() {
        for c in ['`', '\t', '\u{0}', '\u{7F}'] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
        }
        assert_eq!(count("line\nline\r\n"), gsm(11, 1));
        assert_eq!(count("page\u{0C}"), gsm(6, 1));
    }

    #[test]
    fn emoji_forces_ucs2_and_counts_two_units() {
        assert_eq!(count("😀"), ucs2(2, 1));
        assert_eq!(count("hi 😀"), ucs2(5, 1));
        assert_eq!(count(&rep('😀', 35)), ucs2(70, 1));
        assert_eq!(count(&rep('😀', 36)), ucs2(72, 2));
    }

    #[test]
    fn surrogate_pair_is_not_split_across_parts() {
        // 134 units would divide into 2 × 67, but the emoji cannot take the one unit left in
        // part 1: part 2 holds 2 + 65, leaving 1 for part 3.
        let text = format!("{}😀{}", rep('ж', 66), rep('ж', 66));
        assert_eq!(count(&text), ucs2(134, 3));
        let text = format!("{}😀{}", rep('ж', 66), rep('ж', 65));
        assert_eq!(count(&text), ucs2(133, 2));
        // 33 emoji fill 66 units of each part.
        assert_eq!(count(&rep('😀', 67)), ucs2(134, 3));
    }

    /// A char from a mix that exercises every cost: GSM basic (1), GSM extension (2),
    /// BMP non-GSM (UCS-2, 1 unit), outside the BMP (UCS-2, 2 units). GSM chars are weighted so
    /// that many texts stay GSM-7.
    fn any_char() -> impl Strategy<Value = char> {
        prop_oneof![
            8 => proptest::sample::select(BASIC.iter().copied().filter(|&c| c != '\u{1B}').collect::<Vec<_>>()),
            3 => proptest::sample::select(EXTENSION.iter().map(|&(_, c)| c).collect::<Vec<_>>()),
            1 => proptest::sample::select(vec!['ж', 'ê', 'ç', '中', '`', '\u{2019}']),
            1 => proptest::sample::select(vec!['😀', '🎉', '👍', '𝄞']),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any_char(), 0..400).prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn units_are_the_sum_of_per_char_costs(t in text()) {
            let s = count(&t);
            let gsm: Option<usize> = t.chars().map(gsm7_septets).sum();
            match gsm {
                Some(septets) => prop_assert_eq!((s.encoding, s.units), (SmsEncoding::Gsm7, septets)),
                None => prop_assert_eq!((s.encoding, s.units), (SmsEncoding::Ucs2, t.encode_utf16().count())),
            }
        }

        #[test]
        fn appending_a_char_never_lowers_the_segments(t in text(), c in any_char()) {
            let before = count(&t);
            let after = count(&format!("{t}{c}"));
            prop_assert!(after.segments >= before.segments, "{:?} -> {:?}", before, after);
            prop_assert!(after.units > before.units || after.encoding != before.encoding);
        }

        #[test]
        fn segments_lie_between_the_divided_bounds(t in text()) {
            let s = count(&t);
            let (single, part) = match s.encoding {
                SmsEncoding::Gsm7 => (GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS),
                SmsEncoding::Ucs2 => (UCS2_SINGLE_UNITS, UCS2_PART_UNITS),
            };
            if s.units <= single {
                prop_assert_eq!(s.segments, usize::from(s.units > 0));
            } else {
                // A character costs at most 2 units, so packing wastes at most 1 unit per part.
                prop_assert!(s.segments >= s.units.div_ceil(part));
                prop_assert!(s.segments <= s.units.div_ceil(part - 1));
            }
        }

        #[test]
        fn with_single_unit_chars_packing_equals_division(n in 0usize..1000, ucs in any::<bool>()) {
            let (t, single, part) = if ucs {
                (rep('ж', n), UCS2_SINGLE_UNITS, UCS2_PART_UNITS)
            } else {
                (rep('a', n), GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS)
            };
            let expected = match n {
                0 => 0,
                n if n <= single => 1,
                n => n.div_ceil(part),
            };
            prop_assert_eq!(count(&t).segments, expected);
            prop_assert_eq!(count(&t).units, n);
        }
    }
}
