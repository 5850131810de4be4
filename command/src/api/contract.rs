//! What the OpenAPI document cannot get from the Rust types: the request body's every
//! constraint as JSON Schema (lengths, ranges, patterns, characters, and which recipient and
//! content each cascade channel needs), and the links from `POST /v1/messages` to what can be
//! done with the message it made. A client (or a schema-driven fuzzer) that follows the document
//! gets no 422 for a request the document calls valid; `tests/it/contract.rs` runs schemathesis
//! to hold the server to it.

use hermes_domain::channel::Channel;
use hermes_domain::validation::{
    MAX_CASCADE_STEPS, MAX_EMAIL_SUBJECT_CHARS, MAX_PUSH_BODY_CHARS, MAX_PUSH_TITLE_CHARS,
    MAX_PUSH_TOKEN_CHARS, MAX_REFERENCE_CHARS, MAX_SMS_CHARS, MAX_STEP_TIMEOUT_SECONDS,
    MAX_TEMPLATE_FIELD_CHARS, MAX_TTL_SECONDS, MAX_WHATSAPP_CHARS, carried_text_limit,
};
use serde_json::{Value, json};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::{OpenApi, RefOr};

/// Controls that text people read may not hold (all but tab, newline, CR; see
/// `hermes_domain::validation::characters`), as a regex class body.
const CONTROLS: &str = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f";

fn readable_text(max_chars: Option<usize>) -> Value {
    let mut s = json!({"type": ["string", "null"], "pattern": format!("^[^{CONTROLS}]*$")});
    if let Some(max) = max_chars {
        s["maxLength"] = json!(max);
    }
    s
}

/// JSON with no NUL in any string or key, at any depth (what Postgres can store).
fn json_without_nul() -> Value {
    json!({
        "description": "Any JSON without NUL (U+0000) in its strings or keys.",
        "type": ["object", "array", "string", "number", "boolean", "null"],
        "pattern": "^[^\\u0000]*$",
        "propertyNames": {"pattern": "^[^\\u0000]*$"},
        "additionalProperties": {"$ref": "#/components/schemas/JsonWithoutNul"},
        "items": {"$ref": "#/components/schemas/JsonWithoutNul"},
    })
}

/// JSON whose every string and key is text people read.
fn readable_json() -> Value {
    let text = format!("^[^{CONTROLS}]*$");
    json!({
        "description": "Any JSON whose strings and keys hold no control characters but tab, newline and CR.",
        "type": ["object", "array", "string", "number", "boolean", "null"],
        "pattern": text,
        "propertyNames": {"pattern": text},
        "additionalProperties": {"$ref": "#/components/schemas/ReadableJson"},
        "items": {"$ref": "#/components/schemas/ReadableJson"},
    })
}

fn present(field: &str) -> Value {
    json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}})
}

/// The content a channel needs: its own text (or, per channel, html, title, data, template)
/// or the `text` fallback.
fn content_for(channel: &str) -> Value {
    let own: Vec<Value> = match channel {
        "sms" => vec![present("text")],
        "email" => vec![present("text"), present("html")],
        "push" => vec![present("title"), present("body"), present("data")],
        _ => vec![present("text"), present("template")],
    };
    json!({"anyOf": [
        present("text"),
        {"required": [channel], "properties": {channel: {"type": "object", "anyOf": own}}},
    ]})
}

/// What `content` must hold for a step on `channel`: content for it, and a `text` fallback that
/// fits it when the channel has no text of its own and takes the fallback (email has no limit).
fn content_for_step(channel: &str) -> Value {
    let Some((own, max)) = Channel::parse(channel).and_then(carried_text_limit) else {
        return content_for(channel);
    };
    let fallback_fits = json!({"anyOf": [
        {"required": [channel], "properties": {channel: {"type": "object", "allOf": [present(own)]}}},
        {"properties": {"text": {"maxLength": max}}},
    ]});
    json!({"allOf": [content_for(channel), fallback_fits]})
}

fn send_message_request() -> Value {
    let controls = CONTROLS;
    let phone = json!({"type": ["string", "null"], "maxLength": 32, "pattern": r"^\+[ ()./-]*[1-9](?:[ ()./-]*[0-9]){1,14}[ ()./-]*$",
        "description": "International format: E.164, or the + and country code then the number with spaces, dashes, dots, slashes or parentheses (`+1 (415) 555-0100`); stored in E.164, a national prefix written in it (`+44 (0)20 7946 0958`) dropped",
        "example": "+14155550100"});
    let needs: Vec<Value> = [
        ("sms", "phone"),
        ("email", "email"),
        ("push", "push_token"),
        ("whatsapp", "whatsapp"),
    ]
    .into_iter()
    .map(|(channel, recipient)| {
        json!({
            "if": {
                "required": ["cascade"],
                "properties": {"cascade": {"type": "array", "contains": {
                    "type": "object", "required": ["channel"], "properties": {"channel": {"const": channel}},
                }}},
            },
            "then": {"properties": {
                "to": present(recipient),
                "content": content_for_step(channel),
            }},
        })
    })
    .collect();
    json!({
        "type": "object",
        "required": ["to", "content", "cascade"],
        "additionalProperties": false,
        "allOf": needs,
        "properties": {
            "to": {
                "type": "object",
                "additionalProperties": false,
                "description": "Who to deliver to: one address per channel the cascade uses.",
                "properties": {
                    "phone": phone,
                    "whatsapp": phone,
                    "email": {
                        "type": ["string", "null"],
                        "maxLength": 254,
                        "pattern": format!(r"^[^@\s{controls}]{{1,64}}@[^@.\s{controls}]+(\.[^@.\s{controls}]+)+$"),
                        "example": "ada@example.com",
                    },
                    "push_token": {
                        "type": ["string", "null"],
                        "pattern": format!(r"^[^\s{controls}]{{1,{MAX_PUSH_TOKEN_CHARS}}}$"),
                    },
                },
            },
            "content": {
                "type": "object",
                "additionalProperties": false,
                "description": "Per-channel content with a plain `text` fallback for every channel. The fallback must fit each channel of the cascade that carries it (SMS 1,600 characters, WhatsApp text and push body 4,096), else `content_too_long`.",
                "properties": {
                    "text": readable_text(None),
                    "sms": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                        "text": readable_text(Some(MAX_SMS_CHARS)),
                    }},
                    "email": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                        "subject": readable_text(Some(MAX_EMAIL_SUBJECT_CHARS)),
                        "text": readable_text(None),
                        "html": readable_text(None),
                    }},
                    "push": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                        "title": readable_text(Some(MAX_PUSH_TITLE_CHARS)),
                        "body": readable_text(Some(MAX_PUSH_BODY_CHARS)),
                        "data": {"type": ["object", "null"], "$ref": "#/components/schemas/JsonWithoutNul"},
                    }},
                    "whatsapp": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                        "text": readable_text(Some(MAX_WHATSAPP_CHARS)),
                        "template": {
                            "type": ["object", "null"],
                            "additionalProperties": false,
                            "description": "A pre-approved WhatsApp message template, as the Cloud API names it.",
                            "required": ["name", "language"],
                            "properties": {
                                "name": {"type": "string", "maxLength": MAX_TEMPLATE_FIELD_CHARS, "pattern": format!(r"^[^{controls}]*[^\s{controls}][^{controls}]*$")},
                                "language": {"type": "string", "maxLength": MAX_TEMPLATE_FIELD_CHARS, "pattern": format!(r"^[^{controls}]*[^\s{controls}][^{controls}]*$")},
                                "components": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/ReadableJson"}},
                            },
                        },
                    }},
                },
            },
            "cascade": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CASCADE_STEPS,
                "description": "The channels to try in order, each until its `until` or its timeout. Instead of the list, a request may name one of its tenant's cascade policies (`\"cascade\": \"otp\"`), which an operator defines in the tenant's settings; a name the tenant has no policy for is refused with `unknown_cascade_policy`.",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["channel"],
                    "properties": {
                        "channel": {"type": "string", "enum": ["sms", "email", "push", "whatsapp"]},
                        "timeout_seconds": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEP_TIMEOUT_SECONDS, "description": "Default 60"},
                        "until": {"type": ["string", "null"], "enum": ["accepted", "delivered", "read", null], "description": "Default delivered"},
                    },
                },
                "example": [{"channel": "sms", "timeout_seconds": 30, "until": "delivered"}, {"channel": "email"}],
            },
            "reference": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_REFERENCE_CHARS,
                "pattern": format!("^[^{controls}]*$"),
                "description": "Your own reference, shown back in status and lists.",
            },
            "metadata": {
                "type": ["object", "null"],
                "$ref": "#/components/schemas/JsonWithoutNul",
                "description": "Your own data, at most 4 KB as JSON.",
            },
            "ttl_seconds": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_TTL_SECONDS,
                "description": "The message expires (and its cascade stops) this many seconds after acceptance.",
            },
        },
    })
}

/// A schema object holding `schema` as is (utoipa's types cannot say `if`, `contains`...).
fn raw_schema(schema: Value) -> RefOr<Schema> {
    let Value::Object(members) = schema else {
        unreachable!("schemas here are objects")
    };
    let mut object = Object::default();
    object.extensions = Some(members.into_iter().collect());
    RefOr::T(Schema::Object(object))
}

/// Completes the document built from the routes' annotations (see the module comment).
pub fn complete(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        ("SendMessageRequest", send_message_request()),
        ("JsonWithoutNul", json_without_nul()),
        ("ReadableJson", readable_json()),
    ] {
        components.schemas.insert(name.into(), raw_schema(schema));
    }
    let Some(accepted) = openapi
        .paths
        .paths
        .get_mut("/v1/messages")
        .and_then(|p| p.post.as_mut())
        .and_then(|op| op.responses.responses.get_mut("202"))
    else {
        return;
    };
    let RefOr::T(accepted) = accepted else { return };
    for (name, operation) in [
        ("GetMessage", "get_message"),
        ("MessageEvents", "message_events"),
        ("CancelMessage", "cancel_message"),
        ("AcknowledgePush", "acknowledge_push"),
    ] {
        accepted.links.insert(
            name.into(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(operation)
                    .parameter("id", "$response.body#/id")
                    .build(),
            ),
        );
    }
}
