//! Logs and traces: the process's `tracing` subscriber. Logs go to stderr, filtered by `RUST_LOG`,
//! as text or (`HERMES_LOG_FORMAT=json`) one JSON object per line, with the spans the line was
//! written in: a line about a message names its message, tenant and trace.
//! Spans go out as OpenTelemetry traces over OTLP (HTTP, protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the SDK reads
//! the other standard variables itself (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, ...). What the spans are: `hermes_infra::trace_context`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the trace exporter running; dropping it sends the spans still buffered.
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("traces: the last spans could not be sent: {e}");
        }
    }
}

/// How log lines are written (`HERMES_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `HERMES_LOG_FORMAT`: `text` (the default) or `json`.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::parse(std::env::var("HERMES_LOG_FORMAT").ok().as_deref())
    }

    fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        match value {
            None | Some("" | "text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => anyhow::bail!("HERMES_LOG_FORMAT is {other:?}: use text or json"),
        }
    }
}

/// Installs the process's subscriber: logs, and traces when an OTLP endpoint is configured.
pub fn init() -> anyhow::Result<Traces> {
    let format = LogFormat::from_env()?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        // Each line with the list of spans it was written in, and their fields: the message, the
        // tenant and the trace id of the work it belongs to.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let exported = otlp_from_env()?;
    let exporting = exported.is_some();
    // JSON logs name each line's trace: spans are made for them even with nothing to export (a
    // provider without an exporter gives them their ids).
    let provider = exported
        .or_else(|| (format == LogFormat::Json).then(|| SdkTracerProvider::builder().build()));
    let registry = tracing_subscriber::registry().with(logs);
    match &provider {
        Some(provider) => {
            registry.with(layer(provider)).try_init()?;
            hermes_infra::trace_context::set_active();
            if exporting {
                tracing::info!("exporting traces over OTLP");
            }
        }
        None => registry.try_init()?,
    }
    Ok(Traces { provider })
}

/// The OpenTelemetry layer for `provider`: Hermes's own spans and events, info and up (events
/// become span events). Other crates' spans (sqlx, hyper) are left out: a request's trace
/// shows what Hermes did, not every poll of a connection.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("hermes"))
        .with_level(true)
        // A static filter (by target and level), so that every other crate's callsites stay
        // disabled once and for all: a closure here would be asked at every trace! of hyper,
        // h2 and sqlx, on every request.
        .with_filter(Targets::new().with_target("hermes", Level::INFO))
}

/// The OTLP exporter the environment asks for, batching spans on its own thread.
fn otlp_from_env() -> anyhow::Result<Option<SdkTracerProvider>> {
    let configured = |name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !configured("OTEL_EXPORTER_OTLP_ENDPOINT")
        && !configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        return Ok(None);
    }
    // reqwest is built without a TLS provider of its own (see hermes_adapters::http); the
    // blocking client starts a runtime of its own, so it is built off the caller's.
    let client = std::thread::spawn(|| {
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(hermes_adapters::http::tls_config())
            .timeout(std::time::Duration::from_secs(10))
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP HTTP client panicked"))??;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name())
                    .build(),
            )
            .build(),
    ))
}

/// `OTEL_SERVICE_NAME`, or `hermes`.
fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "hermes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn the_log_format_is_text_json_or_refused() {
        assert_eq!(LogFormat::parse(None).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("text")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("json")).unwrap(), LogFormat::Json);
        let err = LogFormat::parse(Some("JSON")).unwrap_err().to_string();
        assert_eq!(err, "HERMES_LOG_FORMAT is \"JSON\": use text or json");
    }
}
