//! HTTP plumbing shared by the command and query APIs: RFC 9457 problems and tenant auth.

pub mod auth;
pub mod problem;

pub use auth::{AUTH_CACHE_TTL, Authenticator, Tenant};
pub use problem::Problem;
