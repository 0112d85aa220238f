//! The daemon's Prometheus metrics (`watch --listen`, `GET /metrics`).
//!
//! One [`Metrics`] value, shared (`Arc`) by whoever has something to count:
//! the daemon's state machine (captures, alerts, rule firings, samples, the
//! target's usage as the trigger sampler reads it), the push sink (pushes,
//! the spool) and the HTTP endpoint, which encodes it. A leaf: it knows
//! nothing of captures, only numbers, so every layer may use it. The
//! metrics are atomics, so counting costs no lock on the capture path.
//!
//! Names follow Prometheus' conventions: a `stackwatch_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` on counters; `reason` labels have few
//! values (`manual`, `rule`, `alert`), so no series explodes.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

type Labels = Vec<(&'static str, String)>;

/// Everything `/metrics` shows. Cloning shares the same series.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    pub captures_started: Family<Labels, Counter>,
    pub captures_written: Family<Labels, Counter>,
    pub captures_failed: Family<Labels, Counter>,
    /// Captures an alert or rule asked for that did not start: `busy`,
    /// `cooldown` (coalesced), `error`.
    pub captures_skipped: Family<Labels, Counter>,
    pub rule_firings: Family<Labels, Counter>,
    /// Alerts received on `/alerts`, by `status` (`firing`, `resolved`) and
    /// `outcome` (`accepted`, `rejected`, `ignored`).
    pub alerts: Family<Labels, Counter>,
    pub samples_collected: Counter,
    pub samples_lost: Family<Labels, Counter>,
    /// Time the kernel spent in stackwatch's BPF programs (needs BPF run-time
    /// statistics, which `watch --listen` turns on while a capture runs).
    pub bpf_run_time: Counter<f64, AtomicU64>,
    pub bpf_run_count: Counter,
    pub last_capture: Gauge<f64, AtomicU64>,
    /// Webhook received → capture window open, for the last alert capture.
    pub alert_start_latency: Gauge<f64, AtomicU64>,
    /// Memory of `watch --history`'s rolling profile; 0 until history is on.
    pub history_memory: Gauge,
    pub capturing: Gauge,
    /// The target as the trigger sampler reads it (only with trigger rules).
    pub target_cpu_ratio: Gauge<f64, AtomicU64>,
    pub target_memory: Gauge,
    pub target_memory_limit: Gauge,
    pub pushes: Family<Labels, Counter>,
    pub push_spool_bytes: Gauge,
    pub push_spool_files: Gauge,
}

impl Metrics {
    /// Counts one in `family` for the series `label="value"`.
    pub(crate) fn inc(family: &Family<Labels, Counter>, label: &'static str, value: &str) {
        family.get_or_create(&vec![(label, value.to_owned())]).inc();
    }

    pub(crate) fn set_last_capture(&self, at: SystemTime) {
        self.last_capture.set(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
    }

    /// Adds the BPF run time counted since the last call (`total` is the
    /// programs' running total, which restarts when they are reloaded).
    pub(crate) fn add_bpf_run(&self, delta_time: Duration, delta_count: u64) {
        self.bpf_run_time.inc_by(delta_time.as_secs_f64());
        self.bpf_run_count.inc_by(delta_count);
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("stackwatch");
        registry.register(
            "build",
            "stackwatch's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );
        registry.register("captures_started", "Captures started, by reason", self.captures_started.clone());
        registry.register("captures_written", "Captures written completely, by reason", self.captures_written.clone());
        registry.register(
            "captures_failed",
            "Captures that could not be written completely, by reason",
            self.captures_failed.clone(),
        );
        registry.register(
            "captures_skipped",
            "Captures asked for but not started, by reason (busy, cooldown, error)",
            self.captures_skipped.clone(),
        );
        registry.register("rule_firings", "Trigger rule firings, by rule", self.rule_firings.clone());
        registry.register("alerts", "Alerts received on /alerts, by status and outcome", self.alerts.clone());
        registry.register("samples_collected", "CPU samples written to profiles", self.samples_collected.clone());
        registry.register("samples_lost", "Samples or stacks lost, by reason", self.samples_lost.clone());
        registry.register_with_unit(
            "bpf_run_time",
            "Time the kernel spent running stackwatch's BPF programs",
            Unit::Seconds,
            self.bpf_run_time.clone(),
        );
        registry.register("bpf_runs", "Runs of stackwatch's BPF programs", self.bpf_run_count.clone());
        registry.register_with_unit(
            "last_capture_timestamp",
            "When the last capture was written (Unix time)",
            Unit::Seconds,
            self.last_capture.clone(),
        );
        registry.register_with_unit(
            "alert_start_latency",
            "From the last alert's webhook to its capture's first sample window",
            Unit::Seconds,
            self.alert_start_latency.clone(),
        );
        registry.register_with_unit(
            "history_memory",
            "Memory held by the rolling history profile (watch --history)",
            Unit::Bytes,
            self.history_memory.clone(),
        );
        registry.register("capturing", "1 while a capture runs", self.capturing.clone());
        registry.register(
            "target_cpu_ratio",
            "The target's CPU use as the trigger sampler last read it (1 = all CPUs available to it)",
            self.target_cpu_ratio.clone(),
        );
        registry.register_with_unit(
            "target_memory",
            "The target's resident memory as the trigger sampler last read it",
            Unit::Bytes,
            self.target_memory.clone(),
        );
        registry.register_with_unit(
            "target_memory_limit",
            "The target's memory limit as the trigger sampler last read it",
            Unit::Bytes,
            self.target_memory_limit.clone(),
        );
        registry.register("pushes", "Profiles pushed to Pyroscope, by result", self.pushes.clone());
        registry.register_with_unit(
            "push_spool",
            "Profiles waiting in the push spool",
            Unit::Bytes,
            self.push_spool_bytes.clone(),
        );
        registry.register("push_spool_files", "Profiles waiting in the push spool", self.push_spool_files.clone());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_gauges_and_labels() {
        let metrics = Metrics::default();
        Metrics::inc(&metrics.captures_started, "reason", "alert");
        Metrics::inc(&metrics.captures_started, "reason", "alert");
        metrics.samples_collected.inc_by(250);
        metrics.history_memory.set(4096);
        metrics.add_bpf_run(Duration::from_millis(1500), 7);
        let text = metrics.encode();
        assert!(text.contains("# TYPE stackwatch_captures_started counter"), "{text}");
        assert!(text.contains("stackwatch_captures_started_total{reason=\"alert\"} 2"), "{text}");
        assert!(text.contains("stackwatch_samples_collected_total 250"), "{text}");
        assert!(text.contains("stackwatch_history_memory_bytes 4096"), "{text}");
        assert!(text.contains("stackwatch_bpf_run_time_seconds_total 1.5"), "{text}");
        assert!(text.contains("stackwatch_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
