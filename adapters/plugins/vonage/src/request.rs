//! Building the SMS API's `Send an SMS` request (spec `sms-1.2.0.openapi.json`, operation
//! `send-an-sms`: `POST https://rest.nexmo.com/sms/{format}` with `format` = `json`). The spec
//! declares the request body as `application/x-www-form-urlencoded` (schema `NewMessage`), with the
//! credentials `api_key` and `api_secret` in the body.

use hermes_guest_kit::{Reject, non_empty};

pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";
/// The path under `base_url`: the spec's server is `https://rest.nexmo.com/sms` and its path
/// `/{format}`; the plugin asks for `json` answers.
pub const SEND_PATH: &str = "/sms/json";
/// `NewMessage.callback` and `NewMessage.client-ref`: "Max 100 characters" / "up to 100
/// characters".
pub const MAX_REF_LEN: usize = 100;

/// The account's configuration, read once per call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
    pub from: Option<String>,
}

/// The channels this plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chan {
    Sms,
    /// Any other channel, by name: refused.
    Other(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The attempt's callback URL was longer than Vonage accepts, so no `callback` was sent:
    /// receipts then go to the account's default webhook (correlated through `client-ref`).
    pub callback_omitted: bool,
}

/// The `client-ref` the plugin attaches: `<message-id>:<attempt-id>` (two UUIDs, 73 characters).
pub fn client_ref(message_id: &str, attempt_id: &str) -> String {
    format!("{message_id}:{attempt_id}")
}

/// The text to send, from Hermes's `ChannelContent` JSON.
fn text_of(content: &str) -> Result<String, Reject> {
    let value: serde_json::Value = serde_json::from_str(content)
        .map_err(|err| Reject::invalid_content(format!("the content is not JSON: {err}")))?;
    let content_channel = value.get("channel").and_then(|c| c.as_str());
    if content_channel != Some("sms") {
        return Err(Reject::invalid_content(format!(
            "sms attempt with {} content",
            content_channel.unwrap_or("unknown")
        )));
    }
    match value.get("text").and_then(|t| t.as_str()) {
        Some(text) if !text.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(Reject::invalid_content(
            "sms content without text".to_owned(),
        )),
    }
}

/// Whether `c` is in the GSM 03.38 default alphabet or its extension table. `NewMessage.text`: "If
/// your message contains characters that can be encoded according to the GSM Standard and
/// Extended tables then you can set the `type` to `text`. If your message contains characters
/// outside this range, then you will need to set the `type` to `unicode`."
fn is_gsm7(c: char) -> bool {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";
    BASIC.contains(c) || EXTENSION.contains(c)
}

/// `type`: `text` (the default) when GSM-7 can carry the text, else `unicode`.
pub fn message_type(text: &str) -> &'static str {
    if text.chars().all(is_gsm7) {
        "text"
    } else {
        "unicode"
    }
}

/// `NewMessage.to`: "Numbers are specified in E.164 format", pattern `\d{7,15}`: the leading `+`
/// (and any spacing) of Hermes's E.164 address is dropped.
pub fn msisdn(to: &str) -> String {
    to.trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect()
}

/// The request for one attempt, or why it cannot be made (nothing was sent).
pub fn build(
    config: &Config,
    channel: Chan,
    message_id: &str,
    attempt_id: &str,
    to: &str,
    content: &str,
    callback_url: &str,
) -> Result<HttpRequest, Reject> {
    if let Chan::Other(name) = channel {
        return Err(Reject::unsupported_channel(format!(
            "the Vonage SMS API does not serve the {name} channel"
        )));
    }
    let api_key =
        non_empty(&config.api_key).ok_or_else(|| Reject::plugin_config("no api_key configured"))?;
    let api_secret = non_empty(&config.api_secret)
        .ok_or_else(|| Reject::plugin_config("no api_secret configured"))?;
    let from =
        non_empty(&config.from).ok_or_else(|| Reject::plugin_config("no from configured"))?;
    let base_url = non_empty(&config.base_url).unwrap_or(DEFAULT_BASE_URL);
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(Reject::plugin_config("base_url is not an http(s) URL"));
    }
    let text = text_of(content)?;
    let to = msisdn(to);
    if to.is_empty() {
        return Err(Reject::invalid_content("no recipient number"));
    }

    let mut body = form_urlencoded::Serializer::new(String::new());
    body.append_pair("api_key", api_key)
        .append_pair("api_secret", api_secret)
        .append_pair("from", from)
        .append_pair("to", &to)
        .append_pair("text", &text);
    let kind = message_type(&text);
    if kind != "text" {
        body.append_pair("type", kind);
    }
    body.append_pair("client-ref", &client_ref(message_id, attempt_id));
    // `callback`: "Max 100 characters"; a longer URL would fail the send with status 23, so it is
    // left out and the account's default delivery-receipt webhook (`/v1/webhooks/vonage`) gets
    // the receipt, matched through `client-ref`.
    let callback = callback_url.trim();
    let callback_omitted = callback.is_empty() || callback.chars().count() > MAX_REF_LEN;
    if !callback_omitted {
        body.append_pair("callback", callback);
    }
    Ok(HttpRequest {
        url: format!("{}{SEND_PATH}", base_url.trim_end_matches('/')),
        headers: vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
        ],
        body: body.finish().into_bytes(),
        callback_omitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "0b5a2f4e-8a52-4a43-9d5e-6b8f1c2d3e4f";
    const ATTEMPT: &str = "7c1d9e2a-3b4c-4d5e-8f60-718293a4b5c6";
    const CALLBACK: &str = "https://h.example/v1/webhooks/vonage/m/a";

    fn config() -> Config {
        // The spec's examples: `api_key` "abcd1234", `api_secret` "abcdef0123456789", `from`
        // "AcmeInc".
        Config {
            base_url: Some("https://rest.nexmo.com/".to_owned()),
            api_key: Some("abcd1234".to_owned()),
            api_secret: Some("abcdef0123456789".to_owned()),
            from: Some("AcmeInc".to_owned()),
        }
    }

    fn params(request: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(&request.body).into_owned().collect()
    }

    use hermes_guest_kit::pairs;

    fn sms(text: &str) -> String {
        serde_json::json!({"channel": "sms", "text": text}).to_string()
    }

    #[test]
    fn an_sms_is_a_form_post_to_sms_json() {
        let request = build(
            &config(),
            Chan::Sms,
            MESSAGE,
            ATTEMPT,
            "+447700900000",
            &sms("Hello World!"),
            CALLBACK,
        )
        .unwrap();
        assert_eq!(request.url, "https://rest.nexmo.com/sms/json");
        let client_ref = format!("{MESSAGE}:{ATTEMPT}");
        assert_eq!(
            params(&request),
            pairs(&[
                ("api_key", "abcd1234"),
                ("api_secret", "abcdef0123456789"),
                ("from", "AcmeInc"),
                ("to", "447700900000"),
                ("text", "Hello World!"),
                ("client-ref", &client_ref),
                ("callback", CALLBACK),
            ])
        );
        assert!(request.headers.contains(&(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned()
        )));
        assert!(!request.callback_omitted);
        // Form encoding: `&` and spaces in the text do not break the body.
        let request = build(
            &config(),
            Chan::Sms,
            MESSAGE,
            ATTEMPT,
            "447700900000",
            &sms("a & b = c"),
            CALLBACK,
        )
        .unwrap();
        assert_eq!(params(&request)[4], ("text".into(), "a & b = c".into()));
    }

    #[test]
    fn the_client_ref_and_callback_fit_vonages_limits() {
        assert!(client_ref(MESSAGE, ATTEMPT).len() <= MAX_REF_LEN);
        let long = format!("https://hermes.example.com/v1/webhooks/vonage/{MESSAGE}/{ATTEMPT}");
        assert!(long.len() > MAX_REF_LEN);
        let request = build(
            &config(),
            Chan::Sms,
            MESSAGE,
            ATTEMPT,
            "447700900000",
            &sms("x"),
            &long,
        )
        .unwrap();
        assert!(request.callback_omitted);
        assert!(params(&request).iter().all(|(k, _)| k != "callback"));
        assert!(params(&request).iter().any(|(k, _)| k == "client-ref"));
    }

    #[test]
    fn non_gsm_text_is_sent_as_unicode() {
        assert_eq!(message_type("Hello {world} €5 @ £3 ÄÖÜ"), "text");
        assert_eq!(message_type("Привет"), "unicode");
        assert_eq!(message_type("ok 👍"), "unicode");
        let request = build(
            &config(),
            Chan::Sms,
            MESSAGE,
            ATTEMPT,
            "447700900000",
            &sms("你好"),
            CALLBACK,
        )
        .unwrap();
        assert!(params(&request).contains(&("type".into(), "unicode".into())));
    }

    #[test]
    fn the_default_base_url_is_vonages() {
        let cfg = Config {
            base_url: None,
            ..config()
        };
        let request = build(&cfg, Chan::Sms, MESSAGE, ATTEMPT, "+1", &sms("x"), CALLBACK).unwrap();
        assert_eq!(request.url, "https://rest.nexmo.com/sms/json");
        let cfg = Config {
            base_url: Some("http://127.0.0.1:4010".to_owned()),
            ..config()
        };
        let request = build(&cfg, Chan::Sms, MESSAGE, ATTEMPT, "+1", &sms("x"), CALLBACK).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:4010/sms/json");
    }

    #[test]
    fn missing_config_is_a_retryable_config_error() {
        for cfg in [
            Config {
                api_key: None,
                ..config()
            },
            Config {
                api_secret: Some("  ".to_owned()),
                ..config()
            },
            Config {
                from: None,
                ..config()
            },
            Config {
                base_url: Some("rest.nexmo.com".to_owned()),
                ..config()
            },
        ] {
            let err =
                build(&cfg, Chan::Sms, MESSAGE, ATTEMPT, "+1", &sms("x"), CALLBACK).unwrap_err();
            assert_eq!(err.code, "plugin_config");
            assert!(err.retryable);
        }
    }

    #[test]
    fn bad_content_is_permanent_and_other_channels_are_refused() {
        for content in [
            "not json",
            r#"{"channel":"email","subject":"s","text":"x"}"#,
            r#"{"channel":"sms"}"#,
            r#"{"channel":"sms","text":"  "}"#,
        ] {
            let err = build(
                &config(),
                Chan::Sms,
                MESSAGE,
                ATTEMPT,
                "+1",
                content,
                CALLBACK,
            )
            .unwrap_err();
            assert_eq!(err.code, "invalid_content", "{content}");
            assert!(!err.retryable);
        }
        let err = build(
            &config(),
            Chan::Other("email"),
            MESSAGE,
            ATTEMPT,
            "a@b.c",
            r#"{"channel":"email","subject":"s"}"#,
            CALLBACK,
        )
        .unwrap_err();
        assert_eq!(err.code, "unsupported_channel");
        assert!(err.retryable);
    }

    #[test]
    fn recipient_numbers_lose_their_plus() {
        assert_eq!(msisdn("+44 7700 900000"), "447700900000");
        assert_eq!(msisdn("447700900000"), "447700900000");
    }
}
