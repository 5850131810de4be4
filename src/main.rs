//! The `hermes` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hermes::app::{self, Roles};
use hermes::config::{DatabaseArgs, KafkaArgs, ServerArgs};
use hermes_domain::MessageId;
use hermes_infra::{db, tenants};
use std::net::SocketAddr;
use std::time::Duration;

/// mimalloc instead of glibc's malloc: allocation and freeing were about a fifth of the server's
/// CPU profile (serde_json values, HTTP bodies, events built and dropped per message), and glibc's
/// arenas also consolidate and give memory back on the hot path. Measured in README "Benchmarks".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hermes",
    version,
    about = "Multi-channel message delivery with durable cascades"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process with the built-in mock provider and a demo tenant: try it here.
    Dev {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Production: the roles given, against the configured database and providers.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
        /// Comma-separated: api, saga, projector, timers, relay (relay needs KAFKA_BROKERS),
        /// webhooks.
        /// Default: all of them (relay only with Kafka).
        #[arg(long, env = "HERMES_ROLES")]
        roles: Option<String>,
    },
    /// The Kafka transport.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Tenant administration.
    Tenant {
        #[command(subcommand)]
        command: hermes::tenant_cli::TenantCommand,
    },
    /// Provider accounts: which plugin serves each, what it may reach, its credentials (sealed).
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Check the event log against its hashes and checkpoints: reports every edited, removed or
    /// reordered event, and exits 1 when it finds one.
    Verify {
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a message's history from the event log.
    Audit {
        message_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Events the cascade saga parked because it could not handle them (see `parked_events`).
    Parked {
        #[command(subcommand)]
        command: ParkedCommand,
    },
    /// Rebuild a projection from the start of the log (projections: message-views).
    Replay {
        projection: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Run the built-in mock provider on its own (for `serve` and for tests).
    MockProvider {
        #[arg(long, env = "HERMES_MOCK_LISTEN", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        #[arg(long, env = "HERMES_MOCK_PROVIDER_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long, env = "HERMES_MOCK_RECEIPT_DELAY_MS", default_value_t = 200)]
        receipt_delay_ms: u64,
    },
    /// Load generator against a running Hermes.
    Bench(hermes::bench::BenchArgs),
    /// What the attempts cost: exports for reconciling the providers' invoices.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Every attempt dispatched in [--from, --to) as CSV, with its provider message id, segments,
    /// price and late flag: one file per tenant in --out, or all tenants on standard output.
    /// Each tenant's totals go to standard error.
    Export {
        /// Start, included: an RFC 3339 time or a date (`2026-12-01`, midnight UTC).
        #[arg(long)]
        from: String,
        /// End, excluded: an RFC 3339 time or a date.
        #[arg(long)]
        to: String,
        /// Only this tenant's attempts.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// A directory: one `<tenant id>.csv` per tenant.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum KafkaCommand {
    /// Create the topic the log is streamed to, with the configured partitions, replication and
    /// retention. A topic that exists is left as it is.
    Init {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

#[derive(Subcommand)]
enum ParkedCommand {
    /// Every parked event, one JSON object a line: subscriber, event, error, attempts.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Ask the saga to handle these parked events again (all of them when none is named); one that
    /// goes through is unparked, one that fails again stays with its new error.
    Retry {
        event_ids: Vec<uuid::Uuid>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Create or replace an account. Running Hermes processes swap it in within seconds.
    Set {
        /// The account's name (routing, `/v1/webhooks/{name}`), e.g. `twilio-us`.
        name: String,
        /// The plugin that serves it: mock, twilio, vonage, messente, ses, fcm, whatsapp.
        #[arg(long)]
        plugin: String,
        /// Lower is tried first among the accounts of a channel.
        #[arg(long, default_value_t = 100)]
        priority: i32,
        /// A host the plugin may reach (repeat); `*.example.com` for subdomains.
        #[arg(long = "allow-host", required = true)]
        allowed_hosts: Vec<String>,
        /// Let the plugin reach private and loopback addresses (sandboxes, tests).
        #[arg(long)]
        allow_private: bool,
        /// A configuration value, `key=value` (repeat): base_url, credentials... Sealed at rest.
        /// Keep secrets off the command line: `key=@PATH` reads the value from a file, `key=-`
        /// from standard input (one key at most); `key=@@x` is the literal `@x`.
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// What the account charges per message unit (SMS segment) for a destination country,
        /// `COUNTRY=PRICE` (repeat), `*=PRICE` for every other country: the `cost` routing
        /// strategy picks the cheapest healthy account.
        #[arg(long = "price", value_parser = parse_price)]
        prices: Vec<(String, f64)>,
        /// The provider's send rate for this account, in messages per second (1 to 100,000):
        /// dispatches wait their turn, across every Hermes process when `REDIS_URL` is set.
        #[arg(long = "mps")]
        max_per_second: Option<u32>,
        /// Make it a tenant's own account (its credentials, for its messages only; tried before
        /// the platform's accounts): the tenant's id. Without it, a platform account.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        #[command(flatten)]
        secret_key: SecretKeyArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List the accounts (configuration keys only, never values).
    List {
        #[command(flatten)]
        secret_key: SecretKeyArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove an account.
    Remove {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a new random secret key for HERMES_SECRET_KEY.
    GenerateKey,
    /// A key rotation's second step: with the new key in HERMES_SECRET_KEY and the old one in
    /// HERMES_SECRET_KEY_PREVIOUS, seal every provider account and webhook secret again and sign
    /// every uploaded plugin again under the new key, while Hermes runs (every process holding
    /// both keys). Afterwards the old key opens nothing and can be dropped.
    Rekey {
        #[command(flatten)]
        secret_key: SecretKeyArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The sealing key: `HERMES_SECRET_KEY` or a file, never a flag's value (a command line is visible
/// to every user of the machine); during a rotation, the previous key too.
#[derive(clap::Args)]
struct SecretKeyArgs {
    /// A file holding the secret key, instead of the `HERMES_SECRET_KEY` environment variable.
    #[arg(long, env = "HERMES_SECRET_KEY_FILE")]
    secret_key_file: Option<std::path::PathBuf>,
    #[arg(skip = hermes::config::secret_key_from_env())]
    from_env: Option<String>,
    /// A file holding the key being rotated away from, instead of `HERMES_SECRET_KEY_PREVIOUS`.
    #[arg(long, env = "HERMES_SECRET_KEY_PREVIOUS_FILE")]
    previous_secret_key_file: Option<std::path::PathBuf>,
    #[arg(skip = hermes::config::previous_secret_key_from_env())]
    previous_from_env: Option<String>,
}

impl SecretKeyArgs {
    fn sealing_key(&self) -> anyhow::Result<hermes_infra::provider_accounts::SealingKey> {
        hermes::config::sealing_key(
            (self.from_env.as_deref(), self.secret_key_file.as_deref()),
            (
                self.previous_from_env.as_deref(),
                self.previous_secret_key_file.as_deref(),
            ),
        )?
        .context("set HERMES_SECRET_KEY, or give --secret-key-file (HERMES_SECRET_KEY_FILE)")
    }
}

fn parse_price(raw: &str) -> Result<(String, f64), String> {
    let (country, price) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected COUNTRY=PRICE, got {raw:?}"))?;
    let price: f64 = price
        .trim()
        .parse()
        .map_err(|_| format!("{price:?} is not a number"))?;
    let country = country.trim().to_owned();
    if !hermes_infra::provider_accounts::valid_price(&country, price) {
        return Err(format!(
            "expected an ISO 3166-1 alpha-2 country (US, GB) or * and a price of zero or more, got {raw:?}"
        ));
    }
    Ok((country, price))
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {raw:?}"))
}

async fn provider_command(command: ProviderCommand) -> anyhow::Result<()> {
    use hermes_infra::provider_accounts::{self, ProviderAccount, SealingKey};
    match command {
        ProviderCommand::Set {
            name,
            plugin,
            priority,
            allowed_hosts,
            allow_private,
            config,
            prices,
            max_per_second,
            tenant,
            secret_key,
            database,
        } => {
            let key = secret_key.sealing_key()?;
            let mut stdin_used = false;
            let config = config
                .into_iter()
                .map(|(k, v)| {
                    let value = hermes::config::config_value(&v, &mut stdin_used)
                        .with_context(|| format!("--config {k}"))?;
                    Ok((k, hermes_infra::Secret::new(value)))
                })
                .collect::<anyhow::Result<_>>()?;
            let pool = db::connect(&database.url(), 2).await?;
            db::migrate(&pool).await?;
            let account = ProviderAccount {
                name,
                plugin,
                priority,
                allowed_hosts,
                allow_private,
                config,
                prices: prices.into_iter().collect(),
                max_per_second,
                tenant_id: tenant,
            };
            provider_accounts::put(&pool, &key, &account).await?;
            eprintln!("account {} saved", account.name);
        }
        ProviderCommand::List {
            secret_key,
            database,
        } => {
            let key = secret_key.sealing_key()?;
            let pool = db::connect(&database.url(), 2).await?;
            db::migrate(&pool).await?;
            for a in provider_accounts::list(&pool, &key).await? {
                let keys: Vec<&str> = a.config.keys().map(String::as_str).collect();
                let prices: Vec<String> =
                    a.prices.iter().map(|(c, p)| format!("{c}={p}")).collect();
                println!(
                    "{}\tplugin={}\tpriority={}\thosts={}\tprivate={}\tconfig={}\tprices={}\tmps={}\ttenant={}",
                    a.name,
                    a.plugin,
                    a.priority,
                    a.allowed_hosts.join(","),
                    a.allow_private,
                    keys.join(","),
                    prices.join(","),
                    a.max_per_second
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    a.tenant_id
                        .map_or_else(|| "-".to_owned(), |t| t.to_string())
                );
            }
        }
        ProviderCommand::Remove { name, database } => {
            let pool = db::connect(&database.url(), 2).await?;
            db::migrate(&pool).await?;
            if !provider_accounts::delete(&pool, &name).await? {
                anyhow::bail!("no provider account named {name}");
            }
            eprintln!("account {name} removed");
        }
        ProviderCommand::GenerateKey => println!("{}", SealingKey::generate_hex()),
        ProviderCommand::Rekey {
            secret_key,
            database,
        } => {
            let key = secret_key.sealing_key()?;
            let pool = db::connect(&database.url(), 2).await?;
            db::migrate(&pool).await?;
            let accounts = provider_accounts::rekey(&pool, &key).await?;
            let secrets = hermes_command::webhooks::rekey(&pool, &key).await?;
            let plugins = hermes_infra::plugin_uploads::rekey(&pool, &key).await?;
            println!(
                "sealed again under the new key: {accounts} provider accounts, {secrets} webhook secrets; signed again: {plugins} plugin uploads"
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Kept to the end of `main`: dropping it sends the spans still buffered.
    let _traces = hermes::traces::init()?;
    match Cli::parse().command {
        Command::Dev { server } => dev(server).await,
        Command::Serve { server, roles } => {
            let roles = match roles {
                Some(list) => Roles::parse(&list)?,
                None => Roles::all_for(server.kafka.config().is_some()),
            };
            let running = app::start(&server, roles).await?;
            tracing::info!(addr = %running.addr, ?roles, "hermes is serving");
            run_until_signal(running).await
        }
        Command::Kafka {
            command: KafkaCommand::Init { kafka },
        } => {
            let config = kafka
                .config()
                .context("set KAFKA_BROKERS (or --kafka-brokers) to the brokers to use")?;
            match hermes_infra::kafka::admin::init(&config).await? {
                hermes_infra::kafka::admin::Init::Created => eprintln!(
                    "topic {} created: {} partitions, replication {}",
                    config.topic, config.partitions, config.replication
                ),
                hermes_infra::kafka::admin::Init::Existed => {
                    eprintln!("topic {} exists already (left as it is)", config.topic)
                }
            }
            Ok(())
        }
        Command::Migrate { database } => {
            db::ensure_database(&database.url()).await?;
            let pool = db::connect(&database.url(), 2).await?;
            db::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Tenant { command } => hermes::tenant_cli::run(command).await,
        Command::Provider { command } => provider_command(command).await,
        Command::Verify { json, database } => {
            let pool = db::connect(&database.url(), 2).await?;
            let report = hermes_infra::log_integrity::verify(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", hermes::audit::describe_verification(&report));
            }
            if !report.intact() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit {
            message_id,
            database,
        } => {
            let id: MessageId = message_id.parse().context("the message id is not a UUID")?;
            let pool = db::connect(&database.url(), 2).await?;
            match hermes::audit::timeline(&pool, id).await? {
                Some(text) => {
                    print!("{text}");
                    Ok(())
                }
                None => anyhow::bail!("no message {id}"),
            }
        }
        Command::Billing {
            command:
                BillingCommand::Export {
                    from,
                    to,
                    tenant,
                    out,
                    database,
                },
        } => {
            use hermes_query::billing::{self, Output, Window};
            let window = Window {
                from: billing::parse_instant(&from).context("--from")?,
                to: billing::parse_instant(&to).context("--to")?,
                tenant: tenant.map(hermes_domain::TenantId),
            };
            anyhow::ensure!(window.from < window.to, "--from must come before --to");
            let pool = db::connect(&database.url(), 2).await?;
            let mut stdout = std::io::stdout().lock();
            let output = match &out {
                Some(dir) => Output::PerTenant(dir),
                None => Output::One(&mut stdout),
            };
            let totals = billing::export_csv(&pool, &window, output).await?;
            for (tenant, t) in &totals {
                eprintln!("{}", t.summary(*tenant));
            }
            if totals.is_empty() {
                eprintln!("no attempts dispatched in the window");
            }
            Ok(())
        }
        Command::Parked {
            command: ParkedCommand::List { database },
        } => {
            let pool = db::connect(&database.url(), 2).await?;
            for parked in hermes_infra::parked::list(&pool).await? {
                println!("{}", serde_json::to_string(&parked)?);
            }
            Ok(())
        }
        Command::Parked {
            command:
                ParkedCommand::Retry {
                    event_ids,
                    database,
                },
        } => {
            let pool = db::connect(&database.url(), 2).await?;
            let marked =
                hermes_infra::parked::request_retry(&pool, hermes_command::saga::NAME, &event_ids)
                    .await?;
            eprintln!("{marked} parked event(s) will be tried again by the cascade saga");
            Ok(())
        }
        Command::Replay {
            projection,
            database,
        } => {
            let pool = db::connect(&database.url(), 2).await?;
            match projection.as_str() {
                hermes_projections::message_views::NAME => {
                    let n = hermes_projections::message_views::replay(&pool).await?;
                    eprintln!("{projection} rebuilt from {n} events");
                    Ok(())
                }
                other => anyhow::bail!("unknown projection '{other}' (projections: message-views)"),
            }
        }
        Command::MockProvider {
            listen,
            secret,
            receipt_delay_ms,
        } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let handle = hermes_adapters::mock::start(
                listener,
                hermes_adapters::mock::MockProviderConfig {
                    receipt_delay: Duration::from_millis(receipt_delay_ms),
                    secret,
                },
            )
            .await;
            eprintln!("mock provider listening on {}", handle.base_url());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Bench(args) => hermes::bench::run(args).await,
    }
}

async fn run_until_signal(running: app::RunningApp) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = running.wait() => anyhow::bail!("the HTTP server stopped"),
    }
    Ok(())
}

const DEMO_TENANT: &str = "demo";

async fn dev(mut server: ServerArgs) -> anyhow::Result<()> {
    // `dev` is the trial setup: the mock provider serves whenever no account is configured, and
    // everything runs on the Postgres tail, Kafka or not.
    server.mock_provider = true;
    // A trial runs on one machine: the tenant's webhook receiver is on localhost too.
    server.webhooks.allow_private = true;
    if server.kafka.config().is_some() {
        tracing::info!(
            "hermes dev runs without Kafka: KAFKA_BROKERS is ignored (use hermes serve)"
        );
        server.kafka = KafkaArgs::off();
    }
    db::ensure_database(&server.database.url()).await?;
    let running = app::start(&server, Roles::all()).await?;
    let tenant = match tenants::find_by_name(&running.pool, DEMO_TENANT).await? {
        Some(id) => id,
        None => {
            tenants::create_tenant(&running.pool, DEMO_TENANT)
                .await?
                .tenant_id
        }
    };
    let key = tenants::create_key(&running.pool, tenant, Some("hermes dev"))
        .await?
        .api_key;
    let url = &running.base_url;
    println!(
        r#"
Hermes (dev) is running on {url}
  demo tenant  {tenant}
  API key      {key}
  API docs     {url}/docs
  mock provider {mock}  (phone ending 0001: rejected, 0009: undelivered, 0008: no receipt)

Send a message that falls back from SMS (undelivered) to email:

  curl -s {url}/v1/messages -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
    -d '{{"to": {{"phone": "+15005550009", "email": "ada@example.com"}}, "content": {{"text": "Your code is 1234", "email": {{"subject": "Your code"}}}}, "cascade": [{{"channel": "sms", "timeout_seconds": 30}}, {{"channel": "email", "timeout_seconds": 60}}]}}'

Then follow it (use the id it printed):

  curl -s {url}/v1/messages/ID -H 'Authorization: Bearer {key}'
  hermes audit ID
"#,
        mock = running
            .mock
            .as_ref()
            .map(|m| m.base_url())
            .unwrap_or_default(),
    );
    run_until_signal(running).await
}
