//! Message status handlers.

use crate::QueryState;
use crate::cursor;
use crate::error::QueryError;
use crate::views::{EventList, EventView, MessageList, MessageView};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use hermes_domain::MessageId;
use hermes_domain::message::stored::EventPayload;
use hermes_domain::message::{Message, MessageEvent, MessageStatus};
use hermes_infra::event_store;
use hermes_infra::http::{Problem, Tenant};
use hermes_projections::message_row::MessageRow;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// A message's status, current step and every attempt.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, body = MessageView),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_message(
    State(state): State<QueryState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, QueryError> {
    let id: Uuid = id.parse().map_err(|_| QueryError::NotFound)?;
    // The read model runs moments behind the event store. A client must never see a message go
    // back in time (after a read served from the events, or its own write missing right after
    // the 202), so the view is served only when it has the stream's last event.
    let (view, latest): (Option<sqlx::types::Json<MessageRow>>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT state FROM message_views WHERE message_id = $1 AND tenant_id = $2),
                (SELECT max(stream_version) FROM events WHERE stream_id = $1 AND tenant_id = $2)",
    )
    .bind(id)
    .bind(tenant.0)
    .fetch_one(&state.pool)
    .await?;
    let Some(latest) = latest else {
        return Err(QueryError::NotFound);
    };
    if let Some(row) = view.filter(|row| row.0.version >= latest as u64) {
        return Ok(Json(MessageView::from(Message::from(row.0))));
    }
    // Not projected yet, or behind: the message as its events say.
    let stored = event_store::load_message_stream_for_tenant(&state.pool, tenant.0, id).await?;
    let events = stored
        .into_iter()
        .map(|e| MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Message::from_events(MessageId(id), &events)
        .map(|m| Json(MessageView::from(m)))
        .ok_or(QueryError::NotFound)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only messages in this status.
    #[param(value_type = Option<MessageStatus>)]
    pub status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    // Taken as text so that a non-number is an `invalid_limit` problem, not a plain-text 400.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9a-f]{47}$")]
    pub cursor: Option<String>,
}

/// The tenant's messages, newest first.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, body = MessageList),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_messages(
    State(state): State<QueryState>,
    Tenant(tenant, _): Tenant,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<MessageList>, QueryError> {
    let Query(params) = params.map_err(|e| QueryError::InvalidQuery(e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse().map_err(|_| QueryError::InvalidLimit(MAX_LIMIT))?,
    };
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(QueryError::InvalidLimit(MAX_LIMIT));
    }
    let status = match params.status.as_deref() {
        None => None,
        Some(s) => {
            Some(MessageStatus::parse(s).ok_or_else(|| QueryError::InvalidStatus(s.to_owned()))?)
        }
    };
    let after: Option<(DateTime<Utc>, Uuid)> = match params.cursor.as_deref() {
        None => None,
        Some(c) => Some(cursor::decode(c).ok_or(QueryError::InvalidCursor)?),
    };
    // One more row than asked tells whether there is a next page.
    let rows: Vec<(DateTime<Utc>, Uuid, sqlx::types::Json<MessageRow>)> = sqlx::query_as(
        "SELECT created_at, message_id, state FROM message_views
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, message_id) < ($3, $4))
         ORDER BY created_at DESC, message_id DESC
         LIMIT $5",
    )
    .bind(tenant.0)
    .bind(status.map(MessageStatus::as_str))
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = more
        .then(|| page.last().map(|(at, id, _)| cursor::encode(*at, *id)))
        .flatten();
    Ok(Json(MessageList {
        data: page
            .into_iter()
            .map(|(_, _, row)| MessageView::from(Message::from(row.0)))
            .collect(),
        next_cursor,
    }))
}

/// The audit trail: every event the message recorded, in order.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}/events",
    tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, body = EventList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn message_events(
    State(state): State<QueryState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<Json<EventList>, QueryError> {
    let id: Uuid = id.parse().map_err(|_| QueryError::NotFound)?;
    let stored = event_store::load_message_stream_for_tenant(&state.pool, tenant.0, id).await?;
    if stored.is_empty() {
        return Err(QueryError::NotFound);
    }
    let data = stored
        .into_iter()
        .map(|e| {
            // Shown in the current shape, whatever version it was stored in.
            let mut data =
                EventPayload::decode(&e.event_type, e.schema_version, e.payload)?.to_json();
            if let Some(obj) = data.as_object_mut() {
                obj.remove("type");
            }
            Ok(EventView {
                id: e.event_id,
                position: e.position,
                version: e.stream_version,
                event_type: e.event_type,
                recorded_at: e.recorded_at,
                data,
                metadata: serde_json::to_value(&e.metadata.0)?,
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Ok(Json(EventList { data }))
}
