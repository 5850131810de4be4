//! HTTP plumbing shared by the command and query APIs: RFC 9457 problems, tenant auth, and the
//! server loop with its timeouts.

pub mod auth;
pub mod problem;
pub mod serve;

pub use auth::{AUTH_CACHE_TTL, Authenticator, Tenant};
pub use problem::Problem;
pub use serve::{ServerLimits, serve};
