//! The engine, the per-call store and [`PluginProvider`], the [`Provider`] over a plugin.

use super::fetch;
use super::limits::{CallLimiter, EPOCH_TICK, PluginLimits};
use super::{AccountConfig, PluginError};
use crate::provider::{
    CallbackError, CallbackRequest, Provider, Receipt, SendAccepted, SendError, SendRequest,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use hermes_domain::message::{AttemptError, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

/// Bindings for `send`: `fetch` is async on the host, so the call is too.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/provider.wit",
        world: "provider",
        imports: { "hermes:provider/http-client.fetch": async },
        exports: { "send": async },
    });
}

/// Bindings for `describe` and `parse-callback`, which run synchronously on the caller's thread
/// (`Provider::parse_callback` is sync): the same world with a `fetch` that always refuses.
mod sync_bindings {
    wasmtime::component::bindgen!({
        path: "wit/provider.wit",
        world: "provider",
        with: {
            "hermes:provider/types": super::bindings::hermes::provider::types,
            "hermes:provider/host": super::bindings::hermes::provider::host,
        },
    });
}

use bindings::hermes::provider::host::Level;
use bindings::hermes::provider::http_client as async_http;
use bindings::hermes::provider::types as wit;
use sync_bindings::hermes::provider::http_client as sync_http;

/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 2048;
/// Distinct metric names one provider may create.
const MAX_METRICS: usize = 64;
/// Secrets shorter than this are not redacted from log lines (they would redact everything).
const MIN_REDACTED_SECRET: usize = 4;

/// What a plugin says about itself (`describe`), checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub channels: Vec<Channel>,
    pub receipt_style: ReceiptStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStyle {
    Callback,
    Polling,
    NoReceipts,
}

/// Store data of one call.
pub(crate) struct PluginState {
    account: Arc<AccountConfig>,
    limits: Arc<PluginLimits>,
    metrics: Arc<Mutex<HashMap<String, f64>>>,
    limiter: CallLimiter,
    deadline: Instant,
    timed_out: bool,
    /// The first request the host refused this call.
    denied: Option<String>,
    /// A `fetch` of this call may have reached the provider.
    request_left: bool,
    log_lines: u32,
}

impl PluginState {
    fn redact(&self, message: &str) -> String {
        let mut message: String = message.chars().take(MAX_LOG_LINE).collect();
        for secret in self.account.config.values() {
            let secret = secret.expose();
            if secret.len() >= MIN_REDACTED_SECRET && message.contains(secret) {
                message = message.replace(secret, "<redacted>");
            }
        }
        message
    }
}

impl wit::Host for PluginState {}

impl bindings::hermes::provider::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_lines >= self.limits.max_log_lines_per_call {
            return;
        }
        self.log_lines += 1;
        let message = self.redact(&message);
        let account = self.account.name.as_str();
        match level {
            Level::Debug => tracing::debug!(provider = account, "plugin: {message}"),
            Level::Info => tracing::info!(provider = account, "plugin: {message}"),
            Level::Warn => tracing::warn!(provider = account, "plugin: {message}"),
            Level::Error => tracing::error!(provider = account, "plugin: {message}"),
        }
    }

    fn metric(&mut self, name: String, value: f64) {
        if !value.is_finite() || name.len() > 64 {
            return;
        }
        let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        if metrics.len() >= MAX_METRICS && !metrics.contains_key(&name) {
            return;
        }
        *metrics.entry(name).or_default() += value;
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.account
            .config
            .get(&key)
            .map(|value| value.expose().to_owned())
    }

    fn now_millis(&mut self) -> u64 {
        u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
    }
}

impl async_http::Host for PluginState {
    async fn fetch(
        &mut self,
        request: async_http::Request,
    ) -> Result<async_http::Response, async_http::FetchError> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let outcome = fetch::fetch(&self.account, &self.limits, request, deadline).await;
        self.request_left |= outcome.left;
        if let Err(async_http::FetchError::Denied(reason)) = &outcome.result {
            tracing::warn!(provider = %self.account.name, %reason, "plugin fetch refused");
            self.denied.get_or_insert_with(|| reason.clone());
        }
        outcome.result
    }
}

impl sync_http::Host for PluginState {
    fn fetch(
        &mut self,
        _request: sync_http::Request,
    ) -> Result<sync_http::Response, sync_http::FetchError> {
        let reason = "no network outside send".to_owned();
        self.denied.get_or_insert_with(|| reason.clone());
        Err(sync_http::FetchError::Denied(reason))
    }
}

/// A wasmtime engine set up for provider plugins, shared by every plugin loaded from it. Cheap to
/// clone. Its epoch ticker thread stops once the engine and every plugin from it are dropped.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    async_linker: Arc<Linker<PluginState>>,
    sync_linker: Arc<Linker<PluginState>>,
    limits: Arc<PluginLimits>,
}

impl PluginEngine {
    pub fn new(limits: PluginLimits) -> Result<Self, PluginError> {
        let load_err = |err: wasmtime::Error| PluginError::Load(format!("{err:#}"));
        let n = limits.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(load_err)?;

        let mut async_linker = Linker::new(&engine);
        bindings::Provider::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut async_linker,
            |state| state,
        )
        .map_err(load_err)?;
        let mut sync_linker = Linker::new(&engine);
        sync_bindings::Provider::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut sync_linker,
            |state| state,
        )
        .map_err(load_err)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|err| PluginError::Load(format!("starting the epoch ticker: {err}")))?;

        Ok(Self {
            engine,
            async_linker: Arc::new(async_linker),
            sync_linker: Arc::new(sync_linker),
            limits: Arc::new(limits),
        })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Compiles and pre-instantiates a plugin for one provider account, then calls `describe` to
    /// validate it.
    pub fn load(
        &self,
        bytes: &[u8],
        account: AccountConfig,
    ) -> Result<PluginProvider, PluginError> {
        let load_err = |err: wasmtime::Error| PluginError::Load(format!("{err:#}"));
        if account.name.trim().is_empty() {
            return Err(PluginError::Load("the account has no name".to_owned()));
        }
        let component = Component::new(&self.engine, bytes).map_err(load_err)?;
        let async_pre = bindings::ProviderPre::new(
            self.async_linker
                .instantiate_pre(&component)
                .map_err(load_err)?,
        )
        .map_err(load_err)?;
        let sync_pre = sync_bindings::ProviderPre::new(
            self.sync_linker
                .instantiate_pre(&component)
                .map_err(load_err)?,
        )
        .map_err(load_err)?;
        let mut provider = PluginProvider {
            engine: self.clone(),
            account: Arc::new(account),
            metrics: Arc::default(),
            async_pre,
            sync_pre,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                channels: Vec::new(),
                receipt_style: ReceiptStyle::NoReceipts,
            },
        };
        let info = provider
            .describe()
            .map_err(|err| PluginError::Load(format!("describe failed: {err}")))?;
        if info.name.trim().is_empty() || info.version.trim().is_empty() {
            return Err(PluginError::Load(
                "describe returned an empty name or version".to_owned(),
            ));
        }
        if info.channels.is_empty() {
            return Err(PluginError::Load(
                "describe returned no channels".to_owned(),
            ));
        }
        provider.info = info;
        Ok(provider)
    }

    fn store(
        &self,
        account: &Arc<AccountConfig>,
        metrics: &Arc<Mutex<HashMap<String, f64>>>,
        timeout: Duration,
        can_yield: bool,
    ) -> Store<PluginState> {
        let deadline = Instant::now() + timeout;
        let mut store = Store::new(
            &self.engine,
            PluginState {
                account: account.clone(),
                limits: self.limits.clone(),
                metrics: metrics.clone(),
                limiter: CallLimiter::new(self.limits.max_memory_bytes),
                deadline,
                timed_out: false,
                denied: None,
                request_left: false,
                log_lines: 0,
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else if can_yield {
                // A busy guest gives the executor back at every tick.
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    fn classify(
        &self,
        err: &wasmtime::Error,
        state: &PluginState,
        timeout: Duration,
    ) -> PluginError {
        if state.timed_out {
            return PluginError::Timeout(timeout);
        }
        if state.limiter.refused {
            return PluginError::OutOfMemory(self.limits.max_memory_bytes);
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) => PluginError::Panic,
            Some(Trap::Interrupt) => PluginError::Timeout(timeout),
            Some(trap) => PluginError::Trap(trap.to_string()),
            None => PluginError::Trap(format!("{err:#}")),
        }
    }
}

/// A [`Provider`] backed by a plugin, for one provider account. Every call gets a fresh store.
pub struct PluginProvider {
    engine: PluginEngine,
    account: Arc<AccountConfig>,
    metrics: Arc<Mutex<HashMap<String, f64>>>,
    async_pre: bindings::ProviderPre<PluginState>,
    sync_pre: sync_bindings::ProviderPre<PluginState>,
    info: PluginInfo,
}

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("account", &self.account)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl PluginProvider {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The counters the plugin reported through `metric`, summed since it was loaded.
    pub fn metrics(&self) -> HashMap<String, f64> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs one synchronous export (`describe`, `parse-callback`) in a fresh store under the
    /// callback deadline. `fetch` always refuses there, and a call that tried one is `Denied`.
    fn call_sync<T>(
        &self,
        call: impl FnOnce(&sync_bindings::Provider, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let timeout = self.engine.limits.callback_timeout;
        let mut store = self
            .engine
            .store(&self.account, &self.metrics, timeout, false);
        let result = self
            .sync_pre
            .instantiate(&mut store)
            .map_err(|err| PluginError::Instantiate(format!("{err:#}")))
            .and_then(|instance| {
                call(&instance, &mut store)
                    .map_err(|err| self.engine.classify(&err, store.data(), timeout))
            })?;
        if let Some(reason) = &store.data().denied {
            return Err(PluginError::Denied(reason.clone()));
        }
        Ok(result)
    }

    fn describe(&self) -> Result<PluginInfo, PluginError> {
        let result = self.call_sync(|instance, store| instance.call_describe(store))?;
        let mut channels: Vec<Channel> = result
            .channels
            .iter()
            .map(|c| channel_from_wit(*c))
            .collect();
        channels.dedup();
        Ok(PluginInfo {
            name: result.name,
            version: result.version,
            channels,
            receipt_style: match result.receipt_style {
                wit::ReceiptStyle::Callback => ReceiptStyle::Callback,
                wit::ReceiptStyle::Polling => ReceiptStyle::Polling,
                wit::ReceiptStyle::None => ReceiptStyle::NoReceipts,
            },
        })
    }

    async fn send_inner(&self, request: &SendRequest) -> Result<SendAccepted, SendError> {
        let content =
            serde_json::to_string(&request.content).map_err(|err| SendError::Rejected {
                error: AttemptError::new("invalid_content", err.to_string()),
                retryable: false,
            })?;
        let wit_request = wit::SendRequest {
            tenant_id: request.tenant_id.to_string(),
            message_id: request.message_id.to_string(),
            attempt_id: request.attempt_id.to_string(),
            channel: channel_to_wit(request.channel),
            to: request.to.clone(),
            content,
            callback_url: request.callback_url.clone(),
        };
        let timeout = self.engine.limits.send_timeout;
        let call = async {
            let mut store = self
                .engine
                .store(&self.account, &self.metrics, timeout, true);
            let result = match self.async_pre.instantiate_async(&mut store).await {
                Ok(instance) => instance
                    .call_send(&mut store, &wit_request)
                    .await
                    .map_err(|err| self.engine.classify(&err, store.data(), timeout)),
                Err(err) => Err(PluginError::Instantiate(format!("{err:#}"))),
            };
            let state = store.data();
            let result = match (result, &state.denied) {
                (Ok(_), Some(reason)) => Err(PluginError::Denied(reason.clone())),
                (result, _) => result,
            };
            (result, state.request_left)
        };
        // Backstop only: the epoch deadline and the fetch timeouts end the call before this.
        let (result, request_left) =
            match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
                Ok(outcome) => outcome,
                Err(_) => (Err(PluginError::Timeout(timeout)), true),
            };
        match result {
            Ok(wit::SendResult::Accepted(accepted)) => Ok(SendAccepted {
                provider_message_id: accepted.provider_message_id,
            }),
            Ok(wit::SendResult::Rejected(rejection)) => Err(SendError::Rejected {
                error: AttemptError::new(rejection.code, rejection.message),
                retryable: rejection.retryable,
            }),
            Ok(wit::SendResult::InDoubt(reason)) => Err(SendError::InDoubt(reason)),
            Err(err) => {
                tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                    attempt_id = %request.attempt_id, error = %err, "plugin send failed");
                Err(err.into_send_error(request_left))
            }
        }
    }

    /// `Err`: the plugin failed; `Ok(Err)`: the plugin refused the callback.
    fn parse_callback_inner(
        &self,
        request: &CallbackRequest,
    ) -> Result<Result<Vec<Receipt>, CallbackError>, PluginError> {
        let wit_request = wit::CallbackRequest {
            url: request.url.clone(),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: request.body.to_vec(),
            message_id: request.ids.map(|(m, _)| m.to_string()),
            attempt_id: request.ids.map(|(_, a)| a.to_string()),
        };
        let result =
            self.call_sync(|instance, store| instance.call_parse_callback(store, &wit_request))?;
        match result {
            Ok(receipts) => Ok(Ok(receipts
                .into_iter()
                .map(receipt_from_wit)
                .collect::<Result<Vec<_>, _>>()?)),
            Err(wit::CallbackError::InvalidSignature) => Ok(Err(CallbackError::InvalidSignature)),
            Err(wit::CallbackError::Malformed(reason)) => Ok(Err(CallbackError::Malformed(reason))),
        }
    }
}

fn channel_to_wit(channel: Channel) -> wit::Channel {
    match channel {
        Channel::Sms => wit::Channel::Sms,
        Channel::Email => wit::Channel::Email,
        Channel::Push => wit::Channel::Push,
        Channel::Whatsapp => wit::Channel::Whatsapp,
    }
}

fn channel_from_wit(channel: wit::Channel) -> Channel {
    match channel {
        wit::Channel::Sms => Channel::Sms,
        wit::Channel::Email => Channel::Email,
        wit::Channel::Push => Channel::Push,
        wit::Channel::Whatsapp => Channel::Whatsapp,
    }
}

fn receipt_from_wit(receipt: wit::Receipt) -> Result<Receipt, PluginError> {
    let message_id = MessageId::from_str(&receipt.message_id).map_err(|err| {
        PluginError::Invalid(format!(
            "receipt message id {:?}: {err}",
            receipt.message_id
        ))
    })?;
    let attempt_id = AttemptId::from_str(&receipt.attempt_id).map_err(|err| {
        PluginError::Invalid(format!(
            "receipt attempt id {:?}: {err}",
            receipt.attempt_id
        ))
    })?;
    Ok(Receipt {
        message_id,
        attempt_id,
        status: match receipt.status {
            wit::ReceiptStatus::Sent => ReceiptStatus::Sent,
            wit::ReceiptStatus::Delivered => ReceiptStatus::Delivered,
            wit::ReceiptStatus::Read => ReceiptStatus::Read,
            wit::ReceiptStatus::Failed => ReceiptStatus::Failed,
        },
        provider_message_id: receipt.provider_message_id,
        error: receipt
            .error
            .map(|error| AttemptError::new(error.code, error.message)),
    })
}

impl Provider for PluginProvider {
    fn name(&self) -> &str {
        &self.account.name
    }

    fn channels(&self) -> &[Channel] {
        &self.info.channels
    }

    fn send<'a>(
        &'a self,
        request: &'a SendRequest,
    ) -> BoxFuture<'a, Result<SendAccepted, SendError>> {
        self.send_inner(request).boxed()
    }

    fn parse_callback(&self, request: &CallbackRequest) -> Result<Vec<Receipt>, CallbackError> {
        self.parse_callback_inner(request).unwrap_or_else(|err| {
            tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                error = %err, "plugin parse-callback failed");
            Err(err.into())
        })
    }
}
