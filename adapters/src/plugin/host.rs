//! The engine, the per-call store and [`PluginProvider`], the [`Provider`] over a plugin.

use super::fetch::{self, FetchStub};
use super::limits::{CallLimiter, EPOCH_TICK, PluginLimits};
use super::{AccountConfig, PluginError};
use crate::provider::{
    CallbackError, CallbackOutcome, CallbackReply, CallbackRequest, InboundMessage, InboundOutcome,
    LookupError, LookupRequest, Provider, Receipt, SendAccepted, SendError, SendRequest,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use hermes_domain::message::{AttemptError, ReceiptStatus};
use hermes_domain::{AttemptId, Channel, MessageId};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, TypedFunc};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

/// The optional export of world `provider-with-lookup`, looked up by name: the bindings are of the
/// plain `provider` world, so plugins without it load as before.
const LOOKUP_EXPORT: &str = "lookup-status";
type LookupFunc = TypedFunc<(wit::LookupRequest,), (Result<Option<wit::Receipt>, String>,)>;
/// The optional export of world `provider-with-inbound`, looked up by name as well.
const INBOUND_EXPORT: &str = "parse-inbound";
type InboundFunc =
    TypedFunc<(wit::CallbackRequest,), (Result<wit::InboundOutcome, wit::CallbackError>,)>;

/// `fetch` is async on the host, so every export is called asynchronously.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/provider.wit",
        world: "provider",
        imports: { "hermes:provider/http-client.fetch": async },
        exports: { default: async },
    });
}

use bindings::hermes::provider::host::Level;
use bindings::hermes::provider::http_client as async_http;
use bindings::hermes::provider::types as wit;

/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 2048;
/// Distinct metric names one provider may create.
const MAX_METRICS: usize = 64;
/// Secrets shorter than this are not redacted from log lines (they would redact everything).
const MIN_REDACTED_SECRET: usize = 4;
/// Entries one account's cache holds, and the largest key and value it takes.
const MAX_CACHE_ENTRIES: usize = 64;
const MAX_CACHE_KEY: usize = 128;
const MAX_CACHE_VALUE: usize = 64 * 1024;

/// An account's `cache-get`/`cache-set` store: survives calls, not restarts or swaps.
type AccountCache = Arc<Mutex<HashMap<String, (String, Instant)>>>;

/// What a plugin says about itself (`describe`), checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub channels: Vec<Channel>,
    pub receipt_style: ReceiptStyle,
    /// The plugin exports `lookup-status` (world `provider-with-lookup`): Hermes can ask the
    /// provider about an attempt whose receipt did not come.
    pub status_lookup: bool,
    /// The plugin exports `parse-inbound` (world `provider-with-inbound`): Hermes takes the
    /// provider's inbound-message webhook for this account.
    pub inbound: bool,
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
    cache: AccountCache,
    limiter: CallLimiter,
    deadline: Instant,
    timed_out: bool,
    /// The first request the host refused this call.
    denied: Option<String>,
    /// A `fetch` of this call may have reached the provider.
    request_left: bool,
    log_lines: u32,
    fetch_stub: Option<FetchStub>,
}

impl PluginState {
    fn redact(&self, message: &str) -> String {
        let mut message: String = message.chars().take(MAX_LOG_LINE).collect();
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let secrets = self
            .account
            .config
            .values()
            .map(|s| s.expose())
            .chain(cache.values().map(|(value, _)| value.as_str()));
        for secret in secrets {
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

    fn cache_get(&mut self, key: String) -> Option<String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                cache.remove(&key);
                None
            }
            None => None,
        }
    }

    fn cache_set(&mut self, key: String, value: String, ttl_seconds: u32) {
        if key.len() > MAX_CACHE_KEY || value.len() > MAX_CACHE_VALUE {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        cache.retain(|_, (_, until)| now < *until);
        if ttl_seconds == 0 {
            cache.remove(&key);
            return;
        }
        if cache.len() >= MAX_CACHE_ENTRIES && !cache.contains_key(&key) {
            return;
        }
        let until = now + Duration::from_secs(u64::from(ttl_seconds));
        cache.insert(key, (value, until));
    }
}

impl async_http::Host for PluginState {
    async fn fetch(
        &mut self,
        request: async_http::Request,
    ) -> Result<async_http::Response, async_http::FetchError> {
        let outcome = match &self.fetch_stub {
            Some(stub) => fetch::stubbed(&self.account, stub, request),
            None => {
                let deadline = tokio::time::Instant::from_std(self.deadline);
                fetch::fetch(&self.account, &self.limits, request, deadline).await
            }
        };
        self.request_left |= outcome.left;
        if let Err(async_http::FetchError::Denied(reason)) = &outcome.result {
            tracing::warn!(provider = %self.account.name, %reason, "plugin fetch refused");
            self.denied.get_or_insert_with(|| reason.clone());
        }
        outcome.result
    }
}

/// A wasmtime engine set up for provider plugins, shared by every plugin loaded from it. Cheap to
/// clone. Its epoch ticker thread stops once the engine and every plugin from it are dropped.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    limits: Arc<PluginLimits>,
    fetch_stub: Option<FetchStub>,
    /// The pool's slots for sends and for callbacks, kept apart (see [`PluginLimits`]).
    send_slots: Arc<tokio::sync::Semaphore>,
    callback_slots: Arc<tokio::sync::Semaphore>,
}

/// Pool slots not taken right now, by kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSlots {
    pub sends: usize,
    pub callbacks: usize,
}

impl PluginEngine {
    /// Slots free now (for metrics, and for tests that must know the pool is full).
    pub fn free_slots(&self) -> FreeSlots {
        FreeSlots {
            sends: self.send_slots.available_permits(),
            callbacks: self.callback_slots.available_permits(),
        }
    }

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

        let mut linker = Linker::new(&engine);
        bindings::Provider::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
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
            linker: Arc::new(linker),
            send_slots: Arc::new(tokio::sync::Semaphore::new(limits.send_slots())),
            callback_slots: Arc::new(tokio::sync::Semaphore::new(limits.callback_slots())),
            limits: Arc::new(limits),
            fetch_stub: None,
        })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Compiles and pre-instantiates a plugin for one provider account, then calls `describe` to
    /// validate it.
    pub async fn load(
        &self,
        bytes: &[u8],
        account: AccountConfig,
    ) -> Result<PluginProvider, PluginError> {
        let load_err = |err: wasmtime::Error| PluginError::Load(format!("{err:#}"));
        if account.name.trim().is_empty() {
            return Err(PluginError::Load("the account has no name".to_owned()));
        }
        let component = Component::new(&self.engine, bytes).map_err(load_err)?;
        let pre =
            bindings::ProviderPre::new(self.linker.instantiate_pre(&component).map_err(load_err)?)
                .map_err(load_err)?;
        let mut provider = PluginProvider {
            engine: self.clone(),
            account: Arc::new(account),
            metrics: Arc::default(),
            cache: Arc::default(),
            pre,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                channels: Vec::new(),
                receipt_style: ReceiptStyle::NoReceipts,
                status_lookup: false,
                inbound: false,
            },
        };
        let info = provider
            .describe()
            .await
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
        provider.info = PluginInfo {
            status_lookup: component.get_export_index(None, LOOKUP_EXPORT).is_some(),
            inbound: component.get_export_index(None, INBOUND_EXPORT).is_some(),
            ..info
        };
        Ok(provider)
    }

    /// Every `fetch` of the plugins this engine loads is answered by `stub` instead of the network
    /// (the account's allow-list still applies). For benchmarks, which measure the plugin call
    /// without a network's noise; never used by Hermes itself.
    pub fn with_fetch_stub(mut self, stub: FetchStub) -> Self {
        self.fetch_stub = Some(stub);
        self
    }

    fn store(&self, provider: &PluginProvider, timeout: Duration) -> Store<PluginState> {
        let deadline = Instant::now() + timeout;
        let mut store = Store::new(
            &self.engine,
            PluginState {
                account: provider.account.clone(),
                limits: self.limits.clone(),
                metrics: provider.metrics.clone(),
                cache: provider.cache.clone(),
                limiter: CallLimiter::new(self.limits.max_memory_bytes),
                deadline,
                timed_out: false,
                denied: None,
                request_left: false,
                log_lines: 0,
                fetch_stub: self.fetch_stub.clone(),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // A busy guest gives the executor back at every tick.
                Ok(UpdateDeadline::Yield(1))
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
    cache: AccountCache,
    pre: bindings::ProviderPre<PluginState>,
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

    /// `plugin@version`, as recorded on the attempts it serves.
    pub fn served_by(&self) -> String {
        format!("{}@{}", self.info.name, self.info.version)
    }

    /// A slot of `slots` for one call, waited for at most `slot_wait`.
    async fn slot(
        &self,
        slots: &Arc<tokio::sync::Semaphore>,
        what: &'static str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, PluginError> {
        match tokio::time::timeout(self.engine.limits.slot_wait, slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(PluginError::Busy(what)),
        }
    }

    /// Runs one export in a fresh store under `timeout`. Returns whether a `fetch` of the call may
    /// have reached the provider, with the result: a call that made a request the host refused
    /// fails with `Denied`, whatever the plugin made of the refusal.
    async fn call<T>(
        &self,
        timeout: Duration,
        call: impl AsyncFnOnce(&bindings::Provider, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> (Result<T, PluginError>, bool) {
        self.call_instance(timeout, async |instance, _, store| {
            call(instance, store).await
        })
        .await
    }

    /// [`Self::call`], with the raw instance too (for exports outside the generated bindings).
    async fn call_instance<T>(
        &self,
        timeout: Duration,
        call: impl AsyncFnOnce(
            &bindings::Provider,
            &wasmtime::component::Instance,
            &mut Store<PluginState>,
        ) -> wasmtime::Result<T>,
    ) -> (Result<T, PluginError>, bool) {
        let run = async {
            let mut store = self.engine.store(self, timeout);
            let instance = match self.pre.instance_pre().instantiate_async(&mut store).await {
                Ok(raw) => bindings::Provider::new(&mut store, &raw).map(|typed| (typed, raw)),
                Err(err) => Err(err),
            };
            let result = match instance {
                Ok((instance, raw)) => call(&instance, &raw, &mut store)
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
        match tokio::time::timeout(timeout + Duration::from_secs(1), run).await {
            Ok(outcome) => outcome,
            Err(_) => (Err(PluginError::Timeout(timeout)), true),
        }
    }

    async fn describe(&self) -> Result<PluginInfo, PluginError> {
        let timeout = self.engine.limits.callback_timeout;
        let (result, _) = self
            .call(timeout, async |instance, store| {
                instance.call_describe(store).await
            })
            .await;
        let result = result?;
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
            status_lookup: false,
            inbound: false,
        })
    }

    async fn lookup_status_inner(
        &self,
        request: &LookupRequest,
    ) -> Result<Option<Receipt>, LookupError> {
        if !self.info.status_lookup {
            return Err(LookupError::Unsupported);
        }
        let wit_request = wit::LookupRequest {
            message_id: request.message_id.to_string(),
            attempt_id: request.attempt_id.to_string(),
            channel: channel_to_wit(request.channel),
            provider_message_id: request.provider_message_id.clone(),
        };
        let timeout = self.engine.limits.lookup_timeout;
        let (result, _) = self
            .call_instance(timeout, async |_, instance, store| {
                let lookup: LookupFunc = instance.get_typed_func(&mut *store, LOOKUP_EXPORT)?;
                let (answer,) = lookup.call_async(&mut *store, (wit_request,)).await?;
                Ok(answer)
            })
            .await;
        let failed = |reason: String| {
            tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                attempt_id = %request.attempt_id, %reason, "plugin lookup-status failed");
            LookupError::Failed(reason)
        };
        let receipt = match result {
            Ok(Ok(Some(receipt))) => receipt,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(reason)) => return Err(failed(reason)),
            Err(err) => return Err(failed(format!("plugin_{}: {err}", err.kind()))),
        };
        let receipt = receipt_from_wit(receipt).map_err(|err| failed(err.to_string()))?;
        // Only an answer about the attempt asked for counts: a plugin cannot use a lookup to
        // record a status on another attempt.
        if (receipt.message_id, receipt.attempt_id) != (request.message_id, request.attempt_id) {
            return Err(failed(format!(
                "the answer is about message {} attempt {}, not the one asked for",
                receipt.message_id, receipt.attempt_id
            )));
        }
        Ok(Some(receipt))
    }

    async fn send_inner(&self, request: &SendRequest) -> Result<SendAccepted, SendError> {
        let content = serde_json::to_string(&request.content).map_err(|err| {
            SendError::rejected(AttemptError::new("invalid_content", err.to_string()), false)
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
        let (result, request_left) = match self.slot(&self.engine.send_slots, "sends").await {
            Ok(_slot) => {
                self.call(timeout, async |instance, store| {
                    instance.call_send(store, &wit_request).await
                })
                .await
            }
            // Nothing ran, nothing left: a retryable refusal (`plugin_busy`), never an answer of
            // the provider's.
            Err(busy) => (Err(busy), false),
        };
        match result {
            Ok(wit::SendResult::Accepted(accepted)) => Ok(SendAccepted {
                provider_message_id: accepted.provider_message_id,
            }),
            Ok(wit::SendResult::Rejected(rejection)) => Err(SendError::Rejected {
                error: AttemptError::new(rejection.code, rejection.message),
                retryable: rejection.retryable,
                retry_after: rejection
                    .retry_after_seconds
                    .map(|s| Duration::from_secs(u64::from(s))),
            }),
            Ok(wit::SendResult::InDoubt(reason)) => Err(SendError::InDoubt(reason)),
            Err(err) => {
                tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                    attempt_id = %request.attempt_id, error = %err, "plugin send failed");
                Err(err.into_send_error(request_left))
            }
        }
    }

    async fn parse_inbound_inner(
        &self,
        request: &CallbackRequest,
    ) -> Result<InboundOutcome, CallbackError> {
        if !self.info.inbound {
            return Err(CallbackError::Malformed(
                "this provider account takes no inbound messages".to_owned(),
            ));
        }
        let wit_request = callback_request_to_wit(request);
        let timeout = self.engine.limits.callback_timeout;
        let _slot = self
            .slot(&self.engine.callback_slots, "callbacks")
            .await
            .map_err(CallbackError::from)?;
        let (result, _) = self
            .call_instance(timeout, async |_, instance, store| {
                let parse: InboundFunc = instance.get_typed_func(&mut *store, INBOUND_EXPORT)?;
                let (answer,) = parse.call_async(&mut *store, (wit_request,)).await?;
                Ok(answer)
            })
            .await;
        let failed = |err: PluginError| {
            tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                error = %err, "plugin parse-inbound failed");
            CallbackError::from(err)
        };
        match result.map_err(failed)? {
            Ok(outcome) => Ok(InboundOutcome {
                messages: outcome
                    .messages
                    .into_iter()
                    .map(|m| InboundMessage {
                        from: m.from,
                        to: m.to,
                        text: m.text,
                        provider_message_id: m.provider_message_id,
                    })
                    .collect(),
                reply: outcome.reply.map(reply_from_wit),
            }),
            Err(err) => Err(callback_error_from_wit(err)),
        }
    }

    async fn parse_callback_inner(
        &self,
        request: &CallbackRequest,
    ) -> Result<CallbackOutcome, CallbackError> {
        let wit_request = callback_request_to_wit(request);
        let timeout = self.engine.limits.callback_timeout;
        let _slot = self
            .slot(&self.engine.callback_slots, "callbacks")
            .await
            .map_err(CallbackError::from)?;
        let (result, _) = self
            .call(timeout, async |instance, store| {
                instance.call_parse_callback(store, &wit_request).await
            })
            .await;
        let failed = |err: PluginError| {
            tracing::warn!(provider = %self.account.name, plugin = %self.info.name,
                error = %err, "plugin parse-callback failed");
            CallbackError::from(err)
        };
        match result.map_err(failed)? {
            Ok(outcome) => Ok(CallbackOutcome {
                receipts: outcome
                    .receipts
                    .into_iter()
                    .map(receipt_from_wit)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?,
                reply: outcome.reply.map(reply_from_wit),
            }),
            Err(err) => Err(callback_error_from_wit(err)),
        }
    }
}

fn reply_from_wit(reply: wit::CallbackReply) -> CallbackReply {
    CallbackReply {
        status: reply.status,
        content_type: reply.content_type,
        body: reply.body.into(),
    }
}

fn callback_error_from_wit(err: wit::CallbackError) -> CallbackError {
    match err {
        wit::CallbackError::InvalidSignature => CallbackError::InvalidSignature,
        wit::CallbackError::Malformed(reason) => CallbackError::Malformed(reason),
    }
}

fn callback_request_to_wit(request: &CallbackRequest) -> wit::CallbackRequest {
    wit::CallbackRequest {
        method: request.method.as_str().to_owned(),
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

    fn served_by(&self) -> String {
        PluginProvider::served_by(self)
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

    fn parse_callback<'a>(
        &'a self,
        request: &'a CallbackRequest,
    ) -> BoxFuture<'a, Result<CallbackOutcome, CallbackError>> {
        self.parse_callback_inner(request).boxed()
    }

    fn lookup_status<'a>(
        &'a self,
        request: &'a LookupRequest,
    ) -> BoxFuture<'a, Result<Option<Receipt>, LookupError>> {
        self.lookup_status_inner(request).boxed()
    }

    fn takes_inbound(&self) -> bool {
        self.info.inbound
    }

    fn parse_inbound<'a>(
        &'a self,
        request: &'a CallbackRequest,
    ) -> BoxFuture<'a, Result<InboundOutcome, CallbackError>> {
        self.parse_inbound_inner(request).boxed()
    }
}
