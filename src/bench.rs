//! `hermes bench`: the load generator (`hermes_loadgen`) against a running Hermes, or against one
//! started in this process (`--spawn`), optionally once with the tenant's layers off and once on.

use crate::app::{self, Roles, RunningApp};
use crate::config::{DatabaseArgs, ServerArgs};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hermes_domain::Channel;
use hermes_infra::{suppressions, tenants};
use hermes_loadgen::{LoadArgs, Report, Server, progress};
use serde_json::json;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the Hermes to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Tenant API key (`hermes tenant create --name bench --json`); not used with --spawn.
    #[arg(long, env = "HERMES_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Start Hermes in this process (all roles, embedded mock provider, 127.0.0.1:0) against
    /// --database-url, with a new tenant; --url and --api-key are then not used. The server and
    /// the load generator then share this process and its CPUs.
    #[arg(long, requires = "database_url")]
    pub spawn: bool,
    /// With --spawn: the Postgres database (created and migrated if missing).
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --spawn: delay before the embedded mock provider sends its delivery receipt.
    #[arg(long, default_value_t = 10)]
    pub receipt_delay_ms: u64,
    /// With --spawn: most database connections Hermes opens.
    #[arg(long, default_value_t = 32)]
    pub db_pool_size: u32,
    /// With --spawn: the bench tenant's own validation layers. `off`: no settings (the layers
    /// that can be switched off are). `on`: a segment cap, allowed countries, tenant and channel
    /// rate limits far above the load, and a suppression list (of another address), so every
    /// switchable layer runs and none refuses. `both`: the two runs one after the other, each
    /// with a tenant of its own, and their ratio.
    #[arg(long, value_enum, default_value_t = TenantLayers::Off, requires = "spawn")]
    pub tenant_layers: TenantLayers,
}

/// How long `--tenant-layers both` waits for the first run's cascades before the second run.
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TenantLayers {
    Off,
    On,
    Both,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    args.load.check()?;
    if !args.spawn {
        let api_key = args
            .api_key
            .clone()
            .context("--api-key (or HERMES_API_KEY) is needed, unless --spawn")?;
        let server = Server {
            base_url: args.url.trim_end_matches('/').to_owned(),
            api_key,
            spawned: false,
            receipt_delay_ms: None,
        };
        let report = hermes_loadgen::measure(&server, &args.load).await?;
        return print(&report, args.load.json);
    }
    // Kept alive (and its tasks running) until the reports are printed.
    let app = spawn(&args).await?;
    let server_for = |api_key: String| Server {
        base_url: app.base_url.clone(),
        api_key,
        spawned: true,
        receipt_delay_ms: Some(args.receipt_delay_ms),
    };
    match args.tenant_layers {
        TenantLayers::Off | TenantLayers::On => {
            let key = bench_tenant(&app, args.tenant_layers == TenantLayers::On).await?;
            let report = hermes_loadgen::measure(&server_for(key), &args.load).await?;
            print(&report, args.load.json)
        }
        TenantLayers::Both => {
            let off_key = bench_tenant(&app, false).await?;
            let on_key = bench_tenant(&app, true).await?;
            // Each run starts on a quiet server: the cascades the first run accepted would
            // otherwise still be dispatching during the second.
            progress("tenant layers off:");
            let off_server = server_for(off_key);
            let off = hermes_loadgen::measure(&off_server, &args.load).await?;
            progress("waiting for the first run's cascades to finish");
            hermes_loadgen::wait_until_settled(&off_server, SETTLE_WITHIN).await?;
            progress("tenant layers on:");
            let on = hermes_loadgen::measure(&server_for(on_key), &args.load).await?;
            compare(&off, &on, args.load.json)
        }
    }
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// Both runs, and on / off for accepted msgs/s, p50 and p99.
fn compare(off: &Report, on: &Report, json: bool) -> anyhow::Result<()> {
    let (off_rate, off_p50, off_p99) = off.accept_numbers();
    let (on_rate, on_p50, on_p99) = on.accept_numbers();
    let ratio = |a: f64, b: f64| {
        if b == 0.0 {
            0.0
        } else {
            (a / b * 1000.0).round() / 1000.0
        }
    };
    let ratios = json!({
        "msgs_per_s": ratio(on_rate, off_rate),
        "p50": ratio(on_p50, off_p50),
        "p99": ratio(on_p99, off_p99),
    });
    if json {
        let out =
            json!({"layers_off": off.to_json(), "layers_on": on.to_json(), "on_over_off": ratios});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("tenant layers off\n{}", off.to_table());
        println!("tenant layers on\n{}", on.to_table());
        println!(
            "on / off (accept): msgs/s {}  p50 {}  p99 {}",
            ratios["msgs_per_s"], ratios["p50"], ratios["p99"]
        );
    }
    Ok(())
}

/// A new tenant for the bench, with every switchable layer set (and none refusing) when `layers`.
async fn bench_tenant(app: &RunningApp, layers: bool) -> anyhow::Result<String> {
    let name = if layers { "bench-layers-on" } else { "bench" };
    let tenant = tenants::create_tenant(&app.pool, name)
        .await
        .context("cannot create the bench tenant")?;
    if layers {
        let far_above = json!({"per_second": 100_000, "burst": 100_000});
        tenants::change_settings(
            &app.pool,
            tenant.tenant_id,
            &json!({
                "max_sms_segments": 10,
                "allowed_countries": ["US", "CA"],
                "rate_limit": far_above,
                "channel_rate_limits": {"sms": far_above},
            }),
        )
        .await
        .context("cannot set the bench tenant's layers")?;
        let mut conn = app.pool.acquire().await?;
        suppressions::add(
            &mut conn,
            tenant.tenant_id,
            Channel::Sms,
            "+14155559999",
            "bench",
            "operator",
        )
        .await
        .context("cannot list an address for the bench tenant")?;
    }
    Ok(tenant.api_key)
}

/// Starts Hermes in this process with all roles and the embedded mock provider.
async fn spawn(args: &BenchArgs) -> anyhow::Result<RunningApp> {
    let Some(database_url) = args.database_url.clone() else {
        bail!("--spawn needs --database-url");
    };
    hermes_infra::db::ensure_database(&hermes_infra::Secret::new(database_url.clone())).await?;
    let server = ServerArgs {
        database: DatabaseArgs {
            database_url,
            database_url_file: None,
            db_pool_size: args.db_pool_size,
        },
        kafka: crate::config::KafkaArgs::off(),
        listen: "127.0.0.1:0".parse()?,
        public_url: None,
        mock_provider_url: None,
        mock_provider_secret: None,
        mock_receipt_delay_ms: args.receipt_delay_ms,
        circuit_open_ms: 30_000,
        secret_key: None,
        secret_key_file: None,
        previous_secret_key: None,
        previous_secret_key_file: None,
        plugins_dir: None,
        admin_token: None,
        admin_token_file: None,
        mock_provider: true,
        tls_cert_file: None,
        tls_key_file: None,
        tls_reload_ms: 30_000,
        header_read_timeout_ms: 10_000,
        request_timeout_ms: 30_000,
        max_backlog_age_ms: None,
        log_checkpoint_every_ms: 60_000,
        redis_url: None,
        redis_url_file: None,
        webhooks: crate::config::WebhookArgs::default(),
    };
    let app = app::start(&server, Roles::all()).await?;
    progress(&format!(
        "started Hermes in-process at {} (it shares this process and its CPUs with the load)",
        app.base_url
    ));
    Ok(app)
}
