//! What a capture was: its target, why it ran, when, and what it lost.
//!
//! Filled by the capture pipeline (for `record` and `watch` alike), read by
//! the manifest encoder, the flamegraph title and the file namer.

use std::time::{Duration, SystemTime};

use profiler_common::Window;
use serde::Serialize;

use crate::sys::monotonic_ns;

/// When a capture counted: the kernel programs count events in
/// `[start_ns, end_ns)` of `CLOCK_MONOTONIC` (the clock of
/// `bpf_ktime_get_ns`); `start` and `end` are the same moments on the wall
/// clock, for the manifest and the file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CaptureWindow {
    pub start: SystemTime,
    pub end: SystemTime,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl CaptureWindow {
    /// A window opening now and lasting `duration`.
    pub(crate) fn starting_now(duration: Duration) -> Self {
        Self::starting_at(SystemTime::now(), monotonic_ns(), duration)
    }

    /// A window opening at `start` (wall clock), which is `start_ns` on
    /// `CLOCK_MONOTONIC`, and lasting `duration`.
    pub(crate) fn starting_at(start: SystemTime, start_ns: u64, duration: Duration) -> Self {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let end_ns = start_ns.saturating_add(ns);
        Self { start, end: start + Duration::from_nanos(end_ns - start_ns), start_ns, end_ns }
    }

    /// The window ending at `now_ns` if it would otherwise end later (not
    /// before it opened).
    pub(crate) fn closed_at(self, now_ns: u64) -> Self {
        if now_ns >= self.end_ns {
            return self;
        }
        let end_ns = now_ns.max(self.start_ns);
        Self { end_ns, end: self.start + Duration::from_nanos(end_ns - self.start_ns), ..self }
    }

    /// How long it lasted (or will).
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_ns - self.start_ns)
    }

    /// The window as the kernel programs read it.
    pub(crate) fn kernel(&self) -> Window {
        Window { start_ns: self.start_ns, end_ns: self.end_ns }
    }
}

/// What was profiled, resolved to concrete processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TargetInfo {
    /// `pid`, `name`, `cgroup` or `host`.
    pub kind: TargetKind,
    /// Human description: `pid 1234 (redis-server)`, `name /^nginx/`,
    /// `cgroup /sys/fs/cgroup/system.slice/foo.service`, `host`.
    pub description: String,
    /// Processes selected when the capture started (empty for host/cgroup).
    pub pids: Vec<crate::ids::Pid>,
    /// `<name>` part of file names (sanitized): the process name for one
    /// process; for several, the `--name` pattern's words, the `--pid`s'
    /// process names joined by `+`, the cgroup's last component, or `host`.
    pub file_name: String,
    /// `<pid>` part of file names: only for a capture of one process (one
    /// `--pid`, or a `--name` matching one), so a file never names one pid
    /// of several.
    pub file_pid: Option<crate::ids::Pid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TargetKind {
    Pid,
    Name,
    Cgroup,
    Host,
}

impl TargetInfo {
    /// Whether samples may come from several processes, so flamegraphs get
    /// one root frame per process (`comm (pid N)`). True for every `--name`
    /// target: its matches are looked up again while it runs.
    pub(crate) fn multi_process(&self) -> bool {
        !matches!(self.kind, TargetKind::Pid) || self.pids.len() > 1
    }
}

/// Why a capture ran.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Trigger {
    /// `record`, a control command or SIGUSR2.
    Manual { source: String },
    /// A threshold rule fired.
    Rule { rule: String, observed: String, window: String },
}

impl Trigger {
    /// One line for titles and logs.
    pub(crate) fn summary(&self) -> String {
        match self {
            Trigger::Manual { source } => format!("manual ({source})"),
            Trigger::Rule { rule, observed, window } => {
                format!("triggered: {rule} (observed {observed} over {window})")
            }
        }
    }
}

/// A counted loss, reported in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Loss {
    /// Stable machine-readable reason, e.g. `counts_map_full`.
    pub reason: String,
    pub count: u64,
    /// What it means for the profile.
    pub detail: String,
}

impl Loss {
    /// Whether the loss removed CPU samples (rather than frames of kept
    /// samples, or events of other profiles): what `samples_lost` counts.
    pub(crate) fn drops_samples(&self) -> bool {
        self.reason == "counts_map_full"
    }
}

/// Everything about a capture except its profiles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct CaptureInfo {
    pub target: TargetInfo,
    pub trigger: Trigger,
    #[serde(with = "humantime_serde_rfc3339")]
    pub start: SystemTime,
    #[serde(with = "humantime_serde_rfc3339")]
    pub end: SystemTime,
    pub frequency_hz: u64,
    /// Samples aggregated in the kernel and written to the profile.
    pub samples_collected: u64,
    /// Total of `losses` counts.
    pub samples_lost: u64,
    pub losses: Vec<Loss>,
    /// CPU time the target used during the capture, when it could be read
    /// (from `/proc/<pid>/stat`, the cgroup's `cpu.stat` or `/proc/stat`).
    pub target_cpu_seconds: Option<f64>,
    /// `frequency_hz × target_cpu_seconds`: what a lossless capture collects.
    pub expected_samples: Option<u64>,
    pub host: String,
    pub kernel: String,
    pub stackwatch_version: String,
    /// What the profiles cannot show, e.g. a Python interpreter that
    /// cannot be read (its code shows as `[python 3.x: unsupported]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A capture the pipeline finished: what it was and its profiles, one per
/// kind, in the order the kinds were asked for.
#[derive(Clone, Debug)]
pub(crate) struct FinishedCapture {
    pub info: CaptureInfo,
    pub profiles: Vec<super::Profile>,
}

/// RFC 3339 timestamps (UTC, seconds) in JSON.
mod humantime_serde_rfc3339 {
    use std::time::SystemTime;

    pub(super) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_closed_early_keeps_its_start_and_wall_clock() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let w = CaptureWindow::starting_at(t0, 5_000, Duration::from_secs(3));
        assert_eq!((w.start_ns, w.end_ns, w.end), (5_000, 3_000_005_000, t0 + Duration::from_secs(3)));
        assert_eq!(w.kernel(), Window { start_ns: 5_000, end_ns: 3_000_005_000 });

        let early = w.closed_at(1_000_005_000);
        assert_eq!(early.duration(), Duration::from_secs(1));
        assert_eq!((early.start, early.end), (t0, t0 + Duration::from_secs(1)));
        // Noticed late: the kernel stopped at the planned end.
        assert_eq!(w.closed_at(9_000_000_000), w);
        // Closed before it opened: empty, never negative.
        assert_eq!(w.closed_at(10).duration(), Duration::ZERO);
    }

    #[test]
    fn window_end_saturates() {
        let w = CaptureWindow::starting_at(SystemTime::UNIX_EPOCH, u64::MAX - 10, Duration::from_secs(1));
        assert_eq!(w.end_ns, u64::MAX);
        assert_eq!(w.duration(), Duration::from_nanos(10));
    }
}
