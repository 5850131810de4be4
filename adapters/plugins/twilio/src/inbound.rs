//! Inbound messages: Twilio's request to the incoming-message webhook ("A message comes in") of a
//! number or Messaging Service, read for Hermes's opt-out (STOP) and opt-in (START) keywords.
//!
//! Sources (Twilio's documentation):
//! - "Twilio's request to your incoming message Webhook URL"
//!   (<https://www.twilio.com/docs/messaging/guides/webhook-request>): the request is
//!   `application/x-www-form-urlencoded`, its parameters sent "as POST parameters or URL query
//!   parameters, depending on which HTTP method you've configured"; `MessageSid` ("a 34
//!   character unique identifier for the message"), `SmsSid` ("same value as MessageSid.
//!   Deprecated"), `AccountSid` ("the 34 character id of the Account this message is associated
//!   with"), `MessagingServiceSid`, `From` ("the phone number or Channel address that sent this
//!   message"), `To`, `Body`, `NumMedia`, `NumSegments`; Twilio "expects to receive TwiML in
//!   response", and warns that it adds parameters without notice (so every parameter received is
//!   signed over, never a fixed list).
//! - "Webhooks security" (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>) and
//!   "Webhook security" (<https://www.twilio.com/docs/usage/api-security-reference-guide/webhook>):
//!   every webhook request carries `X-Twilio-Signature`, HMAC-SHA1 keyed with the Auth Token
//!   over the request URL and body, the same check as status callbacks (`callback::verify`).
//! - "How to Track Opt-Out, Opt-In and Help Messages Using the OptOutType Parameter" (Twilio
//!   support, <https://support.twilio.com/hc/en-us/articles/31560110671259-How-to-Track-Opt-Out-Opt-In-and-Help-Messages-Using-the-OptOutType-Parameter>):
//!   with Advanced Opt-Out on a Messaging Service, the request also carries `OptOutType` (`STOP`,
//!   `START` or `HELP`). It is not read: Hermes reads the keyword from the text itself.
//! - Message resource (<https://www.twilio.com/docs/sms/api/message-resource>): inbound
//!   messages over 160 characters are reassembled before they are delivered, so one request is
//!   one whole message (no parts to leave out, unlike Vonage's `concat`).
//! - Errors 12300 "Invalid Content-Type" (<https://www.twilio.com/docs/errors/12300>) and 11750
//!   (<https://www.twilio.com/docs/errors/11750>, "use an empty TwiML response"): why the answer
//!   is TwiML (see `EMPTY_TWIML`).

use crate::callback::{SIGNATURE_HEADER, form_params, param, verify};

/// What Hermes answers Twilio: a `200` with an empty TwiML `<Response>`, which tells Twilio to do
/// nothing (no reply is sent to the recipient). Hermes's default answer (a JSON count) is also a
/// 200, but it is not TwiML: Twilio would log every inbound message as a 12300 "Invalid
/// Content-Type" in the account's debugger, burying real problems. Nobody reads the count.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;
pub const TWIML_CONTENT_TYPE: &str = "text/xml";

/// The request as the host passes it.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from: String,
    pub to: String,
    pub text: String,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `X-Twilio-Signature` is missing or does not sign the request.
    InvalidSignature,
    /// Signed, but not for this account's `account_sid`: the request's `AccountSid`, if any.
    OtherAccount(Option<String>),
    /// This account has no `account_sid` to compare the request's with.
    NoAccountSid,
    Malformed(String),
}

/// The fields of a GET's query (a fragment never reaches Hermes, but is cut off if present).
fn query_params(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Checks the signature, then the account, then reads the message: `Ok(None)` for a message
/// from a channel address (`whatsapp:+...`, `rcs:...`) rather than a phone number.
pub fn handle(
    auth_token: &str,
    account_sid: Option<&str>,
    incoming: Incoming<'_>,
) -> Result<Option<Inbound>, Refusal> {
    // As for status callbacks: the signature covers the POST parameters; a GET has none (its
    // fields are in the URL, which is signed).
    let post = incoming.method.eq_ignore_ascii_case("POST");
    let signed = if post {
        form_params(incoming.body)
    } else {
        Vec::new()
    };
    let signature = hermes_guest_kit::header(incoming.headers, SIGNATURE_HEADER);
    // Verify before anything else: nothing unauthenticated is even looked at.
    if !verify(auth_token, incoming.url, &signed, signature) {
        return Err(Refusal::InvalidSignature);
    }
    let params = if post {
        signed
    } else {
        query_params(incoming.url)
    };
    let theirs = param(&params, "AccountSid");
    let ours = account_sid
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::NoAccountSid)?;
    if theirs != Some(ours) {
        return Err(Refusal::OtherAccount(theirs.map(str::to_owned)));
    }
    let field = |name: &str| {
        param(&params, name)
            .map(str::to_owned)
            .ok_or_else(|| Refusal::Malformed(format!("the inbound message has no `{name}`")))
    };
    let from = field("From")?;
    let to = field("To")?;
    // A channel address is not a phone number: Hermes's keywords are SMS opt-outs, and a
    // WhatsApp (or RCS) sender's STOP is not one.
    if from.contains(':') || to.contains(':') {
        return Ok(None);
    }
    Ok(Some(Inbound {
        from,
        to,
        // The raw text, not the trimmed one `param` gives: Hermes reads the keyword itself. An
        // MMS with media only has an empty `Body`.
        text: params
            .iter()
            .find(|(n, _)| n == "Body")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        message_id: param(&params, "MessageSid")
            .or_else(|| param(&params, "SmsSid"))
            .map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::sign;
    use hermes_guest_kit::pairs;

    const TOKEN: &str = "12345";
    const ACCOUNT: &str = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const URL: &str = "https://hermes.example.com/v1/inbound/twilio";

    /// The documented request parameters of an incoming SMS.
    fn params(body: &str) -> Vec<(String, String)> {
        pairs(&[
            ("MessageSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("SmsSid", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("AccountSid", ACCOUNT),
            ("MessagingServiceSid", "MGXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("From", "+14017122661"),
            ("To", "+15558675310"),
            ("Body", body),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
        ])
    }

    fn form(params: &[(String, String)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
            .into_bytes()
    }

    fn post(
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<Option<Inbound>, Refusal> {
        let mut headers = pairs(&[("content-type", "application/x-www-form-urlencoded")]);
        if let Some(signature) = signature {
            headers.push(("X-Twilio-Signature".to_owned(), signature.to_owned()));
        }
        handle(
            TOKEN,
            Some(ACCOUNT),
            Incoming {
                method: "POST",
                url: URL,
                headers: &headers,
                body: &form(params),
            },
        )
    }

    fn signed(params: &[(String, String)]) -> Result<Option<Inbound>, Refusal> {
        post(params, Some(&sign(TOKEN, URL, params)))
    }

    #[test]
    fn a_signed_incoming_sms_gives_its_sender_number_text_and_sid() {
        assert_eq!(
            signed(&params("STOP")).unwrap(),
            Some(Inbound {
                from: "+14017122661".into(),
                to: "+15558675310".into(),
                text: "STOP".into(),
                message_id: Some("SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".into()),
            })
        );
        // Parameters Twilio adds (here Advanced Opt-Out's) are signed over like the others.
        let mut with_opt_out = params("Stop ");
        with_opt_out.push(("OptOutType".into(), "STOP".into()));
        let got = signed(&with_opt_out).unwrap().unwrap();
        // The text as sent: Hermes reads the keyword.
        assert_eq!(got.text, "Stop ");
    }

    #[test]
    fn an_unsigned_or_tampered_message_is_refused() {
        let original = params("START");
        let signature = sign(TOKEN, URL, &original);
        let mut tampered = original.clone();
        tampered.iter_mut().find(|(k, _)| k == "From").unwrap().1 = "+14017122662".into();
        assert_eq!(
            post(&tampered, Some(&signature)),
            Err(Refusal::InvalidSignature)
        );
        assert_eq!(post(&original, None), Err(Refusal::InvalidSignature));
        // Signed with another account's token.
        let other = sign("54321", URL, &original);
        assert_eq!(
            post(&original, Some(&other)),
            Err(Refusal::InvalidSignature)
        );
        // Signed for another URL.
        let elsewhere = sign(
            TOKEN,
            "https://hermes.example.com/v1/inbound/other",
            &original,
        );
        assert_eq!(
            post(&original, Some(&elsewhere)),
            Err(Refusal::InvalidSignature)
        );
        // No auth token configured: nothing is taken.
        let unconfigured = handle(
            "",
            Some(ACCOUNT),
            Incoming {
                method: "POST",
                url: URL,
                headers: &pairs(&[("x-twilio-signature", &signature)]),
                body: &form(&original),
            },
        );
        assert_eq!(unconfigured, Err(Refusal::InvalidSignature));
    }

    #[test]
    fn a_message_for_another_account_is_refused() {
        let mut other = params("STOP");
        other.iter_mut().find(|(k, _)| k == "AccountSid").unwrap().1 =
            "ACYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY".into();
        assert_eq!(
            signed(&other),
            Err(Refusal::OtherAccount(Some(
                "ACYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY".into()
            )))
        );
        let without: Vec<_> = params("STOP")
            .into_iter()
            .filter(|(k, _)| k != "AccountSid")
            .collect();
        assert_eq!(signed(&without), Err(Refusal::OtherAccount(None)));
        // An account without `account_sid` cannot tell: refused.
        let body = params("STOP");
        let unknown = handle(
            TOKEN,
            None,
            Incoming {
                method: "POST",
                url: URL,
                headers: &pairs(&[("x-twilio-signature", &sign(TOKEN, URL, &body))]),
                body: &form(&body),
            },
        );
        assert_eq!(unknown, Err(Refusal::NoAccountSid));
    }

    #[test]
    fn an_mms_without_text_has_an_empty_text() {
        let mut mms = params("");
        mms.iter_mut().find(|(k, _)| k == "NumMedia").unwrap().1 = "1".into();
        mms.push(("MediaUrl0".into(), "https://api.twilio.com/media/1".into()));
        mms.push(("MediaContentType0".into(), "image/jpeg".into()));
        let got = signed(&mms).unwrap().unwrap();
        assert_eq!(got.text, "");
        assert_eq!(got.from, "+14017122661");
        // No `Body` at all reads the same.
        let no_body: Vec<_> = mms.into_iter().filter(|(k, _)| k != "Body").collect();
        assert_eq!(signed(&no_body).unwrap().unwrap().text, "");
    }

    #[test]
    fn a_get_with_the_parameters_in_the_query_is_read_the_same() {
        let query = String::from_utf8(form(&params("STOP"))).unwrap();
        let url = format!("{URL}?{query}");
        let signature = sign(TOKEN, &url, &[]);
        let get = |url: &str| {
            handle(
                TOKEN,
                Some(ACCOUNT),
                Incoming {
                    method: "GET",
                    url,
                    headers: &pairs(&[("x-twilio-signature", &signature)]),
                    body: b"",
                },
            )
        };
        let got = get(&url).unwrap().unwrap();
        assert_eq!(
            (got.from.as_str(), got.text.as_str()),
            ("+14017122661", "STOP")
        );
        let tampered = url.replace("Body=STOP", "Body=START");
        assert_eq!(get(&tampered), Err(Refusal::InvalidSignature));
    }

    #[test]
    fn whatsapp_messages_are_left_out_and_a_message_without_a_sender_is_malformed() {
        let mut whatsapp = params("STOP");
        for (k, v) in whatsapp.iter_mut() {
            if k == "From" || k == "To" {
                *v = format!("whatsapp:{v}");
            }
        }
        assert_eq!(signed(&whatsapp), Ok(None));
        let without: Vec<_> = params("STOP")
            .into_iter()
            .filter(|(k, _)| k != "From")
            .collect();
        assert!(matches!(signed(&without), Err(Refusal::Malformed(m)) if m.contains("From")));
    }
}
