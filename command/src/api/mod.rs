//! The command API: `POST /v1/messages`, `POST /v1/messages/{id}/cancel`, `.../ack` and the provider-facing
//! receipt endpoints under `/v1/webhooks/{provider}`.

pub mod ack;
pub mod body;
pub mod contract;
pub mod error;
pub mod inbound;
pub mod keys;
pub mod messages;
pub mod policies;
pub mod preview;
pub mod rate_limits;
pub mod receipts;
pub mod send_request;
pub mod suppressions;
pub mod webhooks;

use crate::accept_batcher::AcceptBatcher;
use crate::backlog::Backlog;
use crate::handler::CommandHandler;
use crate::suppression_lookups::SuppressionLookups;
use crate::webhooks::WebhookConfig;
use axum::extract::FromRef;
use hermes_adapters::ProviderRegistry;
use hermes_infra::http::Authenticator;
use hermes_infra::rate_limit::RateLimiter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the command API's handlers need: shared, since axum clones a handler's state for each
/// request it extracts it for (a clone of every service here cost an allocation each).
#[derive(Clone)]
pub struct CommandState(std::sync::Arc<CommandServices>);

impl CommandState {
    pub fn new(services: CommandServices) -> Self {
        Self(std::sync::Arc::new(services))
    }
}

impl std::ops::Deref for CommandState {
    type Target = CommandServices;
    fn deref(&self) -> &CommandServices {
        &self.0
    }
}

/// The services behind [`CommandState`].
pub struct CommandServices {
    pub handler: CommandHandler,
    /// Group commit for new messages.
    pub accepts: AcceptBatcher,
    pub providers: ProviderRegistry,
    /// The base URL providers reach this Hermes at (receipts are verified against it).
    pub public_url: String,
    /// How far dispatch is behind; new messages are refused past its maximum.
    pub backlog: Backlog,
    /// The tenants' rate limits (shared through Redis when configured).
    pub rate_limiter: RateLimiter,
    /// Suppression lookups, batched across concurrent requests.
    pub suppressions: SuppressionLookups,
    /// How webhook endpoints' secrets are sealed and which URLs they may have.
    pub webhooks: WebhookConfig,
}

/// The 403 every tenant operation may answer.
pub(crate) const TENANT_REFUSED: &str =
    "The key's tenant is suspended (`tenant_suspended`) or deactivated (`tenant_deactivated`)";

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    CommandState: FromRef<S>,
    Authenticator: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(messages::send_message))
        .routes(routes!(messages::cancel_message))
        .routes(routes!(preview::preview_message))
        .routes(routes!(suppressions::list_suppressions))
        .routes(routes!(suppressions::suppress, suppressions::unsuppress))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(policies::list_policies))
        .routes(routes!(policies::put_policy, policies::delete_policy))
        .routes(routes!(webhooks::list_endpoints, webhooks::create_endpoint))
        .routes(routes!(
            webhooks::get_endpoint,
            webhooks::update_endpoint,
            webhooks::delete_endpoint
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::redeliver_failed))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::message_deliveries))
        .routes(routes!(ack::acknowledge_push))
        .routes(routes!(receipts::receive_attempt_callback))
        .routes(routes!(
            receipts::receive_callback,
            receipts::verify_callback
        ))
        .routes(routes!(
            inbound::receive_inbound,
            inbound::receive_inbound_get
        ))
}
