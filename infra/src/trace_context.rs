//! One trace per message. A message's W3C trace context (`traceparent`) is carried in the metadata
//! of each of its events (and so in Kafka headers); whoever acts on an event (the saga, a timer, a
//! receipt, the webhook sender) starts its span under the event's context, and the events it
//! appends carry that span's context in turn. The OpenTelemetry export itself is set up by the
//! binary (`hermes::traces`); this module is what the crates that act on messages need.
//!
//! Spans are only made while tracing is [`active`]: traces are exported, or JSON logs name each
//! line's trace. Otherwise a span would cost the accept path for nothing, and the metadata keeps
//! the client's own `traceparent` (or the message's, see `command_batcher`) as it is.
//!
//! Each span declares a `trace_id` field, which [`span_under`] fills in, so that a log line
//! written within it (JSON logs) names its trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Called once the process's subscriber has the OpenTelemetry layer (`hermes::traces`).
pub fn set_active() {
    ACTIVE.store(true, Ordering::Relaxed);
}

/// Whether spans are worth making: exported, or named in JSON logs.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The span `make` builds, under the trace context `traceparent` names (a new trace without one),
/// with its `trace_id` field filled in; [`Span::none`] while tracing is not [`active`].
pub fn span_under(traceparent: Option<&str>, make: impl FnOnce() -> Span) -> Span {
    if !active() {
        return Span::none();
    }
    let span = make();
    if let Some(parent) = traceparent.and_then(parse) {
        // Fails only if the span was started already, or is disabled: it then keeps its place.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// Links `span` to the span `traceparent` names (a request that started the work, but whose
/// trace is another message's, or none).
pub fn link(span: &Span, traceparent: Option<&str>) {
    if let Some(other) = traceparent.and_then(parse) {
        span.add_link(other);
    }
}

/// The `traceparent` to store with the events `span` writes: the span's own context, or
/// `fallback` (the context the work came with) when the span is not traced.
pub fn carried(span: &Span, fallback: Option<&str>) -> Option<String> {
    if !span.is_none() {
        let cx = span.context();
        let context = cx.span().span_context().clone();
        if context.is_valid() {
            return Some(format(&context));
        }
    }
    fallback.map(str::to_owned)
}

/// A stored or received `traceparent` (`00-<trace id>-<parent id>-<flags>`), as a remote span
/// context; `None` if it is not one.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The W3C `traceparent` of a span context (version 00).
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let context = parse(EXAMPLE).expect("the spec's example");
        assert_eq!(
            context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(format(&context), EXAMPLE);
    }

    #[test]
    fn anything_else_is_no_context() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn while_inactive_no_span_is_made_and_the_context_passes_through() {
        let span = span_under(Some(EXAMPLE), || tracing::info_span!("unused"));
        assert!(span.is_none());
        assert_eq!(carried(&span, Some(EXAMPLE)).as_deref(), Some(EXAMPLE));
        assert_eq!(carried(&span, None), None);
    }
}
