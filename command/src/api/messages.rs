//! `POST /v1/messages` and `POST /v1/messages/{id}/cancel`.

use super::CommandState;
use super::body::JsonBody;
use super::error::ApiError;
use crate::handler::{AcceptRequest, IdempotencyKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hermes_domain::message::{Content, MessageCommand, Recipient};
use hermes_domain::validation::{self, MessageDraft};
use hermes_domain::{Channel, MessageId};
use hermes_infra::event_store::EventMetadata;
use hermes_infra::http::{Problem, Tenant};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Who to deliver to: one address per channel the cascade uses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToRequest {
    /// E.164, for `sms`.
    #[schema(example = "+14155550100")]
    pub phone: Option<String>,
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    pub push_token: Option<String>,
    /// E.164, for `whatsapp`.
    pub whatsapp: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    #[serde(deserialize_with = "objects::to")]
    pub to: ToRequest,
    #[serde(deserialize_with = "objects::content")]
    pub content: Content,
    /// A list of steps `{"channel": "sms"|"email"|"push"|"whatsapp", "timeout_seconds": 60,
    /// "until": "accepted"|"delivered"|"read"}` (defaults: 60 s, delivered), or the name of a
    /// tenant cascade policy.
    #[schema(value_type = Object, example = json!([{"channel": "sms", "timeout_seconds": 30, "until": "delivered"}, {"channel": "email"}]))]
    pub cascade: Option<serde_json::Value>,
    /// Your own reference, shown back in status and lists.
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The message expires (and its cascade stops) this many seconds after acceptance.
    #[schema(value_type = Option<i64>)]
    pub ttl_seconds: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageAccepted {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(example = "accepted")]
    pub status: String,
}

/// serde reads a struct from a JSON array too (`"to": ["+1…"]`); the API takes objects only,
/// as its document says.
mod objects {
    use super::ToRequest;
    use hermes_domain::message::Content;
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::Value;

    fn object_or_null<E: Error>(v: Option<&Value>, path: &str) -> Result<(), E> {
        match v {
            None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(E::custom(format!("`{path}` must be an object"))),
        }
    }

    pub fn to<'de, D: Deserializer<'de>>(d: D) -> Result<ToRequest, D::Error> {
        let v = Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom("`to` must be an object"));
        }
        serde_json::from_value(v).map_err(D::Error::custom)
    }

    pub fn content<'de, D: Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
        let v = Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom("`content` must be an object"));
        }
        for channel in ["sms", "email", "push", "whatsapp"] {
            object_or_null(v.get(channel), &format!("content.{channel}"))?;
        }
        object_or_null(
            v.get("whatsapp").and_then(|w| w.get("template")),
            "content.whatsapp.template",
        )?;
        serde_json::from_value(v).map_err(D::Error::custom)
    }
}

pub(super) fn trace_metadata(headers: &HeaderMap, tenant: &Tenant) -> EventMetadata {
    EventMetadata {
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(super::traceparent::parse)
            .map(str::to_owned),
        actor: Some(format!("tenant:{}", tenant.0)),
        ..Default::default()
    }
}

/// Accept a message for delivery. The cascade runs in the background; follow it with
/// `GET /v1/messages/{id}`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = SendMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([\\t -~]*[!-~])?$",
        description = "Same key and body within 24 h: the same answer; same key, other body: 409")),
    responses(
        (status = 202, description = "Accepted", body = MessageAccepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded (code `overloaded`, see `Retry-After`): accepted messages wait too long for their dispatch", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("api_key" = []))
)]
pub async fn send_message(
    State(state): State<CommandState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: JsonBody<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| ApiError::InvalidIdempotencyKey("it must be printable ASCII"))?;
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(ApiError::InvalidIdempotencyKey(
                    "it must be 1 to 255 characters",
                ));
            }
            Some(IdempotencyKey {
                key: key.to_owned(),
                request_hash: Sha256::digest(&body.canonical).to_vec(),
            })
        }
    };
    // Refused before anything else is done: the cheapest answer while the workers catch up.
    state.backlog.admit().map_err(ApiError::Overloaded)?;
    let r = body.value;
    let spec = validation::validate(MessageDraft {
        to: Recipient {
            phone: r.to.phone,
            email: r.to.email,
            push_token: r.to.push_token,
            whatsapp: r.to.whatsapp,
        },
        content: r.content,
        cascade: r.cascade,
        reference: r.reference,
        metadata: r.metadata,
        ttl_seconds: r.ttl_seconds,
    })
    .map_err(ApiError::Validation)?;
    let served: Vec<Channel> = state
        .providers
        .candidates()
        .into_iter()
        .flat_map(|c| c.channels)
        .collect();
    if let Some(step) = spec.cascade.iter().find(|s| !served.contains(&s.channel)) {
        return Err(ApiError::ChannelUnavailable(step.channel.to_string()));
    }
    let accepted = state
        .accepts
        .accept(AcceptRequest {
            tenant_id: tenant.0,
            spec,
            idempotency,
            metadata: trace_metadata(&headers, &tenant),
        })
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(MessageAccepted {
            id: accepted.message_id,
            status: "accepted".into(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/messages/{}", accepted.message_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageCancelled {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(example = "cancelled")]
    pub status: String,
}

/// Stop a message's cascade. An attempt already with a provider may still arrive; its receipt
/// is recorded as late.
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/cancel",
    tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled (or already cancelled)", body = MessageCancelled),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The message already ended", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel_message(
    State(state): State<CommandState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MessageCancelled>, ApiError> {
    let id: MessageId = id.parse().map_err(|_| ApiError::NotFound("message"))?;
    state
        .handler
        .execute(
            id,
            Some(tenant.0),
            &MessageCommand::Cancel,
            &trace_metadata(&headers, &tenant),
            None,
        )
        .await?;
    Ok(Json(MessageCancelled {
        id,
        status: "cancelled".into(),
    }))
}
