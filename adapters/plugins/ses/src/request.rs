//! Building the SES v2 `SendEmail` request (`POST /v2/email/outbound-emails`, rest-json,
//! signed with AWS Signature Version 4 for service `ses`).
//!
//! Body (spec shapes `SendEmailRequest`, `Destination`, `EmailContent.Simple` = `Message`,
//! `Content`, `Body`, `MessageTag`):
//! `{"FromEmailAddress", "Destination": {"ToAddresses": [to]}, "Content": {"Simple": {"Subject":
//! {"Data", "Charset": "UTF-8"}, "Body": {"Text"?: {...}, "Html"?: {...}}}}, "EmailTags":
//! [{"Name": "hermes_message", "Value": <message id>}, {"Name": "hermes_attempt", "Value":
//! <attempt id>}], "ConfigurationSetName"?}`.

use serde_json::{Value, json};

use crate::sigv4;
use hermes_guest_kit::{Reject, non_empty};

/// The path of `SendEmail` (spec `operations.SendEmail.http.requestUri`).
pub const SEND_EMAIL_PATH: &str = "/v2/email/outbound-emails";
/// The signing name (spec `metadata.signingName`).
pub const SERVICE: &str = "ses";
/// The message tags that carry Hermes's ids to SES's event notifications (`mail.tags`).
pub const TAG_MESSAGE: &str = "hermes_message";
pub const TAG_ATTEMPT: &str = "hermes_attempt";

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub from: Option<String>,
    pub configuration_set: Option<String>,
}

pub use hermes_guest_kit::HttpRequest;

/// An AWS region name such as `us-east-1`.
pub fn is_region(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The default endpoint: `https://email.{region}.amazonaws.com` (endpoint prefix `email`).
pub fn default_base_url(region: &str) -> String {
    format!("https://email.{region}.amazonaws.com")
}

/// A `MessageTag` value: ASCII letters, digits, `_` and `-`, at most 256 characters.
fn is_tag_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn utf8(data: &str) -> Value {
    json!({ "Data": data, "Charset": "UTF-8" })
}

/// The `Content.Simple` message, from Hermes's email `ChannelContent` JSON.
fn simple_message(content: &str) -> Result<Value, Reject> {
    let value: Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let channel = value.get("channel").and_then(Value::as_str);
    if channel != Some("email") {
        return Err(Reject::invalid_content(format!(
            "email attempt with {} content",
            channel.unwrap_or("unknown")
        )));
    }
    let text_of = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
    };
    let subject = value
        .get("subject")
        .and_then(Value::as_str)
        .ok_or_else(|| Reject::invalid_content("email content without a subject".to_owned()))?;
    let mut body = serde_json::Map::new();
    if let Some(text) = text_of("text") {
        body.insert("Text".to_owned(), utf8(text));
    }
    if let Some(html) = text_of("html") {
        body.insert("Html".to_owned(), utf8(html));
    }
    if body.is_empty() {
        return Err(Reject::invalid_content(
            "email content without text or html".to_owned(),
        ));
    }
    Ok(json!({ "Subject": utf8(subject), "Body": body }))
}

/// The ids of one attempt and the time to sign at.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub message_id: &'a str,
    pub attempt_id: &'a str,
    pub to: &'a str,
    pub content: &'a str,
    pub now_millis: u64,
}

/// The signed request for one attempt, or why it cannot be made (nothing was sent).
pub fn build(config: &Config, attempt: &Attempt<'_>) -> Result<HttpRequest, Reject> {
    let region =
        non_empty(&config.region).ok_or_else(|| Reject::plugin_config("no region configured"))?;
    if !is_region(region) {
        return Err(Reject::plugin_config(
            "region is not an AWS region name (like us-east-1)",
        ));
    }
    let access_key_id = non_empty(&config.access_key_id)
        .ok_or_else(|| Reject::plugin_config("no access_key_id configured"))?;
    let secret_access_key = non_empty(&config.secret_access_key)
        .ok_or_else(|| Reject::plugin_config("no secret_access_key configured"))?;
    let from =
        non_empty(&config.from).ok_or_else(|| Reject::plugin_config("no from configured"))?;
    let base_url = non_empty(&config.base_url)
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| default_base_url(region));
    let message = simple_message(attempt.content)?;
    let to = attempt.to.trim();
    if to.is_empty() {
        return Err(Reject::invalid_content("no recipient address"));
    }
    for id in [attempt.message_id, attempt.attempt_id] {
        if !is_tag_value(id) {
            return Err(Reject::invalid_content(format!(
                "the id {id:?} cannot be an SES message tag value"
            )));
        }
    }

    let mut body = json!({
        "FromEmailAddress": from,
        "Destination": { "ToAddresses": [to] },
        "Content": { "Simple": message },
        "EmailTags": [
            { "Name": TAG_MESSAGE, "Value": attempt.message_id },
            { "Name": TAG_ATTEMPT, "Value": attempt.attempt_id },
        ],
    });
    if let Some(set) = non_empty(&config.configuration_set) {
        body["ConfigurationSetName"] = Value::String(set.to_owned());
    }
    let body = serde_json::to_vec(&body).expect("a JSON value serializes");
    let url = format!("{base_url}{SEND_EMAIL_PATH}");
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            url: &url,
            headers: &headers,
            body: &body,
        },
        &sigv4::Credentials {
            access_key_id,
            secret_access_key,
            session_token: non_empty(&config.session_token),
        },
        region,
        SERVICE,
        &sigv4::amz_date(attempt.now_millis),
    )
    .ok_or_else(|| {
        Reject::plugin_config(format!("base_url {base_url:?} is not an absolute URL"))
    })?;
    let mut headers = signed.headers;
    headers.push(("accept".to_owned(), "application/json".to_owned()));
    Ok(HttpRequest { url, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "0b6f3c52-8d1e-4a7b-9c55-1f2e3d4c5b6a";
    const ATTEMPT: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn config() -> Config {
        Config {
            base_url: None,
            region: Some("eu-west-1".to_owned()),
            access_key_id: Some("AKIDEXAMPLE".to_owned()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: None,
            from: Some("Hermes <noreply@example.com>".to_owned()),
            configuration_set: None,
        }
    }

    fn attempt(content: &str) -> Attempt<'_> {
        Attempt {
            message_id: MESSAGE,
            attempt_id: ATTEMPT,
            to: "recipient@example.net",
            content,
            now_millis: 1_440_938_160_000,
        }
    }

    const EMAIL: &str =
        r#"{"channel":"email","subject":"Héllo","text":"plain","html":"<p>rich</p>"}"#;

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_body_follows_send_email_request() {
        let request = build(&config(), &attempt(EMAIL)).unwrap();
        assert_eq!(
            request.url,
            "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "FromEmailAddress": "Hermes <noreply@example.com>",
                "Destination": {"ToAddresses": ["recipient@example.net"]},
                "Content": {"Simple": {
                    "Subject": {"Data": "Héllo", "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": "plain", "Charset": "UTF-8"},
                        "Html": {"Data": "<p>rich</p>", "Charset": "UTF-8"},
                    },
                }},
                "EmailTags": [
                    {"Name": "hermes_message", "Value": MESSAGE},
                    {"Name": "hermes_attempt", "Value": ATTEMPT},
                ],
            })
        );
    }

    #[test]
    fn the_request_is_signed_for_ses_in_the_region() {
        let request = build(&config(), &attempt(EMAIL)).unwrap();
        assert_eq!(
            header(&request, "host"),
            Some("email.eu-west-1.amazonaws.com")
        );
        assert_eq!(header(&request, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert_eq!(header(&request, "x-amz-security-token"), None);
        let authorization = header(&request, "authorization").unwrap();
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ses/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        ));
        // The signature is the one sigv4 computes over exactly this request.
        let again = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                url: &request.url,
                headers: &[("content-type".to_owned(), "application/json".to_owned())],
                body: &request.body,
            },
            &sigv4::Credentials {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                session_token: None,
            },
            "eu-west-1",
            "ses",
            "20150830T123600Z",
        )
        .unwrap();
        assert_eq!(authorization, again.authorization);
    }

    #[test]
    fn options_session_token_configuration_set_and_base_url() {
        let cfg = Config {
            base_url: Some("http://127.0.0.1:4010/".to_owned()),
            session_token: Some("TOKEN".to_owned()),
            configuration_set: Some("hermes-events".to_owned()),
            ..config()
        };
        let content = r#"{"channel":"email","subject":"s","text":null,"html":"<b>x</b>"}"#;
        let request = build(&cfg, &attempt(content)).unwrap();
        assert_eq!(
            request.url,
            "http://127.0.0.1:4010/v2/email/outbound-emails"
        );
        assert_eq!(header(&request, "host"), Some("127.0.0.1:4010"));
        assert_eq!(header(&request, "x-amz-security-token"), Some("TOKEN"));
        assert!(
            header(&request, "authorization")
                .unwrap()
                .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["ConfigurationSetName"], "hermes-events");
        assert_eq!(
            body["Content"]["Simple"]["Body"],
            json!({"Html": {"Data": "<b>x</b>", "Charset": "UTF-8"}})
        );
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        for cfg in [
            Config {
                region: None,
                ..config()
            },
            Config {
                region: Some("EU WEST".to_owned()),
                ..config()
            },
            Config {
                access_key_id: None,
                ..config()
            },
            Config {
                secret_access_key: Some(" ".to_owned()),
                ..config()
            },
            Config {
                from: None,
                ..config()
            },
            Config {
                base_url: Some("not a url".to_owned()),
                ..config()
            },
        ] {
            let err = build(&cfg, &attempt(EMAIL)).unwrap_err();
            assert_eq!(err.code, "plugin_config", "{cfg:?}");
            assert!(err.retryable);
        }
    }

    #[test]
    fn bad_content_is_permanent() {
        for content in [
            "not json",
            r#"{"channel":"sms","text":"x"}"#,
            r#"{"channel":"email","text":"x"}"#,
            r#"{"channel":"email","subject":"s","text":null,"html":null}"#,
            r#"{"channel":"email","subject":"s","text":"  "}"#,
        ] {
            let err = build(&config(), &attempt(content)).unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
        let mut bad = attempt(EMAIL);
        bad.to = " ";
        assert_eq!(build(&config(), &bad).unwrap_err().code, "invalid_content");
    }
}
