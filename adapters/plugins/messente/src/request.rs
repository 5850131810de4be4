//! Building the `sendOmnimessage` request (`POST {base_url}/omnimessage`, JSON, HTTP Basic auth
//! `username:password`), per `components/schemas/Omnimessage` of Messente API 2.1.0
//! (`/work/shared/provider-specs/messente/openapi.yaml`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use hermes_guest_kit::{Reject, non_empty};

/// The spec's `servers[0].url`.
pub const DEFAULT_BASE_URL: &str = "https://api.messente.com/v1";

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sender: Option<String>,
    pub whatsapp_sender: Option<String>,
}

/// The channels this plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chan {
    Sms,
    Whatsapp,
    /// Any other channel, by name: refused.
    Other(&'static str),
}

pub use hermes_guest_kit::HttpRequest;

/// Hermes's `ChannelContent` JSON, checked against the attempt's channel.
fn parse_content(channel: &str, content: &str) -> Result<Value, Reject> {
    let value: Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let content_channel = value.get("channel").and_then(Value::as_str);
    if content_channel != Some(channel) {
        return Err(Reject::invalid_content(format!(
            "{channel} attempt with {} content",
            content_channel.unwrap_or("unknown")
        )));
    }
    Ok(value)
}

fn text_of(value: &Value) -> Option<&str> {
    value
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
}

/// The `SMS` schema: `{channel: "sms", text, sender?}` (`text` required).
fn sms_message(content: &str, sender: Option<&str>) -> Result<Value, Reject> {
    let value = parse_content("sms", content)?;
    let text =
        text_of(&value).ok_or_else(|| Reject::invalid_content("sms content without text"))?;
    let mut message = Map::new();
    message.insert("channel".into(), "sms".into());
    if let Some(sender) = sender {
        message.insert("sender".into(), sender.into());
    }
    message.insert("text".into(), text.into());
    Ok(Value::Object(message))
}

/// The `WhatsApp` schema: `{channel: "whatsapp", sender?, text: {body}}` or, for a template,
/// `{..., template: {name, language: {code}, components}}` (`WhatsAppTemplate` requires all three;
/// the components are the Cloud API's, passed through verbatim). The spec allows only one content
/// kind per message, so a template wins over text.
fn whatsapp_message(content: &str, sender: Option<&str>) -> Result<Value, Reject> {
    let value = parse_content("whatsapp", content)?;
    let mut message = Map::new();
    message.insert("channel".into(), "whatsapp".into());
    if let Some(sender) = sender {
        message.insert("sender".into(), sender.into());
    }
    match value.get("template").filter(|t| !t.is_null()) {
        Some(template) => {
            let name = template
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| Reject::invalid_content("whatsapp template without a name"))?;
            // Hermes gives the language as a code ("en_US"); Messente wants `{code}`.
            let language = match template.get("language") {
                Some(Value::String(code)) if !code.trim().is_empty() => json!({ "code": code }),
                Some(Value::Object(object)) if object.contains_key("code") => {
                    Value::Object(object.clone())
                }
                _ => {
                    return Err(Reject::invalid_content(
                        "whatsapp template without a language",
                    ));
                }
            };
            let components = match template.get("components") {
                None | Some(Value::Null) => Value::Array(Vec::new()),
                Some(Value::Array(items)) => Value::Array(items.clone()),
                Some(_) => {
                    return Err(Reject::invalid_content(
                        "whatsapp template components are not a list",
                    ));
                }
            };
            message.insert(
                "template".into(),
                json!({ "name": name, "language": language, "components": components }),
            );
        }
        None => {
            let text = text_of(&value).ok_or_else(|| {
                Reject::invalid_content("whatsapp content without text or template")
            })?;
            message.insert("text".into(), json!({ "body": text }));
        }
    }
    Ok(Value::Object(message))
}

/// The request for one attempt, or why it cannot be made (nothing was sent).
pub fn build(
    config: &Config,
    channel: Chan,
    to: &str,
    content: &str,
    callback_url: &str,
) -> Result<HttpRequest, Reject> {
    if let Chan::Other(name) = channel {
        return Err(Reject::unsupported_channel(format!(
            "Messente (as configured in Hermes) does not serve the {name} channel"
        )));
    }
    let username = non_empty(&config.username)
        .ok_or_else(|| Reject::plugin_config("no username configured"))?;
    let password = non_empty(&config.password)
        .ok_or_else(|| Reject::plugin_config("no password configured"))?;
    let base_url = non_empty(&config.base_url).unwrap_or(DEFAULT_BASE_URL);
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(Reject::plugin_config("base_url is not an http(s) URL"));
    }
    let to = to.trim();
    if to.is_empty() {
        return Err(Reject::invalid_content("no recipient phone number"));
    }
    let message = match channel {
        Chan::Sms => sms_message(content, non_empty(&config.sender))?,
        // An SMS sender (often alphanumeric) is no WhatsApp sender: without `whatsapp_sender`
        // Messente picks the account's default.
        _ => whatsapp_message(content, non_empty(&config.whatsapp_sender))?,
    };
    let body = json!({
        "to": to,
        "messages": [message],
        "dlr_url": callback_url,
    });
    let credentials = STANDARD.encode(format!("{username}:{password}"));
    Ok(HttpRequest {
        url: format!("{}/omnimessage", base_url.trim_end_matches('/')),
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Basic {credentials}")),
        ],
        body: serde_json::to_vec(&body).expect("a JSON value serializes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLBACK: &str = "https://hermes.example/v1/callbacks/messente/m/a";

    fn config() -> Config {
        Config {
            base_url: Some("https://api.messente.com/v1/".to_owned()),
            username: Some("user".to_owned()),
            password: Some("pass".to_owned()),
            sender: Some("MySender".to_owned()),
            whatsapp_sender: Some("+3725555555".to_owned()),
        }
    }

    fn body(request: &HttpRequest) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn sms_is_an_omnimessage_with_basic_auth_and_the_dlr_url() {
        let request = build(
            &config(),
            Chan::Sms,
            " +3725555555 ",
            r#"{"channel":"sms","text":"Hello \"world\" & co"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(request.url, "https://api.messente.com/v1/omnimessage");
        assert_eq!(
            body(&request),
            json!({
                "to": "+3725555555",
                "messages": [{"channel": "sms", "sender": "MySender", "text": "Hello \"world\" & co"}],
                "dlr_url": CALLBACK,
            })
        );
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        // base64("user:pass")
        assert_eq!(
            header(&request, "authorization"),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn the_sender_is_optional_and_the_default_base_url_is_the_specs() {
        let cfg = Config {
            base_url: None,
            sender: Some("  ".to_owned()),
            ..config()
        };
        let request = build(
            &cfg,
            Chan::Sms,
            "+1",
            r#"{"channel":"sms","text":"x"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(request.url, "https://api.messente.com/v1/omnimessage");
        assert_eq!(
            body(&request)["messages"],
            json!([{"channel": "sms", "text": "x"}])
        );
        // A Prism mock.
        let cfg = Config {
            base_url: Some("http://127.0.0.1:4010".to_owned()),
            ..config()
        };
        let request = build(
            &cfg,
            Chan::Sms,
            "+1",
            r#"{"channel":"sms","text":"x"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:4010/omnimessage");
    }

    #[test]
    fn whatsapp_text_and_templates() {
        let request = build(
            &config(),
            Chan::Whatsapp,
            "+3725555555",
            r#"{"channel":"whatsapp","text":"hi"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(
            body(&request)["messages"],
            json!([{"channel": "whatsapp", "sender": "+3725555555", "text": {"body": "hi"}}])
        );
        let components =
            json!([{"type": "body", "parameters": [{"type": "text", "text": "John"}]}]);
        let content = json!({
            "channel": "whatsapp",
            "text": "fallback",
            "template": {"name": "order", "language": "en_US", "components": components},
        })
        .to_string();
        let request = build(&config(), Chan::Whatsapp, "+1", &content, CALLBACK).unwrap();
        assert_eq!(
            body(&request)["messages"],
            json!([{
                "channel": "whatsapp",
                "sender": "+3725555555",
                "template": {"name": "order", "language": {"code": "en_US"}, "components": components},
            }])
        );
        // No components: an empty list (the spec requires the field); no whatsapp_sender: none.
        let cfg = Config {
            whatsapp_sender: None,
            ..config()
        };
        let content = r#"{"channel":"whatsapp","template":{"name":"hello","language":"en"}}"#;
        let request = build(&cfg, Chan::Whatsapp, "+1", content, CALLBACK).unwrap();
        assert_eq!(
            body(&request)["messages"],
            json!([{
                "channel": "whatsapp",
                "template": {"name": "hello", "language": {"code": "en"}, "components": []},
            }])
        );
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        let content = r#"{"channel":"sms","text":"x"}"#;
        for cfg in [
            Config {
                username: None,
                ..config()
            },
            Config {
                password: Some(" ".to_owned()),
                ..config()
            },
            Config {
                base_url: Some("ftp://x".to_owned()),
                ..config()
            },
        ] {
            let err = build(&cfg, Chan::Sms, "+1", content, CALLBACK).unwrap_err();
            assert_eq!(err.code, "plugin_config");
            assert!(err.retryable);
        }
    }

    #[test]
    fn bad_content_is_permanent_and_other_channels_are_refused() {
        for (chan, content) in [
            (Chan::Sms, "not json"),
            (Chan::Sms, r#"{"channel":"email","subject":"s","text":"x"}"#),
            (Chan::Sms, r#"{"channel":"sms"}"#),
            (Chan::Sms, r#"{"channel":"sms","text":"  "}"#),
            (Chan::Whatsapp, r#"{"channel":"sms","text":"x"}"#),
            (Chan::Whatsapp, r#"{"channel":"whatsapp"}"#),
            (
                Chan::Whatsapp,
                r#"{"channel":"whatsapp","template":{"name":"t"}}"#,
            ),
            (
                Chan::Whatsapp,
                r#"{"channel":"whatsapp","template":{"language":"en"}}"#,
            ),
            (
                Chan::Whatsapp,
                r#"{"channel":"whatsapp","template":{"name":"t","language":"en","components":{}}}"#,
            ),
        ] {
            let err = build(&config(), chan, "+1", content, CALLBACK).unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
        let err = build(
            &config(),
            Chan::Sms,
            " ",
            r#"{"channel":"sms","text":"x"}"#,
            CALLBACK,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_content");
        let err = build(
            &config(),
            Chan::Other("email"),
            "a@b.c",
            r#"{"channel":"email","subject":"s"}"#,
            CALLBACK,
        )
        .unwrap_err();
        assert_eq!(err.code, "unsupported_channel");
        assert!(err.retryable);
    }
}
