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
    /// An alert from Prometheus Alertmanager or Grafana (`watch --listen`):
    /// its name, labels and annotations as the alerting system sent them.
    Alert {
        alert: String,
        /// `alertmanager` or `grafana`.
        via: String,
        /// The alert's `stackwatch_target` (or the configured label mapping) that chose the target.
        matched: String,
        labels: std::collections::BTreeMap<String, String>,
        annotations: std::collections::BTreeMap<String, String>,
    },
}

impl Trigger {
    /// One line for titles and logs.
    pub(crate) fn summary(&self) -> String {
        match self {
            Trigger::Manual { source } => format!("manual ({source})"),
            Trigger::Rule { rule, observed, window } => {
                format!("triggered: {rule} (observed {observed} over {window})")
            }
            Trigger::Alert { alert, via, labels, annotations, .. } => {
                let labels: Vec<String> = labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
                let mut line = format!("alert {alert}{labels} ({via})");
                if let Some(summary) = annotations.get("summary").or_else(|| annotations.get("description")) {
                    line.push_str(": ");
                    line.push_str(summary);
                }
                line
            }
        }
    }
}

/// A counted loss, reported in the manifest as `reason`, `count` and
/// `detail` (the reason's meaning, [`LossReason::detail`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Loss {
    pub reason: LossReason,
    pub count: u64,
}

impl Loss {
    /// `count` losses of `reason`.
    pub(crate) fn new(reason: LossReason, count: u64) -> Self {
        Self { reason, count }
    }
}

impl Serialize for Loss {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut loss = serializer.serialize_struct("Loss", 3)?;
        loss.serialize_field("reason", &self.reason)?;
        loss.serialize_field("count", &self.count)?;
        loss.serialize_field("detail", self.reason.detail())?;
        loss.end()
    }
}

/// Why events or parts of stacks were lost: every reason a kind counts.
/// One list, so what a reason does to the profile (and whether the daemon
/// warns about it) is decided here, not by matching names. Serialized as
/// [`LossReason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LossReason {
    CountsMapFull,
    UserStackUnreadable,
    KernelStackUnreadable,
    StackNotStored,
    UserStackTruncated,
    KernelStackTruncated,
    PyStackTruncated,
    PyStackLost,
    UserStackMissing,
    KernelStackMissing,
    OffcpuMapFull,
    OffcpuStartMapFull,
    FaultMapFull,
    InuseMapFull,
    InuseUntracked,
}

/// What a loss did to the profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LossEffect {
    /// CPU samples missing from the profile: what `samples_lost` counts.
    DroppedSamples,
    /// Events of another kind missing from its profile (off-CPU intervals,
    /// page faults, allocations in the in-use view).
    DroppedEvents,
    /// Samples kept with a stack cut short or replaced by a `[lost …]` frame.
    PartialStacks,
}

impl LossReason {
    /// Every reason.
    #[cfg(test)]
    pub(crate) const ALL: [LossReason; 15] = [
        LossReason::CountsMapFull,
        LossReason::UserStackUnreadable,
        LossReason::KernelStackUnreadable,
        LossReason::StackNotStored,
        LossReason::UserStackTruncated,
        LossReason::KernelStackTruncated,
        LossReason::PyStackTruncated,
        LossReason::PyStackLost,
        LossReason::UserStackMissing,
        LossReason::KernelStackMissing,
        LossReason::OffcpuMapFull,
        LossReason::OffcpuStartMapFull,
        LossReason::FaultMapFull,
        LossReason::InuseMapFull,
        LossReason::InuseUntracked,
    ];

    /// The manifest's and the metrics' name of the reason.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LossReason::CountsMapFull => "counts_map_full",
            LossReason::UserStackUnreadable => "user_stack_unreadable",
            LossReason::KernelStackUnreadable => "kernel_stack_unreadable",
            LossReason::StackNotStored => "stack_not_stored",
            LossReason::UserStackTruncated => "user_stack_truncated",
            LossReason::KernelStackTruncated => "kernel_stack_truncated",
            LossReason::PyStackTruncated => "py_stack_truncated",
            LossReason::PyStackLost => "py_stack_lost",
            LossReason::UserStackMissing => "user_stack_missing",
            LossReason::KernelStackMissing => "kernel_stack_missing",
            LossReason::OffcpuMapFull => "offcpu_map_full",
            LossReason::OffcpuStartMapFull => "offcpu_start_map_full",
            LossReason::FaultMapFull => "fault_map_full",
            LossReason::InuseMapFull => "inuse_map_full",
            LossReason::InuseUntracked => "inuse_untracked",
        }
    }

    /// What the loss means for the profile, for the manifest.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            LossReason::CountsMapFull => "samples dropped: the kernel sample map was full",
            LossReason::UserStackUnreadable => "samples kept without their user stack: bpf_get_stack failed",
            LossReason::KernelStackUnreadable => "samples kept without their kernel stack: bpf_get_stack failed",
            LossReason::StackNotStored => {
                "samples kept without one of their stacks: the stack map was full or could not allocate"
            }
            LossReason::UserStackTruncated => "user stacks cut at 127 frames (outermost callers missing)",
            LossReason::KernelStackTruncated => "kernel stacks cut at 127 frames",
            LossReason::PyStackTruncated => {
                "Python stacks cut at 63 frames, in every profile kind (outermost Python callers missing)"
            }
            LossReason::PyStackLost => {
                "Python stacks that could not be stored, in every profile kind (native frames only)"
            }
            LossReason::UserStackMissing => "user stacks referenced by samples but absent from the stack map",
            LossReason::KernelStackMissing => "kernel stacks referenced by samples but absent from the stack map",
            LossReason::OffcpuMapFull => "off-CPU intervals dropped: the kernel off-CPU map was full",
            LossReason::OffcpuStartMapFull => "switch-outs not tracked: too many target threads blocked at once",
            LossReason::FaultMapFull => "page-fault samples dropped: the kernel map was full",
            LossReason::InuseMapFull => {
                "sampled allocations missing from the in-use view: the kernel map of held allocations was full"
            }
            LossReason::InuseUntracked => {
                "sampled allocations missing from the in-use view: too many threads allocating at once, \
                 or the allocator failed"
            }
        }
    }

    /// What the loss did to the profiles.
    pub(crate) fn effect(self) -> LossEffect {
        match self {
            LossReason::CountsMapFull => LossEffect::DroppedSamples,
            LossReason::OffcpuMapFull
            | LossReason::OffcpuStartMapFull
            | LossReason::FaultMapFull
            | LossReason::InuseMapFull
            | LossReason::InuseUntracked => LossEffect::DroppedEvents,
            LossReason::UserStackUnreadable
            | LossReason::KernelStackUnreadable
            | LossReason::StackNotStored
            | LossReason::UserStackTruncated
            | LossReason::KernelStackTruncated
            | LossReason::PyStackTruncated
            | LossReason::PyStackLost
            | LossReason::UserStackMissing
            | LossReason::KernelStackMissing => LossEffect::PartialStacks,
        }
    }

    /// Whether a kernel map's capacity caused it (a bigger map or a shorter
    /// capture would have kept the events): what the daemon warns about,
    /// since the programs themselves only count it.
    pub(crate) fn is_map_capacity(self) -> bool {
        matches!(
            self,
            LossReason::CountsMapFull
                | LossReason::StackNotStored
                | LossReason::OffcpuMapFull
                | LossReason::OffcpuStartMapFull
                | LossReason::FaultMapFull
                | LossReason::InuseMapFull
        )
    }
}

impl Serialize for LossReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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
    /// How user stacks were walked, and how many could not be walked whole.
    pub unwind: UnwindSummary,
    /// How complete and named the stacks are, per process (the busiest
    /// first), with what is wrong and the fix.
    pub stack_quality: Vec<super::quality::ProcessQuality>,
    /// What the profiles cannot show, e.g. a Python interpreter that
    /// cannot be read (its code shows as `[python 3.x: unsupported]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The manifest's `unwind` section: the `--unwind` mode and what it did.
/// Counts are of user stacks walked (a stack shared by many samples
/// counts once per sample).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct UnwindSummary {
    /// `auto`, `fp` or `tables`.
    pub mode: String,
    /// Walked to their end with unwind tables alone.
    pub stacks_with_tables: u64,
    /// Needed frame pointers for at least one frame (code without a table,
    /// or a process whose tables were not loaded yet), not truncated.
    pub stacks_fell_back: u64,
    /// Of those, walked wholly with frame pointers because the process's
    /// tables were not loaded yet.
    pub stacks_before_tables_loaded: u64,
    /// Cut short: they end in a `[truncated]` frame.
    pub stacks_truncated: u64,
    /// `stacks_truncated` by reason: `no_rule`, `unsupported_rule`,
    /// `read_failed`, `bad_frame`, `too_deep`, `no_table`.
    pub truncated_by_reason: std::collections::BTreeMap<String, u64>,
    /// Requests for tables lost because the ring buffer was full.
    pub requests_lost: u64,
    /// Of the stacks walked with the tables, those whose outer frames were
    /// taken from the thread's previous walk (its stack base, checked
    /// unchanged word by word) rather than walked again.
    pub stacks_reusing_base: u64,
    /// Frames per stack walked with the tables, on average (absent when
    /// none was): what the walk's cost per sample follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_walk: Option<f64>,
    /// The table manager's report (absent under `--unwind fp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<TablesReport>,
}

/// What the unwind table manager (`crate::bpf::tables`) did, for the
/// capture manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct TablesReport {
    /// Executables whose table is in the kernel now.
    pub tables_loaded: usize,
    /// Bytes of rows, page index and rules in use in the kernel maps.
    pub table_bytes: u64,
    /// Capacity of those maps, in bytes.
    pub table_capacity_bytes: u64,
    /// Tables built since the manager started (each file at most once
    /// while it stays loaded).
    pub tables_built: u64,
    /// Milliseconds spent building them.
    pub build_ms: f64,
    /// Tables evicted to make room.
    pub evictions: u64,
    /// Processes whose mappings the program knows.
    pub processes: usize,
    /// Requests from the program handled (new processes, unknown pcs).
    pub requests: u64,
    /// Executable files mapped by sampled processes that have no table, and
    /// why (their frames are walked with frame pointers; at most 20 listed).
    pub without_tables: Vec<NoTable>,
}

/// An executable file without an unwind table, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct NoTable {
    pub path: String,
    pub reason: String,
}

/// A capture the pipeline finished: what it was and its profiles, one per
/// kind, in the order the kinds were asked for.
#[derive(Clone, Debug)]
pub(crate) struct FinishedCapture {
    pub info: CaptureInfo,
    pub profiles: Vec<super::Profile>,
    /// With `watch --history`: the minutes before the capture.
    pub history: Option<HistoryAttachment>,
}

/// The flight recorder's part of a capture: the history window as a cpu
/// profile whose samples carry their time slot, and the differential
/// flamegraph of the window before the trigger's condition against the one
/// since (`…-cpu-history-….pb.gz`, `…-cpu-diff-….svg`).
#[derive(Clone, Debug)]
pub(crate) struct HistoryAttachment {
    pub info: HistoryInfo,
    pub profile: super::Profile,
    pub diff_svg: Vec<u8>,
}

/// A stretch of wall-clock time, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Span {
    #[serde(with = "humantime_serde_rfc3339")]
    pub start: SystemTime,
    #[serde(with = "humantime_serde_rfc3339")]
    pub end: SystemTime,
}

/// The manifest's `history` object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HistoryInfo {
    /// What the history profile covers.
    pub window: Span,
    /// The diff's base: the history before `since`.
    pub before: Span,
    /// The diff's new side: since the rule's condition first held (for a
    /// manual start, the last minute).
    pub since: Span,
    /// When the rule's condition first held (`None` for a manual start).
    #[serde(with = "optional_rfc3339")]
    pub condition_since: Option<SystemTime>,
    pub frequency_hz: u64,
    pub slot_seconds: f64,
    pub samples: u64,
    pub before_samples: u64,
    pub since_samples: u64,
    /// Given up to stay within `--history-memory`: merged slot pairs,
    /// dropped slots and their samples.
    pub merged_slots: u64,
    pub dropped_slots: u64,
    pub dropped_samples: u64,
    /// Samples the kernel could not hand over (its ring buffer was full).
    pub lost_samples: u64,
    pub memory_bytes: u64,
    pub memory_budget_bytes: u64,
}

mod optional_rfc3339 {
    use std::time::SystemTime;

    pub(super) fn serialize<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_millis(*t)),
            None => s.serialize_none(),
        }
    }
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
    fn every_loss_reason_has_one_name_and_only_a_full_sample_map_drops_samples() {
        let mut names = std::collections::BTreeSet::new();
        for reason in LossReason::ALL {
            // The manifest (serde) and the metrics label (as_str) agree.
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str(), "{reason:?}");
            assert!(names.insert(reason.as_str()), "{reason:?} named twice");
            assert!(!reason.detail().is_empty());
            // A full map is a capacity the daemon warns about.
            if reason.as_str().ends_with("_map_full") {
                assert!(reason.is_map_capacity(), "{reason:?}");
            }
        }
        let dropping: Vec<_> =
            LossReason::ALL.into_iter().filter(|r| r.effect() == LossEffect::DroppedSamples).collect();
        assert_eq!(dropping, [LossReason::CountsMapFull]);
        assert_eq!(LossReason::StackNotStored.effect(), LossEffect::PartialStacks);
        assert!(LossReason::StackNotStored.is_map_capacity());
        assert!(!LossReason::UserStackTruncated.is_map_capacity());
        let loss = Loss::new(LossReason::OffcpuMapFull, 4);
        let json = serde_json::to_value(&loss).unwrap();
        assert_eq!(json["reason"], "offcpu_map_full");
        assert_eq!(json["count"], 4);
        assert_eq!(json["detail"], LossReason::OffcpuMapFull.detail());
    }

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
