//! Tenant webhooks, the pure part: which message events a tenant hears about and under which type
//! (`message.delivered`, ...), what each notice carries, and when a failed delivery is tried
//! again. The outbox subscriber (`projections::webhook_outbox`) and the sender
//! (`command::webhooks`) do the I/O.

use crate::message::{AttemptStatus, Message, MessageEvent};
use crate::{AttemptId, Channel, MessageId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// What a tenant's endpoint can subscribe to. The wire names are the Standard Webhooks `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeType {
    Accepted,
    AttemptSent,
    Delivered,
    Read,
    Failed,
    Expired,
    Cancelled,
    LateReceipt,
    StepSkipped,
}

impl NoticeType {
    pub const ALL: [NoticeType; 9] = [
        NoticeType::Accepted,
        NoticeType::AttemptSent,
        NoticeType::Delivered,
        NoticeType::Read,
        NoticeType::Failed,
        NoticeType::Expired,
        NoticeType::Cancelled,
        NoticeType::LateReceipt,
        NoticeType::StepSkipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeType::Accepted => "message.accepted",
            NoticeType::AttemptSent => "message.attempt_sent",
            NoticeType::Delivered => "message.delivered",
            NoticeType::Read => "message.read",
            NoticeType::Failed => "message.failed",
            NoticeType::Expired => "message.expired",
            NoticeType::Cancelled => "message.cancelled",
            NoticeType::LateReceipt => "message.late_receipt",
            NoticeType::StepSkipped => "message.step_skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One notice: the `type`, `timestamp` and `data` of a Standard Webhooks payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    #[serde(rename = "type", serialize_with = "notice_type")]
    pub notice_type: NoticeType,
    /// When what it tells happened (the event's time), not when it was sent.
    pub timestamp: DateTime<Utc>,
    pub data: NoticeData,
}

fn notice_type<S: serde::Serializer>(t: &NoticeType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

/// The message a notice is about, as it stands after the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticeData {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub message_id: MessageId,
    /// The message's status after the event (`accepted`, `sending`, `delivered`, ...).
    #[cfg_attr(feature = "openapi", schema(example = "delivered"))]
    pub status: String,
    /// The tenant's own reference, as given at accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The attempt the notice is about (attempt sent, delivered, read, late receipt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<NoticeAttempt>,
    /// The skipped step (step skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<NoticeStep>,
    /// Why the message failed, expired or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticeAttempt {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: AttemptId,
    /// The cascade step (from 0).
    pub step: usize,
    pub channel: Channel,
    /// The provider account that carried it.
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The attempt's status after the event (`sent`, `delivered`, `read`, `failed`, ...).
    pub status: AttemptStatus,
    /// The provider's error code on a failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticeStep {
    pub index: usize,
    pub channel: Channel,
    /// `suppressed`: the address was on the tenant's suppression list at accept.
    #[cfg_attr(feature = "openapi", schema(example = "suppressed"))]
    pub reason: String,
}

/// The notices one event gives, in order, from the message before it (`None` for the first
/// event) and after it.
///
/// - accepted: `MessageAccepted`, then one `step_skipped` per suppressed step;
/// - attempt_sent: the provider took the attempt;
/// - delivered / read: a receipt (not late) moved an attempt to delivered or read; a read receipt
///   with no delivered one before gives both, as read implies delivered. A message completed by
///   an attempt without such a receipt (a step `until: sent`) gives delivered on completion;
/// - late_receipt: any receipt after the cascade moved past its attempt (the tenant may have paid
///   twice);
/// - failed, expired, cancelled: the message ended so.
pub fn notices(before: Option<&Message>, after: &Message, event: &MessageEvent) -> Vec<Notice> {
    let data = |attempt: Option<NoticeAttempt>, step: Option<NoticeStep>| NoticeData {
        message_id: after.id,
        status: after.status.as_str().to_owned(),
        reference: after.spec.reference.clone(),
        attempt,
        step,
        reason: None,
    };
    let notice = |notice_type, data| Notice {
        notice_type,
        timestamp: event.at(),
        data,
    };
    let attempt = |id: &AttemptId| after.attempts.iter().find(|a| a.id == *id);
    let was = |id: &AttemptId| {
        before
            .and_then(|m| m.attempts.iter().find(|a| a.id == *id))
            .map(|a| a.status)
    };
    match event {
        MessageEvent::MessageAccepted { .. } => {
            let mut out = vec![notice(NoticeType::Accepted, data(None, None))];
            for &index in &after.spec.suppressed_steps {
                if let Some(step) = after.spec.cascade.get(index) {
                    let step = NoticeStep {
                        index,
                        channel: step.channel,
                        reason: "suppressed".into(),
                    };
                    out.push(notice(NoticeType::StepSkipped, data(None, Some(step))));
                }
            }
            out
        }
        MessageEvent::AttemptSent { attempt_id, .. } => attempt(attempt_id)
            .map(|a| notice(NoticeType::AttemptSent, data(Some(describe(a)), None)))
            .into_iter()
            .collect(),
        MessageEvent::ReceiptRecorded {
            attempt_id, late, ..
        } => {
            let Some(a) = attempt(attempt_id) else {
                return vec![];
            };
            if *late {
                return vec![notice(
                    NoticeType::LateReceipt,
                    data(Some(describe(a)), None),
                )];
            }
            let rank_before = was(attempt_id).map_or(0, AttemptStatus::rank);
            let mut out = vec![];
            let reached_delivered = matches!(a.status, AttemptStatus::Delivered)
                || matches!(a.status, AttemptStatus::Read);
            if reached_delivered && rank_before < AttemptStatus::Delivered.rank() {
                out.push(notice(NoticeType::Delivered, data(Some(describe(a)), None)));
            }
            if a.status == AttemptStatus::Read && was(attempt_id) != Some(AttemptStatus::Read) {
                out.push(notice(NoticeType::Read, data(Some(describe(a)), None)));
            }
            out
        }
        MessageEvent::MessageCompleted { attempt_id, .. } => match attempt(attempt_id) {
            // Completed without a delivered receipt: the step only waited for the send.
            Some(a) if a.status.rank() < AttemptStatus::Delivered.rank() => {
                vec![notice(NoticeType::Delivered, data(Some(describe(a)), None))]
            }
            _ => vec![],
        },
        MessageEvent::MessageFailed { .. }
        | MessageEvent::MessageExpired { .. }
        | MessageEvent::MessageCancelled { .. } => {
            let notice_type = match event {
                MessageEvent::MessageFailed { .. } => NoticeType::Failed,
                MessageEvent::MessageExpired { .. } => NoticeType::Expired,
                _ => NoticeType::Cancelled,
            };
            let mut data = data(None, None);
            data.reason = after.reason.clone();
            vec![notice(notice_type, data)]
        }
        _ => vec![],
    }
}

fn describe(a: &crate::message::Attempt) -> NoticeAttempt {
    NoticeAttempt {
        id: a.id,
        step: a.step_index,
        channel: a.channel,
        provider: a.provider.clone(),
        provider_message_id: a.provider_message_id.clone(),
        status: a.status,
        error_code: a.error.as_ref().map(|e| e.code.clone()),
    }
}

/// When a delivery that failed is tried again: exponential backoff (×4 from `base`, capped at
/// `cap`) with ±20% jitter, until `give_up_after` has passed since the first attempt; then the
/// delivery has failed. The standard schedule (base 5 s, cap 8 h, 24 h) tries at about 0, 5 s,
/// 25 s, 105 s, 7 min, 28 min, 1.9 h, 7.6 h, 15.6 h and 23.6 h: ten attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub base: Duration,
    pub cap: Duration,
    pub give_up_after: Duration,
}

impl RetrySchedule {
    pub const STANDARD: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(5),
        cap: Duration::from_secs(8 * 3600),
        give_up_after: Duration::from_secs(24 * 3600),
    };

    /// The wait after the `failed`-th failed attempt (from 1), before jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        let factor = 4u32.saturating_pow(failed.saturating_sub(1).min(15));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// When to try next after the `failed`-th failed attempt, or `None` if that would be past the
    /// give-up time. `jitter` is uniform in [0, 1): the wait is scaled by 0.8 to 1.2.
    pub fn next_attempt(
        &self,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
        failed: u32,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let wait = self
            .delay(failed)
            .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
        let at = now + chrono::Duration::from_std(wait).ok()?;
        let give_up = first_attempt_at + chrono::Duration::from_std(self.give_up_after).ok()?;
        (at <= give_up).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_standard_schedule_tries_ten_times_within_a_day_then_gives_up() {
        let s = RetrySchedule::STANDARD;
        let (first, mut now, mut tries) = (t(0), t(0), 1);
        // Without jitter (0.5 scales by exactly 1).
        while let Some(next) = s.next_attempt(first, now, tries, 0.5) {
            assert!(next > now);
            now = next;
            tries += 1;
        }
        assert_eq!(tries, 10);
        assert!(now - first <= chrono::Duration::hours(24));
        assert!(now - first > chrono::Duration::hours(23));
        assert_eq!(s.delay(1), Duration::from_secs(5));
        assert_eq!(s.delay(2), Duration::from_secs(20));
        assert_eq!(s.delay(8), Duration::from_secs(8 * 3600), "capped");
        assert_eq!(s.delay(40), Duration::from_secs(8 * 3600), "no overflow");
    }

    #[test]
    fn jitter_spreads_a_wait_by_a_fifth_either_way() {
        let s = RetrySchedule::STANDARD;
        let at = |j| s.next_attempt(t(0), t(0), 3, j).unwrap() - t(0);
        assert_eq!(at(0.0), chrono::Duration::seconds(64));
        assert_eq!(at(0.5), chrono::Duration::seconds(80));
        assert!(at(0.999) < chrono::Duration::seconds(96));
    }

    #[test]
    fn notice_types_have_their_wire_names_and_parse_back() {
        for t in NoticeType::ALL {
            assert!(t.as_str().starts_with("message."));
            assert_eq!(NoticeType::parse(t.as_str()), Some(t));
        }
        assert_eq!(NoticeType::parse("message.unknown"), None);
    }
}
