//! The Tenant aggregate: one customer of Hermes, its lifecycle, its settings and its API keys.
//!
//! Like a message, a tenant is its events: the write side folds them into a [`Tenant`], asks it
//! to decide a command, and appends what it returns. Every command is idempotent where that
//! makes sense (suspending a suspended tenant records nothing), and a deactivated tenant is
//! final: it keeps its history but takes no command except revoking keys.
//!
//! Keys are issued outside (the random key and its hash are I/O); the aggregate records the key's
//! id, its printable prefix and its SHA-256, never the key.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

use crate::channel::Channel;
use crate::phone::is_country_code;
use crate::quiet_hours::QuietHours;
use crate::rate_limit::{MAX_PER_SECOND, RateLimit};
use crate::routing::RoutingRule;
use crate::validation::characters::first_unreadable;
use crate::validation::check_policy_steps;

/// Longest tenant or key name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest overlap a rotated key keeps working for: long enough for a weekly deploy.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::days(30);
/// How long a rotated key keeps working when the rotation does not say: a day for every client
/// to move to the new key.
pub const DEFAULT_ROTATION_OVERLAP_SECONDS: i64 = 86_400;
/// Longest suspension or deactivation reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Most SMS segments a tenant may allow per message (the providers' own ceiling: Twilio refuses
/// a body over 1,600 characters, at most 11 GSM-7 segments; a UCS-2 body of 1,600 is 24).
pub const MAX_SMS_SEGMENTS_LIMIT: u32 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Its keys work.
    Active,
    /// Its keys are refused (`403 tenant_suspended`) until it is reactivated.
    Suspended,
    /// Final: its keys are refused (`403 tenant_deactivated`); its history stays.
    Deactivated,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            "deactivated" => Some(TenantStatus::Deactivated),
            _ => None,
        }
    }
}

/// What a tenant may change about how Hermes treats its messages. Each field is optional:
/// absent means the platform's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Most SMS segments (GSM-7 or UCS-2 parts) one message's SMS may take; a longer text is
    /// refused at accept (`422 content_too_long`). Default: no cap below the providers' 1,600
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sms_segments: Option<u32>,
    /// Messages the tenant may send, over all channels (`429 rate_limited` past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Per channel: a message counts against the limit of every channel its cascade may use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_rate_limits: BTreeMap<Channel, RateLimit>,
    /// The countries (ISO 3166-1 alpha-2) an SMS or WhatsApp step may send to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_countries: Option<BTreeSet<String>>,
    /// Named cascades a message may ask for by name (`"cascade": "otp"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cascade_policies: BTreeMap<String, CascadePolicy>,
    /// Refuse a message whose recipient and content are those of one accepted less than this
    /// many seconds ago (`409 duplicate_content`); 1 to 86,400. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_seconds: Option<u32>,
    /// Per channel: which provider accounts serve the tenant's steps and how one is picked
    /// (`hermes_domain::routing`). Absent: every account of the channel, in priority order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<Channel, RoutingRule>,
    /// A daily window, in the recipient's local time, in which phone steps wait instead of
    /// starting (`crate::quiet_hours`). None when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// A named cascade: the steps, as a message's `cascade` list, and the version they have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadePolicy {
    pub steps: serde_json::Value,
    /// Set by Hermes, not the operator: the tenant's stream version at which the policy took
    /// these steps, so a message can say which shape of the policy it ran.
    #[serde(default)]
    pub version: i64,
}

/// Longest duplicate window a tenant may set: a day.
pub const MAX_DEDUP_WINDOW_SECONDS: u32 = 86_400;

/// Longest cascade policy name.
pub const MAX_POLICY_NAME_CHARS: usize = 64;

fn is_policy_name(name: &str) -> bool {
    (1..=MAX_POLICY_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl TenantSettings {
    /// These settings with a JSON merge patch (RFC 7396) applied: a field given replaces the
    /// current value, `null` returns it to the default, an absent one is kept.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<TenantSettings, TenantError> {
        if !patch.is_object() {
            return Err(TenantError::InvalidSetting);
        }
        let mut current = serde_json::to_value(self).expect("settings serialize");
        merge_patch(&mut current, patch);
        serde_json::from_value(current).map_err(|_| TenantError::InvalidSetting)
    }

    /// Whether every setting is within its range.
    pub fn is_valid(&self) -> bool {
        self.max_sms_segments
            .is_none_or(|n| (1..=MAX_SMS_SEGMENTS_LIMIT).contains(&n))
            && self.rate_limit.is_none_or(|l| l.is_valid())
            && self.channel_rate_limits.values().all(RateLimit::is_valid)
            && self
                .allowed_countries
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| is_country_code(c)))
            && self.routing.values().all(RoutingRule::is_valid)
            && self
                .dedup_window_seconds
                .is_none_or(|s| (1..=MAX_DEDUP_WINDOW_SECONDS).contains(&s))
            && self.quiet_hours.as_ref().is_none_or(QuietHours::is_valid)
    }
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let fields = target.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        if v.is_null() {
            fields.remove(k);
        } else {
            merge_patch(
                fields.entry(k.clone()).or_insert(serde_json::Value::Null),
                v,
            );
        }
    }
}

/// A key as the aggregate knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub prefix: String,
    pub name: Option<String>,
    pub revoked: bool,
    /// Set by a rotation: the key works until then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key about to be issued: made by the caller (random bytes), recorded by the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key_id: Uuid,
    pub prefix: String,
    /// SHA-256 of the key, lowercase hex.
    pub key_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TenantEvent {
    TenantCreated {
        name: String,
    },
    TenantRenamed {
        name: String,
    },
    TenantSuspended {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    TenantReactivated {},
    TenantDeactivated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The settings as they are after the change (not a diff), so one event tells them all.
    TenantSettingsChanged {
        settings: TenantSettings,
    },
    ApiKeyIssued {
        key_id: Uuid,
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        key_hash: String,
        /// The key this one replaces, when issued by a rotation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<Uuid>,
    },
    /// A rotated key: it keeps working until `expires_at`, then is refused.
    ApiKeyExpiring {
        key_id: Uuid,
        expires_at: DateTime<Utc>,
        replaced_by: Uuid,
    },
    ApiKeyRevoked {
        key_id: Uuid,
    },
}

impl TenantEvent {
    /// The stored `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            TenantEvent::TenantCreated { .. } => "TenantCreated",
            TenantEvent::TenantRenamed { .. } => "TenantRenamed",
            TenantEvent::TenantSuspended { .. } => "TenantSuspended",
            TenantEvent::TenantReactivated {} => "TenantReactivated",
            TenantEvent::TenantDeactivated { .. } => "TenantDeactivated",
            TenantEvent::TenantSettingsChanged { .. } => "TenantSettingsChanged",
            TenantEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            TenantEvent::ApiKeyExpiring { .. } => "ApiKeyExpiring",
            TenantEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("a name has 1 to {MAX_NAME_CHARS} characters and no control characters")]
    InvalidName,
    #[error("a reason has at most {MAX_REASON_CHARS} characters and no control characters")]
    InvalidReason,
    #[error("the tenant is deactivated: it takes no change")]
    Deactivated,
    #[error("the tenant has no key {0}")]
    NoKey(Uuid),
    #[error("key {0} is revoked or already rotated: rotate a key that is in use")]
    KeyNotRotatable(Uuid),
    #[error("the overlap is 0 to {} seconds", MAX_ROTATION_OVERLAP.num_seconds())]
    InvalidOverlap,
    #[error(
        "cascade policy {name:?}: {reason} (a name has 1 to {MAX_POLICY_NAME_CHARS} of a-z, 0-9, '-', '_')"
    )]
    InvalidCascadePolicy { name: String, reason: String },
    #[error(
        "settings are an object of known settings: max_sms_segments (1 to {MAX_SMS_SEGMENTS_LIMIT}), \
         rate_limit and channel_rate_limits.<channel> ({{\"per_second\": 1 to {MAX_PER_SECOND}, \
         \"burst\"?: 1 to {MAX_PER_SECOND}}}), allowed_countries ([\"US\", ...]: ISO 3166-1 \
         alpha-2 capitals), quiet_hours ({{\"start\": \"21:00\", \"end\": \"08:00\", \
         \"channels\"?: [\"sms\", \"whatsapp\"]}}, HH:MM or HH:MM:SS); null removes a setting"
    )]
    InvalidSetting,
}

impl TenantError {
    /// The stable code the APIs answer with.
    pub fn code(&self) -> &'static str {
        match self {
            TenantError::InvalidName => "invalid_name",
            TenantError::InvalidReason => "invalid_reason",
            TenantError::Deactivated => "tenant_deactivated",
            TenantError::NoKey(_) => "not_found",
            TenantError::KeyNotRotatable(_) => "key_not_rotatable",
            TenantError::InvalidOverlap => "invalid_overlap",
            TenantError::InvalidCascadePolicy { .. } => "invalid_cascade_policy",
            TenantError::InvalidSetting => "invalid_setting",
        }
    }
}

/// A tenant's state: the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub status: TenantStatus,
    pub settings: TenantSettings,
    pub keys: BTreeMap<Uuid, KeyState>,
    /// Events applied: the stream version the next append expects.
    pub version: i64,
}

/// Checks a tenant or key name and returns it trimmed.
pub fn valid_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || first_unreadable(name).is_some() {
        return Err(TenantError::InvalidName);
    }
    Ok(name.to_owned())
}

fn valid_reason(reason: Option<&str>) -> Result<Option<String>, TenantError> {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    if reason.chars().count() > MAX_REASON_CHARS || first_unreadable(reason).is_some() {
        return Err(TenantError::InvalidReason);
    }
    Ok(Some(reason.to_owned()))
}

fn valid_key_name(name: Option<&str>) -> Result<Option<String>, TenantError> {
    name.map(valid_name).transpose()
}

/// The events that create a tenant with its first key.
pub fn create(name: &str, first_key: NewKey) -> Result<Vec<TenantEvent>, TenantError> {
    let name = valid_name(name)?;
    Ok(vec![
        TenantEvent::TenantCreated { name },
        issued(first_key, None, None),
    ])
}

fn issued(key: NewKey, name: Option<String>, replaces: Option<Uuid>) -> TenantEvent {
    TenantEvent::ApiKeyIssued {
        key_id: key.key_id,
        prefix: key.prefix,
        name,
        key_hash: key.key_hash,
        replaces,
    }
}

impl Tenant {
    /// Folds a stream; `None` when it does not start with `TenantCreated`.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a TenantEvent>) -> Option<Tenant> {
        let mut events = events.into_iter();
        let Some(TenantEvent::TenantCreated { name }) = events.next() else {
            return None;
        };
        let mut tenant = Tenant {
            name: name.clone(),
            status: TenantStatus::Active,
            settings: TenantSettings::default(),
            keys: BTreeMap::new(),
            version: 1,
        };
        for e in events {
            tenant.apply(e);
        }
        Some(tenant)
    }

    pub fn apply(&mut self, event: &TenantEvent) {
        self.version += 1;
        match event {
            // Only ever first; `fold` takes it.
            TenantEvent::TenantCreated { .. } => {}
            TenantEvent::TenantRenamed { name } => self.name = name.clone(),
            TenantEvent::TenantSuspended { .. } => self.status = TenantStatus::Suspended,
            TenantEvent::TenantReactivated {} => self.status = TenantStatus::Active,
            TenantEvent::TenantDeactivated { .. } => self.status = TenantStatus::Deactivated,
            TenantEvent::TenantSettingsChanged { settings } => self.settings = settings.clone(),
            TenantEvent::ApiKeyIssued {
                key_id,
                prefix,
                name,
                ..
            } => {
                self.keys.insert(
                    *key_id,
                    KeyState {
                        prefix: prefix.clone(),
                        name: name.clone(),
                        revoked: false,
                        expires_at: None,
                    },
                );
            }
            TenantEvent::ApiKeyExpiring {
                key_id, expires_at, ..
            } => {
                if let Some(k) = self.keys.get_mut(key_id) {
                    k.expires_at = Some(*expires_at);
                }
            }
            TenantEvent::ApiKeyRevoked { key_id } => {
                if let Some(k) = self.keys.get_mut(key_id) {
                    k.revoked = true;
                }
            }
        }
    }

    fn not_deactivated(&self) -> Result<(), TenantError> {
        if self.status == TenantStatus::Deactivated {
            return Err(TenantError::Deactivated);
        }
        Ok(())
    }

    pub fn rename(&self, name: &str) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        let name = valid_name(name)?;
        if name == self.name {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::TenantRenamed { name }])
    }

    pub fn suspend(&self, reason: Option<&str>) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        let reason = valid_reason(reason)?;
        if self.status == TenantStatus::Suspended {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::TenantSuspended { reason }])
    }

    pub fn reactivate(&self) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        if self.status == TenantStatus::Active {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::TenantReactivated {}])
    }

    pub fn deactivate(&self, reason: Option<&str>) -> Result<Vec<TenantEvent>, TenantError> {
        let reason = valid_reason(reason)?;
        if self.status == TenantStatus::Deactivated {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::TenantDeactivated { reason }])
    }

    /// Records `settings`; a cascade policy whose steps change (or that is new) takes the version
    /// this change will have, the others keep theirs (whatever version was given).
    pub fn change_settings(
        &self,
        mut settings: TenantSettings,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        if !settings.is_valid() {
            return Err(TenantError::InvalidSetting);
        }
        for (name, policy) in &mut settings.cascade_policies {
            if !is_policy_name(name) {
                return Err(TenantError::InvalidCascadePolicy {
                    name: name.clone(),
                    reason: "not a valid name".into(),
                });
            }
            check_policy_steps(&policy.steps).map_err(|reason| {
                TenantError::InvalidCascadePolicy {
                    name: name.clone(),
                    reason,
                }
            })?;
            policy.version = match self.settings.cascade_policies.get(name) {
                Some(old) if old.steps == policy.steps => old.version,
                _ => self.version + 1,
            };
        }
        if settings == self.settings {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::TenantSettingsChanged { settings }])
    }

    pub fn issue_key(
        &self,
        key: NewKey,
        name: Option<&str>,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        let name = valid_key_name(name)?;
        Ok(vec![issued(key, name, None)])
    }

    /// Revoking a revoked key records nothing. Allowed on a deactivated tenant (it only closes).
    pub fn revoke_key(&self, key_id: Uuid) -> Result<Vec<TenantEvent>, TenantError> {
        let key = self.keys.get(&key_id).ok_or(TenantError::NoKey(key_id))?;
        if key.revoked {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::ApiKeyRevoked { key_id }])
    }

    /// Issues `new_key` under the old key's name; the old key keeps working for `overlap`, so
    /// clients can move to the new one without a moment refused.
    pub fn rotate_key(
        &self,
        key_id: Uuid,
        new_key: NewKey,
        overlap: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        self.not_deactivated()?;
        let old = self.keys.get(&key_id).ok_or(TenantError::NoKey(key_id))?;
        if old.revoked || old.expires_at.is_some() {
            return Err(TenantError::KeyNotRotatable(key_id));
        }
        if overlap < Duration::zero() || overlap > MAX_ROTATION_OVERLAP {
            return Err(TenantError::InvalidOverlap);
        }
        let replaced_by = new_key.key_id;
        Ok(vec![
            issued(new_key, old.name.clone(), Some(key_id)),
            TenantEvent::ApiKeyExpiring {
                key_id,
                expires_at: now + overlap,
                replaced_by,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> NewKey {
        NewKey {
            key_id: Uuid::from_bytes([n; 16]),
            prefix: format!("hms_{n:08x}"),
            key_hash: format!("{n:064x}"),
        }
    }

    fn given(events: &[TenantEvent]) -> Tenant {
        Tenant::fold(events).expect("a created tenant")
    }

    fn created() -> Vec<TenantEvent> {
        create("Acme", key(1)).unwrap()
    }

    fn then(history: &mut Vec<TenantEvent>, new: Vec<TenantEvent>) -> Tenant {
        history.extend(new);
        given(history)
    }

    #[test]
    fn a_new_tenant_is_active_with_one_key() {
        let t = given(&created());
        assert_eq!(t.name, "Acme");
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(t.version, 2);
        assert_eq!(t.keys.len(), 1);
        assert_eq!(t.keys[&key(1).key_id].prefix, "hms_00000001");
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(
            create("  Acme  ", key(1)).unwrap()[0],
            TenantEvent::TenantCreated {
                name: "Acme".into()
            }
        );
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert_eq!(
                create(bad, key(1)),
                Err(TenantError::InvalidName),
                "{bad:?}"
            );
        }
        assert!(create(&"é".repeat(MAX_NAME_CHARS), key(1)).is_ok());
    }

    #[test]
    fn suspend_and_reactivate_are_idempotent() {
        let mut h = created();
        let decided = given(&h).suspend(Some("unpaid")).unwrap();
        let t = then(&mut h, decided);
        assert_eq!(t.status, TenantStatus::Suspended);
        assert_eq!(t.suspend(None).unwrap(), vec![]);
        let t = then(&mut h, t.reactivate().unwrap());
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(t.reactivate().unwrap(), vec![]);
        assert_eq!(
            t.rename("Acme").unwrap(),
            vec![],
            "same name: nothing to record"
        );
    }

    #[test]
    fn a_deactivated_tenant_takes_nothing_but_key_revocations() {
        let mut h = created();
        let decided = given(&h).deactivate(None).unwrap();
        let t = then(&mut h, decided);
        assert_eq!(t.status, TenantStatus::Deactivated);
        assert_eq!(t.deactivate(None).unwrap(), vec![]);
        assert_eq!(t.reactivate(), Err(TenantError::Deactivated));
        assert_eq!(t.suspend(None), Err(TenantError::Deactivated));
        assert_eq!(t.rename("B"), Err(TenantError::Deactivated));
        assert_eq!(t.issue_key(key(2), None), Err(TenantError::Deactivated));
        assert_eq!(
            t.change_settings(TenantSettings::default()),
            Err(TenantError::Deactivated)
        );
        assert_eq!(
            t.revoke_key(key(1).key_id).unwrap(),
            vec![TenantEvent::ApiKeyRevoked {
                key_id: key(1).key_id
            }]
        );
    }

    #[test]
    fn rotation_issues_a_key_under_the_same_name_and_expires_the_old_one() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .to_utc();
        let mut h = created();
        let decided = given(&h).issue_key(key(2), Some("ci")).unwrap();
        let t = then(&mut h, decided);
        let t = then(
            &mut h,
            t.rotate_key(key(2).key_id, key(3), Duration::hours(1), now)
                .unwrap(),
        );
        assert_eq!(t.keys[&key(3).key_id].name.as_deref(), Some("ci"));
        assert_eq!(
            t.keys[&key(2).key_id].expires_at,
            Some(now + Duration::hours(1))
        );
        assert_eq!(t.keys[&key(3).key_id].expires_at, None);
        assert_eq!(
            t.rotate_key(key(2).key_id, key(4), Duration::hours(1), now),
            Err(TenantError::KeyNotRotatable(key(2).key_id)),
            "a key already rotated is not rotated again"
        );
        for overlap in [
            Duration::seconds(-1),
            MAX_ROTATION_OVERLAP + Duration::seconds(1),
        ] {
            assert_eq!(
                t.rotate_key(key(3).key_id, key(4), overlap, now),
                Err(TenantError::InvalidOverlap)
            );
        }
        let unknown = Uuid::from_bytes([9; 16]);
        assert_eq!(
            t.rotate_key(unknown, key(4), Duration::zero(), now),
            Err(TenantError::NoKey(unknown))
        );
    }

    #[test]
    fn revoking_twice_records_once() {
        let mut h = created();
        let decided = given(&h).revoke_key(key(1).key_id).unwrap();
        let t = then(&mut h, decided);
        assert!(t.keys[&key(1).key_id].revoked);
        assert_eq!(t.revoke_key(key(1).key_id).unwrap(), vec![]);
        assert_eq!(
            t.rotate_key(key(1).key_id, key(2), Duration::zero(), Utc::now()),
            Err(TenantError::KeyNotRotatable(key(1).key_id))
        );
    }

    #[test]
    fn settings_are_checked_and_recorded_whole() {
        let t = given(&created());
        for bad in [0, MAX_SMS_SEGMENTS_LIMIT + 1] {
            let s = TenantSettings {
                max_sms_segments: Some(bad),
                ..Default::default()
            };
            assert_eq!(t.change_settings(s), Err(TenantError::InvalidSetting));
        }
        let s = TenantSettings {
            max_sms_segments: Some(3),
            ..Default::default()
        };
        assert_eq!(
            t.change_settings(s.clone()).unwrap(),
            vec![TenantEvent::TenantSettingsChanged { settings: s }]
        );
        assert_eq!(
            t.change_settings(TenantSettings::default()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_settings_patch_replaces_resets_or_keeps_each_field() {
        let three = TenantSettings {
            max_sms_segments: Some(3),
            ..Default::default()
        };
        let d = TenantSettings::default();
        assert_eq!(
            d.merged(&serde_json::json!({"max_sms_segments": 3})),
            Ok(three.clone())
        );
        assert_eq!(three.merged(&serde_json::json!({})), Ok(three.clone()));
        assert_eq!(
            three.merged(&serde_json::json!({"max_sms_segments": null})),
            Ok(d.clone())
        );
        for bad in [
            serde_json::json!({"max_sms": 3}),
            serde_json::json!({"max_sms_segments": "3"}),
            serde_json::json!({"max_sms_segments": -1}),
            serde_json::json!([]),
            serde_json::json!({"channel_rate_limits": {"fax": {"per_second": 1}}}),
            serde_json::json!({"rate_limit": {"per_second": 1, "per_minute": 3}}),
            serde_json::json!({"allowed_countries": "US"}),
        ] {
            assert_eq!(d.merged(&bad), Err(TenantError::InvalidSetting), "{bad}");
        }
        // Nested objects merge key by key: one channel's limit changes, the other stays.
        let limited = d
            .merged(&serde_json::json!({"channel_rate_limits": {
                "sms": {"per_second": 5}, "email": {"per_second": 50, "burst": 100}}}))
            .unwrap();
        let patched = limited
            .merged(&serde_json::json!({"channel_rate_limits": {"sms": null}}))
            .unwrap();
        assert_eq!(
            serde_json::to_value(&patched).unwrap(),
            serde_json::json!({"channel_rate_limits": {"email": {"per_second": 50, "burst": 100}}})
        );
        let zero = d
            .merged(&serde_json::json!({"rate_limit": {"per_second": 0}}))
            .unwrap();
        let t = given(&created());
        assert_eq!(t.change_settings(zero), Err(TenantError::InvalidSetting));
        let lowercase = d
            .merged(&serde_json::json!({"allowed_countries": ["us"]}))
            .unwrap();
        assert_eq!(
            t.change_settings(lowercase),
            Err(TenantError::InvalidSetting)
        );
    }

    #[test]
    fn a_cascade_policy_is_checked_and_versioned_when_its_steps_change() {
        let mut h = created();
        let t = given(&h);
        let otp = serde_json::json!({"cascade_policies": {"otp": {"steps": [{"channel": "sms"}]}}});
        let decided = t.change_settings(t.settings.merged(&otp).unwrap()).unwrap();
        let t = then(&mut h, decided);
        let first = t.settings.cascade_policies["otp"].version;
        assert_eq!(first, t.version, "the version of the change that made it");
        // Another setting changes: the policy keeps its version, whatever the patch says.
        let decided = t
            .change_settings(
                t.settings
                    .merged(&serde_json::json!({"max_sms_segments": 2,
                        "cascade_policies": {"otp": {"version": 99}}}))
                    .unwrap(),
            )
            .unwrap();
        let t = then(&mut h, decided);
        assert_eq!(t.settings.cascade_policies["otp"].version, first);
        // Its steps change: a new version.
        let decided = t
            .change_settings(
                t.settings
                    .merged(&serde_json::json!({"cascade_policies": {"otp": {"steps": [
                        {"channel": "sms"}, {"channel": "email"}]}}}))
                    .unwrap(),
            )
            .unwrap();
        let t = then(&mut h, decided);
        assert_eq!(t.settings.cascade_policies["otp"].version, t.version);
        assert!(t.version > first);
        for (patch, code) in [
            (
                serde_json::json!({"cascade_policies": {"OTP": {"steps": [{"channel": "sms"}]}}}),
                "invalid_cascade_policy",
            ),
            (
                serde_json::json!({"cascade_policies": {"otp": {"steps": [{"channel": "fax"}]}}}),
                "invalid_cascade_policy",
            ),
            (
                serde_json::json!({"cascade_policies": {"otp": {"steps": []}}}),
                "invalid_cascade_policy",
            ),
            (
                serde_json::json!({"cascade_policies": {"otp": {"steps": "sms"}}}),
                "invalid_cascade_policy",
            ),
        ] {
            let err = t
                .change_settings(t.settings.merged(&patch).unwrap())
                .unwrap_err();
            assert_eq!(err.code(), code, "{patch}: {err}");
        }
    }

    #[test]
    fn events_keep_their_stored_shape() {
        let e = TenantEvent::ApiKeyExpiring {
            key_id: Uuid::nil(),
            expires_at: DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
                .unwrap()
                .to_utc(),
            replaced_by: Uuid::nil(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], e.event_type());
        assert_eq!(json["expires_at"], "2026-12-03T10:00:00Z");
        assert_eq!(serde_json::from_value::<TenantEvent>(json).unwrap(), e);
        let json = serde_json::to_value(TenantEvent::TenantReactivated {}).unwrap();
        assert_eq!(json, serde_json::json!({"type": "TenantReactivated"}));
        assert!(
            serde_json::from_value::<TenantSettings>(serde_json::json!({"max_sms": 3})).is_err(),
            "an unknown setting is refused, not ignored"
        );
    }
}
