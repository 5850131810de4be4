//! The body of `POST /v1/messages`: the API's own types, converted explicitly into the domain's
//! draft (see [`SendMessageRequest::into_draft`]). Unknown fields are refused at every level, and
//! every nested object must be a JSON object: serde would otherwise read a struct from an array
//! (`"to": ["+1…"]`) and a field misspelt inside `content` would be dropped without a word.
//!
//! Free-form values stay free: `metadata`, `content.push.data` and a WhatsApp template's
//! `components` are the tenant's own JSON. The schema names (`Content`, `SmsContent`...) are the
//! ones the OpenAPI document has always used.

use hermes_domain::message::spec::{
    Content, EmailContent, PushContent, Recipient, SmsContent, WhatsappContent, WhatsappTemplate,
};
use hermes_domain::validation::MessageDraft;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, Error, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    #[serde(deserialize_with = "object")]
    pub to: ToRequest,
    #[serde(deserialize_with = "object")]
    pub content: ContentRequest,
    /// A list of steps `{"channel": "sms"|"email"|"push"|"whatsapp", "timeout_seconds": 60,
    /// "until": "accepted"|"delivered"|"read"}` (defaults: 60 s, delivered), or the name of a
    /// tenant cascade policy.
    #[schema(value_type = Object, example = json!([{"channel": "sms", "timeout_seconds": 30, "until": "delivered"}, {"channel": "email"}]))]
    pub cascade: Option<Value>,
    /// Your own reference, shown back in status and lists.
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// The message expires (and its cascade stops) this many seconds after acceptance.
    #[schema(value_type = Option<i64>)]
    pub ttl_seconds: Option<Value>,
}

/// Who to deliver to: one address per channel the cascade uses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToRequest {
    /// International format (E.164, or written with spaces and the like: stored in E.164), for
    /// `sms`.
    #[schema(example = "+14155550100")]
    pub phone: Option<String>,
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    pub push_token: Option<String>,
    /// International format (E.164, or written with spaces and the like: stored in E.164), for
    /// `whatsapp`.
    pub whatsapp: Option<String>,
}

/// Per-channel content with a plain `text` fallback for every channel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Content)]
pub struct ContentRequest {
    pub text: Option<String>,
    #[serde(default, deserialize_with = "optional_object")]
    pub sms: Option<SmsRequest>,
    #[serde(default, deserialize_with = "optional_object")]
    pub email: Option<EmailRequest>,
    #[serde(default, deserialize_with = "optional_object")]
    pub push: Option<PushRequest>,
    #[serde(default, deserialize_with = "optional_object")]
    pub whatsapp: Option<WhatsappRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SmsContent)]
pub struct SmsRequest {
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailContent)]
pub struct EmailRequest {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PushContent)]
pub struct PushRequest {
    pub title: Option<String>,
    pub body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WhatsappContent)]
pub struct WhatsappRequest {
    pub text: Option<String>,
    /// A pre-approved message template: the only content WhatsApp delivers outside the 24-hour
    /// customer-service window. `text` (or the top-level `text`) still describes the message for
    /// audit and for providers that cannot send templates.
    #[serde(default, deserialize_with = "optional_object")]
    pub template: Option<TemplateRequest>,
}

/// A WhatsApp message template, as the WhatsApp Cloud API names it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WhatsappTemplate)]
pub struct TemplateRequest {
    /// The template's name, e.g. `order_shipped`.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// The Cloud API's `components` (header, body and button parameters), passed through as given.
    #[schema(value_type = Option<Vec<Object>>)]
    pub components: Option<Vec<Value>>,
}

impl SendMessageRequest {
    /// The domain's draft, for validation.
    pub fn into_draft(self) -> MessageDraft {
        MessageDraft {
            to: Recipient {
                phone: self.to.phone,
                email: self.to.email,
                push_token: self.to.push_token,
                whatsapp: self.to.whatsapp,
            },
            content: self.content.into(),
            cascade: self.cascade,
            reference: self.reference,
            metadata: self.metadata,
            ttl_seconds: self.ttl_seconds,
        }
    }
}

impl From<ContentRequest> for Content {
    fn from(c: ContentRequest) -> Self {
        Content {
            text: c.text,
            sms: c.sms.map(|s| SmsContent { text: s.text }),
            email: c.email.map(|e| EmailContent {
                subject: e.subject,
                text: e.text,
                html: e.html,
            }),
            push: c.push.map(|p| PushContent {
                title: p.title,
                body: p.body,
                data: p.data,
            }),
            whatsapp: c.whatsapp.map(|w| WhatsappContent {
                text: w.text,
                template: w.template.map(|t| WhatsappTemplate {
                    name: t.name,
                    language: t.language,
                    components: t.components,
                }),
            }),
        }
    }
}

/// A nested struct, from a JSON object only. Deserialized straight from the map, so the path of
/// an error inside it (`content.sms`) reaches the problem's detail.
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectVisitor(PhantomData))
}

/// An optional nested struct: a JSON object, or `null` for none.
fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    d.deserialize_option(OptionalObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

struct OptionalObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        object(d).map(Some)
    }
}
