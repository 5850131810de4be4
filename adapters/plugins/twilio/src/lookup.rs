//! Reconciliation: `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` (Twilio's Message
//! resource, HTTP Basic auth) for an attempt whose status callback did not come. The answer's
//! `status`, `error_code` and `error_message` mean what the callback's `MessageStatus`,
//! `ErrorCode` and `ErrorMessage` mean, so they are read by the same rules
//! ([`crate::callback::interpret`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::callback::{self, Parsed};
use crate::request::{Config, DEFAULT_BASE_URL};
use hermes_guest_kit::non_empty;

/// The request for one Message, or why it cannot be made.
pub fn build(config: &Config, sid: &str) -> Result<(String, Vec<(String, String)>), String> {
    let account_sid = non_empty(&config.account_sid).ok_or("no account_sid configured")?;
    let auth_token = non_empty(&config.auth_token).ok_or("no auth_token configured")?;
    // A Message SID is `SM`/`MM` and 32 hex digits: nothing else goes into the path.
    if sid.len() != 34 || !sid[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{sid:?} is not a Twilio Message SID"));
    }
    let base_url = non_empty(&config.base_url).unwrap_or(DEFAULT_BASE_URL);
    let credentials = STANDARD.encode(format!("{account_sid}:{auth_token}"));
    Ok((
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            base_url.trim_end_matches('/')
        ),
        vec![
            ("accept".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Basic {credentials}")),
        ],
    ))
}

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
    error_code: Option<i64>,
    error_message: Option<String>,
}

/// What Twilio's answer says: `Ok(None)` when it does not know the Message (404) or its status is
/// not news (queued, sending...).
pub fn interpret(status: u16, body: &[u8]) -> Result<Option<Parsed>, String> {
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {status}: {}",
            hermes_guest_kit::body_or_status("Twilio", status, body)
        ));
    }
    let message: MessageResource = serde_json::from_slice(body)
        .map_err(|err| format!("unreadable Message resource: {err}"))?;
    let mut params = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            params.push((name.to_owned(), value));
        }
    };
    push("MessageStatus", message.status);
    push("MessageSid", message.sid);
    push("ErrorCode", message.error_code.map(|c| c.to_string()));
    push("ErrorMessage", message.error_message);
    callback::interpret(&params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::Status;

    const SID: &str = "SMb7c0a2ce80504485a6f653a7110836f5";

    fn config() -> Config {
        Config {
            base_url: Some("https://api.twilio.com/".to_owned()),
            account_sid: Some("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()),
            auth_token: Some("token".to_owned()),
            ..Config::default()
        }
    }

    #[test]
    fn the_request_is_the_message_resource_with_basic_auth() {
        let (url, headers) = build(&config(), SID).unwrap();
        assert_eq!(
            url,
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/{SID}.json"
            )
        );
        let expected = format!(
            "Basic {}",
            STANDARD.encode("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:token")
        );
        assert!(headers.contains(&("authorization".to_owned(), expected)));
    }

    #[test]
    fn anything_but_a_message_sid_or_missing_credentials_is_refused() {
        for bad in ["", "SM1", "../../Calls.json?x=SMb7c0a2ce80504485a6f6"] {
            assert!(build(&config(), bad).is_err(), "{bad}");
        }
        let no_token = Config {
            auth_token: None,
            ..config()
        };
        assert!(build(&no_token, SID).is_err());
    }

    #[test]
    fn statuses_read_as_the_callbacks_do() {
        let body = |status: &str, code: Option<i64>| {
            serde_json::to_vec(&serde_json::json!({
                "sid": SID, "status": status, "error_code": code, "error_message": null,
            }))
            .unwrap()
        };
        let delivered = interpret(200, &body("delivered", None)).unwrap().unwrap();
        assert_eq!(delivered.status, Status::Delivered);
        assert_eq!(delivered.provider_message_id.as_deref(), Some(SID));
        assert_eq!(delivered.error, None);
        let failed = interpret(200, &body("undelivered", Some(30003)))
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(
            failed.error,
            Some((
                "twilio_30003".to_owned(),
                "unreachable destination handset".to_owned()
            ))
        );
        assert_eq!(interpret(200, &body("sending", None)), Ok(None));
        assert_eq!(interpret(404, b"{}"), Ok(None));
    }

    #[test]
    fn errors_and_unreadable_answers_are_errors() {
        assert!(interpret(401, br#"{"code":20003,"message":"Authenticate"}"#).is_err());
        assert!(interpret(500, b"").is_err());
        assert!(interpret(200, b"not json").is_err());
    }
}
