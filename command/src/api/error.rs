//! Errors of the command API, each a problem+json response with a stable code.

use crate::backlog::Overloaded;
use crate::handler::CommandError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hermes_adapters::CallbackError;
use hermes_domain::message::DomainError;
use hermes_domain::tenant::TenantError;
use hermes_domain::validation::ValidationError;
use hermes_infra::http::Problem;
use hermes_infra::rate_limit::Limited;
use hermes_infra::tenants::TenantCommandError;

/// Whole seconds until one more message fits, at least 1 (`Retry-After` has no fractions).
fn retry_after_seconds(limited: &Limited) -> u64 {
    limited.retry_after.as_micros().div_ceil(1_000_000).max(1) as u64
}

fn rate_limited_detail(limited: &Limited) -> String {
    let scope = match limited.key.rsplit_once("}:") {
        Some((_, channel)) => format!("this tenant's {channel} rate limit"),
        None => "this tenant's rate limit".to_owned(),
    };
    format!(
        "{scope} is reached: retry in {} s (Retry-After); nothing was accepted",
        retry_after_seconds(limited)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body does not have the expected shape: {0}")]
    InvalidRequest(String),
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request is invalid")]
    Validation(Vec<ValidationError>),
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(&'static str),
    #[error("no provider serves channel {0}")]
    ChannelUnavailable(String),
    #[error(
        "Hermes is overloaded: messages accepted {}s ago still wait for their dispatch; retry in {}s",
        .0.backlog_age.as_secs(),
        .0.retry_after.as_secs()
    )]
    Overloaded(Overloaded),
    #[error("{}", rate_limited_detail(.0))]
    RateLimited(Limited),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(
        "every step's address is on this tenant's suppression list ({0}): nothing would be sent"
    )]
    RecipientSuppressed(String),
    #[error("{0}")]
    InvalidSuppression(String),
    /// A webhook endpoint's field is refused: the code names which (`invalid_webhook_url`,
    /// `unknown_event_type`, `invalid_overlap`, `invalid_request`).
    #[error("{1}")]
    InvalidWebhook(&'static str, String),
    #[error("a tenant has at most {0} webhook endpoints: delete one first")]
    TooManyEndpoints(usize),
    #[error("unknown provider {0}")]
    UnknownProvider(String),
    #[error("provider account {0} takes no inbound messages: its plugin has no parse-inbound")]
    InboundNotSupported(String),
    #[error(
        "a receipt in this callback is about another attempt than the URL names; nothing was recorded"
    )]
    ReceiptAttemptMismatch,
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A command on the tenant itself (its keys, its settings) through its own API.
    #[error(transparent)]
    Tenant(#[from] TenantCommandError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        // A duplicate names the message it duplicates, to follow instead.
        let location = match &self {
            ApiError::Command(CommandError::DuplicateContent(first)) => {
                axum::http::HeaderValue::from_str(&format!("/v1/messages/{first}")).ok()
            }
            _ => None,
        };
        let problem = match self {
            ApiError::InvalidJson(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_json", detail)
            }
            ApiError::InvalidRequest(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
            }
            ApiError::PayloadTooLarge(_) => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            ApiError::Validation(errors) => {
                // The first problem's code leads, so simple clients can switch on one field.
                let code = errors.first().map_or("validation_failed", |e| e.code);
                let detail = errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
                    .with_errors(serde_json::to_value(&errors).unwrap_or_default())
            }
            ApiError::InvalidIdempotencyKey(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", detail)
            }
            ApiError::ChannelUnavailable(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "channel_unavailable",
                detail,
            ),
            ApiError::Overloaded(o) => {
                let mut response =
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", detail)
                        .into_response();
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(o.retry_after.as_secs()),
                );
                return response;
            }
            ApiError::RateLimited(limited) => {
                let mut response =
                    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                        .into_response();
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after_seconds(&limited)),
                );
                return response;
            }
            ApiError::NotFound(what) => Problem::not_found(what),
            ApiError::Tenant(e) => tenant_problem(e),
            ApiError::InvalidSuppression(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_suppression",
                detail,
            ),
            ApiError::InvalidWebhook(code, _) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
            }
            ApiError::TooManyEndpoints(_) => {
                Problem::new(StatusCode::CONFLICT, "too_many_endpoints", detail)
            }
            ApiError::RecipientSuppressed(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "recipient_suppressed",
                detail,
            ),
            ApiError::UnknownProvider(_) => {
                Problem::new(StatusCode::NOT_FOUND, "unknown_provider", detail)
            }
            ApiError::InboundNotSupported(_) => {
                Problem::new(StatusCode::NOT_FOUND, "inbound_not_supported", detail)
            }
            ApiError::ReceiptAttemptMismatch => {
                Problem::new(StatusCode::FORBIDDEN, "receipt_attempt_mismatch", detail)
            }
            ApiError::Callback(CallbackError::InvalidSignature) => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_signature", detail)
            }
            ApiError::Callback(CallbackError::Busy) => {
                let mut response =
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail).into_response();
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                return response;
            }
            ApiError::Callback(CallbackError::Malformed(_)) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed_callback", detail)
            }
            ApiError::Command(e) => match e {
                CommandError::NotFound => Problem::not_found("message"),
                // 409: the request itself is valid; it conflicts with what the key already
                // names (the IETF draft suggests 422, which would call a valid request invalid).
                CommandError::IdempotencyKeyReused => Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body",
                ),
                CommandError::Domain(DomainError::AlreadyTerminal(status)) => Problem::new(
                    StatusCode::CONFLICT,
                    "message_terminal",
                    format!("the message is already {}", status.as_str()),
                ),
                CommandError::Domain(DomainError::NoPushAttempt) => Problem::new(
                    StatusCode::CONFLICT,
                    "no_push_attempt",
                    "the message has no push attempt to acknowledge",
                ),
                CommandError::Domain(DomainError::ReceiptFromAnotherAccount {
                    attempt_id,
                    account,
                }) => Problem::new(
                    StatusCode::FORBIDDEN,
                    "receipt_account_mismatch",
                    format!(
                        "attempt {attempt_id} was not sent by provider account {account}; nothing was recorded"
                    ),
                ),
                CommandError::Domain(DomainError::ReceiptForAnotherProviderMessage {
                    attempt_id,
                    ..
                }) => Problem::new(
                    StatusCode::FORBIDDEN,
                    "receipt_provider_id_mismatch",
                    format!(
                        "the receipt is about another provider message than attempt {attempt_id}; nothing was recorded"
                    ),
                ),
                CommandError::Domain(DomainError::UnknownAttempt(id)) => Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown_attempt",
                    format!("attempt {id} does not belong to this message"),
                ),
                CommandError::Unavailable => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Hermes is shutting down; retry (with the same Idempotency-Key)",
                ),
                CommandError::Contended => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "contended",
                    "the message is being changed by many writers at once; retry",
                ),
                CommandError::DuplicateContent(_) => {
                    Problem::new(StatusCode::CONFLICT, "duplicate_content", detail)
                }
                e @ (CommandError::Corrupt(_) | CommandError::Db(_)) => Problem::internal(&e),
            },
        };
        let mut response = problem.into_response();
        if let Some(location) = location {
            response
                .headers_mut()
                .insert(axum::http::header::LOCATION, location);
        }
        response
    }
}

/// How a refused tenant command answers, in the admin API and the tenant's own.
pub(crate) fn tenant_problem(e: TenantCommandError) -> Problem {
    let detail = e.to_string();
    match e {
        TenantCommandError::NoTenant(_) => Problem::not_found("tenant"),
        TenantCommandError::Refused(refused) => {
            let status = match refused {
                TenantError::NoKey(_) => return Problem::not_found("API key"),
                TenantError::Deactivated | TenantError::KeyNotRotatable(_) => StatusCode::CONFLICT,
                TenantError::InvalidName
                | TenantError::InvalidReason
                | TenantError::InvalidOverlap
                | TenantError::InvalidSetting
                | TenantError::InvalidCascadePolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Problem::new(status, refused.code(), detail)
        }
        TenantCommandError::Contended => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "contended", detail)
        }
        e @ (TenantCommandError::Corrupt(_) | TenantCommandError::Database(_)) => {
            Problem::internal(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn problem(response: Response) -> (StatusCode, Option<String>, serde_json::Value) {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn overload_is_a_503_with_the_seconds_to_wait() {
        let (status, retry_after, body) = problem(
            ApiError::Overloaded(Overloaded {
                backlog_age: Duration::from_secs(12),
                retry_after: Duration::from_secs(7),
            })
            .into_response(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("7"));
        assert_eq!(body["code"], "overloaded");
    }

    #[tokio::test]
    async fn a_callback_hermes_has_no_capacity_for_is_a_503_the_provider_retries() {
        let (status, retry_after, body) =
            problem(ApiError::Callback(CallbackError::Busy).into_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["code"], "busy");
    }
}
