//! Quiet hours: a tenant's daily window, in the recipient's local time, in which a cascade step
//! to a phone is not started. A step whose turn comes inside the window waits (`StepDeferred`)
//! until the window ends and then starts (`StepResumed`): deferred, never refused.
//!
//! The recipient's local time comes from the number's country. A country with one time zone
//! (most) gives it exactly. A country with several (the US, Canada, Russia, Australia, Brazil,
//! ...) is quiet while it is quiet in *any* of its zones, and so the step waits until the window
//! has ended in all of them: the number alone does not say where its owner is, and a text at
//! 6 am is the mistake quiet hours exist to prevent. Where the windows of a country's zones
//! leave no common time (a long window over many zones), the step starts at the first end of the
//! window at which the fewest of them are still quiet.

mod country_zones;

use crate::channel::Channel;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;

/// The window, daily, in the recipient's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// When the quiet starts, `"HH:MM"` or `"HH:MM:SS"` (24-hour clock), e.g. `"21:00"`.
    #[serde(serialize_with = "write_time", deserialize_with = "read_time")]
    pub start: NaiveTime,
    /// When it ends, e.g. `"08:00"`; before `start` for a window over midnight.
    #[serde(serialize_with = "write_time", deserialize_with = "read_time")]
    pub end: NaiveTime,
    /// The channels it holds back: `sms`, `whatsapp` (the channels sent to a phone number, whose
    /// country gives the local time). Both when absent.
    #[serde(default = "phone_channels")]
    pub channels: BTreeSet<Channel>,
}

fn phone_channels() -> BTreeSet<Channel> {
    [Channel::Sms, Channel::Whatsapp].into()
}

fn write_time<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
    let format = if t.second() == 0 { "%H:%M" } else { "%H:%M:%S" };
    s.serialize_str(&t.format(format).to_string())
}

fn read_time<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| serde::de::Error::custom("a time is \"HH:MM\" or \"HH:MM:SS\""))
}

/// `"HH:MM"` or `"HH:MM:SS"`, two digits each, no fraction.
fn parse_time(text: &str) -> Option<NaiveTime> {
    let shape_ok = matches!(text.len(), 5 | 8)
        && text.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape_ok {
        return None;
    }
    let format = if text.len() == 5 { "%H:%M" } else { "%H:%M:%S" };
    NaiveTime::parse_from_str(text, format).ok()
}

impl QuietHours {
    /// A window has a length, and holds back phone channels only.
    pub fn is_valid(&self) -> bool {
        self.start != self.end
            && !self.channels.is_empty()
            && self.channels.is_subset(&phone_channels())
    }

    /// Whether `local` is inside the window: from `start` (included) to `end` (excluded).
    fn holds(&self, local: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    fn quiet_in(&self, zone: Tz, at: DateTime<Utc>) -> bool {
        self.holds(at.with_timezone(&zone).time())
    }

    /// When a step on `channel` to a number of `country` may start, if not at `now`: `None` when
    /// the channel is not held back, the country's time zones are unknown, or it is not quiet.
    pub fn ends_at(
        &self,
        channel: Channel,
        country: &str,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !self.channels.contains(&channel) {
            return None;
        }
        let zones = zones_of(country);
        if !zones.iter().any(|&z| self.quiet_in(z, now)) {
            return None;
        }
        // The window ends in each zone at one of its next few `end`s: the first of those at
        // which no zone is quiet (or the fewest are) is the answer.
        zones
            .iter()
            .flat_map(|&z| self.next_ends(z, now))
            .min_by_key(|&t| (zones.iter().filter(|&&z| self.quiet_in(z, t)).count(), t))
    }

    /// The next times after `now` at which the window ends in `zone` (over three days: enough
    /// for any window and any offset between zones).
    fn next_ends(&self, zone: Tz, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let today = now.with_timezone(&zone).date_naive();
        (0..3)
            .filter_map(|days| {
                let local = (today + Duration::days(days)).and_time(self.end);
                // In a DST gap the end's local time does not exist: the window ends when the
                // clock jumps past it.
                zone.from_local_datetime(&local).earliest().or_else(|| {
                    zone.from_local_datetime(&(local + Duration::hours(1)))
                        .earliest()
                })
            })
            .map(|t| t.with_timezone(&Utc))
            .filter(|&t| t > now)
            .collect()
    }
}

/// The IANA time zones in use in `country` (ISO 3166-1 alpha-2); none when it is unknown.
pub fn zones_of(country: &str) -> Vec<Tz> {
    country_zones::COUNTRY_ZONES
        .binary_search_by(|(c, _)| (*c).cmp(country))
        .map(|i| {
            country_zones::COUNTRY_ZONES[i]
                .1
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(value: serde_json::Value) -> QuietHours {
        serde_json::from_value(value).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn every_country_of_the_table_has_its_zones() {
        let table = country_zones::COUNTRY_ZONES;
        assert!(
            table.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, once each"
        );
        for (country, names) in table {
            assert_eq!(zones_of(country).len(), names.len(), "{country}: {names:?}");
        }
        assert_eq!(zones_of("GB"), vec![chrono_tz::Europe::London]);
        assert!(zones_of("US").contains(&chrono_tz::Pacific::Honolulu));
        assert!(zones_of("XX").is_empty());
    }

    #[test]
    fn a_window_reads_and_writes_hours_and_minutes_or_seconds() {
        let w = window(json!({"start": "21:00", "end": "08:00:30"}));
        assert_eq!(w.channels, phone_channels());
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"start": "21:00", "end": "08:00:30", "channels": ["sms", "whatsapp"]})
        );
        for bad in [
            "9:00",
            "21:00:0",
            "24:00",
            "21:60",
            "21:00:00.5",
            "2100",
            "ab:cd",
        ] {
            assert!(
                serde_json::from_value::<QuietHours>(json!({"start": bad, "end": "08:00"}))
                    .is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<QuietHours>(json!({"start": "21:00", "end": "08:00", "x": 1}))
                .is_err()
        );
        assert!(!window(json!({"start": "21:00", "end": "21:00"})).is_valid());
        assert!(!window(json!({"start": "21:00", "end": "08:00", "channels": []})).is_valid());
        assert!(
            !window(json!({"start": "21:00", "end": "08:00", "channels": ["email"]})).is_valid()
        );
        assert!(window(json!({"start": "21:00", "end": "08:00", "channels": ["sms"]})).is_valid());
    }

    #[test]
    fn a_step_in_the_window_waits_for_its_end_in_the_recipients_zone() {
        let w = window(json!({"start": "21:00", "end": "08:00"}));
        // London is on GMT in December: 23:30 UTC is 23:30 there.
        let night = utc("2026-12-04T23:30:00Z");
        assert_eq!(
            w.ends_at(Channel::Sms, "GB", night),
            Some(utc("2026-12-05T08:00:00Z"))
        );
        // Tallinn is two hours ahead: 07:30 UTC is 09:30 there, past the window.
        assert_eq!(
            w.ends_at(Channel::Sms, "EE", utc("2026-12-05T07:30:00Z")),
            None
        );
        // The window's start is in it, its end is not.
        assert!(
            w.ends_at(Channel::Sms, "GB", utc("2026-12-04T21:00:00Z"))
                .is_some()
        );
        assert_eq!(
            w.ends_at(Channel::Sms, "GB", utc("2026-12-05T08:00:00Z")),
            None
        );
        // In July London is on BST (UTC+1): the window ends at 07:00 UTC.
        assert_eq!(
            w.ends_at(Channel::Whatsapp, "GB", utc("2026-07-04T22:30:00Z")),
            Some(utc("2026-07-05T07:00:00Z"))
        );
    }

    #[test]
    fn only_the_windows_channels_and_known_countries_wait() {
        let w = window(json!({"start": "21:00", "end": "08:00", "channels": ["sms"]}));
        let night = utc("2026-12-04T23:30:00Z");
        assert!(w.ends_at(Channel::Sms, "GB", night).is_some());
        assert_eq!(w.ends_at(Channel::Whatsapp, "GB", night), None);
        assert_eq!(w.ends_at(Channel::Sms, "XX", night), None);
    }

    #[test]
    fn a_window_within_a_day_holds_between_its_times() {
        let w = window(json!({"start": "12:00", "end": "14:00"}));
        assert_eq!(
            w.ends_at(Channel::Sms, "GB", utc("2026-12-04T13:00:00Z")),
            Some(utc("2026-12-04T14:00:00Z"))
        );
        assert_eq!(
            w.ends_at(Channel::Sms, "GB", utc("2026-12-04T11:59:59Z")),
            None
        );
        assert_eq!(
            w.ends_at(Channel::Sms, "GB", utc("2026-12-04T14:00:00Z")),
            None
        );
    }

    #[test]
    fn a_country_of_several_zones_waits_until_the_window_ends_in_all() {
        let w = window(json!({"start": "21:00", "end": "08:00"}));
        // 14:00 UTC in December: 09:00 in New York, but 04:00 in Honolulu (UTC-10). The window
        // ends last in Honolulu, and in the Aleutians (UTC-10 in winter too): 18:00 UTC.
        let morning_east = utc("2026-12-04T14:00:00Z");
        assert_eq!(
            w.ends_at(Channel::Sms, "US", morning_east),
            Some(utc("2026-12-04T18:00:00Z"))
        );
        // 02:30 UTC: 21:30 in New York, quiet there although 16:30 in Honolulu.
        assert_eq!(
            w.ends_at(Channel::Sms, "US", utc("2026-12-05T02:30:00Z")),
            Some(utc("2026-12-05T18:00:00Z"))
        );
        assert_eq!(
            w.ends_at(Channel::Sms, "US", utc("2026-12-04T20:00:00Z")),
            None
        );
    }

    #[test]
    fn a_window_no_time_escapes_in_a_wide_country_ends_where_the_fewest_zones_are_quiet() {
        // 18:00 to 09:00 in every zone from Kaliningrad (UTC+2) to Kamchatka (UTC+12) leaves
        // no time free everywhere: the step starts at an end of the window, within a day, at
        // which the fewest zones are still quiet.
        let w = window(json!({"start": "18:00", "end": "09:00"}));
        let zones = zones_of("RU");
        let now = utc("2026-12-04T20:00:00Z");
        let quiet_at = |t| zones.iter().filter(|&&z| w.quiet_in(z, t)).count();
        let mut t = now;
        let fewest = std::iter::from_fn(|| {
            t += Duration::minutes(1);
            Some(quiet_at(t))
        })
        .take(24 * 60)
        .min()
        .unwrap();
        assert!(fewest > 0, "no common time");
        let ends = w.ends_at(Channel::Sms, "RU", now).unwrap();
        assert!(ends > now && ends <= now + Duration::days(1), "{ends}");
        assert_eq!(quiet_at(ends), fewest, "{ends}");
    }
}
