//! HTTP plumbing shared by the command and query APIs: RFC 9457 problems, tenant auth, and the
//! lingering read that lets clients see early refusals, and the server loop with its timeouts.

pub mod auth;
pub mod drain;
pub mod problem;
pub mod refusals;
pub mod serve;
pub mod tls;

pub use auth::{AUTH_CACHE_TTL, Authenticator, Tenant};
pub use drain::drain_unread_body;
pub use problem::Problem;
pub use serve::{ServerLimits, serve};
