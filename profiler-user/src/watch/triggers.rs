//! The trigger side of `watch`: a [`MetricSampler`] read every
//! `--sample-interval` and a [`ThresholdMonitor`] deciding from its samples
//! whether a rule fires.
//!
//! [`Triggers`] exists only when rules are configured, so a daemon without
//! any runs no timer and reads nothing while idle. The daemon's state machine
//! calls [`Triggers::sample`] on every tick and [`Triggers::sync`] after every
//! event, which keeps the monitor's "a capture is running" equal to "the
//! daemon is not idle": no rule fires while any capture, manual or triggered,
//! samples or is being written, and the evidence for the next firing starts
//! once the daemon is idle again (a capture's own eBPF cost, and for a host
//! target the writer's symbolization, would otherwise count as the target's).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};

use crate::sys::thread_cpu_time;
use crate::target::TargetSpec;
use crate::triggers::rules::cpus_text;
use crate::triggers::sampler::MetricSampler;
use crate::triggers::{cannot_fire, Firing, ThresholdMonitor, TriggerConfig};

/// The sampler, the decision and the timer that drives them.
pub(super) struct Triggers {
    sampler: MetricSampler,
    monitor: ThresholdMonitor,
    /// Ticks every `--sample-interval`; a late tick is delayed, not
    /// bunched, so two samples are never closer than the monitor expects.
    pub interval: Interval,
    /// What the monitor was last told: a capture is running.
    busy: bool,
    /// CPU time spent sampling, and samples taken, for `status`.
    cost: Duration,
    samples: u64,
    /// Rules that cannot fire for the target as last sampled (logged when
    /// this changes, shown by `status`).
    unreachable: Vec<String>,
}

impl Triggers {
    /// `None` without rules: then nothing is sampled at all.
    pub(super) fn new(config: &TriggerConfig, target: &TargetSpec) -> Option<Self> {
        if config.rules.is_empty() {
            return None;
        }
        let mut interval = tokio::time::interval(config.sample_interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(Self {
            sampler: MetricSampler::new(target),
            monitor: ThresholdMonitor::new(config),
            interval,
            busy: false,
            cost: Duration::ZERO,
            samples: 0,
            unreachable: Vec::new(),
        })
    }

    /// The rules, for the log: `cpu ≥ 80% for 3m; memory ≥ 2GiB for 1m`.
    pub(super) fn rules_text(&self) -> String {
        self.monitor.rules().iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }

    /// Reads the target now and returns the rule that fires, if one does.
    /// A firing leaves the monitor waiting for the capture's end: start one,
    /// or call [`Self::dismiss`].
    pub(super) fn sample(&mut self) -> Option<Firing> {
        let cpu_before = thread_cpu_time();
        let sample = self.sampler.sample(Instant::now());
        if let (Some(before), Some(after)) = (cpu_before, thread_cpu_time()) {
            self.cost += after.saturating_sub(before);
        }
        self.samples += 1;
        // Checked on every sample (the first one comes at start): a target's
        // threads and quota change, and an absent target says nothing.
        if sample.present {
            let unreachable = cannot_fire(self.monitor.rules(), &sample);
            for warning in unreachable.iter().filter(|w| !self.unreachable.contains(w)) {
                tracing::warn!("{warning}");
            }
            self.unreachable = unreachable;
        }
        let firing = self.monitor.observe(&sample)?;
        self.busy = true;
        Some(firing)
    }

    /// A firing that starts no capture: rules need fresh evidence from now.
    pub(super) fn dismiss(&mut self) {
        self.monitor.capture_finished(Instant::now());
        self.busy = false;
    }

    /// Tells the monitor whether a capture runs (or is being written).
    pub(super) fn sync(&mut self, busy: bool) {
        if busy == self.busy {
            return;
        }
        let now = Instant::now();
        if busy {
            self.monitor.capture_started(now);
        } else {
            self.monitor.capture_finished(now);
        }
        self.busy = busy;
    }

    /// One line for `status`: the rules and how long each has held, the
    /// latest readings, the cooldown and what sampling costs.
    /// The target as last read, for `/metrics`.
    pub(super) fn export(&self, metrics: &crate::metrics::Metrics) {
        let status = self.monitor.status(Instant::now());
        if let Some(cpu) = status.cpu_pct {
            metrics.target_cpu_ratio.set(cpu / 100.0);
        }
        if let Some(mem) = status.mem_bytes {
            metrics.target_memory.set(i64::try_from(mem).unwrap_or(i64::MAX));
        }
        if let Some(limit) = status.mem_limit {
            metrics.target_memory_limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
    }

    pub(super) fn status(&self) -> String {
        let status = self.monitor.status(Instant::now());
        let rules: Vec<String> = status
            .rules
            .iter()
            .map(|r| {
                let rule = match &r.other_reading {
                    Some(other) => format!("{} [= {other}]", r.rule),
                    None => r.rule.clone(),
                };
                match r.held_for {
                    Some(held) => format!("{rule} (held {})", seconds(held)),
                    None => rule,
                }
            })
            .collect();
        let mut line = format!("triggers: {}", rules.join(", "));
        match (status.cpu_pct, status.cpu_cores, status.cpu_capacity, status.mem_bytes) {
            (Some(cpu), Some(cores), Some(capacity), Some(mem)) => {
                let limit = status.mem_limit.map(|l| format!(" of {}", size(l))).unwrap_or_default();
                let _ = write!(
                    line,
                    "; target now: cpu {cpu:.1}% of {} ({cores:.2} cores), memory {}{limit}",
                    cpus_text(capacity),
                    size(mem)
                );
            }
            _ => line.push_str("; no reading of the target yet (not running, or just started or restarted)"),
        }
        for warning in &self.unreachable {
            let _ = write!(line, "; warning: {warning}");
        }
        if let Some(left) = status.cooldown_left {
            let _ = write!(line, "; cooldown {} left", seconds(left));
        }
        if self.samples > 0 {
            let per_sample = self.cost.as_secs_f64() * 1e3 / self.samples as f64;
            let _ = write!(line, "; sampling costs {per_sample:.3} ms CPU per sample");
        }
        line
    }
}

fn seconds(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

/// `317.2MiB`, `23.5GiB`.
fn size(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if mib >= 1024.0 {
        format!("{:.1}GiB", mib / 1024.0)
    } else {
        format!("{mib:.1}MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rules_no_sampler() {
        let config = TriggerConfig {
            rules: Vec::new(),
            cooldown: crate::triggers::config::DEFAULT_COOLDOWN,
            sample_interval: crate::triggers::DEFAULT_SAMPLE_INTERVAL,
        };
        assert!(Triggers::new(&config, &TargetSpec::Host).is_none());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(1_468_006), "1.4MiB");
        assert_eq!(size(317 << 20), "317.0MiB");
        assert_eq!(size(24_105 << 20), "23.5GiB");
    }
}
