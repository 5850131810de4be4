//! Prometheus metrics: one recorder for the process, rendered at `GET /metrics`.
//!
//! What is counted: `hermes_events_total{type}` (every appended event, so dispatches, receipts
//! and outcomes by kind), `hermes_late_receipts_total`, `hermes_provider_sends_total{provider,
//! outcome}`, `hermes_provider_send_seconds{provider}`, `hermes_callbacks_refused_total{provider,
//! reason}`, `hermes_accept_batch_size`, `hermes_command_batch_size`,
//! `hermes_subscriber_events_total{subscriber}` and `hermes_subscriber_lag_events{subscriber}`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// From a millisecond (an accept layer) to an hour (a webhook delivery's retries, a cascade).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The process's recorder, installed on first use (tests start many apps in one process).
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Histograms, not summaries: buckets add up across processes (histogram_quantile in the
        // alert rules and dashboards, infra/prometheus).
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        let upkeep = handle.clone();
        // Histograms keep samples until upkeep drains them.
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}
