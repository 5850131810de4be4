//! Inbound SMS (spec `sms-1.2.0.openapi.json`, webhook `inbound-sms`, schema `InboundMessage`):
//! what a recipient sent to the account's Vonage number, for Hermes's opt-out keywords.
//!
//! Vonage sends it as a GET (fields in the query) or a POST (form-encoded or JSON), per the
//! account's webhook setting, signed like delivery receipts (`timestamp`, `nonce`, `sig` with the
//! signature secret): the same check, in constant time, and the same 5-minute replay window.
//! `msisdn` (the sender) and `to` (the Vonage number) are E.164 without the `+`; they are given
//! to Hermes with it. A binary message (`type` `binary`) carries no text and is left out, as is a
//! part of a concatenated message (`concat` `true`): a keyword is one short message.

use crate::callback::{Incoming, Refusal, SignatureMethod, param, verified_params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from: String,
    pub to: String,
    pub text: String,
    pub message_id: Option<String>,
}

/// Checks the signature, then reads the message; `Ok(None)` for one without text.
pub fn handle(
    secret: &str,
    method: Option<SignatureMethod>,
    incoming: Incoming<'_>,
) -> Result<Option<Inbound>, Refusal> {
    let params = verified_params(secret, method, &incoming)?;
    if param(&params, "type") == Some("binary") || param(&params, "concat") == Some("true") {
        return Ok(None);
    }
    let field = |name: &str| {
        param(&params, name)
            .map(str::to_owned)
            .ok_or_else(|| Refusal::Malformed(format!("the inbound message has no `{name}`")))
    };
    let e164 = |number: String| {
        if number.starts_with('+') {
            number
        } else {
            format!("+{number}")
        }
    };
    Ok(Some(Inbound {
        from: e164(field("msisdn")?),
        to: e164(field("to")?),
        // The raw text, not the trimmed one `param` gives: Hermes reads the keyword itself.
        text: params
            .iter()
            .find(|(n, _)| n == "text")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        message_id: param(&params, "messageId").map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::sign;
    use hermes_guest_kit::pairs;

    const SECRET: &str = "my_secret_key_for_testing";
    const NOW: u64 = 1_767_225_600;

    /// The spec's `InboundMessage` example, signed as Vonage signs it.
    fn signed(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut params = pairs(&[
            ("api-key", "abcd1234"),
            ("msisdn", "447700900001"),
            ("to", "447700900000"),
            ("messageId", "0A0000000123ABCD1"),
            ("text", "STOP"),
            ("type", "text"),
            ("keyword", "STOP"),
            ("message-timestamp", "2026-01-01T00:00:00.000Z"),
            ("timestamp", &NOW.to_string()),
            ("nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
        ]);
        params.extend(pairs(extra));
        let sig = sign(SECRET, SignatureMethod::Sha256, &params);
        params.push(("sig".to_owned(), sig));
        params
    }

    fn json(params: &[(String, String)]) -> Vec<u8> {
        let object: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::to_vec(&object).unwrap()
    }

    fn post(body: &[u8]) -> Result<Option<Inbound>, Refusal> {
        handle(
            SECRET,
            Some(SignatureMethod::Sha256),
            Incoming {
                method: "POST",
                url: "https://hermes.example.com/v1/inbound/vonage",
                headers: &pairs(&[("content-type", "application/json")]),
                body,
                now_secs: NOW,
            },
        )
    }

    #[test]
    fn a_signed_inbound_sms_gives_its_sender_number_and_text() {
        let got = post(&json(&signed(&[]))).unwrap().unwrap();
        assert_eq!(
            got,
            Inbound {
                from: "+447700900001".into(),
                to: "+447700900000".into(),
                text: "STOP".into(),
                message_id: Some("0A0000000123ABCD1".into()),
            }
        );
    }

    #[test]
    fn a_get_with_the_fields_in_the_query_is_read_the_same() {
        let params = signed(&[]);
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let url = format!("https://hermes.example.com/v1/inbound/vonage?{query}");
        let got = handle(
            SECRET,
            Some(SignatureMethod::Sha256),
            Incoming {
                method: "GET",
                url: &url,
                headers: &[],
                body: b"",
                now_secs: NOW,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.from, "+447700900001");
        assert_eq!(got.text, "STOP");
    }

    #[test]
    fn an_unsigned_tampered_or_replayed_message_is_refused() {
        let mut tampered = signed(&[]);
        tampered.iter_mut().find(|(k, _)| k == "msisdn").unwrap().1 = "447700900002".into();
        assert!(matches!(
            post(&json(&tampered)),
            Err(Refusal::InvalidSignature)
        ));
        let unsigned: Vec<_> = signed(&[])
            .into_iter()
            .filter(|(k, _)| k != "sig")
            .collect();
        assert!(matches!(
            post(&json(&unsigned)),
            Err(Refusal::InvalidSignature)
        ));
        let stale = handle(
            SECRET,
            Some(SignatureMethod::Sha256),
            Incoming {
                method: "POST",
                url: "https://hermes.example.com/v1/inbound/vonage",
                headers: &pairs(&[("content-type", "application/json")]),
                body: &json(&signed(&[])),
                now_secs: NOW + 3600,
            },
        );
        assert!(matches!(stale, Err(Refusal::Stale)));
        // No signing method configured: nothing is taken.
        let unconfigured = handle(
            SECRET,
            None,
            Incoming {
                method: "POST",
                url: "https://hermes.example.com/v1/inbound/vonage",
                headers: &pairs(&[("content-type", "application/json")]),
                body: &json(&signed(&[])),
                now_secs: NOW,
            },
        );
        assert!(matches!(unconfigured, Err(Refusal::InvalidSignature)));
    }

    #[test]
    fn binary_messages_and_concatenated_parts_are_left_out() {
        assert_eq!(post(&json(&signed(&[("concat", "true")]))).unwrap(), None);
        let binary: Vec<_> = signed(&[])
            .into_iter()
            .map(|(k, v)| {
                if k == "type" {
                    (k, "binary".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        // Re-signed with the new type.
        let mut binary: Vec<_> = binary.into_iter().filter(|(k, _)| k != "sig").collect();
        let sig = sign(SECRET, SignatureMethod::Sha256, &binary);
        binary.push(("sig".to_owned(), sig));
        assert_eq!(post(&json(&binary)).unwrap(), None);
    }

    #[test]
    fn a_signed_message_without_a_sender_is_malformed() {
        let mut params: Vec<_> = signed(&[])
            .into_iter()
            .filter(|(k, _)| k != "sig" && k != "msisdn")
            .collect();
        let sig = sign(SECRET, SignatureMethod::Sha256, &params);
        params.push(("sig".to_owned(), sig));
        assert!(matches!(post(&json(&params)), Err(Refusal::Malformed(m)) if m.contains("msisdn")));
    }
}
