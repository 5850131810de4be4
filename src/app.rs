//! Starts Hermes: database, providers, background roles and the HTTP API, in one process.

use crate::config::ServerArgs;
use crate::http::{AppState, router};
use anyhow::Context;
use hermes_adapters::ProviderRegistry;
use hermes_adapters::mock::{self, MockProviderConfig, MockProviderHandle};
use hermes_adapters::plugin::{AccountConfig, PluginEngine, PluginLimits, Secret};
use hermes_command::CommandHandler;
use hermes_command::accept_batcher::AcceptBatcher;
use hermes_command::admin::{self, AdminState};
use hermes_command::api::{CommandServices, CommandState};
use hermes_command::backlog::{self, Backlog};
use hermes_command::provider_source::ProviderSource;
use hermes_command::saga::{self, CascadeSaga, KafkaSaga};
use hermes_command::suppression_lookups::SuppressionLookups;
use hermes_infra::http::tls::ServingCert;
use hermes_infra::http::{Authenticator, ServerLimits};
use hermes_infra::kafka::KafkaStream;
use hermes_infra::kafka::admin::BrokerProbe;
use hermes_infra::kafka::relay::{self, Relay};
use hermes_infra::provider_accounts;
use hermes_infra::rate_limit::RateLimiter;
use hermes_infra::{db, subscription};
use hermes_projections::message_views::{self, MessageViews};
use hermes_projections::suppressions::Suppressions;
use hermes_projections::webhook_outbox::WebhookOutbox;
use hermes_query::QueryState;
use rand::RngCore;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Writer tasks of the accept path's group commit, and the most messages one transaction takes.
const ACCEPT_WRITERS: usize = 4;
const ACCEPT_BATCH: usize = 256;

/// Which parts of Hermes this process runs (`hermes serve --roles ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub saga: bool,
    pub projector: bool,
    pub timers: bool,
    /// Streams the log to Kafka (needs `KAFKA_BROKERS`).
    pub relay: bool,
    /// Queues tenants' webhook notices from the log and delivers them.
    pub webhooks: bool,
}

impl Roles {
    pub const NAMES: [&str; 6] = ["api", "saga", "projector", "timers", "relay", "webhooks"];

    /// Everything that runs without Kafka: what `hermes dev` runs.
    pub fn all() -> Self {
        Self {
            api: true,
            saga: true,
            projector: true,
            timers: true,
            relay: false,
            webhooks: true,
        }
    }

    /// Everything, the relay included when Kafka is configured: `hermes serve` without `--roles`.
    pub fn all_for(kafka: bool) -> Self {
        Self {
            relay: kafka,
            ..Self::all()
        }
    }

    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut roles = Roles {
            api: false,
            saga: false,
            projector: false,
            timers: false,
            relay: false,
            webhooks: false,
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "api" => roles.api = true,
                "saga" => roles.saga = true,
                "projector" => roles.projector = true,
                "timers" => roles.timers = true,
                "relay" => roles.relay = true,
                "webhooks" => roles.webhooks = true,
                other => {
                    anyhow::bail!("unknown role '{other}' (roles: {})", Self::NAMES.join(", "))
                }
            }
        }
        Ok(roles)
    }
}

/// A running Hermes. Dropping it stops its background tasks.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub pool: PgPool,
    /// The embedded mock provider, when the mock is on and no external one was configured.
    pub mock: Option<MockProviderHandle>,
    /// The provider accounts being served (reloaded from the database every 2 s).
    pub providers: ProviderRegistry,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Waits until the HTTP server stops (it does not, unless it fails).
    pub async fn wait(mut self) {
        if let Some(server) = self.tasks.pop() {
            let _ = server.await;
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Checks the configuration, connects, migrates, and starts the given roles. Refuses to start
/// with an admin token under 32 characters, and with no provider account unless the mock
/// provider was asked for (`--mock-provider`).
pub async fn start(args: &ServerArgs, roles: Roles) -> anyhow::Result<RunningApp> {
    let admin_token = args.admin_token()?;
    let kafka = args.kafka.config();
    if roles.relay && kafka.is_none() {
        anyhow::bail!("the relay role streams the log to Kafka: set KAFKA_BROKERS");
    }
    crate::telemetry::prometheus();
    let pool = db::connect(&args.database.url(), args.database.db_pool_size).await?;
    db::migrate(&pool).await?;
    if !args.mock_provider && provider_accounts::version(&pool).await?.0 == 0 {
        anyhow::bail!(
            "no provider account is configured: add one with `hermes provider set`, or start with \
             --mock-provider (HERMES_MOCK_PROVIDER=true) to deliver through the built-in mock \
             provider (fake deliveries, for trials and tests)"
        );
    }
    let tls = args.tls_files()?.map(ServingCert::load).transpose()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let base_url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let public_url = args.public_url.clone().unwrap_or_else(|| base_url.clone());

    let (fallback, mock) = if args.mock_provider {
        let (account, handle) = mock_account(args).await?;
        (Some(account), handle)
    } else {
        (None, None)
    };
    let key = args.sealing_key()?;
    let mut source = ProviderSource::new(
        pool.clone(),
        key.clone(),
        args.plugins_dir.clone(),
        fallback,
    )?;
    let providers =
        ProviderRegistry::with_circuit_open_for(Duration::from_millis(args.circuit_open_ms));
    let registry = providers.clone();
    source
        .sync(&providers)
        .await
        .context("loading the provider accounts")?;
    tracing::info!(accounts = ?providers.names(), "providers ready");
    let handler = CommandHandler::new(pool.clone());
    // Tenants' rate limits at accept, and provider accounts' send rates at dispatch.
    let rate_limiter = RateLimiter::connect(args.redis_url().as_ref()).await?;

    let webhooks = args.webhook_config(key.clone());
    let mut tasks = vec![tokio::spawn(source.run(providers.clone()))];
    if roles.projector {
        // On either transport: it follows the Postgres log, which is always there.
        tasks.push(tokio::spawn(subscription::run(pool.clone(), Suppressions)));
    }
    if roles.webhooks {
        // The outbox follows the Postgres log on either transport, like the suppressions.
        tasks.push(tokio::spawn(subscription::run(pool.clone(), WebhookOutbox)));
        tasks.push(tokio::spawn(hermes_command::webhooks::sender::run(
            pool.clone(),
            webhooks.clone(),
        )));
    }
    match &kafka {
        // The Postgres tail: one active consumer per role, the others stand by.
        None => {
            if roles.projector {
                tasks.push(tokio::spawn(subscription::run(pool.clone(), MessageViews)));
            }
            if roles.saga {
                let saga = CascadeSaga::new(
                    handler.clone(),
                    providers.clone(),
                    public_url.clone(),
                    rate_limiter.clone(),
                );
                tasks.push(tokio::spawn(subscription::run(pool.clone(), saga)));
            }
        }
        // Kafka: every worker process takes a share of the partitions.
        Some(config) => {
            if roles.relay {
                let relay = Relay::new(config)?;
                tasks.push(tokio::spawn(subscription::run(pool.clone(), relay)));
            }
            if roles.projector {
                let stream = KafkaStream::start(config, message_views::NAME)?;
                tasks.push(tokio::spawn(hermes_projections::kafka::run_message_views(
                    pool.clone(),
                    stream,
                    config.topic.clone(),
                )));
            }
            if roles.saga {
                let stream = KafkaStream::start(config, saga::NAME)?;
                let saga = KafkaSaga::new(
                    handler.clone(),
                    providers.clone(),
                    &public_url,
                    rate_limiter.clone(),
                    pool.clone(),
                    stream,
                );
                tasks.push(tokio::spawn(saga.run()));
            }
        }
    }
    if roles.timers {
        tasks.push(tokio::spawn(hermes_command::timer_poller::run(
            handler.clone(),
            hermes_command::reconcile::Reconciler::new(handler.clone(), providers.clone()),
        )));
        if args.log_checkpoint_every_ms > 0 {
            tasks.push(tokio::spawn(hermes_infra::log_integrity::run_checkpoints(
                pool.clone(),
                Duration::from_millis(args.log_checkpoint_every_ms),
            )));
        }
    }
    let backlog = if roles.api {
        let max = args.max_backlog_age_ms.map(Duration::from_millis);
        let source = match &kafka {
            None => backlog::Source::PostgresTail {
                mark: saga::STARTED_NAME,
            },
            // A silent worker's partitions move on once its session times out.
            Some(config) => backlog::Source::Kafka {
                relay_mark: relay::NAME,
                silent_grace: Duration::from_millis(config.session_timeout_ms.into())
                    + Duration::from_secs(5),
            },
        };
        let (backlog, task) = Backlog::start(pool.clone(), source, max);
        tasks.push(task);
        backlog
    } else {
        Backlog::off()
    };
    let kafka_probe = kafka.as_ref().map(BrokerProbe::new).transpose()?;
    if let Some(probe) = kafka_probe.clone() {
        // Said once at start, not only by /readyz: with no topic, nothing is streamed or consumed.
        tasks.push(tokio::spawn(async move {
            if let Err(why) = probe.check(Duration::from_secs(10)).await {
                tracing::warn!(error = %why, "Kafka is not ready");
            }
        }));
    }
    tasks.push(tokio::spawn(probe_dependencies(
        pool.clone(),
        kafka_probe.clone(),
        rate_limiter.clone(),
    )));
    // The API is started whatever the roles, for health checks; its routes need the api role.
    let state = AppState {
        command: CommandState::new(CommandServices {
            accepts: AcceptBatcher::start(handler.clone(), ACCEPT_WRITERS, ACCEPT_BATCH),
            handler,
            providers,
            public_url,
            backlog,
            rate_limiter,
            suppressions: SuppressionLookups::start(&pool, 2),
            webhooks,
        }),
        query: QueryState { pool: pool.clone() },
        auth: Authenticator::new(pool.clone()),
        pool: pool.clone(),
        kafka: kafka_probe,
    };
    let app = if roles.api {
        router(state).merge(admin::router(AdminState {
            pool: pool.clone(),
            token: admin_token,
            engine: PluginEngine::new(PluginLimits::default())?,
            key,
        }))
    } else {
        crate::http::health_only(state)
    };
    // Outermost but for the request timeout, so that every refusal, including the router's
    // own, is answered cleanly.
    let app = app.layer(axum::middleware::from_fn(
        hermes_infra::http::drain_unread_body,
    ));
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
    };
    let acceptor = match tls {
        Some(cert) => {
            let acceptor = cert.acceptor()?;
            tasks.push(tokio::spawn(
                cert.watch(Duration::from_millis(args.tls_reload_ms.max(1))),
            ));
            Some(acceptor)
        }
        None => None,
    };
    tasks.push(tokio::spawn(hermes_infra::http::serve(
        listener, app, limits, acceptor,
    )));
    Ok(RunningApp {
        addr,
        base_url,
        pool,
        mock,
        providers: registry,
        tasks,
    })
}

/// `hermes_dependency_up{dependency}`: 1 while Postgres (and Kafka, and Redis, when configured)
/// answer within 2 s, else 0; probed every 5 s, so an alert sees an outage from any process.
async fn probe_dependencies(pool: PgPool, kafka: Option<BrokerProbe>, rate_limiter: RateLimiter) {
    const WITHIN: Duration = Duration::from_secs(2);
    let up = |dependency: &'static str, ok: bool| {
        metrics::gauge!("hermes_dependency_up", "dependency" => dependency).set(if ok {
            1.0
        } else {
            0.0
        });
    };
    loop {
        let postgres = tokio::time::timeout(WITHIN, sqlx::query("SELECT 1").execute(&pool)).await;
        up("postgres", matches!(postgres, Ok(Ok(_))));
        if let Some(probe) = &kafka {
            up("kafka", probe.check(WITHIN).await.is_ok());
        }
        if let Some(ok) = rate_limiter.redis_answers(WITHIN).await {
            up("redis", ok);
        }
        report_backlogs(&pool).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// `hermes_parked_events{subscriber}` (0 for the two that park, so an alert resolves once the
/// events are retried) and `hermes_timers_overdue_seconds`.
async fn report_backlogs(pool: &PgPool) {
    if let Ok(counts) = hermes_infra::parked::counts(pool).await {
        for subscriber in [saga::NAME, message_views::NAME] {
            let n = counts
                .iter()
                .find(|(s, _)| s == subscriber)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("hermes_parked_events", "subscriber" => subscriber).set(n as f64);
        }
    }
    if let Ok(seconds) = hermes_infra::timers::overdue_seconds(pool).await {
        metrics::gauge!("hermes_timers_overdue_seconds").set(seconds);
    }
}

/// The mock provider's account: an external mock (`--mock-provider-url`) or an embedded one,
/// started here.
async fn mock_account(
    args: &ServerArgs,
) -> anyhow::Result<(AccountConfig, Option<MockProviderHandle>)> {
    let secret = args
        .mock_provider_secret
        .clone()
        .unwrap_or_else(random_secret);
    let (mock_url, mock) = match &args.mock_provider_url {
        Some(url) => (url.clone(), None),
        None => {
            let handle = mock::start(
                tokio::net::TcpListener::bind("127.0.0.1:0").await?,
                MockProviderConfig {
                    receipt_delay: Duration::from_millis(args.mock_receipt_delay_ms),
                    secret: secret.clone(),
                },
            )
            .await;
            (handle.base_url(), Some(handle))
        }
    };
    let mock_host = reqwest::Url::parse(&mock_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .context("the mock provider URL has no host")?;
    let account = AccountConfig {
        name: "mock".to_owned(),
        allowed_hosts: vec![mock_host],
        allow_private: true,
        config: [
            ("base_url".to_owned(), Secret::new(mock_url)),
            ("secret".to_owned(), Secret::new(secret)),
        ]
        .into(),
    };
    Ok((account, mock))
}
