//! Fires due timers as commands. Any number of pollers may run: claims are leased with
//! `FOR UPDATE SKIP LOCKED`, and a timer row is deleted in the transaction that handles it.
//! A step timeout first asks the provider about the step's unanswered attempt
//! ([`Reconciler`]): a receipt that was lost is recorded before the cascade would move on.

use crate::handler::{CommandError, CommandHandler};
use crate::reconcile::Reconciler;
use futures::StreamExt;
use hermes_domain::MessageId;
use hermes_domain::message::{MessageCommand, TimerKind};
use hermes_infra::event_store::{self, Cause, EventMetadata};
use hermes_infra::timers::{self, DueTimer};
use hermes_infra::trace_context;
use hermes_infra::{content_dedup, idempotency};
use std::time::{Duration, Instant};
use tracing::Instrument;

const CLAIM_LIMIT: i64 = 200;
/// How long a claimed timer is ours. Short, so a timer claimed by a process that died fires
/// soon elsewhere; firing twice is harmless (the aggregate ignores a timer that no longer applies).
const LEASE: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 32;
const PURGE_EVERY: Duration = Duration::from_secs(600);

pub async fn run(handler: CommandHandler, reconciler: Reconciler) {
    let mut last_purge: Option<Instant> = None;
    loop {
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            match idempotency::purge_expired(handler.pool()).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency keys deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency key purge failed"),
            }
            match content_dedup::purge_expired(handler.pool()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(purged = n, "expired content fingerprints deleted")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "content fingerprint purge failed"),
            }
            last_purge = Some(Instant::now());
        }
        match timers::claim_due(handler.pool(), chrono::Utc::now(), CLAIM_LIMIT, LEASE).await {
            Ok(due) => {
                let full = due.len() as i64 == CLAIM_LIMIT;
                futures::stream::iter(due)
                    .for_each_concurrent(CONCURRENCY, |t| {
                        let (handler, reconciler) = (&handler, &reconciler);
                        async move {
                            if let Err(e) = fire(handler, reconciler, &t).await {
                                tracing::warn!(timer = t.id, error = %e, "timer failed; it fires again when its lease ends");
                            }
                        }
                    })
                    .await;
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming due timers failed"),
        }
        tokio::time::sleep(IDLE).await;
    }
}

async fn fire(
    handler: &CommandHandler,
    reconciler: &Reconciler,
    t: &DueTimer,
) -> Result<(), CommandError> {
    let kind: TimerKind = serde_json::from_value(t.kind.clone())?;
    let span = timer_span(handler, t).await;
    fire_in(handler, reconciler, t, kind, &span)
        .instrument(span.clone())
        .await
}

/// A timer's span, in its message's trace (under the message's latest traced event).
/// [`tracing::Span::none`] while traces are not exported.
async fn timer_span(handler: &CommandHandler, t: &DueTimer) -> tracing::Span {
    if !trace_context::active() {
        return tracing::Span::none();
    }
    let parent =
        event_store::latest_traceparent(handler.pool(), crate::handler::STREAM_TYPE, t.stream_id)
            .await
            .ok()
            .flatten();
    trace_context::span_under(parent.as_deref(), || {
        tracing::info_span!(
            "timer",
            otel.name = "timer.fire",
            trace_id = tracing::field::Empty,
            hermes.message_id = %t.stream_id,
            hermes.timer = %t.kind,
        )
    })
}

async fn fire_in(
    handler: &CommandHandler,
    reconciler: &Reconciler,
    t: &DueTimer,
    kind: TimerKind,
    span: &tracing::Span,
) -> Result<(), CommandError> {
    // If this fails (the database), the timer fires again when its lease ends.
    reconciler
        .before_timer(MessageId(t.stream_id), kind)
        .await?;
    let metadata = EventMetadata {
        traceparent: trace_context::carried(span, None),
        actor: Some("timer".into()),
        cause: Some(Cause::Timer {
            timer: t.kind.clone(),
            timer_id: t.id,
        }),
        ..Default::default()
    };
    match handler
        .execute(
            MessageId(t.stream_id),
            None,
            &MessageCommand::FireTimer(kind),
            &metadata,
            Some(t.id),
        )
        .await
    {
        // A timer of a message that does not exist is deleted with the batch all the same.
        Ok(_) | Err(CommandError::NotFound) => {
            let late = (chrono::Utc::now() - t.due_at).to_std().unwrap_or_default();
            metrics::histogram!("hermes_timer_lateness_seconds").record(late.as_secs_f64());
            Ok(())
        }
        Err(e) => Err(e),
    }
}
