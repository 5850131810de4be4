//! `/v1/webhook-endpoints`: a tenant's webhook endpoints (Standard Webhooks), their secrets, their
//! deliveries and attempts, and redelivery; `/v1/messages/{id}/webhook-deliveries` for one
//! message. Every query names the key's tenant: another tenant's endpoint or delivery is a 404.

use super::CommandState;
use super::body;
use super::error::ApiError;
use crate::webhooks::signature;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hermes_domain::webhook::{NoticeData, NoticeType};
use hermes_infra::http::{Problem, Tenant};
use hermes_infra::webhooks::{self, EndpointChange};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const MAX_BODY_BYTES: usize = 16 * 1024;
/// Endpoints one tenant may have.
const MAX_ENDPOINTS: usize = 20;
/// Deliveries one list answer holds at most.
const MAX_LISTED: i64 = 100;
/// A rotated secret keeps signing for a day unless told otherwise; a week at most.
const DEFAULT_OVERLAP_SECONDS: i64 = 86_400;
const MAX_OVERLAP_SECONDS: i64 = 7 * 86_400;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    #[schema(example = "https://example.com/hermes-webhooks")]
    pub url: String,
    pub description: String,
    /// The notice types it gets; empty: all of them.
    #[schema(example = json!(["message.delivered", "message.failed"]))]
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why Hermes disabled it (every delivery failed for 5 days); cleared by enabling it.
    pub disabled_reason: Option<String>,
    /// Until then the previous secret signs too (after a rotation).
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<webhooks::Endpoint> for WebhookEndpoint {
    fn from(e: webhooks::Endpoint) -> Self {
        let now = Utc::now();
        WebhookEndpoint {
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            previous_secret_valid_until: e.previous_secret_until.filter(|until| *until > now),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    /// Oldest first.
    pub endpoints: Vec<WebhookEndpoint>,
}

/// An endpoint just created, or whose secret was just rotated: the secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The Standard Webhooks signing secret (`whsec_` + base64 key).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    // Described by `WebhookUrl` (a field's own doc would wrap the inline schema in an allOf).
    #[schema(value_type = WebhookUrl, inline)]
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Notice types to get (see `WebhookNotice`); absent or empty: all.
    #[serde(default)]
    #[schema(value_type = Option<Vec<EventTypeName>>)]
    pub event_types: Option<Vec<String>>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointChange {
    // The new URL, described by `WebhookUrl`.
    #[schema(value_type = Option<WebhookUrl>, inline)]
    pub url: Option<String>,
    pub description: Option<String>,
    /// Notice types to get (see `WebhookNotice`); empty: all.
    #[schema(value_type = Option<Vec<EventTypeName>>)]
    pub event_types: Option<Vec<String>>,
    /// Enabling an endpoint Hermes disabled clears `disabled_reason`.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecret {
    /// How long the old secret keeps signing (a second signature): 0 to 604,800; default 86,400.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<serde_json::Number>,
}

/// The payload every delivery carries (Standard Webhooks: `type`, `timestamp`, `data`), sent with
/// the headers `webhook-id`, `webhook-timestamp` and `webhook-signature`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookNotice {
    /// `message.accepted`, `message.attempt_sent`, `message.delivered`, `message.read`,
    /// `message.failed`, `message.expired`, `message.cancelled`, `message.late_receipt`,
    /// `message.step_skipped`.
    #[serde(rename = "type")]
    #[schema(example = "message.delivered")]
    pub notice_type: String,
    /// When what it tells happened.
    pub timestamp: DateTime<Utc>,
    pub data: NoticeData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status; absent when it gave none (see `error`).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// The first KiB of the answer's body.
    pub response: String,
    /// Why there was no answer: a refused address, no connection, a timeout.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// The `webhook-id` it is sent with (the same on every attempt).
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub message_id: Uuid,
    #[schema(example = "message.delivered")]
    pub event_type: String,
    /// `pending`, `succeeded` or `failed` (every attempt for 24 h failed).
    pub status: String,
    pub attempts: i32,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every attempt (in the per-message and per-delivery views); the last one only in an
    /// endpoint's list.
    pub attempt_log: Vec<WebhookAttempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub deliveries: Vec<WebhookDelivery>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    /// How many failed deliveries were queued again.
    pub redelivered: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// `pending`, `succeeded` or `failed`; all when absent.
    #[param(value_type = Option<DeliveryStatus>, inline)]
    pub status: Option<String>,
}

/// The longest endpoint URL, in bytes (ASCII: characters).
const MAX_URL_BYTES: usize = 2048;

/// The URLs [`check_url`] may take, as far as a pattern can say (a literal private address or
/// `localhost` is refused outside dev too): http(s), a host that starts with a letter (so no IP
/// literal), an optional port, printable ASCII.
const URL_PATTERN: &str =
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z][A-Za-z0-9.-]*(:[0-9]{1,4})?([/?#][!-~]*)?$";

/// An endpoint URL in the OpenAPI document (the request reads it as text and [`check_url`]s it).
pub struct WebhookUrl;

impl utoipa::PartialSchema for WebhookUrl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`https://` (or `http://`) URL, at most 2,048 characters, no user or password; \
                 its host must resolve to public addresses only.",
            ))
            .max_length(Some(MAX_URL_BYTES))
            .pattern(Some(URL_PATTERN))
            .into()
    }
}

impl ToSchema for WebhookUrl {}

/// A notice type an endpoint may ask for, in the OpenAPI document: the names [`NoticeType`]
/// reads (the request reads them as text and checks them).
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(NoticeType::ALL.map(NoticeType::as_str)))
            .into()
    }
}

impl ToSchema for EventTypeName {}

/// The states a delivery list filters by (`status`).
const DELIVERY_STATUSES: [&str; 3] = ["pending", "succeeded", "failed"];

/// A delivery's state, as the list filters it, in the OpenAPI document.
pub struct DeliveryStatus;

impl utoipa::PartialSchema for DeliveryStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(DELIVERY_STATUSES))
            .into()
    }
}

impl ToSchema for DeliveryStatus {}

fn not_found(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("webhook endpoint"))
}

/// 404 unless the tenant has this endpoint.
async fn require_endpoint(pool: &sqlx::PgPool, tenant: Uuid, id: Uuid) -> Result<(), ApiError> {
    match webhooks::get(pool, tenant, id).await.map_err(storage)? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound("webhook endpoint")),
    }
}

fn storage(e: sqlx::Error) -> ApiError {
    ApiError::Command(e.into())
}

/// A URL an endpoint may have: http(s), a host, no credentials, not a literal private address
/// (names are checked again at every delivery, where they resolve then).
fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::InvalidWebhook(
            "invalid_webhook_url",
            format!("url: {why}"),
        ))
    };
    if url.len() > MAX_URL_BYTES {
        return refuse("longer than 2,048 characters");
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return refuse("not a URL");
    };
    if !matches!(parsed.scheme(), "https" | "http") {
        return refuse("only https:// and http:// URLs are delivered to");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("a URL with a user or password is refused: put secrets elsewhere");
    }
    let Some(host) = parsed.host_str() else {
        return refuse("no host");
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if !allow_private
        && (bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<IpAddr>()
                .is_ok_and(|ip| !hermes_adapters::plugin::is_public_address(ip)))
    {
        return refuse("a loopback, private or link-local address is not delivered to");
    }
    Ok(())
}

fn check_event_types(types: &[String]) -> Result<(), ApiError> {
    match types.iter().find(|t| NoticeType::parse(t).is_none()) {
        Some(unknown) => Err(ApiError::InvalidWebhook(
            "unknown_event_type",
            format!(
                "event_types: unknown type {unknown:?} (known: {})",
                NoticeType::ALL.map(NoticeType::as_str).join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > 1024 || description.contains('\0') {
        return Err(ApiError::InvalidWebhook(
            "invalid_request",
            "description: at most 1,024 characters, no NUL".into(),
        ));
    }
    Ok(())
}

fn dedup(mut types: Vec<String>) -> Vec<String> {
    types.sort();
    types.dedup();
    types
}

/// The tenant's webhook endpoints.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    responses(
        (status = 200, body = WebhookEndpointList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_endpoints(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    let endpoints = webhooks::list(state.handler.pool(), tenant.0)
        .await
        .map_err(storage)?;
    Ok(Json(WebhookEndpointList {
        endpoints: endpoints.into_iter().map(Into::into).collect(),
    }))
}

/// Add an endpoint. It gets the notices of events recorded from now on; its signing secret is
/// in the answer, only this once.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    request_body = NewWebhookEndpoint,
    responses(
        (status = 201, body = WebhookEndpointWithSecret),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has 20 endpoints already (`too_many_endpoints`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL (`invalid_webhook_url`), an unknown event type (`unknown_event_type`), or a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_endpoint(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    request: Body,
) -> Result<(StatusCode, Json<WebhookEndpointWithSecret>), ApiError> {
    let bytes = body::read_at_most(request, MAX_BODY_BYTES).await?;
    let new: NewWebhookEndpoint = body::parse(&bytes)?.value;
    check_url(&new.url, state.webhooks.allow_private)?;
    let event_types = dedup(new.event_types.unwrap_or_default());
    check_event_types(&event_types)?;
    let description = new.description.unwrap_or_default();
    check_description(&description)?;
    let pool = state.handler.pool();
    if webhooks::list(pool, tenant.0).await.map_err(storage)?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::TooManyEndpoints(MAX_ENDPOINTS));
    }
    let id = Uuid::now_v7();
    let secret = signature::generate();
    let endpoint = webhooks::create(
        pool,
        &webhooks::NewEndpoint {
            id,
            tenant_id: tenant.0,
            url: &new.url,
            description: &description,
            event_types: &event_types,
            enabled: new.enabled.unwrap_or(true),
            secret: state.webhooks.store(id, &secret),
        },
    )
    .await
    .map_err(storage)?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointWithSecret {
            endpoint: endpoint.into(),
            secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_endpoint(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    webhooks::get(state.handler.pool(), tenant.0, not_found(&id)?)
        .await
        .map_err(storage)?
        .map(|e| Json(e.into()))
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// Change an endpoint: only the fields given.
#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path)),
    request_body = WebhookEndpointChange,
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL (`invalid_webhook_url`), an unknown event type (`unknown_event_type`), or a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn update_endpoint(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
    request: Body,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let id = not_found(&id)?;
    let bytes = body::read_at_most(request, MAX_BODY_BYTES).await?;
    let change: WebhookEndpointChange = body::parse(&bytes)?.value;
    if let Some(url) = &change.url {
        check_url(url, state.webhooks.allow_private)?;
    }
    let event_types = change.event_types.map(dedup);
    if let Some(types) = &event_types {
        check_event_types(types)?;
    }
    if let Some(description) = &change.description {
        check_description(description)?;
    }
    let change = EndpointChange {
        url: change.url,
        description: change.description,
        event_types,
        enabled: change.enabled,
    };
    webhooks::update(state.handler.pool(), tenant.0, id, &change)
        .await
        .map_err(storage)?
        .map(|e| Json(e.into()))
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// Delete an endpoint, with its deliveries and their attempts.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{endpoint_id}",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_endpoint(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if webhooks::delete(state.handler.pool(), tenant.0, not_found(&id)?)
        .await
        .map_err(storage)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook endpoint"))
    }
}

/// A new signing secret; the old one keeps signing (a second signature in
/// `webhook-signature`) for the overlap, so receivers can switch without missing a delivery.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path)),
    request_body(content = Option<RotateWebhookSecret>, description = "Optional"),
    responses(
        (status = 200, body = WebhookEndpointWithSecret),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An overlap out of range (`invalid_overlap`) or a body of another shape (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
    request: Body,
) -> Result<Json<WebhookEndpointWithSecret>, ApiError> {
    let id = not_found(&id)?;
    let RotateWebhookSecret { overlap_seconds } = body::optional(request, MAX_BODY_BYTES).await?;
    let overlap = overlap_seconds
        .as_ref()
        .map_or(DEFAULT_OVERLAP_SECONDS, body::whole_seconds);
    if !(0..=MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(ApiError::InvalidWebhook(
            "invalid_overlap",
            format!("overlap_seconds: from 0 to {MAX_OVERLAP_SECONDS}"),
        ));
    }
    let secret = signature::generate();
    let until = Utc::now() + chrono::Duration::seconds(overlap);
    let endpoint = webhooks::rotate_secret(
        state.handler.pool(),
        tenant.0,
        id,
        &state.webhooks.store(id, &secret),
        until,
    )
    .await
    .map_err(storage)?
    .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(Json(WebhookEndpointWithSecret {
        endpoint: endpoint.into(),
        secret,
    }))
}

/// An endpoint's deliveries, newest first (at most 100), each with its last attempt.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{endpoint_id}/deliveries",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path), DeliveryFilter),
    responses(
        (status = 200, body = WebhookDeliveryList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown status (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
    Query(filter): Query<DeliveryFilter>,
) -> Result<Json<WebhookDeliveryList>, ApiError> {
    let id = not_found(&id)?;
    if let Some(status) = &filter.status
        && !DELIVERY_STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::InvalidWebhook(
            "invalid_request",
            format!("status: one of {}", DELIVERY_STATUSES.join(", ")),
        ));
    }
    let pool = state.handler.pool();
    require_endpoint(pool, tenant.0, id).await?;
    let deliveries =
        webhooks::deliveries_of_endpoint(pool, tenant.0, id, filter.status.as_deref(), MAX_LISTED)
            .await
            .map_err(storage)?;
    with_attempts(&state, tenant.0, deliveries, true).await
}

/// Queue every failed delivery of an endpoint again, each on a fresh schedule.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{endpoint_id}/redeliver",
    tag = "webhooks",
    params(("endpoint_id" = Uuid, Path)),
    responses(
        (status = 202, body = Redelivered),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such endpoint", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn redeliver_failed(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = not_found(&id)?;
    let pool = state.handler.pool();
    require_endpoint(pool, tenant.0, id).await?;
    let redelivered = webhooks::redeliver_failed(pool, tenant.0, id)
        .await
        .map_err(storage)?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { redelivered })))
}

/// Queue one delivery again (failed, or succeeded and wanted once more); a pending one is left
/// as it is.
#[utoipa::path(
    post,
    path = "/v1/webhook-deliveries/{delivery_id}/redeliver",
    tag = "webhooks",
    params(("delivery_id" = Uuid, Path)),
    responses(
        (status = 202, body = WebhookDelivery),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such delivery", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn redeliver(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<WebhookDelivery>), ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound("webhook delivery"))?;
    let delivery = webhooks::redeliver(state.handler.pool(), tenant.0, id)
        .await
        .map_err(storage)?
        .ok_or(ApiError::NotFound("webhook delivery"))?;
    let Json(mut list) = with_attempts(&state, tenant.0, vec![delivery], false).await?;
    Ok((StatusCode::ACCEPTED, Json(list.deliveries.remove(0))))
}

/// A message's webhook deliveries to every endpoint, with every attempt.
#[utoipa::path(
    get,
    path = "/v1/messages/{message_id}/webhook-deliveries",
    tag = "webhooks",
    params(("message_id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookDeliveryList),
        (status = 401, description = "Missing or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = super::TENANT_REFUSED, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The tenant has no such message", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn message_deliveries(
    State(state): State<CommandState>,
    Tenant(tenant, _): Tenant,
    Path(id): Path<String>,
) -> Result<Json<WebhookDeliveryList>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("message"))?;
    let pool = state.handler.pool();
    let owned = hermes_infra::event_store::load_message_stream_for_tenant(pool, tenant.0, id)
        .await
        .map_err(storage)?;
    if owned.is_empty() {
        return Err(ApiError::NotFound("message"));
    }
    let deliveries = webhooks::deliveries_of_message(pool, tenant.0, id)
        .await
        .map_err(storage)?;
    with_attempts(&state, tenant.0, deliveries, false).await
}

async fn with_attempts(
    state: &CommandState,
    tenant: Uuid,
    deliveries: Vec<webhooks::Delivery>,
    last_only: bool,
) -> Result<Json<WebhookDeliveryList>, ApiError> {
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let attempts = webhooks::attempts_of(state.handler.pool(), tenant, &ids)
        .await
        .map_err(storage)?;
    let deliveries = deliveries
        .into_iter()
        .map(|d| {
            let mut log: Vec<WebhookAttempt> = attempts
                .iter()
                .filter(|a| a.delivery_id == d.id)
                .map(|a| WebhookAttempt {
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    response: a.response.clone(),
                    error: a.error.clone(),
                })
                .collect();
            if last_only && log.len() > 1 {
                log.drain(..log.len() - 1);
            }
            WebhookDelivery {
                id: d.id,
                endpoint_id: d.endpoint_id,
                message_id: d.message_id,
                event_type: d.event_type,
                status: d.status,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                created_at: d.created_at,
                updated_at: d.updated_at,
                attempt_log: log,
            }
        })
        .collect();
    Ok(Json(WebhookDeliveryList { deliveries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_private_literals() {
        assert!(check_url("https://example.com/hooks", false).is_ok());
        assert!(check_url("http://example.com:8080/hooks", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9000/",
            "http://localhost/",
            "http://[::1]/",
            "http://10.0.0.8/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let err = check_url(bad, false).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidWebhook("invalid_webhook_url", _)),
                "{bad}: {err:?}"
            );
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(2048)), false).is_err());
    }

    #[test]
    fn the_document_lists_every_notice_type_and_no_other() {
        let schema = serde_json::to_value(<EventTypeName as utoipa::PartialSchema>::schema())
            .expect("a schema serializes");
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a name"))
            .collect();
        let known: Vec<&str> = NoticeType::ALL.map(NoticeType::as_str).to_vec();
        assert_eq!(listed, known);
    }

    #[test]
    fn event_types_must_be_known() {
        assert!(check_event_types(&["message.delivered".into()]).is_ok());
        assert!(check_event_types(&[]).is_ok());
        assert!(matches!(
            check_event_types(&["message.bounced".into()]),
            Err(ApiError::InvalidWebhook("unknown_event_type", _))
        ));
    }
}
