//! The read side: `GET /v1/messages`, `GET /v1/messages/{id}` and `GET /v1/messages/{id}/events`.
//! Reads read models (and the log itself for the audit trail), always scoped to the tenant.

pub mod billing;
pub mod cursor;
pub mod error;
pub mod messages;
pub mod views;

use axum::extract::FromRef;
use hermes_infra::http::Authenticator;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
}

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    QueryState: FromRef<S>,
    Authenticator: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(messages::get_message))
        .routes(routes!(messages::list_messages))
        .routes(routes!(messages::message_events))
}
