//! Configuration, from command-line flags or the environment (flags win).

use clap::Args;
use hermes_command::admin::{AdminToken, AdminTokenTooShort};
use hermes_infra::Secret;
use hermes_infra::http::tls::TlsFiles;
use hermes_infra::kafka::KafkaConfig;
use hermes_infra::provider_accounts::SealingKey;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres:///hermes?host=/var/run/postgresql";

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL. The default is a local socket and a database named `hermes`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// A file holding the Postgres URL (its password), instead of `DATABASE_URL`.
    #[arg(long, env = "DATABASE_URL_FILE", value_parser = secret_in_file, conflicts_with = "database_url")]
    pub database_url_file: Option<String>,
    /// Most connections Hermes opens.
    #[arg(long, env = "HERMES_DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: u32,
}

impl DatabaseArgs {
    pub fn url(&self) -> Secret<String> {
        Secret::new(
            self.database_url_file
                .clone()
                .unwrap_or_else(|| self.database_url.clone()),
        )
    }
}

/// The Kafka transport: off unless `KAFKA_BROKERS` is set.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka brokers (`host:port,...`). When set, the log is streamed to Kafka by the relay role
    /// and the saga and projector roles consume it there, shared by every worker process.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The topic the event log is streamed to.
    #[arg(long, env = "HERMES_KAFKA_TOPIC", default_value = KafkaConfig::DEFAULT_TOPIC)]
    pub kafka_topic: String,
    /// Partitions `hermes kafka init` creates the topic with: at most this many workers share
    /// the work.
    #[arg(long, env = "HERMES_KAFKA_PARTITIONS", default_value_t = 12)]
    pub kafka_partitions: i32,
    /// Replication factor `hermes kafka init` creates the topic with.
    #[arg(long, env = "HERMES_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    /// How long the broker keeps records (the event store keeps everything).
    #[arg(long, env = "HERMES_KAFKA_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub kafka_retention_ms: i64,
    /// Consumer groups are named `<prefix>.<subscriber>`.
    #[arg(long, env = "HERMES_KAFKA_GROUP_PREFIX", default_value = "hermes")]
    pub kafka_group_prefix: String,
    /// How long a silent worker keeps its partitions (a killed worker's messages wait this long).
    #[arg(
        long,
        env = "HERMES_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub kafka_session_timeout_ms: u32,
}

impl KafkaArgs {
    /// No Kafka: the Postgres tail (`hermes dev`, tests).
    pub fn off() -> Self {
        Self {
            kafka_brokers: None,
            kafka_topic: KafkaConfig::DEFAULT_TOPIC.to_owned(),
            kafka_partitions: 12,
            kafka_replication: 1,
            kafka_retention_ms: 7 * 24 * 3600 * 1000,
            kafka_group_prefix: "hermes".to_owned(),
            kafka_session_timeout_ms: 10_000,
        }
    }

    /// The configuration, when brokers are given.
    pub fn config(&self) -> Option<KafkaConfig> {
        let brokers = self.kafka_brokers.as_deref()?.trim();
        (!brokers.is_empty()).then(|| KafkaConfig {
            brokers: brokers.to_owned(),
            topic: self.kafka_topic.clone(),
            partitions: self.kafka_partitions,
            replication: self.kafka_replication,
            retention_ms: self.kafka_retention_ms,
            group_prefix: self.kafka_group_prefix.clone(),
            session_timeout_ms: self.kafka_session_timeout_ms,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "HERMES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// URL providers reach this Hermes at, for receipt callbacks (default: http://LISTEN).
    #[arg(long, env = "HERMES_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// URL of a running mock provider (`hermes mock-provider`); without it an embedded one starts.
    #[arg(long, env = "HERMES_MOCK_PROVIDER_URL")]
    pub mock_provider_url: Option<String>,
    /// Secret the mock provider signs its receipts with (default: a random one, for the embedded mock).
    #[arg(long, env = "HERMES_MOCK_PROVIDER_SECRET", hide_env_values = true)]
    pub mock_provider_secret: Option<String>,
    /// The key provider account configurations are sealed with (64 hex characters), from the
    /// environment only (`HERMES_SECRET_KEY`), never a flag: a command line is visible to every
    /// user of the machine. Needed once any account is configured (`hermes provider set`).
    #[arg(skip = secret_key_from_env())]
    pub secret_key: Option<String>,
    /// A file holding the secret key, instead of `HERMES_SECRET_KEY`.
    #[arg(long, env = "HERMES_SECRET_KEY_FILE")]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// During a key rotation, the key being rotated away from: what it sealed still opens, and
    /// everything new is sealed with `HERMES_SECRET_KEY` (`hermes provider rekey` re-seals the
    /// rest). Environment only (`HERMES_SECRET_KEY_PREVIOUS`), never a flag.
    #[arg(skip = previous_secret_key_from_env())]
    pub previous_secret_key: Option<String>,
    /// A file holding the previous key, instead of `HERMES_SECRET_KEY_PREVIOUS`.
    #[arg(long, env = "HERMES_SECRET_KEY_PREVIOUS_FILE")]
    pub previous_secret_key_file: Option<std::path::PathBuf>,
    /// A directory of provider plugins (`<plugin>.wasm`) that override the built-in ones; changes
    /// are validated and swapped in while Hermes runs.
    #[arg(long, env = "HERMES_PLUGINS_DIR")]
    pub plugins_dir: Option<std::path::PathBuf>,
    /// Bearer token of the admin API (`/admin/v1/plugins`: upload, list and roll back plugin
    /// versions), at least 32 characters: Hermes refuses to start with a shorter one. Without it
    /// the admin API is off. From the environment only (`HERMES_ADMIN_TOKEN`), never a flag.
    #[arg(skip = std::env::var("HERMES_ADMIN_TOKEN").ok())]
    pub admin_token: Option<String>,
    /// A file holding the admin API's token, instead of `HERMES_ADMIN_TOKEN`.
    #[arg(long, env = "HERMES_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Deliver through the built-in mock provider (fake deliveries) while no provider account is
    /// configured. Without it, `hermes serve` refuses to start with no account; `hermes dev`
    /// always uses the mock.
    #[arg(long, env = "HERMES_MOCK_PROVIDER")]
    pub mock_provider: bool,
    /// Serve the API over TLS with this certificate chain (PEM, leaf first); needs
    /// `--tls-key-file`. The files are read again every `--tls-reload-ms`, so a renewed
    /// certificate is served without a restart.
    #[arg(long, env = "HERMES_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The TLS certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HERMES_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// How often the TLS files are checked for a renewal.
    #[arg(long, env = "HERMES_TLS_RELOAD_MS", default_value_t = 30_000)]
    pub tls_reload_ms: u64,
    /// Longest a client may take to send its request headers; then the connection is closed.
    #[arg(long, env = "HERMES_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Longest a request may take (its body upload included); then it is answered 503
    /// `request_timeout`.
    #[arg(long, env = "HERMES_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Refuse new messages (503 `overloaded`) while accepted ones have waited longer than this for
    /// their dispatch. Off when unset.
    #[arg(long, env = "HERMES_MAX_BACKLOG_AGE_MS")]
    pub max_backlog_age_ms: Option<u64>,
    /// How often the timers role checkpoints the event log's head for `hermes verify` (one node
    /// writes each; 0: never).
    #[arg(long, env = "HERMES_LOG_CHECKPOINT_EVERY_MS", default_value_t = 60_000)]
    pub log_checkpoint_every_ms: u64,
    /// Redis holding the tenants' rate limits, so they hold across every process
    /// (`redis://127.0.0.1:6379`). Without it each process counts on its own.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A file holding the Redis URL, instead of `REDIS_URL`.
    #[arg(long, env = "REDIS_URL_FILE", value_parser = secret_in_file, conflicts_with = "redis_url")]
    pub redis_url_file: Option<String>,
    /// How long a provider account's circuit stays open the first time it opens (failures in a
    /// row or a high error rate); each failed probe doubles it, up to an hour.
    #[arg(long, env = "HERMES_CIRCUIT_OPEN_MS", default_value_t = 30_000)]
    pub circuit_open_ms: u64,
    /// Delay before the embedded mock provider sends a delivery receipt.
    #[arg(long, env = "HERMES_MOCK_RECEIPT_DELAY_MS", default_value_t = 200)]
    pub mock_receipt_delay_ms: u64,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// How tenants' webhooks are delivered.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Let tenants' webhook endpoints be on loopback, private and link-local addresses (tests,
    /// a private network). Off: such URLs are refused, and so are names resolving to them.
    #[arg(long = "webhook-allow-private", env = "HERMES_WEBHOOK_ALLOW_PRIVATE")]
    pub allow_private: bool,
    /// The first wait before a failed webhook delivery is tried again; each next wait is four
    /// times longer, up to 5,760 times this (8 h at the default).
    #[arg(
        long = "webhook-retry-base-ms",
        env = "HERMES_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 5_000
    )]
    pub retry_base_ms: u64,
    /// A webhook delivery still failing this long after its first attempt has failed (24 h).
    #[arg(
        long = "webhook-give-up-ms",
        env = "HERMES_WEBHOOK_GIVE_UP_MS",
        default_value_t = 86_400_000
    )]
    pub give_up_ms: u64,
    /// A webhook endpoint whose every delivery failed for this long is disabled (5 days).
    #[arg(
        long = "webhook-disable-after-ms",
        env = "HERMES_WEBHOOK_DISABLE_AFTER_MS",
        default_value_t = 432_000_000
    )]
    pub disable_after_ms: u64,
    /// Longest one webhook delivery attempt may take.
    #[arg(
        long = "webhook-timeout-ms",
        env = "HERMES_WEBHOOK_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub timeout_ms: u64,
}

impl Default for WebhookArgs {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_base_ms: 5_000,
            give_up_ms: 86_400_000,
            disable_after_ms: 432_000_000,
            timeout_ms: 15_000,
        }
    }
}

impl ServerArgs {
    /// The TLS certificate and key files, when both are given; one without the other is an error.
    pub fn tls_files(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(None),
            _ => anyhow::bail!(
                "TLS needs both HERMES_TLS_CERT_FILE (--tls-cert-file) and HERMES_TLS_KEY_FILE (--tls-key-file)"
            ),
        }
    }

    /// The admin token, checked: set but shorter than 32 characters (empty included) is an error,
    /// unset turns the admin API off.
    pub fn admin_token(&self) -> anyhow::Result<Option<AdminToken>> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set HERMES_ADMIN_TOKEN or --admin-token-file (HERMES_ADMIN_TOKEN_FILE), not both"
            ),
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => Some(read_secret_file(path)?),
            (None, None) => None,
        };
        let token: Option<Result<AdminToken, AdminTokenTooShort>> =
            token.as_deref().map(AdminToken::new);
        Ok(token.transpose()?)
    }
}

impl ServerArgs {
    /// How webhooks are sealed and delivered, from the flags.
    pub fn webhook_config(
        &self,
        key: Option<hermes_infra::provider_accounts::SealingKey>,
    ) -> hermes_command::webhooks::WebhookConfig {
        let w = &self.webhooks;
        let base = Duration::from_millis(w.retry_base_ms.max(1));
        hermes_command::webhooks::WebhookConfig {
            key,
            allow_private: w.allow_private,
            schedule: hermes_domain::webhook::RetrySchedule {
                base,
                // 8 h at the standard 5 s base: the same shape at any scale.
                cap: base * 5_760,
                give_up_after: Duration::from_millis(w.give_up_ms),
            },
            disable_after: Duration::from_millis(w.disable_after_ms),
            timeout: Duration::from_millis(w.timeout_ms.max(1)),
        }
    }

    /// The sealing key, from `HERMES_SECRET_KEY` or the file `--secret-key-file` names, with the
    /// previous key during a rotation.
    pub fn sealing_key(&self) -> anyhow::Result<Option<SealingKey>> {
        sealing_key(
            (self.secret_key.as_deref(), self.secret_key_file.as_deref()),
            (
                self.previous_secret_key.as_deref(),
                self.previous_secret_key_file.as_deref(),
            ),
        )
    }
}

/// `HERMES_SECRET_KEY`, if set.
pub fn secret_key_from_env() -> Option<String> {
    std::env::var("HERMES_SECRET_KEY").ok()
}

/// `HERMES_SECRET_KEY_PREVIOUS`, if set.
pub fn previous_secret_key_from_env() -> Option<String> {
    std::env::var("HERMES_SECRET_KEY_PREVIOUS").ok()
}

/// The sealing key from its settings: the current key (`HERMES_SECRET_KEY` or its file) and,
/// during a rotation, the previous one (`HERMES_SECRET_KEY_PREVIOUS` or its file).
pub fn sealing_key(
    current: (Option<&str>, Option<&std::path::Path>),
    previous: (Option<&str>, Option<&std::path::Path>),
) -> anyhow::Result<Option<SealingKey>> {
    let previous = match previous {
        (Some(_), Some(_)) => anyhow::bail!(
            "set HERMES_SECRET_KEY_PREVIOUS or --previous-secret-key-file (HERMES_SECRET_KEY_PREVIOUS_FILE), not both"
        ),
        (Some(key), None) => Some(key.to_owned()),
        (None, Some(path)) => Some(read_secret_file(path)?),
        (None, None) => None,
    };
    let Some(hex) = secret_key(current.0, current.1)? else {
        if previous.is_some() {
            anyhow::bail!(
                "HERMES_SECRET_KEY_PREVIOUS is set without HERMES_SECRET_KEY, the new key"
            );
        }
        return Ok(None);
    };
    let key = SealingKey::from_hex(&hex)?;
    Ok(Some(match previous {
        Some(previous) => key.with_previous(
            &SealingKey::from_hex(&previous)
                .map_err(|e| anyhow::anyhow!("HERMES_SECRET_KEY_PREVIOUS: {e}"))?,
        ),
        None => key,
    }))
}

/// The secret key given in the environment or in a file (not both: which one would win is a
/// guess). A file's trailing newline is not part of the key.
pub fn secret_key(
    from_env: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    match (from_env, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!(
                "set HERMES_SECRET_KEY or --secret-key-file (HERMES_SECRET_KEY_FILE), not both"
            )
        }
        (Some(key), None) => Ok(Some(key.to_owned())),
        (None, Some(path)) => Ok(Some(read_secret_file(path)?)),
        (None, None) => Ok(None),
    }
}

/// A `*_FILE` setting's value: the secret in the file it names (read as the flags are parsed, so
/// an unreadable file stops Hermes at once, naming the setting).
fn secret_in_file(path: &str) -> Result<String, String> {
    read_secret_file(std::path::Path::new(path)).map_err(|e| format!("{e:#}"))
}

impl ServerArgs {
    /// `REDIS_URL`, or the one in `REDIS_URL_FILE`.
    pub fn redis_url(&self) -> Option<Secret<String>> {
        self.redis_url
            .clone()
            .or_else(|| self.redis_url_file.clone())
            .map(Secret::new)
    }
}

/// A secret from a file, without its trailing newline.
pub fn read_secret_file(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
        .to_owned())
}

/// A `--config key=value` value as given: `@PATH` is read from that file, `-` from standard input
/// (for one key at most), `@@...` is a literal value starting with `@`; anything else is the value.
/// Files and stdin keep secrets out of the command line, which every user of the machine can see.
pub fn config_value(raw: &str, stdin_used: &mut bool) -> anyhow::Result<String> {
    if let Some(literal) = raw.strip_prefix("@@") {
        return Ok(format!("@{literal}"));
    }
    if let Some(path) = raw.strip_prefix('@') {
        return read_secret_file(std::path::Path::new(path));
    }
    if raw == "-" {
        anyhow::ensure!(
            !*stdin_used,
            "only one --config value can be read from stdin (`-`)"
        );
        *stdin_used = true;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn key_file(hex: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("hermes-key-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        path
    }

    #[test]
    fn the_previous_key_needs_the_new_one_and_comes_one_way() {
        let (new, old) = (SealingKey::generate_hex(), SealingKey::generate_hex());
        let old_file = key_file(&old);
        assert!(
            sealing_key((Some(&new), None), (None, Some(&old_file)))
                .unwrap()
                .is_some()
        );
        let err = sealing_key((Some(&new), None), (Some(&old), Some(&old_file))).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = sealing_key((None, None), (Some(&old), None)).unwrap_err();
        assert!(
            err.to_string().contains("without HERMES_SECRET_KEY"),
            "{err}"
        );
        assert!(sealing_key((None, None), (None, None)).unwrap().is_none());
        std::fs::remove_file(old_file).unwrap();
    }

    #[test]
    fn a_url_comes_from_its_variable_or_its_file_not_both() {
        let file = key_file("redis://127.0.0.1:6379");
        let path = file.to_str().unwrap();
        let serve = Serve::try_parse_from(["serve", "--redis-url-file", path]).unwrap();
        assert_eq!(
            serve
                .server
                .redis_url()
                .map(|u| u.expose().clone())
                .as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        let both = Serve::try_parse_from([
            "serve",
            "--redis-url",
            "redis://x",
            "--redis-url-file",
            path,
        ]);
        assert!(both.is_err_and(|e| e.to_string().contains("cannot be used with")));
        std::fs::remove_file(file).unwrap();
    }
}
