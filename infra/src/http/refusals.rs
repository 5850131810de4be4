//! `hermes_tenant_refusals_total{tenant,code}`: each problem answered to a known tenant, by its
//! code, for the tenants dashboard (who is being refused, and why). A request with no valid key
//! has no tenant and is not counted here (`hermes_http_requests_total` counts it).
//!
//! The middleware cannot see who a request authenticated as, since the `Tenant` extractor runs
//! inside the handler: it hands the request a [`TenantSlot`] that the extractor fills, and reads
//! the problem's code from the response's [`ProblemCode`].

use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Which tenant the request's key belongs to, once the `Tenant` extractor has looked.
#[derive(Clone, Default)]
pub struct TenantSlot(Arc<OnceLock<Uuid>>);

impl TenantSlot {
    pub fn fill(&self, tenant: Uuid) {
        let _ = self.0.set(tenant);
    }
}

/// On a problem+json response: its code.
#[derive(Clone, Debug)]
pub struct ProblemCode(pub String);

/// The middleware (a route layer of the API).
pub async fn count_refusals(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let slot = TenantSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if let (Some(tenant), Some(ProblemCode(code))) =
        (slot.0.get(), response.extensions().get::<ProblemCode>())
    {
        metrics::counter!("hermes_tenant_refusals_total",
            "tenant" => tenant.to_string(), "code" => code.clone())
        .increment(1);
    }
    response
}
