//! `POST /v1/messages/{id}/ack`: the tenant reports that its app received a push.
//!
//! Push providers (FCM) confirm only that they accepted a notification, never that a device got
//! it. A push step that waits `until: delivered` (or `read`) therefore waits for this call, made by
//! the tenant's backend when its app reports the notification, and falls back to the next step at
//! its timeout like any other. A step that waits `until: accepted` completes on the provider's
//! acceptance and needs no acknowledgement.

use super::CommandState;
use super::body;
use super::error::ApiError;
use super::messages::trace_metadata;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use hermes_domain::MessageId;
use hermes_domain::message::{MessageCommand, ReceiptStatus};
use hermes_infra::http::{Problem, Tenant};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the app saw; `delivered` when the body is empty.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// The notification reached the device.
    #[default]
    Delivered,
    /// The user opened it.
    Read,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    #[serde(default)]
    pub status: AckStatus,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushAcknowledged {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    pub status: AckStatus,
    /// `false` when it changed nothing (the same acknowledgement again, or an older one).
    pub recorded: bool,
}

/// Acknowledge a push: the message's latest push attempt becomes delivered (or read).
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/ack",
    tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    request_body(content = Option<AckRequest>, description = "Optional; `{\"status\": \"delivered\"}` by default"),
    responses(
        (status = 200, description = "Recorded (or already known)", body = PushAcknowledged),
        (status = 400, description = "The body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field or status (only `delivered` and `read`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The message has no push attempt", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn acknowledge_push(
    State(state): State<CommandState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<PushAcknowledged>, ApiError> {
    let id: MessageId = id.parse().map_err(|_| ApiError::NotFound("message"))?;
    let body = body::read(body).await?;
    let request: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        // `null` is no body too, as the document's optional body says; an array is no object.
        match body::parse::<Option<serde_json::Value>>(&body)?.value {
            None => AckRequest::default(),
            Some(v) if v.is_object() => body::parse(&body)?.value,
            Some(_) => {
                return Err(ApiError::InvalidRequest(
                    "the body must be an object such as {\"status\": \"read\"}".into(),
                ));
            }
        }
    };
    let status = match request.status {
        AckStatus::Delivered => ReceiptStatus::Delivered,
        AckStatus::Read => ReceiptStatus::Read,
    };
    let done = state
        .handler
        .execute(
            id,
            Some(tenant.0),
            &MessageCommand::AcknowledgePush { status },
            &trace_metadata(&headers, &tenant),
            None,
        )
        .await?;
    Ok(Json(PushAcknowledged {
        id,
        status: request.status,
        recorded: !done.events.is_empty(),
    }))
}
