//! What a capture was: its target, why it ran, when, and what it lost.
//!
//! Filled by `record` (and later `watch`), read by the manifest writer, the
//! flamegraph title and the file namer.

use std::time::SystemTime;

use serde::Serialize;

/// What was profiled, resolved to concrete processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// `pid`, `name`, `cgroup` or `host`.
    pub kind: TargetKind,
    /// Human description: `pid 1234 (redis-server)`, `name /^nginx/`,
    /// `cgroup /sys/fs/cgroup/system.slice/foo.service`, `host`.
    pub description: String,
    /// Processes selected when the capture started (empty for host/cgroup).
    pub pids: Vec<u32>,
    /// `<name>` part of file names (sanitized): the process name for one
    /// process; for several, the `--name` pattern's words, the `--pid`s'
    /// process names joined by `+`, the cgroup's last component, or `host`.
    pub file_name: String,
    /// `<pid>` part of file names: only for a capture of one process (one
    /// `--pid`, or a `--name` matching one), so a file never names one pid
    /// of several.
    pub file_pid: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Pid,
    Name,
    Cgroup,
    Host,
}

impl TargetInfo {
    /// Whether samples may come from several processes, so flamegraphs get
    /// one root frame per process (`comm (pid N)`). True for every `--name`
    /// target: its matches are looked up again while it runs.
    pub fn multi_process(&self) -> bool {
        !matches!(self.kind, TargetKind::Pid) || self.pids.len() > 1
    }
}

/// Why a capture ran.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Trigger {
    /// `record`, a control command or SIGUSR2.
    Manual { source: String },
    /// A threshold rule fired.
    Rule { rule: String, observed: String, window: String },
}

impl Trigger {
    /// One line for titles and logs.
    pub fn summary(&self) -> String {
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
pub struct Loss {
    /// Stable machine-readable reason, e.g. `counts_map_full`.
    pub reason: String,
    pub count: u64,
    /// What it means for the profile.
    pub detail: String,
}

impl Loss {
    /// Whether the loss removed CPU samples (rather than frames of kept
    /// samples, or events of other profiles): what `samples_lost` counts.
    pub fn drops_samples(&self) -> bool {
        self.reason == "counts_map_full"
    }
}

/// Everything about a capture except its profiles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptureInfo {
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
}

/// RFC 3339 timestamps (UTC, seconds) in JSON.
mod humantime_serde_rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}
