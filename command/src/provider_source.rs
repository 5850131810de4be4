//! Which provider accounts this Hermes routes to, and hot swap.
//!
//! Accounts come from the `provider_accounts` table (`hermes provider set`), their configuration
//! sealed under `HERMES_SECRET_KEY`. With no account configured, the built-in mock provider serves
//! every channel as account `mock` when the process was started with one (`hermes dev`, or
//! `hermes serve --mock-provider`), so `hermes dev` works out of the box; otherwise nothing serves
//! (fake deliveries never happen by accident).
//!
//! A plugin is, first found: the newest version uploaded through the admin API
//! (`plugin_uploads`), `<plugin>.wasm` in the plugins directory (`--plugins-dir`), the built-in
//! one. Every [`RELOAD_EVERY`] the accounts, uploads and plugin files are read again; an account
//! whose plugin bytes or settings changed is loaded anew and validated (its `describe` must answer,
//! with the plugin's own name), then swapped in atomically. Calls in flight finish on the version
//! they started with; an invalid new version is refused and the old one keeps serving. Rolling back
//! is the admin API's rollback (the previous upload serves again), or putting the previous file back.

use hermes_adapters::plugin::{AccountConfig, PluginEngine, PluginLimits, Secret, builtin};
use hermes_adapters::{AccountTerms, Provider, ProviderRegistry};
use hermes_infra::plugin_uploads;
use hermes_infra::provider_accounts::{self, SealingKey};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often accounts and plugin files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// One account as it should be served.
struct Desired {
    plugin: String,
    account: AccountConfig,
    /// Read each sync; a change of terms needs no reload.
    terms: AccountTerms,
    bytes: Arc<Vec<u8>>,
    /// Changes when anything that needs a reload changes.
    fingerprint: [u8; 32],
}

pub struct ProviderSource {
    pool: PgPool,
    key: Option<SealingKey>,
    plugins_dir: Option<PathBuf>,
    engine: PluginEngine,
    /// The account used when none is configured (the mock provider), if this process has one.
    fallback: Option<AccountConfig>,
    /// Fingerprint of what each loaded account was loaded from.
    loaded: HashMap<String, [u8; 32]>,
    /// Uploaded plugin bytes by digest, so a poll reads only digests.
    uploads: HashMap<String, Arc<Vec<u8>>>,
}

impl ProviderSource {
    pub fn new(
        pool: PgPool,
        key: Option<SealingKey>,
        plugins_dir: Option<PathBuf>,
        fallback: Option<AccountConfig>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            key,
            plugins_dir,
            engine: PluginEngine::new(PluginLimits::default())?,
            fallback,
            loaded: HashMap::new(),
            uploads: HashMap::new(),
        })
    }

    /// The bytes of `plugin`: uploaded (its current digest in `uploaded`), else from the plugins
    /// directory, else built in.
    async fn plugin_bytes(
        &mut self,
        plugin: &str,
        uploaded: &HashMap<String, String>,
    ) -> anyhow::Result<Arc<Vec<u8>>> {
        if let Some(sha256) = uploaded.get(plugin) {
            if let Some(bytes) = self.uploads.get(sha256) {
                return Ok(bytes.clone());
            }
            // Uploads are authenticated with the secret key: without it none can be trusted.
            let key = self.key.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "plugin {plugin} has an uploaded version but HERMES_SECRET_KEY is not set: it cannot be authenticated"
                )
            })?;
            if let Some(bytes) = plugin_uploads::wasm(&self.pool, key, plugin, sha256).await? {
                let bytes = Arc::new(bytes);
                self.uploads.insert(sha256.clone(), bytes.clone());
                return Ok(bytes);
            }
            // Rolled back since the digests were read: fall through to the next source.
        }
        if let Some(dir) = &self.plugins_dir {
            let path = dir.join(format!("{plugin}.wasm"));
            match std::fs::read(&path) {
                Ok(bytes) => return Ok(Arc::new(bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => anyhow::bail!("reading {}: {err}", path.display()),
            }
        }
        builtin::by_name(plugin)
            .map(|b| Arc::new(b.to_vec()))
            .ok_or_else(|| {
                anyhow::anyhow!("no plugin named {plugin:?} (built in or in the plugins directory)")
            })
    }

    async fn desired(&mut self) -> anyhow::Result<Vec<Desired>> {
        let uploaded = plugin_uploads::current_digests(&self.pool).await?;
        self.uploads
            .retain(|sha256, _| uploaded.values().any(|s| s == sha256));
        let (count, _) = provider_accounts::version(&self.pool).await?;
        let accounts: Vec<(String, AccountConfig, AccountTerms)> = if count == 0 {
            match &self.fallback {
                Some(mock) => vec![("mock".to_owned(), mock.clone(), AccountTerms::default())],
                None => {
                    tracing::error!(
                        "no provider account is configured and the mock provider is off: nothing can be sent"
                    );
                    Vec::new()
                }
            }
        } else {
            let key = self.key.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "provider accounts are configured but HERMES_SECRET_KEY is not set: their credentials cannot be opened"
                )
            })?;
            provider_accounts::list(&self.pool, key)
                .await?
                .into_iter()
                .map(|a| {
                    let config = a
                        .config
                        .iter()
                        .map(|(k, v)| (k.clone(), Secret::new(v.expose().clone())))
                        .collect();
                    (
                        a.plugin,
                        AccountConfig {
                            name: a.name,
                            allowed_hosts: a.allowed_hosts,
                            allow_private: a.allow_private,
                            config,
                        },
                        AccountTerms {
                            prices: a.prices,
                            max_per_second: a.max_per_second,
                            owner: a.tenant_id.map(hermes_domain::TenantId),
                        },
                    )
                })
                .collect()
        };
        let mut desired = Vec::with_capacity(accounts.len());
        for (plugin, account, terms) in accounts {
            let bytes = match self.plugin_bytes(&plugin, &uploaded).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    tracing::error!(account = %account.name, error = %err, "provider account not served");
                    continue;
                }
            };
            let fingerprint = fingerprint(&plugin, &account, &bytes);
            desired.push(Desired {
                plugin,
                account,
                terms,
                bytes,
                fingerprint,
            });
        }
        Ok(desired)
    }

    /// Brings `registry` in line with the accounts and plugin files. Returns how many accounts
    /// were (re)loaded.
    pub async fn sync(&mut self, registry: &ProviderRegistry) -> anyhow::Result<usize> {
        let desired = self.desired().await?;
        let mut next: Vec<(Arc<dyn Provider>, AccountTerms)> = Vec::with_capacity(desired.len());
        let mut reloaded = 0;
        let mut loaded = HashMap::new();
        for d in desired {
            let name = d.account.name.clone();
            let current = registry.get(&name);
            if let Some(current) = &current
                && self.loaded.get(&name) == Some(&d.fingerprint)
            {
                next.push((current.clone(), d.terms));
                loaded.insert(name, d.fingerprint);
                continue;
            }
            match self.engine.load(&d.bytes, d.account).await {
                Ok(provider) if provider.info().name == d.plugin => {
                    tracing::info!(account = %name, served_by = %provider.served_by(),
                        previous = ?current.as_ref().map(|p| p.served_by()), "provider account loaded");
                    next.push((Arc::new(provider), d.terms));
                    loaded.insert(name, d.fingerprint);
                    reloaded += 1;
                }
                outcome => {
                    let reason = match outcome {
                        Ok(provider) => format!(
                            "the plugin calls itself {:?}, not {:?}",
                            provider.info().name,
                            d.plugin
                        ),
                        Err(err) => err.to_string(),
                    };
                    tracing::error!(account = %name, plugin = %d.plugin, %reason,
                        "new plugin version refused; the current one keeps serving");
                    metrics::counter!("hermes_plugin_loads_refused_total", "account" => name.clone())
                        .increment(1);
                    if let Some(current) = current {
                        next.push((current, d.terms));
                        if let Some(fp) = self.loaded.get(&name) {
                            loaded.insert(name, *fp);
                        }
                    }
                }
            }
        }
        registry.set_all(next);
        self.loaded = loaded;
        Ok(reloaded)
    }

    /// Keeps `registry` in line, every [`RELOAD_EVERY`].
    pub async fn run(mut self, registry: ProviderRegistry) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.sync(&registry).await {
                tracing::error!(error = %err, "reloading provider accounts failed");
            }
            registry.publish_circuit_states();
        }
    }
}

fn fingerprint(plugin: &str, account: &AccountConfig, bytes: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |value: &[u8]| {
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value);
    };
    field(plugin.as_bytes());
    field(account.name.as_bytes());
    field(&[u8::from(account.allow_private)]);
    for host in &account.allowed_hosts {
        field(host.as_bytes());
    }
    let mut config: Vec<_> = account.config.iter().collect();
    config.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in config {
        field(key.as_bytes());
        field(value.expose().as_bytes());
    }
    field(&Sha256::digest(bytes));
    hash.finalize().into()
}
