//! Recipients' opt-out and opt-in keywords, in the SMS they send back to a tenant's number.
//!
//! A message is a keyword when its whole text, trimmed and without a trailing `.` or `!`, is one
//! of the words below, in any case: "STOP" opts out, "Stop sending me these" does not (carriers
//! and Twilio's default opt-out handling read it the same way). The lists are Twilio's defaults,
//! plus the CTIA's `OPTOUT` and `REVOKE`.

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKeyword {
    /// Stop this sender's SMS to me.
    OptOut,
    /// Start again.
    OptIn,
}

const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];
const OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];

/// The keyword the text is, if it is one.
pub fn keyword(text: &str) -> Option<OptKeyword> {
    let word = text.trim().trim_end_matches(['.', '!']).trim_end();
    let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
    if is(OPT_OUT) {
        Some(OptKeyword::OptOut)
    } else if is(OPT_IN) {
        Some(OptKeyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_text_in_any_case_is_the_keyword() {
        for text in [
            "STOP",
            "stop",
            " Stop\n",
            "STOP.",
            "stop!",
            "Unsubscribe",
            "STOPALL",
            "optout",
        ] {
            assert_eq!(keyword(text), Some(OptKeyword::OptOut), "{text:?}");
        }
        for text in ["START", "start", "Yes", "UNSTOP!"] {
            assert_eq!(keyword(text), Some(OptKeyword::OptIn), "{text:?}");
        }
    }

    #[test]
    fn a_sentence_or_another_word_is_not_a_keyword() {
        for text in [
            "",
            "Stop sending me these",
            "STOP STOP",
            "stopp",
            "thanks",
            "don't stop",
            "HELP",
        ] {
            assert_eq!(keyword(text), None, "{text:?}");
        }
    }
}
