//! Building the Cloud API `sendMessage` request.
//!
//! Spec: `business-messaging-api_v23.0.yaml`, path `/{Version}/{Phone-Number-ID}/messages`, `post`,
//! operationId `sendMessage`, server `https://graph.facebook.com`; request body schema `Message`
//! (a `TextMessage` or `TemplateMessage` over `BaseMessageProperties`: `messaging_product`,
//! `recipient_type`, `to`, `type`), header `Authorization: Bearer <access token>`.
//! `biz_opaque_callback_data` is documented in Meta's send-message reference (echoed in the
//! status webhooks, "Status messages webhook reference": "Only included if message sent with
//! biz_opaque_callback_data"); the OpenAPI file only declares it for calls.

use serde_json::{Map, Value, json};

use hermes_guest_kit::{Reject, non_empty};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v23.0";
/// Meta's limit on `biz_opaque_callback_data` (512 characters).
const MAX_CALLBACK_DATA: usize = 512;

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub api_version: Option<String>,
    pub access_token: Option<String>,
    pub phone_number_id: Option<String>,
}

pub use hermes_guest_kit::HttpRequest;

/// One attempt, as the plugin needs it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub message_id: &'a str,
    pub attempt_id: &'a str,
    pub to: &'a str,
    pub content: &'a str,
}

/// `<message-id>:<attempt-id>`, sent as `biz_opaque_callback_data` and parsed back from statuses.
pub fn callback_data(message_id: &str, attempt_id: &str) -> String {
    format!("{message_id}:{attempt_id}")
}

/// The Cloud API's `to`: the number's digits (a leading `+` and the usual separators dropped).
pub fn recipient(to: &str) -> Result<String, Reject> {
    let to = to.trim();
    let to = to.strip_prefix('+').unwrap_or(to);
    let digits: String = to
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::new(
            "invalid_recipient",
            "the WhatsApp address is not a phone number",
            false,
        ));
    }
    Ok(digits)
}

/// A path segment must not smuggle in another path or a query.
fn is_path_segment(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The message object (without the common properties) from Hermes's `ChannelContent` JSON.
fn message_fields(content: &str) -> Result<Map<String, Value>, Reject> {
    let value: Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let channel = value.get("channel").and_then(Value::as_str);
    if channel != Some("whatsapp") {
        return Err(Reject::invalid_content(format!(
            "whatsapp attempt with {} content",
            channel.unwrap_or("unknown")
        )));
    }
    let mut fields = Map::new();
    match value.get("template") {
        Some(Value::Null) | None => {
            let text = value
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Reject::invalid_content("whatsapp content without text or template")
                })?;
            fields.insert("type".into(), json!("text"));
            // TextMessage: `text: {body}`.
            fields.insert("text".into(), json!({ "body": text }));
        }
        Some(template) => {
            fields.insert("type".into(), json!("template"));
            fields.insert("template".into(), template_object(template)?);
        }
    }
    Ok(fields)
}

/// TemplateObject: `{name, language: {policy, code}, components?}`. Hermes gives the language as
/// a code (`"en_US"`); an object with `code` is accepted too. The spec's `LanguageObject` requires
/// `policy`, whose only value is `deterministic`.
fn template_object(template: &Value) -> Result<Value, Reject> {
    let name = template
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Reject::invalid_content("whatsapp template without a name"))?;
    let code = match template.get("language") {
        Some(Value::String(code)) => Some(code.as_str()),
        Some(Value::Object(language)) => language.get("code").and_then(Value::as_str),
        _ => None,
    }
    .map(str::trim)
    .filter(|c| !c.is_empty())
    .ok_or_else(|| Reject::invalid_content("whatsapp template without a language code"))?;
    let mut object = Map::new();
    object.insert("name".into(), json!(name));
    object.insert(
        "language".into(),
        json!({ "policy": "deterministic", "code": code }),
    );
    match template.get("components") {
        None | Some(Value::Null) => {}
        // Passed through verbatim: they are the Cloud API's own `components`.
        Some(components @ Value::Array(_)) => {
            object.insert("components".into(), components.clone());
        }
        Some(_) => {
            return Err(Reject::invalid_content(
                "whatsapp template components must be a list",
            ));
        }
    }
    Ok(Value::Object(object))
}

/// The request for one attempt, or why it cannot be made (nothing was sent).
pub fn build(config: &Config, attempt: Attempt<'_>) -> Result<HttpRequest, Reject> {
    let access_token = non_empty(&config.access_token)
        .ok_or_else(|| Reject::plugin_config("no access_token configured"))?;
    let phone_number_id = non_empty(&config.phone_number_id)
        .ok_or_else(|| Reject::plugin_config("no phone_number_id configured"))?;
    if !is_path_segment(phone_number_id) {
        return Err(Reject::plugin_config(
            "phone_number_id is not a Phone Number ID",
        ));
    }
    let api_version = non_empty(&config.api_version).unwrap_or(DEFAULT_API_VERSION);
    if !is_path_segment(api_version) {
        return Err(Reject::plugin_config(
            "api_version is not a Graph API version (like v23.0)",
        ));
    }
    let base_url = non_empty(&config.base_url).unwrap_or(DEFAULT_BASE_URL);
    let to = recipient(attempt.to)?;
    let fields = message_fields(attempt.content)?;
    let opaque = callback_data(attempt.message_id, attempt.attempt_id);
    if opaque.chars().count() > MAX_CALLBACK_DATA {
        return Err(Reject::invalid_content(
            "message and attempt ids are too long for biz_opaque_callback_data",
        ));
    }

    // BaseMessageProperties, then the type's own fields.
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("recipient_type".into(), json!("individual"));
    body.insert("to".into(), json!(to));
    body.extend(fields);
    body.insert("biz_opaque_callback_data".into(), json!(opaque));

    Ok(HttpRequest {
        url: format!(
            "{}/{api_version}/{phone_number_id}/messages",
            base_url.trim_end_matches('/')
        ),
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Bearer {access_token}")),
        ],
        body: serde_json::to_vec(&Value::Object(body)).expect("a JSON map serializes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "0190a1b2-0000-7000-8000-000000000001";
    const ATTEMPT: &str = "0190a1b2-0000-7000-8000-0000000000aa";

    fn config() -> Config {
        Config {
            base_url: Some("https://graph.facebook.com/".to_owned()),
            api_version: None,
            access_token: Some("EAAtoken".to_owned()),
            phone_number_id: Some("106540352242922".to_owned()),
        }
    }

    fn attempt<'a>(to: &'a str, content: &'a str) -> Attempt<'a> {
        Attempt {
            message_id: MESSAGE,
            attempt_id: ATTEMPT,
            to,
            content,
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
    fn text_is_a_json_post_with_bearer_auth_and_callback_data() {
        let request = build(
            &config(),
            attempt(
                "+16505551234",
                r#"{"channel":"whatsapp","text":"Hello World!"}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            request.url,
            "https://graph.facebook.com/v23.0/106540352242922/messages"
        );
        assert_eq!(
            body(&request),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "text",
                "text": {"body": "Hello World!"},
                "biz_opaque_callback_data": format!("{MESSAGE}:{ATTEMPT}"),
            })
        );
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert_eq!(header(&request, "authorization"), Some("Bearer EAAtoken"));
    }

    /// The spec's "Send Catalog Template Message" example, as Hermes content.
    #[test]
    fn a_template_is_sent_as_a_template_message_with_its_components_verbatim() {
        let components = json!([
            {"type": "body", "parameters": [
                {"type": "text", "text": "100"},
                {"type": "text", "text": "400"},
                {"type": "text", "text": "3"}
            ]},
            {"type": "button", "sub_type": "CATALOG", "index": 0, "parameters": [
                {"type": "action", "action": {"thumbnail_product_retailer_id": "2lc20305pt"}}
            ]}
        ]);
        let content = json!({
            "channel": "whatsapp",
            "text": "fallback text",
            "template": {"name": "intro_catalog_offer", "language": "en_US", "components": components},
        })
        .to_string();
        let request = build(&config(), attempt("+16505551234", &content)).unwrap();
        let body = body(&request);
        assert_eq!(body["type"], "template");
        assert_eq!(body.get("text"), None);
        assert_eq!(
            body["template"],
            json!({
                "name": "intro_catalog_offer",
                "language": {"policy": "deterministic", "code": "en_US"},
                "components": components,
            })
        );
        assert_eq!(body["to"], "16505551234");
        assert_eq!(
            body["biz_opaque_callback_data"],
            format!("{MESSAGE}:{ATTEMPT}")
        );

        // Without components, and with the language as an object.
        let content = r#"{"channel":"whatsapp","text":"x","template":{"name":"hello_world","language":{"code":"en_US"}}}"#;
        let body = super::tests::body(&build(&config(), attempt("1", content)).unwrap());
        assert_eq!(
            body["template"],
            json!({"name": "hello_world", "language": {"policy": "deterministic", "code": "en_US"}})
        );
        // `template: null` is a text message.
        let content = r#"{"channel":"whatsapp","text":"hi","template":null}"#;
        let body = super::tests::body(&build(&config(), attempt("1", content)).unwrap());
        assert_eq!(body["type"], "text");
    }

    #[test]
    fn version_and_base_url_can_be_overridden() {
        let cfg = Config {
            base_url: Some("http://127.0.0.1:4010".to_owned()),
            api_version: Some("v24.0".to_owned()),
            ..config()
        };
        let request = build(&cfg, attempt("1", r#"{"channel":"whatsapp","text":"x"}"#)).unwrap();
        assert_eq!(
            request.url,
            "http://127.0.0.1:4010/v24.0/106540352242922/messages"
        );
        let cfg = Config {
            base_url: None,
            ..config()
        };
        let request = build(&cfg, attempt("1", r#"{"channel":"whatsapp","text":"x"}"#)).unwrap();
        assert!(request.url.starts_with("https://graph.facebook.com/v23.0/"));
    }

    #[test]
    fn recipients_become_digits() {
        assert_eq!(recipient("+16505551234").unwrap(), "16505551234");
        assert_eq!(recipient(" 16505551234 ").unwrap(), "16505551234");
        assert_eq!(recipient("+1 (650) 555-1234").unwrap(), "16505551234");
        for bad in ["", "+", "whatsapp:+1650", "abc", "++1650", "1650@x"] {
            let err = recipient(bad).unwrap_err();
            assert_eq!(err.code, "invalid_recipient", "{bad}");
            assert!(!err.retryable);
        }
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        let content = r#"{"channel":"whatsapp","text":"x"}"#;
        for cfg in [
            Config {
                access_token: None,
                ..config()
            },
            Config {
                access_token: Some("  ".to_owned()),
                ..config()
            },
            Config {
                phone_number_id: None,
                ..config()
            },
            Config {
                phone_number_id: Some("1/../2".to_owned()),
                ..config()
            },
            Config {
                api_version: Some("v23.0?x=1".to_owned()),
                ..config()
            },
        ] {
            let err = build(&cfg, attempt("1", content)).unwrap_err();
            assert_eq!(err.code, "plugin_config");
            assert!(err.retryable);
        }
    }

    #[test]
    fn bad_content_is_permanent() {
        for content in [
            "not json",
            r#"{"channel":"sms","text":"x"}"#,
            r#"{"channel":"whatsapp"}"#,
            r#"{"channel":"whatsapp","text":"  "}"#,
            r#"{"channel":"whatsapp","text":"x","template":{"language":"en_US"}}"#,
            r#"{"channel":"whatsapp","text":"x","template":{"name":"t"}}"#,
            r#"{"channel":"whatsapp","text":"x","template":{"name":"t","language":"en","components":{}}}"#,
        ] {
            let err = build(&config(), attempt("1", content)).unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
    }
}
