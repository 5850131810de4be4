//! `hermes audit <message-id>`: a message's history from the event log, as a readable timeline.

use hermes_domain::MessageId;
use hermes_domain::message::{Message, MessageEvent};
use hermes_infra::event_store::{self, Cause};
use sqlx::PgPool;
use std::collections::HashMap;
use std::fmt::Write;
use uuid::Uuid;

/// The timeline as text; `None` when the message does not exist.
pub async fn timeline(pool: &PgPool, id: MessageId) -> anyhow::Result<Option<String>> {
    let mut conn = pool.acquire().await?;
    let stored = event_store::load_stream(&mut conn, "message", id.0).await?;
    let Some(first) = stored.first() else {
        return Ok(None);
    };
    let mut out = String::new();
    writeln!(out, "message {id} (tenant {})", first.tenant_id)?;
    let mut state: Option<Message> = None;
    let versions: HashMap<Uuid, i64> = stored
        .iter()
        .map(|e| (e.event_id, e.stream_version))
        .collect();
    for e in &stored {
        let event = MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload.clone())?;
        let actor = e.metadata.0.actor.as_deref().unwrap_or("-");
        let cause = e
            .metadata
            .0
            .cause
            .as_ref()
            .map(|c| format!(" <- {}", describe_cause(c, &versions)))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  #{:<3} {:<18} {}  [{actor}{cause}]",
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.stream_version,
            e.event_type,
            describe(&event, state.as_ref())
        )?;
        state = Message::apply(state, id, &event);
    }
    if let Some(m) = state {
        writeln!(out, "status: {}", m.status.as_str())?;
    }
    Ok(Some(out))
}

/// What caused an event, in a few words: an event of the same message by its version.
fn describe_cause(cause: &Cause, versions: &HashMap<Uuid, i64>) -> String {
    match cause {
        Cause::Request { request_id } => format!("request {request_id}"),
        Cause::Timer { timer, timer_id } => {
            // `{"kind": "step_timeout", "step_index": 0}`: the kind, then its details.
            let kind = match timer {
                serde_json::Value::Object(m) => {
                    let mut words = vec![
                        m.get("kind")
                            .and_then(|k| k.as_str())
                            .unwrap_or("?")
                            .to_owned(),
                    ];
                    words.extend(
                        m.iter()
                            .filter(|(k, _)| *k != "kind")
                            .map(|(k, v)| format!("{k}={v}")),
                    );
                    words.join(" ")
                }
                other => other.to_string(),
            };
            format!("timer {kind} (#{timer_id})")
        }
        Cause::Receipt {
            provider, status, ..
        } => format!("receipt from {provider}: {status}"),
        Cause::StatusLookup { provider, status } => {
            format!("status lookup at {provider}: {status}")
        }
        Cause::Event {
            event_id,
            event_type,
        } => match versions.get(event_id) {
            Some(v) => format!("#{v} {event_type}"),
            None => format!("event {event_id} {event_type}"),
        },
    }
}

/// The last 8 characters: UUIDv7s share their leading (timestamp) characters.
fn short(id: impl std::fmt::Display) -> String {
    let s = id.to_string();
    s[s.len() - 8..].to_owned()
}

fn describe(event: &MessageEvent, state: Option<&Message>) -> String {
    let provider_of = |a| {
        state
            .and_then(|m| m.attempt(a))
            .map(|a| format!("{} via {}", a.channel, a.provider))
            .unwrap_or_default()
    };
    match event {
        MessageEvent::MessageAccepted {
            spec, expires_at, ..
        } => {
            let steps: Vec<String> = spec
                .cascade
                .iter()
                .map(|s| {
                    format!(
                        "{} ({}s, until {})",
                        s.channel,
                        s.timeout_seconds,
                        s.until.as_str()
                    )
                })
                .collect();
            let ttl = expires_at
                .map(|e| format!(", expires {}", e.format("%H:%M:%S")))
                .unwrap_or_default();
            let policy = spec
                .cascade_policy
                .as_ref()
                .map(|p| format!(" (policy {} v{})", p.name, p.version))
                .unwrap_or_default();
            format!("cascade {}{policy}{ttl}", steps.join(" -> "))
        }
        MessageEvent::StepStarted {
            step_index,
            channel,
            timeout_at,
            ..
        } => format!(
            "step {} ({channel}) started{}",
            step_index + 1,
            times_out(timeout_at.as_ref())
        ),
        MessageEvent::AttemptDispatched {
            attempt_id,
            channel,
            provider,
            served_by,
            cost,
            step_timeout_at,
            ..
        } => format!(
            "attempt {} dispatched: {channel} via {provider}{}{}{}",
            short(attempt_id),
            served_by
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            cost.as_ref()
                .map(|c| format!(", {} × {} = {}", c.units, c.unit_price, c.price))
                .unwrap_or_default(),
            times_out(step_timeout_at.as_ref()).replacen(",", "; the step", 1)
        ),
        MessageEvent::StepUnserved {
            step_index,
            timeout_at,
            ..
        } => format!(
            "step {}: no provider account can serve it{}",
            step_index + 1,
            times_out(Some(timeout_at))
        ),
        MessageEvent::StepDeferred {
            step_index,
            until,
            reason,
            ..
        } => format!(
            "step {} deferred until {} ({})",
            step_index + 1,
            until.format("%Y-%m-%d %H:%M:%S UTC"),
            reason.replace('_', " ")
        ),
        MessageEvent::StepResumed {
            step_index,
            channel,
            ..
        } => format!("step {} ({channel}) resumed", step_index + 1),
        MessageEvent::AttemptInDoubt {
            attempt_id, reason, ..
        } => {
            format!(
                "attempt {} in doubt ({}): {reason}",
                short(attempt_id),
                provider_of(*attempt_id)
            )
        }
        MessageEvent::AttemptSent {
            attempt_id,
            provider_message_id,
            ..
        } => format!(
            "attempt {} accepted by the provider (id {})",
            short(attempt_id),
            provider_message_id.as_deref().unwrap_or("-")
        ),
        MessageEvent::AttemptRejected {
            attempt_id,
            error,
            retryable,
            failover,
            retry_at,
            ..
        } => format!(
            "attempt {} rejected: {} {}{}{}{}",
            short(attempt_id),
            error.code,
            error.message,
            if *retryable { " (retryable)" } else { "" },
            if *failover { ", failing over" } else { "" },
            retry_at
                .map(|at| format!(", retrying at {}", at.format("%H:%M:%S%.3f")))
                .unwrap_or_default()
        ),
        MessageEvent::RetryDue {
            step_index, after, ..
        } => format!(
            "step {}: retry after attempt {} is due",
            step_index + 1,
            short(after)
        ),
        MessageEvent::ReceiptRecorded {
            attempt_id,
            status,
            error,
            late,
            ..
        } => format!(
            "receipt for attempt {}: {}{}{}",
            short(attempt_id),
            serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            error
                .as_ref()
                .map(|e| format!(" ({})", e.code))
                .unwrap_or_default(),
            if *late {
                " — LATE: the cascade had moved on"
            } else {
                ""
            }
        ),
        MessageEvent::StepTimedOut {
            step_index,
            attempt_id,
            ..
        } => format!(
            "step {} timed out{}",
            step_index + 1,
            attempt_id
                .map(|a| format!(" waiting on attempt {}", short(a)))
                .unwrap_or_default()
        ),
        MessageEvent::MessageCompleted {
            status, attempt_id, ..
        } => format!("message {status:?} by attempt {}", short(attempt_id)).to_lowercase(),
        MessageEvent::MessageFailed { reason, .. } => format!("message failed: {reason}"),
        MessageEvent::MessageExpired { .. } => "message expired (ttl)".into(),
        MessageEvent::MessageCancelled { .. } => "message cancelled".into(),
    }
}

/// `, times out HH:MM:SS.mmm` when a step's clock is known.
fn times_out(at: Option<&chrono::DateTime<chrono::Utc>>) -> String {
    at.map(|at| format!(", times out {}", at.format("%H:%M:%S%.3f")))
        .unwrap_or_default()
}

/// `hermes verify`'s report as text: what was checked, then each problem on a line of its own.
pub fn describe_verification(report: &hermes_infra::log_integrity::Report) -> String {
    use hermes_infra::log_integrity::Problem;
    let mut out = format!(
        "checked {} events in {} streams against their hash chains, and {} checkpoints of the log\n",
        report.events, report.streams, report.checkpoints
    );
    if report.before_chain > 0 {
        out += &format!(
            "{} events were recorded before the chain existed (migration 0017) and could not be checked\n",
            report.before_chain
        );
    }
    for problem in &report.problems {
        let line = match problem {
            Problem::Altered {
                stream_id,
                stream_version,
                event_id,
            } => format!(
                "ALTERED  stream {stream_id} version {stream_version} (event {event_id}): its hash does not match; it or the event before it was edited or moved"
            ),
            Problem::Missing {
                stream_id,
                from,
                to,
            } => format!("MISSING  stream {stream_id} versions {from} to {to}: removed"),
            Problem::Unsealed {
                stream_id,
                stream_version,
                event_id,
            } => format!(
                "UNSEALED stream {stream_id} version {stream_version} (event {event_id}): its hash was removed"
            ),
            Problem::CheckpointMismatch {
                checkpoint,
                recorded_at,
                events_expected,
                events_found,
            } => format!(
                "CHECKPOINT {checkpoint} of {recorded_at}: covered {events_expected} events, {events_found} found now, or their order changed: events were removed, added or reordered before it"
            ),
        };
        out += &line;
        out.push('\n');
    }
    if report.intact() {
        out += "intact: no event was edited, removed or reordered\n";
    } else {
        out += &format!("{} problems found\n", report.problems.len());
    }
    out
}
