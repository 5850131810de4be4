//! Routing: which provider account serves a step's next attempt, and the record of why.
//!
//! The candidates are the accounts of the step's channel the tenant may use (the platform's, and
//! its own: another tenant's never) not tried yet on the step, narrowed and ordered by the
//! tenant's rule for the channel (its override for the destination country first) when it has
//! one, else the tenant's own accounts then the platform's, each in priority order. Of those, the usable ones are the
//! accounts whose circuit is closed, or half-open with its probe free (the dispatch then claims
//! the probe). The rule's strategy picks among the usable ones:
//! - `priority`: the first, in the rule's (or the configured priority) order;
//! - `cost`: the cheapest for the destination country (an account's `*` price for countries it
//!   does not list; an account without a price comes last), ties in order;
//! - `weighted`: at random in proportion to the rule's weights, drawn from a seed the caller
//!   derives from the attempt, so a replay draws the same.
//!
//! When no candidate is usable, an open one is tried anyway, in order (trying beats failing the
//! step outright); the record says so.

use crate::channel::Channel;
use crate::circuit::CircuitState;
use crate::ids::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Prices per message unit (an SMS segment; one per message on other channels) by destination
/// country (ISO 3166-1 alpha-2), `*` for every other country.
pub type PriceTable = BTreeMap<String, f64>;

/// What the router knows of one provider account.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCandidate {
    pub name: String,
    pub channels: Vec<Channel>,
    /// The tenant whose own account this is (its credentials, for its messages only); `None` for
    /// a platform account.
    pub owner: Option<TenantId>,
    pub circuit: CircuitState,
    /// Half-open with no probe in flight: the account may take one send.
    pub probe_free: bool,
    pub success_rate: Option<f64>,
    pub latency_ms: Option<u64>,
    pub prices: Arc<PriceTable>,
}

impl ProviderCandidate {
    /// A closed account with no history and no prices (tests, the preview of a fresh process).
    pub fn new(name: &str, channels: &[Channel]) -> Self {
        Self {
            name: name.to_owned(),
            channels: channels.to_vec(),
            owner: None,
            circuit: CircuitState::Closed,
            probe_free: false,
            success_rate: None,
            latency_ms: None,
            prices: Arc::default(),
        }
    }

    /// Whether `tenant`'s messages may go through this account.
    pub fn serves_tenant(&self, tenant: Option<TenantId>) -> bool {
        self.owner.is_none_or(|owner| Some(owner) == tenant)
    }

    fn usable(&self) -> bool {
        self.circuit == CircuitState::Closed || self.probe_free
    }

    /// The price for `country`, or the account's `*` price.
    pub fn price(&self, country: Option<&str>) -> Option<f64> {
        country
            .and_then(|c| self.prices.get(c))
            .or_else(|| self.prices.get("*"))
            .copied()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Priority,
    Cost,
    Weighted,
}

/// Most accounts one rule may name.
pub const MAX_RULE_ACCOUNTS: usize = 32;

/// A tenant's routing rule for one channel (tenant setting `routing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    #[serde(default)]
    pub strategy: Strategy,
    /// The accounts the channel may use, in order; every account of the channel when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// For `weighted`: each account's share (an account not named gets none; all alike when
    /// none is named).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// Rules that replace this one for a destination country (ISO 3166-1 alpha-2); they may not
    /// nest further.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub countries: BTreeMap<String, RoutingRule>,
}

impl RoutingRule {
    pub fn is_valid(&self) -> bool {
        self.is_valid_at(0)
    }

    fn is_valid_at(&self, depth: usize) -> bool {
        let mut unique = self.accounts.clone();
        unique.sort();
        unique.dedup();
        self.accounts.len() <= MAX_RULE_ACCOUNTS
            && self.weights.len() <= MAX_RULE_ACCOUNTS
            && unique.len() == self.accounts.len()
            && self.accounts.iter().all(|n| is_account_name(n))
            && self.weights.keys().all(|n| is_account_name(n))
            && (depth == 0 || self.countries.is_empty())
            && self.countries.iter().all(|(country, rule)| {
                crate::phone::is_country_code(country) && rule.is_valid_at(depth + 1)
            })
    }

    /// The rule for `country`: its override, or itself.
    fn for_country(&self, country: Option<&str>) -> &RoutingRule {
        country.and_then(|c| self.countries.get(c)).unwrap_or(self)
    }
}

/// An account name as `hermes provider set` takes it.
fn is_account_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// One routing question.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Whose message: its own accounts are offered first, another tenant's never.
    pub tenant: Option<TenantId>,
    pub channel: Channel,
    /// The destination country, when the address has one (a phone number).
    pub country: Option<&'a str>,
    /// Accounts already tried on the step (a failover goes elsewhere).
    pub tried: &'a [&'a str],
    /// The tenant's rule for the channel.
    pub rule: Option<&'a RoutingRule>,
    /// Drawn from for `weighted`; derive it from the attempt so a replay draws the same.
    pub seed: u64,
}

impl RouteRequest<'_> {
    /// A channel's first usable platform account, in priority order, with no rule.
    pub fn any(channel: Channel) -> Self {
        RouteRequest {
            tenant: None,
            channel,
            country: None,
            tried: &[],
            rule: None,
            seed: 0,
        }
    }
}

/// Why this account: recorded on `AttemptDispatched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub strategy: Strategy,
    /// Whether a tenant's rule narrowed or ordered the candidates, and for which country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `first_usable`, `cheapest`, `weighted`, `probe` (a half-open account's trial send), or
    /// `every_circuit_open` (no usable account: an open one was tried anyway).
    pub reason: String,
    /// The candidates as the router saw them, in the rule's order.
    pub candidates: Vec<CandidateRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub account: String,
    pub circuit: CircuitState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteDecision {
    pub account: String,
    /// The account is half-open: the dispatch must claim its probe before sending.
    pub probe: bool,
    pub record: RouteRecord,
}

/// Picks the account for the next attempt of a step, or `None` when no account of the channel is
/// left to try.
pub fn route(req: &RouteRequest<'_>, candidates: &[ProviderCandidate]) -> Option<RouteDecision> {
    let rule = req.rule.map(|r| r.for_country(req.country));
    let serves =
        |c: &&ProviderCandidate| c.channels.contains(&req.channel) && c.serves_tenant(req.tenant);
    let ordered: Vec<&ProviderCandidate> = match rule {
        Some(rule) if !rule.accounts.is_empty() => rule
            .accounts
            .iter()
            .filter_map(|name| candidates.iter().find(|c| &c.name == name))
            .filter(serves)
            .collect(),
        _ => {
            let mut all: Vec<_> = candidates.iter().filter(serves).collect();
            // The tenant's own accounts first (a stable sort keeps priority order).
            all.sort_by_key(|c| c.owner.is_none());
            all
        }
    };
    let open: Vec<&ProviderCandidate> = ordered
        .iter()
        .copied()
        .filter(|c| !req.tried.contains(&c.name.as_str()))
        .collect();
    let usable: Vec<&ProviderCandidate> = open.iter().copied().filter(|c| c.usable()).collect();
    let strategy = rule.map(|r| r.strategy).unwrap_or_default();
    let (chosen, reason) = if usable.is_empty() {
        (*open.first()?, "every_circuit_open")
    } else {
        match strategy {
            Strategy::Priority => (usable[0], "first_usable"),
            Strategy::Cost => (cheapest(&usable, req.country), "cheapest"),
            Strategy::Weighted => (
                weighted(&usable, rule.map(|r| &r.weights), req.seed),
                "weighted",
            ),
        }
    };
    let probe = chosen.circuit != CircuitState::Closed && chosen.probe_free;
    let record = RouteRecord {
        strategy,
        rule: rule.map(|_| {
            match req
                .country
                .filter(|c| req.rule.is_some_and(|r| r.countries.contains_key(*c)))
            {
                Some(country) => format!("tenant:{}:{country}", req.channel),
                None => format!("tenant:{}", req.channel),
            }
        }),
        country: req.country.map(str::to_owned),
        reason: if probe { "probe" } else { reason }.to_owned(),
        candidates: open
            .iter()
            .map(|c| CandidateRecord {
                account: c.name.clone(),
                circuit: c.circuit,
                success_rate: c.success_rate,
                latency_ms: c.latency_ms,
                price: c.price(req.country),
            })
            .collect(),
    };
    Some(RouteDecision {
        account: chosen.name.clone(),
        probe,
        record,
    })
}

fn cheapest<'a>(usable: &[&'a ProviderCandidate], country: Option<&str>) -> &'a ProviderCandidate {
    // `min_by` keeps the first of equals: ties go in order; no price sorts last.
    usable
        .iter()
        .copied()
        .min_by(|a, b| {
            let key = |c: &ProviderCandidate| c.price(country).unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b))
        })
        .expect("usable is not empty")
}

fn weighted<'a>(
    usable: &[&'a ProviderCandidate],
    weights: Option<&BTreeMap<String, u32>>,
    seed: u64,
) -> &'a ProviderCandidate {
    let weight = |c: &ProviderCandidate| match weights {
        Some(w) if !w.is_empty() => u64::from(*w.get(&c.name).unwrap_or(&0)),
        _ => 1,
    };
    let total: u64 = usable.iter().map(|c| weight(c)).sum();
    if total == 0 {
        return usable[0];
    }
    let mut draw = mix(seed) % total;
    for c in usable {
        let w = weight(c);
        if draw < w {
            return c;
        }
        draw -= w;
    }
    unreachable!("the draw is below the total")
}

/// SplitMix64's finalizer: spreads seeds that differ in a few bits over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, channels: &[Channel], circuit: CircuitState) -> ProviderCandidate {
        ProviderCandidate {
            circuit,
            ..ProviderCandidate::new(name, channels)
        }
    }

    fn priced(name: &str, prices: &[(&str, f64)]) -> ProviderCandidate {
        ProviderCandidate {
            prices: Arc::new(prices.iter().map(|(c, p)| (c.to_string(), *p)).collect()),
            ..ProviderCandidate::new(name, &[Channel::Sms])
        }
    }

    fn ask<'a>(channel: Channel, tried: &'a [&'a str]) -> RouteRequest<'a> {
        RouteRequest {
            tenant: None,
            channel,
            country: None,
            tried,
            rule: None,
            seed: 0,
        }
    }

    fn pick(req: &RouteRequest<'_>, c: &[ProviderCandidate]) -> Option<String> {
        route(req, c).map(|d| d.account)
    }

    use CircuitState::{Closed, HalfOpen, Open};

    #[test]
    fn picks_first_closed_account_of_the_channel() {
        let c = [
            cand("ses", &[Channel::Email], Closed),
            cand("twilio", &[Channel::Sms], Open),
            cand("vonage", &[Channel::Sms], Closed),
        ];
        let d = route(&ask(Channel::Sms, &[]), &c).unwrap();
        assert_eq!(d.account, "vonage");
        assert_eq!(d.record.reason, "first_usable");
        let seen: Vec<_> = d
            .record
            .candidates
            .iter()
            .map(|c| (c.account.as_str(), c.circuit))
            .collect();
        assert_eq!(seen, [("twilio", Open), ("vonage", Closed)]);
    }

    #[test]
    fn skips_accounts_already_tried_on_the_step() {
        let c = [
            cand("a", &[Channel::Sms], Closed),
            cand("b", &[Channel::Sms], Closed),
        ];
        assert_eq!(pick(&ask(Channel::Sms, &["a"]), &c).as_deref(), Some("b"));
        assert_eq!(pick(&ask(Channel::Sms, &["a", "b"]), &c), None);
    }

    #[test]
    fn tries_an_open_account_rather_than_none_and_says_so() {
        let c = [cand("a", &[Channel::Push], Open)];
        let d = route(&ask(Channel::Push, &[]), &c).unwrap();
        assert_eq!(
            (d.account.as_str(), d.record.reason.as_str()),
            ("a", "every_circuit_open")
        );
        assert!(!d.probe);
        assert_eq!(pick(&ask(Channel::Email, &[]), &c), None);
    }

    #[test]
    fn a_half_open_account_takes_a_probe_only_while_its_probe_is_free() {
        let mut primary = cand("a", &[Channel::Sms], HalfOpen);
        let backup = cand("b", &[Channel::Sms], Closed);
        let c = [primary.clone(), backup.clone()];
        assert_eq!(
            pick(&ask(Channel::Sms, &[]), &c).as_deref(),
            Some("b"),
            "probe taken"
        );
        primary.probe_free = true;
        let d = route(&ask(Channel::Sms, &[]), &[primary, backup]).unwrap();
        assert_eq!(d.account, "a");
        assert!(d.probe);
        assert_eq!(d.record.reason, "probe");
    }

    #[test]
    fn cost_picks_the_cheapest_usable_account_for_the_country() {
        let c = [
            priced("a", &[("US", 0.0079), ("*", 0.05)]),
            priced("b", &[("US", 0.0070), ("GB", 0.04)]),
            priced("c", &[("*", 0.03)]),
            priced("d", &[]),
        ];
        let rule = RoutingRule {
            strategy: Strategy::Cost,
            ..Default::default()
        };
        let at = |country: &'static str, c: &[ProviderCandidate]| {
            let d = route(
                &RouteRequest {
                    country: Some(country),
                    rule: Some(&rule),
                    ..ask(Channel::Sms, &[])
                },
                c,
            )
            .unwrap();
            assert_eq!(d.record.reason, "cheapest");
            d.account
        };
        assert_eq!(at("US", &c), "b");
        assert_eq!(at("GB", &c), "c", "c's * price beats b's GB price");
        assert_eq!(at("FR", &c), "c");
        let mut c = c.to_vec();
        c[1].circuit = Open;
        assert_eq!(at("US", &c), "a", "the cheapest healthy one");
        let d = route(
            &RouteRequest {
                country: Some("US"),
                rule: Some(&rule),
                ..ask(Channel::Sms, &[])
            },
            &c,
        )
        .unwrap();
        let prices: Vec<_> = d.record.candidates.iter().map(|c| c.price).collect();
        assert_eq!(prices, [Some(0.0079), Some(0.0070), Some(0.03), None]);
    }

    #[test]
    fn a_rule_narrows_and_orders_the_accounts_and_a_country_overrides_it() {
        let c = [
            cand("a", &[Channel::Sms], Closed),
            cand("b", &[Channel::Sms], Closed),
            cand("c", &[Channel::Sms], Closed),
        ];
        let rule = RoutingRule {
            accounts: vec!["c".into(), "gone".into(), "a".into()],
            countries: [(
                "GB".to_owned(),
                RoutingRule {
                    accounts: vec!["b".into()],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let req = |country| RouteRequest {
            country,
            rule: Some(&rule),
            ..ask(Channel::Sms, &[])
        };
        let d = route(&req(Some("US")), &c).unwrap();
        assert_eq!(d.account, "c");
        assert_eq!(d.record.rule.as_deref(), Some("tenant:sms"));
        let names: Vec<_> = d
            .record
            .candidates
            .iter()
            .map(|c| c.account.as_str())
            .collect();
        assert_eq!(names, ["c", "a"], "only the rule's accounts, in its order");
        let d = route(&req(Some("GB")), &c).unwrap();
        assert_eq!(d.account, "b");
        assert_eq!(d.record.rule.as_deref(), Some("tenant:sms:GB"));
        assert_eq!(
            route(
                &RouteRequest {
                    tried: &["b"],
                    ..req(Some("GB"))
                },
                &c
            ),
            None,
            "the country's rule allows b alone"
        );
    }

    #[test]
    fn weighted_follows_the_weights_and_the_same_seed_draws_the_same() {
        let c = [
            cand("a", &[Channel::Sms], Closed),
            cand("b", &[Channel::Sms], Closed),
        ];
        let rule = RoutingRule {
            strategy: Strategy::Weighted,
            weights: [("a".to_owned(), 3), ("b".to_owned(), 1)].into(),
            ..Default::default()
        };
        let draw = |seed| {
            pick(
                &RouteRequest {
                    seed,
                    rule: Some(&rule),
                    ..ask(Channel::Sms, &[])
                },
                &c,
            )
            .unwrap()
        };
        let a = (0..4000u64).filter(|s| draw(*s) == "a").count();
        assert!((2800..3200).contains(&a), "about 3 in 4 go to a: {a}");
        assert_eq!(draw(42), draw(42));
        // A zero weight never draws while another account is usable.
        let rule = RoutingRule {
            strategy: Strategy::Weighted,
            weights: [("a".to_owned(), 0), ("b".to_owned(), 1)].into(),
            ..Default::default()
        };
        for seed in 0..100 {
            let got = pick(
                &RouteRequest {
                    seed,
                    rule: Some(&rule),
                    ..ask(Channel::Sms, &[])
                },
                &c,
            );
            assert_eq!(got.as_deref(), Some("b"));
        }
    }

    #[test]
    fn a_tenant_s_own_accounts_serve_it_first_and_never_another_tenant() {
        let acme = TenantId(uuid::Uuid::from_u128(1));
        let other = TenantId(uuid::Uuid::from_u128(2));
        let own = |name: &str, owner| ProviderCandidate {
            owner: Some(owner),
            ..cand(name, &[Channel::Sms], Closed)
        };
        let c = [
            cand("platform", &[Channel::Sms], Closed),
            own("acme-twilio", acme),
            own("other-twilio", other),
        ];
        let for_tenant = |tenant, tried: &'static [&'static str]| {
            pick(
                &RouteRequest {
                    tenant,
                    ..ask(Channel::Sms, tried)
                },
                &c,
            )
        };
        assert_eq!(for_tenant(Some(acme), &[]).as_deref(), Some("acme-twilio"));
        assert_eq!(
            for_tenant(Some(acme), &["acme-twilio"]).as_deref(),
            Some("platform"),
            "then the platform's"
        );
        assert_eq!(for_tenant(Some(acme), &["acme-twilio", "platform"]), None);
        assert_eq!(for_tenant(None, &[]).as_deref(), Some("platform"));
        // Naming another tenant's account in a rule does not reach it.
        let rule = RoutingRule {
            accounts: vec!["other-twilio".into()],
            ..Default::default()
        };
        let req = RouteRequest {
            tenant: Some(acme),
            rule: Some(&rule),
            ..ask(Channel::Sms, &[])
        };
        assert_eq!(pick(&req, &c), None);
    }

    #[test]
    fn rules_are_validated() {
        let ok: RoutingRule = serde_json::from_value(serde_json::json!({
            "strategy": "cost", "accounts": ["twilio-us", "vonage"],
            "countries": {"GB": {"accounts": ["vonage"]}}
        }))
        .unwrap();
        assert!(ok.is_valid());
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<RoutingRule>(v).map_or(true, |r| !r.is_valid())
        };
        assert!(bad(serde_json::json!({"strategy": "fastest"})));
        assert!(bad(serde_json::json!({"accounts": ["a", "a"]})));
        assert!(bad(serde_json::json!({"accounts": ["Not Valid"]})));
        assert!(bad(serde_json::json!({"countries": {"gb": {}}})));
        assert!(bad(
            serde_json::json!({"countries": {"GB": {"countries": {"US": {}}}}})
        ));
        assert!(bad(serde_json::json!({"weights": {"a": -1}})));
        assert!(bad(serde_json::json!({"route": "a"})));
    }
}
