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

/// `traceparent` as stored, if `value` is a valid one: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
/// the trace and parent ids not all zeros. A later version (not `ff`) is read as the spec says,
/// by its first 55 characters followed by nothing or `-`; only those 55 are kept.
pub fn valid(value: &str) -> Option<&str> {
    let head = value.get(..55)?;
    let rest = &value[55..];
    let mut parts = head.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && (rest.is_empty() || (version != "00" && rest.starts_with('-')))
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(head)
}

/// A stored or received `traceparent`, as a remote span context; `None` if it is not [`valid`].
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let head = valid(traceparent)?;
    let (trace_id, span_id, flags) = (&head[3..35], &head[36..52], &head[53..55]);
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

    // The header as received (W3C Trace Context): what is kept, and what is dropped.
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_is_kept() {
        assert_eq!(valid(VALID), Some(VALID));
        assert_eq!(
            valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
            Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }

    #[test]
    fn anything_else_is_dropped() {
        for bad in [
            "",
            "hello",
            "<script>alert(1)</script>",
            &VALID.to_uppercase(),
            &format!("{VALID}-"),
            &format!("{VALID}x"),
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(valid(bad), None, "{bad:?}");
        }
    }

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
