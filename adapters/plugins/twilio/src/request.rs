//! Building the `Create a Message` request (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP Basic auth `account_sid:auth_token`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use hermes_guest_kit::{Reject, non_empty};

pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Twilio's webhook connection overrides, appended to the `StatusCallback` URL as its fragment
/// (never sent to Hermes): retry a status callback up to 5 times (Twilio's maximum; its default
/// is 1) on a 5xx, a connect failure or a read timeout, within 15 s in all (Twilio's maximum).
/// Longer outages are covered by the status lookup (`lookup`) before a step gives up.
pub const CONNECTION_OVERRIDES: &str = "#rc=5&rp=5xx,ct,rt&tt=15000";
const WHATSAPP_PREFIX: &str = "whatsapp:";

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub whatsapp_from: Option<String>,
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

/// A Messaging Service SID: `MG` and 32 hex digits.
pub fn is_messaging_service_sid(value: &str) -> bool {
    value.len() == 34
        && value.starts_with("MG")
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_account_sid(value: &str) -> bool {
    value.len() == 34
        && value.starts_with("AC")
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn with_whatsapp_prefix(address: &str) -> String {
    if address.starts_with(WHATSAPP_PREFIX) {
        address.to_owned()
    } else {
        format!("{WHATSAPP_PREFIX}{address}")
    }
}

/// The text to send, from Hermes's `ChannelContent` JSON, checked against the request's channel.
fn text_of(channel: &str, content: &str) -> Result<String, Reject> {
    let value: serde_json::Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let content_channel = value.get("channel").and_then(|c| c.as_str());
    if content_channel != Some(channel) {
        return Err(Reject::invalid_content(format!(
            "{channel} attempt with {} content",
            content_channel.unwrap_or("unknown")
        )));
    }
    match value.get("text").and_then(|t| t.as_str()) {
        Some(text) if !text.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(Reject::invalid_content(format!(
            "{channel} content without text"
        ))),
    }
}

/// The request for one attempt, or why it cannot be made (nothing was sent).
pub fn build(
    config: &Config,
    channel: Chan,
    to: &str,
    content: &str,
    callback_url: &str,
) -> Result<HttpRequest, Reject> {
    let channel_name = match channel {
        Chan::Sms => "sms",
        Chan::Whatsapp => "whatsapp",
        Chan::Other(name) => {
            return Err(Reject::unsupported_channel(format!(
                "Twilio does not serve the {name} channel"
            )));
        }
    };
    let account_sid = non_empty(&config.account_sid)
        .ok_or_else(|| Reject::plugin_config("no account_sid configured"))?;
    if !is_account_sid(account_sid) {
        return Err(Reject::plugin_config(
            "account_sid is not a Twilio Account SID (AC and 32 hex digits)",
        ));
    }
    let auth_token = non_empty(&config.auth_token)
        .ok_or_else(|| Reject::plugin_config("no auth_token configured"))?;
    let base_url = non_empty(&config.base_url).unwrap_or(DEFAULT_BASE_URL);
    let text = text_of(channel_name, content)?;

    // The sender: `From`, or a Messaging Service that picks one.
    let from = non_empty(&config.from);
    let service =
        non_empty(&config.messaging_service_sid).or(from.filter(|f| is_messaging_service_sid(f)));
    let sender = match channel {
        Chan::Whatsapp => match (non_empty(&config.whatsapp_from), service) {
            (Some(number), _) => ("From", with_whatsapp_prefix(number)),
            (None, Some(sid)) => ("MessagingServiceSid", sid.to_owned()),
            (None, None) => {
                return Err(Reject::plugin_config(
                    "no whatsapp_from (or messaging_service_sid) configured",
                ));
            }
        },
        _ => match (from.filter(|f| !is_messaging_service_sid(f)), service) {
            (Some(number), _) => ("From", number.to_owned()),
            (None, Some(sid)) => ("MessagingServiceSid", sid.to_owned()),
            (None, None) => {
                return Err(Reject::plugin_config(
                    "no from (or messaging_service_sid) configured",
                ));
            }
        },
    };
    let to = match channel {
        Chan::Whatsapp => with_whatsapp_prefix(to.trim()),
        _ => to.trim().to_owned(),
    };

    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("To", &to)
        .append_pair(sender.0, &sender.1)
        .append_pair("Body", &text)
        .append_pair(
            "StatusCallback",
            &format!("{callback_url}{CONNECTION_OVERRIDES}"),
        )
        .finish();
    let credentials = STANDARD.encode(format!("{account_sid}:{auth_token}"));
    Ok(HttpRequest {
        url: format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            base_url.trim_end_matches('/')
        ),
        headers: vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Basic {credentials}")),
        ],
        body: body.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SERVICE: &str = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CALLBACK: &str = "https://hermes.example/v1/webhooks/twilio/m/a";

    fn config() -> Config {
        Config {
            base_url: Some("https://api.twilio.com/".to_owned()),
            account_sid: Some(SID.to_owned()),
            auth_token: Some("token".to_owned()),
            from: Some("+14155552345".to_owned()),
            messaging_service_sid: None,
            whatsapp_from: Some("+14155550000".to_owned()),
        }
    }

    fn params(request: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(&request.body).into_owned().collect()
    }

    use hermes_guest_kit::pairs;

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn sms_is_a_form_post_with_basic_auth_and_the_status_callback() {
        let request = build(
            &config(),
            Chan::Sms,
            "+14155552345",
            r#"{"channel":"sms","text":"Hello & welcome"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(
            request.url,
            format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
        );
        assert_eq!(
            params(&request),
            pairs(&[
                ("To", "+14155552345"),
                ("From", "+14155552345"),
                ("Body", "Hello & welcome"),
                (
                    "StatusCallback",
                    "https://hermes.example/v1/webhooks/twilio/m/a#rc=5&rp=5xx,ct,rt&tt=15000"
                ),
            ])
        );
        assert_eq!(
            header(&request, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        // base64("ACaaa...:token")
        let expected = format!("Basic {}", STANDARD.encode(format!("{SID}:token")));
        assert_eq!(header(&request, "authorization"), Some(expected.as_str()));
    }

    #[test]
    fn whatsapp_prefixes_both_addresses() {
        let request = build(
            &config(),
            Chan::Whatsapp,
            "+15552229999",
            r#"{"channel":"whatsapp","text":"hi"}"#,
            CALLBACK,
        )
        .unwrap();
        let params = params(&request);
        assert_eq!(params[0], ("To".into(), "whatsapp:+15552229999".into()));
        assert_eq!(params[1], ("From".into(), "whatsapp:+14155550000".into()));
        // Already prefixed: not twice.
        let mut cfg = config();
        cfg.whatsapp_from = Some("whatsapp:+14155550000".to_owned());
        let request = build(
            &cfg,
            Chan::Whatsapp,
            "whatsapp:+15552229999",
            r#"{"channel":"whatsapp","text":"hi"}"#,
            CALLBACK,
        )
        .unwrap();
        let params = super::tests::params(&request);
        assert_eq!(params[0].1, "whatsapp:+15552229999");
        assert_eq!(params[1].1, "whatsapp:+14155550000");
    }

    #[test]
    fn a_messaging_service_replaces_from() {
        for cfg in [
            Config {
                from: Some(SERVICE.to_owned()),
                ..config()
            },
            Config {
                from: None,
                messaging_service_sid: Some(SERVICE.to_owned()),
                ..config()
            },
        ] {
            let request = build(
                &cfg,
                Chan::Sms,
                "+1",
                r#"{"channel":"sms","text":"x"}"#,
                CALLBACK,
            )
            .unwrap();
            assert_eq!(
                params(&request)[1],
                ("MessagingServiceSid".into(), SERVICE.into())
            );
        }
        // WhatsApp without whatsapp_from goes through the service too.
        let cfg = Config {
            whatsapp_from: None,
            messaging_service_sid: Some(SERVICE.to_owned()),
            ..config()
        };
        let request = build(
            &cfg,
            Chan::Whatsapp,
            "+1",
            r#"{"channel":"whatsapp","text":"x"}"#,
            CALLBACK,
        )
        .unwrap();
        assert_eq!(
            params(&request)[1],
            ("MessagingServiceSid".into(), SERVICE.into())
        );
    }

    #[test]
    fn the_default_base_url_is_twilios() {
        let cfg = Config {
            base_url: None,
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
        assert!(
            request
                .url
                .starts_with("https://api.twilio.com/2010-04-01/")
        );
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        let content = r#"{"channel":"sms","text":"x"}"#;
        for cfg in [
            Config {
                account_sid: None,
                ..config()
            },
            Config {
                account_sid: Some("not-a-sid".to_owned()),
                ..config()
            },
            Config {
                auth_token: None,
                ..config()
            },
            Config {
                from: None,
                ..config()
            },
        ] {
            let err = build(&cfg, Chan::Sms, "+1", content, CALLBACK).unwrap_err();
            assert_eq!(err.code, "plugin_config");
            assert!(err.retryable);
        }
        let cfg = Config {
            whatsapp_from: None,
            ..config()
        };
        let err = build(
            &cfg,
            Chan::Whatsapp,
            "+1",
            r#"{"channel":"whatsapp","text":"x"}"#,
            CALLBACK,
        )
        .unwrap_err();
        assert_eq!(err.code, "plugin_config");
    }

    #[test]
    fn bad_content_is_permanent_and_other_channels_are_refused() {
        for content in [
            "not json",
            r#"{"channel":"email","subject":"s","text":"x"}"#,
            r#"{"channel":"sms"}"#,
            r#"{"channel":"sms","text":"  "}"#,
        ] {
            let err = build(&config(), Chan::Sms, "+1", content, CALLBACK).unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
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
