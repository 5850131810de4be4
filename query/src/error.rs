//! Errors of the query API, each a problem+json response with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hermes_infra::http::Problem;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("message not found")]
    NotFound,
    #[error("the cursor is not one this API gave out")]
    InvalidCursor,
    #[error(
        "unknown status '{0}' (expected accepted, sending, delivered, read, failed, expired, cancelled)"
    )]
    InvalidStatus(String),
    #[error("the query string could not be read: {0}")]
    InvalidQuery(String),
    #[error("limit must be between 1 and {0}")]
    InvalidLimit(i64),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("a stored view could not be decoded: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            QueryError::NotFound => Problem::not_found("message"),
            QueryError::InvalidCursor => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_cursor", detail)
            }
            QueryError::InvalidStatus(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_status", detail)
            }
            QueryError::InvalidQuery(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_query", detail)
            }
            QueryError::InvalidLimit(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_limit", detail)
            }
            e @ (QueryError::Db(_) | QueryError::Corrupt(_)) => Problem::internal(&e),
        }
        .into_response()
    }
}
