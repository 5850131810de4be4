//! Validation of a delivery request: turns what the tenant sent into a [`MessageSpec`] or into
//! every problem found, each with a stable `code` that clients can switch on.

use crate::channel::{Channel, Until};
use crate::message::spec::{CascadeStep, Content, MessageSpec, PolicyRef, Recipient};
use crate::phone;
use crate::sms_segments;
use crate::tenant::TenantSettings;
use serde::Serialize;
use serde_json::Value;

pub mod characters;

pub const DEFAULT_STEP_TIMEOUT_SECONDS: u32 = 60;
pub const MAX_STEP_TIMEOUT_SECONDS: i64 = 7 * 24 * 3600;
pub const MAX_CASCADE_STEPS: usize = 10;
pub const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;
pub const MAX_REFERENCE_CHARS: usize = 256;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_SMS_CHARS: usize = 1600;
pub const MAX_WHATSAPP_CHARS: usize = 4096;
pub const MAX_PUSH_TITLE_CHARS: usize = 256;
pub const MAX_PUSH_BODY_CHARS: usize = 4096;
pub const MAX_EMAIL_SUBJECT_CHARS: usize = 998;
pub const MAX_PUSH_TOKEN_CHARS: usize = 4096;
/// WhatsApp's limit on a template name.
pub const MAX_TEMPLATE_FIELD_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub code: &'static str,
    /// JSON path of the offending field, e.g. `cascade[1].channel`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A request as parsed from JSON, before validation. `cascade` stays raw JSON so that an unknown
/// channel is reported as `unknown_channel`, not as a generic parse error.
#[derive(Debug, Clone, Default)]
pub struct MessageDraft {
    pub to: Recipient,
    pub content: Content,
    pub cascade: Option<Value>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Raw too: JSON calls `60.0` an integer, and so does the OpenAPI document.
    pub ttl_seconds: Option<Value>,
}

pub fn validate(mut draft: MessageDraft) -> Result<MessageSpec, Vec<ValidationError>> {
    let mut errors = Vec::new();
    validate_recipient(&mut draft.to, &mut errors);
    let cascade = validate_cascade(draft.cascade.as_ref(), &mut errors);
    for (i, step) in cascade.iter().enumerate() {
        if draft.to.address_for(step.channel).is_none() {
            errors.push(ValidationError::new(
                "missing_recipient",
                format!("to.{}", step.channel.recipient_field()),
                format!(
                    "cascade[{i}] uses channel '{}' but `to.{}` is missing",
                    step.channel,
                    step.channel.recipient_field()
                ),
            ));
        }
        if draft.content.render(step.channel).is_none() {
            errors.push(ValidationError::new(
                "missing_content",
                format!("content.{}", step.channel),
                format!(
                    "cascade[{i}] uses channel '{}' but there is no content for it (give `content.{}` or `content.text`)",
                    step.channel, step.channel
                ),
            ));
        }
    }
    validate_content(&draft.content, &mut errors);
    validate_carried_text(&draft.content, &cascade, &mut errors);
    if let Some(r) = &draft.reference
        && characters::check_text("reference", r, &mut errors)
        && (r.is_empty() || r.chars().count() > MAX_REFERENCE_CHARS)
    {
        errors.push(ValidationError::new(
            "invalid_reference",
            "reference",
            format!("reference must be 1 to {MAX_REFERENCE_CHARS} characters"),
        ));
    }
    if let Some(m) = &draft.metadata {
        characters::check_opaque_map("metadata", m, &mut errors);
    }
    if let Some(m) = &draft.metadata
        && serde_json::to_vec(m).map_or(true, |b| b.len() > MAX_METADATA_BYTES)
    {
        errors.push(ValidationError::new(
            "invalid_metadata",
            "metadata",
            format!("metadata must serialize to at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    let ttl_seconds = match draft.ttl_seconds.as_ref().filter(|v| !v.is_null()) {
        None => None,
        Some(t) => match integer(t) {
            Some(t) if (1..=MAX_TTL_SECONDS).contains(&t) => Some(t as u32),
            _ => {
                errors.push(ValidationError::new(
                    "invalid_ttl",
                    "ttl_seconds",
                    format!("ttl_seconds must be an integer from 1 to {MAX_TTL_SECONDS}"),
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MessageSpec {
        to: draft.to,
        content: draft.content,
        cascade,
        reference: draft.reference,
        metadata: draft.metadata,
        ttl_seconds,
        cascade_policy: None,
        suppressed_steps: Vec::new(),
        enrichment: None,
    })
}

/// Checks one address as `to`'s field for `channel` is checked (for suppression lists), and
/// answers it as a message would carry it (a phone number in E.164).
pub fn check_address(channel: Channel, address: &str) -> Result<String, String> {
    let mut to = Recipient::default();
    let field = match channel {
        Channel::Sms => &mut to.phone,
        Channel::Email => &mut to.email,
        Channel::Push => &mut to.push_token,
        Channel::Whatsapp => &mut to.whatsapp,
    };
    *field = Some(address.to_owned());
    let mut errors = Vec::new();
    validate_recipient(&mut to, &mut errors);
    match errors.first() {
        None => Ok(to.address_for(channel).unwrap_or(address).to_owned()),
        Some(e) => Err(e.message.clone()),
    }
}

/// When `cascade` names one of the tenant's policies, puts the policy's steps in its place and
/// says which policy and version; [`validate`] then checks them with the rest of the request (a
/// name the tenant has no policy for stays, and is refused there as `unknown_cascade_policy`).
pub fn resolve_cascade_policy(
    draft: &mut MessageDraft,
    settings: &TenantSettings,
) -> Option<PolicyRef> {
    let Some(Value::String(name)) = &draft.cascade else {
        return None;
    };
    let policy = settings.cascade_policies.get(name)?;
    let used = PolicyRef {
        name: name.clone(),
        version: policy.version,
    };
    draft.cascade = Some(policy.steps.clone());
    Some(used)
}

/// Checks a cascade policy's steps as a request's `cascade` list is checked; the problems'
/// messages, joined.
pub fn check_policy_steps(steps: &Value) -> Result<(), String> {
    if !steps.is_array() {
        return Err("a policy's steps are a list, as a message's cascade".into());
    }
    let mut errors = Vec::new();
    validate_cascade(Some(steps), &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    Err(errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; "))
}

fn validate_cascade(raw: Option<&Value>, errors: &mut Vec<ValidationError>) -> Vec<CascadeStep> {
    let steps = match raw {
        None | Some(Value::Null) => {
            errors.push(ValidationError::new(
                "missing_cascade",
                "cascade",
                "cascade is required: a list of steps such as [{\"channel\": \"sms\"}]",
            ));
            return vec![];
        }
        Some(Value::String(name)) => {
            errors.push(ValidationError::new(
                "unknown_cascade_policy",
                "cascade",
                format!("no cascade policy named '{name}' exists for this tenant"),
            ));
            return vec![];
        }
        Some(Value::Array(steps)) => steps,
        Some(_) => {
            errors.push(ValidationError::new(
                "invalid_cascade",
                "cascade",
                "cascade must be a list of steps or the name of a cascade policy",
            ));
            return vec![];
        }
    };
    if steps.is_empty() || steps.len() > MAX_CASCADE_STEPS {
        errors.push(ValidationError::new(
            if steps.is_empty() {
                "empty_cascade"
            } else {
                "too_many_steps"
            },
            "cascade",
            format!("cascade must have 1 to {MAX_CASCADE_STEPS} steps"),
        ));
        return vec![];
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if let Some(s) = validate_step(i, step, errors) {
            out.push(s);
        }
    }
    out
}

/// A JSON integer, also when written with a zero fraction (`30.0`), as JSON Schema counts it.
fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

fn validate_step(i: usize, step: &Value, errors: &mut Vec<ValidationError>) -> Option<CascadeStep> {
    let Some(obj) = step.as_object() else {
        errors.push(ValidationError::new(
            "invalid_cascade_step",
            format!("cascade[{i}]"),
            "a cascade step must be an object with `channel`, `timeout_seconds` and `until`",
        ));
        return None;
    };
    let before = errors.len();
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["channel", "timeout_seconds", "until"].contains(&k.as_str()))
    {
        errors.push(ValidationError::new(
            "invalid_cascade_step",
            format!("cascade[{i}].{unknown}"),
            format!("unknown field '{unknown}' (expected channel, timeout_seconds, until)"),
        ));
    }
    let channel = match obj
        .get("channel")
        .and_then(Value::as_str)
        .map(|c| (c, Channel::parse(c)))
    {
        Some((_, Some(c))) => Some(c),
        other => {
            let got = other.map_or("nothing".to_string(), |(c, _)| format!("'{c}'"));
            errors.push(ValidationError::new(
                "unknown_channel",
                format!("cascade[{i}].channel"),
                format!("channel must be one of sms, email, push, whatsapp; got {got}"),
            ));
            None
        }
    };
    let timeout_seconds = match obj.get("timeout_seconds") {
        None | Some(Value::Null) => Some(DEFAULT_STEP_TIMEOUT_SECONDS),
        Some(v) => {
            match integer(v) {
                Some(t) if (1..=MAX_STEP_TIMEOUT_SECONDS).contains(&t) => Some(t as u32),
                _ => {
                    errors.push(ValidationError::new(
                    "invalid_timeout",
                    format!("cascade[{i}].timeout_seconds"),
                    format!("timeout_seconds must be an integer from 1 to {MAX_STEP_TIMEOUT_SECONDS}"),
                ));
                    None
                }
            }
        }
    };
    let until = match obj.get("until") {
        None | Some(Value::Null) => Some(Until::Delivered),
        Some(v) => match v.as_str().and_then(Until::parse) {
            Some(u) => Some(u),
            None => {
                errors.push(ValidationError::new(
                    "invalid_until",
                    format!("cascade[{i}].until"),
                    "until must be one of accepted, delivered, read",
                ));
                None
            }
        },
    };
    if errors.len() > before {
        return None;
    }
    Some(CascadeStep {
        channel: channel?,
        timeout_seconds: timeout_seconds?,
        until: until?,
    })
}

/// Checks `to`, and writes its phone numbers in E.164 ([`phone::normalize`]): the form every
/// later layer (countries, suppression, opt-outs, duplicates) and every provider compares.
fn validate_recipient(to: &mut Recipient, errors: &mut Vec<ValidationError>) {
    for (field, value) in [
        ("to.phone", &mut to.phone),
        ("to.whatsapp", &mut to.whatsapp),
    ] {
        if let Some(p) = value
            && characters::check_text(field, p, errors)
        {
            match phone::normalize(p) {
                Some(e164) => *p = e164,
                None => errors.push(ValidationError::new(
                    "invalid_phone",
                    field,
                    format!(
                        "'{p}' is not a phone number in international format (+ and the country code, then the number: +14155550100 or +1 415 555 0100)"
                    ),
                )),
            }
        }
    }
    if let Some(e) = &to.email
        && characters::check_text("to.email", e, errors)
        && !is_email(e)
    {
        errors.push(ValidationError::new(
            "invalid_email",
            "to.email",
            format!("'{e}' is not an email address"),
        ));
    }
    if let Some(t) = &to.push_token
        && characters::check_text("to.push_token", t, errors)
        && (t.is_empty()
            || t.chars().count() > MAX_PUSH_TOKEN_CHARS
            || t.chars().any(char::is_whitespace))
    {
        errors.push(ValidationError::new(
            "invalid_push_token",
            "to.push_token",
            format!("push_token must be 1 to {MAX_PUSH_TOKEN_CHARS} characters without spaces"),
        ));
    }
}

/// The field of `content.<channel>` that holds the channel's own text, and the most characters a
/// text the channel carries may have. `None` for email: its body has no limit of its own (the
/// request body's size bounds it).
pub fn carried_text_limit(channel: Channel) -> Option<(&'static str, usize)> {
    match channel {
        Channel::Sms => Some(("text", MAX_SMS_CHARS)),
        Channel::Whatsapp => Some(("text", MAX_WHATSAPP_CHARS)),
        Channel::Push => Some(("body", MAX_PUSH_BODY_CHARS)),
        Channel::Email => None,
    }
}

/// `content.text` stands in for every channel without text of its own, so it must fit each
/// channel that carries it: an SMS step must not take 250,000 characters because they came
/// through the shared field. (A channel's own field is checked in [`validate_content`].) One
/// error per channel, naming the first step that would carry it.
fn validate_carried_text(c: &Content, cascade: &[CascadeStep], errors: &mut Vec<ValidationError>) {
    let Some(text) = c.text.as_ref() else {
        return;
    };
    let length = text.chars().count();
    let mut checked = Vec::new();
    for (i, step) in cascade.iter().enumerate() {
        if checked.contains(&step.channel) {
            continue;
        }
        checked.push(step.channel);
        let Some((_, max)) = carried_text_limit(step.channel) else {
            continue;
        };
        if c.own_text(step.channel).is_none() && length > max {
            errors.push(ValidationError::new(
                "content_too_long",
                "content.text",
                format!(
                    "content.text is {length} characters and cascade[{i}] ({}) would carry it; \
                     at most {max} fit (give `content.{}` its own shorter text)",
                    step.channel, step.channel
                ),
            ));
        }
    }
}

/// The checks that depend on the tenant's settings, after [`validate`], in the pipeline's
/// order: content (the SMS must fit the tenant's `max_sms_segments`, counted as the network will:
/// GSM-7 with its extension table, or UCS-2; see [`crate::sms_segments`]), then compliance (an
/// SMS step's `to.phone` and a WhatsApp step's `to.whatsapp` must be in the tenant's
/// `allowed_countries`).
pub fn validate_for_tenant(
    spec: &MessageSpec,
    settings: &TenantSettings,
) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    check_segments(spec, settings, &mut errors);
    check_countries(spec, settings, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_segments(
    spec: &MessageSpec,
    settings: &TenantSettings,
    errors: &mut Vec<ValidationError>,
) {
    let Some(cap) = settings.max_sms_segments else {
        return;
    };
    let Some(i) = spec.cascade.iter().position(|s| s.channel == Channel::Sms) else {
        return;
    };
    let field = match spec.content.own_text(Channel::Sms) {
        Some(_) => "content.sms.text",
        None => "content.text",
    };
    let Some(counted) = spec.sms_parts() else {
        return;
    };
    if counted.segments <= cap as usize {
        return;
    }
    errors.push(ValidationError::new(
        "too_many_segments",
        field,
        format!(
            "{field} takes {} SMS segments ({}, {} {}) and cascade[{i}] would send it; this \
             tenant allows at most {cap}",
            counted.segments,
            counted.encoding.as_str(),
            counted.units,
            match counted.encoding {
                sms_segments::SmsEncoding::Gsm7 => "septets",
                sms_segments::SmsEncoding::Ucs2 => "UTF-16 units",
            },
        ),
    ));
}

fn check_countries(
    spec: &MessageSpec,
    settings: &TenantSettings,
    errors: &mut Vec<ValidationError>,
) {
    let Some(allowed) = settings.allowed_countries.as_ref() else {
        return;
    };
    let mut checked = Vec::new();
    for (i, step) in spec.cascade.iter().enumerate() {
        let (field, number) = match step.channel {
            Channel::Sms => ("to.phone", spec.to.phone.as_deref()),
            Channel::Whatsapp => ("to.whatsapp", spec.to.whatsapp.as_deref()),
            Channel::Email | Channel::Push => continue,
        };
        if number.is_none() || checked.contains(&field) {
            continue;
        }
        checked.push(field);
        let country = spec.destination_country(step.channel);
        if country.as_ref().is_some_and(|c| allowed.contains(c)) {
            continue;
        }
        errors.push(ValidationError::new(
            "country_not_allowed",
            field,
            format!(
                "cascade[{i}] ({}) would send to a number in {}; this tenant may send to {}",
                step.channel,
                country.as_deref().unwrap_or("no country"),
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
}

fn validate_content(c: &Content, errors: &mut Vec<ValidationError>) {
    validate_content_characters(c, errors);
    let mut check = |field: &str, value: Option<&String>, max: usize| {
        if let Some(v) = value
            && v.chars().count() > max
        {
            errors.push(ValidationError::new(
                "content_too_long",
                field,
                format!("{field} is longer than {max} characters"),
            ));
        }
    };
    check(
        "content.sms.text",
        c.sms.as_ref().and_then(|s| s.text.as_ref()),
        MAX_SMS_CHARS,
    );
    check(
        "content.whatsapp.text",
        c.whatsapp.as_ref().and_then(|w| w.text.as_ref()),
        MAX_WHATSAPP_CHARS,
    );
    check(
        "content.push.title",
        c.push.as_ref().and_then(|p| p.title.as_ref()),
        MAX_PUSH_TITLE_CHARS,
    );
    check(
        "content.push.body",
        c.push.as_ref().and_then(|p| p.body.as_ref()),
        MAX_PUSH_BODY_CHARS,
    );
    check(
        "content.email.subject",
        c.email.as_ref().and_then(|e| e.subject.as_ref()),
        MAX_EMAIL_SUBJECT_CHARS,
    );
    if let Some(template) = c.whatsapp.as_ref().and_then(|w| w.template.as_ref()) {
        for (field, value) in [
            ("content.whatsapp.template.name", &template.name),
            ("content.whatsapp.template.language", &template.language),
        ] {
            if value.trim().is_empty() || value.chars().count() > MAX_TEMPLATE_FIELD_CHARS {
                errors.push(ValidationError::new(
                    "invalid_template",
                    field,
                    format!("{field} must be 1 to {MAX_TEMPLATE_FIELD_CHARS} characters"),
                ));
            }
        }
    }
}

/// Every text of the content, for characters no channel carries (see [`characters`]).
fn validate_content_characters(c: &Content, errors: &mut Vec<ValidationError>) {
    let email = c.email.as_ref();
    let push = c.push.as_ref();
    let whatsapp = c.whatsapp.as_ref();
    let template = whatsapp.and_then(|w| w.template.as_ref());
    let texts = [
        ("content.text", c.text.as_ref()),
        (
            "content.sms.text",
            c.sms.as_ref().and_then(|s| s.text.as_ref()),
        ),
        (
            "content.email.subject",
            email.and_then(|e| e.subject.as_ref()),
        ),
        ("content.email.text", email.and_then(|e| e.text.as_ref())),
        ("content.email.html", email.and_then(|e| e.html.as_ref())),
        ("content.push.title", push.and_then(|p| p.title.as_ref())),
        ("content.push.body", push.and_then(|p| p.body.as_ref())),
        (
            "content.whatsapp.text",
            whatsapp.and_then(|w| w.text.as_ref()),
        ),
        ("content.whatsapp.template.name", template.map(|t| &t.name)),
        (
            "content.whatsapp.template.language",
            template.map(|t| &t.language),
        ),
    ];
    for (field, value) in texts {
        if let Some(v) = value {
            characters::check_text(field, v, errors);
        }
    }
    if let Some(components) = template.and_then(|t| t.components.as_ref()) {
        for (i, component) in components.iter().enumerate() {
            characters::check_readable_json(
                &format!("content.whatsapp.template.components[{i}]"),
                component,
                errors,
            );
        }
    }
    if let Some(data) = push.and_then(|p| p.data.as_ref()) {
        characters::check_opaque_map("content.push.data", data, errors);
    }
}

/// E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A pragmatic address check (RFC 5321 lengths, one `@`, a dotted domain, no spaces); the
/// provider is the final judge, this only catches what can never be delivered.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    // Lengths in characters, as the OpenAPI document's pattern counts them.
    s.chars().count() <= 254
        && (1..=64).contains(&local.chars().count())
        && !local.contains('@')
        && domain.len() >= 3
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::spec::{WhatsappContent, WhatsappTemplate};
    use serde_json::json;

    fn draft(to: Recipient, cascade: Value) -> MessageDraft {
        MessageDraft {
            to,
            content: Content {
                text: Some("hello".into()),
                ..Default::default()
            },
            cascade: Some(cascade),
            ..Default::default()
        }
    }

    fn phone(p: &str) -> Recipient {
        Recipient {
            phone: Some(p.into()),
            ..Default::default()
        }
    }

    fn codes(r: Result<MessageSpec, Vec<ValidationError>>) -> Vec<&'static str> {
        r.expect_err("should be invalid")
            .into_iter()
            .map(|e| e.code)
            .collect()
    }

    #[test]
    fn a_valid_request_gets_defaults_for_timeout_and_until() {
        let spec = validate(draft(phone("+14155550100"), json!([{"channel": "sms"}]))).unwrap();
        assert_eq!(
            spec.cascade,
            vec![CascadeStep {
                channel: Channel::Sms,
                timeout_seconds: DEFAULT_STEP_TIMEOUT_SECONDS,
                until: Until::Delivered
            }]
        );
    }

    #[test]
    fn unknown_channel_is_named() {
        let errs =
            validate(draft(phone("+14155550100"), json!([{"channel": "pigeon"}]))).unwrap_err();
        assert_eq!(errs[0].code, "unknown_channel");
        assert_eq!(errs[0].field, "cascade[0].channel");
        assert!(errs[0].message.contains("pigeon"));
    }

    #[test]
    fn a_step_whose_recipient_is_missing() {
        let errs =
            validate(draft(phone("+14155550100"), json!([{"channel": "email"}]))).unwrap_err();
        assert_eq!(errs[0].code, "missing_recipient");
        assert_eq!(errs[0].field, "to.email");
    }

    #[test]
    fn phone_numbers_must_be_e164() {
        for bad in [
            "4155550100",
            "+0155550100",
            "+1415555010012345",
            "+1 415 555 0100 0000 0000",
            "(415) 555-0100",
            "+",
        ] {
            assert_eq!(
                codes(validate(draft(phone(bad), json!([{"channel": "sms"}])))),
                vec!["invalid_phone"],
                "{bad}"
            );
        }
        assert!(is_e164("+14155550100"));
    }

    #[test]
    fn phone_numbers_are_carried_in_e164() {
        let to = Recipient {
            phone: Some("+1 (415) 555-0100".into()),
            whatsapp: Some("+44 (0)20 7946 0958".into()),
            ..Recipient::default()
        };
        let spec = validate(draft(
            to,
            json!([{"channel": "sms"}, {"channel": "whatsapp"}]),
        ))
        .expect("valid");
        assert_eq!(spec.to.phone.as_deref(), Some("+14155550100"));
        assert_eq!(spec.to.whatsapp.as_deref(), Some("+442079460958"));
        assert_eq!(
            check_address(Channel::Sms, "+1 415 555 0100").as_deref(),
            Ok("+14155550100")
        );
        assert!(check_address(Channel::Sms, "415 555 0100").is_err());
    }

    #[test]
    fn emails_are_checked() {
        for bad in [
            "nobody",
            "a@b",
            "a b@example.com",
            "@example.com",
            "a@.com",
            "a@example..com",
        ] {
            let to = Recipient {
                email: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(
                codes(validate(draft(to, json!([{"channel": "email"}])))),
                vec!["invalid_email"],
                "{bad}"
            );
        }
        assert!(is_email("ada@example.com"));
    }

    #[test]
    fn cascade_shape_errors() {
        let to = phone("+14155550100");
        assert_eq!(
            codes(validate(draft(to.clone(), json!([])))),
            vec!["empty_cascade"]
        );
        assert_eq!(
            codes(validate(draft(to.clone(), json!("default")))),
            vec!["unknown_cascade_policy"]
        );
        assert_eq!(
            codes(validate(draft(to.clone(), json!(5)))),
            vec!["invalid_cascade"]
        );
        assert_eq!(
            codes(validate(draft(
                to.clone(),
                json!([{"channel": "sms", "timeout_seconds": 0}])
            ))),
            vec!["invalid_timeout"]
        );
        assert_eq!(
            codes(validate(draft(
                to.clone(),
                json!([{"channel": "sms", "until": "soon"}])
            ))),
            vec!["invalid_until"]
        );
        assert_eq!(
            codes(validate(draft(
                to.clone(),
                json!([{"channel": "sms", "retries": 3}])
            ))),
            vec!["invalid_cascade_step"]
        );
        let eleven: Vec<_> = (0..11).map(|_| json!({"channel": "sms"})).collect();
        assert_eq!(
            codes(validate(draft(to, json!(eleven)))),
            vec!["too_many_steps"]
        );
        let mut d = draft(phone("+14155550100"), json!([]));
        d.cascade = None;
        assert_eq!(codes(validate(d)), vec!["missing_cascade"]);
        // A zero fraction is still an integer (as JSON Schema says); a real fraction is not.
        let ok = draft(
            phone("+14155550100"),
            json!([{"channel": "sms", "timeout_seconds": 30.0}]),
        );
        assert_eq!(validate(ok).unwrap().cascade[0].timeout_seconds, 30);
        assert_eq!(
            codes(validate(draft(
                phone("+14155550100"),
                json!([{"channel": "sms", "timeout_seconds": 30.5}])
            ))),
            vec!["invalid_timeout"]
        );
    }

    #[test]
    fn content_must_exist_for_every_step_and_fit() {
        let mut d = draft(phone("+14155550100"), json!([{"channel": "sms"}]));
        d.content = Content::default();
        assert_eq!(codes(validate(d)), vec!["missing_content"]);
        let mut d = draft(phone("+14155550100"), json!([{"channel": "sms"}]));
        d.content.sms = Some(crate::message::spec::SmsContent {
            text: Some("x".repeat(MAX_SMS_CHARS + 1)),
        });
        assert_eq!(codes(validate(d)), vec!["content_too_long"]);
    }

    #[test]
    fn the_shared_text_must_fit_every_channel_that_carries_it() {
        let long = |n: usize| Content {
            text: Some("x".repeat(n)),
            ..Content::default()
        };
        let to = Recipient {
            email: Some("a@example.com".into()),
            ..phone("+14155550100")
        };
        let with = |cascade: Value, content: Content| {
            let mut d = draft(to.clone(), cascade);
            d.content = content;
            validate(d)
        };
        // Refused for the SMS step, with the field and the step named.
        let errors = with(json!([{"channel": "sms"}]), long(250_000)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, "content_too_long");
        assert_eq!(errors[0].field, "content.text");
        assert!(errors[0].message.contains("cascade[0] (sms)"), "{errors:?}");
        // At the limit it fits; an email step carries any length.
        assert!(with(json!([{"channel": "sms"}]), long(MAX_SMS_CHARS)).is_ok());
        assert!(with(json!([{"channel": "email"}]), long(250_000)).is_ok());
        // One error per channel, at the first step that carries it.
        let errors = with(
            json!([{"channel": "email"}, {"channel": "sms"}, {"channel": "sms"}]),
            long(MAX_SMS_CHARS + 1),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("cascade[1] (sms)"), "{errors:?}");
        // The SMS's own text wins: the long shared text goes only to the email.
        let mut content = long(250_000);
        content.sms = Some(crate::message::spec::SmsContent {
            text: Some("short".into()),
        });
        assert!(with(json!([{"channel": "sms"}, {"channel": "email"}]), content).is_ok());
    }

    #[test]
    fn the_sms_must_fit_the_tenants_segment_cap() {
        let capped = TenantSettings {
            max_sms_segments: Some(2),
            ..Default::default()
        };
        let spec_with = |content: Content| {
            let mut d = draft(phone("+15005550100"), json!([{"channel": "sms"}]));
            d.content = content;
            validate(d).expect("valid before the tenant's settings")
        };
        let text = |t: String| Content {
            text: Some(t),
            ..Default::default()
        };
        // 306 GSM-7 characters are 2 segments; 307 are 3.
        let fits = spec_with(text("a".repeat(306)));
        assert_eq!(validate_for_tenant(&fits, &capped), Ok(()));
        let over = spec_with(text("a".repeat(307)));
        let errors = validate_for_tenant(&over, &capped).unwrap_err();
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            ("too_many_segments", "content.text")
        );
        assert!(
            errors[0]
                .message
                .contains("3 SMS segments (gsm7, 307 septets)")
        );
        // 135 UCS-2 characters (one outside GSM-7 makes them all UCS-2) are 3 segments.
        let ucs2 = spec_with(Content {
            sms: Some(crate::message::spec::SmsContent {
                text: Some(format!("ê{}", "a".repeat(134))),
            }),
            ..Default::default()
        });
        let errors = validate_for_tenant(&ucs2, &capped).unwrap_err();
        assert_eq!(errors[0].field, "content.sms.text");
        assert!(errors[0].message.contains("(ucs2, 135 UTF-16 units)"));
        // No cap, or no SMS step: nothing to count.
        assert_eq!(
            validate_for_tenant(&over, &TenantSettings::default()),
            Ok(())
        );
        let mut email = draft(
            Recipient {
                email: Some("a@example.com".into()),
                ..Default::default()
            },
            json!([{"channel": "email"}]),
        );
        email.content = text("a".repeat(1000));
        assert_eq!(
            validate_for_tenant(&validate(email).unwrap(), &capped),
            Ok(())
        );
    }

    #[test]
    fn a_phone_step_must_go_to_an_allowed_country() {
        let settings = TenantSettings {
            allowed_countries: Some(["US".to_owned(), "CA".to_owned()].into()),
            ..Default::default()
        };
        let spec = |p: &str, channel: &str| {
            validate(draft(phone(p), json!([{"channel": channel}]))).expect("valid")
        };
        assert_eq!(
            validate_for_tenant(&spec("+14155550100", "sms"), &settings),
            Ok(())
        );
        let whatsapp = draft(
            Recipient {
                whatsapp: Some("+14165550100".into()),
                ..Default::default()
            },
            json!([{"channel": "whatsapp"}]),
        );
        assert_eq!(
            validate_for_tenant(&validate(whatsapp).unwrap(), &settings),
            Ok(())
        );
        for (number, country) in [("+447400123456", "GB"), ("+18765550100", "JM")] {
            let errors = validate_for_tenant(&spec(number, "sms"), &settings).unwrap_err();
            assert_eq!(
                (errors[0].code, errors[0].field.as_str()),
                ("country_not_allowed", "to.phone")
            );
            assert!(errors[0].message.contains(country), "{}", errors[0].message);
        }
        // No list: every country; an email step has no country.
        assert_eq!(
            validate_for_tenant(&spec("+447400123456", "sms"), &TenantSettings::default()),
            Ok(())
        );
        let email = draft(
            Recipient {
                email: Some("a@example.com".into()),
                phone: Some("+447400123456".into()),
                ..Default::default()
            },
            json!([{"channel": "email"}]),
        );
        assert_eq!(
            validate_for_tenant(&validate(email).unwrap(), &settings),
            Ok(())
        );
    }

    #[test]
    fn ttl_reference_and_metadata_limits() {
        let mut d = draft(phone("+14155550100"), json!([{"channel": "sms"}]));
        d.ttl_seconds = Some(json!(0));
        d.reference = Some(String::new());
        let mut m = serde_json::Map::new();
        m.insert("k".into(), json!("v".repeat(MAX_METADATA_BYTES)));
        d.metadata = Some(m);
        assert_eq!(
            codes(validate(d)),
            vec!["invalid_reference", "invalid_metadata", "invalid_ttl"]
        );
    }

    #[test]
    fn email_subject_falls_back_to_first_line_of_text() {
        let c = Content {
            text: Some("Your code is 1234\nIt expires soon".into()),
            ..Default::default()
        };
        match c.render(Channel::Email) {
            Some(crate::message::ChannelContent::Email { subject, .. }) => {
                assert_eq!(subject, "Your code is 1234")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_whatsapp_template_is_content_on_its_own() {
        let c = Content {
            whatsapp: Some(WhatsappContent {
                text: None,
                template: Some(WhatsappTemplate {
                    name: "order_shipped".into(),
                    language: "en_US".into(),
                    components: None,
                }),
            }),
            ..Default::default()
        };
        match c.render(Channel::Whatsapp) {
            Some(crate::message::ChannelContent::Whatsapp { text, template }) => {
                assert_eq!(text, "");
                assert_eq!(template.map(|t| t.name).as_deref(), Some("order_shipped"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.render(Channel::Sms),
            None,
            "a template is WhatsApp's only"
        );
    }

    #[test]
    fn a_whatsapp_template_needs_a_name_and_a_language() {
        let mut d = draft(phone("+14155550100"), json!([{"channel": "whatsapp"}]));
        d.to.whatsapp = Some("+14155550100".into());
        d.content = Content {
            whatsapp: Some(WhatsappContent {
                text: None,
                template: Some(WhatsappTemplate {
                    name: " ".into(),
                    language: String::new(),
                    components: None,
                }),
            }),
            ..Default::default()
        };
        assert_eq!(
            codes(validate(d)),
            vec!["invalid_template", "invalid_template"]
        );
    }

    #[test]
    fn control_characters_are_refused_in_every_string_with_their_path() {
        use crate::message::spec::{EmailContent, PushContent, SmsContent};
        let everything = |bad: &str| -> MessageDraft {
            let text = |s: &str| Some(format!("{s}{bad}"));
            let mut data = serde_json::Map::new();
            data.insert("deep".into(), json!({"list": [format!("v{bad}")]}));
            let mut metadata = serde_json::Map::new();
            metadata.insert(format!("key{bad}"), json!("ok"));
            metadata.insert("nested".into(), json!({"x": [1, format!("v{bad}")]}));
            MessageDraft {
                to: Recipient {
                    phone: text("+1415555010"),
                    email: text("ada@example.com"),
                    push_token: text("tok"),
                    whatsapp: text("+1415555010"),
                },
                content: Content {
                    text: text("t"),
                    sms: Some(SmsContent { text: text("s") }),
                    email: Some(EmailContent {
                        subject: text("sub"),
                        text: text("e"),
                        html: text("<p>"),
                    }),
                    push: Some(PushContent {
                        title: text("pt"),
                        body: text("pb"),
                        data: Some(data),
                    }),
                    whatsapp: Some(WhatsappContent {
                        text: text("w"),
                        template: Some(WhatsappTemplate {
                            name: format!("n{bad}"),
                            language: format!("en{bad}"),
                            components: Some(vec![
                                json!({"parameters": [{"type": "text", "text": format!("p{bad}")}]}),
                            ]),
                        }),
                    }),
                },
                cascade: Some(json!([{"channel": "sms"}])),
                reference: text("ref"),
                metadata: Some(metadata),
                ttl_seconds: None,
            }
        };
        let fields = |bad: &str| -> Vec<String> {
            let errors = validate(everything(bad)).unwrap_err();
            assert!(
                errors.iter().all(|e| e.code == "invalid_characters"),
                "{errors:?}"
            );
            let mut f: Vec<String> = errors.into_iter().map(|e| e.field).collect();
            f.sort();
            f
        };
        let readable = [
            "content.email.html",
            "content.email.subject",
            "content.email.text",
            "content.push.body",
            "content.push.title",
            "content.sms.text",
            "content.text",
            "content.whatsapp.template.components[0].parameters[0].text",
            "content.whatsapp.template.language",
            "content.whatsapp.template.name",
            "content.whatsapp.text",
            "reference",
            "to.email",
            "to.phone",
            "to.push_token",
            "to.whatsapp",
        ];
        let mut with_nul: Vec<String> = readable.iter().map(|s| s.to_string()).collect();
        with_nul.extend(
            [
                "content.push.data.deep.list[0]",
                "metadata.key\\0",
                "metadata.nested.x[1]",
            ]
            .map(String::from),
        );
        with_nul.sort();
        assert_eq!(fields("\u{0}"), with_nul);
        // Other controls are refused where people read the text; opaque data may carry them.
        assert_eq!(fields("\u{1b}"), readable.map(String::from).to_vec());
        assert_eq!(fields("\u{7f}"), readable.map(String::from).to_vec());
        // Tab, newline and CR are text (recipients then fail their own format checks).
        let errors = validate(everything("\t\r\n")).unwrap_err();
        assert!(
            errors.iter().all(|e| e.code != "invalid_characters"),
            "{errors:?}"
        );
    }
}
