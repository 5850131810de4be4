//! `hermes billing export`: the attempts made in a time window, per tenant, as CSV, for an
//! operator reconciling the providers' invoices.
//!
//! Read from the event log, the source of truth: an attempt's price is the one recorded on its
//! `AttemptDispatched` (what the account's table said then), its outcome and late flag what the
//! aggregate folds from the message's events. The window is on the dispatch's own time.
//!
//! Finding the attempts scans the log (no index serves `event_type` and time, and the hot path
//! should not pay for one): run exports off-peak, or against a replica.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hermes_domain::billing::{BillingLine, Charged, billing_lines};
use hermes_domain::message::MessageEvent;
use hermes_domain::{MessageId, TenantId};
use hermes_infra::event_store;
use sqlx::PgPool;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use uuid::Uuid;

/// Messages folded per read: bounds memory on a large export.
const STREAMS_PER_READ: usize = 500;

/// Which attempts: dispatched in `[from, to)`, of one tenant or of all.
#[derive(Debug, Clone)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub tenant: Option<TenantId>,
}

/// The CSV's columns, in order.
pub const CSV_HEADER: &str = "tenant_id,message_id,attempt_id,step,channel,account,dispatched_at,status,charged,provider_message_id,segments,unit_price,price,late";

/// Calls `line` with every attempt dispatched in the window, message by message (messages in id
/// order, which is time order for Hermes's UUIDv7 ids; attempts in the order they were made).
pub async fn export(
    pool: &PgPool,
    window: &Window,
    mut line: impl FnMut(&BillingLine) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let streams: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT stream_id FROM events
         WHERE stream_type = 'message' AND event_type = 'AttemptDispatched'
           AND (payload->>'at')::timestamptz >= $1 AND (payload->>'at')::timestamptz < $2
           AND ($3::uuid IS NULL OR tenant_id = $3)
         ORDER BY stream_id",
    )
    .bind(window.from)
    .bind(window.to)
    .bind(window.tenant.map(|t| t.0))
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    for chunk in streams.chunks(STREAMS_PER_READ) {
        let stored = event_store::load_streams(&mut conn, "message", chunk).await?;
        for events in stored.chunk_by(|a, b| a.stream_id == b.stream_id) {
            let id = MessageId(events[0].stream_id);
            let decoded = events
                .iter()
                .map(|e| {
                    MessageEvent::from_stored(&e.event_type, e.schema_version, e.payload.clone())
                })
                .collect::<Result<Vec<_>, _>>()?;
            for l in billing_lines(id, &decoded)
                .iter()
                .filter(|l| l.dispatched_at >= window.from && l.dispatched_at < window.to)
            {
                line(l)?;
            }
        }
    }
    Ok(())
}

/// One attempt as a CSV row (no line end), in [`CSV_HEADER`]'s order.
pub fn csv_row(l: &BillingLine) -> String {
    let cost = l.cost.as_ref();
    [
        l.tenant_id.to_string(),
        l.message_id.to_string(),
        l.attempt_id.to_string(),
        l.step_index.to_string(),
        l.channel.as_str().to_owned(),
        csv_field(&l.account),
        l.dispatched_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        l.status.as_str().to_owned(),
        l.charged.as_str().to_owned(),
        l.provider_message_id
            .as_deref()
            .map(csv_field)
            .unwrap_or_default(),
        cost.map(|c| c.units.to_string()).unwrap_or_default(),
        cost.map(|c| c.unit_price.to_string()).unwrap_or_default(),
        cost.map(|c| c.price.to_string()).unwrap_or_default(),
        l.late.to_string(),
    ]
    .join(",")
}

/// RFC 4180: a field holding a comma, a quote or a line break is quoted, its quotes doubled.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// A tenant's figures in an export: what the operator checks against the invoice's totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantTotals {
    pub attempts: u64,
    /// Attempts the provider accepted (`charged` = yes), and their price.
    pub charged: u64,
    pub charged_price: f64,
    /// Attempts Hermes cannot know were sent (`maybe`), and their price.
    pub maybe: u64,
    pub maybe_price: f64,
    /// Attempts with no price (the account had no price for the destination).
    pub unpriced: u64,
    /// Charged attempts per message: more than one is a cascade that paid for two steps (or a
    /// failover whose first account delivered after all).
    charged_per_message: HashMap<MessageId, u32>,
}

impl TenantTotals {
    pub fn add(&mut self, l: &BillingLine) {
        self.attempts += 1;
        let price = l.cost.as_ref().map(|c| c.price);
        if price.is_none() {
            self.unpriced += 1;
        }
        match l.charged {
            Charged::Yes => {
                self.charged += 1;
                self.charged_price += price.unwrap_or(0.0);
                *self.charged_per_message.entry(l.message_id).or_default() += 1;
            }
            Charged::Maybe => {
                self.maybe += 1;
                self.maybe_price += price.unwrap_or(0.0);
            }
            Charged::No | Charged::Pending => {}
        }
    }

    /// Messages with more than one charged attempt.
    pub fn messages_charged_more_than_once(&self) -> usize {
        self.charged_per_message
            .values()
            .filter(|n| **n > 1)
            .count()
    }

    /// One line for the operator: `tenant attempts charged (price) maybe (price) ...`.
    pub fn summary(&self, tenant: TenantId) -> String {
        format!(
            "{tenant}: {} attempts, {} charged ({}), {} maybe ({}), {} unpriced, {} messages charged more than once",
            self.attempts,
            self.charged,
            money(self.charged_price),
            self.maybe,
            money(self.maybe_price),
            self.unpriced,
            self.messages_charged_more_than_once()
        )
    }
}

/// Where an export's CSV goes.
pub enum Output<'a> {
    /// One file per tenant, `<tenant id>.csv`, in this directory (made if missing; a tenant's
    /// file from an earlier export is replaced).
    PerTenant(&'a Path),
    /// Every tenant's rows in one CSV (they carry `tenant_id`).
    One(&'a mut dyn Write),
}

/// Writes the window's attempts as CSV, and answers each tenant's totals.
pub async fn export_csv(
    pool: &PgPool,
    window: &Window,
    output: Output<'_>,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::new();
    match output {
        Output::One(out) => {
            writeln!(out, "{CSV_HEADER}")?;
            export(pool, window, |l| {
                totals.entry(l.tenant_id).or_default().add(l);
                Ok(writeln!(out, "{}", csv_row(l))?)
            })
            .await?;
            out.flush()?;
        }
        Output::PerTenant(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut files: BTreeMap<TenantId, BufWriter<File>> = BTreeMap::new();
            export(pool, window, |l| {
                let file = match files.entry(l.tenant_id) {
                    Entry::Occupied(f) => f.into_mut(),
                    Entry::Vacant(v) => {
                        let path = dir.join(format!("{}.csv", l.tenant_id));
                        let mut f = BufWriter::new(
                            File::create(&path)
                                .with_context(|| format!("creating {}", path.display()))?,
                        );
                        writeln!(f, "{CSV_HEADER}")?;
                        v.insert(f)
                    }
                };
                totals.entry(l.tenant_id).or_default().add(l);
                Ok(writeln!(file, "{}", csv_row(l))?)
            })
            .await?;
            for f in files.values_mut() {
                f.flush()?;
            }
        }
    }
    Ok(totals)
}

/// An export's bound: RFC 3339 (`2026-12-01T00:00:00Z`), or a date (`2026-12-01`: its midnight
/// in UTC).
pub fn parse_instant(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
    Ok(date.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// A sum of prices, rounded to a millionth as each price is.
fn money(sum: f64) -> f64 {
    (sum * 1e6).round() / 1e6
}

/// Totals per tenant, in tenant order.
pub type Totals = BTreeMap<TenantId, TenantTotals>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_is_an_rfc_3339_time_or_a_date_at_midnight_utc() {
        assert_eq!(
            parse_instant("2026-12-01").unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_instant("2026-12-01T10:30:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T08:30:00+00:00"
        );
        let err = parse_instant("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("neither an RFC 3339 time nor a YYYY-MM-DD date"),
            "{err}"
        );
    }

    #[test]
    fn a_field_with_a_comma_quote_or_line_break_is_quoted() {
        assert_eq!(csv_field("SM123"), "SM123");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
