//! HTTP plumbing shared by the command and query APIs: RFC 9457 problems, tenant auth, and the
//! lingering read that lets clients see early refusals.

pub mod auth;
pub mod drain;
pub mod problem;

pub use auth::{Authenticator, Tenant};
pub use drain::drain_unread_body;
pub use problem::Problem;
