//! Building the `fcm.projects.messages.send` request
//! (`/work/shared/provider-specs/fcm/fcm-v1.openapi.json`: `POST /v1/{parent}/messages:send`
//! with `parent` = `projects/{project_id}`, body `SendMessageRequest` = `{"message": Message}`).
//!
//! `Message.token` is the registration token (the attempt's `to`), `Message.notification` the
//! `Notification` `{title, body}` (only the fields Hermes has), and `Message.data` a map of
//! strings (`additionalProperties: {type: string}`): a non-string JSON value in Hermes's `data`
//! (number, boolean, null, array, object) is sent as its JSON text.

use serde_json::{Map, Value};

use crate::auth::{self, ServiceAccount};
use hermes_guest_kit::{Reject, non_empty};

pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub project_id: Option<String>,
    pub service_account_json: Option<String>,
}

/// The channels this plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chan {
    Push,
    /// Any other channel, by name: refused.
    Other(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A send that only lacks its access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub account: ServiceAccount,
    pub url: String,
    pub body: Vec<u8>,
}

/// A Google Cloud project id (6-30 of `a-z 0-9 -`) or a project number: anything safe in a path
/// segment is let through, the rest refused.
fn is_project_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'))
}

/// `{"message": {"token", "notification"?, "data"?}}` from Hermes's push `ChannelContent`.
pub fn message_body(to: &str, content: &str) -> Result<Vec<u8>, Reject> {
    let token = to.trim();
    if token.is_empty() {
        return Err(Reject::invalid_content(
            "no registration token (empty address)",
        ));
    }
    let value: Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let content_channel = value.get("channel").and_then(|c| c.as_str());
    if content_channel != Some("push") {
        return Err(Reject::invalid_content(format!(
            "push attempt with {} content",
            content_channel.unwrap_or("unknown")
        )));
    }
    let mut notification = Map::new();
    for field in ["title", "body"] {
        match value.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                notification.insert(field.to_owned(), Value::String(text.clone()));
            }
            Some(_) => {
                return Err(Reject::invalid_content(format!(
                    "push {field} is not a string"
                )));
            }
        }
    }
    let data = match value.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    // FCM data values must be strings.
                    other => other.to_string(),
                };
                (key.clone(), Value::String(value))
            })
            .collect(),
        Some(_) => return Err(Reject::invalid_content("push data is not a JSON object")),
    };
    let has_text = notification
        .values()
        .any(|v| v.as_str().is_some_and(|t| !t.trim().is_empty()));
    if !has_text && data.is_empty() {
        return Err(Reject::invalid_content(
            "push content without title, body or data",
        ));
    }
    let mut message = Map::new();
    message.insert("token".to_owned(), Value::String(token.to_owned()));
    if !notification.is_empty() {
        message.insert("notification".to_owned(), Value::Object(notification));
    }
    if !data.is_empty() {
        message.insert("data".to_owned(), Value::Object(data));
    }
    let body = serde_json::json!({ "message": message });
    serde_json::to_vec(&body)
        .map_err(|err| Reject::invalid_content(format!("cannot encode the message: {err}")))
}

/// Everything of the send but the access token, or why it cannot be made (nothing was sent).
pub fn prepare(
    config: &Config,
    channel: Chan,
    to: &str,
    content: &str,
) -> Result<Prepared, Reject> {
    if let Chan::Other(name) = channel {
        return Err(Reject::unsupported_channel(format!(
            "FCM does not serve the {name} channel"
        )));
    }
    let account = auth::parse_service_account(config.service_account_json.as_deref())?;
    let project_id = non_empty(&config.project_id)
        .or(account.project_id())
        .ok_or_else(|| {
            Reject::plugin_config("no project_id configured (nor in service_account_json)")
        })?;
    if !is_project_id(project_id) {
        return Err(Reject::plugin_config(
            "project_id is not a Firebase project id",
        ));
    }
    let base_url = non_empty(&config.base_url)
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    let url = format!("{base_url}/v1/projects/{project_id}/messages:send");
    let body = message_body(to, content)?;
    Ok(Prepared { account, url, body })
}

/// The send request with its bearer token.
pub fn send_request(prepared: &Prepared, access_token: &str) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url: prepared.url.clone(),
        headers: vec![
            ("authorization".to_owned(), format!("Bearer {access_token}")),
            (
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
        ],
        body: prepared.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1";

    fn key_json(project_id: Option<&str>) -> String {
        let mut value = serde_json::json!({
            "type": "service_account",
            "private_key_id": "kid",
            "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
            "client_email": "hermes@example-project.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        if let Some(project_id) = project_id {
            value["project_id"] = project_id.into();
        }
        value.to_string()
    }

    fn config() -> Config {
        Config {
            base_url: None,
            project_id: None,
            service_account_json: Some(key_json(Some("myproject-b5ae1"))),
        }
    }

    fn body_of(request: &Prepared) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn a_notification_with_data_becomes_a_send_message_request() {
        let content = r#"{"channel":"push","title":"Portugal vs. Denmark","body":"great match!","data":{"nick":"Mario","room":"PortugalVSDenmark","score":3,"live":true,"extra":{"a":[1,2]},"none":null}}"#;
        let prepared = prepare(&config(), Chan::Push, TOKEN, content).unwrap();
        assert_eq!(
            prepared.url,
            "https://fcm.googleapis.com/v1/projects/myproject-b5ae1/messages:send"
        );
        assert_eq!(
            body_of(&prepared),
            serde_json::json!({
                "message": {
                    "token": TOKEN,
                    "notification": {"title": "Portugal vs. Denmark", "body": "great match!"},
                    "data": {
                        "nick": "Mario",
                        "room": "PortugalVSDenmark",
                        "score": "3",
                        "live": "true",
                        "extra": "{\"a\":[1,2]}",
                        "none": "null",
                    },
                }
            })
        );
        let request = send_request(&prepared, "ya29.token");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, prepared.url);
        assert_eq!(request.body, prepared.body);
        assert!(
            request
                .headers
                .contains(&("authorization".to_owned(), "Bearer ya29.token".to_owned()))
        );
        assert!(
            request
                .headers
                .iter()
                .any(|(k, v)| k == "content-type" && v.starts_with("application/json"))
        );
    }

    #[test]
    fn only_the_fields_present_are_sent() {
        let prepared = prepare(
            &config(),
            Chan::Push,
            TOKEN,
            r#"{"channel":"push","title":null,"body":"just a body","data":null}"#,
        )
        .unwrap();
        assert_eq!(
            body_of(&prepared),
            serde_json::json!({"message": {"token": TOKEN, "notification": {"body": "just a body"}}})
        );
        // A data-only message has no notification.
        let prepared = prepare(
            &config(),
            Chan::Push,
            TOKEN,
            r#"{"channel":"push","data":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(
            body_of(&prepared),
            serde_json::json!({"message": {"token": TOKEN, "data": {"k": "v"}}})
        );
    }

    #[test]
    fn project_id_and_base_url_can_be_overridden() {
        let cfg = Config {
            base_url: Some("http://127.0.0.1:4010/".to_owned()),
            project_id: Some("other-project".to_owned()),
            ..config()
        };
        let prepared =
            prepare(&cfg, Chan::Push, TOKEN, r#"{"channel":"push","title":"t"}"#).unwrap();
        assert_eq!(
            prepared.url,
            "http://127.0.0.1:4010/v1/projects/other-project/messages:send"
        );
        // No project id in the key: the override is needed.
        let cfg = Config {
            project_id: Some("123456789".to_owned()),
            service_account_json: Some(key_json(None)),
            ..config()
        };
        let prepared =
            prepare(&cfg, Chan::Push, TOKEN, r#"{"channel":"push","title":"t"}"#).unwrap();
        assert!(
            prepared
                .url
                .ends_with("/v1/projects/123456789/messages:send")
        );
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        let content = r#"{"channel":"push","title":"t"}"#;
        for cfg in [
            Config {
                service_account_json: None,
                ..config()
            },
            Config {
                service_account_json: Some(key_json(None)),
                ..config()
            },
            Config {
                project_id: Some("../../evil?x=".to_owned()),
                ..config()
            },
        ] {
            let err = prepare(&cfg, Chan::Push, TOKEN, content).unwrap_err();
            assert_eq!(err.code, "plugin_config");
            assert!(err.retryable);
        }
    }

    #[test]
    fn bad_content_is_permanent_and_other_channels_are_refused() {
        for (to, content) in [
            (TOKEN, "not json"),
            (TOKEN, r#"{"channel":"sms","text":"x"}"#),
            (TOKEN, r#"{"channel":"push"}"#),
            (
                TOKEN,
                r#"{"channel":"push","title":"  ","body":null,"data":{}}"#,
            ),
            (TOKEN, r#"{"channel":"push","title":5}"#),
            (TOKEN, r#"{"channel":"push","data":[1]}"#),
            ("  ", r#"{"channel":"push","title":"t"}"#),
        ] {
            let err = prepare(&config(), Chan::Push, to, content).unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
        let err = prepare(
            &config(),
            Chan::Other("sms"),
            "+1",
            r#"{"channel":"sms","text":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "unsupported_channel");
        assert!(err.retryable);
    }
}
