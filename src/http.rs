//! The HTTP surface: the command and query routers, OpenAPI and Swagger UI, health checks, metrics.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hermes_command::api::CommandState;
use hermes_infra::http::{Authenticator, Problem};
use hermes_infra::kafka::admin::BrokerProbe;
use hermes_infra::trace_context;
use hermes_query::QueryState;
use sqlx::PgPool;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

#[derive(Clone)]
pub struct AppState {
    pub command: CommandState,
    pub query: QueryState,
    pub auth: Authenticator,
    pub pool: PgPool,
    /// The brokers, when Kafka is configured: `/readyz` asks them too.
    pub kafka: Option<BrokerProbe>,
}

impl FromRef<AppState> for CommandState {
    fn from_ref(s: &AppState) -> Self {
        s.command.clone()
    }
}
impl FromRef<AppState> for QueryState {
    fn from_ref(s: &AppState) -> Self {
        s.query.clone()
    }
}
impl FromRef<AppState> for Authenticator {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hermes",
        description = "Multi-channel message delivery with durable cascades. Send one request; Hermes tries each channel of the cascade until one meets its `until`, and shows every attempt.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Send messages and follow their cascades"),
        (name = "provider callbacks", description = "Called by providers, verified by signature"),
        (name = "suppressions", description = "The tenant's own suppression list"),
        (name = "keys", description = "The tenant's own API keys"),
        (name = "cascade policies", description = "The tenant's own named cascades"),
        (name = "webhooks", description = "The tenant's webhook endpoints (Standard Webhooks), their deliveries and redelivery"),
    ),
    components(schemas(hermes_command::api::webhooks::WebhookNotice))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant API key (`hermes tenant create`)"))
                    .build(),
            ),
        );
    }
}

pub fn router(state: AppState) -> Router {
    let (api_router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(hermes_command::api::router())
        .merge(hermes_query::router())
        .split_for_parts();
    let mut openapi = openapi;
    hermes_command::api::contract::complete(&mut openapi);
    api_router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(count_request))
        .route_layer(axum::middleware::from_fn(trace_request))
        .route_layer(axum::middleware::from_fn(request_id))
        .route_layer(axum::middleware::from_fn(
            hermes_infra::http::refusals::count_refusals,
        ))
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see the Allow header)",
            )
        })
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
}

/// Prometheus text format.
async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::prometheus().render(),
    )
}

/// How long `/readyz` waits for the Kafka brokers.
const BROKER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database answers, and the Kafka brokers with the topic when Kafka is configured.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = sqlx::query("SELECT 1").execute(&state.pool).await {
        tracing::warn!(error = %e, "not ready: the database does not answer");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database does not answer",
        )
        .into_response();
    }
    if let Some(probe) = &state.kafka
        && let Err(why) = probe.check(BROKER_PROBE_TIMEOUT).await
    {
        tracing::warn!(error = %why, "not ready: Kafka");
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why).into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

/// For processes without the api role: only the health checks and metrics.
pub fn health_only(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(count_request))
        .with_state(state)
}

/// Gives each routed request an id (UUIDv7) in `X-Request-Id`, replacing any the client sent so
/// it can be trusted, and answers it in the response: events the request wrote name it as their
/// cause (`hermes audit`, `GET /v1/messages/{id}/events`).
async fn request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = axum::http::HeaderValue::try_from(uuid::Uuid::now_v7().to_string())
        .expect("a UUID is a header value");
    request
        .headers_mut()
        .insert(hermes_command::api::messages::REQUEST_ID_HEADER, id.clone());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(hermes_command::api::messages::REQUEST_ID_HEADER, id);
    response
}

/// A server span for each routed request while traces are exported, under the client's
/// `traceparent` when it sent a valid one: the root of a message's trace. Health checks and
/// metrics scrapes are not traced.
async fn trace_request(
    path: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = path.as_str();
    if !trace_context::active() || matches!(route, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let (incoming, request_id) = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header("traceparent"),
            header(hermes_command::api::messages::REQUEST_ID_HEADER).unwrap_or_default(),
        )
    };
    let span =
        trace_context::span_under(incoming.as_deref().and_then(trace_context::valid), || {
            tracing::info_span!(
                "request",
                otel.name = %format_args!("{method} {route}"),
                otel.kind = "server",
                trace_id = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                http.request.method = %method,
                http.route = route,
                http.response.status_code = tracing::field::Empty,
                hermes.request_id = %request_id,
            )
        });
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// `hermes_http_requests_total{route,status_class}` and `hermes_http_request_seconds{route}`
/// for every request a route matched (`route` is the method and the path template, so the
/// label set is bounded: `POST /v1/messages`, `GET /v1/messages/{id}`). Requests no route
/// matched are not counted.
async fn count_request(
    path: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = format!("{} {}", request.method(), path.as_str());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::histogram!("hermes_http_request_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("hermes_http_requests_total", "route" => route, "status_class" => class)
        .increment(1);
    response
}
