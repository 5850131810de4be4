//! Prometheus metrics: one recorder for the process, rendered at `GET /metrics`.
//!
//! What is counted: `hermes_events_total{type}` (every appended event, so dispatches, receipts
//! and outcomes by kind), `hermes_late_receipts_total`, `hermes_provider_sends_total{provider,
//! outcome}`, `hermes_provider_send_seconds{provider}`, `hermes_callbacks_refused_total{provider,
//! reason}`, `hermes_accept_batch_size`, `hermes_command_batch_size`,
//! `hermes_subscriber_events_total{subscriber}` and `hermes_subscriber_lag_events{subscriber}`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (tests start many apps in one process).
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
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
